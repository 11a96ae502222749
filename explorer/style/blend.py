"""Style blends: several style images with weights, as one style target (Gatys, Ecker & Bethge,
CVPR 2016, eq. 3 and 5, with the Gram matrices of several images averaged).

The style target of each layer is the weighted mean of the style images' position-normalized
Gram matrices (:func:`explorer.style.gatys.style_targets`), with the weights normalized to sum to 1:
``A^l = sum_i (w_i / sum_j w_j) G^l(s_i) / M^l(s_i)``. Each style image is scaled so that its
long side is the working size (its aspect ratio is kept), and each Gram matrix is divided by
its own number of positions M, so images of different sizes and shapes contribute on the same
scale (a Gram matrix is N x N whatever the image size). A weight of 0 leaves an image out
exactly; weights (1, 0) give the single-style target.

This module holds the blend's text form (``"a.jpg:0.7,b.jpg:0.3"``: :func:`parse_style_spec`,
:func:`format_style_spec`; one image per entry: :func:`parse_style_entries`), the one check of
a blend's weights (:func:`check_weights`) and the scaling of its images (:func:`prepare_blend`);
the targets themselves are computed by :func:`explorer.style.gatys.style_targets`. It imports only
:mod:`explorer.io.images`.

File names may hold commas and colons (``"Monet, Water Lilies.png"``): given a way to tell
which references exist, a text that names an existing file is that one file, and the commas of
a blend are read as separators only where the pieces between them name existing images; so a
blend spec written by :func:`format_style_spec` (what recipes store) reads back the same.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

import torch

from ..io.images import resize_long_side, to_tensor

__all__ = ["MAX_STYLES", "WEIGHTS_RULE", "check_weights", "parse_style_spec", "parse_style_entries",
           "format_style_spec", "prepare_blend"]

#: Most style images one blend takes.
MAX_STYLES = 6

#: What blend weights may be, as every refusal says it.
WEIGHTS_RULE = "each style weight must be a finite number >= 0, and their sum finite and > 0"

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_SAMPLE = re.compile(r"^sample:[\w.-]+$", re.IGNORECASE)
#: Comma-separated pieces beyond which commas are not matched against file names (each
#: grouping tried is a file lookup).
_MAX_PIECES = 64


def check_weights(weights: Sequence[Any]) -> list[float]:
    """Check a blend's weights: each a finite number >= 0, their sum finite and > 0 (so that
    dividing by the sum gives finite fractions that add up to 1; ``1e308, 1e308`` sums to
    infinity).

    Returns:
        the weights as floats, unchanged (not normalized).

    Raises:
        ValueError: one line, :data:`WEIGHTS_RULE` and the weights given.
    """
    ws = list(weights)
    out = []
    for w in ws:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w >= 0):
            raise ValueError(f"{WEIGHTS_RULE}; got {w!r}")
        out.append(float(w))
    total = sum(out)
    if not out:
        raise ValueError("no style image given")
    if not math.isfinite(total):
        raise ValueError(f"{WEIGHTS_RULE}; these sum to infinity: {', '.join(f'{w:g}' for w in out)}")
    if not total > 0:
        raise ValueError("the style weights sum to 0; give at least one a positive weight")
    return out


def _entry(part: str, exists: Callable[[str], bool] | None) -> tuple[str, float]:
    """One ``REF[:WEIGHT]``: a text that names an existing file is that file (weight 1), else a
    last ``:NUMBER`` is its weight (``sample:NAME`` is a reference, not a weight)."""
    if exists is not None and exists(part):
        return part, 1.0
    head, sep, tail = part.rpartition(":")
    if sep and head and _NUMBER.match(tail) and head.lower() != "sample":
        weight = float(tail)
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"{WEIGHTS_RULE}; got {tail!r} in {part!r}")
        return head, weight
    return part, 1.0


def _names_image(part: str, exists: Callable[[str], bool]) -> bool:
    """Whether ``part`` (``REF[:WEIGHT]``) names an existing file or a sample."""
    if not part:
        return False
    if exists(part):
        return True
    head, sep, tail = part.rpartition(":")
    ref = head if sep and head and _NUMBER.match(tail) and head.lower() != "sample" else part
    return exists(ref) or bool(_SAMPLE.match(ref))


def _group(pieces: list[str], exists: Callable[[str], bool]) -> list[str] | None:
    """Join comma-separated ``pieces`` back into entries that each name an existing file or a
    sample (the longest entry first), or None when there is no such grouping."""
    memo: dict[int, list[str] | None] = {len(pieces): []}

    def from_(i: int) -> list[str] | None:
        if i not in memo:
            memo[i] = None
            for j in range(len(pieces), i, -1):
                part = ",".join(pieces[i:j]).strip()
                rest = from_(j) if _names_image(part, exists) else None
                if rest is not None:
                    memo[i] = [part, *rest]
                    break
        return memo[i]

    return from_(0)


def _finish(out: list[tuple[str, float]]) -> list[tuple[str, float]]:
    if len(out) > MAX_STYLES:
        raise ValueError(f"at most {MAX_STYLES} style images can be blended; got {len(out)}")
    check_weights([w for _, w in out])
    return out


def parse_style_spec(text: str, exists: Callable[[str], bool] | None = None) -> list[tuple[str, float]]:
    """Parse a blend of style images: ``"a.jpg:0.7,b.jpg:0.3"`` or ``"sample:gravel:2,sample:brick"``.

    Each comma-separated part is an image reference (a path or ``sample:NAME``) optionally
    followed by ``:WEIGHT``; a part without a weight weighs 1. Weights are returned as given
    (not normalized).

    Args:
        text: the spec.
        exists: tells whether a path names an existing file (e.g. ``os.path.isfile``). With
            it, a ``text`` that names an existing file is that one file whatever its characters,
            and commas that belong to file names are kept in them
            (``"Monet, Water Lilies.png:0.7,b.png:0.3"``); without it, or when no grouping names
            existing files and samples only, every comma separates.

    Returns:
        list of (reference, weight), 1 to :data:`MAX_STYLES` entries.

    Raises:
        ValueError: an empty part, a negative or non-finite weight, weights that sum to 0 or to
            infinity, or more than :data:`MAX_STYLES` images (one-line message).
    """
    text = text or ""
    if exists is not None and text.strip() and exists(text.strip()):
        return [(text.strip(), 1.0)]
    pieces = text.split(",")
    if not any(p.strip() for p in pieces):
        raise ValueError("no style image given")
    grouped = _group(pieces, exists) if exists is not None and 1 < len(pieces) <= _MAX_PIECES else None
    parts = grouped if grouped is not None else [p.strip() for p in pieces]
    out: list[tuple[str, float]] = []
    for part in parts:
        if not part:
            raise ValueError(f"empty entry in the style list {text!r}")
        out.append(_entry(part, exists))
    return _finish(out)


def parse_style_entries(entries: Sequence[str], exists: Callable[[str], bool] | None = None) -> list[tuple[str, float]]:
    """Parse a blend given one image per entry (``--style FILE[:WEIGHT]`` repeated): each entry
    is one ``REF[:WEIGHT]``, commas included in the name; an entry that names an existing file
    (``exists``) is that file with weight 1.

    Returns:
        list of (reference, weight), 1 to :data:`MAX_STYLES` entries.

    Raises:
        ValueError: as :func:`parse_style_spec`.
    """
    out = []
    for entry in entries:
        part = (entry or "").strip()
        if not part:
            raise ValueError("empty style entry: --style needs FILE[:WEIGHT]")
        out.append(_entry(part, exists))
    if not out:
        raise ValueError("no style image given")
    return _finish(out)


def format_style_spec(entries: Sequence[tuple[str, float]]) -> str:
    """The inverse of :func:`parse_style_spec`: ``[("sample:gravel", 0.7), ("b.jpg", 0.3)]`` ->
    ``"sample:gravel:0.7,b.jpg:0.3"``; one entry of weight 1 is just its reference (what a
    recipe stores for a single style image). Every entry of a blend carries its weight, so a
    name that ends in ``:NUMBER`` keeps it, and names with commas read back when their files
    exist (:func:`parse_style_spec` with ``exists``)."""
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
            (:func:`explorer.style.gatys.prepare_images`).

    Returns:
        (content (1, 3, H, W), [(style (1, 3, H_i, W_i), weight), ...]) in [0, 1]; images of
        weight 0 are left out (they would not change the target).

    Raises:
        ValueError: no style image, or weights that break :data:`WEIGHTS_RULE` (:func:`check_weights`).
    """
    styles = list(styles)
    check_weights([w for _, w in styles])
    c = to_tensor(resize_long_side(content, size))
    return c, [(to_tensor(resize_long_side(img, size)), float(w)) for img, w in styles if w > 0]
