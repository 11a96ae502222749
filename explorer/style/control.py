"""Control over the result: colour preservation, coarse-to-fine scales, Deep Photo Style
Transfer (photorealism regularizer and semantic masks), around one Gatys optimization loop.

:class:`ControlledTransfer` is what the style page and ``python -m explorer stylize`` run. With
the default settings it is exactly one :class:`explorer.style.transfer.StyleTransfer`; otherwise:

1. **Colour** (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer",
   sec. 5): ``histogram`` (each RGB channel's histogram) and ``linear`` (the paper's RGB mean and
   covariance transform, sec. 5.2) recolour each style image with the content's colours before the
   transfer; ``luminance`` runs the transfer on luminance images and recombines the result's
   luminance with the content's colour channels (:mod:`explorer.style.color`).
2. **Scales**: the schedule of :meth:`StyleSettings.scale_plan`, smallest first. Each scale
   prepares the images at its size from the originals (Lanczos), recomputes the style targets,
   and starts from the previous scale's result, upsampled (bicubic), with the content's detail
   that the upsampling loses added back (as Deep Dream's octaves re-inject detail). Progress events count the
   steps of all scales and name the scale in ``stage``.
3. **Deep Photo Style Transfer** (F. Luan, S. Paris, E. Shechtman, K. Bala, "Deep Photo Style
   Transfer", CVPR 2017): with ``photo_lambda`` > 0 the loss gains lambda * L_m, the
   photorealism regularizer of eq. (2) on the Matting Laplacian of the content image at each
   scale (:mod:`explorer.style.matting`); with ``masks`` the style loss becomes the augmented style
   loss of eq. (3a)-(3b) (:func:`explorer.optim.losses.region_style_layer_loss`), one Gram matrix per semantic region shared by the content and
   style images (:mod:`explorer.style.regions`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from . import color, guides, matting, regions
from ..optim import objectives
from .blend import prepare_blend
from .gatys import gatys_objective, style_targets
from ..optim.losses import region_plan
from ..nets.models import FeatureNet
from ..core.devices import resolve_precision
from ..optim.objectives import LayerGuide
from ..core.progress import ProgressEvent
from ..core.runs import Note, Run
from .transfer import StyleResult, StyleTransfer, check_style_memory
from .settings import StyleSettings

__all__ = ["ControlledTransfer", "MaskInputs", "describe"]


@dataclass
class MaskInputs:
    """The user's colour-coded mask images for ``masks="files"``: a path, bytes or an
    uploaded file each (same colour = same region in both)."""

    content: Any = None
    style: Any = None


def unsupported(settings: StyleSettings, n_styles: int, *, guided: bool = False,
                mask_inputs: MaskInputs | None = None) -> str | None:
    """Why this combination of options cannot run, in one line, or None when it can. Checked
    before Run, so the page can disable its button and say why (and :class:`ControlledTransfer`
    refuses the same combinations with the same words).

    Args:
        settings: the run's settings.
        n_styles: how many style images are blended.
        guided: saliency-guided (or channel-selected) style targets are used.
        mask_inputs: the uploaded masks when ``settings.masks == "files"``.
    """
    if guided and (len(settings.scale_plan()) > 1 or settings.preserve_color != "none" or settings.masks != "none"):
        return ("saliency-guided style targets work with one scale, no colour preservation and no semantic "
                "masks")
    if settings.masks != "none" and n_styles != 1:
        return ("semantic regions pair the regions of one style image with the content's; remove the extra "
                "style images or choose no semantic regions")
    if settings.masks == "files" and (mask_inputs is None or mask_inputs.content is None or mask_inputs.style is None):
        return "semantic regions from files need a colour-coded mask for the content and one for the style image"
    return None


def describe(settings: StyleSettings, run: "ControlledTransfer | None" = None) -> str:
    """A short ", ..." phrase naming the controls in use, for the CLI's run line."""
    parts = []
    if settings.preserve_color != "none":
        parts.append(f"{settings.preserve_color} colour preservation")
    plan = settings.scale_plan()
    if len(plan) > 1:
        parts.append(f"{len(plan)} scales " + " -> ".join(f"{sz} px x{n}" for sz, n in plan))
    if settings.photo_lambda > 0:
        parts.append(f"photorealism lambda {settings.photo_lambda:g}")
    if settings.masks != "none":
        count = f"{len(run.regions.names)} " if run is not None and run.regions is not None else ""
        parts.append(f"{count}semantic regions from {settings.masks}"
                     + (f" (k={settings.mask_k})" if settings.masks == "auto" else ""))
    return "".join(", " + p for p in parts)


