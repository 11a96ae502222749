"""Dream zoom: an endless-zoom sequence of dreams, each frame the previous one zoomed in a little
and dreamed again (the DeepDream notebook's last section), as :func:`zoom_frames` and the run
:class:`ZoomRun`.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from .deepdream import DreamRun, build_objective, check_dream_memory
from .settings import DreamSettings
from ..nets.models import FeatureNet
from ..optim.objectives import Objective
from ..core.devices import precision_name
from ..core.progress import ProgressEvent
from ..core.recipes import run_info
from ..core.runs import Run

__all__ = ["zoom_frames", "ZoomRun"]


def zoom_frames(model: FeatureNet, image: torch.Tensor, settings: DreamSettings, frames: int,
                zoom: float = 0.05, guide_image: torch.Tensor | None = None,
                objective: Objective | None = None) -> Iterator[tuple[int, ProgressEvent | torch.Tensor]]:
    """Dream-zoom sequence: dream, zoom in by ``zoom`` (fraction, e.g. 0.05 = 5 %) and crop back
    to the same size, dream again; ``frames`` times.

    Yields ``(frame_index, event)`` for progress and ``(frame_index, image)`` once each frame is
    done (image (1, 3, H, W) in [0, 1], CPU).
    """
    if not 0 <= zoom < 0.5:
        raise ValueError("zoom must be between 0 and 0.5")
    x = image
    objective = objective or build_objective(model, settings, guide_image)
    h, w = image.shape[-2:]
    for i in range(frames):
        run = DreamRun(model, x, settings, objective=objective)
        for ev in run:
            yield i, ev
        x = run.result().image
        yield i, x
        zh, zw = round(h * (1 + zoom)), round(w * (1 + zoom))
        big = F.interpolate(x, size=(zh, zw), mode="bilinear", align_corners=False)
        top, left = (zh - h) // 2, (zw - w) // 2
        x = big[..., top:top + h, left:left + w]


class ZoomRun(Run):
    """A dream-zoom sequence (:func:`zoom_frames`) as one iterable of :class:`ProgressEvent`
    with steps counted across all frames; ``frames`` collects the finished frames
    ((1, 3, H, W) in [0, 1], CPU) and stays valid when the run is stopped early.

    Raises:
        ValueError: bad frames, zoom or dream settings; MemoryEstimateError (a ValueError): the
            dream or the frames it keeps would not fit in the free memory (before any work).
    """

    def __init__(self, model: FeatureNet, image: torch.Tensor, settings: DreamSettings, frames: int,
                 zoom: float = 0.05, guide_image: torch.Tensor | None = None):
        if not 1 <= frames <= 500:
            raise ValueError("zoom frames must be between 1 and 500")
        if not 0 <= zoom < 0.5:
            raise ValueError("zoom must be between 0 and 0.5")
        self.model, self.image, self.settings = model, image, settings
        self.n_frames, self.zoom = frames, zoom
        super().__init__()
        self.objective = build_objective(model, settings, guide_image)
        # the first frame's run checks layers, channels, sizes and its own memory before any work
        first = DreamRun(model, image, settings, objective=self.objective)
        self.notes = first.notes
        self.dtype = first.dtype
        # every finished frame is kept (and written as a GIF): the whole sequence must fit
        check_dream_memory(model, *image.shape[-2:], first.settings, first.objective.layers, first.dtype,
                           len(first.sizes), frames=frames)  # MemoryEstimateError
        self.frames: list[torch.Tensor] = []

    def result(self) -> list[torch.Tensor]:
        """The finished frames so far, each (1, 3, H, W) in [0, 1] on the CPU."""
        return list(self.frames)

    def report(self) -> dict:
        """JSON-ready report of the sequence so far (CLI ``--report`` and the page's recipe): the
        run-info block (:func:`explorer.core.recipes.run_info`), then the sequence's."""
        return {**run_info("dream", self.settings.to_dict(), self.model.weights, self.model.device,
                           precision_name(self.dtype)),
                "objective": self.objective.description,
                "weights": self.model.weights.kind, "weights_label": self.model.weights.label,
                "zoom_frames": len(self.frames), "zoom": self.zoom, "stopped": self.stopped}

    def __iter__(self) -> Iterator[ProgressEvent]:
        offset, per = 0, None
        for i, item in zoom_frames(self.model, self.image, self.settings, self.n_frames, self.zoom,
                                   objective=self.objective):
            if isinstance(item, torch.Tensor):
                self.frames.append(item)
                offset += per or 0
                continue
            per = item.total
            total = per * self.n_frames
            preview = item.preview if item.preview is not None and item.step > 0 else None
            yield ProgressEvent(offset + item.step, total, item.elapsed, item.losses, preview=preview,
                                message=item.message if item.step == 0 else None,
                                done=item.done and i == self.n_frames - 1,
                                stage=f"frame {i + 1} of {self.n_frames}" + (f", {item.stage}" if item.stage else ""))
