"""Winograd 3x3 convolutions for float32 on the CPU: NNPACK's F(6x6, 3x3), which ships inside
PyTorch (``torch._nnpack_spatial_convolution``), for the forward pass and for the gradient with
respect to the input (the only gradient style transfer needs: the weights are frozen).

Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016, sec. 4, F(m x m, r x r)) computes an m x m tile of a 3x3 convolution with
(m + 2)^2 multiplications instead of 9 m^2: 64 instead of 324 for m = 6. oneDNN, which runs
torch's convolutions on the CPU, computes them directly. On the 2-core development CPU (AMD
EPYC, AVX-512) NNPACK's Winograd ran VGG19's 3x3 convolutions about 2x faster than oneDNN on
feature maps of 48 x 64 positions and more, equally fast at 24 x 32 and 2.5x slower at 12 x 16
(``bench/bench_speed.py --layers``), so ``conv="auto"`` takes it for large maps only
(:func:`prefers`).

The input gradient of a 3x3 convolution with stride 1 and padding 1 is itself such a
convolution, of the output gradient with the kernels flipped in space and with input and
output channels swapped (:func:`flipped_weight`), so the backward pass runs on Winograd too.

Accuracy: Winograd's transforms cost float32 some digits; on VGG19 the relative error was about
1e-4 per layer and about 1e-3 for the image gradient after 13 layers, far below what changes a
picture (L-BFGS reached the same losses; ``tests/test_winograd.py``).

Nothing here imports the explorer: :mod:`explorer.nets.models` uses it in ``FeatureNet.features``.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

__all__ = ["CONV_ALGORITHMS", "MIN_POSITIONS", "MIN_CHANNELS", "available", "eligible", "prefers",
           "flipped_weight", "winograd_conv3x3", "FlippedWeights"]

#: ``auto``: Winograd where :func:`prefers` says so, ``direct``: torch's own convolution
#: everywhere, ``winograd``: Winograd for every convolution that can take it.
CONV_ALGORITHMS = ("auto", "direct", "winograd")
#: ``auto`` takes Winograd from feature maps of this many positions (H x W) up. Measured on
#: VGG19's layers (``bench/bench_speed.py --layers``): about 2x faster than oneDNN at 48 x 64
#: positions and more, even at 24 x 32, 2.5x slower at 12 x 16.
MIN_POSITIONS = 2048
#: ... and from this many input channels up: the first layer (3 channels) is faster in oneDNN
#: with channels_last.
MIN_CHANNELS = 16

_available: bool | None = None


def available() -> bool:
    """True when this PyTorch build has NNPACK and it initialized (x86-64 and ARM builds of
    Linux and macOS usually do). The first call initializes NNPACK; calls before it fail."""
    global _available
    if _available is None:
        try:
            _available = bool(torch.backends.nnpack.is_available()) and hasattr(torch, "_nnpack_spatial_convolution")
        except Exception:  # a build without the NNPACK bindings
            _available = False
    return _available


def eligible(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv`` applied to ``x`` (B, C, H, W) can run on Winograd: an ``nn.Conv2d``
    with 3x3 kernels, stride 1, padding 1, dilation 1, one group and frozen weights, on a
    float32 CPU tensor outside autocast (bf16 autocast has its own fast path), with NNPACK there."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and not conv.weight.requires_grad
            and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and not _cpu_autocast() and available())


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch before 2.4 has no device argument
        return torch.is_autocast_cpu_enabled()


def flipped_weight(weight: torch.Tensor) -> torch.Tensor:
    """The kernels of the input-gradient convolution: ``weight`` (C_out, C_in, 3, 3) flipped in
    both spatial axes with the channel axes swapped, (C_in, C_out, 3, 3), contiguous."""
    return weight.flip(2, 3).transpose(0, 1).contiguous()


def _nnpack(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """One image at a time: NNPACK takes another code path for batches, whose rounding differs,
    and an image must give the same numbers alone and in a batch (batched style transfer
    follows the single runs)."""
    x = x.contiguous()
    if x.shape[0] == 1:
        return torch._nnpack_spatial_convolution(x, weight, bias, [1, 1], [1, 1])
    return torch.cat([torch._nnpack_spatial_convolution(x[i:i + 1], weight, bias, [1, 1], [1, 1])
                      for i in range(x.shape[0])])


class _WinogradConv3x3(torch.autograd.Function):
    """y = conv3x3(x, W) + b on Winograd; dL/dx = conv3x3(dL/dy, flipped W) on Winograd too.
    No gradient for W and b (frozen)."""

    @staticmethod
    def forward(ctx, x, weight, bias, weight_flipped):
        ctx.save_for_backward(weight_flipped)
        return _nnpack(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        (weight_flipped,) = ctx.saved_tensors
        grad_in = _nnpack(grad_out, weight_flipped, None) if ctx.needs_input_grad[0] else None
        return grad_in, None, None, None


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     weight_flipped: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution with stride 1 and padding 1 on NNPACK's Winograd, differentiable with
    respect to ``x`` only.

    Args:
        x: (B, C_in, H, W) float32 on the CPU (any memory format; NCHW is used).
        weight: (C_out, C_in, 3, 3); bias: (C_out,) or ``None``.
        weight_flipped: :func:`flipped_weight` of ``weight`` (kept by the caller: computing it
            at every call would cost a copy of the weights).

    Returns:
        (B, C_out, H, W) float32, contiguous (NCHW): ``F.conv2d(x, weight, bias, padding=1)``
        to about 1e-4 relative.

    Raises:
        RuntimeError: NNPACK is not available (check :func:`eligible` first).
    """
    return _WinogradConv3x3.apply(x, weight, bias, weight_flipped)


def prefers(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``conv="auto"`` runs this :func:`eligible` convolution on Winograd: when its
    feature map has at least :data:`MIN_POSITIONS` positions and it has at least
    :data:`MIN_CHANNELS` input channels. A rule of the shape only, so the same run gives the
    same numbers every time (a choice by timing would not), and one image alone or in a batch
    takes the same path."""
    return x.shape[-1] * x.shape[-2] >= MIN_POSITIONS and conv.in_channels >= MIN_CHANNELS


class FlippedWeights:
    """The :func:`flipped_weight` of each layer of a network, made on first use (and again when
    the layer's weights are replaced or moved). Thread-safe; a ``copy.deepcopy`` of the
    network starts empty."""

    def __init__(self):
        self._held: dict[str, tuple[int, torch.Tensor]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def get(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """The flipped kernels of the layer ``name`` whose kernels are ``weight``."""
        held = self._held.get(name)
        if held is None or held[0] != weight.data_ptr():
            held = (weight.data_ptr(), flipped_weight(weight.detach()))
            with self._lock:
                self._held[name] = held
        return held[1]
