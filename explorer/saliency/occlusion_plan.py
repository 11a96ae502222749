"""The geometry of fast occlusion (:mod:`explorer.saliency.occlusion`): where Captum's
occlusion windows lie, how far each window's change reaches layer by layer through a VGG stack,
and which windows are computed together.

Windows follow ``captum.attr.Occlusion`` (Zeiler & Fergus 2014, sec. 4.2): ceil((size - window)
/ stride) + 1 starts per axis. Through a 3x3 stride-1 padding-1 convolution a window's affected
region grows by one position on each side; through a 2x2/2 pooling it becomes the output cells
that cover it; a ReLU keeps it. Plain NumPy: no network, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["axis_starts", "check_windows", "occlusion_windows", "Axis", "plan_axis", "window_batches"]


# ----------------------------------------------------------------------------- windows

def axis_starts(size: int, window: int, stride: int) -> list[int]:
    """Window starts along one axis in px, Captum's way: ceil((size - window) / stride) + 1
    windows at 0, stride, 2 stride, ...; the last one may stick out of the image (it is cut
    off there)."""
    n = -(-(size - window) // stride) + 1
    return [k * stride for k in range(n)]


def check_windows(height: int, width: int, window: int, stride: int) -> None:
    """Check an occlusion geometry in px (the rules of :func:`occlusion_windows`).

    Raises:
        ValueError: a size that is not a positive whole number, a window larger than the
            image, or a stride larger than the window (pixels would be skipped).
    """
    for name, v in (("height", height), ("width", width), ("window", window), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive whole number, got {v!r}")
    if window > min(height, width):
        raise ValueError(f"the occlusion window ({window} px) is larger than the image ({width} x {height} px)")
    if stride > window and (height > window or width > window):
        raise ValueError(f"the stride ({stride} px) must not exceed the window ({window} px): pixels would be skipped")


def occlusion_windows(height: int, width: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the windows, in Captum's order and placement.

    Captum's ``Occlusion`` places ceil((H - window) / stride) + 1 windows along y at
    0, stride, 2 stride, ... (likewise along x); the last one may extend past the border, where
    it is cut off (so it occludes fewer pixels). Windows are numbered with y varying fastest.

    Args:
        height, width: image size in pixels.
        window: side of the square window in pixels, 1 <= window <= min(height, width).
        stride: step in pixels, 1 <= stride <= window (unless the window spans the image).

    Returns:
        list of (y, x) pixel coordinates, length ny * nx.

    Raises:
        ValueError: a window larger than the image, a stride larger than the window, or a
            size that is not a positive whole number.
    """
    check_windows(height, width, window, stride)
    ys, xs = axis_starts(height, window, stride), axis_starts(width, window, stride)
    return [(y, x) for x in xs for y in ys]


# ----------------------------------------------------------------------------- the plan

@dataclass
class Axis:
    """One layer step along one axis, for every window start on that axis (arrays of length n).

    The step reads a crop [crop_start, crop_start + crop_size) of the clean input activation
    (positions < 0 or >= the map size are the zero padding), pastes the occluded region of the
    previous step into it (R[src : src + length] -> crop[dst : dst + length]) and produces the
    occluded region [out_start, out_start + out_size) of its output."""

    crop_start: np.ndarray
    crop_size: int
    src: np.ndarray
    dst: np.ndarray
    length: np.ndarray
    out_start: np.ndarray
    out_size: int


def _paste_geometry(a: np.ndarray, size: int, crop_start: np.ndarray, crop_size: int):
    lo = np.maximum(a, crop_start)
    hi = np.minimum(a + size, crop_start + crop_size)
    return lo - a, lo - crop_start, np.maximum(hi - lo, 0)


