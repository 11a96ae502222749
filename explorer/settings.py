"""What every run's settings dataclass shares: validation on construction and building from a
recipe's JSON ``settings`` object with a clear message for unknown keys."""

from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

T = TypeVar("T", bound="RecipeSettings")

__all__ = ["RecipeSettings"]


class RecipeSettings:
    """Mixin for ``@dataclass`` settings: subclasses implement ``validate()`` (raising a
    one-line ``ValueError``) and ``to_dict()``; construction validates."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self):  # pragma: no cover - every subclass overrides it
        return self

    @classmethod
    def from_dict(cls: type[T], d: dict) -> T:
        """Build from a dict such as a recipe's ``settings``.

        Raises:
            ValueError: not a JSON object, unknown keys (the message lists the valid ones), or
                bad values.
        """
        if not isinstance(d, dict):
            raise ValueError("settings must be a JSON object")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ValueError(f"bad settings: {exc}") from None
