"""Labelled grids of images as one PIL picture: what the feature visualization page, the CLI and
the dataset examples draw (a channel grid, the crops that excite a channel, the comparison).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from .images import to_pil

__all__ = ["image_grid", "wrap_label"]


def image_grid(images: torch.Tensor, labels: Sequence[str] | None = None, cols: int | None = None,
               cell: int | None = None, gap: int = 4) -> Image.Image:
    """A grid of images (B, 3, H, W) in [0, 1] as one RGB PIL image: ``cols`` per row
    (default ceil(sqrt(B))), each ``cell`` px wide (default its own width), ``gap`` px of white
    between, each with its label (if given) in a strip beneath: 14 px for one line, more where a
    label is wider than its cell and wraps (:func:`wrap_label`; never cut).

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
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = ImageFont.load_default()
    lines = [wrap_label(draw, str(t), cw - 4, font) for t in labels] if labels else []
    top, bottom = draw.textbbox((0, 0), "Ag", font=font)[1::2]
    line_h = bottom - top + 2
    strip = max(14, max(len(ls) for ls in lines) * line_h + 2) if labels else 0
    out = Image.new("RGB", (cols * cw + (cols - 1) * gap, rows * (ch + strip) + (rows - 1) * gap), "white")
    draw = ImageDraw.Draw(out)
    for i in range(b):
        r, c = divmod(i, cols)
        x0, y0 = c * (cw + gap), r * (ch + strip + gap)
        out.paste(to_pil(images[i:i + 1]).resize((cw, ch), Image.Resampling.LANCZOS), (x0, y0))
        if labels:
            for j, line in enumerate(lines[i]):
                draw.text((x0 + 2, y0 + ch + 1 + j * line_h), line, fill="black", font=font)
    return out


def wrap_label(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> list[str]:
    """``text`` in lines each at most ``width`` px wide as ``draw`` renders it in ``font``
    (Pillow's textbbox): broken at spaces, and inside a word only where the word alone is wider."""
    def fits(t: str) -> bool:
        left, _, right, _ = draw.textbbox((0, 0), t, font=font)
        return right - left <= max(1, width)

    lines: list[str] = []
    for word in text.split(" "):
        line = f"{lines[-1]} {word}" if lines else word
        if lines and fits(line):
            lines[-1] = line
            continue
        while word and not fits(word):
            cut = max(1, max((k for k in range(1, len(word) + 1) if fits(word[:k])), default=1))
            lines.append(word[:cut])
            word = word[cut:]
        if word:
            lines.append(word)
    return lines or [""]
