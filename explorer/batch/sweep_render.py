"""What a finished (or stopped) parameter sweep is shown as: a table of its cells, the same as
CSV text, and a labelled image grid (Pillow ``ImageDraw``). The sweep itself, its axes and its
cells are in :mod:`explorer.batch.sweep`; this module imports only :mod:`explorer.batch.sweep` (for
:class:`~explorer.batch.sweep.SweepCell`) and :mod:`explorer.io.images`.

Losses in the table and under the grid's cells are those of :class:`~explorer.batch.sweep.SweepCell`:
content (Gatys et al. 2016, eq. 1), style (eq. 5, unweighted), TV and the total
alpha content + beta style + TV weight tv (eq. 7 plus TV) that the optimizer minimized.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from .sweep import SweepCell
from ..io.images import to_pil

__all__ = ["sweep_table", "sweep_csv", "sweep_grid_image"]

_TABLE_LOSSES = ("content", "style", "tv", "total")
_TABLE_COLUMNS = ("row", "col", "row_label", "col_label", "step", *_TABLE_LOSSES, "seconds", "batch", "run", "seed",
                  "init", "optimizer", "content_weight", "style_weight", "ratio", "style_layers", "stopped")


def sweep_table(cells: Sequence[SweepCell]) -> list[dict]:
    """One dict per cell (grid order as given): position, labels, the parameters that define
    the cell, its losses and seconds. Keys: ``row, col, row_label, col_label, step, content,
    style, tv, total, seconds, batch, run, seed, init, optimizer, content_weight, style_weight,
    ratio, style_layers, stopped``. ``ratio`` is alpha/beta (``inf`` with beta 0);
    ``style_layers`` is space-separated; ``seconds`` is the wall clock of the cell's run
    (shared by a batch)."""
    rows = []
    for c in cells:
        s = c.settings
        rows.append({
            "row": c.row, "col": c.col, "row_label": c.row_label, "col_label": c.col_label, "step": c.step,
            **{k: c.losses.get(k, math.nan) for k in _TABLE_LOSSES},
            "seconds": round(c.seconds, 3), "batch": c.batch, "run": c.run,
            "seed": s.seed, "init": s.init, "optimizer": s.optimizer, "content_weight": s.content_weight,
            "style_weight": s.style_weight,
            "ratio": s.content_weight / s.style_weight if s.style_weight else math.inf,
            "style_layers": " ".join(s.style_layers), "stopped": c.stopped or "",
        })
    return rows


def sweep_csv(cells: Sequence[SweepCell]) -> str:
    """The cells as CSV text (``csv`` module, header line first, one row per cell, the columns
    of :func:`sweep_table`; losses with full float precision)."""
    rows = sweep_table(cells)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def sweep_grid_image(cells: Sequence[SweepCell], *, rows: Sequence[str] | None = None,
                     cols: Sequence[str] | None = None, row_title: str = "", col_title: str = "",
                     title: str = "", losses: Sequence[str] = ("content", "style", "total"),
                     cell_px: int | None = None, font_size: int = 12):
    """A labelled image grid of a sweep (Pillow ``ImageDraw``): column labels on top, row labels
    on the left, and under each cell its losses (3 significant digits).

    Args:
        cells: :class:`SweepCell` objects (any order; their ``row``/``col`` place them).
        rows, cols: labels of every row and column (default: those of the cells given); a grid
            position without a cell (a stopped sweep) is drawn as a grey "not run" box.
        row_title, col_title: axis titles (e.g. :attr:`SweepAxis.title`); ``title``: a top line
            (e.g. the weights label).
        losses: which of ``content``, ``style``, ``tv``, ``total`` to print under each cell.
        cell_px: scale each image so its long side is this many pixels (``None``: as computed;
            images smaller than 128 px are scaled up to 128 so the labels fit).
        font_size: label size in pixels.

    Returns:
        an RGB ``PIL.Image``.

    Raises:
        ValueError: no cells and no labels to lay out.
    """
    if rows is None:
        rows = _labels(cells, "row")
    if cols is None:
        cols = _labels(cells, "col")
    if not rows or not cols:
        raise ValueError("nothing to draw: no cells")
    try:
        font = ImageFont.load_default(size=font_size)
        bold = ImageFont.load_default(size=font_size + 1)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        font = bold = ImageFont.load_default()
    pics = {(c.row, c.col): to_pil(c.image) for c in cells}
    if pics:
        w0, h0 = max(p.width for p in pics.values()), max(p.height for p in pics.values())
    else:
        w0 = h0 = cell_px or 128
    target = cell_px or max(128, max(w0, h0))
    k = target / max(w0, h0)
    cw, ch = max(1, round(w0 * k)), max(1, round(h0 * k))
    pics = {pos: p.resize((round(p.width * k), round(p.height * k)), Image.Resampling.LANCZOS)
            if k != 1 else p for pos, p in pics.items()}
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(text, f=font):
        return probe.textbbox((0, 0), text, font=f)[2] if text else 0

    lh = font_size + 4
    pad = 8
    col_lines = [_wrap(t, cw, lambda x: width(x, bold)) for t in cols]
    row_w = min(220, max(width(t, bold) for t in rows)) + pad if any(rows) else 0
    row_lines = [_wrap(t, max(row_w - pad, 40), lambda x: width(x, bold)) for t in rows]
    axes = ";  ".join(t for t in (f"rows: {row_title}" if row_title else "",
                                   f"columns: {col_title}" if col_title else "") if t)
    head = (lh if title else 0) + (lh if axes else 0) + lh * max(len(l) for l in col_lines) + pad // 2
    text_h = lh * len(losses) + pad
    W = max(pad + row_w + len(cols) * (cw + pad), pad * 2 + max(width(title, bold), width(axes)))
    H = pad + head + len(rows) * (ch + text_h)
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    y = pad
    if title:
        d.text((pad, y), title, fill=(40, 40, 40), font=bold)
        y += lh
    if axes:
        d.text((pad, y), axes, fill=(90, 90, 90), font=font)
        y += lh
    for j, lines in enumerate(col_lines):
        x0 = pad + row_w + j * (cw + pad)
        for n, line in enumerate(lines):
            d.text((x0, y + n * lh), line, fill=(0, 0, 0), font=bold)
    top = pad + head
    for i, lines in enumerate(row_lines):
        y0 = top + i * (ch + text_h)
        for n, line in enumerate(lines):
            d.text((pad, y0 + ch // 2 - lh * len(lines) // 2 + n * lh), line, fill=(0, 0, 0), font=bold)
        for j in range(len(cols)):
            x0 = pad + row_w + j * (cw + pad)
            pic = pics.get((i, j))
            if pic is None:
                d.rectangle([x0, y0, x0 + cw - 1, y0 + ch - 1], fill=(225, 225, 225))
                d.text((x0 + 6, y0 + ch // 2 - lh // 2), "not run", fill=(110, 110, 110), font=font)
                continue
            img.paste(pic, (x0, y0))
            cell = next(c for c in cells if (c.row, c.col) == (i, j))
            for n, key in enumerate(losses):
                v = cell.losses.get(key)
                text = f"{key} {v:.3g}" if v is not None else f"{key} -"
                d.text((x0, y0 + ch + 2 + n * lh), text, fill=(60, 60, 60), font=font)
    return img


def _labels(cells: Sequence[SweepCell], which: str) -> list[str]:
    found: dict[int, str] = {}
    for c in cells:
        found[getattr(c, which)] = getattr(c, f"{which}_label")
    return [found.get(i, "") for i in range(max(found) + 1)] if found else []


def _wrap(text: str, limit: int, width) -> list[str]:
    """Break ``text`` at spaces into lines at most ``limit`` px wide (a word longer than that
    stays whole)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and width(lines[-1] + " " + word) <= limit:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]
