"""Plotly figures shared by pages (no Streamlit import here, so they are testable)."""

from __future__ import annotations

import base64
import io
import math
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

__all__ = ["TERM_NAMES", "term_label", "loss_figure", "live_figure", "objective_curves", "channel_overlay", "activation_histogram", "channel_bar", "gram_heatmap",
           "difference_figure"]


def _plain_numbers(fig: go.Figure) -> go.Figure:
    """Axis and colour-bar numbers in plain scientific notation (``5e-7``), never Plotly's
    default SI suffixes (``500n``, ``100µ``), which read as units."""
    fig.update_xaxes(exponentformat="e")
    fig.update_yaxes(exponentformat="e")
    fig.update_traces(colorbar_exponentformat="e", selector={"type": "heatmap"})
    return fig

#: How each unweighted term is named at each loss scale. An equation is named only where it is
#: used as written (``"paper"``: Gatys et al. 2016 eq. 1 and 5, Luan et al. 2017 eq. 2); the
#: default ``"relative"`` terms are those equations divided by their targets' size
#: (:mod:`explorer.style.gatys`), so they are labelled with the ratio they are.
TERM_NAMES = {
    "relative": {"content": "L_content, relative ‖F−P‖²/‖P‖²", "style": "L_style, relative Σ w_l‖G−A‖²/‖A‖²",
                 "tv": "R_V^p", "photo": "L_m per pixel (relative)"},
    "paper": {"content": "L_content (Gatys eq. 1)", "style": "L_style (Gatys eq. 5)", "tv": "R_V^p",
              "photo": "L_m photorealism (Luan eq. 2)"},
}
#: The weight each term is multiplied by in the total the optimizer minimizes (Gatys et al. eq. 7 plus TV).
_WEIGHTS = {"content": "α", "style": "β", "tv": "TV weight", "photo": "λ"}


def term_label(key: str, normalization: str = "relative", weighted: bool = False) -> str:
    """A loss curve's or column's label: e.g. ``"β·L_style (Gatys eq. 5)"`` (paper scale,
    weighted) or ``"L_content, relative ‖F−P‖²/‖P‖²"`` (relative scale, unweighted).

    Args:
        key: ``"content"``, ``"style"``, ``"tv"``, ``"photo"`` or ``"total"`` (any other key is
            returned as it is).
        normalization: the run's ``loss_normalization``, ``"relative"`` or ``"paper"``.
        weighted: prefix the term's weight (the curve shows weight x term).
    """
    if normalization not in TERM_NAMES:
        raise ValueError(f"unknown loss scale {normalization!r}; expected one of {', '.join(TERM_NAMES)}")
    if key == "total":
        return "weighted total α·L_content + β·L_style + TV (+ λ·L_m)" if weighted else "weighted total"
    name = TERM_NAMES[normalization].get(key)
    if name is None:
        return key
    return f"{_WEIGHTS[key]}·{name}" if weighted else name


