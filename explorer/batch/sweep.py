"""Parameter sweeps: many style transfers over a grid of one or two parameters (style blends
are in :mod:`explorer.style.blend`, the sweep's table, CSV and grid image in
:mod:`explorer.batch.sweep_render`, dataset augmentation in :mod:`explorer.batch.augment`).

:class:`Sweep` runs a grid over one or two parameters (:class:`~explorer.batch.sweep_axes.SweepAxis`) and keeps, per cell,
the image, its final losses and the seconds its run took. The axes (``alpha_beta``, ``steps``,
``seed``, ``init``, ``style_layers``, ``optimizer``) and what each changes are in
:mod:`explorer.batch.sweep_axes`.

Runs are grouped: cells whose settings differ only in the seed and, with Adam, in alpha/beta,
run as ONE batched :class:`~explorer.style.transfer.StyleTransfer` (a :class:`SweepRun`: a batch of images
through the network at once; ``seeds=`` and per-image ``alpha``/``beta`` of :func:`explorer.style.gatys.gatys_objective`). Adam updates each pixel from its
own gradient, so a batched image follows the path it would follow alone. L-BFGS keeps one
curvature history for all the variables it optimizes, so batching would couple the images: with
L-BFGS every seed and alpha/beta is its own run, one after another.

:class:`Sweep` and :class:`SweepRun` are :class:`explorer.core.runs.Run` objects.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..core.progress import ProgressEvent
from ..core.runs import Run
from ..style.transfer import StyleTransfer
from ..style.gatys import gatys_objective, style_targets
from ..style.settings import StyleSettings
from .sweep_axes import OPTIMIZER_TITLES, SweepAxis, layer_set

__all__ = ["SweepCell", "SweepRun", "Sweep"]


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


class SweepRun(Run):
    """One optimization of a sweep's plan: a (batched) :class:`~explorer.style.transfer.StyleTransfer`
    whose images fill some of the sweep's cells. :class:`Sweep` plans these; iterating one runs
    its optimization (the StyleTransfer's :class:`~explorer.core.progress.ProgressEvent` objects).

    Args:
        settings: the run's settings (steps = the most any of its cells needs; seed and weights
            of its first image).
        seeds, content_weights, style_weights: per image of the batch (length = batch size).
        cells: (cell index in grid order, image index in the batch, step) per cell it fills.
        label: what sets it apart, for the progress line (e.g. ``"seeds 0, 1, 2 · ratio 1e-06"``).
        model, content, style: what it runs on: the network, the content image (1, 3, H, W) in
            [0, 1] (repeated for each image of the batch) and the style image or blend list.
        targets: Gram targets of every style layer it uses; :class:`Sweep` sets them before it
            iterates the run (``None``: computed from ``style`` by the StyleTransfer).

    Attributes:
        the arguments, and ``notes`` (empty) and ``stopped`` (why its StyleTransfer stopped
        early: a non-finite loss), as every :class:`~explorer.core.runs.Run`.
    """

    def __init__(self, settings: StyleSettings, seeds: list[int], content_weights: list[float],
                 style_weights: list[float], cells: list[tuple[int, int, int]] | None = None, label: str = "", *,
                 model=None, content: torch.Tensor | None = None, style=None,
                 targets: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.settings, self.seeds = settings, list(seeds)
        self.content_weights, self.style_weights = list(content_weights), list(style_weights)
        self.cells: list[tuple[int, int, int]] = list(cells or [])
        self.label = label
        self.model, self.content, self.style, self.targets = model, content, style, targets
        self._transfer: StyleTransfer | None = None
        self._overrides: list[dict] | None = None

    @property
    def batch(self) -> int:
        """How many images it optimizes at once."""
        return len(self.seeds)

    @property
    def snapshot_steps(self) -> tuple[int, ...]:
        """The steps at which its cells photograph it, ascending."""
        return tuple(sorted({step for _, _, step in self.cells}))

    def __iter__(self) -> Iterator[ProgressEvent]:
        if self.model is None or self.content is None:
            raise RuntimeError("this sweep run has no model or content image to run on")
        b = self.batch
        content = self.content.repeat(b, 1, 1, 1)
        alpha = beta = seeds = None
        self._overrides = None
        if b > 1:  # per-image seeds and weights alpha, beta in one batch
            alpha, beta = torch.tensor(self.content_weights), torch.tensor(self.style_weights)
            self._overrides = [{"content_weight": a, "style_weight": w}
                               for a, w in zip(self.content_weights, self.style_weights)]
            seeds = self.seeds
        objective = gatys_objective(self.model, content, self.settings, self.targets, alpha=alpha, beta=beta)
        self._transfer = StyleTransfer(self.model, content, self.style, self.settings, objective=objective,
                                       seeds=seeds, snapshot_steps=self.snapshot_steps)
        yield from self._transfer
        if self._transfer.stopped:
            self.stop(self._transfer.stopped)

    def result(self) -> list:
        """One :class:`~explorer.style.transfer.StyleResult` per image of the batch (so far).

        Raises:
            RuntimeError: the run has not started.
        """
        if self._transfer is None:
            raise RuntimeError("this sweep run has not started")
        return self._transfer.results(self._overrides)

    def report(self) -> dict:
        """What the sweep's report says of this run: label, batch size, steps, cells it fills."""
        return {"label": self.label, "batch": self.batch, "steps": self.settings.steps, "cells": len(self.cells)}


