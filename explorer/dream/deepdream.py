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
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from ..nets.memory import check_fits
from ..nets.models import FeatureNet, list_layers, meta_net
from ..nets.weights import WeightsInfo
from ..core.devices import autocast, precision_name, resolve_precision
from ..optim.objectives import INPUT, Objective, channel, class_logit, guide, layer_l2, layer_mean, total
from ..core.progress import ProgressEvent
from ..core.recipes import run_info
from ..core.runs import Note, Run, note_codes
from .settings import DreamSettings
from ..optim.transforms import Jitter, roll, unroll

__all__ = [
    "build_objective",
    "DreamRun",
    "DreamResult",
    "layer_hint",
    "min_input_size",
    "octave_sizes",
    "gradient",
    "dream_step",
    "class_index",
    "start_image",
    "check_dream_memory",
]



# ----------------------------------------------------------------------------- objectives

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
    return total(parts)


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
            val = objective({**acts, INPUT: t}).sum()
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


#: How :func:`dead_start_note` begins.
DEAD_START = "the objective is exactly 0 on this starting image"
#: The code of that note (:class:`~explorer.core.runs.Note`): pages and the CLI look for it.
DEAD_START_CODE = "dead_start"


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
    jitter = Jitter(s.jitter)
    if max(h, w) > s.tile:  # and a random tile offset, so that seams move every step
        jitter = jitter + Jitter(s.tile // 2)
    offset = jitter.draw(rng)
    rolled = roll(x, offset)
    g, value = gradient(model, objective, rolled, tile=s.tile, dtype=dtype, channels_last=channels_last)
    g = _smooth(g, s.smooth)
    norm = g.abs().mean() if s.normalize == "mean" else g.std()
    # no additive epsilon: untrained networks can have gradients far below 1e-8
    rolled = rolled + s.step_size * g / norm.clamp_min(torch.finfo(torch.float32).tiny)
    return unroll(rolled, offset).clamp(0.0, 1.0), value


# ----------------------------------------------------------------------------- the run

@dataclass
class DreamResult:
    """What a dream returns.

    Attributes:
        image: (1, 3, H, W) in [0, 1], CPU float32, the size of the (working-size) input.
        frames: (label, image) after each octave, each at the final size (for the GIF).
        history: one dict per step: ``step``, ``octave``, ``objective``, ``seconds``.
        notes: one-line notes (:class:`~explorer.core.runs.Note`: octaves reduced, class
            objective with untrained weights, a dead start).
        input_image: the dream's start at the working size, (1, 3, H, W) in [0, 1], CPU.
        stopped: ``None`` when every step ran, else why the dream ended early (one line).
        weights_info: the network's weights (file, digest), for the report's run-info block.
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
    notes: list[Note]
    octave_sizes: list[tuple[int, int]]
    input_image: torch.Tensor | None = None
    stopped: str | None = None
    weights_info: WeightsInfo | None = None

    def animation_frames(self) -> list[torch.Tensor]:
        """The octave-by-octave progression for a GIF: the input, then the image after each
        octave, all (1, 3, H, W) in [0, 1] at the working size."""
        start = [self.input_image] if self.input_image is not None else []
        return start + [f for _, f in self.frames]

    def report(self) -> dict:
        """JSON-ready report (CLI ``--report`` and the page's recipe download): the run-info
        block (:func:`explorer.core.recipes.run_info`), then the dream's."""
        return {
            **run_info("dream", self.settings.to_dict(), self.weights_info, self.device, self.precision),
            "objective": self.objective, "weights": self.weights,
            "weights_label": self.weights_label, "device": self.device, "precision": self.precision,
            "seconds": round(self.seconds, 3), "notes": self.notes,
            "octave_sizes": [list(s) for s in self.octave_sizes], "history": self.history,
            "stopped": self.stopped,
        }


def check_dream_memory(model: FeatureNet, height: int, width: int, settings: DreamSettings, layers: Sequence[str],
                       dtype: torch.dtype | None, octaves: int, frames: int = 0) -> int:
    """:func:`explorer.nets.memory.check_fits` for a :class:`DreamRun` about to start: each gradient
    pass sees at most one tile of ``settings.tile`` px; the full-size image (``height`` x
    ``width`` px), its octaves and frames are kept, and a dream-zoom's ``frames`` finished
    frames (:class:`explorer.dream.zoom.ZoomRun`) with their pictures and GIF.

    Returns:
        the estimated bytes. Raises :class:`~explorer.nets.memory.MemoryEstimateError` when it does not fit.
    """
    return check_fits(model, int(height), int(width), kind="dream", device=model.device, dtype=dtype,
                      layers=list(layers), tile=int(settings.tile), octaves=int(octaves), frames=int(frames))


class DreamRun(Run):
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
        super().__init__()
        settings.validate()
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"image must have shape (1, 3, H, W), got {tuple(image.shape)}")
        self.model, self.settings = model, settings
        self.device = model.device
        self.dtype = resolve_precision(settings.precision, self.device)
        self.channels_last = settings.channels_last == "on" or (
            settings.channels_last == "auto" and self.device.type in ("cuda", "cpu"))
        self.objective = objective or build_objective(model, settings, guide_image)
        if settings.objective == "class" and model.weights.untrained:
            self.note("untrained_class", "class logits of untrained weights carry no meaning; the dream shows noise patterns")
        layers = [l for l in self.objective.layers]
        min_side = min_input_size(model.name, layers)
        self.base = image.to(self.device, torch.float32)
        h, w = self.base.shape[-2:]
        if min(h, w) < min_side:
            raise ValueError(f"the image is {w} x {h} px; {model.name} needs at least {min_side} px a side at "
                             f"{', '.join(layers)}")
        self.sizes, note = octave_sizes(h, w, settings.octaves, settings.octave_scale, min_side)
        if note:
            self.note("octaves_reduced", note)
        if settings.tile < 2 * min_side:  # tiles are at least tile/2 wide; each must fit the network
            self.note("tile_raised", f"tile size raised from {settings.tile} to {2 * min_side} px: {model.name} needs "
                              f"{min_side} px a side at {', '.join(layers)}")
            settings = dataclasses.replace(settings, tile=2 * min_side)
            self.settings = settings
        check_dream_memory(model, h, w, settings, layers, self.dtype, len(self.sizes))  # MemoryEstimateError
        # fail early on bad channels etc.: evaluate the objective once on a small crop of the
        # smallest octave (a crop, so that memory stays bounded by the tile, not the image)
        small = _resize(self.base, self.sizes[0])
        crop = min(small.shape[-2], small.shape[-1], max(2 * min_side, 64))
        with torch.no_grad(), autocast(self.device, self.dtype):
            x0 = small[..., :crop, :crop]
            self.objective({**model.features(x0, layers), INPUT: x0})
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
                    self.note(DEAD_START_CODE, dead_start_note(self.objective))
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
        return DEAD_START_CODE in note_codes(self.notes)

    def result(self) -> DreamResult:
        """The dream so far (also valid after stopping early)."""
        return DreamResult(
            image=self.image.detach().clamp(0, 1).cpu().clone(), frames=list(self.frames),
            history=list(self.history), settings=self.settings, objective=self.objective.description,
            weights=self.model.weights.kind, weights_label=self.model.weights.label, device=str(self.device),
            precision=precision_name(self.dtype), seconds=self.seconds, notes=list(self.notes),
            octave_sizes=list(self.sizes), input_image=self.base.cpu().clone(), stopped=self.stopped,
            weights_info=self.model.weights)


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


