"""Many style transfers at once: multi-style blending and parameter sweeps (dataset
augmentation lives in :mod:`explorer.augment`).

Multi-style blending
--------------------
The style target of each layer is the weighted mean of the style images' position-normalized
Gram matrices (:func:`explorer.gatys.style_targets`), with the weights normalized to sum to 1:
``A^l = sum_i (w_i / sum_j w_j) G^l(s_i) / M^l(s_i)``. Each style image is scaled so that its
long side is the working size (its aspect ratio is kept), and each Gram matrix is divided by
its own number of positions M, so images of different sizes and shapes contribute on the same
scale (a Gram matrix is N x N whatever the image size). A weight of 0 leaves an image out
exactly; weights (1, 0) give the single-style target.

Parameter sweeps
----------------
:class:`Sweep` runs a grid over one or two parameters (:class:`SweepAxis`) and keeps, per cell,
the image, its final losses and the seconds its run took. Axes:

* ``ratio``: content/style weight ratio alpha/beta (log-spaced values, :func:`log_ratios`);
  a cell uses alpha = ``settings.content_weight`` and beta = alpha / ratio.
* ``steps``: iterations. ONE run with the most steps; each cell is that run's snapshot at its
  step (``StyleTransfer(snapshot_steps=...)``), not a separate run.
* ``seed``: seeds of the noise initialization. They only matter with ``init="noise"``: cells
  that start from the content or style image differ in nothing else, so they share one image.
* ``init``: start from the content image, white noise or the style image.
* ``style_layers``: named layer sets (:data:`STYLE_LAYER_SETS`, e.g. ``"shallow"``) or
  comma-separated layer names; each layer weighs 1/L of its own set.
* ``optimizer``: ``"lbfgs"`` or ``"adam"``.

Runs are grouped: cells whose settings differ only in the seed and, with Adam, in the ratio,
run as ONE batched :class:`~explorer.style.StyleTransfer` (a batch of images through the network
at once; ``seeds=`` and ``loss_weights=``). Adam updates each pixel from its own gradient, so a
batched image follows the path it would follow alone. L-BFGS keeps one curvature history for
all the variables it optimizes, so batching would couple the images: with L-BFGS every
seed and ratio is its own run, one after another.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from .progress import ProgressEvent
from .style import StyleTransfer
from .gatys import gatys_objective, style_targets
from .style_settings import DEFAULT_STYLE_LAYERS, StyleSettings

__all__ = [
    "MAX_STYLES",
    "parse_style_spec",
    "format_style_spec",
    "prepare_blend",
    "AXIS_NAMES",
    "AXIS_TITLES",
    "STYLE_LAYER_SETS",
    "MAX_AXIS_VALUES",
    "SweepAxis",
    "SweepCell",
    "SweepRun",
    "Sweep",
    "log_ratios",
    "parse_axis",
    "sweep_table",
    "sweep_csv",
    "sweep_grid_image",
]

#: Most style images one blend takes.
MAX_STYLES = 6

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_style_spec(text: str) -> list[tuple[str, float]]:
    """Parse a blend of style images: ``"a.jpg:0.7,b.jpg:0.3"`` or ``"sample:gravel:2,sample:brick"``.

    Each comma-separated part is an image reference (a path or ``sample:NAME``) optionally
    followed by ``:WEIGHT``; a part without a weight weighs 1. Weights are returned as given
    (not normalized).

    Returns:
        list of (reference, weight), 1 to :data:`MAX_STYLES` entries.

    Raises:
        ValueError: an empty part, a negative or non-finite weight, all weights 0, or more than
            :data:`MAX_STYLES` images (one-line message).
    """
    parts = [p.strip() for p in (text or "").split(",")]
    if not any(parts):
        raise ValueError("no style image given")
    out: list[tuple[str, float]] = []
    for part in parts:
        if not part:
            raise ValueError(f"empty entry in the style list {text!r}")
        ref, weight = part, 1.0
        head, sep, tail = part.rpartition(":")
        if sep and head and _NUMBER.match(tail) and head != "sample":
            ref, weight = head, float(tail)
        if not weight >= 0 or weight == float("inf"):
            raise ValueError(f"style weight must be a finite number >= 0; got {tail!r} in {part!r}")
        out.append((ref, weight))
    if len(out) > MAX_STYLES:
        raise ValueError(f"at most {MAX_STYLES} style images can be blended; got {len(out)}")
    if not sum(w for _, w in out) > 0:
        raise ValueError("the style weights sum to 0; give at least one a positive weight")
    return out


def format_style_spec(entries: Sequence[tuple[str, float]]) -> str:
    """The inverse of :func:`parse_style_spec`: ``[("sample:gravel", 0.7), ("b.jpg", 0.3)]`` ->
    ``"sample:gravel:0.7,b.jpg:0.3"``; one entry of weight 1 is just its reference (what a
    recipe stores for a single style image)."""
    entries = list(entries)
    if len(entries) == 1 and entries[0][1] == 1.0:
        return entries[0][0]
    return ",".join(f"{ref}:{w:g}" for ref, w in entries)


def prepare_blend(content, styles: Sequence[tuple[Any, float]],
                  size: int) -> tuple[torch.Tensor, list[tuple[torch.Tensor, float]]]:
    """Scale a content image and the style images of a blend to the working size.

    Args:
        content: the content image (PIL, RGB).
        styles: (PIL image, weight) pairs, weights >= 0 as given (not yet normalized).
        size: working size, the long side in pixels; every image keeps its aspect ratio
            (:func:`explorer.gatys.prepare_images`).

    Returns:
        (content (1, 3, H, W), [(style (1, 3, H_i, W_i), weight), ...]) in [0, 1]; images of
        weight 0 are left out (they would not change the target).

    Raises:
        ValueError: no style image, a negative or non-finite weight, or weights summing to 0.
    """
    from .images import resize_long_side, to_tensor

    styles = list(styles)
    if not styles:
        raise ValueError("no style image given")
    for _, w in styles:
        if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
            raise ValueError(f"style weights must be finite numbers >= 0; got {w!r}")
    if not sum(w for _, w in styles) > 0:
        raise ValueError("the style weights sum to 0; give at least one a positive weight")
    c = to_tensor(resize_long_side(content, size))
    return c, [(to_tensor(resize_long_side(img, size)), float(w)) for img, w in styles if w > 0]


# ============================================================================ parameter sweeps

#: The parameters a sweep can vary, in the order the page offers them.
AXIS_NAMES = ("ratio", "steps", "seed", "init", "style_layers", "optimizer")

#: What each axis is called on the page and in the grid's titles.
AXIS_TITLES = {
    "ratio": "content/style ratio alpha/beta",
    "steps": "iterations",
    "seed": "seed",
    "init": "initialization",
    "style_layers": "style layers",
    "optimizer": "optimizer",
}

#: Named sets of style layers for the ``style_layers`` axis (VGG16 and VGG19 names).
STYLE_LAYER_SETS: dict[str, tuple[str, ...]] = {
    "shallow": ("relu1_1", "relu2_1"),
    "middle": ("relu3_1",),
    "deep": ("relu4_1", "relu5_1"),
    "all five": DEFAULT_STYLE_LAYERS,
}

#: Most values one axis takes (a 8 x 8 grid is already 64 optimizations' worth of images).
MAX_AXIS_VALUES = 8

_CHOICES = {"init": ("content", "noise", "style"), "optimizer": ("lbfgs", "adam")}
_OPTIMIZER_TITLES = {"lbfgs": "L-BFGS", "adam": "Adam"}


def log_ratios(lo: float, hi: float, n: int) -> list[float]:
    """``n`` log-spaced content/style ratios from ``lo`` to ``hi`` (both included), each rounded
    to 3 significant digits: ``log_ratios(1e-8, 1e-4, 3) == [1e-8, 1e-6, 1e-4]``.

    Args:
        lo, hi: positive finite ratios alpha/beta (``lo > hi`` gives a falling sequence).
        n: how many, 1 to :data:`MAX_AXIS_VALUES` (1 gives ``[lo]``).

    Raises:
        ValueError: a bound that is not a positive finite number, n out of range, or bounds so
            close that rounding makes two values equal (one-line message).
    """
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"ratio bound {name} must be a positive number; got {v!r}")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_AXIS_VALUES:
        raise ValueError(f"number of ratios must be a whole number from 1 to {MAX_AXIS_VALUES}; got {n!r}")
    if n == 1:
        return [float(f"{lo:.3g}")]
    a, b = math.log10(lo), math.log10(hi)
    out = [float(f"{10 ** (a + (b - a) * i / (n - 1)):.3g}") for i in range(n)]
    if len(set(out)) != n:
        raise ValueError(f"ratios from {lo:g} to {hi:g} are too close together for {n} distinct values")
    return out


def _layer_set(value) -> tuple[str, tuple[str, ...]]:
    """(label, layers) of a ``style_layers`` value: a preset name, or layer names (a sequence
    or one comma-separated string). A list equal to a preset takes the preset's name."""
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

            * ``ratio``: positive finite floats alpha/beta (see :func:`log_ratios`);
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
        if n == "ratio":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"a content/style ratio must be a positive number; got {v!r}")
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
            return _layer_set(v)[0]
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
        if self.name == "ratio":
            return f"ratio {value:.3g}"
        if self.name == "steps":
            return f"step {value}"
        if self.name == "seed":
            return f"seed {value}"
        if self.name == "init":
            return f"start: {value}"
        if self.name == "optimizer":
            return _OPTIMIZER_TITLES[value]
        name, layers = _layer_set(value)
        return f"{name} ({', '.join(layers)})" if name in STYLE_LAYER_SETS else ", ".join(layers)

    @property
    def labels(self) -> list[str]:
        return [self.label(v) for v in self.values]


