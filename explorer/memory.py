"""How much memory a run needs, and refusing the ones that cannot fit, before any work starts.

A 4096 px style transfer on VGG19 needs tens of gigabytes; started on a laptop or a shared
classroom server it would swap the machine to a halt or be killed by the kernel, taking every
other user's session with it. So each heavy run (style transfer, Deep Dream, saliency maps)
first asks :func:`check_fits`, which compares :func:`estimate` with :func:`available_bytes` and
raises :class:`MemoryEstimateError` (a ``ValueError``: the CLI prints it as one ``error:`` line
with exit status 2, the pages as one ``st.error`` line) naming the largest size that fits.

The estimate is computed from the architecture, not guessed: the network's forward pass is
traced on the ``meta`` device (shapes only, no memory, no compute) under a dispatch mode that
adds up the bytes of every tensor the forward pass creates (convolutions, ReLUs, pooling and its
indices, concatenations, normalization). With gradients all of these are kept for the backward
pass, which itself needs gradient buffers the size of the largest activations; without
gradients only the largest consecutive pair is alive at once. On top come the images and the
optimizer's state (L-BFGS keeps two image-sized vectors per remembered step, up to 100 steps)
and, under mixed precision, the low-precision copy of the weights. ``bench/bench_memory.py``
compares it with the measured peak memory (README "Many users on one machine").

On CUDA the estimate cannot know what else the GPU holds or how the caching allocator
fragments, so :func:`is_out_of_memory` and :func:`out_of_memory_message` turn an
out-of-memory error that happens anyway into one line, after :func:`free_cached_memory`.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from typing import Sequence

import torch

from . import cgroups, choices
from .activations import output_shape
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
]

#: A run may use at most this fraction of the free memory (the rest is left for the page, the
#: other sessions and the estimate's error).
SAFETY = 0.85

#: L-BFGS history length used by :class:`explorer.style.StyleTransfer`.
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
        activations: tensors the forward pass creates (all kept for the backward pass; without
            gradients the largest pair alive at once).
        gradients: gradient buffers of the backward pass.
        images: the input, the optimized image and their image-sized companions.
        optimizer: optimizer state (L-BFGS history, Adam moments).
        weights: extra copies of the weights (the low-precision cast under autocast); the
            model's own parameters are not counted (they are already loaded and shared).
    """

    activations: int
    gradients: int
    images: int
    optimizer: int
    weights: int

    @property
    def total(self) -> int:
        return self.activations + self.gradients + self.images + self.optimizer + self.weights


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
        return [choices.DEFAULT_DREAM_LAYERS.get(name, net.layer_names[-1])]
    if net.spec.family == "vgg":
        return ["relu5_1"]
    spatial = [n for n in net.layer_names if n not in ("avgpool", "fc", "fc6", "fc7", "fc8")]
    return [spatial[-1]]


