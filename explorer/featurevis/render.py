"""Feature visualization by optimization from scratch: "what does this channel look for?"

Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017 (and its reference code,
Lucid, ported to PyTorch as Lucent's ``optvis``): start from a random image and maximize an
objective of one unit with Adam, where three things keep the high-frequency noise away:

* a parameterization (:class:`ImageParam`): pixels, or a Fourier spectrum scaled by
  1 / max(f, 1 / max(H, W))^decay (Lucent's ``fft_image``), optionally in a decorrelated colour
  space (Lucent's ``color_correlation_svd_sqrt``), always squashed to [0, 1] by a sigmoid
  (in :mod:`explorer.optim.parameterizations`, whose names this module re-exports);
* transformation robustness: the random pad, jitter, scale and rotation of
  :mod:`explorer.optim.transforms`, drawn each step from the run's own ``torch.Generator``;
* the objectives of :mod:`explorer.optim.objectives` (channel, neuron, direction, class logit, and
  diversity across a batch), composed with ``+`` and ``*``.

:class:`FeatureVisualization` is a :class:`~explorer.core.runs.Run` (an iterable of
:class:`~explorer.core.progress.ProgressEvent` with ``losses={"objective": ...}``); its settings are
:class:`FeatureVisSettings`. For the page: :func:`explorer.io.grids.image_grid` (the channel grid as a PIL image),
:func:`channel_grid_settings` (one image per channel), :func:`comparison_settings` and
:func:`high_frequency_share` (parameterizations and transforms side by side). Dataset examples
are in :mod:`explorer.featurevis.examples`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import torch
from PIL import Image

from ..nets.layers import output_shape
from ..io.grids import image_grid
from ..nets.memory import check_fits
from ..nets.models import FeatureNet
from ..nets.weights import WeightsInfo
from ..nets.registry import MODELS, list_models
from ..core.devices import autocast, precision_name, resolve_precision, to_memory_format, use_channels_last
from ..optim.parameterizations import COLOR_CORRELATION_SVD_SQRT, PARAMETERIZATIONS, ImageParam, correlate_colors, decorrelate_colors, fourier_scale, high_frequency_share
from ..optim.objectives import INPUT, Objective, channel, class_logit, direction, diversity, neuron, total
from ..core.progress import ProgressEvent
from ..core.choices import PRECISIONS
from ..core.recipes import run_info
from ..core.runs import Run
from ..core.settings import RecipeSettings, check_choice, check_float, check_name, setting
from ..optim.transforms import STANDARD_TRANSFORMS, RandomScale, compose, parse_transform

__all__ = [
    "COLOR_CORRELATION_SVD_SQRT",
    "decorrelate_colors",
    "correlate_colors",
    "fourier_scale",
    "ImageParam",
    "FeatureVisSettings",
    "build_objective",
    "FeatureVisualization",
    "FeatureVisResult",
    "channel_grid_settings",
    "comparison_settings",
    "high_frequency_share",
]

OBJECTIVES = ("channel", "neuron", "direction", "class")

# ----------------------------------------------------------------------------- settings

@dataclass
class FeatureVisSettings(RecipeSettings):
    """Every option of a feature visualization (what a recipe JSON holds).

    Attributes:
        model: a registered network (default ``vgg19``).
        layer: the layer whose unit is visualized (``None``: the network's
            ``ModelSpec.featurevis_layer``, ``relu4_1`` on VGG); also the diversity term's layer.
        objective: ``channel`` (mean of the channels over positions), ``neuron`` (each channel
            at the centre position, averaged), ``direction`` (sum over ``channels`` of weight x
            channel, averaged over positions) or ``class`` (``channels`` are ImageNet class
            indices; needs weights with a classifier).
        channels: channel (or class) indices, ``"3,7"`` or a list.
        weights: the direction's entry per channel in ``channels`` (empty: all 1).
        separate: one image per channel: image i maximizes ``channels[i % n]`` (the channel
            grid); ``batch`` must be a multiple of n.
        diversity: weight of :func:`~explorer.optim.objectives.diversity` at ``layer`` (0: off).
        parameterization: ``fourier`` or ``pixel``; decorrelate: decorrelated colour space.
        decay: the Fourier scale's exponent (Lucent's ``decay_power``, 1).
        transforms: transform specs applied each step (:func:`explorer.optim.transforms.parse_transform`),
            default Lucent's standard list; ``()`` for none.
        steps: Adam steps; lr: Adam's learning rate (Lucent's 0.05).
        size: image side in pixels; batch: images optimized together.
        seed: seeds the start and every transform draw; precision: auto, fp32, bf16 or fp16.
        preview_every: a preview every this many steps (and at the last).
    """

    model: str = setting("vgg19", choices=list_models)
    layer: str | None = None
    objective: str = setting("channel", choices=OBJECTIVES)
    channels: tuple[int, ...] = setting((0,), numbers=int)
    weights: tuple[float, ...] = setting((), numbers=float)
    separate: bool = setting(False, flag=True)
    diversity: float = setting(0.0, lo=-1e6, hi=1e6)
    parameterization: str = setting("fourier", choices=PARAMETERIZATIONS)
    decorrelate: bool = setting(True, flag=True)
    decay: float = setting(1.0, lo=0.0, hi=4.0)
    transforms: tuple[str, ...] = STANDARD_TRANSFORMS
    steps: int = setting(256, lo=0, hi=100_000)
    lr: float = setting(0.05, lo=0.0, hi=10.0, exclusive_min=True)
    size: int = setting(128, lo=16, hi=4096)
    batch: int = setting(1, lo=1, hi=256)
    seed: int = setting(0, lo=0, hi=2**63 - 1)
    precision: str = setting("auto", choices=PRECISIONS)
    preview_every: int = setting(16, lo=1, hi=100_000)

    def canonicalize(self) -> None:
        """``"3,7"`` to (3, 7), ``"pad:12,jitter:8"`` to a tuple, lists to tuples, ``layer=None``
        to the model's default layer."""
        check_choice("model", self.model, list_models())
        if self.layer is None:
            self.layer = MODELS[self.model].featurevis_layer
        t = self.transforms
        if isinstance(t, str):
            t = [s.strip() for s in t.split(",") if s.strip()]
        if not isinstance(t, (list, tuple)):
            raise ValueError(f"transforms must be specs such as pad:12,jitter:8; got {str(t)[:40]!r}")
        self.transforms = tuple(t)

    def validate(self) -> "FeatureVisSettings":
        """Check types and ranges (changes nothing).

        Raises:
            ValueError: one line naming the option and what is allowed.
        """
        super().validate()
        check_name("layer", self.layer)
        if not self.channels or any(c < 0 for c in self.channels):
            raise ValueError("channels must name at least one index, each >= 0")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels names an index twice")
        if self.weights and (self.objective != "direction" or len(self.weights) != len(self.channels)):
            raise ValueError("weights are the direction's entries: one per channel, with objective direction")
        for w in self.weights:
            check_float("each direction weight", w, -1e6, 1e6)
        for spec in self.transforms:
            parse_transform(spec)
        if self.separate and self.objective == "direction":
            raise ValueError("separate images need a channel, neuron or class objective, not one direction")
        if self.separate and self.batch % len(self.channels):
            raise ValueError(f"with separate images the batch must be a multiple of the {len(self.channels)} "
                             f"channels; got {self.batch}")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(channels=list(self.channels), weights=list(self.weights), transforms=list(self.transforms))
        return d


