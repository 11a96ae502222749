"""Saliency-guided Gram style transfer, and its comparison with full-Gram transfer.

The seed paper "Neural Style Transfer for Data Augmentation" proposes to find the regions of the
style image that most influence the network (saliency with guided backpropagation, occlusion)
and to transfer only their style by "selecting the most important pixels" when the style Gram
matrices are built. How that wording is read here:

* **positions** (default): a heatmap of the style image (:mod:`explorer.saliency.attribution`) becomes a
  spatial weight map w in [0, 1] (:func:`explorer.saliency.selection.weight_map`: the top ``keep`` fraction of positions,
  hard 0/1, or graded by the normalized heatmap to a power), resampled to every style layer's
  resolution by area averaging (:func:`layer_masks`). The style target of layer l is the
  *masked Gram* (:func:`explorer.optim.losses.guided_gram`, built by
  :func:`explorer.style.gatys.style_targets` with ``weight``)

      G^l_w = F^l diag(w^l) F^l^T / sum_k w^l_k,

  the weighted mean over positions of the per-position outer products f_k f_k^T. With an
  all-ones map sum_k w_k = M_l, so G^l_w = G^l / M_l: exactly the position-normalized Gram that
  the full transfer uses, and eq. (4) of Gatys et al. 2016 is unchanged. With a 0/1 map it is
  the normalized Gram of the selected positions' features alone. A per-pixel heatmap (saliency)
  gives a salt-and-pepper top k %; ``GuideSettings.smooth`` first smooths it with a Gaussian
  (:func:`explorer.saliency.selection.smooth_importance`) so that whole regions are kept. The generated image's Gram is
  the ordinary full one: the result is asked to have, everywhere, the texture statistics of the
  important regions only.
* **channels**: per style layer, keep the ``keep`` fraction of channels with the largest
  attribution (Captum's LayerGradientXActivation of the style energy, |grad x activation|
  summed over positions) and compare Gram matrices on those channels only; the other channels
  are free (:func:`explorer.saliency.selection.channel_importance`). This reads "most important"
  as feature maps rather than pixels.

The heatmap-to-selection rules (weight maps, painted masks, top channels) are in
:mod:`explorer.saliency.selection`; their names are importable from here too, for the pages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..core import choices
from .attribution import DEFAULT_BASELINE, AttributionSettings, Heatmap
from .selection import channel_importance, guide_notes, load_mask, select_channels, smooth_importance, weight_map
from ..style.gatys import gatys_objective, style_targets
from ..style.guides import layer_masks
from ..nets.models import FeatureNet
from ..optim.objectives import LayerGuide, Objective
from ..core.progress import ProgressEvent
from ..core.runs import Run
from ..core.settings import RecipeSettings, setting
from ..style.transfer import StyleTransfer
from ..style.settings import StyleSettings

__all__ = [
    "GUIDES",
    "VARIANTS",
    "weight_map",
    "smooth_importance",
    "guide_notes",
    "load_mask",
    "channel_importance",
    "select_channels",
    "GuideSettings",
    "Guidance",
    "prepare_guidance",
    "transfer_metrics",
    "Comparison",
    "CompareRun",
    "difference_map",
    "largest_difference_window",
    "mask_over",
    "KeepSweep",
]

#: Heatmap methods that can guide the transfer (see :data:`explorer.saliency.attribution.METHODS`).
GUIDES = choices.GUIDES
VARIANTS = choices.GUIDE_VARIANTS


# ----------------------------------------------------------------------------- guidance

@dataclass
class GuideSettings(RecipeSettings):
    """How the style image's heatmap guides the transfer.

    Attributes:
        method: the heatmap method (:data:`GUIDES`), or ``"mask"`` for a user-supplied mask.
        keep: fraction of positions (or channels) kept, in (0, 1].
        soft: graded weights (heatmap to ``power``) instead of a 0/1 mask.
        power: exponent of the soft map, in (0, 100].
        smooth: standard deviation in pixels (at the working size, 0 to 64) of a Gaussian that
            smooths the heatmap before its top ``keep`` positions are taken
            (:func:`explorer.saliency.selection.smooth_importance`): regions instead of single
            pixels; 0 = the heatmap as it is.
        variant: ``"positions"`` (masked Gram) or ``"channels"`` (top channels per layer).
        window, stride, baseline, context: occlusion options, as in :class:`AttributionSettings`
            (window and stride 1 to 4096 px; baseline one of :data:`explorer.core.choices.BASELINES`;
            context 0 to 4096 px of mirrored picture around the style image).
    """

    method: str = setting("saliency", choices=GUIDES + ("mask",), label="guide")
    keep: float = setting(0.3, lo=0.0, hi=1.0, exclusive_min=True)
    soft: bool = False
    power: float = setting(1.0, lo=0.0, hi=100.0, exclusive_min=True)
    smooth: float = setting(0.0, lo=0.0, hi=64.0)
    variant: str = setting("positions", choices=VARIANTS)
    window: int = setting(32, lo=1, hi=4096)
    stride: int = setting(16, lo=1, hi=4096)
    baseline: str = setting(DEFAULT_BASELINE, choices=choices.BASELINES)
    context: int = setting(AttributionSettings.context, lo=0, hi=4096)

    def validate(self) -> "GuideSettings":
        """Check every option (changes nothing).

        Raises:
            ValueError: one line naming the bad option and what is allowed (a painted mask
                selects positions only).
        """
        super().validate()
        if self.method == "mask" and self.variant != "positions":
            raise ValueError("a painted mask selects positions; it cannot select channels")
        return self

    def attribution(self, layers: Sequence[str], size: int) -> AttributionSettings:
        """The heatmap settings this guide uses (style-energy objective over ``layers``)."""
        return AttributionSettings(method=self.method if self.method in GUIDES else "saliency",
                                   objective="style", style_layers=tuple(layers), size=size,
                                   window=self.window, stride=self.stride, baseline=self.baseline,
                                   context=self.context)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Guidance:
    """Everything guided transfer needs and the pages show.

    Attributes:
        targets: dict layer -> Gram target (masked (N, N), or (K, K) for the channel variant).
        channels: dict layer -> kept channel indices (channel variant), else None.
        weight: (H, W) weight map in [0, 1] at the style image's size (all ones for channels).
        masks: dict layer -> (H_l, W_l) weight map at each style layer.
        heatmap: the :class:`~explorer.saliency.attribution.Heatmap` used, or None for a painted mask.
        settings: the :class:`GuideSettings`.
    """

    targets: dict[str, torch.Tensor]
    channels: dict[str, torch.Tensor] | None
    weight: torch.Tensor
    masks: dict[str, torch.Tensor]
    heatmap: Heatmap | None
    settings: GuideSettings
    notes: tuple[str, ...] = ()

    def layer_guides(self) -> dict[str, LayerGuide]:
        """Per style layer, the :class:`~explorer.optim.objectives.LayerGuide` of the channel variant
        (empty for the position variant, whose guide is in the targets already)."""
        return {l: LayerGuide(channels=idx) for l, idx in (self.channels or {}).items()}

    def objective(self, model: FeatureNet, content: torch.Tensor, settings: StyleSettings) -> Objective:
        """The guided style transfer's objective: :func:`explorer.style.gatys.gatys_objective` with
        the guided targets and, for the channel variant, the channel guides."""
        return gatys_objective(model, content, settings, self.targets, guides=self.layer_guides())

    def report(self) -> dict:
        d = {"guide": self.settings.to_dict(), "kept_fraction": float(self.weight.gt(0).float().mean())}
        if self.notes:
            d["notes"] = list(self.notes)
        if self.channels is not None:
            d["kept_channels"] = {k: len(v) for k, v in self.channels.items()}
        if self.heatmap is not None:
            d["heatmap"] = self.heatmap.report()
        return d


def prepare_guidance(model: FeatureNet, style: torch.Tensor, style_settings: StyleSettings, guide: GuideSettings,
                     heatmap: Heatmap | None = None, mask: torch.Tensor | None = None) -> Guidance:
    """Style targets for guided transfer from a heatmap (or a painted mask).

    Args:
        model: the feature network.
        style: (1, 3, H, W) in [0, 1] at the working size.
        style_settings: the transfer's settings (style layers and pooling are used).
        guide: :class:`GuideSettings`.
        heatmap: a heatmap of ``style`` (from :class:`~explorer.saliency.attribution.AttributionRun` with
            ``guide.attribution(...)``); needed for the positions variant without a mask.
        mask: a painted weight map (H, W) in [0, 1] (:func:`load_mask`), used as it is instead of
            a heatmap (``keep`` and ``soft`` do not apply to it).

    Raises:
        ValueError: neither heatmap nor mask, or sizes that do not match.
    """
    layers = tuple(style_settings.style_layers)
    h, w = style.shape[-2:]
    if guide.variant == "channels":
        imp = channel_importance(model, style, layers, style_settings.pooling)
        channels = select_channels(imp, guide.keep)
        full = style_targets(model, style, layers, pooling=style_settings.pooling)
        targets = {l: full[l][channels[l]][:, channels[l]] for l in layers}
        ones = torch.ones(h, w)
        return Guidance(targets, channels, ones, layer_masks(ones, model, layers), heatmap, guide)
    if mask is not None:  # the painted mask is the weight map as it is (keep and soft do not apply)
        weight = mask.float()
    elif heatmap is not None:
        importance = smooth_importance(heatmap.importance, guide.smooth)
        weight = weight_map(importance, guide.keep, guide.soft, guide.power)
    else:
        raise ValueError("guided transfer needs a heatmap or a mask")
    if tuple(weight.shape) != (h, w):
        raise ValueError(f"the weight map is {weight.shape[1]}x{weight.shape[0]} px but the style image is {w}x{h} px")
    notes = guide_notes(importance, weight, guide.keep) if mask is None else guide_notes(
        weight.numpy(), weight, 0.0)
    targets = style_targets(model, style, layers, pooling=style_settings.pooling, weight=weight)
    return Guidance(targets, None, weight, layer_masks(weight, model, layers), heatmap, guide, tuple(notes))


# ----------------------------------------------------------------------------- comparison

@torch.no_grad()
def transfer_metrics(model: FeatureNet, image: torch.Tensor, content: torch.Tensor, style: torch.Tensor,
                     settings: StyleSettings, guidance: Guidance | None, seconds: float,
                     full_targets: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """The numbers the comparison table shows for one result.

    Args:
        image, content, style: (1, 3, H, W) in [0, 1] (image and content at the same size).
        settings: the transfer's settings (layers, pooling, weights).
        guidance: the guided targets (for the masked style loss); None: masked = full.
        seconds: the run's wall-clock time.
        full_targets: the style image's full Gram targets, if already computed.

    Returns:
        ``content``: the content term at the content layer; ``style_full``: the style term
        against the style image's full Grams; ``style_masked``: the style term against the
        guided targets, each at ``settings.loss_normalization``'s scale (relative by default:
        eq. (1) and (5) divided by their targets' size, :mod:`explorer.style.gatys`); ``ssim``: SSIM
        of the result to the content image (scikit-image, data range 1, over RGB);
        ``seconds``. All evaluated in float32 with max pooling as in ``settings``.
    """
    from skimage.metrics import structural_similarity

    fp32 = StyleSettings.from_dict({**settings.to_dict(), "precision": "fp32", "channels_last": "off"})
    full = full_targets if full_targets is not None else style_targets(model, style, fp32.style_layers,
                                                                         pooling=fp32.pooling)
    x = image.to(model.device, torch.float32)
    t_full = StyleTransfer(model, content, full, fp32)
    lf = t_full.losses(x)
    out = {"content": float(lf["content"][0]), "style_full": float(lf["style"][0])}
    if guidance is None:
        out["style_masked"] = out["style_full"]
    else:
        t_g = StyleTransfer(model, content, None, fp32, objective=guidance.objective(model, content, fp32))
        out["style_masked"] = float(t_g.losses(x)["style"][0])
    a = image[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)
    b = content[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)
    win = min(7, *(s if s % 2 else s - 1 for s in a.shape[:2]))
    out["ssim"] = float(structural_similarity(a, b, channel_axis=-1, data_range=1.0, win_size=win))
    out["seconds"] = float(seconds)
    return out


@dataclass
class Comparison:
    """Full-Gram and guided results side by side.

    Attributes:
        full, guided: :class:`~explorer.style.transfer.StyleResult` of each run (same content, seed and
            settings; only the style targets differ).
        metrics: {"full": {...}, "guided": {...}} from :func:`transfer_metrics`.
        guidance: the :class:`Guidance` used.
    """

    full: object
    guided: object
    metrics: dict[str, dict[str, float]]
    guidance: Guidance

    def report(self) -> dict:
        """JSON-ready: both runs' reports, the metrics and the guidance."""
        return {"full": self.full.report(), "guided": self.guided.report(), "metrics": self.metrics,
                "guidance": self.guidance.report()}


