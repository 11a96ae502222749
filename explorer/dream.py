"""Deep Dream: gradient ascent on a network's activations, with octaves, jitter and tiles.

The algorithm follows the original DeepDream notebook (Mordvintsev, Olah & Tyka, Google
Research 2015, ``dream.ipynb``) and the TensorFlow DeepDream tutorial:

* Objectives are small composable functions of named activations (as in Lucent's
  ``objectives``): ``layer_l2("inception4c") + 0.5 * channel("inception4d", [139])``.
* Update (the notebook's ``make_step``): for an image x in [0, 1],
  ``x <- clip(x + eta * g / mean(|g|), 0, 1)`` with ``g = d objective / d x`` evaluated on a
  randomly rolled (jittered) copy of x, the roll undone after the step.
* Octaves: an image pyramid (``octaves`` levels, each ``octave_scale`` smaller), processed
  smallest first; at each upscale the detail the dream added so far is upsampled and added to
  the next, larger base image (the notebook's detail re-injection).
* Tiles: images larger than ``tile`` pixels get their gradient tile by tile (TensorFlow
  tutorial's ``get_tiled_gradients``), the whole image rolled by a random shift every step so
  seams never stay in one place; memory is bounded by the tile, not the image.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from .devices import autocast, precision_name, resolve_precision
from .memory import check_dream_run
from .models import FeatureNet, list_layers, meta_net
from .progress import ProgressEvent
from .settings import RecipeSettings, check_choice, check_float, check_name

__all__ = [
    "Objective",
    "layer_l2",
    "layer_mean",
    "channel",
    "guide",
    "class_logit",
    "build_objective",
    "parse_layer_weights",
    "DreamSettings",
    "DreamRun",
    "DreamResult",
    "DEFAULT_LAYERS",
    "layer_hint",
    "min_input_size",
    "octave_sizes",
    "gradient",
    "dream_step",
    "zoom_frames",
    "class_index",
    "start_image",
    "ZoomRun",
]

#: Classic starting layers per network.
DEFAULT_LAYERS = {"googlenet": "inception4c", "inception_v3": "Mixed_6b", "vgg19": "relu4_3", "vgg16": "relu4_3",
                  "mobilenet_v2": "block10", "resnet50": "layer3_3"}

Acts = Mapping[str, torch.Tensor]


# ----------------------------------------------------------------------------- objectives

class Objective:
    """A scalar per image computed from named activations; larger is "more dream".

    Call it with the dict returned by :meth:`FeatureNet.features`; it returns a float32 tensor
    of shape (B,). ``layers`` lists the activations it reads. Objectives compose:
    ``a + b``, ``a - b``, ``2.0 * a``, ``-a``.
    """

    def __init__(self, fn: Callable[[Acts], torch.Tensor], layers: Iterable[str], description: str):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.description = description

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def __add__(self, other: "Objective") -> "Objective":
        return Objective(lambda a: self(a) + other(a), self.layers + other.layers,
                         f"{self.description} + {other.description}")

    def __sub__(self, other: "Objective") -> "Objective":
        return self + (-1.0) * other

    def __mul__(self, k: float) -> "Objective":
        k = float(k)
        return Objective(lambda a: k * self(a), self.layers, f"{k:g} * {self.description}")

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return (-1.0) * self

    def __repr__(self) -> str:
        return f"Objective({self.description})"


def _spatial(acts: Acts, layer: str) -> torch.Tensor:
    a = acts[layer].float()
    if a.dim() != 4:
        raise ValueError(f"{layer} has no spatial activations (shape {tuple(a.shape)}); pick a convolutional layer")
    return a


def layer_l2(layer: str) -> Objective:
    """Mean of squared activations of ``layer`` over channels and positions (the original
    DeepDream L2 objective, whose gradient is the activation itself). Shape (B,)."""
    return Objective(lambda a: _spatial(a, layer).pow(2).mean(dim=(1, 2, 3)), [layer], f"L2({layer})")


def layer_mean(layer: str) -> Objective:
    """Mean activation of ``layer`` over channels and positions. Shape (B,)."""
    return Objective(lambda a: _spatial(a, layer).mean(dim=(1, 2, 3)), [layer], f"mean({layer})")


def channel(layer: str, channels: Sequence[int], center: bool = False) -> Objective:
    """Mean activation of some channels of ``layer`` ("what does channel 139 of inception4d
    see"), over all positions or, with ``center=True``, at the centre position only.

    Raises (when evaluated):
        ValueError: a channel index outside the layer's channel count.
    """
    chans = [int(c) for c in channels]
    if not chans:
        raise ValueError("name at least one channel")

    def fn(acts: Acts) -> torch.Tensor:
        a = _spatial(acts, layer)
        bad = [c for c in chans if not 0 <= c < a.shape[1]]
        if bad:
            raise ValueError(f"{layer} has {a.shape[1]} channels (0-{a.shape[1] - 1}); channel {bad[0]} does not exist")
        sel = a[:, chans]
        if center:
            return sel[:, :, sel.shape[2] // 2, sel.shape[3] // 2].mean(dim=1)
        return sel.mean(dim=(1, 2, 3))

    where = "centre of " if center else ""
    return Objective(fn, [layer], f"{where}{layer} channel{'s' if len(chans) > 1 else ''} {','.join(map(str, chans))}")


def guide(layer: str, guide_acts: torch.Tensor) -> Objective:
    """Guided dream (the notebook's ``objective_guide``): each position i of the dreamed image's
    features x_i is pulled towards the guide feature y_j it already matches best, i.e. maximize
    ``mean_i max_j <x_i, y_j>``; its gradient at x_i is y_argmax, as in the notebook.

    Args:
        layer: layer name.
        guide_acts: the guide image's activations at ``layer``, shape (1, C, h, w).
    """
    y = guide_acts.detach().float().flatten(2)[0]  # (C, Pg)

    def fn(acts: Acts) -> torch.Tensor:
        x = _spatial(acts, layer).flatten(2)  # (B, C, P)
        dots = torch.einsum("bcp,cq->bpq", x, y.to(x.device))
        return dots.max(dim=2).values.mean(dim=1)

    return Objective(fn, [layer], f"guide({layer})")


def class_logit(logits_layer: str, index: int, name: str = "") -> Objective:
    """The ImageNet logit of class ``index`` (towards that class). Shape (B,)."""
    return Objective(lambda a: a[logits_layer].float()[:, index], [logits_layer],
                     f"logit {index}{f' ({name})' if name else ''}")


def class_index(model: FeatureNet, name: str) -> tuple[int, str]:
    """Look up an ImageNet class by name (case-insensitive) or number in the weights' category list.

    Raises:
        ValueError: unknown class (the message suggests close names).
    """
    cats = list(model.spec.weights_enum.meta["categories"])
    if name.strip().isdigit() and int(name) < len(cats):
        return int(name), cats[int(name)]
    low = [c.lower() for c in cats]
    key = name.strip().lower()
    if key in low:
        i = low.index(key)
        return i, cats[i]
    close = difflib.get_close_matches(key, low, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(cats[low.index(c)]) for c in close)}?" if close else ""
    raise ValueError(f"unknown ImageNet class {name!r}{hint}")


def parse_layer_weights(spec: str | Sequence) -> tuple[tuple[str, float], ...]:
    """``"inception4c:1,inception4d:0.5"`` -> (("inception4c", 1.0), ("inception4d", 0.5)); a
    list of ``[layer, weight]`` pairs (a recipe's form) is accepted too.

    Raises:
        ValueError: an empty list, a layer named twice, or a weight that is not a finite number
            (``nan`` or ``1e400`` would turn the dream into a black picture); one line.
    """
    out = []
    if isinstance(spec, str):
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            layer, _, w = part.partition(":")
            try:
                out.append((layer.strip(), float(w) if w.strip() else 1.0))
            except ValueError:
                raise ValueError(f"bad layer weight in {part!r}; write LAYER or LAYER:WEIGHT") from None
    elif isinstance(spec, (list, tuple)):
        for item in spec:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], (int, float)) and not isinstance(item[1], bool)):
                raise ValueError(f"layers must be LAYER:WEIGHT text or [layer, weight] pairs; got {str(item)[:40]}")
            out.append((item[0].strip(), float(item[1])))
    else:
        raise ValueError(f"layers must be LAYER:WEIGHT text or [layer, weight] pairs; got {str(spec)[:40]}")
    if not out:
        raise ValueError("name at least one layer")
    seen = set()
    for layer, w in out:
        check_name("layer", layer)
        check_float(f"the weight of {layer}", w, -1e6, 1e6)
        if layer in seen:
            raise ValueError(f"layer {layer} is named twice")
        seen.add(layer)
    return tuple(out)


# ----------------------------------------------------------------------------- settings

@dataclass
class DreamSettings(RecipeSettings):
    """Every option of a dream (what a recipe JSON holds).

    Attributes:
        model: ``googlenet`` (default), ``inception_v3``, ``vgg19`` or ``vgg16``.
        layers: (layer, weight) pairs, or ``"inception4c:1,inception4d:0.5"``; their objectives
            are summed with the weights. ``None``: the model's classic layer (:data:`DEFAULT_LAYERS`).
        objective: ``"l2"`` (mean squared activation), ``"mean"``, ``"guide"`` (needs a guide
            image) or ``"class"`` (needs ``class_name``).
        channels: channel indices; when given, the objective is the mean of these channels of
            each layer instead of the whole layer.
        center: channel objective at the centre position only.
        class_name: ImageNet class (name or index) for ``objective="class"``.
        octaves: pyramid levels; reduced automatically (with a note) when the smallest would be
            too small for the network.
        octave_scale: size ratio between octaves (> 1).
        steps: gradient steps per octave.
        step_size: eta, the mean absolute pixel change per step (pixels in [0, 1]; 0.01 is about
            2.5 of 255 levels).
        jitter: largest random roll per step, in pixels.
        smooth: sigma in pixels of a Gaussian smoothing of the gradient (cascade of sigma/2,
            sigma, 2 sigma, averaged); 0 = off.
        normalize: divide the gradient by its mean absolute value (``"mean"``) or std.
        tile: tile size in pixels for the gradient of large images.
        size: working size (long side in pixels) or ``None`` to keep the input size.
        seed: seeds jitter, tile shifts and noise starts.
        precision, channels_last: as for style transfer.
        preview_every: emit a preview every this many steps (and at every octave's end).
    """

    model: str = "googlenet"
    layers: tuple | str | None = None
    objective: str = "l2"
    channels: tuple[int, ...] = ()
    center: bool = False
    class_name: str | None = None
    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 10
    step_size: float = 0.01
    jitter: int = 32
    smooth: float = 0.0
    normalize: str = "mean"
    tile: int = 512
    size: int | None = None
    seed: int = 0
    precision: str = "auto"
    channels_last: str = "auto"
    preview_every: int = 5

    def canonicalize(self) -> None:
        """Layers to (name, weight) pairs (``None``: the network's classic layer; ``""`` is an
        error, not the default), channels to a tuple of ints."""
        check_choice("model", self.model, DEFAULT_LAYERS)
        if self.layers is None:
            self.layers = ((DEFAULT_LAYERS[self.model], 1.0),)
        self.layers = parse_layer_weights(self.layers)
        raw = self.channels
        try:
            if isinstance(raw, str):
                raw = [c for c in raw.split(",") if c.strip()]
            if not isinstance(raw, (list, tuple)) or any(isinstance(c, (bool, float, list, dict)) for c in raw):
                raise TypeError
            self.channels = tuple(int(c) for c in raw)
        except (TypeError, ValueError):
            raise ValueError(f"channels must be whole numbers separated by commas; got {str(raw)[:40]!r}") from None

    def validate(self) -> "DreamSettings":
        """Check types and ranges (changes nothing).

        Raises:
            ValueError: one line naming the option and what is allowed.
        """
        check_choice("model", self.model, DEFAULT_LAYERS)
        parse_layer_weights(self.layers)
        checks = {"objective": ("l2", "mean", "guide", "class"), "normalize": ("mean", "std"),
                  "precision": ("auto", "fp32", "bf16", "fp16"), "channels_last": ("auto", "on", "off")}
        for key, allowed in checks.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}; got {getattr(self, key)!r}")
        _int("octaves", self.octaves, 1, 12)
        _int("steps", self.steps, 0, 10_000)
        _int("jitter", self.jitter, 0, 4096)
        _int("tile", self.tile, 64, 8192)
        _int("seed", self.seed, 0, 2**63 - 1)
        _int("preview_every", self.preview_every, 1, 100_000)
        if self.size is not None:
            _int("size", self.size, 32, 8192)
        _num("octave_scale", self.octave_scale, 1.01, 4.0)
        _num("step_size", self.step_size, 0.0, 1.0)
        _num("smooth", self.smooth, 0.0, 50.0)
        if any(c < 0 for c in self.channels):
            raise ValueError("channel indices must be >= 0")
        if self.objective == "class" and not self.class_name:
            raise ValueError("the class objective needs a class name (--class NAME)")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [[l, w] for l, w in self.layers]
        d["channels"] = list(self.channels)
        return d



def _int(key, v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{key} must be a whole number between {lo} and {hi}; got {v!r}")


def _num(key, v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{key} must be a number between {lo} and {hi}; got {v!r}")


def build_objective(model: FeatureNet, settings: DreamSettings, guide_image: torch.Tensor | None = None) -> Objective:
    """The objective a :class:`DreamSettings` describes, checked against ``model``.

    Args:
        guide_image: (1, 3, H, W) in [0, 1]; required for ``objective="guide"``.

    Raises:
        UnknownLayerError: a layer the network does not have (lists the valid ones).
        ValueError: missing guide image, unknown class name, a class objective on a network
            without logits.
    """
    s = settings
    if s.objective == "class":
        model.logits_layer("the class objective")  # conv-only weights: one line before the name lookup
        idx, name = class_index(model, s.class_name or "")
        return class_logit(model.logits_layer("the class objective"), idx, name)
    model.check_layers([l for l, _ in s.layers])
    if s.objective == "guide":
        if guide_image is None:
            raise ValueError("the guide objective needs a guide image")
        layers = [l for l, _ in s.layers]
        with torch.no_grad():
            g = guide_image.to(model.device, torch.float32)
            g = _fit_min(g, min_input_size(model.name, layers))
            acts = model.features(g, layers)
        parts = [w * guide(l, acts[l]) for l, w in s.layers]
    elif s.channels:
        parts = [w * channel(l, s.channels, s.center) for l, w in s.layers]
    else:
        make = layer_l2 if s.objective == "l2" else layer_mean
        parts = [w * make(l) for l, w in s.layers]
    obj = parts[0]
    for p in parts[1:]:
        obj = obj + p
    return obj


def _fit_min(x: torch.Tensor, min_side: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if min(h, w) >= min_side:
        return x
    k = min_side / min(h, w)
    return F.interpolate(x, size=(math.ceil(h * k), math.ceil(w * k)), mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------- geometry

@functools.lru_cache(maxsize=64)
def _min_input_size(name: str, layer: str) -> int:
    net = meta_net(name)
    spec = net.spec

    def ok(s: int) -> bool:
        try:
            with torch.device("meta"):
                out = net.features(torch.empty(1, 3, s, s), [layer])[layer]
            return out.dim() != 4 or min(out.shape[-2:]) >= 1
        except (RuntimeError, ValueError):
            return False

    lo, hi = max(1, spec.min_size), 1024
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def min_input_size(model_name: str, layers: Iterable[str]) -> int:
    """Smallest square input side, in pixels, for which the network produces at least a 1x1
    activation at every one of ``layers`` (and at least the weights' documented minimum).
    Found by shape propagation on the ``meta`` device: no memory, no compute."""
    return max(_min_input_size(model_name, l) for l in layers)


def octave_sizes(height: int, width: int, octaves: int, scale: float, min_side: int) -> tuple[list[tuple[int, int]], str | None]:
    """Sizes (H, W) of the octave pyramid, smallest first, and a note when octaves had to be
    dropped because the smallest would be under ``min_side`` pixels."""
    n = octaves
    while n > 1 and min(height, width) / scale ** (n - 1) < min_side:
        n -= 1
    sizes = [(max(1, round(height / scale ** i)), max(1, round(width / scale ** i))) for i in range(n)][::-1]
    note = None
    if n < octaves:
        small = round(min(height, width) / scale ** (octaves - 1))
        note = (f"octaves reduced from {octaves} to {n}: the smallest would be {small} px, below the "
                f"{min_side} px the network needs at this layer")
    return sizes, note


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    down = size[0] < x.shape[-2]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=down)


def _tile_edges(n: int, tile: int) -> list[int]:
    k = max(1, math.ceil(n / tile))
    return [round(i * n / k) for i in range(k + 1)]


def gradient(model: FeatureNet, objective: Objective, x: torch.Tensor, *, tile: int = 512,
             dtype: torch.dtype | None = None, channels_last: bool = False) -> tuple[torch.Tensor, float]:
    """d objective / d x, computed tile by tile when the image is larger than ``tile``.

    Args:
        x: images (1, 3, H, W) in [0, 1] (already rolled by the caller).
        tile: largest tile side in pixels; tiles are as equal as possible and cover the image.

    Returns:
        (gradient of the same shape as x, float32; objective value summed over tiles).
    """
    h, w = x.shape[-2:]
    ys, xs = _tile_edges(h, tile), _tile_edges(w, tile)
    grad = torch.zeros_like(x, dtype=torch.float32)
    total = 0.0
    for y0, y1 in zip(ys[:-1], ys[1:]):
        for x0, x1 in zip(xs[:-1], xs[1:]):
            t = x[..., y0:y1, x0:x1].detach().clone().requires_grad_(True)
            inp = t.contiguous(memory_format=torch.channels_last) if channels_last else t
            with autocast(x.device, dtype):
                acts = model.features(inp, objective.layers)
            val = objective(acts).sum()
            (g,) = torch.autograd.grad(val, t)
            grad[..., y0:y1, x0:x1] = g.float()
            total += float(val.detach())
    return grad, total


def _smooth(g: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return g
    out = torch.zeros_like(g)
    sigmas = (sigma * 0.5, sigma, sigma * 2.0)
    for s in sigmas:
        k = max(3, int(2 * math.ceil(3 * s) + 1))
        k = min(k, 2 * (min(g.shape[-2:]) // 2) - 1) if min(g.shape[-2:]) > 2 else 1
        out += TF.gaussian_blur(g, kernel_size=[k, k], sigma=[s, s]) if k >= 3 else g
    return out / len(sigmas)


#: How :func:`dead_start_note` begins (pages and the CLI look for it).
DEAD_START = "the objective is exactly 0 on this starting image"


def dead_start_note(objective: Objective) -> str:
    """Why a dream stays as it started, and the fix: the objective (a channel or layer behind a
    ReLU) is exactly 0 everywhere on the start image (a flat gray one, typically), and a ReLU's
    output of 0 has a gradient of 0, so gradient ascent cannot begin."""
    return (f"{DEAD_START} ({objective.description}): what it measures is not active anywhere, and a ReLU "
            "output of 0 has a gradient of 0 too, so nothing can grow. Start from noise instead (Start from: "
            "noise on the page, IMAGE noise on the command line), or pick another channel or layer")


def dream_step(model: FeatureNet, objective: Objective, x: torch.Tensor, settings: DreamSettings,
               rng: random.Random, dtype: torch.dtype | None = None, channels_last: bool = False) -> tuple[torch.Tensor, float]:
    """One gradient-ascent step (the notebook's ``make_step``), on a copy of x.

    Rolls x by a random (dy, dx) in [-jitter, jitter] plus, for tiled images, a random shift of
    up to half a tile; takes the gradient; normalizes it (mean |g| or std), optionally smooths
    it; adds ``step_size`` times it; rolls back; clips to [0, 1].

    Returns:
        (new image (1, 3, H, W) in [0, 1], objective value before the step).
    """
    s = settings
    h, w = x.shape[-2:]
    dy = rng.randint(-s.jitter, s.jitter) if s.jitter else 0
    dx = rng.randint(-s.jitter, s.jitter) if s.jitter else 0
    if max(h, w) > s.tile:  # random tile offset so seams move every step
        dy += rng.randint(-s.tile // 2, s.tile // 2)
        dx += rng.randint(-s.tile // 2, s.tile // 2)
    rolled = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    g, value = gradient(model, objective, rolled, tile=s.tile, dtype=dtype, channels_last=channels_last)
    g = _smooth(g, s.smooth)
    norm = g.abs().mean() if s.normalize == "mean" else g.std()
    # no additive epsilon: untrained networks can have gradients far below 1e-8
    rolled = rolled + s.step_size * g / norm.clamp_min(torch.finfo(torch.float32).tiny)
    return torch.roll(rolled, shifts=(-dy, -dx), dims=(-2, -1)).clamp(0.0, 1.0), value


# ----------------------------------------------------------------------------- the run

@dataclass
class DreamResult:
    """What a dream returns.

    Attributes:
        image: (1, 3, H, W) in [0, 1], CPU float32, the size of the (working-size) input.
        frames: (label, image) after each octave, each at the final size (for the GIF).
        history: one dict per step: ``step``, ``octave``, ``objective``, ``seconds``.
        notes: one-line notes (octaves reduced, class objective with untrained weights).
        input_image: the dream's start at the working size, (1, 3, H, W) in [0, 1], CPU.
    """

    image: torch.Tensor
    frames: list[tuple[str, torch.Tensor]]
    history: list[dict]
    settings: DreamSettings
    objective: str
    weights: str
    weights_label: str
    device: str
    precision: str
    seconds: float
    notes: list[str]
    octave_sizes: list[tuple[int, int]]
    input_image: torch.Tensor | None = None

    def animation_frames(self) -> list[torch.Tensor]:
        """The octave-by-octave progression for a GIF: the input, then the image after each
        octave, all (1, 3, H, W) in [0, 1] at the working size."""
        start = [self.input_image] if self.input_image is not None else []
        return start + [f for _, f in self.frames]

    def report(self) -> dict:
        """JSON-ready report (CLI ``--report`` and the page's recipe download)."""
        return {
            "settings": self.settings.to_dict(), "objective": self.objective, "weights": self.weights,
            "weights_label": self.weights_label, "device": self.device, "precision": self.precision,
            "seconds": round(self.seconds, 3), "notes": self.notes,
            "octave_sizes": [list(s) for s in self.octave_sizes], "history": self.history,
        }


class DreamRun:
    """One dream as an iterable of :class:`ProgressEvent` (``losses = {"objective": value}``).

    Args:
        model: the shared :class:`FeatureNet`.
        image: (1, 3, H, W) in [0, 1] (already at the working size).
        settings: :class:`DreamSettings`.
        guide_image: (1, 3, h, w) in [0, 1] for the guide objective.

    Raises:
        UnknownLayerError, ValueError: bad layer, channel, class or guide (before any work).
    """

    def __init__(self, model: FeatureNet, image: torch.Tensor, settings: DreamSettings,
                 guide_image: torch.Tensor | None = None, objective: Objective | None = None):
        settings.validate()
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"image must have shape (1, 3, H, W), got {tuple(image.shape)}")
        self.model, self.settings = model, settings
        self.device = model.device
        self.dtype = resolve_precision(settings.precision, self.device)
        self.channels_last = settings.channels_last == "on" or (
            settings.channels_last == "auto" and self.device.type in ("cuda", "cpu"))
        self.objective = objective or build_objective(model, settings, guide_image)
        self.notes: list[str] = []
        if settings.objective == "class" and model.weights.untrained:
            self.notes.append("class logits of untrained weights carry no meaning; the dream shows noise patterns")
        layers = [l for l in self.objective.layers]
        min_side = min_input_size(model.name, layers)
        self.base = image.to(self.device, torch.float32)
        h, w = self.base.shape[-2:]
        if min(h, w) < min_side:
            raise ValueError(f"the image is {w} x {h} px; {model.name} needs at least {min_side} px a side at "
                             f"{', '.join(layers)}")
        self.sizes, note = octave_sizes(h, w, settings.octaves, settings.octave_scale, min_side)
        if note:
            self.notes.append(note)
        if settings.tile < 2 * min_side:  # tiles are at least tile/2 wide; each must fit the network
            self.notes.append(f"tile size raised from {settings.tile} to {2 * min_side} px: {model.name} needs "
                              f"{min_side} px a side at {', '.join(layers)}")
            settings = dataclasses.replace(settings, tile=2 * min_side)
            self.settings = settings
        check_dream_run(model, h, w, settings, layers, self.dtype, len(self.sizes))  # MemoryEstimateError
        # fail early on bad channels etc.: evaluate the objective once on a small crop of the
        # smallest octave (a crop, so that memory stays bounded by the tile, not the image)
        small = _resize(self.base, self.sizes[0])
        crop = min(small.shape[-2], small.shape[-1], max(2 * min_side, 64))
        with torch.no_grad(), autocast(self.device, self.dtype):
            self.objective(model.features(small[..., :crop, :crop], layers))
        self.image = self.base.clone()
        self.history: list[dict] = []
        self.frames: list[tuple[str, torch.Tensor]] = []
        self.seconds = 0.0

    @property
    def total_steps(self) -> int:
        return len(self.sizes) * self.settings.steps

    def __iter__(self) -> Iterator[ProgressEvent]:
        s = self.settings
        rng = random.Random(s.seed)
        start = time.perf_counter()
        total = self.total_steps
        yield ProgressEvent(0, total, 0.0, {}, preview=self.base.cpu().clone(),
                            message="; ".join(self.notes) or None)
        bases = [_resize(self.base, size) for size in self.sizes]
        detail = torch.zeros_like(bases[0])
        step = 0
        for o, base in enumerate(bases):
            stage = f"octave {o + 1} of {len(bases)} ({base.shape[-1]}x{base.shape[-2]} px)"
            detail = _resize(detail, base.shape[-2:])
            x = (base + detail).clamp(0, 1)
            for _ in range(s.steps):
                x, value = dream_step(self.model, self.objective, x, s, rng, self.dtype, self.channels_last)
                step += 1
                if step == 1 and value == 0.0:
                    self.notes.append(dead_start_note(self.objective))
                self.seconds = time.perf_counter() - start
                self.history.append({"step": step, "octave": o + 1, "objective": value,
                                     "seconds": round(self.seconds, 4)})
                end_of_octave = _ == s.steps - 1
                preview = None
                if step % s.preview_every == 0 or end_of_octave:
                    self.image = _resize(x, self.base.shape[-2:]).detach()
                    preview = self.image.cpu()
                yield ProgressEvent(step, total, self.seconds, {"objective": value}, preview=preview,
                                    message=None, done=step == total, stage=stage)
            detail = x - base
            if s.steps == 0:  # with steps, the last step's preview already holds this octave's image
                self.image = _resize(x, self.base.shape[-2:]).detach()
            h, w = base.shape[-2:]
            self.frames.append((f"octave {o + 1} ({w}x{h})", self.image.cpu().clone()))
        if total == 0:
            yield ProgressEvent(0, 0, 0.0, {}, preview=self.image.cpu(), done=True)

    @property
    def dead_start(self) -> bool:
        """True when the objective was exactly 0 at the first step (:func:`dead_start_note`)."""
        return any(n.startswith(DEAD_START) for n in self.notes)

    def result(self) -> DreamResult:
        """The dream so far (also valid after stopping early)."""
        return DreamResult(
            image=self.image.detach().clamp(0, 1).cpu().clone(), frames=list(self.frames),
            history=list(self.history), settings=self.settings, objective=self.objective.description,
            weights=self.model.weights.kind, weights_label=self.model.weights.label, device=str(self.device),
            precision=precision_name(self.dtype), seconds=self.seconds, notes=list(self.notes),
            octave_sizes=list(self.sizes), input_image=self.base.cpu().clone())


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


def start_image(kind: str, size: int = 256, seed: int = 0) -> torch.Tensor:
    """A start for feature visualization from scratch: ``"gray"`` (0.5 plus faint noise) or
    ``"noise"`` (uniform), shape (1, 3, size, size) in [0, 1], seeded.

    Raises:
        ValueError: unknown kind.
    """
    g = torch.Generator().manual_seed(seed)
    if kind == "gray":
        return (0.5 + 0.02 * torch.randn(1, 3, size, size, generator=g)).clamp(0, 1)
    if kind == "noise":
        return torch.rand(1, 3, size, size, generator=g)
    raise ValueError(f"unknown start {kind!r}; use gray or noise")


def layer_hint(model_name: str, layer: str) -> str:
    """A one-line hint of what a depth tends to show, from the layer's relative depth."""
    names = [n for n in list_layers(model_name)]
    if layer not in names:
        return ""
    frac = names.index(layer) / max(1, len(names) - 1)
    if layer.startswith(("fc", "avgpool", "relu6", "relu7")):
        return "class scores: whole objects"
    if frac < 0.2:
        return "edges and colours"
    if frac < 0.45:
        return "textures"
    if frac < 0.7:
        return "patterns"
    return "object parts"


class ZoomRun:
    """A dream-zoom sequence (:func:`zoom_frames`) as one iterable of :class:`ProgressEvent`
    with steps counted across all frames; ``frames`` collects the finished frames
    ((1, 3, H, W) in [0, 1], CPU) and stays valid when the run is stopped early."""

    def __init__(self, model: FeatureNet, image: torch.Tensor, settings: DreamSettings, frames: int,
                 zoom: float = 0.05, guide_image: torch.Tensor | None = None):
        if not 1 <= frames <= 500:
            raise ValueError("zoom frames must be between 1 and 500")
        if not 0 <= zoom < 0.5:
            raise ValueError("zoom must be between 0 and 0.5")
        self.model, self.image, self.settings = model, image, settings
        self.n_frames, self.zoom = frames, zoom
        self.objective = build_objective(model, settings, guide_image)
        # the first frame's run checks layers, channels and sizes before any work, as DreamRun does
        self.notes: list[str] = DreamRun(model, image, settings, objective=self.objective).notes
        self.frames: list[torch.Tensor] = []

    def report(self) -> dict:
        """JSON-ready report of the sequence so far (CLI ``--report`` and the page's recipe)."""
        return {"settings": self.settings.to_dict(), "objective": self.objective.description,
                "weights": self.model.weights.kind, "weights_label": self.model.weights.label,
                "zoom_frames": len(self.frames), "zoom": self.zoom}

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
