"""Which tensors a network's pass keeps alive at once, traced on the ``meta`` device (shapes
only: no memory, no compute), as resident memory: the measurement under
:mod:`explorer.nets.memory`'s estimates.

:func:`trace_pass` runs the pass under a dispatch mode that sees every op, counts every new
tensor (convolutions, ReLUs, pooling and its indices, concatenations, normalization; views and
in-place ops add nothing) and follows when each is freed, so that residual branches, the layers
asked for and, with gradients, what the forward pass keeps for the backward pass count as they
do in a real run. :func:`rss` turns tensor bytes into the resident memory glibc's allocator
holds for them (:data:`ALLOCATOR`, :data:`MMAP_MAX`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .models import meta_net

__all__ = [
    "ALLOCATOR",
    "MMAP_MAX",
    "Traced",
    "trace_pass",
    "rss",
]

#: The resident memory a run adds is more than the tensors alive at its peak: glibc serves
#: blocks below MMAP_MAX (its largest mmap threshold, 32 MiB on 64-bit Linux) from its heap,
#: where freed blocks stay resident and fragment, so those count this many times; larger blocks
#: are mapped and unmapped exactly. Measured (bench/bench_memory.py) on GoogLeNet, whose
#: tensors are small: 1.2-1.3 times the traced tensors.
ALLOCATOR = 1.3
MMAP_MAX = 32 * 2**20


def rss(block: float, count: float = 1) -> float:
    """Resident bytes of ``count`` tensors of ``block`` bytes each (see :data:`ALLOCATOR`)."""
    return count * block * (ALLOCATOR if block < MMAP_MAX else 1.0)


@dataclass(frozen=True)
class Traced:
    """What :func:`trace_pass` saw of one pass; bytes count as resident memory (:func:`rss`)."""

    floats: int  # float elements of every tensor the forward pass creates
    ints: int  # integer elements (pooling indices)
    kept: tuple[float, float]  # (float, integer) bytes, as resident memory, alive after the forward pass
    peak: tuple[float, float]  # ... at the peak of the forward (and backward) pass
    convs: tuple  # (c_in, c_out, h, w) of each 3x3, stride 1, padding 1 convolution (Winograd's)


@functools.lru_cache(maxsize=256)
def trace_pass(name: str, height: int, width: int, layers: tuple[str, ...], pooling: str, batch: int,
               grad: bool) -> Traced:
    """The pass of ``batch`` images through ``layers`` (the walk stops at the deepest), traced
    on the meta device (shapes only: no memory, no compute) under a dispatch mode that sees
    every op.

    Every op's non-aliasing output is counted (views and in-place ops are skipped), and a weak
    reference on each notes when its memory is freed (its last reference gone; the autograd
    graph's saved tensors hold theirs), so the trace follows what is alive at once, residual
    branches and the requested layers included. With ``grad`` the forward pass is followed by
    the backward pass of the mean squares of the layers (the gradient buffers of every
    objective look like that). Bytes count as resident memory: times :data:`ALLOCATOR` for
    blocks that glibc serves from its heap (below :data:`MMAP_MAX`), once for larger ones.
    Cached per (model, size, layers, pooling, batch, grad).

    Args:
        name: a registered model name; height, width: one image's size in px; layers: layer
            names of that network; pooling: ``"max"`` or ``"avg"``; batch: images passed
            together; grad: follow the forward pass with a backward pass.

    Returns:
        :class:`Traced`: element counts, and (float, integer) resident bytes kept after the
        forward pass and at the peak.

    Raises:
        ValueError: unknown model or layer, or an image smaller than the network accepts.
    """
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode

    c = {"float": 0, "int": 0, "live": [0.0, 0.0], "peak": (0.0, 0.0)}
    convs: list[tuple[int, int, int, int]] = []
    refs = set()

    def freed(ref, n: float, i: int) -> None:
        refs.discard(ref)
        c["live"][i] -= n

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten.convolution.default:
                x, wt, _, stride, padding, dilation, transposed, _, groups = args
                if tuple(wt.shape[2:]) == (3, 3) and list(stride) == [1, 1] and list(padding) == [1, 1] and \
                        list(dilation) == [1, 1] and not transposed and groups == 1:
                    convs.append((int(x.shape[1]), int(wt.shape[0]), int(x.shape[2]), int(x.shape[3])))
            schema = getattr(func, "_schema", None)
            returns = schema.returns if schema is not None else ()
            for i, t in enumerate(out if isinstance(out, (tuple, list)) else (out,)):
                if not isinstance(t, torch.Tensor) or (i < len(returns) and returns[i].alias_info is not None):
                    continue  # a view or an in-place op: no new memory
                kind = 0 if t.is_floating_point() else 1
                c["int" if kind else "float"] += t.numel()
                n = t.numel() * (8 if kind else 4)
                n *= ALLOCATOR if n < MMAP_MAX else 1.0
                c["live"][kind] += n
                if sum(c["live"]) > sum(c["peak"]):
                    c["peak"] = tuple(c["live"])
                refs.add(weakref.ref(t, functools.partial(freed, n=n, i=kind)))
            return out

    net = meta_net(name)
    with torch.device("meta"), Count(), torch.set_grad_enabled(grad):
        x = torch.empty(batch, 3, height, width, requires_grad=grad)
        feats = net.features(x, layers, pooling=pooling)
        kept = tuple(c["live"])
        if grad:
            sum(f.float().pow(2).mean() for f in feats.values()).backward()
    return Traced(c["float"], c["int"], kept, c["peak"], tuple(convs))
