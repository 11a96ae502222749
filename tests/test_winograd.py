"""Winograd convolutions (explorer/nets/winograd.py) and FeatureNet.features(conv=...): the same
numbers as torch's own convolutions to Winograd's float32 rounding, gradients included, batches
equal to single images, and only where it applies."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explorer.core import choices
from explorer.nets import winograd

needs_nnpack = pytest.mark.skipif(not winograd.available(), reason="this PyTorch build has no NNPACK")


def _conv(cin: int, cout: int, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    conv.requires_grad_(False)
    return conv


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


def test_the_cli_offers_winograd_s_own_list():
    assert choices.CONV_ALGORITHMS == winograd.CONV_ALGORITHMS


@needs_nnpack
@pytest.mark.parametrize("cin, cout, h, w", [(16, 32, 48, 64), (64, 64, 33, 47), (3, 8, 20, 20)])
def test_forward_and_input_gradient_match_torch_s_convolution(cin, cout, h, w):
    conv = _conv(cin, cout)
    x = torch.rand(1, cin, h, w, generator=torch.Generator().manual_seed(1), requires_grad=True)
    g = torch.randn(1, cout, h, w, generator=torch.Generator().manual_seed(2))
    y = winograd.winograd_conv3x3(x, conv.weight, conv.bias, winograd.flipped_weight(conv.weight))
    (gx,) = torch.autograd.grad(y, x, g)
    x2 = x.detach().clone().requires_grad_(True)
    y2 = F.conv2d(x2, conv.weight, conv.bias, padding=1)
    (gx2,) = torch.autograd.grad(y2, x2, g)
    assert y.shape == y2.shape and y.dtype == torch.float32
    assert _rel(y, y2) < 1e-4
    assert _rel(gx, gx2) < 1e-4


@needs_nnpack
def test_a_batch_gives_each_image_exactly_what_it_gives_alone():
    conv = _conv(16, 16)
    x = torch.rand(3, 16, 64, 64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    flipped = winograd.flipped_weight(conv.weight)
    y = winograd.winograd_conv3x3(x, conv.weight, conv.bias, flipped)
    (gx,) = torch.autograd.grad(y.pow(2).sum(), x)
    for i in range(3):
        xi = x[i:i + 1].detach().clone().requires_grad_(True)
        yi = winograd.winograd_conv3x3(xi, conv.weight, conv.bias, flipped)
        (gi,) = torch.autograd.grad(yi.pow(2).sum(), xi)
        assert torch.equal(y[i:i + 1], yi) and torch.equal(gx[i:i + 1], gi)


@needs_nnpack
def test_channels_last_input_gives_the_same_numbers():
    conv = _conv(16, 16)
    x = torch.rand(1, 16, 48, 48, generator=torch.Generator().manual_seed(4))
    flipped = winograd.flipped_weight(conv.weight)
    a = winograd.winograd_conv3x3(x, conv.weight, conv.bias, flipped)
    b = winograd.winograd_conv3x3(x.contiguous(memory_format=torch.channels_last), conv.weight, conv.bias, flipped)
    assert torch.equal(a, b)


@needs_nnpack
def test_eligible_only_for_frozen_3x3_stride_1_float32_on_the_cpu_outside_autocast():
    x = torch.rand(1, 16, 32, 32)
    assert winograd.eligible(_conv(16, 16), x)
    assert not winograd.eligible(nn.Conv2d(16, 16, 3, padding=1), x)  # weights that need a gradient
    assert not winograd.eligible(_conv(16, 16).requires_grad_(False).to(torch.float64), x.double())
    strided = nn.Conv2d(16, 16, 3, stride=2, padding=1).requires_grad_(False)
    assert not winograd.eligible(strided, x)
    assert not winograd.eligible(nn.Conv2d(16, 16, 1).requires_grad_(False), x)
    assert not winograd.eligible(nn.Conv2d(16, 16, 3, padding=1, groups=2).requires_grad_(False), x)
    assert not winograd.eligible(nn.ReLU(), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not winograd.eligible(_conv(16, 16), x)


def test_auto_takes_winograd_from_the_size_and_channel_thresholds_up():
    side = math.isqrt(winograd.MIN_POSITIONS - 1) + 1  # side^2 >= MIN_POSITIONS > (side - 1)^2
    big, small = torch.empty(1, 64, side, side), torch.empty(1, 64, side - 1, side - 1)
    assert winograd.prefers(_conv(64, 64), big)
    assert not winograd.prefers(_conv(64, 64), small)
    assert not winograd.prefers(_conv(3, 64), torch.empty(1, 3, 4 * side, 4 * side))  # the first layer
    assert winograd.prefers(_conv(64, 64), torch.empty(8, 64, side, side))  # per image, whatever the batch


@needs_nnpack
@pytest.mark.parametrize("conv", ["auto", "winograd"])
def test_network_features_and_image_gradient_match_direct(vgg19, conv):
    """Untrained VGG19 at 96 px: every requested layer, and the gradient the style loop uses.
    Winograd rounds differently (about 1e-5 relative per layer); where that flips a max-pooling
    switch the gradient moves locally, so the gradient is compared as a whole (cosine)."""
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
    x0 = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(5))
    out = {}
    for mode in ("direct", conv):
        x = x0.clone().requires_grad_(True)
        feats = vgg19.features(x, layers, conv=mode)
        (g,) = torch.autograd.grad(sum(f.pow(2).mean() for f in feats.values()), x)
        out[mode] = ({k: v.detach() for k, v in feats.items()}, g)
    for name in layers:
        assert _rel(out[conv][0][name], out["direct"][0][name]) < 1e-3, name
    cos = F.cosine_similarity(out[conv][1].flatten(), out["direct"][1].flatten(), dim=0)
    assert float(cos) > 0.999


def test_an_unknown_conv_setting_is_one_line(vgg19):
    with pytest.raises(ValueError, match="conv must be one of auto, direct, winograd; got 'fast'"):
        vgg19.features(torch.rand(1, 3, 32, 32), ["relu1_1"], conv="fast")


@needs_nnpack
def test_flipped_kernels_are_kept_per_network_and_renewed_with_the_weights(vgg19):
    net = copy.deepcopy(vgg19)  # a copy starts with no kept kernels and its own lock
    w = net.body["conv1_2"].weight
    first = net.winograd_weights.get("conv1_2", w)
    assert torch.equal(first, winograd.flipped_weight(w)) and net.winograd_weights.get("conv1_2", w) is first
    new = torch.randn_like(w)
    assert torch.equal(net.winograd_weights.get("conv1_2", new), winograd.flipped_weight(new))
