"""Many style transfers at once: multi-style blending specs, parameter sweeps, dataset
augmentation helpers.

Multi-style blending: the style target of each layer is the weighted mean of the style images'
position-normalized Gram matrices (:func:`explorer.style.style_targets`), with the weights
normalized to sum to 1. Each style image is scaled so that its long side is the working size
(its aspect ratio is kept), and each Gram matrix is divided by its own number of positions M, so
images of different sizes and shapes contribute on the same scale.
"""

from __future__ import annotations

import re

__all__ = ["MAX_STYLES", "parse_style_spec"]

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