def plan_axis(starts: Sequence[int], window: int, extent: int, ops: Sequence[tuple[str, int, int]]):
    """The affected regions along one axis, layer by layer.

    Args:
        starts: window starts in px along this axis.
        window: window side in px; ``extent``: the image's size along this axis in px.
        ops: per layer (kind ``"conv"``, ``"relu"`` or ``"pool"``, input extent, output extent).

    Returns:
        (input region start per window, input region size, list of :class:`Axis`, ``None`` for
        ReLU steps)."""
    starts = np.asarray(starts, dtype=np.int64)
    size = min(window, extent)
    a = np.minimum(starts, extent - size)  # the window, moved inside the image if cut off
    first_start, first_size = a.copy(), size
    plan: list[Axis | None] = []
    for kind, n_in, n_out in ops:
        if kind == "relu":
            plan.append(None)
            continue
        # the affected output interval [first, last] of each window, inside the map
        if kind == "conv":  # output o depends on inputs o-1..o+1: the region grows by one a side
            first, last = np.maximum(a - 1, 0), np.minimum(a + size, n_out - 1)
        else:  # 2x2/2 pooling, floor mode: cells covering the region (a trailing odd row is dropped)
            first = np.minimum(np.floor_divide(a, 2), n_out - 1)
            last = np.minimum(np.floor_divide(a + size - 1, 2), n_out - 1)
        out_size = int(max(1, (last - first + 1).max()))  # one size for all: moved inward at the borders
        o = np.clip(first, 0, n_out - out_size)
        if kind == "conv":
            crop_start, crop_size = o - 1, out_size + 2
        else:
            crop_start, crop_size = 2 * o, 2 * out_size
        src, dst, length = _paste_geometry(a, size, crop_start, crop_size)
        plan.append(Axis(crop_start, crop_size, src, dst, length, o, out_size))
        a, size = o, out_size
    return first_start, first_size, plan


def window_batches(wins: list[tuple[int, int]], window: int, ops_y, ops_x, height: int, width: int,
                   macs: list[int], batch_size: int) -> list[list[int]]:
    """Window indices in batches of at most ``batch_size``. A batch shares one region size per
    layer (the largest of its windows'), and windows near a border have smaller regions, so
    windows whose regions have the same sizes along y and along x go together; neighbouring
    small groups are merged when that costs at most 10 % more multiply-adds.

    Args:
        wins: (y, x) window corners in px (:func:`occlusion_windows`' order).
        window: window side in px; ``height``, ``width``: the image's size in px.
        ops_y, ops_x: per layer (kind, input extent, output extent) along each axis, as
            :func:`plan_axis` takes them.
        macs: per layer, multiply-adds per output position (0 for ReLU and pooling).
        batch_size: the most windows a batch holds, >= 1.

    Returns:
        lists of indices into ``wins``; every window is in exactly one batch."""
    def sizes(starts, extent, ops):
        return [tuple(p.out_size if p else 0 for p in plan_axis([s], window, extent, ops)[2]) for s in starts]

    ys, xs = sorted({y for y, _ in wins}), sorted({x for _, x in wins})
    key_y, key_x = dict(zip(ys, sizes(ys, height, ops_y))), dict(zip(xs, sizes(xs, width, ops_x)))

    def cost(members: list[int]) -> int:  # multiply-adds of the convolutions for a batch
        if not members:
            return 0
        sy = np.max([key_y[wins[i][0]] for i in members], 0)
        sx = np.max([key_x[wins[i][1]] for i in members], 0)
        return len(members) * int(sum(m * a * b for m, a, b in zip(macs, sy, sx)))

    groups: dict[tuple, list[int]] = {}
    for i, (y, x) in enumerate(wins):
        groups.setdefault((key_y[y], key_x[x]), []).append(i)
    chunks = []
    for key in sorted(groups, key=lambda k: cost(groups[k][:1]), reverse=True):
        g = groups[key]
        per = -(-len(g) // -(-len(g) // batch_size))  # equal parts of at most batch_size
        chunks += [g[i: i + per] for i in range(0, len(g), per)]
    batches: list[list[int]] = []
    for c in chunks:
        if batches and len(batches[-1]) + len(c) <= batch_size and \
                cost(batches[-1] + c) <= 1.1 * (cost(batches[-1]) + cost(c)):
            batches[-1] = batches[-1] + c
        else:
            batches.append(list(c))
    return batches