def parse_axis(name: str, text: str) -> SweepAxis:
    """A :class:`SweepAxis` from text: values separated by commas (``"10, 20, 40"``,
    ``"1e-6,1e-4"``, ``"adam, lbfgs"``); for ``style_layers`` sets are separated by ``;``
    (``"shallow; relu1_1,relu3_1"``).

    Raises:
        ValueError: unknown axis, a value that is not a number where one is needed, or what
            :class:`SweepAxis` rejects (one line).
    """
    if name not in AXIS_NAMES:
        raise ValueError(f"unknown sweep parameter {name!r}; choose one of {', '.join(AXIS_NAMES)}")
    sep = ";" if name == "style_layers" else ","
    parts = [p.strip() for p in (text or "").split(sep) if p.strip()]
    if name in ("ratio", "steps", "seed"):
        vals = []
        for p in parts:
            if not _NUMBER.match(p):
                raise ValueError(f"{name} values must be numbers separated by commas; got {p!r}")
            vals.append(float(p) if name == "ratio" else (int(p) if p.lstrip("+-").isdigit() else float(p)))
        parts = vals
    return SweepAxis(name, tuple(parts))


@dataclass
class SweepCell:
    """One cell of a finished sweep.

    Attributes:
        row, col: grid position (0-based). With one axis the grid is one row: row 0, col = the
            axis value's index.
        row_label, col_label: the axis values as labels (``row_label`` is ``""`` with one axis).
        values: axis name -> this cell's value.
        image: the result, (1, 3, H, W), float32 in [0, 1], CPU.
        losses: the image's losses: ``content`` (eq. 1), ``style`` (eq. 5), ``tv`` (unweighted)
            and ``total`` (alpha content + beta style + TV weight tv, what the optimizer minimized).
        step: the iteration the image belongs to (``settings.steps``, or the column of a
            ``steps`` axis); lower when its run stopped early.
        seconds: wall-clock seconds its run had taken when this image was reached (the whole
            batch's time when the run was batched).
        settings: the settings this cell stands for (its own seed, weights, layers, and steps =
            its step).
        run: index of the run it came from in :attr:`Sweep.plan`; ``batch``: how many images
            that run optimized at once.
        stopped: ``None``, or why its run stopped early (non-finite loss).
    """

    row: int
    col: int
    row_label: str
    col_label: str
    values: dict[str, Any]
    image: torch.Tensor
    losses: dict[str, float]
    step: int
    seconds: float
    settings: StyleSettings
    run: int
    batch: int
    stopped: str | None = None