# ----------------------------------------------------------------------------- objective

def build_objective(model: FeatureNet, settings: FeatureVisSettings) -> Objective:
    """The objective ``settings`` describe, for ``model`` (maximized; each term (B,)).

    With ``separate``, image i's term is weighted by a (B,) one-hot mask, so the images
    optimize different channels in one batch (Lucent's ``batch=`` argument).

    Raises:
        UnknownLayerError: unknown layer. NoClassifierError: class objective on conv-only weights.
        ValueError: a channel or class index the layer does not have.
    """
    s = settings
    model.check_layers([s.layer])
    if s.objective == "class":
        logits = model.logits_layer("the class objective")
        n = output_shape(model.name, logits, s.size, s.size)[0]
    else:
        n = output_shape(model.name, s.layer, s.size, s.size)[0]
    bad = [c for c in s.channels if c >= n]
    if bad:
        what = "classes" if s.objective == "class" else "channels"
        raise ValueError(f"{s.layer if s.objective != 'class' else 'the classifier'} has {n} {what} (0-{n - 1}); "
                         f"{bad[0]} does not exist")

    def one(c: int) -> Objective:
        if s.objective == "class":
            return class_logit(logits, c)
        return neuron(s.layer, c) if s.objective == "neuron" else channel(s.layer, [c])

    if s.objective == "direction":
        v = torch.zeros(n)
        v[list(s.channels)] = torch.tensor(s.weights or [1.0] * len(s.channels))
        obj = direction(s.layer, v)
    elif s.separate:
        k = len(s.channels)
        index = torch.arange(s.batch, device=model.device) % k
        obj = total((index == i).float() * one(c) for i, c in enumerate(s.channels))
    elif s.objective == "channel":
        obj = channel(s.layer, s.channels)
    else:
        obj = (1.0 / len(s.channels)) * total(one(c) for c in s.channels)
    if s.diversity:
        obj = obj + s.diversity * diversity(s.layer)
    return obj


# ----------------------------------------------------------------------------- the run

