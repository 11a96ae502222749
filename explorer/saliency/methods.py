"""Captum's attribution methods made safe to share, and what they need besides the objective:

* :func:`private_copy`: a network that shares the cached model's weights but owns every module a
  hook can be put on, so guided backprop's hooks on every ReLU and Grad-CAM's hook on its layer
  never fire in another browser session's forward pass through the shared model;
* :func:`guided_backprop` on such a copy (Springenberg et al. 2015);
* :func:`smoothgrad`: SmoothGrad (Smilkov et al. 2017) over integrated gradients with noise from
  a private seeded generator;
* :func:`baseline_image`: what an occluded window is filled with (Zeiler & Fergus 2014).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable

import torch
from torch import nn
from torchvision.transforms.v2.functional import gaussian_blur

from ..core import choices
from ..nets.models import FeatureNet

__all__ = ["BASELINES", "private_copy", "guided_backprop", "smoothgrad", "baseline_image", "context_margin",
           "with_context"]

#: What an occluded window can be filled with.
BASELINES = choices.BASELINES

# Captum warns on every GuidedBackprop call that it sets hooks; we know, and use a private copy.
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")


def _private_module(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s tree of modules that shares its parameters and buffers (no tensor
    is copied), with every ReLU6 written as ReLU then a clamp at 6 (MobileNetV2), so that
    guided backprop, which hooks ``nn.ReLU`` modules, sees every rectifier."""
    memo = {id(t): t for t in (*module.parameters(), *module.buffers())}
    copy_ = copy.deepcopy(module, memo)
    if isinstance(copy_, nn.ReLU6):
        return nn.Sequential(nn.ReLU(), nn.Hardtanh(0.0, 6.0))
    for parent in list(copy_.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, nn.Sequential(nn.ReLU(), nn.Hardtanh(0.0, 6.0)))
            elif isinstance(child, nn.ReLU) and child.inplace:
                setattr(parent, name, nn.ReLU(inplace=False))  # backward hooks refuse in-place outputs
    return copy_


def private_copy(model: FeatureNet, hooked_layer: str | None = None) -> FeatureNet:
    """A network for hook-using Captum methods that shares the weights (no copy) but owns every
    module a hook can be put on: each layer's module tree is copied around the shared
    parameters (:func:`_private_module`), so guided backprop's hooks on every ReLU and
    Grad-CAM's hook on ``hooked_layer`` never fire in another session's forward pass through
    the shared model.

    Raises:
        UnknownLayerError: unknown ``hooked_layer``.
    """
    if hooked_layer is not None:
        model.check_layers([hooked_layer])
    layers = [(name, _private_module(model.body[name])) for name in model.layer_names]
    return FeatureNet(model.spec, layers, model.weights).to(model.device)


def baseline_image(image: torch.Tensor, kind: str, window: int = 32) -> torch.Tensor:
    """What an occluded window is filled with, (1, 3, H, W) in [0, 1].

    Args:
        image: (1, 3, H, W) in [0, 1].
        kind: ``zero`` (black), ``mean`` (per-channel mean colour of the image) or ``blur``
            (torchvision's Gaussian blur with sigma = window / 4 px, kernel 2*ceil(3 sigma)+1,
            reflect padding): the window then loses its texture but keeps its colour.
        window: occlusion window side in pixels (sets the blur).

    Raises:
        ValueError: unknown kind.
    """
    if kind == "zero":
        return torch.zeros_like(image)
    if kind == "mean":
        return image.mean((2, 3), keepdim=True).expand_as(image).clone()
    if kind == "blur":
        sigma = max(window / 4.0, 0.5)
        k = 2 * math.ceil(3 * sigma) + 1
        k = min(k, 2 * ((min(image.shape[-2:]) - 1) // 2) + 1)  # reflect padding needs k <= side
        return gaussian_blur(image, [k, k], [sigma, sigma])
    raise ValueError(f"baseline must be one of {', '.join(BASELINES)}; got {kind!r}")


def context_margin(height: int, width: int, context: int) -> int:
    """The mirrored margin in px that :func:`with_context` can add to a ``height`` x ``width``
    picture: ``context``, at most the shorter side - 1 (reflect padding's limit), at least 0."""
    return max(0, min(int(context), min(int(height), int(width)) - 1))


def with_context(image: torch.Tensor, margin: int) -> torch.Tensor:
    """``image`` (1, 3, H, W) continued by its mirror image ``margin`` px beyond each border
    (reflect padding), (1, 3, H + 2 margin, W + 2 margin); ``margin`` 0 returns it as it is.

    Occlusion runs on this so that the network's zero padding lies outside the picture: on the
    Caffe VGG19 the padding makes the border positions of relu4_1 and relu5_1 carry more of the
    Gram energy than their share of the area (starry_night at 256 px: 41 % and 45 % of it in
    the positions under the 16 px border band, which holds 30 % of the area), so hiding a border
    window lowered the style energy more on any picture, a stationary noise texture included."""
    if margin <= 0:
        return image
    return torch.nn.functional.pad(image, (int(margin),) * 4, mode="reflect")


def smoothgrad(ig, x: torch.Tensor, samples: int, sigma: float, **kw) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017) over Captum's integrated gradients ``ig``: the mean of
    ``ig.attribute(x + noise_i, **kw)`` over ``samples`` draws of N(0, sigma^2) noise, computed
    as ``captum.attr.NoiseTunnel(ig).attribute(x, nt_type="smoothgrad", nt_samples_batch_size=1)``
    does, but with the noise drawn from a private generator seeded 0 (NoiseTunnel draws from
    torch's global generator, which reseeding would change for every other thread)."""
    g = torch.Generator(device=x.device).manual_seed(0)
    std = torch.tensor(sigma, device=x.device).repeat(x.shape)
    total = None
    for _ in range(samples):
        noisy = (x + torch.normal(0, std, generator=g)).requires_grad_()
        a = ig.attribute(noisy, **kw)
        total = a if total is None else total + a
    return total * 1 / samples


def guided_backprop(net: FeatureNet, forward: Callable, x: torch.Tensor) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015) with Captum's ``GuidedBackprop``: its
    hooks go on ``net``'s ReLU modules (pass a :func:`private_copy`), the scalar explained is
    ``forward(x)`` (N,). Returns the guided gradient, x's shape (N, 3, H, W), signed."""
    from captum.attr import GuidedBackprop

    gb = GuidedBackprop(net)
    gb.forward_func = forward  # Captum calls forward_func; the hooks stay on `net`'s private ReLUs
    return gb.attribute(x)