class Sweep(Run):
    """A grid of style transfers over one or two parameters, as an iterable of ProgressEvents
    (an :class:`explorer.core.runs.Run`: :meth:`result` gives the finished cells).

    Usage::

        sweep = Sweep(model, content, style, settings, SweepAxis("alpha_beta", log_alpha_beta(1e-8, 1e-4, 3)),
                      SweepAxis("seed", (0, 1, 2)))
        for event in sweep:        # the page draws these; stage says which run
            ...
        sweep.result()             # row-major list of SweepCell (also sweep.cells)
        sweep_render.sweep_grid_image(sweep.cells, rows=sweep.row_labels, cols=sweep.col_labels)

    The rows are ``axis1``'s values and the columns ``axis2``'s; with one axis, the grid is one
    row whose columns are ``axis1``'s values. Every cell starts from ``settings`` with its axis
    values applied (see :mod:`explorer.batch.sweep_axes` for what each axis changes). The plan
    (:attr:`plan`) batches cells that differ only in the seed and, with Adam, in alpha/beta
    into one optimization of up to ``max_batch`` images; a ``steps`` axis never adds runs (its
    cells are snapshots of one run). With L-BFGS each seed and alpha/beta runs alone, one after
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
            axis's values; its ``style_weight`` by an ``alpha_beta`` axis).
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
        ValueError: the same parameter twice, an alpha_beta axis with content weight 0, settings a
            cell cannot have, missing style image or targets, unknown layers (one line).
    """

    def __init__(self, model, content: torch.Tensor, style, settings: StyleSettings, axis1: SweepAxis,
                 axis2: SweepAxis | None = None, *, targets: dict[str, torch.Tensor] | None = None,
                 max_batch: int = 9):
        super().__init__()
        settings.validate()
        if axis2 is not None and axis2.name == axis1.name:
            raise ValueError(f"sweep two different parameters; both axes are {axis1.name}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a whole number >= 1; got {max_batch!r}")
        if content.dim() != 4 or content.shape[0] != 1 or content.shape[1] != 3:
            raise ValueError(f"the content image must have shape (1, 3, H, W), got {tuple(content.shape)}")
        if "alpha_beta" in (axis1.name, getattr(axis2, "name", None)) and not settings.content_weight > 0:
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
            if name == "alpha_beta":
                d["style_weight"] = d["content_weight"] / v
            elif name == "style_layers":
                d["style_layers"], d["style_layer_weights"] = list(layer_set(v)[1]), None
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
                               [m[0] for m in chunk], [m[1] for m in chunk], [m[2] for m in chunk],
                               model=self.model, content=self.content, style=self.style)
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
        if len(ratios) > 1 or any(a.name == "alpha_beta" for a in self.axes):
            parts.append("ratio " + ", ".join(f"{r:.3g}" for r in ratios))
        s = run.settings
        for a in self.axes:
            if a.name == "init":
                parts.append(f"start: {s.init}")
            elif a.name == "optimizer":
                parts.append(OPTIMIZER_TITLES[s.optimizer])
            elif a.name == "style_layers":
                parts.append(layer_set(s.style_layers)[0])
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
            run.targets = self.targets
            for ev in run:
                self.seconds = time.perf_counter() - start
                stage = f"run {i + 1} of {n}" + (f" ({run.label})" if run.label else "") + \
                    (f", step {ev.step} of {ev.total}" if n > 1 else "")
                yield ProgressEvent(done_steps + ev.step, self.total_steps, self.seconds, dict(ev.losses),
                                    preview=None if ev.preview is None else _side_by_side(ev.preview),
                                    message=f"run {i + 1}: {ev.message}" if ev.message else None,
                                    done=ev.done and i == n - 1, stage=stage)
            self._collect(i, run, run.result(), run.stopped)
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

    def result(self) -> list[SweepCell]:
        """The finished cells so far, row-major (:attr:`cells`)."""
        return self.cells

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
            "runs": [r.report() for r in self.plan],
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