@dataclass
class FeatureVisResult:
    """What a feature visualization returns.

    Attributes:
        image: (B, 3, H, W) in (0, 1), CPU float32.
        history: one dict per step: ``step``, ``objective`` (batch mean), each other term's
            batch mean (e.g. ``diversity``), ``seconds``.
        labels: what image i shows (e.g. ``"relu4_1 channel 7"``).
        stopped: ``None`` or why the run ended early.
        weights_info: the network's weights (file, digest), for the report's run-info block.
    """

    image: torch.Tensor
    history: list[dict]
    settings: FeatureVisSettings
    objective: str
    labels: list[str]
    weights: str
    weights_label: str
    device: str
    precision: str
    seconds: float
    notes: list[str]
    stopped: str | None = None
    weights_info: WeightsInfo | None = None

    def grid(self, cols: int | None = None, cell: int | None = None) -> Image.Image:
        """:func:`explorer.io.grids.image_grid` of the images with their labels."""
        return image_grid(self.image, self.labels, cols=cols, cell=cell)

    def report(self) -> dict:
        """JSON-ready report: the run-info block (:func:`explorer.core.recipes.run_info`), then
        the objective, weights, timing, notes and history."""
        return {**run_info("featurevis", self.settings.to_dict(), self.weights_info, self.device, self.precision),
                "objective": self.objective, "labels": self.labels,
                "weights": self.weights, "weights_label": self.weights_label, "device": self.device,
                "precision": self.precision, "seconds": round(self.seconds, 3), "notes": self.notes,
                "stopped": self.stopped, "partial": self.stopped is not None, "history": self.history}


class FeatureVisualization(Run):
    """Optimize images from scratch (or from ``start``) to maximize an objective of ``model``.

    Each step: image = param() (B, 3, H, W) in (0, 1); x = transforms(image) (size changes with
    pad and scale); loss = -sum over the batch of the objective on ``model.features(x)``; one
    Adam step (lr ``settings.lr``) on the parameters. Events carry ``losses={"objective":
    batch mean, ...}`` and, every ``preview_every`` steps, the batch side by side (1, 3, H, B W).

    Args:
        model: the shared :class:`FeatureNet`.
        settings: :class:`FeatureVisSettings`.
        objective: overrides the one the settings describe (any composition of objectives).
        start: (B, 3, H, W) in [0, 1] to start from (through :meth:`ImageParam.from_image`)
            instead of noise; its size replaces ``settings.size``.

    Raises:
        UnknownLayerError, NoClassifierError, ValueError: bad layer, channel, class, start or an
            image too small for the layer (before any work).
        MemoryEstimateError: the run would not fit in the free memory.
    """

    def __init__(self, model: FeatureNet, settings: FeatureVisSettings, objective: Objective | None = None,
                 start: torch.Tensor | None = None):
        super().__init__()
        settings.validate()
        s = self.settings = settings
        self.model, self.device = model, model.device
        self.dtype = resolve_precision(s.precision, self.device)
        side = min(start.shape[-2:]) if isinstance(start, torch.Tensor) and start.dim() == 4 else s.size
        if side < model.spec.min_size:
            raise ValueError(f"a {side} px image is too small for {model.name}: it needs at least "
                             f"{model.spec.min_size} px a side")
        self.objective = objective or build_objective(model, s)
        self.transform = compose(s.transforms)
        self.generator = torch.Generator().manual_seed(s.seed)
        if start is not None:
            self.param = ImageParam.from_image(start.to(self.device), s.parameterization,
                                               decorrelate=s.decorrelate, decay=s.decay)
        else:
            self.param = ImageParam.random(s.parameterization, s.batch, s.size, decorrelate=s.decorrelate,
                                           decay=s.decay, generator=self.generator, device=self.device)
        h, w = self.param.size
        layers = list(self.objective.layers)
        try:
            small = [l for l in layers if len(shp := output_shape(model.name, l, h, w)) == 3 and min(shp[1:]) < 1]
        except (RuntimeError, ValueError):
            small = layers
        if small or min(h, w) < model.spec.min_size:
            raise ValueError(f"a {w} x {h} px image is too small for {model.name} at {', '.join(small or layers)}; "
                             "use a larger size")
        pad = sum(t.pixels for t in self.transform.parts if hasattr(t, "pixels"))
        grow = math.prod(1 + t.amount for t in self.transform.parts if isinstance(t, RandomScale))  # scaled up at most
        check_fits(model, math.ceil((h + 2 * pad) * grow), math.ceil((w + 2 * pad) * grow),
                   kind="feature visualization", device=self.device, batch=self.param.raw.shape[0],
                   dtype=self.dtype, layers=layers)
        with torch.no_grad():  # bad channels fail here, not at step 1
            x0 = self.param()
            with autocast(self.device, self.dtype):
                self.objective({**model.features(x0, layers), INPUT: x0})
        if model.weights.untrained:
            self.note("untrained", f"{model.weights.label}: the pictures show what random filters respond to, "
                      "not learned features")
        self.labels = _labels(s, self.param.raw.shape[0], self.objective)
        # channels_last convolutions on CUDA and CPU (224 px, 256 fp32 steps on 2 cores: 68 -> 59 s)
        self.channels_last = use_channels_last("auto", self.device)
        self.history: list[dict] = []
        self.seconds = 0.0

    def __iter__(self) -> Iterator[ProgressEvent]:
        s, model = self.settings, self.model
        layers = list(self.objective.layers)
        opt = torch.optim.Adam(self.param.parameters(), lr=s.lr)
        start = time.perf_counter()
        yield ProgressEvent(0, s.steps, 0.0, {}, preview=self._preview(), message="; ".join(self.notes) or None,
                            done=s.steps == 0)
        for step in range(1, s.steps + 1):
            x = self.transform(self.param(), self.generator)
            with autocast(self.device, self.dtype):
                acts = model.features(to_memory_format(x, self.channels_last), layers)
            value, parts, _ = self.objective.evaluate({**acts, INPUT: x})
            loss = -value.float().sum()
            if not torch.isfinite(loss):
                self.stop(f"the objective became {float(loss)} at step {step}; the run stopped (try a lower lr)")
                yield ProgressEvent(step - 1, s.steps, self.seconds, {}, preview=self._preview(),
                                    message=self.stopped, done=True)
                return
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.seconds = time.perf_counter() - start
            losses = {"objective": float(value.detach().float().mean())}
            losses.update({k: float(v.detach().float().mean()) for k, v in parts.items()
                           if k != "objective" and len(parts) > 1})
            self.history.append({"step": step, **losses, "seconds": round(self.seconds, 4)})
            preview = self._preview() if step % s.preview_every == 0 or step == s.steps else None
            yield ProgressEvent(step, s.steps, self.seconds, losses, preview=preview, done=step == s.steps)

    @torch.no_grad()
    def _preview(self) -> torch.Tensor:
        img = self.param().float().cpu()
        return torch.cat(list(img), dim=-1).unsqueeze(0)

    @torch.no_grad()
    def image(self) -> torch.Tensor:
        """The current images, (B, 3, H, W) float32 in (0, 1) on the CPU."""
        return self.param().float().cpu()

    def result(self) -> FeatureVisResult:
        """The images so far (also valid after stopping early)."""
        return FeatureVisResult(
            image=self.image(), history=list(self.history), settings=self.settings,
            objective=self.objective.description, labels=list(self.labels), weights=self.model.weights.kind,
            weights_label=self.model.weights.label, device=str(self.device), precision=precision_name(self.dtype),
            seconds=self.seconds, notes=list(self.notes), stopped=self.stopped, weights_info=self.model.weights)