def loss_figure(history: Sequence[Mapping], *, scale: Mapping[str, float] | None = None,
                keys: Sequence[str] = ("total", "content", "style", "tv", "photo"), per_layer: bool = False,
                layer_scale: float = 1.0, layer_weights: Mapping[str, float] | None = None,
                normalization: str = "relative", title: str = "Loss per step", height: int = 320, log: bool = True) -> go.Figure:
    """Loss curves, one trace per term, log-scale y axis.

    Args:
        history: rows with ``step`` and the loss values named in ``keys`` (e.g.
            :attr:`StyleResult.history` or rows collected from progress events).
        scale: multiply each term by this factor before plotting (e.g. ``{"content": alpha,
            "style": beta, "tv": tv_weight}``) so the curves show what the optimizer adds up.
            Terms scaled by 0 are left out.
        keys: which terms to draw. Terms that are never positive are left out (log axis).
        per_layer: also draw each style layer's term (``row["style_layers"]`` holds E_l),
            dotted, as ``layer_scale * w_l * E_l`` with w_l from ``layer_weights`` (1 when not
            given): with ``layer_scale`` = beta and the run's w_l the dotted curves add up to the
            ``style`` curve. Each is labelled with exactly that product.
        normalization: the run's loss scale, ``"relative"`` (the default) or ``"paper"``:
            the legend names Gatys's and Luan's equations only for ``"paper"``
            (:func:`term_label`), and the per-layer term is ``E_l`` (eq. (4) at the paper's
            scale) or ``Ẽ_l`` (the relative scale).
        title, height: figure title and height in pixels.
        log: log-scale y axis (non-positive values are then left out).

    Returns:
        a Plotly figure.
    """
    term_label("total", normalization)  # an unknown loss scale fails here, in one line
    scale = dict(scale or {})
    steps = [r["step"] for r in history]
    fig = go.Figure()
    for k in keys:
        f = scale.get(k, 1.0)
        if f == 0:
            continue
        ys = [r.get(k) for r in history]
        vals = [y * f if y is not None and (y * f > 0 or not log) else None for y in ys]
        if not any(v is not None for v in vals):
            continue
        label = term_label(k, normalization, weighted=bool(scale))
        # markers too when there are few points: a single step's value is otherwise invisible
        fig.add_trace(go.Scatter(x=steps, y=vals, mode="lines+markers" if len(steps) <= 10 else "lines",
                                 name=label, connectgaps=False))
    if per_layer and history and "style_layers" in history[0]:
        for layer in history[0]["style_layers"]:
            w = 1.0 if layer_weights is None else float(layer_weights.get(layer, 0.0))
            vals = [r["style_layers"].get(layer, 0) * layer_scale * w for r in history]
            vals = [v if v > 0 else None for v in vals]
            parts = ([] if layer_scale == 1 else ["β"]) + ([] if layer_weights is None else ["w_l"]) + ["E_l" if normalization == "paper" else "Ẽ_l"]
            if any(v is not None for v in vals):
                fig.add_trace(go.Scatter(x=steps, y=vals, mode="lines", name=f"{'·'.join(parts)} {layer}",
                                         line={"dash": "dot", "width": 1}))
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title="step", yaxis_title="value (log scale)" if log else "value",
                      legend={"orientation": "h", "y": -0.25})
    if log:
        fig.update_yaxes(type="log")
    fig.update_traces(hovertemplate="step %{x}: %{y:.4g}")
    return _plain_numbers(fig)


def live_figure(rows: Sequence[Mapping], *, scale: Mapping[str, float] | None = None,
                normalization: str = "relative") -> go.Figure:
    """The chart beside a run's live preview: for runs that maximize an objective (Deep Dream,
    feature visualization: rows with ``objective``) the objective per step on a linear axis,
    with the diversity term when there is one; for style transfer's rows the loss curves of
    :func:`loss_figure` (log axis, each term times its weight from ``scale``).

    Args:
        rows: ``{"step": int, <name>: float, ...}`` rows collected from progress events.
        scale: the loss weights, for loss rows only.
        normalization: the style run's loss scale (:func:`loss_figure`), for loss rows only.
    """
    if any("objective" in r for r in rows):
        keys = ("objective", "diversity") if any("diversity" in r for r in rows) else ("objective",)
        return loss_figure(rows, keys=keys, title="Objective per step (maximized)", log=False)
    return loss_figure(rows, scale=scale, normalization=normalization)


def objective_curves(runs: Mapping[str, Sequence[Mapping]], key: str = "objective",
                     title: str = "Objective per step", height: int = 320) -> go.Figure:
    """One curve per run (label -> history rows with ``step`` and ``key``), linear y axis: the
    objective a feature visualization maximizes, for runs side by side (e.g. the
    parameterizations compared)."""
    fig = go.Figure()
    for label, history in runs.items():
        steps = [r["step"] for r in history]
        fig.add_trace(go.Scatter(x=steps, y=[r.get(key) for r in history], name=str(label),
                                 mode="lines+markers" if len(steps) <= 10 else "lines"))
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, xaxis_title="step",
                      yaxis_title=key,
                      legend={"orientation": "h", "y": -0.25})
    fig.update_traces(hovertemplate="step %{x}: %{y:.4g}")
    return _plain_numbers(fig)


# ----------------------------------------------------------------------------- activation views

