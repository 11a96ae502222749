"""Exact, fast occlusion attribution for VGG networks.

Occlusion (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks",
sec. 4.2) as Captum defines it (``captum.attr.Occlusion``): a ``window`` x ``window`` px square,
all three colour channels, slides over the image with ``stride`` px; for each position the
pixels inside it are replaced by a baseline image's pixels, and the attribution of a pixel is
the mean, over the windows that cover it, of f(x) - f(x with that window occluded).

Captum runs the whole network once per window. The objectives here (the style energy of
:func:`explorer.optim.losses.style_energy`, a layer's or a channel's mean: the
:class:`~explorer.saliency.objectives.ObjectiveSpec` kinds other than ``class``) are functions of sums over the spatial positions of per-layer statistics, so this module
computes the same numbers exactly by recomputing only what a window changes:

1. The clean image runs once; every layer's clean activation is kept (up to the deepest layer
   the objective needs).
2. For each window the *affected region* is propagated layer by layer: the window itself at the
   input; through a 3x3 convolution with padding 1 it grows by one position on each side;
   through a 2x2/2 max (or average) pooling it becomes the output cells that cover it; a ReLU
   keeps it. Regions are clipped to the feature map; the windows of a batch share one region
   size per layer (a region is moved inward at the borders, where it is smaller), so they run as
   one batch, and windows with equally large regions are batched together.
3. At each layer only the region's occluded values are computed: the input crop that the
   region needs is cut from the clean activation (zeros outside the map: the convolution's own
   zero padding), the previous layer's occluded region is pasted in, and the network's own
   module weights run on the crop without padding (``F.conv2d(crop, weight, bias)``,
   ``F.relu``, ``F.max_pool2d`` / ``F.avg_pool2d``).
4. The objective's statistic is updated from the region alone. With D = A_o - A_c the
   difference of the region's occluded and clean features as (positions x channels) matrices,
   the Gram matrix (Gatys et al. 2016 eq. 3) changes by
   Delta = A_o^T A_o - A_c^T A_c = D^T A_o + (D^T A_c)^T, and the energy term
   ||G||^2 / (4 N^2 M^2) by (2 <G, Delta> + ||Delta||^2) / (4 N^2 M^2): no difference of two
   large numbers, so float32 is enough. Sums change by sum(D).

The result equals ``Occlusion(forward).attribute(image, sliding_window_shapes=(3, window,
window), strides=(3, stride, stride), baselines=baseline)[0, 0]`` up to float32 rounding (the
tests compare the two), at a fraction of the cost: every window costs what its receptive field
costs instead of a full forward pass.

Cost (``bench/bench_occlusion.py``: 2-core AVX-512 CPU, float32, untrained VGG19, style energy
over conv1_1 .. conv5_1, window 32 px, stride 16 px): at 256 px Captum takes 106 s (one image
per forward pass) or 119 s (16 per pass), this module 10.5 s; at 512 px 52 s against an
estimated 36 min. About 80 % of the time is convolutions running near the CPU's matrix-multiply
peak (~70 GMAC/s); their amount, ~2.6 GMAC per window at 256 px against 23.7 GMAC for a full
pass to conv5_1, is set by how far a window's influence spreads (a 32 px window changes 18 x 18
of the 32 x 32 positions of conv4_4), so it shrinks relative to Captum as images grow.

Only the VGG family is supported (3x3 stride-1 padding-1 convolutions, ReLU, 2x2/2 pooling);
anything else raises ``ValueError`` so that callers can fall back to Captum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nets.models import FeatureNet
from ..optim.losses import style_layer_weights
from ..style.settings import DEFAULT_STYLE_LAYERS
from .objectives import ObjectiveSpec, as_spec
from .occlusion_plan import Axis, axis_starts, check_windows, occlusion_windows, plan_axis, window_batches

__all__ = ["OBJECTIVES", "DEFAULT_BATCH_SIZE", "UnsupportedNetworkError", "occlusion_windows", "occlusion_fast",
           "supports"]

#: :class:`~explorer.saliency.objectives.ObjectiveSpec` kinds this engine computes: the style
#: energy, a layer's mean, a channel's mean (``class`` is left to Captum).
OBJECTIVES = ("style", "layer", "channel")
#: Windows per batch when the caller does not say: the fastest of 8, 16, 32 and 64 on a 2-core
#: AVX-512 CPU at 256 px (bench/bench_occlusion.py); larger batches were not faster there.
DEFAULT_BATCH_SIZE = 16


class UnsupportedNetworkError(ValueError):
    """The network (not a VGG) or the layer (behind VGG's convolutional stack) is outside what
    this engine computes; use ``captum.attr.Occlusion`` instead. Other bad arguments raise a
    plain ``ValueError``."""


@dataclass
class _Step:
    name: str
    kind: str  # "conv", "relu" or "pool"
    module: nn.Module
    source: str  # the clean activation the crop is cut from ("" = the normalized image)
    channel: int | None = None  # only this output channel is needed (channel objective tail)


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv2d):
        ok = (tuple(module.kernel_size) == (3, 3) and tuple(module.stride) == (1, 1)
              and tuple(module.padding) == (1, 1) and tuple(module.dilation) == (1, 1)
              and module.groups == 1 and module.padding_mode == "zeros")
        return "conv" if ok else None
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, nn.MaxPool2d):
        k, s = module.kernel_size, module.stride
        ok = (k in (2, (2, 2)) and s in (2, (2, 2)) and module.padding in (0, (0, 0))
              and module.dilation in (1, (1, 1)) and not module.ceil_mode)
        return "pool" if ok else None
    return None


def _check_family(model: FeatureNet) -> None:
    spec = getattr(model, "spec", None)
    if spec is None or getattr(spec, "family", None) != "vgg":
        name = getattr(spec, "name", type(model).__name__)
        raise UnsupportedNetworkError(f"fast occlusion supports VGG networks only, not {name}; "
                                      "use Captum's Occlusion")


def _check_model(model: FeatureNet, deepest: str) -> list[tuple[str, str, nn.Module]]:
    """(name, kind, module) for the layers up to ``deepest``; UnsupportedNetworkError when not a
    plain VGG stack."""
    _check_family(model)
    out = []
    for name in model.layer_names[: model.layer_names.index(deepest) + 1]:
        kind = _kind(model.body[name])
        if kind is None:
            raise UnsupportedNetworkError(
                f"fast occlusion covers the convolutional stack of VGG only: {deepest} lies behind "
                f"{name} ({type(model.body[name]).__name__}); use Captum's Occlusion")
        out.append((name, kind, model.body[name]))
    return out


def supports(model: FeatureNet, layers: str | Sequence[str]) -> bool:
    """Whether :func:`occlusion_fast` computes objectives of ``layers`` on ``model`` (a plain
    VGG stack up to the deepest of them) instead of raising :class:`UnsupportedNetworkError`."""
    try:
        names = list(model.layer_names)
        _check_model(model, max(model.check_layers(_layer_list(layers)), key=names.index))
    except ValueError:  # UnsupportedNetworkError, an unknown layer
        return False
    return True


def _layer_list(layers: str | Sequence[str]) -> list[str]:
    """``layers`` as a list of names (a single name becomes a one-element list)."""
    return [layers] if isinstance(layers, str) else list(layers)


# ----------------------------------------------------------------------------- the engine

def _gather(src: torch.Tensor, ys: np.ndarray, xs: np.ndarray, hy: int, wx: int, pad: int,
            channels: slice, fmt: torch.memory_format) -> torch.Tensor:
    """Crops src[0, channels, y:y+hy, x:x+wx] for each (y, x), from a map padded by ``pad``:
    (B, C, hy, wx) in ``fmt``, gathered by one indexing operation on a view of all crops."""
    crops = src[0, channels].unfold(1, hy, 1).unfold(2, wx, 1)  # (C, Y, X, hy, wx), no copy
    yt = torch.as_tensor(ys + pad, device=src.device)
    xt = torch.as_tensor(xs + pad, device=src.device)
    if fmt == torch.channels_last:
        return crops.permute(1, 2, 3, 4, 0)[yt, xt].permute(0, 3, 1, 2)
    return crops.permute(1, 2, 0, 3, 4)[yt, xt]


def _paste(crop: torch.Tensor, region: torch.Tensor, ay: Axis, ax: Axis) -> None:
    """crop[b, :, dst.., dst..] = region[b, :, src.., src..] for every window b of the batch."""
    geo = np.stack([ay.src, ay.dst, ay.length, ax.src, ax.dst, ax.length], 1)
    if (geo == geo[0]).all():
        sy, dy, ly, sx, dx, lx = geo[0].tolist()
        if ly > 0 and lx > 0:
            crop[:, :, dy:dy + ly, dx:dx + lx] = region[:, :, sy:sy + ly, sx:sx + lx]
        return
    for b, (sy, dy, ly, sx, dx, lx) in enumerate(geo.tolist()):
        if ly > 0 and lx > 0:
            crop[b, :, dy:dy + ly, dx:dx + lx] = region[b, :, sy:sy + ly, sx:sx + lx]


def _as_pc(t: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w, C) (a view for channels_last storage)."""
    b, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).reshape(b, h * w, c)


