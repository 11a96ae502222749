"""What every run's settings dataclass shares: validation on construction, building from a
recipe's JSON ``settings`` object with a clear message for unknown keys, and one vocabulary of
checks (:func:`check_int`, :func:`check_float`, :func:`check_choice`, :func:`check_name`,
:func:`check_names`) that every settings class, the CLI and the pages use, so a bad value reads
the same wherever it comes from. Every check raises :class:`ValueError` with one line naming the
option and what is allowed."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Iterable, TypeVar

T = TypeVar("T", bound="RecipeSettings")

__all__ = ["RecipeSettings", "check_int", "check_float", "check_choice", "check_name", "check_names"]


def check_int(key: str, v, lo: int, hi: int) -> int:
    """``v`` as a whole number in [lo, hi] (bools and floats are refused)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{key} must be a whole number; got {_show(v)}")
    if not lo <= v <= hi:
        raise ValueError(f"{key} must be between {lo} and {hi}; got {v}")
    return v


def check_float(key: str, v, lo: float, hi: float = math.inf, exclusive_min: bool = False) -> float:
    """``v`` as a finite number in [lo, hi] (or (lo, hi] with ``exclusive_min``)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{key} must be a finite number; got {_show(v)}")
    if v < lo or v > hi or (exclusive_min and v <= lo):
        raise ValueError(f"{key} must be {'>' if exclusive_min else '>='} {lo:g}" +
                         (f" and <= {hi:g}" if hi < math.inf else "") + f"; got {v:g}")
    return v


def check_choice(key: str, v, allowed: Iterable[str]) -> str:
    """``v`` as one of ``allowed``."""
    allowed = tuple(allowed)
    if not isinstance(v, str) or v not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(allowed)}; got {_show(v)}")
    return v


def check_name(key: str, v) -> str:
    """``v`` as a non-empty name (a layer, a class), surrounding spaces removed."""
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{key} must be a name; got {_show(v)}")
    return v.strip()


def check_names(key: str, v, *, most: int | None = None, allow_empty: bool = False) -> tuple[str, ...]:
    """``"a,b"`` or a list of names as a tuple of names: no empty entry, no name twice, at most
    ``most`` (e.g. the network's number of layers)."""
    if isinstance(v, str):
        items = [s.strip() for s in v.split(",") if s.strip()]
    elif isinstance(v, (list, tuple)):
        items = [check_name(f"each of {key}", s) for s in v]
    else:
        raise ValueError(f"{key} must be names separated by commas or a list of names; got {_show(v)}")
    if not items and not allow_empty:
        raise ValueError(f"{key} is empty; name at least one")
    if most is not None and len(items) > most:
        raise ValueError(f"{key} lists {len(items)} names; there are only {most} to choose from")
    seen = set()
    for s in items:
        if s in seen:
            raise ValueError(f"{key} names {s!r} twice")
        seen.add(s)
    return tuple(items)


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class RecipeSettings:
    """Mixin for ``@dataclass`` settings: subclasses implement ``validate()`` (raising a
    one-line ``ValueError``, changing nothing), ``to_dict()`` and, where several spellings are
    accepted (``"a,b"`` for a list), ``canonicalize()``; construction normalizes, then validates."""

    def __post_init__(self) -> None:
        self.canonicalize()
        self.validate()

    def canonicalize(self) -> None:
        """Bring accepted spellings to one form (subclasses; called once, on construction)."""

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