@functools.lru_cache(maxsize=256)
def _trace(name: str, height: int, width: int, deepest: str, pooling: str) -> tuple[int, int, int, int]:
    """Float and integer elements the forward pass of one image creates up to ``deepest``, the
    largest single float output and the largest pair of consecutive float outputs.

    Every op's non-aliasing outputs are counted (views and in-place ops are skipped), traced on
    the meta device; cached per (model, size, layer, pooling)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counts = {"float": 0, "int": 0, "largest": 0, "pair": 0, "prev": 0}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            schema = getattr(func, "_schema", None)
            returns = schema.returns if schema is not None else ()
            outs = out if isinstance(out, (tuple, list)) else (out,)
            for i, t in enumerate(outs):
                if not isinstance(t, torch.Tensor):
                    continue
                if i < len(returns) and returns[i].alias_info is not None:
                    continue  # a view or an in-place op: no new memory
                n = t.numel()
                if t.is_floating_point():
                    counts["float"] += n
                    counts["largest"] = max(counts["largest"], n)
                    counts["pair"] = max(counts["pair"], n + counts["prev"])
                    counts["prev"] = n
                else:
                    counts["int"] += n
            return out

    net = meta_net(name)
    layers = net.layer_names[: net.layer_names.index(deepest) + 1]
    with torch.device("meta"), Count():
        x = torch.empty(1, 3, height, width)
        net.features(x, layers, pooling=pooling)
    return counts["float"], counts["int"], counts["largest"], counts["pair"]


def _dtype_bytes(dtype) -> int:
    if dtype is None:
        return 4
    return torch.empty((), dtype=dtype).element_size()


def estimate(model_name_or_net, height: int, width: int, *, kind: str = "style", batch: int = 1,
             dtype: torch.dtype | None = torch.float32, backward: bool = True,
             layers: Sequence[str] | None = None, pooling: str = "max", optimizer: str | None = None,
             steps: int = 1, tile: int | None = None, octaves: int = 1) -> Estimate:
    """The memory one run needs, by part (see :class:`Estimate`).

    Args:
        model_name_or_net: a registered model name or a :class:`~explorer.models.FeatureNet`.
        height, width: the working size of one image in pixels.
        kind: ``"style"``, ``"dream"``, ``"saliency"``, ``"occlusion"`` or ``"activations"``
            (picks the default layers and what is kept besides the network's activations).
        batch: images passed through the network together.
        dtype: the network's compute dtype (``None`` or float32, bfloat16, float16).
        backward: gradients flow back to the image (all kinds but activations and occlusion).
        layers: the layers the run reads (the walk stops at the deepest); default: the kind's.
        pooling: ``"max"`` or ``"avg"``.
        optimizer: ``"lbfgs"`` or ``"adam"`` for a style transfer.
        steps: optimizer steps (the L-BFGS history holds up to 100 of them).
        tile: Deep Dream's tile side: each gradient pass sees at most tile x tile pixels.
        octaves: Deep Dream's octave count (one full-size frame is kept per octave).

    Raises:
        ValueError: unknown model or layer, or an image smaller than the network accepts.
    """
    name = _net(model_name_or_net)
    net = meta_net(name)
    wanted = _deepest(name, layers, kind)
    deepest = max(wanted, key=net.layer_names.index)
    h, w = int(height), int(width)
    ph, pw = (min(h, tile), min(w, tile)) if tile else (h, w)
    floats, ints, largest, pair = _trace(name, ph, pw, deepest, pooling)
    b = max(1, int(batch))
    fb = _dtype_bytes(dtype)
    low = fb < 4
    if backward:
        acts = b * (floats * fb + ints * 8)
        # the backward pass holds the gradient of the current layer and of its input
        grads = 2 * b * largest * fb
        if low:  # losses read float32 copies of the layers they use (kept for their backward)
            acts += b * sum(_layer_numel(name, ph, pw, l) for l in wanted) * 4
    else:
        acts = b * (pair * fb + sum(_layer_numel(name, ph, pw, l) for l in wanted) * fb)
        grads = 0
    image = 3 * h * w * 4
    if kind == "style":
        images = b * image * 6  # content, x, last_good, its gradient, preview copies
    elif kind == "dream":
        images = image * (8 + max(1, octaves))  # octave bases, detail, rolled, gradient; a frame per octave
    else:
        images = b * image * 4
    opt = 0
    if optimizer == "lbfgs":
        opt = b * image * (2 * min(max(int(steps) - 1, 0), LBFGS_HISTORY) + 6)
    elif optimizer == "adam":
        opt = b * image * 3
    weights = 0
    if low:
        weights = fb * sum(p.numel() for n in net.layer_names[: net.layer_names.index(deepest) + 1]
                           for p in net.body[n].parameters())
    return Estimate(int(acts), int(grads), int(images), int(opt), int(weights))


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
    (a SLURM job, a systemd unit, a container; :func:`explorer.cgroups.cgroup_free_bytes`). CUDA:
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
    batch = options.get("batch", 1)
    what += f" ({batch} images at a time)" if batch and batch > 1 else ""
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