@dataclass
class SweepRun:
    """One optimization of a sweep's plan.

    Attributes:
        settings: the run's settings (steps = the most any of its cells needs; seed and weights
            of its first image).
        seeds, content_weights, style_weights: per image of the batch (length = batch size).
        cells: (cell index in grid order, image index in the batch, step) per cell it fills.
        label: what sets it apart, for the progress line (e.g. ``"seeds 0, 1, 2 · ratio 1e-06"``).
    """

    settings: StyleSettings
    seeds: list[int]
    content_weights: list[float]
    style_weights: list[float]
    cells: list[tuple[int, int, int]] = field(default_factory=list)
    label: str = ""

    @property
    def batch(self) -> int:
        return len(self.seeds)

    @property
    def snapshot_steps(self) -> tuple[int, ...]:
        return tuple(sorted({step for _, _, step in self.cells}))


class Sweep:
    """A grid of style transfers over one or two parameters, as an iterable of ProgressEvents.

    Usage::

        sweep = Sweep(model, content, style, settings, SweepAxis("ratio", log_ratios(1e-8, 1e-4, 3)),
                      SweepAxis("seed", (0, 1, 2)))
        for event in sweep:        # the page draws these; stage says which run
            ...
        sweep.cells                # row-major list of SweepCell
        sweep_grid_image(sweep.cells, rows=sweep.row_labels, cols=sweep.col_labels)

    The rows are ``axis1``'s values and the columns ``axis2``'s; with one axis, the grid is one
    row whose columns are ``axis1``'s values. Every cell starts from ``settings`` with its axis
    values applied (see the module docstring for what each axis changes). The plan
    (:attr:`plan`) batches cells that differ only in the seed and, with Adam, in the ratio
    into one optimization of up to ``max_batch`` images; a ``steps`` axis never adds runs (its
    cells are snapshots of one run). With L-BFGS each seed and ratio runs alone, one after
    another (one L-BFGS curvature history for a batch would couple its images).

    Progress events: ``step``/``total`` count optimizer steps over the whole sweep, ``elapsed``
    is the sweep's wall clock, ``losses`` those of the current run (sums over its batch),
    ``preview`` the current run's images side by side, (1, 3, H, B*W + gaps), and ``stage``
    e.g. ``"run 2 of 3 (seeds 0, 1, 2 · ratio 1e-06), step 5 of 30"`` (the run's own step
    count only when there are several runs).

    Args:
        model: the feature network (VGG16/19).
        content: the content image (1, 3, H, W) in [0, 1] at the working size.
        style: a style image (1, 3, H', W') in [0, 1] or a list of (image, weight) pairs to blend;
            may be ``None`` when ``targets`` are given and no cell starts from the style image.
        settings: the base :class:`StyleSettings` (its ``steps`` is replaced by a ``steps``
            axis's values; its ``style_weight`` by a ``ratio`` axis).
        axis1: the rows' parameter (or the only one).
        axis2: the columns' parameter, a different one, or ``None``.
        targets: precomputed Gram targets (e.g. cached by the page) holding every style layer
            any cell uses (:attr:`style_layers`); computed from ``style`` (in float32) when the
            iteration starts when ``None``. Constructing a Sweep is cheap: it only plans.
        max_batch: most images in one batched run (memory grows linearly with it), >= 1.

    Attributes:
        axes: (axis1,) or (axis1, axis2).
        row_labels, col_labels: the grid's labels (``[""]`` rows with one axis).
        shape: (rows, columns).
        plan: the :class:`SweepRun` list, in the order they run.
        run_steps: steps of every run (the largest of a ``steps`` axis, else ``settings.steps``).
        total_steps: optimizer steps of the whole sweep (the progress events' ``total``).
        style_layers: every style layer some cell uses.
        cells: the finished :class:`SweepCell` objects, row-major; ``complete``: all there.
        seconds: wall clock of the iteration so far.

    Raises:
        ValueError: the same parameter twice, a ratio axis with content weight 0, settings a
            cell cannot have, missing style image or targets, unknown layers (one line).
    """

    def __init__(self, model, content: torch.Tensor, style, settings: StyleSettings, axis1: SweepAxis,
                 axis2: SweepAxis | None = None, *, targets: dict[str, torch.Tensor] | None = None,
                 max_batch: int = 9):
        settings.validate()
        if axis2 is not None and axis2.name == axis1.name:
            raise ValueError(f"sweep two different parameters; both axes are {axis1.name}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a whole number >= 1; got {max_batch!r}")
        if content.dim() != 4 or content.shape[0] != 1 or content.shape[1] != 3:
            raise ValueError(f"the content image must have shape (1, 3, H, W), got {tuple(content.shape)}")
        if "ratio" in (axis1.name, getattr(axis2, "name", None)) and not settings.content_weight > 0:
            raise ValueError("a content/style ratio sweep needs a content weight alpha > 0 (beta = alpha / ratio)")
        self.model, self.content, self.settings = model, content, settings
        self.axes = (axis1,) if axis2 is None else (axis1, axis2)
        self.max_batch = max_batch
        self.style = style
        style_list = [] if style is None else ([(style, 1.0)] if isinstance(style, torch.Tensor) else list(style))
        if axis2 is None:
            self.row_labels, self.col_labels = [""], axis1.labels
            grid = [((0, j), {axis1.name: v}) for j, v in enumerate(axis1.values)]
        else:
            self.row_labels, self.col_labels = axis1.labels, axis2.labels
            grid = [((i, j), {axis1.name: v1, axis2.name: v2})
                    for i, v1 in enumerate(axis1.values) for j, v2 in enumerate(axis2.values)]
        self._grid = grid
        steps_axis = next((a for a in self.axes if a.name == "steps"), None)
        self.run_steps = max(steps_axis.values) if steps_axis else settings.steps
        self._cell_settings = [self._apply(values) for _, values in grid]
        if any(s.init == "style" for s in self._cell_settings) and not style_list:
            raise ValueError("starting from the style image needs a style image")
        #: every style layer some cell uses (what ``targets`` must hold), in network order
        self.style_layers = tuple(sorted({l for s in self._cell_settings for l in s.style_layers}, key=_layer_order))
        model.check_layers([settings.content_layer, *self.style_layers])
        if targets is None and not style_list:
            raise ValueError("a style image (or precomputed style targets) is needed")
        missing = [l for l in self.style_layers if targets is not None and l not in targets]
        if missing:
            raise ValueError(f"the style targets lack layer(s) {', '.join(missing)}")
        self._style_list = style_list
        self.targets = targets  # computed when the sweep starts if not given
        self.plan = self._make_plan()
        self.total_steps = sum(r.settings.steps for r in self.plan)
        self._cells: dict[int, SweepCell] = {}
        self.seconds = 0.0

    # ------------------------------------------------------------------ planning

    def _apply(self, values: dict) -> StyleSettings:
        d = self.settings.to_dict()
        for name, v in values.items():
            if name == "ratio":
                d["style_weight"] = d["content_weight"] / v
            elif name == "style_layers":
                d["style_layers"], d["style_layer_weights"] = list(_layer_set(v)[1]), None
            else:
                d[name] = v
        return StyleSettings.from_dict(d)

    def _make_plan(self) -> list[SweepRun]:
        groups: dict[str, tuple[StyleSettings, list[tuple], list[tuple[int, tuple, int]]]] = {}
        for idx, cs in enumerate(self._cell_settings):
            run_s = StyleSettings.from_dict({**cs.to_dict(), "steps": self.run_steps})
            key = run_s.to_dict()
            key.pop("seed")
            if run_s.optimizer == "adam":  # element-wise: images of a batch stay independent
                key.pop("content_weight"), key.pop("style_weight")
            settings, members, cells = groups.setdefault(json.dumps(key, sort_keys=True), (run_s, [], []))
            # the seed only seeds a noise start: other starts share one image whatever their seed
            member = (cs.seed if cs.init == "noise" else settings.seed, cs.content_weight, cs.style_weight)
            if member not in members:
                members.append(member)
            cells.append((idx, member, cs.steps))
        plan = []
        for settings, members, cells in groups.values():
            per_run = self.max_batch if settings.optimizer == "adam" else 1
            for start in range(0, len(members), per_run):
                chunk = members[start:start + per_run]
                seed, cw, sw = chunk[0]
                run = SweepRun(StyleSettings.from_dict({**settings.to_dict(), "seed": seed, "content_weight": cw,
                                                        "style_weight": sw}),
                               [m[0] for m in chunk], [m[1] for m in chunk], [m[2] for m in chunk])
                run.cells = [(idx, chunk.index(m), step) for idx, m, step in cells if m in chunk]
                run.label = self._run_label(run)
                plan.append(run)
        return plan

    def _run_label(self, run: SweepRun) -> str:
        parts = []
        seeds = sorted(set(run.seeds))
        if len(seeds) > 1 or any(a.name == "seed" for a in self.axes):
            parts.append(("seeds " if len(seeds) > 1 else "seed ") + ", ".join(map(str, seeds)))
        ratios = sorted({c / s if s else math.inf for c, s in zip(run.content_weights, run.style_weights)})
        if len(ratios) > 1 or any(a.name == "ratio" for a in self.axes):
            parts.append("ratio " + ", ".join(f"{r:.3g}" for r in ratios))
        s = run.settings
        for a in self.axes:
            if a.name == "init":
                parts.append(f"start: {s.init}")
            elif a.name == "optimizer":
                parts.append(_OPTIMIZER_TITLES[s.optimizer])
            elif a.name == "style_layers":
                parts.append(_layer_set(s.style_layers)[0])
        if run.batch > 1:
            parts.append(f"batch of {run.batch}")
        return " · ".join(parts)

    # ------------------------------------------------------------------ running

    def __iter__(self) -> Iterator[ProgressEvent]:
        start = time.perf_counter()
        if self.targets is None:
            self.targets = style_targets(self.model, self._style_list, self.style_layers,
                                         pooling=self.settings.pooling, precision="fp32")
        done_steps = 0
        n = len(self.plan)
        for i, run in enumerate(self.plan):
            b = run.batch
            content = self.content.repeat(b, 1, 1, 1)
            overrides, seeds, alpha, beta = None, None, None, None
            if b > 1:  # per-image seeds and weights alpha, beta in one batch
                alpha, beta = torch.tensor(run.content_weights), torch.tensor(run.style_weights)
                overrides = [{"content_weight": a, "style_weight": w}
                             for a, w in zip(run.content_weights, run.style_weights)]
                seeds = run.seeds
            objective = gatys_objective(self.model, content, run.settings, self.targets, alpha=alpha, beta=beta)
            st = StyleTransfer(self.model, content, self.style, run.settings, objective=objective, seeds=seeds,
                               snapshot_steps=run.snapshot_steps)
            for ev in st:
                self.seconds = time.perf_counter() - start
                stage = f"run {i + 1} of {n}" + (f" ({run.label})" if run.label else "") + \
                    (f", step {ev.step} of {ev.total}" if n > 1 else "")
                yield ProgressEvent(done_steps + ev.step, self.total_steps, self.seconds, dict(ev.losses),
                                    preview=None if ev.preview is None else _side_by_side(ev.preview),
                                    message=f"run {i + 1}: {ev.message}" if ev.message else None,
                                    done=ev.done and i == n - 1, stage=stage)
            self._collect(i, run, st.results(overrides), st.stopped)
            done_steps += run.settings.steps
        self.seconds = time.perf_counter() - start

    def _collect(self, index: int, run: SweepRun, results, stopped: str | None) -> None:
        for cell_idx, member, step in run.cells:
            res = results[member]
            snaps = dict(res.snapshots)
            if step in snaps:
                image, row = snaps[step], next(h for h in res.history if h["step"] == step)
            else:  # the run stopped before this step: its last finite image
                image, row = res.image, res.history[-1] if res.history else {}
            (r, c), values = self._grid[cell_idx]
            cs = self._cell_settings[cell_idx]
            got = int(row.get("step", 0))
            self._cells[cell_idx] = SweepCell(
                row=r, col=c, row_label=self.row_labels[r], col_label=self.col_labels[c], values=dict(values),
                image=image.clone(), losses={k: float(row[k]) for k in ("content", "style", "tv", "total") if k in row},
                step=got, seconds=float(row.get("seconds", res.seconds)),
                settings=StyleSettings.from_dict({**cs.to_dict(), "steps": max(got, 1)}),
                run=index, batch=run.batch, stopped=stopped if got < step else None)

    @property
    def cells(self) -> list[SweepCell]:
        """The finished cells in row-major grid order (all of them after a full iteration; the
        cells of the runs finished so far when the iteration was stopped)."""
        return [self._cells[i] for i in sorted(self._cells)]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the grid."""
        return len(self.row_labels), len(self.col_labels)

    @property
    def complete(self) -> bool:
        """True when every cell is there."""
        return len(self._cells) == len(self._grid)

    def report(self) -> dict:
        """JSON-ready summary: axes, base settings, the plan (runs and batch sizes), seconds."""
        return {
            "axes": [{"name": a.name, "values": list(a.values)} for a in self.axes],
            "settings": self.settings.to_dict(),
            "runs": [{"label": r.label, "batch": r.batch, "steps": r.settings.steps, "cells": len(r.cells)}
                     for r in self.plan],
            "cells": len(self._grid),
            "cells_done": len(self._cells),
            "seconds": round(self.seconds, 3),
        }


def _layer_order(name: str) -> tuple:
    nums = re.findall(r"\d+", name)
    return tuple(int(x) for x in nums) + (name,)


def _side_by_side(images: torch.Tensor, gap: int = 2) -> torch.Tensor:
    """(B, 3, H, W) -> (1, 3, H, B*W + (B-1)*gap), images left to right on white gaps."""
    if images.shape[0] == 1:
        return images
    b, c, h, w = images.shape
    out = torch.ones(1, c, h, b * w + (b - 1) * gap, dtype=images.dtype)
    for i in range(b):
        out[0, :, :, i * (w + gap):i * (w + gap) + w] = images[i]
    return out


# ============================================================================ sweep outputs

_TABLE_LOSSES = ("content", "style", "tv", "total")
_TABLE_COLUMNS = ("row", "col", "row_label", "col_label", "step", *_TABLE_LOSSES, "seconds", "batch", "run", "seed",
                  "init", "optimizer", "content_weight", "style_weight", "ratio", "style_layers", "stopped")


def sweep_table(cells: Sequence[SweepCell]) -> list[dict]:
    """One dict per cell (grid order as given): position, labels, the parameters that define
    the cell, its losses and seconds. Keys: ``row, col, row_label, col_label, step, content,
    style, tv, total, seconds, batch, run, seed, init, optimizer, content_weight, style_weight,
    ratio, style_layers, stopped``. ``ratio`` is alpha/beta (``inf`` with beta 0);
    ``style_layers`` is space-separated; ``seconds`` is the wall clock of the cell's run
    (shared by a batch)."""
    rows = []
    for c in cells:
        s = c.settings
        rows.append({
            "row": c.row, "col": c.col, "row_label": c.row_label, "col_label": c.col_label, "step": c.step,
            **{k: c.losses.get(k, math.nan) for k in _TABLE_LOSSES},
            "seconds": round(c.seconds, 3), "batch": c.batch, "run": c.run,
            "seed": s.seed, "init": s.init, "optimizer": s.optimizer, "content_weight": s.content_weight,
            "style_weight": s.style_weight,
            "ratio": s.content_weight / s.style_weight if s.style_weight else math.inf,
            "style_layers": " ".join(s.style_layers), "stopped": c.stopped or "",
        })
    return rows


def sweep_csv(cells: Sequence[SweepCell]) -> str:
    """The cells as CSV text (``csv`` module, header line first, one row per cell, the columns
    of :func:`sweep_table`; losses with full float precision)."""
    rows = sweep_table(cells)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()




def sweep_grid_image(cells: Sequence[SweepCell], *, rows: Sequence[str] | None = None,
                     cols: Sequence[str] | None = None, row_title: str = "", col_title: str = "",
                     title: str = "", losses: Sequence[str] = ("content", "style", "total"),
                     cell_px: int | None = None, font_size: int = 12):
    """A labelled image grid of a sweep (Pillow ``ImageDraw``): column labels on top, row labels
    on the left, and under each cell its losses (3 significant digits).

    Args:
        cells: :class:`SweepCell` objects (any order; their ``row``/``col`` place them).
        rows, cols: labels of every row and column (default: those of the cells given); a grid
            position without a cell (a stopped sweep) is drawn as a grey "not run" box.
        row_title, col_title: axis titles (e.g. :attr:`SweepAxis.title`); ``title``: a top line
            (e.g. the weights label).
        losses: which of ``content``, ``style``, ``tv``, ``total`` to print under each cell.
        cell_px: scale each image so its long side is this many pixels (``None``: as computed;
            images smaller than 128 px are scaled up to 128 so the labels fit).
        font_size: label size in pixels.

    Returns:
        an RGB ``PIL.Image``.

    Raises:
        ValueError: no cells and no labels to lay out.
    """
    from PIL import Image, ImageDraw, ImageFont

    from .images import to_pil

    if rows is None:
        rows = _labels(cells, "row")
    if cols is None:
        cols = _labels(cells, "col")
    if not rows or not cols:
        raise ValueError("nothing to draw: no cells")
    try:
        font = ImageFont.load_default(size=font_size)
        bold = ImageFont.load_default(size=font_size + 1)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        font = bold = ImageFont.load_default()
    pics = {(c.row, c.col): to_pil(c.image) for c in cells}
    if pics:
        w0, h0 = max(p.width for p in pics.values()), max(p.height for p in pics.values())
    else:
        w0 = h0 = cell_px or 128
    target = cell_px or max(128, max(w0, h0))
    k = target / max(w0, h0)
    cw, ch = max(1, round(w0 * k)), max(1, round(h0 * k))
    pics = {pos: p.resize((round(p.width * k), round(p.height * k)), Image.Resampling.LANCZOS)
            if k != 1 else p for pos, p in pics.items()}
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(text, f=font):
        return probe.textbbox((0, 0), text, font=f)[2] if text else 0

    lh = font_size + 4
    pad = 8
    col_lines = [_wrap(t, cw, lambda x: width(x, bold)) for t in cols]
    row_w = min(220, max(width(t, bold) for t in rows)) + pad if any(rows) else 0
    row_lines = [_wrap(t, max(row_w - pad, 40), lambda x: width(x, bold)) for t in rows]
    axes = ";  ".join(t for t in (f"rows: {row_title}" if row_title else "",
                                   f"columns: {col_title}" if col_title else "") if t)
    head = (lh if title else 0) + (lh if axes else 0) + lh * max(len(l) for l in col_lines) + pad // 2
    text_h = lh * len(losses) + pad
    W = max(pad + row_w + len(cols) * (cw + pad), pad * 2 + max(width(title, bold), width(axes)))
    H = pad + head + len(rows) * (ch + text_h)
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    y = pad
    if title:
        d.text((pad, y), title, fill=(40, 40, 40), font=bold)
        y += lh
    if axes:
        d.text((pad, y), axes, fill=(90, 90, 90), font=font)
        y += lh
    for j, lines in enumerate(col_lines):
        x0 = pad + row_w + j * (cw + pad)
        for n, line in enumerate(lines):
            d.text((x0, y + n * lh), line, fill=(0, 0, 0), font=bold)
    top = pad + head
    for i, lines in enumerate(row_lines):
        y0 = top + i * (ch + text_h)
        for n, line in enumerate(lines):
            d.text((pad, y0 + ch // 2 - lh * len(lines) // 2 + n * lh), line, fill=(0, 0, 0), font=bold)
        for j in range(len(cols)):
            x0 = pad + row_w + j * (cw + pad)
            pic = pics.get((i, j))
            if pic is None:
                d.rectangle([x0, y0, x0 + cw - 1, y0 + ch - 1], fill=(225, 225, 225))
                d.text((x0 + 6, y0 + ch // 2 - lh // 2), "not run", fill=(110, 110, 110), font=font)
                continue
            img.paste(pic, (x0, y0))
            cell = next(c for c in cells if (c.row, c.col) == (i, j))
            for n, key in enumerate(losses):
                v = cell.losses.get(key)
                text = f"{key} {v:.3g}" if v is not None else f"{key} -"
                d.text((x0, y0 + ch + 2 + n * lh), text, fill=(60, 60, 60), font=font)
    return img


def _labels(cells: Sequence[SweepCell], which: str) -> list[str]:
    found: dict[int, str] = {}
    for c in cells:
        found[getattr(c, which)] = getattr(c, f"{which}_label")
    return [found.get(i, "") for i in range(max(found) + 1)] if found else []


def _wrap(text: str, limit: int, width) -> list[str]:
    """Break ``text`` at spaces into lines at most ``limit`` px wide (a word longer than that
    stays whole)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and width(lines[-1] + " " + word) <= limit:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]
