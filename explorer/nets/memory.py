"""How much memory a run needs, and refusing the ones that cannot fit, before any work starts.

A 4096 px style transfer on VGG19 needs tens of gigabytes; started on a laptop or a shared
classroom server it would swap the machine to a halt or be killed by the kernel, taking every
other user's session with it. So each heavy run (style transfer, Deep Dream and its zoom,
saliency and occlusion maps, feature visualization, the activation view) first asks
:func:`check_fits`, which compares :func:`estimate` with :func:`available_bytes` and raises
:class:`MemoryEstimateError` (a ``ValueError``: the CLI prints it as one ``error:`` line with exit
status 2, the pages as one ``st.error`` line) naming the largest size that fits.

The estimate is computed from the architecture, not guessed: the network's passes are traced on
the ``meta`` device (shapes only, no memory, no compute; :mod:`explorer.nets.liveness`) under a
dispatch mode that follows every tensor they create (convolutions, ReLUs, pooling and its
indices, concatenations, normalization) and when it is freed: with gradients the forward pass
keeps what the backward pass needs, which then adds its gradient buffers; without gradients only
what is alive at once counts (residual branches and the layers asked for included). The images
that pass together are traced together: a batch, integrated gradients' internal batch,
occlusion's occluded images per pass. On top come the objective's Gram matrices, NNPACK's
Winograd workspace (float32 convolutions on the CPU), the images, the optimizer's state (L-BFGS
keeps two image-sized vectors per remembered step, up to 100 steps), a dream-zoom's frames and
their GIF, under mixed precision the low-precision copy of the weights, what the allocator adds
(:data:`explorer.nets.liveness.ALLOCATOR`, :data:`OVERHEAD`) and a margin (:data:`MARGIN`). The
estimate is meant as an upper bound of the peak resident memory a run adds;
``bench/bench_memory.py`` measures every kind of run against it (README "Many users on one
machine"). What is free comes from :mod:`explorer.core.cgroups`: ``MemAvailable``, or less under
the process's own cgroup limits.

On CUDA the estimate cannot know what else the GPU holds or how the caching allocator
fragments, so :func:`is_out_of_memory` and :func:`out_of_memory_message` turn an
out-of-memory error that happens anyway into one line, after :func:`free_cached_memory`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Sequence

import torch

from ..core import cgroups
from . import winograd
from .layers import output_shape, receptive_field
from .liveness import ALLOCATOR, rss, trace_pass
from .models import FeatureNet, meta_net

__all__ = [
    "MemoryEstimateError",
    "Estimate",
    "estimate",
    "estimate_bytes",
    "available_bytes",
    "check_fits",
    "largest_fitting_size",
    "format_bytes",
    "is_out_of_memory",
    "out_of_memory_message",
    "free_cached_memory",
    "SAFETY",
    "OVERHEAD",
    "MARGIN",
]

#: A run may use at most this fraction of the free memory (the rest is left for the page, the
#: other sessions and the estimate's error).
SAFETY = 0.85

#: A fixed allowance in every estimate for what does not grow with the image: the allocator's
#: slack, the math libraries' per-thread buffers, Python objects (measured at the smallest sizes).
OVERHEAD = 24 * 2**20

#: Every estimate adds this fraction of itself: the peak of the same run varies between runs
#: (up to 7 % in bench/bench_memory.py), and some runs hold buffers the trace does not see (the
#: hooks of guided backprop, Adam's and the transforms' temporaries).
MARGIN = 0.15

#: L-BFGS history length used by :class:`explorer.style.transfer.StyleTransfer`.
LBFGS_HISTORY = 100

_KIND_TITLES = {"style": "style transfer", "dream": "Deep Dream", "saliency": "saliency map",
                "activations": "activation view", "occlusion": "occlusion map"}


class MemoryEstimateError(ValueError):
    """A run that would need more memory than is free, refused before it starts. The message is
    one line: what was asked, how much it needs, how much is free, and the largest size that
    fits."""


@dataclass(frozen=True)
class Estimate:
    """The parts of a run's memory, in bytes (see the module docstring).

    Attributes:
        activations: tensors the forward pass creates, times the images that pass through the
            network together (all kept for the backward pass; without gradients the most that
            is alive at once).
        gradients: gradient buffers of the backward pass.
        images: the input, the optimized image and their image-sized companions (for occlusion
            through Captum, the batch of occluded images and their masks).
        optimizer: optimizer state (L-BFGS history, Adam moments).
        weights: extra copies of the weights (the low-precision cast under autocast, Winograd's
            flipped kernels); the model's own parameters are not counted (already loaded, shared).
        objective: what the objective computes from the layers: Gram matrices (C x C per style
            layer and image) and the loss's layer-sized buffers.
        workspace: convolution scratch memory (NNPACK's Winograd transforms) and a fixed
            allowance for the allocator and the math libraries' buffers (:data:`OVERHEAD`).
        frames: finished frames a dream-zoom keeps, as tensors and pictures, and their GIF.
        margin: :data:`MARGIN` times the rest.
    """

    activations: int
    gradients: int
    images: int
    optimizer: int
    weights: int
    objective: int = 0
    workspace: int = 0
    frames: int = 0
    margin: int = 0

    @property
    def total(self) -> int:
        return (self.activations + self.gradients + self.images + self.optimizer + self.weights + self.objective
                + self.workspace + self.frames + self.margin)


# ----------------------------------------------------------------------------- tracing

def _net(model_name_or_net):
    if isinstance(model_name_or_net, FeatureNet):
        return model_name_or_net.name
    if isinstance(model_name_or_net, str):
        return meta_net(model_name_or_net).name
    # anything standing in for a FeatureNet (a wrapper): its spec names the architecture
    spec = getattr(model_name_or_net, "spec", None)
    name = getattr(spec, "name", None) or getattr(model_name_or_net, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"expected a model name or a FeatureNet, got {type(model_name_or_net).__name__}")
    return meta_net(name).name


def _deepest(name: str, layers: Sequence[str] | None, kind: str) -> list[str]:
    net = meta_net(name)
    if layers:
        return net.check_layers(layers)
    if kind == "dream":
        return [net.spec.dream_layer]
    if kind == "style" and net.spec.style_layers:  # a style transfer reads the style layers
        return list(net.spec.style_layers)
    if net.spec.family == "vgg":
        return ["relu5_1"]
    spatial = [n for n in net.layer_names if n not in ("avgpool", "fc", "fc6", "fc7", "fc8")]
    return [spatial[-1]]


def _dtype_bytes(dtype) -> int:
    if dtype is None:
        return 4
    return torch.empty((), dtype=dtype).element_size()


def _winograd(convs, conv: str) -> tuple[int, int]:
    """(NNPACK's workspace for the largest of the convolutions ``conv`` runs on Winograd, their
    flipped kernels) in bytes. Measured on NNPACK's F(6x6, 3x3): the input and output transforms
    take 64 floats per 6 x 6 tile and channel, the kernel transforms up to 16 per kernel; the
    workspace grows to the largest convolution and is kept (per thread) after the run."""
    if conv not in ("auto", "winograd") or not winograd.available():
        return 0, 0
    used = [(ci, co, h, w) for ci, co, h, w in convs
            if conv == "winograd" or (h * w >= winograd.MIN_POSITIONS and ci >= winograd.MIN_CHANNELS)]
    space = max((64 * math.ceil(h / 6) * math.ceil(w / 6) * (ci + co) + 16 * ci * co for ci, co, h, w in used),
                default=0)
    return 4 * space, 4 * sum(9 * ci * co for ci, co, _, _ in used)


def _region(name: str, layer: str, window: int, h: int, w: int) -> int:
    """Positions of ``layer`` that one occluded window of ``window`` px reaches (its receptive
    field arithmetic; at most the whole map): what the fast occlusion engine recomputes."""
    field = receptive_field(name, layer)
    shape = output_shape(name, layer, h, w)
    if field is None or len(shape) != 3:
        return math.prod(shape[1:]) if len(shape) == 3 else 1
    rf, stride = field
    side = (window + rf - 2) // stride + 2
    return min(shape[1], side) * min(shape[2], side)


def estimate(model_name_or_net, height: int, width: int, *, kind: str = "style", batch: int = 1,
             dtype: torch.dtype | None = torch.float32, backward: bool = True,
             layers: Sequence[str] | None = None, pooling: str = "max", optimizer: str | None = None,
             steps: int = 1, tile: int | None = None, octaves: int = 1, gram_layers: Sequence[str] | None = None,
             conv: str = "direct", frames: int = 0, windows: int | None = None, window: int | None = None,
             engine: str = "captum", input_gradient: bool = True) -> Estimate:
    """The memory one run needs, by part (see :class:`Estimate`); an upper bound of the peak
    resident memory the run adds (measured against it in ``bench/bench_memory.py``).

    Args:
        model_name_or_net: a registered model name or a :class:`~explorer.nets.models.FeatureNet`.
        height, width: the working size of one image in pixels.
        kind: ``"style"``, ``"dream"``, ``"saliency"``, ``"occlusion"``, ``"activations"`` or
            ``"feature visualization"`` (picks the default layers and what is kept besides the
            network's activations).
        batch: images passed through the network together (occlusion: occluded images per pass).
        dtype: the network's compute dtype (``None`` or float32, bfloat16, float16).
        backward: gradients flow back to the image (all kinds but activations and occlusion).
        layers: the layers the run reads (the walk stops at the deepest); default: the kind's
            (a style transfer: the network's style layers).
        pooling: ``"max"`` or ``"avg"``.
        optimizer: ``"lbfgs"`` or ``"adam"`` for a style transfer.
        steps: optimizer steps (the L-BFGS history holds up to 100 of them).
        tile: Deep Dream's tile side: each gradient pass sees at most tile x tile pixels.
        octaves: Deep Dream's octave count (one full-size frame is kept per octave).
        gram_layers: layers whose Gram matrices the objective takes; default: all of ``layers``
            for a style transfer, none otherwise.
        conv: how float32 3x3 convolutions run on the CPU (``"auto"`` or ``"winograd"`` add
            NNPACK's workspace; pass ``"direct"`` on other devices and in low precision).
        frames: finished frames a dream-zoom keeps (float32 tensor, RGB picture, GIF frame).
        windows: occlusion's number of windows (a pass holds at most that many images).
        window: occlusion's window side in px (the fast engine recomputes what it reaches).
        engine: occlusion's ``"captum"`` (whole images) or ``"fast"`` (explorer.saliency.occlusion).
        input_gradient: the backward pass runs down to the image (Grad-CAM's stops at its layer,
            so its gradient buffers do not count; the forward pass still keeps its tensors).

    Raises:
        ValueError: unknown model or layer, or an image smaller than the network accepts.
    """
    name = _net(model_name_or_net)
    net = meta_net(name)
    wanted = _deepest(name, layers, kind)
    h, w = int(height), int(width)
    ph, pw = (min(h, tile), min(w, tile)) if tile else (h, w)
    b = max(1, int(batch))
    n = min(b, windows) if windows and not backward else b  # occlusion: at most one image per window
    fast = kind == "occlusion" and engine == "fast"
    t = trace_pass(name, ph, pw, tuple(wanted), pooling, 1 if fast else n, backward and not fast)
    fb = _dtype_bytes(dtype)
    low = fb < 4
    image = 3 * h * w * 4
    numel = {l: _layer_numel(name, ph, pw, l) for l in wanted}
    grams = [output_shape(name, l, ph, pw)[0] ** 2 for l in (wanted if gram_layers is None and kind == "style"
                                                             else gram_layers or ())]
    objective = images = opt = grads = 0
    if fast:  # the clean pass keeps every layer, then batches of windows each recompute what they reach
        acts = (t.floats * 4 + t.ints * 8) * ALLOCATOR
        walk = net.layer_names[: max(net.layer_names.index(l) for l in wanted) + 1]
        per = {l: _region(name, l, window or min(h, w), h, w) * output_shape(name, l, h, w)[0] for l in walk}
        # a step holds the region before and after and the crop between; a layer the objective
        # reads also the clean region, the difference and both concatenated twice, and a style
        # layer the change of its Gram matrix and its square
        step = max(3 * max(per.values()), 7 * max(per[l] for l in wanted))
        objective = rss(b * 4 * step) + rss(b * 4 * max(grams, default=0), 2)
        images = rss(image, 6)
    elif backward:
        # what the forward pass keeps for the backward pass, and the backward pass's peak above it
        acts = t.kept[0] * fb / 4 + t.kept[1]
        grads = ((t.peak[0] - t.kept[0]) * fb / 4 + t.peak[1] - t.kept[1]) if input_gradient else 0
        if low:  # losses read float32 copies of the layers they use (kept for their backward)
            acts += sum(rss(b * 4 * v) for v in numel.values())
        # Gram matrices and loss terms kept for the backward pass, the style targets
        objective = sum(rss(b * 4 * g, 3) + rss(4 * g) for g in grams)
    else:
        acts = t.peak[0] * fb / 4 + t.peak[1]
        # the largest Gram matrix, divided by the positions and squared; the activation view copies
        # its layer into NumPy and takes statistics of it
        objective = rss(n * 4 * max(grams, default=0), 3)
        if kind == "activations":
            objective += sum(rss(n * 4 * v, 2) for v in numel.values())
        if kind == "occlusion":  # Captum: the input repeated, the masks, the occluded images
            images = rss(b * image) + rss(n * image, 9)
    if kind == "style":  # content, x, its clamp and copies, gradient, previews; style image, start
        images = rss(b * image, 10) + rss(image, 2)
    elif kind == "dream":  # octave bases, detail, x, rolled, gradient and its steps, previews; a frame per octave
        images = rss(image, 16 + max(1, octaves))
    elif kind == "activations":  # the image, its channels_last copy, the picture
        images = rss(b * image, 3)
    elif kind != "occlusion":  # the images, Captum's and the transforms' copies of them
        images = rss(b * image, 4) + rss(image, 4)
    if optimizer == "lbfgs":
        opt = rss(b * image, 2 * min(max(int(steps) - 1, 0), LBFGS_HISTORY) + 6)
    elif optimizer == "adam":
        opt = rss(b * image, 3)
    weights = 0
    if low:
        deepest = max(wanted, key=net.layer_names.index)
        weights = fb * sum(p.numel() for l in net.layer_names[: net.layer_names.index(deepest) + 1]
                           for p in net.body[l].parameters())
    space, flipped = _winograd(t.convs, conv) if backward and not low else (0, 0)
    # a zoom keeps every frame: float32 tensor (12 bytes a pixel), RGB picture (3), GIF frame and bytes (3)
    kept = int(rss(h * w * 18, int(frames)))
    parts = [int(v) for v in (acts, grads, images, opt, weights + flipped, objective, space + OVERHEAD, kept)]
    return Estimate(*parts, margin=int(MARGIN * sum(parts)))


def _layer_numel(name: str, h: int, w: int, layer: str) -> int:
    return math.prod(output_shape(name, layer, h, w))


def estimate_bytes(model_name_or_net, height: int, width: int, *, kind: str = "style", batch: int = 1,
                   dtype: torch.dtype | None = torch.float32, backward: bool = True, **options) -> int:
    """:func:`estimate`'s total in bytes (same arguments)."""
    return estimate(model_name_or_net, height, width, kind=kind, batch=batch, dtype=dtype,
                    backward=backward, **options).total


# ----------------------------------------------------------------------------- what is free

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}


def _limit_from_env() -> int | None:
    """``EXPLORER_MEMORY_LIMIT`` (e.g. ``8GB``, ``512MB``, or bytes): the most one run may use."""
    raw = os.environ.get("EXPLORER_MEMORY_LIMIT", "").strip().lower()
    if not raw:
        return None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([a-z]*)", raw)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"EXPLORER_MEMORY_LIMIT must be a size such as 8GB or 512MB; got {raw!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def available_bytes(device: str | torch.device = "cpu") -> int | None:
    """Memory a new run can use now on ``device``, in bytes, or None when unknown (Apple MPS).

    CPU: ``MemAvailable`` of ``/proc/meminfo``, or less under the cgroup limit of this process
    (a SLURM job, a systemd unit, a container; :func:`explorer.core.cgroups.cgroup_free_bytes`). CUDA:
    the driver's free memory plus what PyTorch's caching allocator holds but does not use.
    ``EXPLORER_MEMORY_LIMIT`` (e.g. ``8GB``) caps it, for a server shared by many users.
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    free: int | None
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        free, _ = torch.cuda.mem_get_info(index)
        free += torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
    elif dev.type == "cpu":
        options = [v for v in (cgroups.meminfo_available(), cgroups.cgroup_free_bytes()) if v is not None]
        free = min(options) if options else None
    else:
        free = None
    limit = _limit_from_env()
    if limit is not None:
        free = limit if free is None else min(free, limit)
    return free


def format_bytes(n: float) -> str:
    """``38 GB``, ``1.5 GB``, ``640 MB``: two significant figures, binary units."""
    for unit, scale in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v >= 10 else f"{v:.1f} {unit}"
    return f"{int(n)} bytes"


# ----------------------------------------------------------------------------- refusing

def largest_fitting_size(model_name_or_net, height: int, width: int, budget: int, *, step: int = 32,
                         **options) -> int | None:
    """The largest long side (a multiple of ``step``, below the asked one) at which the run
    fits in ``budget`` bytes, keeping the aspect ratio; None when not even the smallest does."""
    name = _net(model_name_or_net)
    long_side = max(height, width)
    smallest = max(meta_net(name).spec.min_size, step)

    def fits(side: int) -> bool:
        h = max(1, round(height * side / long_side))
        w = max(1, round(width * side / long_side))
        if min(h, w) < meta_net(name).spec.min_size:
            return True  # too thin to matter: the network refuses it with its own message
        return estimate_bytes(name, h, w, **options) <= budget

    lo, hi = smallest // step, (long_side - 1) // step  # in units of step
    if hi < lo or not fits(lo * step):
        return None
    while lo < hi:  # the estimate grows with the size: binary search
        mid = (lo + hi + 1) // 2
        if fits(mid * step):
            lo = mid
        else:
            hi = mid - 1
    return lo * step


def check_fits(model_name_or_net, height: int, width: int, *, kind: str = "style",
               device: str | torch.device = "cpu", **options) -> int:
    """Refuse a run that needs more memory than ``device`` has free (see :data:`SAFETY`).

    Args:
        model_name_or_net, height, width, kind, options: as for :func:`estimate`.
        device: where the run will compute.

    Returns:
        the estimate in bytes (also when the free memory is unknown).

    Raises:
        MemoryEstimateError: one line, e.g. "a 4096 px style transfer needs about 38 GB of memory;
            this machine has 21 GB free; try 1536 px or less".
    """
    need = estimate_bytes(model_name_or_net, height, width, kind=kind, **options)
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    free = available_bytes(dev)
    if free is None or need <= SAFETY * free:
        return need
    budget = int(SAFETY * free)
    best = largest_fitting_size(model_name_or_net, height, width, budget, kind=kind, **options)
    where = "the GPU" if dev.type == "cuda" else "this machine"
    what = _KIND_TITLES.get(kind, kind)
    batch, frames = options.get("batch", 1), options.get("frames", 0)
    what += f" ({batch} images at a time)" if batch and batch > 1 else ""
    what += f" zoom ({frames} frames)" if frames else ""
    advice = f"try {best} px or less" if best else "try a smaller size or batch, or free memory"
    raise MemoryEstimateError(f"a {max(height, width)} px {what} needs about {format_bytes(need)} of memory; {where} has "
                              f"{format_bytes(free)} free; {advice}")




# ----------------------------------------------------------------------------- out of memory anyway

def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA's OutOfMemoryError, Python's MemoryError and PyTorch's CPU allocator
    failure ("can't allocate memory")."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def free_cached_memory() -> None:
    """Give memory cached by PyTorch back (CUDA's caching allocator; MPS's)."""
    import gc

    gc.collect()
    if torch.cuda.is_initialized():  # a CUDA run happened in this process
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        mps.empty_cache()


def out_of_memory_message(exc: BaseException, what: str = "the run") -> str:
    """One line for a run that ran out of memory (after :func:`free_cached_memory`)."""
    where = "GPU memory" if isinstance(exc, torch.cuda.OutOfMemoryError) else "memory"
    return (f"{what} ran out of {where} and was stopped (the memory is freed); try a smaller size "
            f"or batch, or wait until other runs finish")