@torch.no_grad()
def occlusion_fast(model: FeatureNet, image: torch.Tensor, baseline: torch.Tensor | float, *,
                   objective: ObjectiveSpec | str = "style", layers: str | Sequence[str] = DEFAULT_STYLE_LAYERS,
                   layer_weights: Sequence[float] | Mapping[str, float] | None = None,
                   window: int = 32, stride: int = 16, pooling: str = "max",
                   batch_size: int = DEFAULT_BATCH_SIZE, progress: Callable[[int, int], None] | None = None,
                   channels_last: bool = True) -> torch.Tensor:
    """Occlusion attribution of a VGG objective, exactly as Captum computes it, much faster.

    Equal (up to float32 rounding) to one channel of
    ``captum.attr.Occlusion(f).attribute(image, sliding_window_shapes=(3, window, window),
    strides=(3, stride, stride), baselines=baseline)`` with
    ``f = explorer.saliency.objectives.objective_function(model, objective, layers=layers,
    weights=layer_weights, pooling=pooling)``:
    for each window of :func:`occlusion_windows`, d = f(image) - f(image with the window's
    pixels replaced by the baseline's, all three channels), and each pixel gets the mean of d
    over the windows that cover it (Zeiler & Fergus 2014, sec. 4.2; Captum's ``Occlusion``).
    Positive where hiding the region lowers the objective.

    Args:
        model: a VGG :class:`FeatureNet` (``spec.family == "vgg"``), on any device.
        image: (1, 3, H, W) in [0, 1], H and W at least ``model.spec.min_size`` (32) px.
        baseline: (1, 3, H, W) (or broadcastable to it, or a number) in [0, 1]: the pixels a
            window is filled with.
        objective: an :class:`~explorer.saliency.objectives.ObjectiveSpec` or its text
            (``"style"``, ``"layer:NAME"``, ``"channel:NAME:K"``): the style energy
            E = sum_l w_l ||G_l||^2 / (4 N_l^2 M_l^2) over ``layers``
            (:func:`explorer.optim.losses.style_energy`, Gatys et al. 2016 eq. (4)-(5) against
            a zero target), the mean activation of a layer, or of one channel of it.
        layers: the style energy's layers (``conv*``, ``relu*`` or ``pool*`` of the VGG feature
            stack; a single name is allowed); the layer and channel objectives name their own.
        layer_weights: the style energy's w_l: a sequence aligned with ``layers`` or a dict by
            name; default 1/L each (:func:`explorer.optim.losses.style_layer_weights`).
        window: window side in px, 1..min(H, W). stride: step in px, 1..window.
        pooling: ``"max"`` (as trained) or ``"avg"`` (see :meth:`FeatureNet.features`).
        batch_size: windows computed together (memory grows with it; the result does not change).
        progress: optional ``callable(done_windows, total_windows)``, called after each batch.
        channels_last: run the crops in channels_last memory format (faster on CPUs).

    Returns:
        (H, W) float32 tensor on the CPU, in the objective's units per pixel (the objective is
        unitless).

    Raises:
        UnsupportedNetworkError (a ``ValueError``): a network that is not a plain VGG, a layer
            behind its convolutional stack, or the ``class`` objective (callers fall back to
            Captum).
        ValueError: an objective that does not parse, an unknown layer (``UnknownLayerError``),
            a channel out of range, wrong weights, bad image/baseline shapes, a window larger
            than the image or a stride larger than the window, ``batch_size < 1``.
    """
    spec = as_spec(objective)
    if spec.kind not in OBJECTIVES:
        raise UnsupportedNetworkError(f"fast occlusion computes the {', '.join(OBJECTIVES)} objectives, not "
                                      f"{spec}; use Captum's Occlusion")
    objective, channel = spec.kind, spec.channel
    layers = _layer_list(layers) if objective == "style" else [spec.layer]
    _check_family(model)
    weights = style_layer_weights(layers, layer_weights) if objective == "style" else [1.0]
    model.check_layers(layers)
    if pooling not in ("max", "avg"):
        raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}")
    names = list(model.layer_names)
    deepest = max(layers, key=names.index)
    steps_spec = _check_model(model, deepest)
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"image must have shape (1, 3, H, W), got {tuple(image.shape)}")
    H, W = int(image.shape[-2]), int(image.shape[-1])
    if min(H, W) < model.spec.min_size:
        raise ValueError(f"{model.name} needs images of at least {model.spec.min_size} px a side, got {W} x {H}")
    check_windows(H, W, window, stride)
    dev = model.device
    x = image.detach().to(dev, torch.float32)
    try:
        base = torch.as_tensor(baseline, dtype=torch.float32, device=dev).expand(1, 3, H, W)
    except RuntimeError:
        raise ValueError(f"baseline of shape {tuple(torch.as_tensor(baseline).shape)} does not fit the image "
                         f"(1, 3, {H}, {W})") from None
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    # 1. the clean pass: every activation a crop is cut from, and the objective's statistics
    needed = set(layers)
    for i, (name, kind, _) in enumerate(steps_spec):
        if kind in ("conv", "pool") and i > 0:
            needed.add(steps_spec[i - 1][0])
    clean = model.features(x.contiguous(memory_format=fmt), [n for n in names if n in needed], pooling=pooling)
    if objective == "channel":
        n_ch = clean[layers[0]].shape[1]
        if channel >= n_ch:
            raise ValueError(f"{layers[0]} has {n_ch} channels; channel {channel} does not exist")
    stats: dict[str, tuple[float, torch.Tensor | None]] = {}  # layer -> (coefficient, clean Gram)
    for wl, name in zip(weights, layers):
        f = clean[name].float()
        n_c, m = f.shape[1], f.shape[2] * f.shape[3]
        if objective == "style":  # w_l / (4 N^2 M^2) and G = F F^T (accumulated in float64)
            coef = wl / (4.0 * n_c * n_c * m * m) + (stats[name][0] if name in stats else 0.0)
            a = _as_pc(f)[0].double()
            stats[name] = (coef, (a.T @ a).float())
        else:  # the mean over channels and positions, or over positions of one channel
            stats[name] = (1.0 / (n_c * m) if objective == "layer" else 1.0 / m, None)
    # the crop sources, zero-padded by one position (the convolutions' padding)
    pad = 1
    padded = {"": F.pad(model.normalize(x), (pad,) * 4).contiguous(memory_format=fmt)}
    for n in list(clean):
        padded[n] = F.pad(clean.pop(n).float(), (pad,) * 4).contiguous(memory_format=fmt)
    base_n = F.pad(model.normalize(base), (pad,) * 4).contiguous(memory_format=fmt)

    # 2. the geometry: map sizes per layer; windows grouped into batches of similar region sizes
    ops_y, ops_x = [], []
    prev_h, prev_w = H, W
    for name, kind, _ in steps_spec:
        oh, ow = (prev_h // 2, prev_w // 2) if kind == "pool" else (prev_h, prev_w)
        if name in padded and (oh + 2 * pad, ow + 2 * pad) != tuple(padded[name].shape[-2:]):  # pragma: no cover
            raise ValueError(f"unexpected size of {name}: {tuple(padded[name].shape)}")
        ops_y.append((kind, prev_h, oh))
        ops_x.append((kind, prev_w, ow))
        prev_h, prev_w = oh, ow
    starts_y, starts_x = axis_starts(H, window, stride), axis_starts(W, window, stride)
    wins = [(y, xx) for xx in starts_x for y in starts_y]  # Captum's order
    macs = [(m.in_channels * m.out_channels) if k == "conv" else 0 for _, k, m in steps_spec]
    batches = window_batches(wins, window, ops_y, ops_x, H, W, macs, batch_size)
    # channel objective: after the last convolution only channel k is needed
    last_conv = max(i for i, (_, k, _) in enumerate(steps_spec) if k == "conv") if objective == "channel" else None
    steps = [_Step(name, kind, module, steps_spec[i - 1][0] if i > 0 else "",
                   channel if last_conv is not None and i >= last_conv else None)
             for i, (name, kind, module) in enumerate(steps_spec)]

    # 3. the windows, batch by batch
    diffs = np.zeros(len(wins), dtype=np.float64)
    done = 0
    for batch in batches:
        n = len(batch)
        wy = np.array([wins[i][0] for i in batch], dtype=np.int64)
        wx = np.array([wins[i][1] for i in batch], dtype=np.int64)
        a0y, s0y, plan_y = plan_axis(wy, window, H, ops_y)
        a0x, s0x, plan_x = plan_axis(wx, window, W, ops_x)
        # the occluded input region: clean normalized pixels with the normalized baseline pasted
        # in (normalization is elementwise, so this is the normalization of Captum's input)
        r_clean = _gather(padded[""], a0y, a0x, s0y, s0x, pad, slice(None), fmt)
        r_base = _gather(base_n, a0y, a0x, s0y, s0x, pad, slice(None), fmt)
        py, px = a0y[:, None] + np.arange(s0y), a0x[:, None] + np.arange(s0x)
        my = (py >= wy[:, None]) & (py < wy[:, None] + window)
        mx = (px >= wx[:, None]) & (px < wx[:, None] + window)
        mask = torch.from_numpy(my[:, None, :, None] & mx[:, None, None, :]).to(dev)
        region = torch.where(mask, r_base, r_clean)
        delta = torch.zeros(n, dtype=torch.float64)
        ay = ax = None
        for st, step_y, step_x in zip(steps, plan_y, plan_x):
            chans = slice(None) if st.channel is None else slice(st.channel, st.channel + 1)
            if st.kind == "relu":
                region = F.relu_(region)  # a fresh tensor; the previous layer's statistics are taken
            else:
                ay, ax = step_y, step_x
                crop = _gather(padded[st.source], ay.crop_start, ax.crop_start, ay.crop_size, ax.crop_size, pad,
                               slice(None) if st.kind == "conv" else chans, fmt)
                _paste(crop, region, ay, ax)
                if st.kind == "conv":
                    w, bias = st.module.weight, st.module.bias
                    if st.channel is not None:
                        w, bias = w[chans], None if bias is None else bias[chans]
                    region = F.conv2d(crop, w, bias)
                elif pooling == "max":
                    region = F.max_pool2d(crop, 2, 2)
                else:
                    region = F.avg_pool2d(crop, 2, 2)
            if st.name in stats:
                c = _gather(padded[st.name], ay.out_start, ax.out_start, ay.out_size, ax.out_size, pad, chans, fmt)
                coef, gram = stats[st.name]
                r = region.float()
                d = r - c
                if objective == "style":
                    # G_occ - G_clean = R^T R - C^T C = D^T R + C^T D = [D; C]^T [R; D]: one product,
                    # and no difference of large numbers
                    dm, rm, cm = _as_pc(d), _as_pc(r), _as_pc(c)
                    change = torch.bmm(torch.cat([dm, cm], 1).transpose(1, 2), torch.cat([rm, dm], 1))
                    flat = change.reshape(n, -1)
                    e = 2.0 * (flat @ gram.reshape(-1)) + flat.pow(2).sum(1)
                elif objective == "layer":
                    e = d.sum((1, 2, 3))
                else:
                    e = d[:, 0 if st.channel is not None else channel].sum((1, 2))
                delta += coef * e.double().cpu()
        diffs[batch] = -delta.numpy()  # f(x) - f(x occluded)
        done += n
        if progress is not None:
            progress(done, len(wins))

    # 4. Captum's averaging: each pixel gets the mean over the windows that cover it
    total = torch.zeros(H, W, dtype=torch.float64)
    count = torch.zeros(H, W, dtype=torch.float64)
    for (y, xx), d in zip(wins, diffs.tolist()):
        total[y: y + window, xx: xx + window] += d
        count[y: y + window, xx: xx + window] += 1.0
    return (total / count).float()
