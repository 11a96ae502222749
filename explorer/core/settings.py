"""What every run's settings dataclass shares: validation on construction, building from a
recipe's JSON ``settings`` object with a clear message for unknown keys, and one vocabulary of
checks (:func:`check_int`, :func:`check_float`, :func:`check_choice`, :func:`check_name`,
:func:`check_names`, :func:`check_subset`, :func:`check_numbers`, :func:`check_pair`) that every
settings class, the CLI and the pages use,
so a bad value reads the same wherever it comes from. Every check raises :class:`ValueError`
with one line naming the option and what is allowed.

A settings class declares each field's rule once, where the field is declared, with
:func:`setting` (its choices, its range, or that it is a comma-separated list of names or
numbers, a subset of choices, a (LO, HI) range); :class:`RecipeSettings` turns the lists and
ranges into tuples on construction and checks every
declared rule in :meth:`RecipeSettings.validate`, so a subclass only adds the rules that tie
several fields together."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T", bound="RecipeSettings")

__all__ = ["RecipeSettings", "setting", "check_int", "check_float", "check_choice", "check_name", "check_names",
           "check_subset", "check_numbers", "check_pair"]


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


def check_subset(key: str, v, allowed: Iterable[str]) -> tuple[str, ...]:
    """``"a,b"``, ``"none"`` or a list of entries of ``allowed`` as a tuple in ``allowed``'s order,
    each once (text is read without regard to case; ``"none"`` or empty text gives ``()``)."""
    allowed = tuple(allowed)
    if isinstance(v, str):
        items = [s.strip().lower() for s in v.split(",") if s.strip()]
        items = [] if items == ["none"] else items
    elif isinstance(v, (list, tuple)):
        items = list(v)
    else:
        raise ValueError(f"{key} must be names separated by commas or a list of names; got {_show(v)}")
    bad = [s for s in items if s not in allowed]
    if bad:
        raise ValueError(f"{key} must be among {', '.join(allowed)}; got {bad[0]!r}")
    return tuple(a for a in allowed if a in items)


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


def check_pair(key: str, v, kind: type = float) -> tuple:
    """``N``, ``"N"``, ``"LO,HI"``, ``(LO, HI)`` or ``[LO, HI]`` as a (lo, hi) tuple of ``kind``
    (``int``: whole numbers, ``3.0`` counts as 3); one number N gives (N, N); LO must not be
    above HI."""
    raw = v
    if isinstance(v, str):
        v = [c.strip() for c in v.split(",")]
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v]
    try:
        items = list(v)
        if not 1 <= len(items) <= 2 or any(isinstance(c, bool) for c in items):
            raise ValueError
        if kind is int:
            nums = []
            for c in items:
                f = float(c)
                if not f.is_integer():
                    raise ValueError
                nums.append(int(f))
        else:
            nums = [float(c) for c in items]
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number or a range LO,HI; got {raw!r}") from None
    lo, hi = nums[0], nums[-1]
    if lo > hi:
        raise ValueError(f"{key}: LO must not be above HI; got {raw!r}")
    return lo, hi


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
    pair: type | None = None
    label: str | None = None

    def allowed(self) -> tuple[str, ...]:
        return tuple(self.choices()) if callable(self.choices) else self.choices

    def canonical(self, key: str, v, owner) -> Any:
        """The value in its one form: lists of names or numbers and ranges as tuples."""
        key = self.label or key
        if v is None and self.optional:
            return v
        if self.names and self.choices is not None:
            return check_subset(key, v, self.allowed())
        if self.pair is not None:
            return check_pair(key, v, self.pair)
        if self.names:
            return check_names(key, v, most=self.most(owner) if self.most else None, allow_empty=self.allow_empty)
        if self.numbers is not None:
            return check_numbers(key, v, self.numbers)
        return v

    def check(self, key: str, v) -> None:
        """Raise the one-line ValueError of the first rule ``v`` breaks."""
        key = self.label or key
        if v is None and self.optional:
            return
        if self.flag and not isinstance(v, bool):
            raise ValueError(f"{key} must be true or false; got {_show(v)}")
        if self.names and self.choices is not None:
            check_subset(key, v, self.allowed())
        elif self.choices is not None:
            check_choice(key, v, self.allowed())
        if self.lo is None and self.hi is None:
            return
        for x in check_pair(key, v, self.pair) if self.pair is not None else (v,):
            if isinstance(self.lo, int) and isinstance(self.hi, int) and not isinstance(self.lo, bool):
                check_int(key, x, self.lo, self.hi)
            else:
                check_float(key, x, -math.inf if self.lo is None else self.lo,
                            math.inf if self.hi is None else self.hi, exclusive_min=self.exclusive_min)


def setting(default=MISSING, *, choices=None, lo=None, hi=None, exclusive_min: bool = False, names: bool = False,
            numbers: type | None = None, most: Callable[[Any], int | None] | None = None, optional: bool = False,
            allow_empty: bool = False, flag: bool = False, pair: type | None = None, label: str | None = None):
    """A settings field with its rule, declared once (a :func:`dataclasses.field`).

    Args:
        default: the default value.
        choices: the allowed values (a tuple, or a function returning them, e.g. the
            registered networks); checked with :func:`check_choice`, or with ``names``: the
            field is a subset of them (:func:`check_subset`: ``"a,b"``, ``"none"`` or a list,
            kept in the choices' order).
        lo, hi: the range, inclusive: two ``int`` bounds check a whole number
            (:func:`check_int`), otherwise a finite number (:func:`check_float`; ``hi`` None =
            no upper bound, ``exclusive_min``: ``lo`` itself is refused); with ``pair``, both
            ends are checked.
        names: ``"a,b"`` or a list of names, kept as a tuple (:func:`check_names`; ``most``:
            a function of the settings giving the largest count, ``allow_empty``).
        numbers: ``int`` or ``float``: ``"1,2"``, a number or a list, kept as a tuple
            (:func:`check_numbers`).
        pair: ``int`` or ``float``: a (LO, HI) range, given as ``N``, ``"LO,HI"`` or a list of
            one or two numbers, kept as a (lo, hi) tuple (:func:`check_pair`).
        optional: ``None`` is allowed and skips the checks.
        flag: ``true`` or ``false`` only.
        label: the name the messages use (default: the field's name).
    """
    rule = _Rule(choices=tuple(choices) if choices is not None and not callable(choices) else choices, lo=lo, hi=hi,
                 exclusive_min=exclusive_min, names=names, numbers=numbers, most=most, optional=optional,
                 allow_empty=allow_empty, flag=flag, pair=pair, label=label)
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
