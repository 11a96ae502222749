"""Progress events: the one thing long computations share with their front ends.

Every long computation (style transfer, and later dream, occlusion, augmentation) is an
iterable that yields :class:`ProgressEvent` objects. The Streamlit page turns them into a
progress bar, a live preview and Plotly loss curves (``explorer.app.ui``); the CLI turns the same
events into a tqdm bar (:func:`tqdm_events`). No loop is written twice.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

__all__ = ["ProgressEvent", "tqdm_events"]


@dataclass
class ProgressEvent:
    """One step of a long computation.

    Attributes:
        step: steps done so far (1-based after the first step; 0 before any).
        total: steps planned.
        elapsed: seconds since the computation started (wall clock).
        losses: named scalar values at this step (e.g. ``content``, ``style``, ``tv``, ``total``).
        preview: the current image, shape (1, 3, H, W), values in [0, 1], on the CPU, or ``None``
            when this event carries no preview (previews come every few steps).
        message: a one-line note for the user (e.g. why the run stopped early), or ``None``.
        done: True on the last event of a run.
        stage: where a multi-stage computation is, e.g. ``"octave 2 of 4 (183x244 px)"``.
    """

    step: int
    total: int
    elapsed: float
    losses: dict[str, float] = field(default_factory=dict)
    preview: torch.Tensor | None = None
    message: str | None = None
    done: bool = False
    stage: str | None = None

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        return min(1.0, self.step / self.total) if self.total else 1.0


def tqdm_events(events: Iterable[ProgressEvent], desc: str = "", disable: bool | None = None,
                keys: tuple[str, ...] = ("total", "content", "style")) -> Iterator[ProgressEvent]:
    """Render events with a tqdm bar on stderr while passing them through unchanged; an event's
    ``message`` is printed on stderr too (above the bar, also when the bar is hidden), so
    stdout stays free for a command's results.

    Args:
        events: any iterable of :class:`ProgressEvent`.
        desc: label shown before the bar.
        disable: passed to tqdm (``None`` hides the bar when stderr is not a terminal).
        keys: which losses to show in the bar's postfix.
    """
    from tqdm.auto import tqdm

    bar = None
    try:
        for ev in events:
            if bar is None:
                bar = tqdm(total=ev.total, desc=desc, unit="step", disable=disable, dynamic_ncols=True,
                           file=sys.stderr)
            bar.n = ev.step
            post = {k: f"{ev.losses[k]:.4g}" for k in keys if k in ev.losses}
            if ev.stage:
                post = {"at": ev.stage, **post}
            if post:
                bar.set_postfix(post, refresh=False)
            bar.refresh()
            if ev.message:
                bar.write(ev.message, file=sys.stderr)
            yield ev
    finally:
        if bar is not None:
            bar.close()