def _labels(s: FeatureVisSettings, batch: int, objective: Objective) -> list[str]:
    if not s.separate:
        return [objective.description] * batch
    what = {"class": "class", "neuron": "neuron", "channel": "channel"}[s.objective]
    where = "" if s.objective == "class" else f"{s.layer} "
    return [f"{where}{what} {s.channels[i % len(s.channels)]}" for i in range(batch)]


# ----------------------------------------------------------------------------- for the page

def channel_grid_settings(layer: str, channels: Sequence[int], **options) -> FeatureVisSettings:
    """Settings for one image per channel of ``layer`` (``separate``, batch = number of
    channels), other options as :class:`FeatureVisSettings`'s; run them and call
    ``result().grid()`` for the channel grid.

    Raises:
        ValueError: bad settings.
    """
    return FeatureVisSettings(layer=layer, channels=tuple(channels), separate=True, batch=len(channels), **options)


def comparison_settings(base: FeatureVisSettings) -> list[tuple[str, FeatureVisSettings]]:
    """The parameterization and transform comparison (Distill 2017, "Preconditioning and
    Parameterization"): ``base`` as pixels without transforms, pixels with them, Fourier +
    decorrelated without, and Fourier + decorrelated with (``base.transforms``, or Lucent's
    standard list if empty): four (label, settings) pairs, same seed and steps."""
    robust = base.transforms or STANDARD_TRANSFORMS
    rep = dataclasses.replace
    return [("pixel", rep(base, parameterization="pixel", decorrelate=False, transforms=())),
            ("pixel + transforms", rep(base, parameterization="pixel", decorrelate=False, transforms=robust)),
            ("fourier + decorrelated", rep(base, parameterization="fourier", decorrelate=True, transforms=())),
            ("fourier + decorrelated + transforms",
             rep(base, parameterization="fourier", decorrelate=True, transforms=robust))]
