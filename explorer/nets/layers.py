"""Layer arithmetic and a layer's activations: receptive fields and strides in input pixels,
output shapes (both computed from the architecture on the meta device), a layer's parameters,
and the activations of one layer for one image (:func:`layer_activations`: the network is
walked only up to that layer). The activation explorer's views of them are in
:mod:`explorer.activations.views`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .models import FeatureNet, list_layers, meta_net
from .registry import MODELS

__all__ = [
    "LayerInfo",
    "layer_info",
    "receptive_field",
    "output_shape",
    "layer_activations",
    "fast_layout",
    "walk_layers",
]


# ----------------------------------------------------------------------------- architecture

def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _prop(m: nn.Module, st: list[float]) -> list[float]:
    """Propagate [rf_h, rf_w, jump_h, jump_w] through module m (receptive field arithmetic:
    rf += (k - 1) * dilation * jump; jump *= stride)."""
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        d = _pair(getattr(m, "dilation", 1))
        return [st[0] + (k[0] - 1) * d[0] * st[2], st[1] + (k[1] - 1) * d[1] * st[3], st[2] * s[0], st[3] * s[1]]
    # a residual block's shortcut (ResNet's "downsample") runs beside the main path, not after it
    children = [(n, c) for n, c in m.named_children() if n != "downsample"]
    if not children:
        return st  # ReLU, BatchNorm, Dropout: pointwise
    branches = [c for c in children if c[0].startswith("branch")]
    if branches:
        # a multi-branch (Inception) block: each branch is the chain of its children sharing a
        # prefix (branch3x3dbl_1, _2, _3a, _3b); pooling branches pool 3x3 first (functional in
        # torchvision's Inception v3); the block's field is the largest per axis
        groups: dict[str, list[nn.Module]] = {}
        for name, child in branches:
            stem, _, tail = name.rpartition("_")
            key = stem if stem and tail[:1].isdigit() else name
            groups.setdefault(key, []).append(child)
        outs = []
        for key, mods in groups.items():
            s = st
            if key == "branch_pool":
                s = [s[0] + 2 * s[2], s[1] + 2 * s[3], s[2], s[3]]
            for mod in mods:
                s = _prop(mod, s)
            outs.append(s)
        return [max(o[0] for o in outs), max(o[1] for o in outs), max(o[2] for o in outs), max(o[3] for o in outs)]
    for _, child in children:
        st = _prop(child, st)
    return st


@functools.lru_cache(maxsize=256)
def receptive_field(model_name: str, layer: str) -> tuple[int, int] | None:
    """Receptive field size and stride of ``layer``, in input pixels, computed from the
    architecture (kernel sizes, strides and dilations along the deepest path; for Inception
    blocks the largest branch).

    Returns:
        (receptive field side, stride) for square kernels' nets, or ``None`` for layers after
        global pooling (they see the whole image).

    Raises:
        UnknownLayerError: unknown layer.
    """
    net = meta_net(model_name)
    net.check_layers([layer])
    st = [1.0, 1.0, 1.0, 1.0]
    for name in net.layer_names:
        if name in ("avgpool", "fc") or name.startswith(("fc", "relu6", "relu7")):
            if name == layer:
                return None
            continue
        st = _prop(net.body[name], st)
        if name == layer:
            return int(max(st[0], st[1])), int(max(st[2], st[3]))
    return None  # pragma: no cover


@functools.lru_cache(maxsize=512)
def output_shape(model_name: str, layer: str, height: int, width: int) -> tuple[int, ...]:
    """Shape of ``layer``'s output for one (height x width) image: (C, H, W), or (K,) after
    global pooling. Shape propagation on the meta device: no memory, no compute."""
    net = meta_net(model_name)
    with torch.device("meta"):
        out = net.features(torch.empty(1, 3, height, width), [layer])[layer]
    return tuple(out.shape[1:])


@dataclass(frozen=True)
class LayerInfo:
    """Static facts about a layer for an input of ``input_size`` pixels (square).

    Attributes:
        name: canonical layer name.
        index: position in forward order.
        shape: output shape (C, H, W) (or (K,) after global pooling).
        receptive_field: side in input pixels, or ``None`` (whole image).
        stride: distance in input pixels between neighbouring output positions, or ``None``.
        params: parameters of this layer; ``params_total``: of the network up to it.
    """

    name: str
    index: int
    shape: tuple[int, ...]
    receptive_field: int | None
    stride: int | None
    params: int
    params_total: int


def layer_info(model_name: str, layer: str, input_size: int = 224) -> LayerInfo:
    """Shape, receptive field, stride and parameter count of a layer (see :class:`LayerInfo`)."""
    net = meta_net(model_name)
    net.check_layers([layer])
    rf = receptive_field(model_name, layer)
    idx = net.layer_names.index(layer)
    counts = [sum(p.numel() for p in net.body[n].parameters()) for n in net.layer_names[: idx + 1]]
    return LayerInfo(layer, idx, output_shape(model_name, layer, input_size, input_size),
                     rf[0] if rf else None, rf[1] if rf else None, counts[-1], sum(counts))


# ----------------------------------------------------------------------------- activations

@torch.no_grad()
def layer_activations(model: FeatureNet, image: torch.Tensor, layer: str) -> np.ndarray:
    """Activations of one layer for one image, float32 NumPy array of shape (C, H, W) (or (K,)
    after global pooling). The network runs only up to ``layer``, in float32.

    Args:
        image: (1, 3, H, W) in [0, 1].

    Raises:
        UnknownLayerError, ValueError: unknown layer or an image too small for the network.
    """
    a = model.features(fast_layout(image.to(model.device, torch.float32)), [layer])[layer]
    return np.ascontiguousarray(a[0].float().cpu().numpy())


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """A batch of images in the memory layout the convolutions run fastest in: channels_last on
    CPU and CUDA (VGG19 to pool5 at 512 px, fp32: 0.84 -> 0.54 s on a 2-core CPU), unchanged on
    other devices.

    Args:
        x: (N, C, H, W) tensor, any dtype and device.

    Returns:
        the same values and shape; a channels_last copy (or ``x`` itself when it already is)
        on CPU and CUDA, ``x`` elsewhere.
    """
    return x.contiguous(memory_format=torch.channels_last) if x.device.type in ("cpu", "cuda") else x


def walk_layers(model_name: str) -> list[str]:
    """One layer per block, from the first to the last spatial layer, for the "walk through
    the network" strip (VGG: conv1_1 then each block's last ReLU; the others: their style
    layers, one per resolution, ``ModelSpec.style_layers``)."""
    names = list_layers(model_name)
    if MODELS[model_name].family == "vgg":
        out = ["conv1_1"]
        for b in range(1, 6):
            relus = [n for n in names if n.startswith(f"relu{b}_")]
            out.append(relus[-1])
        return out
    return list(MODELS[model_name].style_layers)


