"""The axes of a parameter sweep (:class:`explorer.batch.sweep.Sweep`): which parameters a sweep can
vary, the values each takes, and how they are labelled in the grid.

* ``alpha_beta``: the content/style weight ratio alpha/beta (Gatys et al. 2016, eq. 7:
  alpha weighs the content loss, beta the style loss; log-spaced values,
  :func:`log_alpha_beta`); a cell of value r uses alpha = ``settings.content_weight`` and
  beta = alpha / r. ``ratio`` is accepted as its old name by :func:`parse_axis`.
* ``steps``: iterations. ONE run with the most steps; each cell is that run's snapshot at its
  step (``StyleTransfer(snapshot_steps=...)``), not a separate run.
* ``seed``: seeds of the noise initialization. They only matter with ``init="noise"``: cells
  that start from the content or style image differ in nothing else, so they share one image.
* ``init``: start from the content image, white noise or the style image.
* ``style_layers``: named layer sets (:data:`STYLE_LAYER_SETS`, e.g. ``"shallow"``) or
  comma-separated layer names; each layer weighs 1/L of its own set.
* ``optimizer``: ``"lbfgs"`` or ``"adam"``.

This module imports only :mod:`explorer.style.transfer` (for its default style layers).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..core import choices
from ..style.settings import DEFAULT_STYLE_LAYERS

__all__ = [
    "AXIS_NAMES",
    "AXIS_TITLES",
    "AXIS_ALIASES",
    "STYLE_LAYER_SETS",
    "MAX_AXIS_VALUES",
    "OPTIMIZER_TITLES",
    "SweepAxis",
    "log_alpha_beta",
    "layer_set",
    "parse_axis",
]

#: The parameters a sweep can vary, in the order the page offers them.
AXIS_NAMES = ("alpha_beta", "steps", "seed", "init", "style_layers", "optimizer")

#: What each axis is called on the page and in the grid's titles.
AXIS_TITLES = {
    "alpha_beta": "content/style ratio alpha/beta",
    "steps": "iterations",
    "seed": "seed",
    "init": "initialization",
    "style_layers": "style layers",
    "optimizer": "optimizer",
}

#: Named sets of style layers for the ``style_layers`` axis, cut from the style networks' default
#: style layers (the registry's ``ModelSpec.style_layers``: relu1_1, relu2_1 | relu3_1 | relu4_1, relu5_1).
STYLE_LAYER_SETS: dict[str, tuple[str, ...]] = {
    "shallow": DEFAULT_STYLE_LAYERS[:2],
    "middle": DEFAULT_STYLE_LAYERS[2:3],
    "deep": DEFAULT_STYLE_LAYERS[3:],
    "all five": DEFAULT_STYLE_LAYERS,
}

#: Most values one axis takes (a 8 x 8 grid is already 64 optimizations' worth of images).
MAX_AXIS_VALUES = 8

#: Old names of axes that :func:`parse_axis` still accepts (saved commands use them).
AXIS_ALIASES = {"ratio": "alpha_beta"}

# a decimal number as text (the same pattern as explorer.style.blend's style weights)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

_CHOICES = {"init": choices.INITS, "optimizer": choices.OPTIMIZERS}

#: How the grid names each optimizer.
OPTIMIZER_TITLES = {"lbfgs": "L-BFGS", "adam": "Adam"}


def log_alpha_beta(lo: float, hi: float, n: int) -> list[float]:
    """``n`` log-spaced content/style ratios alpha/beta from ``lo`` to ``hi`` (both included),
    each rounded to 3 significant digits: ``log_alpha_beta(1e-8, 1e-4, 3) == [1e-8, 1e-6, 1e-4]``.

    Args:
        lo, hi: positive finite ratios alpha/beta (``lo > hi`` gives a falling sequence).
        n: how many, 1 to :data:`MAX_AXIS_VALUES` (1 gives ``[lo]``).

    Raises:
        ValueError: a bound that is not a positive finite number, n out of range, or bounds so
            close that rounding makes two values equal (one-line message).
    """
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"alpha/beta bound {name} must be a positive number; got {v!r}")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_AXIS_VALUES:
        raise ValueError(f"number of alpha/beta ratios must be a whole number from 1 to {MAX_AXIS_VALUES}; got {n!r}")
    if n == 1:
        return [float(f"{lo:.3g}")]
    a, b = math.log10(lo), math.log10(hi)
    out = [float(f"{10 ** (a + (b - a) * i / (n - 1)):.3g}") for i in range(n)]
    if len(set(out)) != n:
        raise ValueError(f"alpha/beta ratios from {lo:g} to {hi:g} are too close together for {n} distinct values")
    return out


def layer_set(value) -> tuple[str, tuple[str, ...]]:
    """(label, layers) of a ``style_layers`` value: a preset name of :data:`STYLE_LAYER_SETS`,
    or layer names (a sequence or one comma-separated string). A list equal to a preset takes
    the preset's name: ``layer_set("relu3_1") == ("middle", ("relu3_1",))``.

    Raises:
        ValueError: no layer named.
    """
    if isinstance(value, str) and value.strip() in STYLE_LAYER_SETS:
        return value.strip(), STYLE_LAYER_SETS[value.strip()]
    layers = tuple(s.strip() for s in value.split(",")) if isinstance(value, str) else tuple(value)
    layers = tuple(l for l in layers if l)
    if not layers:
        raise ValueError(f"a style layer set must name at least one layer; got {value!r}")
    for name, preset in STYLE_LAYER_SETS.items():
        if preset == layers:
            return name, preset
    return ",".join(layers), layers


@dataclass(frozen=True)
class SweepAxis:
    """One parameter of a sweep and the values it takes.

    Args:
        name: one of :data:`AXIS_NAMES`.
        values: 1 to :data:`MAX_AXIS_VALUES` distinct values, kept in the order given:

            * ``alpha_beta``: positive finite floats alpha/beta (see :func:`log_alpha_beta`);
            * ``steps``: whole numbers >= 1 (iterations at which the one run is photographed);
            * ``seed``: whole numbers 0 .. 2**63-1;
            * ``init``: ``"content"``, ``"noise"``, ``"style"``;
            * ``style_layers``: names of :data:`STYLE_LAYER_SETS` or layer lists (stored as the
              preset name or a comma-separated string);
            * ``optimizer``: ``"lbfgs"``, ``"adam"``.

    Raises:
        ValueError: unknown axis, no values, too many, duplicates or bad values (one line).
    """

    name: str
    values: tuple

    def __post_init__(self):
        if self.name not in AXIS_NAMES:
            raise ValueError(f"unknown sweep parameter {self.name!r}; choose one of {', '.join(AXIS_NAMES)}")
        raw = [self.values] if isinstance(self.values, (str, int, float)) else list(self.values)
        if not raw:
            raise ValueError(f"the {self.name} axis needs at least one value")
        if len(raw) > MAX_AXIS_VALUES:
            raise ValueError(f"the {self.name} axis takes at most {MAX_AXIS_VALUES} values; got {len(raw)}")
        vals = tuple(self._check(v) for v in raw)
        if len(set(vals)) != len(vals):
            dup = next(v for v in vals if vals.count(v) > 1)
            raise ValueError(f"the {self.name} axis has the value {dup!r} twice")
        object.__setattr__(self, "values", vals)

    def _check(self, v):
        n = self.name
        if n == "alpha_beta":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"a content/style ratio alpha/beta must be a positive number; got {v!r}")
            return float(v)
        if n in ("steps", "seed"):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            lo, hi = (1, 100_000) if n == "steps" else (0, 2**63 - 1)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{'a step count' if n == 'steps' else 'a seed'} must be a whole number "
                                 f"from {lo} to {hi}; got {v!r}")
            return v
        if n == "style_layers":
            return layer_set(v)[0]
        v = str(v).strip().lower().replace("-", "")
        if v not in _CHOICES[n]:
            raise ValueError(f"{n} must be one of {', '.join(_CHOICES[n])}; got {v!r}")
        return v

    @property
    def title(self) -> str:
        """What the axis is called in the grid, e.g. ``"content/style ratio alpha/beta"``."""
        return AXIS_TITLES[self.name]

    def label(self, value) -> str:
        """A value as the grid shows it (plain ASCII, which every font draws), e.g.
        ``"ratio 1e-06"``, ``"step 20"``, ``"seed 3"``, ``"shallow (relu1_1, relu2_1)"``."""
        if self.name == "alpha_beta":
            return f"ratio {value:.3g}"
        if self.name == "steps":
            return f"step {value}"
        if self.name == "seed":
            return f"seed {value}"
        if self.name == "init":
            return f"start: {value}"
        if self.name == "optimizer":
            return OPTIMIZER_TITLES[value]
        name, layers = layer_set(value)
        return f"{name} ({', '.join(layers)})" if name in STYLE_LAYER_SETS else ", ".join(layers)

    @property
    def labels(self) -> list[str]:
        """Every value's :meth:`label`, in the axis's order."""
        return [self.label(v) for v in self.values]


def parse_axis(name: str, text: str) -> SweepAxis:
    """A :class:`SweepAxis` from text: values separated by commas (``"10, 20, 40"``,
    ``"1e-6,1e-4"``, ``"adam, lbfgs"``); for ``style_layers`` sets are separated by ``;``
    (``"shallow; relu1_1,relu3_1"``). ``name`` may be an old name of :data:`AXIS_ALIASES`
    (``"ratio"`` gives an ``alpha_beta`` axis).

    Raises:
        ValueError: unknown axis, a value that is not a number where one is needed, or what
            :class:`SweepAxis` rejects (one line).
    """
    name = AXIS_ALIASES.get(name, name)
    if name not in AXIS_NAMES:
        raise ValueError(f"unknown sweep parameter {name!r}; choose one of {', '.join(AXIS_NAMES)}")
    sep = ";" if name == "style_layers" else ","
    parts = [p.strip() for p in (text or "").split(sep) if p.strip()]
    if name in ("alpha_beta", "steps", "seed"):
        vals = []
        for p in parts:
            if not _NUMBER.match(p):
                raise ValueError(f"{name} values must be numbers separated by commas; got {p!r}")
            vals.append(float(p) if name == "alpha_beta" else (int(p) if p.lstrip("+-").isdigit() else float(p)))
        parts = vals
    return SweepAxis(name, tuple(parts))