class CompareRun(Run):
    """Full-Gram transfer, then guided transfer, with the same content, seed, starting image and
    settings, as one iterable of :class:`ProgressEvent` (``stage`` says which run; steps count over
    both). Only the style targets differ, so a guide that keeps every position (an all-ones weight
    map) gives the full run's result.

    Args:
        model, content, style: as for :class:`~explorer.style.transfer.StyleTransfer` ((1, 3, H, W) in [0, 1]).
        settings: :class:`~explorer.style.settings.StyleSettings` shared by both runs.
        guidance: from :func:`prepare_guidance`.
        full_targets: the style image's full Gram targets if already computed (cached by pages).
    """

    def __init__(self, model: FeatureNet, content: torch.Tensor, style: torch.Tensor, settings: StyleSettings,
                 guidance: Guidance, full_targets: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.model, self.content, self.style, self.settings, self.guidance = model, content, style, settings, guidance
        self.full_targets = full_targets if full_targets is not None else \
            style_targets(model, style, settings.style_layers, pooling=settings.pooling)
        # Both runs are given the style picture, so both start from the same image (the default
        # histogram start takes its palette from the picture; given the Gram targets alone, the full
        # run used to start from the plain content image, and keep = 100 % differed from it)
        self.runs = [
            ("full Gram", StyleTransfer(model, content, style, settings,
                                        objective=gatys_objective(model, content, settings, self.full_targets))),
            ("saliency-guided", StyleTransfer(model, content, style, settings,
                                              objective=guidance.objective(model, content, settings))),
        ]
        self._comparison: Comparison | None = None

    def __iter__(self) -> Iterator[ProgressEvent]:
        steps = self.settings.steps
        for i, (name, run) in enumerate(self.runs):
            for ev in run:
                yield ProgressEvent(i * (steps + 1) + ev.step, 2 * (steps + 1) - 1, ev.elapsed, ev.losses,
                                    ev.preview, ev.message, done=ev.done and i == 1, stage=name)
        full, guided = (r.result() for _, r in self.runs)
        self._comparison = Comparison(full, guided, {
            "full": transfer_metrics(self.model, full.image, self.content, self.style, self.settings,
                                     self.guidance, full.seconds, self.full_targets),
            "guided": transfer_metrics(self.model, guided.image, self.content, self.style, self.settings,
                                       self.guidance, guided.seconds, self.full_targets),
        }, self.guidance)

    def result(self) -> Comparison:
        """Raises RuntimeError when iterated only partly (stopped)."""
        if self._comparison is None:
            raise RuntimeError("the comparison did not finish")
        return self._comparison


def difference_map(full, guided) -> np.ndarray:
    """Where the two results differ: |full - guided| per pixel, averaged over RGB.

    Args:
        full, guided: the two results, (1, 3, H, W) tensors in [0, 1] or RGB PIL images of one size.

    Returns:
        (H, W) float32 NumPy array in [0, 1], in pixel-value units (1 = black against white).

    Raises:
        ValueError: images of different sizes.
    """
    a, b = (np.asarray(x, np.float32) / 255.0 if not isinstance(x, torch.Tensor)
            else x[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float32) for x in (full, guided))
    if a.shape != b.shape:
        raise ValueError(f"the two results differ in size: {a.shape[1]}x{a.shape[0]} and {b.shape[1]}x{b.shape[0]} px")
    return np.abs(a - b).mean(-1)


def largest_difference_window(diff: np.ndarray, side: int) -> tuple[int, int, int, int]:
    """The square window of ``side`` px (smaller where the image is) whose mean difference is
    largest, the region a zoom shows (ties: the first in reading order).

    Args:
        diff: (H, W) map of :func:`difference_map`; side: window side in pixels, >= 1.

    Returns:
        (top, left, height, width) in pixels.
    """
    d = torch.as_tensor(np.asarray(diff, np.float32))
    h, w = d.shape
    sh, sw = max(1, min(int(side), h)), max(1, min(int(side), w))
    means = torch.nn.functional.avg_pool2d(d[None, None], (sh, sw), stride=1)[0, 0]
    i = int(torch.argmax(means.flatten()))
    return i // means.shape[1], i % means.shape[1], sh, sw


def mask_over(style: torch.Tensor, weight: torch.Tensor, dim: float = 0.25) -> torch.Tensor:
    """The weight map over the style image: each pixel times dim + (1 - dim) w, so kept regions
    (w = 1) show as they are and left-out ones (w = 0) at ``dim`` of their brightness.

    Args:
        style: (1, 3, H, W) in [0, 1]; weight: (H, W) in [0, 1] (:attr:`Guidance.weight`);
        dim: brightness of a left-out pixel, in [0, 1].

    Returns:
        (1, 3, H, W) float32 CPU tensor in [0, 1].
    """
    if tuple(weight.shape) != tuple(style.shape[-2:]):
        raise ValueError(f"the weight map is {weight.shape[-1]}x{weight.shape[-2]} px but the style image is "
                         f"{style.shape[-1]}x{style.shape[-2]} px")
    w = weight.detach().float().cpu().clamp(0, 1)
    return (style.detach().float().cpu() * (float(dim) + (1.0 - float(dim)) * w)).clamp(0, 1)


class KeepSweep(Run):
    """Guided transfers for several kept fractions (e.g. 10/30/60/100 %) from one heatmap, as
    one iterable of :class:`ProgressEvent`; then :attr:`results`, a list of (keep, StyleResult,
    metrics). keep = 1 with a hard mask is the full-Gram transfer.

    Args:
        model, content, style, settings: as for :class:`CompareRun`.
        guide: the :class:`GuideSettings` (its ``keep`` is replaced by each value of ``keeps``).
        heatmap: the style image's heatmap (positions variant), or None with ``mask``.
        keeps: fractions in (0, 1].
        mask: a painted weight map instead of a heatmap.
    """

    def __init__(self, model: FeatureNet, content: torch.Tensor, style: torch.Tensor, settings: StyleSettings,
                 guide: GuideSettings, heatmap: Heatmap | None, keeps: Sequence[float] = (0.1, 0.3, 0.6, 1.0),
                 mask: torch.Tensor | None = None):
        super().__init__()
        if not keeps:
            raise ValueError("name at least one kept fraction")
        self.model, self.content, self.style, self.settings = model, content, style, settings
        self.guides = [GuideSettings.from_dict({**guide.to_dict(), "keep": float(k)}) for k in keeps]
        self.heatmap, self.mask = heatmap, mask
        self.full_targets = style_targets(model, style, settings.style_layers, pooling=settings.pooling)
        self.results: list[tuple[float, object, dict[str, float]]] = []

    def __iter__(self) -> Iterator[ProgressEvent]:
        steps, n = self.settings.steps, len(self.guides)
        for i, g in enumerate(self.guides):
            guidance = prepare_guidance(self.model, self.style, self.settings, g, self.heatmap, self.mask)
            run = StyleTransfer(self.model, self.content, self.style, self.settings,
                                objective=guidance.objective(self.model, self.content, self.settings))
            for ev in run:
                yield ProgressEvent(i * (steps + 1) + ev.step, n * (steps + 1) - 1, ev.elapsed, ev.losses,
                                    ev.preview, ev.message, done=ev.done and i == n - 1,
                                    stage=f"keep {g.keep:.0%}")
            res = run.result()
            self.results.append((g.keep, res, transfer_metrics(self.model, res.image, self.content, self.style,
                                                               self.settings, guidance, res.seconds,
                                                               self.full_targets)))

    def result(self) -> list[tuple[float, object, dict[str, float]]]:
        """(keep, :class:`~explorer.style.transfer.StyleResult`, metrics) per kept fraction done so far."""
        return list(self.results)

    def report(self) -> dict:
        """JSON-ready: per kept fraction, its metrics (:func:`transfer_metrics`)."""
        return {"settings": self.settings.to_dict(),
                "keeps": [{"keep": keep, **metrics} for keep, _, metrics in self.results]}