_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def _data_uri(image: Image.Image) -> str:
    """A PIL image as a JPEG data URI (a go.Image ``source``: far smaller than per-pixel ``z``)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def channel_overlay(image: Image.Image, channel_map: np.ndarray, opacity: float = 0.6,
                    title: str = "", *, colorscale: str = "Viridis", value_label: str = "activation",
                    zmid: float | None = None, max_cells: int | None = None,
                    zrange: tuple[float, float] | None = None) -> go.Figure:
    """A map (one channel's feature map, or a saliency heatmap) laid over the picture it was
    computed from.

    The map is not upsampled: the heatmap's cells are placed with ``x0/dx`` and ``y0/dy`` so
    that the ``h x w`` map covers the ``H x W`` image exactly (cell ``(i, j)`` spans
    ``W/w x H/h`` pixels), and hovering shows the value at that position.

    Args:
        image: the input image (any mode; shown as RGB) at the size the network saw.
        channel_map: (h, w) values: activations of one channel, or a heatmap at any resolution
            up to the image's own.
        opacity: of the heatmap, 0 (image only) to 1 (map only).
        title: figure title.
        colorscale: a Plotly colour scale name (e.g. ``"Viridis"``, or ``"RdBu_r"`` with
            ``zmid=0`` for signed maps).
        value_label: what the values are, for the hover text and the colour bar title.
        zmid: value at the middle of the colour scale (None: the map's own range).
        max_cells: at most this many cells per side are drawn: a larger map is averaged in
            ``k x k`` blocks, ``k = ceil(max(h, w) / max_cells)`` (a 512 px heatmap would put a
            quarter of a million numbers into the page); hover then shows block means.
            None: draw every cell.
        zrange: (low, high) ends of the colour scale (values beyond get the end colours);
            None: the map's own range.

    Returns:
        a figure with a go.Image (pixel coordinates, y down) and a go.Heatmap.
    """
    m = np.asarray(channel_map, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"channel_map must be 2-D (h, w); got shape {m.shape}")
    width, height = image.size
    h, w = m.shape
    dx, dy = width / w, height / h
    k = max(1, math.ceil(max(h, w) / max_cells)) if max_cells else 1
    if k > 1:  # block means; the last row/column of blocks may be partial (NaN padding ignored)
        hp, wp = math.ceil(h / k), math.ceil(w / k)
        padded = np.pad(m, ((0, hp * k - h), (0, wp * k - w)), constant_values=np.nan)
        with np.errstate(invalid="ignore"):
            m = np.nanmean(padded.reshape(hp, k, wp, k), axis=(1, 3)).astype(np.float32)
        dx, dy = dx * k, dy * k
    fig = go.Figure()
    fig.add_trace(go.Image(source=_data_uri(image), x0=0, dx=1, y0=0, dy=1, hoverinfo="skip", name="image"))
    fig.add_trace(go.Heatmap(
        z=m, x0=-0.5 + dx / 2, dx=dx, y0=-0.5 + dy / 2, dy=dy, opacity=float(opacity), colorscale=colorscale,
        zmid=zmid, zmin=None if zrange is None else float(zrange[0]),
        zmax=None if zrange is None else float(zrange[1]), colorbar={"title": {"text": value_label}}, name=value_label,
        hovertemplate=f"x %{{x:.0f}} px, y %{{y:.0f}} px<br>{value_label} %{{z:.4g}}<extra></extra>"))
    fig.update_xaxes(range=[-0.5, width - 0.5], showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(range=[height - 0.5, -0.5], showgrid=False, zeroline=False, scaleanchor="x",
                     constrain="domain")
    fig.update_layout(title=title, margin=_MARGIN, height=max(320, min(720, int(560 * height / max(width, 1)))))
    return _plain_numbers(fig)


def activation_histogram(values: np.ndarray, title: str = "Activations", bins: int = 60) -> go.Figure:
    """Histogram of all values of a layer (any shape), binned in NumPy (a layer can hold
    millions of values: only the bin counts go into the figure), log-scale counts.

    Non-finite values are left out."""
    v = np.asarray(values, dtype=np.float32).ravel()
    v = v[np.isfinite(v)]
    fig = go.Figure()
    if v.size:
        lo, hi = float(v.min()), float(v.max())
        if hi <= lo:
            hi = lo + (abs(lo) or 1.0) * 1e-6
        # float64 edges: a nearly constant layer (values 3e-7 +- 1e-13) has no room for 60 float32 bins
        counts, edges = np.histogram(v, bins=bins, range=(np.float64(lo), np.float64(hi)))
        centers = (edges[:-1] + edges[1:]) / 2
        fig.add_trace(go.Bar(x=centers, y=counts, width=np.diff(edges), customdata=np.stack([edges[:-1], edges[1:]], 1),
                             marker={"line": {"width": 0}}, name="values",
                             hovertemplate="[%{customdata[0]:.4g}, %{customdata[1]:.4g}): %{y} values<extra></extra>"))
    fig.update_layout(title=title, margin=_MARGIN, height=320, bargap=0, xaxis_title="activation",
                      yaxis_title="count (log scale)", showlegend=False)
    fig.update_yaxes(type="log")
    return _plain_numbers(fig)


def channel_bar(means: np.ndarray, title: str = "Mean activation per channel") -> go.Figure:
    """Mean activation per channel as bars sorted from largest to smallest; hover names the channel."""
    m = np.asarray(means, dtype=np.float64).ravel()
    order = np.argsort(-m, kind="stable")
    fig = go.Figure(go.Bar(x=np.arange(len(m)), y=m[order], customdata=order, marker={"line": {"width": 0}},
                           hovertemplate="channel #%{customdata}<br>mean %{y:.4g}<extra></extra>"))
    fig.update_layout(title=title, margin=_MARGIN, height=320, bargap=0, showlegend=False,
                      xaxis_title="channels, sorted by mean activation", yaxis_title="mean activation")
    return _plain_numbers(fig)


def gram_heatmap(g: np.ndarray, order_indices: Sequence[int], title: str = "Gram matrix",
                 max_cells: int = 512, *, zmin: float | None = None, zmax: float | None = None,
                 colorbar_title: str = "G/M") -> go.Figure:
    """A (reordered) Gram matrix as a Viridis heatmap, rows top to bottom like a matrix.

    Args:
        g: (C, C) Gram matrix, already in display order (e.g. from ``activations.gram_view``).
        order_indices: the original channel index of each row/column of ``g``; hover shows them.
        max_cells: above this many channels, neighbouring rows/columns are averaged in blocks of
            ``ceil(C / max_cells)`` (a screen cannot show more, and the figure stays small); the
            title then says so and hover lists the channels of each block.
        zmin, zmax: colour range (e.g. from ``activations.gram_display``); values outside it get
            the end colours. ``None``: Plotly's range, the minimum to the maximum.
        colorbar_title: the colour bar's title (what the values are).
    """
    g = np.asarray(g, dtype=np.float32)
    order = [int(i) for i in order_indices]
    c = g.shape[0]
    if g.shape != (c, c) or len(order) != c:
        raise ValueError(f"expected a square Gram matrix and one index per channel; got {g.shape} and {len(order)}")
    k = max(1, math.ceil(c / max_cells))
    if k > 1:
        n = math.ceil(c / k)
        pad = n * k - c
        gp = np.pad(g, ((0, pad), (0, pad)), constant_values=np.nan)
        with np.errstate(invalid="ignore"):
            g = np.nanmean(gp.reshape(n, k, n, k), axis=(1, 3)).astype(np.float32)
        labels = [" ".join(f"#{i}" for i in order[b * k:(b + 1) * k]) for b in range(n)]
        title = f"{title} (blocks of {k} channels averaged)"
    else:
        labels = [f"#{i}" for i in order]
    fig = go.Figure(go.Heatmap(z=g, x=labels, y=labels, colorscale="Viridis", zmin=zmin, zmax=zmax,
                               colorbar={"title": {"text": colorbar_title}},
                               hovertemplate="%{y} · %{x}<br>%{z:.4g}<extra></extra>"))
    ticks = len(labels) <= 32
    fig.update_xaxes(type="category", showticklabels=ticks, title="channel", constrain="domain")
    fig.update_yaxes(type="category", showticklabels=ticks, title="channel", autorange="reversed",
                     scaleanchor="x", constrain="domain")
    fig.update_layout(title=title, margin=_MARGIN, height=560)
    return _plain_numbers(fig)


def difference_figure(diff: np.ndarray, box: tuple[int, int, int, int] | None = None,
                      title: str = "|full − guided| per pixel") -> go.Figure:
    """A per-pixel difference map (``explorer.saliency.guided.difference_map``: |a − b| averaged
    over RGB, pixel values in [0, 1]) as a heatmap with its colour bar, image rows top to bottom,
    and ``box`` = (top, left, height, width) in pixels outlined (the zoomed region)."""
    d = np.asarray(diff, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"a difference map must be 2-D (H, W); got shape {d.shape}")
    top = float(d.max()) if d.size and float(d.max()) > 0 else 1.0
    fig = go.Figure(go.Heatmap(z=d, colorscale="Inferno", zmin=0.0, zmax=top,
                               colorbar={"title": {"text": "|Δ| (0–1)"}},
                               hovertemplate="x %{x} · y %{y}<br>|Δ| %{z:.3f}<extra></extra>"))
    if box is not None:
        y, x, h, w = box
        fig.add_shape(type="rect", x0=x - 0.5, x1=x + w - 0.5, y0=y - 0.5, y1=y + h - 0.5,
                      line={"color": "cyan", "width": 2})
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_layout(title=title, margin=_MARGIN, height=320)
    return _plain_numbers(fig)
