"""Which regions of a style image drive the network: Captum heatmaps of style objectives.

The thing explained is a per-image scalar of the style image x_s (Captum's forward function
returns shape (N,)):

* ``style``: the style-representation energy  E(x) = sum_l w_l ||G_l(x)||_F^2 / (4 N_l^2 M_l^2)
  over the style layers, with G_l the Gram matrix of Gatys et al. 2016 eq. (3), N_l channels
  and M_l positions. It is eq. (4) measured against an all-zero target: how much "style" the
  network sees, and which pixels feed it.
* ``layer:NAME``: the mean activation of one layer.
* ``channel:NAME:K``: the mean activation of channel K of one layer.
* ``class``: the logit of the image's top ImageNet class (meaningful with pretrained weights).

Methods, all from Captum (nothing here computes a gradient attribution of its own):

* ``saliency``: Simonyan et al. 2014, |d objective / d pixel|, max over RGB (as the seed paper
  describes).
* ``guided_backprop``: Springenberg et al. 2015, |guided gradient|, max over RGB.
* ``integrated_gradients``: Sundararajan et al. 2017 (black-image baseline), optionally
  averaged over noisy copies (SmoothGrad, Smilkov et al. 2017, as Captum's NoiseTunnel averages
  them, the noise from a private seeded generator); the signed sum over RGB, so that the map
  adds up to E(x) - E(black) (completeness, Sundararajan et al. 2017 section 3), up to the error
  of the ``ig_steps``-point Riemann sum. Positive: the pixel's path raised the objective.
* ``occlusion``: Zeiler & Fergus 2014, f(x) - f(x with a window replaced by a baseline), averaged
  over the windows that cover a pixel (Captum's definition). Signed: positive where hiding the
  region lowers the objective. For the VGG objectives that are sums over positions (style,
  layer, channel), :mod:`explorer.saliency.occlusion` computes the same numbers exactly and much
  faster by recomputing only each window's receptive field; everything else uses
  ``captum.attr.Occlusion``.
* ``gradcam``: Selvaraju et al. 2017, Captum's LayerGradCam at a chosen VGG layer (ReLU of the
  channel-weighted activation sum), upsampled bilinearly to the image (``LayerAttribution.interpolate``).

Guided backprop hooks every ReLU module and Grad-CAM hooks its layer. The cached model is
shared by every browser session, so hook-using methods run on
:func:`explorer.saliency.methods.private_copy` (with the baselines and SmoothGrad there).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from ..core import choices
from ..activations.views import channel_map_rgb
from ..nets.layers import fast_layout
from ..io.images import to_pil
from ..nets.memory import check_fits
from ..nets.models import FeatureNet
from ..nets.weights import WeightsInfo
from .methods import baseline_image, context_margin, guided_backprop, private_copy, smoothgrad, with_context
from .occlusion import UnsupportedNetworkError, occlusion_fast, occlusion_windows, supports
from ..core.progress import ProgressEvent
from ..core.recipes import run_info
from ..core.runs import Run
from .objectives import check_spatial, class_target, objective_function, parse_objective
from ..core.settings import RecipeSettings, setting

__all__ = [
    "METHODS",
    "SIGNED_METHODS",
    "BASELINES",
    "private_copy",
    "baseline_image",
    "AttributionSettings",
    "Heatmap",
    "AttributionRun",
    "attribute",
    "signed_map_rgb",
    "overlay_image",
]

#: Attribution methods, in the order pages list them.
METHODS = choices.METHODS
METHOD_TITLES = {
    "saliency": "Saliency (|gradient|)",
    "guided_backprop": "Guided backprop",
    "integrated_gradients": "Integrated gradients",
    "occlusion": "Occlusion",
    "gradcam": "Grad-CAM",
}
#: Methods whose map is signed (drawn on a diverging scale centred on 0): integrated gradients
#: (positive: the pixel's share of E(x) - E(black)) and occlusion (positive: hiding the region lowers
#: the objective). The others give non-negative importances.
SIGNED_METHODS = ("integrated_gradients", "occlusion")
#: What an occluded window is filled with.
BASELINES = choices.BASELINES
#: What an occluded window shows by default. On the real VGG19 a black window adds strong edges,
#: so hiding any region *raises* the style energy and the whole map is negative (gravel, chelsea:
#: no positive window); a blurred copy removes the window's texture and keeps its colours.
DEFAULT_BASELINE = "blur"

# ----------------------------------------------------------------------------- settings

@dataclass
class AttributionSettings(RecipeSettings):
    """Options of one heatmap.

    Attributes:
        method: one of :data:`METHODS`.
        objective: ``style``, ``layer:NAME``, ``channel:NAME:K`` or ``class``.
        style_layers: layers of the style objective; empty (the default) = the network's own
            style layers (``ModelSpec.style_layers``: relu1_1 ... relu5_1 on VGG).
        size: working size, the long side of the style image in pixels.
        window, stride: occlusion window side and step, pixels.
        context: occlusion: px of mirrored picture around it that the network sees
            (:func:`explorer.saliency.methods.with_context`; 0 = Captum's plain occlusion).
        baseline: what an occluded window shows: ``blur`` (the image under a Gaussian blur of
            sigma = window / 4 px; the default, see :data:`DEFAULT_BASELINE`), ``mean`` (the
            image's mean colour) or ``zero`` (black).
        perturbations_per_eval: occluded images per forward pass (batching; same result).
        ig_steps: integration steps of integrated gradients.
        smoothgrad: noisy samples for NoiseTunnel SmoothGrad over integrated gradients (0 = off).
        smoothgrad_sigma: their noise standard deviation, pixels in [0, 1].
        gradcam_layer: the layer Grad-CAM explains; empty = the deepest layer the objective
            uses (the deepest style layer, the objective's layer, or for ``class`` the network's
            ``ModelSpec.gradcam_layer``: relu5_4 on VGG19, relu5_3 on VGG16).
        fast_occlusion: use the exact incremental occlusion where it applies (same numbers).
        model: the network explained (:data:`explorer.core.choices.SALIENCY_MODELS`); a run
            records the network it was given (:class:`AttributionRun`).
    """

    method: str = setting("saliency", choices=METHODS)
    objective: str = "style"
    style_layers: tuple[str, ...] = setting((), names=True, allow_empty=True)
    size: int = setting(256, lo=32, hi=4096)
    window: int = setting(32, lo=1, hi=4096)
    stride: int = setting(16, lo=1, hi=4096)
    context: int = setting(32, lo=0, hi=4096)
    baseline: str = setting(DEFAULT_BASELINE, choices=BASELINES)
    perturbations_per_eval: int = setting(16, lo=1, hi=1024)
    ig_steps: int = setting(32, lo=1, hi=1000)
    smoothgrad: int = setting(0, lo=0, hi=1000)
    smoothgrad_sigma: float = setting(0.1, lo=0.0, hi=1.0, exclusive_min=True)
    gradcam_layer: str = ""
    fast_occlusion: bool = True
    model: str = setting("vgg19", choices=choices.SALIENCY_MODELS)

    def validate(self) -> "AttributionSettings":
        """Raises ValueError (one line) for a bad option."""
        super().validate()
        parse_objective(self.objective)
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["style_layers"] = list(self.style_layers)
        return d


# ----------------------------------------------------------------------------- results

@dataclass
class Heatmap:
    """One attribution map.

    Attributes:
        values: (H, W) float32 NumPy array at the working size of the image. Saliency, guided
            backprop and Grad-CAM give non-negative importances; integrated gradients are signed
            (summed over RGB; the map adds up to objective(image) - objective(black)), occlusion
            is signed (objective drop when the region is hidden). Units: those of the objective.
        image: the image explained, (1, 3, H, W) in [0, 1] on the CPU.
        method, objective: what produced it; ``settings``: the :class:`AttributionSettings`.
        weights_label: e.g. "untrained weights (seed 0)"; ``seconds``: wall clock.
        engine: for occlusion, ``fast`` (exact incremental) or ``captum``.
        target: for the class objective, the class explained ("class 281 'tabby cat', the
            network's top class for this image"); empty otherwise.
        notes: plain-words notes for the user.
        weights_info, device: the network's weights (file, digest) and where it ran, for the
            report's run-info block.
    """

    values: np.ndarray
    image: torch.Tensor
    method: str
    objective: str
    settings: AttributionSettings
    weights_label: str
    seconds: float
    engine: str = "captum"
    notes: tuple[str, ...] = ()
    weights_info: WeightsInfo | None = None
    device: str = "cpu"
    target: str = ""

    @property
    def signed(self) -> bool:
        """Whether :attr:`values` has a meaningful sign (:data:`SIGNED_METHODS`)."""
        return self.method in SIGNED_METHODS

    @property
    def importance(self) -> np.ndarray:
        """Non-negative importance (H, W) float32, what top-k masks rank: the map itself; for
        integrated gradients its size |IG| (either sign); for occlusion its positive part
        (regions whose removal lowers the objective)."""
        if self.method == "integrated_gradients":
            return np.abs(self.values).astype(np.float32)
        return np.maximum(self.values, 0.0).astype(np.float32)

    def report(self) -> dict:
        """JSON-ready description (no arrays): the run-info block
        (:func:`explorer.core.recipes.run_info`; heatmaps are computed in float32), then the map's."""
        v = self.values
        return {**run_info("saliency", self.settings.to_dict(), self.weights_info, self.device, "fp32"),
                "method": self.method, "objective": self.objective,
                "target": self.target, "weights_label": self.weights_label, "seconds": round(self.seconds, 3), "engine": self.engine,
                "shape": list(v.shape), "min": float(v.min()), "max": float(v.max()), "notes": list(self.notes)}


#: Diverging colours for signed maps: blue (negative), near-white (0), red (positive), as Plotly's RdBu_r.
_DIVERGING = np.array([[33, 102, 172], [247, 247, 247], [178, 24, 43]], np.float32)


#: Signed maps span [-P, P], P this percentile of |values| (a few extreme pixels set no range).
SIGNED_PERCENTILE = 99.0


def signed_range(values: np.ndarray, percentile: float = SIGNED_PERCENTILE) -> float:
    """Half-width P of a signed map's colour range [-P, P]: the ``percentile`` (0..100) of
    |values|, or their maximum where that is 0 (0.0 for an all-zero map)."""
    a = np.abs(np.asarray(values, np.float64)).ravel()
    if not a.size:
        return 0.0
    top = float(np.percentile(a, percentile))
    return top if top > 0 else float(a.max())


def signed_map_rgb(values: np.ndarray) -> Image.Image:
    """A signed map (H, W) as an RGB image on a diverging scale centred on 0: -P blue, 0
    near-white, +P red (linear in between, clipped beyond), P = :func:`signed_range` (the 99th
    percentile of |v|), so equal sizes of either sign look equally strong."""
    m = np.asarray(values, np.float32)
    top = signed_range(m)
    t = np.zeros(m.shape, np.float32) if top <= 0 else np.clip(m / top, -1.0, 1.0)
    lo, hi = np.minimum(t, 0.0)[..., None], np.maximum(t, 0.0)[..., None]
    rgb = _DIVERGING[1] + (-lo) * (_DIVERGING[0] - _DIVERGING[1]) + hi * (_DIVERGING[2] - _DIVERGING[1])
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def overlay_image(image: torch.Tensor, values: np.ndarray, opacity: float = 0.5, signed: bool = False):
    """The heatmap over the image as an RGB PIL image, blended with ``opacity`` in [0, 1]
    (0 = image only): Viridis scaled to the map's own range, or with ``signed`` (pass
    :attr:`Heatmap.signed`) the diverging scale of :func:`signed_map_rgb`."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1]; got {opacity}")
    base = to_pil(image)
    values = np.asarray(values, np.float32)
    heat = signed_map_rgb(values) if signed else channel_map_rgb(values)
    if heat.size != base.size:
        heat = heat.resize(base.size, Image.Resampling.BILINEAR)
    return Image.blend(base, heat, float(opacity))


# ----------------------------------------------------------------------------- running

class _Cancelled(Exception):
    pass


def _events_from(work: Callable[[Callable[[int, int], None]], object], stage: str) -> Iterator[ProgressEvent]:
    """Run ``work(progress)`` in a worker thread and yield a ProgressEvent for every
    ``progress(done, total)`` it reports. When the consumer stops early (the generator is
    closed: a page's Stop), the next ``progress`` call aborts the work. The work's return value
    is the ``value`` attribute of the StopIteration, i.e. ``result = yield from``."""
    q: queue.Queue = queue.Queue()
    cancel = threading.Event()
    start = time.perf_counter()
    box: dict = {}

    def progress(done: int, total: int) -> None:
        if cancel.is_set():
            raise _Cancelled
        q.put(("progress", done, total))

    def target() -> None:
        try:
            box["value"] = work(progress)
            q.put(("done",))
        except _Cancelled:
            q.put(("done",))
        except BaseException as exc:  # re-raised in the consumer's thread
            q.put(("error", exc))

    worker = threading.Thread(target=target, name="explorer-attribution", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item[0] == "progress":
                yield ProgressEvent(item[1], item[2], time.perf_counter() - start, stage=stage)
            elif item[0] == "error":
                raise item[1]
            else:
                return box.get("value")
    finally:
        cancel.set()
        worker.join()


def check_attribution_memory(model: FeatureNet, image: torch.Tensor, settings: AttributionSettings) -> int:
    """:func:`explorer.nets.memory.check_fits` for an :class:`AttributionRun` about to start on
    ``image`` (1, 3, H, W). Integrated gradients pass 8 images at a time with gradients; the
    other gradient methods one (Grad-CAM's backward pass stops at its layer). Occlusion passes
    ``settings.perturbations_per_eval`` occluded images at a time without gradients (at most one
    per window): whole images through Captum, or only what each window reaches through the fast
    engine (:mod:`explorer.saliency.occlusion`, after one clean pass whose layers it keeps). The
    style objective's Gram matrices count.

    Returns:
        the estimated bytes. Raises :class:`~explorer.nets.memory.MemoryEstimateError` when it does not fit.
    """
    spec = parse_objective(settings.objective)
    if spec.kind == "class":
        layers = [model.spec.logits_layer]
    elif spec.kind == "style":
        layers = list(settings.style_layers or model.spec.style_layers)
    else:
        layers = [spec.layer]
    h, w = int(image.shape[-2]), int(image.shape[-1])
    if settings.method == "occlusion":  # the network sees the picture with its mirrored context
        p = context_margin(h, w, settings.context)
        h, w = h + 2 * p, w + 2 * p
    options = dict(layers=layers, gram_layers=layers if spec.kind == "style" else None)
    if settings.method == "occlusion":
        fast = settings.fast_occlusion and spec.kind != "class" and supports(model, layers)
        return check_fits(model, h, w, kind="occlusion", device=model.device, backward=False,
                          batch=int(settings.perturbations_per_eval), engine="fast" if fast else "captum",
                          windows=len(occlusion_windows(h, w, settings.window, settings.stride)),
                          window=int(settings.window), **options)
    batch = min(8, int(settings.ig_steps)) if settings.method == "integrated_gradients" else 1
    return check_fits(model, h, w, kind="saliency", device=model.device, batch=batch,
                      input_gradient=settings.method != "gradcam", **options)


class AttributionRun(Run):
    """One heatmap as an iterable of :class:`ProgressEvent` (occlusion reports every batch of
    windows; the gradient methods report start and end), then :meth:`result`.

    Args:
        model: the shared network (any of ``choices.SALIENCY_MODELS``); never modified.
        image: the style image (1, 3, H, W) in [0, 1] at the working size.
        settings: :class:`AttributionSettings`.

    Raises:
        UnknownLayerError, ValueError: bad layers, objective or image.
    """

    def __init__(self, model: FeatureNet, image: torch.Tensor, settings: AttributionSettings):
        super().__init__()
        settings.validate()
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"image must have shape (1, 3, H, W), got {tuple(image.shape)}")
        if settings.model != model.name:  # the settings record the network explained
            settings = dataclasses.replace(settings, model=model.name)
        self.model, self.settings = model, settings
        self.image = image.detach().to(model.device, torch.float32)
        self.spec = parse_objective(settings.objective)
        #: the style objective's layers: the settings' or the network's own
        self.style_layers = tuple(model.check_layers(settings.style_layers or model.spec.style_layers))
        if settings.method == "gradcam":
            self.gradcam_layer = self._gradcam_layer()
        # validate the objective now (one-line errors before any work)
        objective_function(model, self.spec, layers=self.style_layers, image=self.image)
        h, w = self.image.shape[-2:]
        if settings.method == "occlusion":
            occlusion_windows(h, w, settings.window, settings.stride)  # one-line ValueError for bad geometry
        check_attribution_memory(model, self.image, settings)  # MemoryEstimateError before any work
        if self.spec.kind == "class" and model.weights.untrained:
            self.note("untrained_class", "with untrained weights the top 'class' is arbitrary; the map shows what drives that logit")
        self.target = class_target(model, self.image) if self.spec.kind == "class" else ""
        self._result: Heatmap | None = None
        self.engine = "captum"

    def _gradcam_layer(self) -> str:
        m, s, spec = self.model, self.settings, self.spec
        deepest = {"style": max(self.style_layers, key=m.depth),
                   "class": m.spec.gradcam_layer}.get(spec.kind, spec.layer)
        layer = s.gradcam_layer or deepest
        check_spatial(m, layer)
        if m.depth(layer) > m.depth(deepest):
            raise ValueError(f"Grad-CAM layer {layer} comes after {deepest}, the deepest layer the objective "
                             f"uses; pick {deepest} or an earlier layer")
        return layer

    # -- the methods ------------------------------------------------------------------------

    def _forward(self, net: FeatureNet) -> Callable[[torch.Tensor], torch.Tensor]:
        return objective_function(net, self.spec, layers=self.style_layers, image=self.image)

    def _gradient_map(self) -> np.ndarray:
        from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

        # channels_last on CPU and CUDA: saliency at 256 px 0.87 -> 0.70 s on the 2-core CPU
        s, x = self.settings, fast_layout(self.image).clone().requires_grad_(True)
        if s.method == "saliency":
            a = Saliency(self._forward(self.model)).attribute(x, abs=True)
            return a.amax(1)[0]
        if s.method == "guided_backprop":
            net = private_copy(self.model)
            a = guided_backprop(net, self._forward(net), x)
            return a.abs().amax(1)[0]
        if s.method == "integrated_gradients":
            ig = IntegratedGradients(self._forward(self.model))
            kw = dict(baselines=torch.zeros_like(x), n_steps=s.ig_steps, internal_batch_size=8)
            if s.smoothgrad > 0:
                a = smoothgrad(ig, x, s.smoothgrad, float(s.smoothgrad_sigma), **kw)
            else:
                a = ig.attribute(x, **kw)
            return a.sum(1)[0]  # signed: completeness holds for this map, not for its absolute value
        # gradcam
        net = private_copy(self.model, hooked_layer=self.gradcam_layer)
        cam = LayerGradCam(self._forward(net), net.body[self.gradcam_layer])
        a = cam.attribute(x, relu_attributions=True)
        up = LayerAttribution.interpolate(a.float(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
        return up[0, 0].clamp_min(0)

    def _occlusion(self, progress: Callable[[int, int], None]) -> torch.Tensor:
        h, w = self.image.shape[-2:]
        p = context_margin(h, w, self.settings.context)
        out = self._occlusion_on(with_context(self.image, p), progress)
        return out[p: p + h, p: p + w]

    def _occlusion_on(self, image: torch.Tensor, progress: Callable[[int, int], None]) -> torch.Tensor:
        s = self.settings
        p = (image.shape[-1] - self.image.shape[-1]) // 2
        base = with_context(baseline_image(self.image, s.baseline, s.window), p)
        if s.fast_occlusion:
            try:
                out = occlusion_fast(self.model, image, base, objective=self.spec, layers=self.style_layers,
                                     window=s.window, stride=s.stride, batch_size=s.perturbations_per_eval,
                                     progress=progress)
                self.engine = "fast"
                return out
            except UnsupportedNetworkError:
                pass  # not a plain VGG stack, or the class objective: Captum below
        from captum.attr import Occlusion

        total = len(occlusion_windows(*image.shape[-2:], s.window, s.stride))
        f = self._forward(self.model)
        evals = [0, 0]  # forward calls, occluded images scored

        def counted(x: torch.Tensor) -> torch.Tensor:
            out = f(x)
            evals[0] += 1
            if evals[0] > 1:  # Captum's first call scores the image itself, not a window
                evals[1] += x.shape[0]
                progress(min(evals[1], total), total)
            return out

        with torch.no_grad():
            a = Occlusion(counted).attribute(image, sliding_window_shapes=(3, s.window, s.window),
                                             strides=(3, s.stride, s.stride), baselines=base,
                                             perturbations_per_eval=s.perturbations_per_eval)
        self.engine = "captum"
        return a[0, 0]

    def _work(self, progress: Callable[[int, int], None]) -> np.ndarray:
        if self.settings.method == "occlusion":
            v = self._occlusion(progress)
        else:
            progress(0, 1)
            v = self._gradient_map()
            progress(1, 1)
        return np.ascontiguousarray(v.detach().float().cpu().numpy())

    def __iter__(self) -> Iterator[ProgressEvent]:
        start = time.perf_counter()
        values = yield from _events_from(self._work, METHOD_TITLES[self.settings.method])
        if values is None:  # stopped early: no partial heatmap
            return
        settings = dataclasses.replace(self.settings, style_layers=self.style_layers)  # the layers used
        self._result = Heatmap(values, self.image.cpu(), self.settings.method, str(self.spec), settings,
                               self.model.weights.label, time.perf_counter() - start, self.engine,
                               tuple(self.notes), self.model.weights, str(self.model.device), self.target)
        yield ProgressEvent(1, 1, self._result.seconds, done=True)

    def result(self) -> Heatmap:
        """The heatmap (after iterating to the end).

        Raises:
            RuntimeError: the run was stopped before it finished.
        """
        if self._result is None:
            raise RuntimeError("the attribution run did not finish")
        return self._result


def attribute(model: FeatureNet, image: torch.Tensor, settings: AttributionSettings) -> Heatmap:
    """Run :class:`AttributionRun` to the end without a front end and return its heatmap."""
    run = AttributionRun(model, image, settings)
    for _ in run:
        pass
    return run.result()