def _resize(x: torch.Tensor, hw: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    if mode == "area":
        return F.interpolate(x, size=hw, mode="area")
    return F.interpolate(x, size=hw, mode=mode, align_corners=False, antialias=True).clamp(0, 1)


class ControlledTransfer(Run):
    """A style transfer with colour control, coarse-to-fine scales, photorealism and semantic
    masks, as an iterable of :class:`ProgressEvent` (same use as :class:`StyleTransfer`)::

        run = ControlledTransfer(model, content_pil, [(style_pil, 1.0)], settings)
        for event in run:
            ...
        result = run.result()     # final size, colours restored; valid after stopping too

    Args:
        model: the shared feature network.
        content: the content image, PIL RGB (any size; scaled to each scale's working size).
        styles: (PIL RGB image, blend weight) pairs; semantic masks need exactly one.
        settings: :class:`StyleSettings` (``size`` is the final long side in pixels).
        mask_inputs: the mask images when ``settings.masks == "files"``.
        targets_fn: computes Gram targets from (model, [(style tensor, weight)], settings);
            default :func:`explorer.style.gatys.style_targets` (the page passes a cached one).
        targets, style_channels: precomputed targets of a saliency-guided run (single scale,
            no colour change and no masks only).

    Raises:
        ValueError: combinations that are not supported (one-line messages), bad masks.
        explorer.nets.weights.WeightsError: ``masks="segmentation"`` without pretrained weights.
    """

    def __init__(self, model: FeatureNet, content, styles: Sequence[tuple[Any, float]], settings: StyleSettings,
                 *, mask_inputs: MaskInputs | None = None,
                 targets_fn: Callable[[FeatureNet, list, StyleSettings], dict] | None = None,
                 targets: dict | None = None, style_channels: dict | None = None):
        super().__init__()
        settings.validate()
        self.model, self.settings = model, settings
        self.content_image, self.style_images = content, list(styles)
        self.plan = settings.scale_plan()
        self.targets_fn = targets_fn or (lambda m, blend, s: style_targets(m, blend, s.style_layers,
                                                                           pooling=s.pooling, precision="fp32"))
        reason = unsupported(settings, len(self.style_images), guided=targets is not None or bool(style_channels),
                             mask_inputs=mask_inputs)
        if reason:
            raise ValueError(reason)
        self.fixed_targets, self.style_channels = targets, style_channels
        self._check_smallest_scale()
        # the final size's images: the masks are resolved there once and resampled per scale
        self.content_final, blend = prepare_blend(content, self.style_images, settings.size)
        self._final_blend = blend  # the last scale reuses these instead of resizing again
        self.regions = self._resolve_masks(blend[0][0] if blend else None, mask_inputs)
        self.dtype = resolve_precision(settings.precision, model.device)
        check_style_memory(model, self.content_final, settings, self.dtype)  # the largest scale must fit
        self.notes = [Note("regions", n) for n in self.regions.notes] if self.regions is not None else []
        self.run: StyleTransfer | None = None
        self.scale_results: list[StyleResult] = []
        self.history: list[dict] = []
        self.seconds = 0.0
        self.targets: dict | None = None  # the current scale's style targets and layer guides
        self.layer_guides: dict[str, LayerGuide] = {}
        self.scale_index = 0
        self._scale_started = 0.0
        self._content_at_scale: torch.Tensor | None = None

    # ------------------------------------------------------------------ set-up

    def _resolve_masks(self, style_final: torch.Tensor | None, mask_inputs: MaskInputs | None):
        s = self.settings
        if s.masks == "none":
            return None
        c = self.content_final
        if s.masks == "files":  # both masks are there (unsupported() checked it)
            cl, cc = regions.load_color_mask(mask_inputs.content, tuple(c.shape[-2:]), role="content mask")
            sl, sc = regions.load_color_mask(mask_inputs.style, tuple(style_final.shape[-2:]), role="style mask")
            return regions.match_regions(cl, cc, sl, sc)
        if s.masks == "auto":
            return regions.auto_masks(c, style_final, s.mask_k, seed=s.seed)
        return regions.segmentation_masks(c, style_final, device=self.model.device)

    def _check_smallest_scale(self) -> None:
        """Refuse, before any work, a first scale whose images are smaller than the network takes."""
        size = self.plan[0][0]
        least = self.model.spec.min_size
        for img in [self.content_image, *(im for im, _ in self.style_images)]:
            w, h = img.size
            short = round(min(w, h) * size / max(w, h))
            if short < least:
                need = -(-least * max(w, h) // min(w, h))
                where, what = ("the first scale", "start size") if len(self.plan) > 1 else ("the working size", "size")
                raise ValueError(f"{where} ({size} px) makes a {w}x{h} image {short} px on its short side; "
                                 f"{self.model.name} needs at least {least} px: use a {what} of {need} px or more")

    def _images_at(self, size: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, float]]]:
        """(colour content, content the network sees, styles the network sees) at ``size``."""
        if size == self.settings.size:
            c, blend = self.content_final, self._final_blend
        else:
            c, blend = prepare_blend(self.content_image, self.style_images, size)
        mode = self.settings.preserve_color
        if mode == "histogram":
            blend = [(color.match_color_histogram(st, c), w) for st, w in blend]
            return c, c, blend
        if mode == "linear":
            blend = [(color.match_color_linear(st, c), w) for st, w in blend]
            return c, c, blend
        if mode == "luminance":
            cy, blend = color.luminance_only(c, blend)
            return c, cy, blend
        return c, c, blend

    def _scale_run(self, index: int, init: torch.Tensor | None) -> StyleTransfer:
        s = self.settings
        size, steps = self.plan[index]
        colour_content, content, blend = self._images_at(size)
        self._content_at_scale = colour_content
        settings = StyleSettings.from_dict({**s.to_dict(), "size": size, "steps": steps, "scales": 1})
        targets = self.fixed_targets
        layer_guides = {l: LayerGuide(channels=idx) for l, idx in (self.style_channels or {}).items()}
        if self.regions is not None:
            layers = list(s.style_layers)
            style_t = blend[0][0]
            sm = _resize(self.regions.style[:, None], tuple(style_t.shape[-2:]), "area")[:, 0]
            cm = _resize(self.regions.content[:, None], tuple(content.shape[-2:]), "area")[:, 0]
            targets = style_targets(self.model, style_t, layers, pooling=s.pooling, regions=sm)
            masks = guides.region_layer_masks(cm.to(self.model.device), self.model, layers)
            layer_guides = {l: LayerGuide(masks=m, plan=region_plan(m)) for l, m in masks.items()}
        elif targets is None:
            targets = self.targets_fn(self.model, blend, settings)
        self.targets, self.layer_guides = targets, layer_guides
        objective = gatys_objective(self.model, content, settings, targets, guides=layer_guides)
        if s.photo_lambda > 0:
            lap = matting.MattingLaplacian(colour_content[0], device=self.model.device)
            if s.loss_normalization == "relative":  # per pixel, like the size-independent relative losses
                pixels = colour_content.shape[-1] * colour_content.shape[-2]
                term = objectives.image_term("photo", lambda x, lap=lap, n=pixels: lap.loss(x) / n,
                                             "L_m / pixels (Matting Laplacian)")
            else:
                term = objectives.image_term("photo", lap.loss, "L_m (Matting Laplacian)")
            objective = objective + s.photo_lambda * term
        if init is not None:
            init = self._upsample_start(init, content)
        return StyleTransfer(self.model, content, blend, settings, objective=objective, init_image=init)

    def _upsample_start(self, result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """The start of the next scale: the previous scale's result upsampled (bicubic), plus
        the detail that upsampling loses, taken from the content image: content at this scale
        minus the previous scale's content upsampled the same way (the detail re-injection of
        Deep Dream's octaves). Without it the start is a blurred image, whose content loss
        at the new size is tens of times the previous scale's final one."""
        hw = tuple(content.shape[-2:])
        previous = self.run.content[:1].to(content.device)  # what the network saw at the last scale
        detail = content - _resize(previous, hw)
        return (_resize(result.to(content.device), hw) + detail).clamp(0, 1)

    # ------------------------------------------------------------------ the loop

    @property
    def total_steps(self) -> int:
        return sum(n for _, n in self.plan)

    def _finish_image(self, x: torch.Tensor) -> torch.Tensor:
        """The image a user sees: luminance recombined with the content's colours."""
        if self.settings.preserve_color != "luminance":
            return x
        c = self._content_at_scale
        return color.recombine_luminance(x, _resize(c, tuple(x.shape[-2:])).to(x.device))

    def __iter__(self) -> Iterator[ProgressEvent]:
        """Events of every scale: ``step`` counts all scales' steps (``total`` their sum) and
        ``stage`` names the scale and its size when there is more than one."""
        start = time.perf_counter()
        offset, init = 0, None
        n = len(self.plan)
        for i in range(n):
            run = self._scale_run(i, init)  # may be refused (memory): self.run stays the last scale's
            self.scale_index, self.run = i, run
            h, w = self.run.content.shape[-2:]
            stage = f"scale {i + 1} of {n} ({w}x{h} px)" if n > 1 else None
            self._scale_started = time.perf_counter() - start  # after this scale's set-up
            for ev in self.run:
                self.seconds = time.perf_counter() - start
                preview = None if ev.preview is None else self._finish_image(ev.preview)
                last = i == n - 1
                yield ProgressEvent(offset + ev.step, self.total_steps, self.seconds, ev.losses, preview=preview,
                                    message=ev.message, done=ev.done and (last or self.run.stopped is not None),
                                    stage=stage)
            res = self.run.result()
            self.history += self._scale_history(i, res)
            self.scale_results.append(res)
            if res.stopped:
                self.stopped = res.stopped + (f" (at scale {i + 1} of {n}; the image was upsampled to "
                                              f"{self.settings.size} px)" if i < n - 1 else "")
                return
            offset += self.plan[i][1]
            init = res.image

    def _scale_history(self, index: int, res: StyleResult) -> list[dict]:
        """Scale ``index``'s history rows with steps counted over all scales, ``seconds`` since
        the start of the whole run (set-up of every scale included), and ``scale``/``size``."""
        size, offset = self.plan[index][0], sum(n for _, n in self.plan[:index])
        # the upsampled start of a later scale is left out: the previous scale's last row stands for it
        return [{**h, "step": offset + h["step"], "seconds": round(self._scale_started + h["seconds"], 4),
                 "scale": index + 1, "size": size}
                for h in res.history if not (index > 0 and h["step"] == 0)]

    @property
    def started(self) -> bool:
        """True once the first scale's run exists (False when it was refused, e.g. for memory:
        :meth:`result` then has nothing to give)."""
        return self.run is not None

    def result(self) -> StyleResult:
        """The result at the final size (a run stopped at a smaller scale is upsampled), with
        the content's colours restored in ``luminance`` mode. Valid during and after the run."""
        s = self.settings
        if self.run is None:
            raise ValueError("the run has not started (see started)")
        current = self.run.result()
        history = list(self.history)
        if len(self.scale_results) <= self.scale_index:  # stopped mid-scale: add what it did
            history += self._scale_history(self.scale_index, current)
        image = self._finish_image(current.image)
        final_hw = tuple(self.content_final.shape[-2:])
        if tuple(image.shape[-2:]) != final_hw:
            image = _resize(image, final_hw)
        return StyleResult(image=image.cpu(), history=history, snapshots=current.snapshots, settings=s,
                           weights=current.weights, weights_label=current.weights_label, device=current.device,
                           precision=current.precision, channels_last=current.channels_last,
                           seconds=self.seconds or current.seconds, stopped=self.stopped or current.stopped,
                           weights_info=current.weights_info)

    def report(self) -> dict:
        """:meth:`StyleResult.report` of :meth:`result` (the run so far) plus the scale plan, the
        regions and notes. Raises ValueError when the run has not started (see :attr:`started`)."""
        r = self.result().report()
        r["scales"] = [{"size": sz, "steps": n} for sz, n in self.plan]
        if self.regions is not None:
            r["regions"] = list(self.regions.names)
        if self.notes:
            r["notes"] = list(self.notes)
        return r
