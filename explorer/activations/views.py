"""What each layer computes: the activation explorer's views and statistics of a layer's
activations (:func:`explorer.nets.layers.layer_activations`): per-channel statistics, the
strongest channels as images, the layer's Gram matrix (what style transfer matches, Gatys et
al. 2016 eq. 3), a walk through the network, a comparison of two images at one layer, and the
top ImageNet predictions.

Everything returns NumPy arrays, PIL images or small dataclasses, so the page, the CLI and the
tests use the same code; each view is a cheap function of activations computed once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..nets.layers import fast_layout, walk_layers
from ..nets.models import FeatureNet
from ..optim.losses import gram_matrix, style_layer_loss

__all__ = ["ChannelStats", "channel_stats", "top_channels", "channel_grid", "channel_map_rgb", "gram_view",
           "GramDisplay", "gram_display",
           "walk_network", "Comparison", "compare_images", "top_predictions"]


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel statistics of a (C, H, W) activation.

    Attributes:
        mean, max, min: arrays of shape (C,).
        sparsity: fraction of exactly-zero values in the whole layer (after a ReLU: inactive units).
        zero_fraction: per channel, shape (C,).
    """

    mean: np.ndarray
    max: np.ndarray
    min: np.ndarray
    sparsity: float
    zero_fraction: np.ndarray


def _as_maps(acts: np.ndarray) -> np.ndarray:
    if acts.ndim != 3:
        raise ValueError(f"this view needs a spatial layer (C, H, W); got shape {acts.shape}")
    return acts


def channel_stats(acts: np.ndarray) -> ChannelStats:
    """Mean, max, min and zero fraction per channel of activations (C, H, W)."""
    a = _as_maps(acts).reshape(acts.shape[0], -1)
    zeros = (a == 0).mean(axis=1)
    return ChannelStats(a.mean(axis=1), a.max(axis=1), a.min(axis=1), float((a == 0).mean()), zeros)


def top_channels(acts: np.ndarray, n: int = 16, by: str = "mean") -> np.ndarray:
    """Indices of the ``n`` channels with the largest mean (or max) activation, largest first.

    Raises:
        ValueError: ``by`` not "mean" or "max", or n < 1.
    """
    if by not in ("mean", "max"):
        raise ValueError(f"rank channels by 'mean' or 'max', not {by!r}")
    if n < 1:
        raise ValueError("show at least one channel")
    a = _as_maps(acts).reshape(acts.shape[0], -1)
    score = a.mean(axis=1) if by == "mean" else a.max(axis=1)
    order = np.argsort(-score, kind="stable")
    return order[: min(n, len(order))]


@functools.lru_cache(maxsize=1)
def _viridis() -> np.ndarray:
    from plotly.colors import sample_colorscale, unlabel_rgb

    cols = sample_colorscale("Viridis", [i / 255 for i in range(256)])
    return np.array([unlabel_rgb(c) for c in cols], dtype=np.uint8)


def channel_map_rgb(channel_map: np.ndarray) -> Image.Image:
    """One channel's map (H, W) as a Viridis-coloured image, scaled to its own min..max."""
    m = channel_map.astype(np.float32)
    lo, hi = float(m.min()), float(m.max())
    idx = np.zeros(m.shape, np.uint8) if hi <= lo else ((m - lo) / (hi - lo) * 255).round().astype(np.uint8)
    return Image.fromarray(_viridis()[idx], "RGB")


