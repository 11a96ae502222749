"""What every run's settings dataclass shares: validation on construction, building from a
recipe's JSON ``settings`` object with a clear message for unknown keys, and one vocabulary of
checks (:func:`check_int`, :func:`check_float`, :func:`check_choice`, :func:`check_name`,
:func:`check_names`, :func:`check_numbers`) that every settings class, the CLI and the pages use,
so a bad value reads the same wherever it comes from. Every check raises :class:`ValueError`
with one line naming the option and what is allowed.

A settings class declares each field's rule once, where the field is declared, with
:func:`setting` (its choices, its range, or that it is a comma-separated list of names or
numbers); :class:`RecipeSettings` turns the lists into tuples on construction and checks every
declared rule in :meth:`RecipeSettings.validate`, so a subclass only adds the rules that tie
several fields together."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T", bound="RecipeSettings")

__all__ = ["RecipeSettings", "setting", "check_int", "check_float", "check_choice", "check_name", "check_names",
           "check_numbers"]


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


def check_numbers(key: str, v, kind: type = float) -> tuple:
    """``"3,7"``, one number or a list of numbers as a tuple of ``kind`` (``int``: whole numbers,
    ``3.0`` counts as 3; ``float``: finite numbers). Empty text or an empty list gives ``()``."""
    raw = v
    try:
        if isinstance(raw, str):
            raw = [c for c in raw.split(",") if c.strip()]
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = [raw]
        if not isinstance(raw, (list, tuple)) or any(isinstance(c, (bool, list, dict)) for c in raw):
            raise TypeError
        if kind is int and any(isinstance(c, float) and not c.is_integer() for c in raw):
            raise TypeError
        out = tuple(kind(float(c)) if kind is int else kind(c) for c in raw)
        if kind is float and not all(math.isfinite(x) for x in out):
            raise TypeError
        return out
    except (TypeError, ValueError):
        what = "whole numbers" if kind is int else "numbers"
        raise ValueError(f"{key} must be {what} separated by commas; got {str(v)[:40]!r}") from None


@dataclass(frozen=True)
class _Rule:
    """What :func:`setting` declares about one field (see there)."""

    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None
    lo: float | None = None
    hi: float | None = None
    exclusive_min: bool = False
    names: bool = False
    numbers: type | None = None
    most: Callable[[Any], int | None] | None = None
    optional: bool = False
    allow_empty: bool = False
    flag: bool = False

    def canonical(self, key: str, v, owner) -> Any:
        """The value in its one form: lists of names or numbers as tuples."""
        if v is None and self.optional:
            return v
        if self.names:
            return check_names(key, v, most=self.most(owner) if self.most else None, allow_empty=self.allow_empty)
        if self.numbers is not None:
            return check_numbers(key, v, self.numbers)
        return v

    def check(self, key: str, v) -> None:
        """Raise the one-line ValueError of the first rule ``v`` breaks."""
        if v is None and self.optional:
            return
        if self.flag and not isinstance(v, bool):
            raise ValueError(f"{key} must be true or false; got {_show(v)}")
        if self.choices is not None:
            check_choice(key, v, self.choices() if callable(self.choices) else self.choices)
        if self.lo is None and self.hi is None:
            return
        if isinstance(self.lo, int) and isinstance(self.hi, int) and not isinstance(self.lo, bool):
            check_int(key, v, self.lo, self.hi)
        else:
            check_float(key, v, -math.inf if self.lo is None else self.lo,
                        math.inf if self.hi is None else self.hi, exclusive_min=self.exclusive_min)


def setting(default=MISSING, *, choices=None, lo=None, hi=None, exclusive_min: bool = False, names: bool = False,
            numbers: type | None = None, most: Callable[[Any], int | None] | None = None, optional: bool = False,
            allow_empty: bool = False, flag: bool = False):
    """A settings field with its rule, declared once (a :func:`dataclasses.field`).

    Args:
        default: the default value.
        choices: the allowed values (a tuple, or a function returning them, e.g. the
            registered networks); checked with :func:`check_choice`.
        lo, hi: the range, inclusive: two ``int`` bounds check a whole number
            (:func:`check_int`), otherwise a finite number (:func:`check_float`; ``hi`` None =
            no upper bound, ``exclusive_min``: ``lo`` itself is refused).
        names: ``"a,b"`` or a list of names, kept as a tuple (:func:`check_names`; ``most``:
            a function of the settings giving the largest count, ``allow_empty``).
        numbers: ``int`` or ``float``: ``"1,2"``, a number or a list, kept as a tuple
            (:func:`check_numbers`).
        optional: ``None`` is allowed and skips the checks.
        flag: ``true`` or ``false`` only.
    """
    rule = _Rule(choices=tuple(choices) if choices is not None and not callable(choices) else choices, lo=lo, hi=hi,
                 exclusive_min=exclusive_min, names=names, numbers=numbers, most=most, optional=optional,
                 allow_empty=allow_empty, flag=flag)
    return field(default=default, metadata={"rule": rule})


def _rules(obj) -> Iterable[tuple[str, _Rule]]:
    for f in fields(obj):
        rule = f.metadata.get("rule")
        if rule is not None:
            yield f.name, rule


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class RecipeSettings:
    """Mixin for ``@dataclass`` settings whose fields are declared with :func:`setting`: on
    construction the declared lists become tuples, then ``canonicalize()`` (subclasses: other
    spellings to one form), then :meth:`validate`. Subclasses implement ``to_dict()`` and extend
    ``validate()`` (calling this one first) with rules that tie several fields together."""

    def __post_init__(self) -> None:
        for key, rule in _rules(self):
            setattr(self, key, rule.canonical(key, getattr(self, key), self))
        self.canonicalize()
        self.validate()

    def canonicalize(self) -> None:
        """Bring accepted spellings to one form (subclasses; called once, on construction)."""

    def validate(self):
        """Check every field's declared rule (changes nothing).

        Raises:
            ValueError: one line naming the first bad option and what is allowed.
        """
        for key, rule in _rules(self):
            rule.check(key, getattr(self, key))
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
