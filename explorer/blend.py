"""Style blends: several style images with weights, as one style target (Gatys, Ecker & Bethge,
CVPR 2016, eq. 3 and 5, with the Gram matrices of several images averaged).

The style target of each layer is the weighted mean of the style images' position-normalized
Gram matrices (:func:`explorer.gatys.style_targets`), with the weights normalized to sum to 1:
``A^l = sum_i (w_i / sum_j w_j) G^l(s_i) / M^l(s_i)``. Each style image is scaled so that its
long side is the working size (its aspect ratio is kept), and each Gram matrix is divided by
its own number of positions M, so images of different sizes and shapes contribute on the same
scale (a Gram matrix is N x N whatever the image size). A weight of 0 leaves an image out
exactly; weights (1, 0) give the single-style target.

This module holds the blend's text form (``"a.jpg:0.7,b.jpg:0.3"``: :func:`parse_style_spec`,
:func:`format_style_spec`) and the scaling of its images (:func:`prepare_blend`); the targets
themselves are computed by :func:`explorer.gatys.style_targets`. It imports only
:mod:`explorer.images`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import torch

from .images import resize_long_side, to_tensor

__all__ = ["MAX_STYLES", "parse_style_spec", "format_style_spec", "prepare_blend"]

#: Most style images one blend takes.
MAX_STYLES = 6

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_style_spec(text: str) -> list[tuple[str, float]]:
    """Parse a blend of style images: ``"a.jpg:0.7,b.jpg:0.3"`` or ``"sample:gravel:2,sample:brick"``.

    Each comma-separated part is an image reference (a path or ``sample:NAME``) optionally
    followed by ``:WEIGHT``; a part without a weight weighs 1. Weights are returned as given
    (not normalized).

    Returns:
        list of (reference, weight), 1 to :data:`MAX_STYLES` entries.

    Raises:
        ValueError: an empty part, a negative or non-finite weight, all weights 0, or more than
            :data:`MAX_STYLES` images (one-line message).
    """
    parts = [p.strip() for p in (text or "").split(",")]
    if not any(parts):
        raise ValueError("no style image given")
    out: list[tuple[str, float]] = []
    for part in parts:
        if not part:
            raise ValueError(f"empty entry in the style list {text!r}")
        ref, weight = part, 1.0
        head, sep, tail = part.rpartition(":")
        if sep and head and _NUMBER.match(tail) and head != "sample":
            ref, weight = head, float(tail)
        if not weight >= 0 or weight == float("inf"):
            raise ValueError(f"style weight must be a finite number >= 0; got {tail!r} in {part!r}")
        out.append((ref, weight))
    if len(out) > MAX_STYLES:
        raise ValueError(f"at most {MAX_STYLES} style images can be blended; got {len(out)}")
    if not sum(w for _, w in out) > 0:
        raise ValueError("the style weights sum to 0; give at least one a positive weight")
    return out


def format_style_spec(entries: Sequence[tuple[str, float]]) -> str:
    """The inverse of :func:`parse_style_spec`: ``[("sample:gravel", 0.7), ("b.jpg", 0.3)]`` ->
    ``"sample:gravel:0.7,b.jpg:0.3"``; one entry of weight 1 is just its reference (what a
    recipe stores for a single style image)."""
    entries = list(entries)
    if len(entries) == 1 and entries[0][1] == 1.0:
        return entries[0][0]
    return ",".join(f"{ref}:{w:g}" for ref, w in entries)


def prepare_blend(content, styles: Sequence[tuple[Any, float]],
                  size: int) -> tuple[torch.Tensor, list[tuple[torch.Tensor, float]]]:
    """Scale a content image and the style images of a blend to the working size.

    Args:
        content: the content image (PIL, RGB).
        styles: (PIL image, weight) pairs, weights >= 0 as given (not yet normalized).
        size: working size, the long side in pixels; every image keeps its aspect ratio
            (:func:`explorer.gatys.prepare_images`).

    Returns:
        (content (1, 3, H, W), [(style (1, 3, H_i, W_i), weight), ...]) in [0, 1]; images of
        weight 0 are left out (they would not change the target).

    Raises:
        ValueError: no style image, a negative or non-finite weight, or weights summing to 0.
    """
    styles = list(styles)
    if not styles:
        raise ValueError("no style image given")
    for _, w in styles:
        if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
            raise ValueError(f"style weights must be finite numbers >= 0; got {w!r}")
    if not sum(w for _, w in styles) > 0:
        raise ValueError("the style weights sum to 0; give at least one a positive weight")
    c = to_tensor(resize_long_side(content, size))
    return c, [(to_tensor(resize_long_side(img, size)), float(w)) for img, w in styles if w > 0]