def channel_grid(acts: np.ndarray, channels: Sequence[int], cols: int = 4, cell: int = 128) -> Image.Image:
    """A labelled grid of channel maps (each scaled to its own range, Viridis), as one RGB image.

    Args:
        acts: (C, H, W) activations.
        channels: which channels, in display order.
        cols: columns of the grid; ``cell``: side of each map in pixels.

    Returns:
        RGB image of size (cols * cell, rows * (cell + 16)); each map keeps its aspect ratio
        and is labelled ``#index [min, max]``.
    """
    _as_maps(acts)
    channels = list(channels)
    rows = max(1, math.ceil(len(channels) / cols))
    grid = Image.new("RGB", (cols * cell, rows * (cell + 16)), "white")
    draw = ImageDraw.Draw(grid)
    for i, c in enumerate(channels):
        r, k = divmod(i, cols)
        h, w = acts[c].shape
        scale = cell / max(h, w)  # keep the map's aspect ratio inside the square cell
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        tile = channel_map_rgb(acts[c]).resize(size, Image.Resampling.NEAREST)
        grid.paste(tile, (k * cell + (cell - size[0]) // 2, r * (cell + 16) + 16 + (cell - size[1]) // 2))
        draw.text((k * cell + 2, r * (cell + 16) + 2), f"#{c} [{acts[c].min():.3g}, {acts[c].max():.3g}]", fill="black")
    return grid


def gram_view(acts: np.ndarray, order: str = "cluster") -> tuple[np.ndarray, np.ndarray]:
    """The layer's position-normalized Gram matrix (what style transfer matches, eq. (3) / M)
    with its channels reordered so that structure is visible.

    Args:
        acts: (C, H, W) activations.
        order: ``"cluster"`` (average-linkage hierarchical clustering of the channels'
            correlation, SciPy), ``"activation"`` (by mean activation, largest first) or ``"none"``.

    Returns:
        (reordered Gram matrix (C, C) float32, channel order (C,)).
    """
    a = _as_maps(acts)
    g = gram_matrix(torch.from_numpy(np.ascontiguousarray(a)), normalize=True).numpy()
    c = g.shape[0]
    if order == "none":
        idx = np.arange(c)
    elif order == "activation":
        idx = np.argsort(-a.reshape(c, -1).mean(axis=1), kind="stable")
    elif order == "cluster":
        from scipy.cluster.hierarchy import leaves_list, linkage
        from scipy.spatial.distance import squareform

        d = np.sqrt(np.clip(np.diag(g), 1e-12, None))
        corr = np.clip(g / d[:, None] / d[None, :], -1.0, 1.0)
        dist = squareform(1.0 - corr, checks=False)
        idx = leaves_list(linkage(np.nan_to_num(dist, nan=1.0), method="average")) if c > 2 else np.arange(c)
    else:
        raise ValueError(f"order must be cluster, activation or none; got {order!r}")
    return g[np.ix_(idx, idx)], idx


#: Upper end of the colour range of the Gram display, a percentile of the off-diagonal entries.
GRAM_PERCENTILE = 99.0


@dataclass(frozen=True)
class GramDisplay:
    """What the Gram matrix tab draws: a matrix and the colour range its caption states.

    Attributes:
        z: (C, C) float32 values drawn (NaN where undefined, e.g. a channel that is zero everywhere).
        zmin, zmax: the colour range; values outside it get the end colours.
        scale: ``"correlation"`` or ``"gram"``.
        label: colour-bar title.
        clipped: fraction of the entries of ``z`` above ``zmax`` (0..1).
    """

    z: np.ndarray
    zmin: float
    zmax: float
    scale: str
    label: str
    clipped: float


def gram_display(g: np.ndarray, scale: str = "correlation") -> GramDisplay:
    """The matrix and colour range that make a Gram matrix's structure visible.

    A Gram matrix of a ReLU layer is dominated by a few strong channels (on the Caffe VGG19 its
    largest entry is about 25 times its median), so a linear colour scale from its minimum to its
    maximum paints almost every cell the darkest colour.

    Args:
        g: (C, C) Gram matrix (e.g. from :func:`gram_view`, any channel order).
        scale: ``"correlation"``: ``G_ij / sqrt(G_ii G_jj)``, the cosine between the two channels'
            maps (each channel's strength divided out; 0..1 after a ReLU, -1..1 otherwise; NaN
            for a channel that is zero everywhere), colours from 0 (-1 if any entry is negative)
            to the :data:`GRAM_PERCENTILE`-th percentile of the off-diagonal entries (the
            diagonal is 1 by construction). ``"gram"``: ``G`` itself, colours from 0 (its minimum
            if that is negative) to the same percentile of its off-diagonal entries.

    Returns:
        :class:`GramDisplay`.
    """
    g = np.asarray(g, dtype=np.float64)
    c = g.shape[0]
    if g.ndim != 2 or g.shape != (c, c):
        raise ValueError(f"expected a square Gram matrix; got shape {g.shape}")
    if scale == "correlation":
        d = np.sqrt(np.clip(np.diag(g), 0.0, None))
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(np.outer(d, d) > 0, g / np.outer(d, d), np.nan)
        z = np.clip(z, -1.0, 1.0)
        label = "G_ij/√(G_ii·G_jj)"
    elif scale == "gram":
        z = g
        label = "G/M"
    else:
        raise ValueError(f"scale must be correlation or gram; got {scale!r}")
    off = z[~np.eye(c, dtype=bool)] if c > 1 else z.ravel()
    off = off[np.isfinite(off)]
    finite = z[np.isfinite(z)]
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    if scale == "correlation" and lo < 0:
        lo = -1.0
    hi = float(np.percentile(off, GRAM_PERCENTILE)) if off.size else 1.0
    if not hi > lo:
        hi = float(finite.max()) if finite.size and finite.max() > lo else lo + 1.0
    with np.errstate(invalid="ignore"):
        clipped = float(np.mean(z > hi)) if z.size else 0.0
    return GramDisplay(z.astype(np.float32), lo, hi, scale, label, clipped)


@torch.no_grad()
def walk_network(model: FeatureNet, image: torch.Tensor, layers: Sequence[str] | None = None) -> list[tuple[str, int, np.ndarray]]:
    """The strongest channel (largest mean activation) at each of ``layers`` (default
    :func:`walk_layers`), from one forward pass.

    Returns:
        (layer, channel index, channel map (H_l, W_l) float32) per layer.
    """
    layers = list(layers or walk_layers(model.name))
    feats = model.features(fast_layout(image.to(model.device, torch.float32)), layers)
    out = []
    for l in layers:
        a = np.ascontiguousarray(feats[l][0].float().cpu().numpy())
        c = int(top_channels(a, 1)[0])
        out.append((l, c, a[c]))
    return out


@dataclass(frozen=True)
class Comparison:
    """Two images at the same layer.

    Attributes:
        top_a, top_b: top channels of each image (by mean activation).
        cosine: cosine similarity of the two (C,) mean-activation vectors, in [-1, 1]; in
            [0, 1] when both are non-negative (any layer after a ReLU), and then usually near 1,
            because every channel's mean is positive and the two vectors share that direction.
        centred_cosine: the cosine after subtracting each vector's mean over channels (the
            Pearson correlation of the two channel profiles), in [-1, 1]: 0 = no linear
            relation, whatever the sign of the activations; 0 when a vector is constant.
        style_distance: E_l between them at the paper's scale, Gatys et al. 2016 eq. (4)
            (image A as the generated image, B as the style target), the per-layer term style
            transfer minimizes with the *paper* loss scale; grows with the fourth power of the
            activations; computed in float64.
        relative_style_distance: the same distance at the *relative* scale, the style page's
            default: Ẽ_l = ||Â - B̂||_F^2 / ||B̂||_F^2 = E_l * 4 N_l^2 / ||B̂||_F^2, with Â, B̂ the
            position-normalized Gram matrices (G/M) of A and B and N_l channels (the factor of
            :func:`explorer.style.gatys.term_scales`); unitless, unchanged when every
            activation is scaled by one factor. NaN when B's Gram matrix is all zero.
        shared_top: channels in both top lists.
    """

    top_a: np.ndarray
    top_b: np.ndarray
    cosine: float
    style_distance: float
    relative_style_distance: float
    shared_top: list[int] = field(default_factory=list)
    centred_cosine: float = 0.0


def compare_images(acts_a: np.ndarray, acts_b: np.ndarray, n: int = 8) -> Comparison:
    """Compare two images' activations (C, H, W) at one layer (sizes may differ)."""
    a, b = _as_maps(acts_a), _as_maps(acts_b)
    if a.shape[0] != b.shape[0]:
        raise ValueError("both activations must come from the same layer")
    ma, mb = a.reshape(a.shape[0], -1).mean(1), b.reshape(b.shape[0], -1).mean(1)
    cos = _cosine(ma, mb)
    centred = _cosine(ma - ma.mean(), mb - mb.mean())
    # float64: untrained networks' activations can be ~1e11 or ~1e-11, where the squared Gram
    # differences overflow or underflow float32
    fa = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))[None]
    gb = gram_matrix(torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64))[None], normalize=True)[0]
    e = float(style_layer_loss(fa, gb)[0])
    nb2 = float(gb.pow(2).sum())
    rel = e * 4.0 * gb.shape[-1] ** 2 / nb2 if nb2 > 0 else float("nan")
    ta, tb = top_channels(a, n), top_channels(b, n)
    return Comparison(ta, tb, cos, e, rel, sorted(set(ta.tolist()) & set(tb.tolist())), centred)


def _cosine(u: np.ndarray, v: np.ndarray) -> float:
    """u.v / (|u| |v|) in the vectors' dtype, 0 when either vector is 0."""
    denom = float(np.linalg.norm(u) * np.linalg.norm(v))
    return float(u @ v / denom) if denom > 0 else 0.0


@torch.no_grad()
def top_predictions(model: FeatureNet, image: torch.Tensor, k: int = 5) -> list[tuple[str, float]] | None:
    """The top-k ImageNet classes with softmax probabilities, or ``None`` with untrained weights
    (their logits mean nothing) or weights without a classifier (conv-only VGG files)."""
    if model.weights.untrained or not model.has_classifier:
        return None
    logits = model(image.to(model.device, torch.float32))[0].float()
    p = torch.softmax(logits, 0)
    vals, idx = p.topk(k)
    cats = model.spec.weights_enum.meta["categories"]
    return [(cats[i], float(v)) for v, i in zip(vals.tolist(), idx.tolist())]
