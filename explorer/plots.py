"""Plotly figures shared by pages (no Streamlit import here, so they are testable)."""

from __future__ import annotations

from typing import Mapping, Sequence

import plotly.graph_objects as go

__all__ = ["loss_figure"]

_LABELS = {
    "total": "total (eq. 5 + TV)",
    "content": "alpha * content (eq. 4)",
    "style": "beta * style (eq. 3)",
    "tv": "TV weight * R_V^beta",
}


def loss_figure(history: Sequence[Mapping], *, scale: Mapping[str, float] | None = None,
                keys: Sequence[str] = ("total", "content", "style", "tv"), per_layer: bool = False,
                layer_scale: float = 1.0, title: str = "Loss per step", height: int = 320,
                log: bool = True) -> go.Figure:
    """Loss curves, one trace per term, log-scale y axis.

    Args:
        history: rows with ``step`` and the loss values named in ``keys`` (e.g.
            :attr:`StyleResult.history` or rows collected from progress events).
        scale: multiply each term by this factor before plotting (e.g. ``{"content": alpha,
            "style": beta, "tv": tv_weight}``) so the curves show what the optimizer adds up.
            Terms scaled by 0 are left out.
        keys: which terms to draw. Terms that are never positive are left out (log axis).
        per_layer: also draw each style layer's E_l (from ``row["style_layers"]``), dotted,
            times ``layer_scale``.
        title, height: figure title and height in pixels.
        log: log-scale y axis (non-positive values are then left out).

    Returns:
        a Plotly figure.
    """
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
        label = _LABELS.get(k, k) if scale else k
        fig.add_trace(go.Scatter(x=steps, y=vals, mode="lines", name=label, connectgaps=False))
    if per_layer and history and "style_layers" in history[0]:
        for layer in history[0]["style_layers"]:
            vals = [r["style_layers"].get(layer, 0) * layer_scale for r in history]
            vals = [v if v > 0 else None for v in vals]
            if any(v is not None for v in vals):
                fig.add_trace(go.Scatter(x=steps, y=vals, mode="lines", name=f"E_l {layer}",
                                         line={"dash": "dot", "width": 1}))
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title="step", yaxis_title="value (log scale)" if log else "value",
                      legend={"orientation": "h", "y": -0.25})
    if log:
        fig.update_yaxes(type="log")
    return fig
