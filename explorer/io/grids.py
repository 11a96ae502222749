"""Labelled grids of images as one PIL picture: what the feature visualization page, the CLI and
the dataset examples draw (a channel grid, the crops that excite a channel, the comparison).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from PIL import Image, ImageDraw

from .images import to_pil

__all__ = ["image_grid"]


def image_grid(images: torch.Tensor, labels: Sequence[str] | None = None, cols: int | None = None,
               cell: int | None = None, gap: int = 4) -> Image.Image:
    """A grid of images (B, 3, H, W) in [0, 1] as one RGB PIL image: ``cols`` per row
    (default ceil(sqrt(B))), each ``cell`` px wide (default its own width), ``gap`` px of white
    between, each with its label (if given) in a strip of 14 px beneath.

    Raises:
        ValueError: not (B, 3, H, W), or as many labels as images.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"image_grid takes images of shape (B, 3, H, W); got {tuple(getattr(images, 'shape', ()))}")
    b, _, h, w = images.shape
    if labels is not None and len(labels) != b:
        raise ValueError(f"{len(labels)} labels for {b} images")
    cols = max(1, min(b, cols or math.ceil(math.sqrt(b))))
    rows = math.ceil(b / cols)
    cw = int(cell or w)
    ch = max(1, round(h * cw / w))
    strip = 14 if labels else 0
    out = Image.new("RGB", (cols * cw + (cols - 1) * gap, rows * (ch + strip) + (rows - 1) * gap), "white")
    draw = ImageDraw.Draw(out)
    for i in range(b):
        r, c = divmod(i, cols)
        x0, y0 = c * (cw + gap), r * (ch + strip + gap)
        out.paste(to_pil(images[i:i + 1]).resize((cw, ch), Image.Resampling.LANCZOS), (x0, y0))
        if labels:
            draw.text((x0 + 2, y0 + ch + 1), str(labels[i])[: max(4, cw // 6)], fill="black")
    return out
