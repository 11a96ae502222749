"""Guides pushed through the encoder: saliency weight maps and semantic-region masks resampled
to every layer's resolution, and the style targets they give (pystiche's "guides").

A guide says which positions of an image a Gram matrix looks at. At the image's resolution it is
an (H, W) weight map (a saliency map) or R (H, W) region masks; a network layer sees it area
averaged to (H_l, W_l) (:func:`layer_masks`, :func:`region_layer_masks`). The targets are the
style image's :func:`explorer.optim.losses.guided_gram` under the guide: one per layer
(:func:`guided_targets`) or one per layer and region (:func:`region_style_targets`, Luan et al.
2017 eq. (3a)-(3b)). Floor: above :mod:`explorer.nets.models`, :mod:`explorer.nets.layers` and
:mod:`explorer.optim.losses`, below every run (README, "Layout").
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..nets.layers import output_shape
from ..optim.losses import guided_gram, region_valid
from ..nets.models import FeatureNet

__all__ = ["layer_masks", "region_layer_masks", "guided_targets", "RegionTargets", "region_style_targets"]


def layer_masks(weight: torch.Tensor, model: FeatureNet, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Resample a weight map to every layer's spatial resolution by area averaging (each layer
    cell gets the mean weight of the input pixels it covers: ``F.adaptive_avg_pool2d``).

    Args:
        weight: (H, W) in [0, 1], at the size of the image the network sees.
        model: the network (only its architecture is used, for output shapes).
        layers: layer names.

    Returns:
        dict layer -> (H_l, W_l) float32 tensor in [0, 1].

    Raises:
        UnknownLayerError; ValueError for a layer without spatial maps.
    """
    return {name: m[0] for name, m in region_layer_masks(weight[None], model, layers).items()}


def region_layer_masks(masks: torch.Tensor, model, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Resample R region masks to every layer's resolution by area averaging
    (``F.adaptive_avg_pool2d``: each layer cell gets the mean of the input pixels it covers),
    all regions at once; :func:`layer_masks` is the one-map case.

    Args:
        masks: (R, H, W) masks in [0, 1] at the size of the image the network sees.
        model: the :class:`~explorer.nets.models.FeatureNet` (only its architecture is used).
        layers: layer names.

    Returns:
        dict layer -> (R, H_l, W_l) float32 tensor in [0, 1], on ``masks``' device.

    Raises:
        UnknownLayerError: an unknown layer; ValueError: masks not (R, H, W), or a layer
            without spatial maps.
    """
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"region masks must have shape (R, H, W); got {shape}")
    layers = model.check_layers(layers)
    _, h, w = masks.shape
    out = {}
    m = masks.float()[:, None]
    for name in layers:
        shape = output_shape(model.name, name, h, w)
        if len(shape) != 3:
            raise ValueError(f"{name} has no spatial maps; pick a convolutional layer")
        out[name] = F.adaptive_avg_pool2d(m, shape[1:])[:, 0]
    return out


@torch.no_grad()
def guided_targets(model: FeatureNet, style: torch.Tensor, layers: Sequence[str], weight: torch.Tensor,
                   pooling: str = "max") -> dict[str, torch.Tensor]:
    """Saliency-guided style targets: per layer the normalized masked Gram of the style image.

    Args:
        model: the feature network.
        style: (1, 3, H, W) in [0, 1].
        layers: style layers.
        weight: (H, W) weight map in [0, 1] at the style image's size.
        pooling: as in :class:`~explorer.style.settings.StyleSettings`.

    Returns:
        dict layer -> (N_l, N_l) float32 tensor on the model's device; an all-ones weight gives
        exactly :func:`explorer.style.gatys.style_targets`.
    """
    if tuple(weight.shape) != tuple(style.shape[-2:]):
        raise ValueError(f"weight map {tuple(weight.shape)} does not match the style image {tuple(style.shape[-2:])}")
    masks = layer_masks(weight, model, layers)
    feats = model.features(style.to(model.device, torch.float32), layers, pooling=pooling)
    return {name: guided_gram(feats[name], masks[name])[0] for name in layers}


class RegionTargets(dict):
    """dict layer -> (R, N_l, N_l) float32 style targets, one normalized masked Gram per region;
    ``valid`` holds, per layer, the (R,) bool of regions with a non-empty style mask there.
    Invalid regions have an all-zero target, which :func:`explorer.optim.losses.region_style_layer_loss` skips
    (also when only the plain dict survives, e.g. after ``{l: t.to(dev) for ...}``)."""

    def __init__(self, targets: dict[str, torch.Tensor], valid: dict[str, torch.Tensor]):
        super().__init__(targets)
        self.valid = valid


@torch.no_grad()
def region_style_targets(model, style: torch.Tensor, style_masks: torch.Tensor, layers: Sequence[str],
                         pooling: str = "max") -> RegionTargets:
    """Per region and style layer, the style image's normalized masked Gram matrix
    G_{l,c}[S] of Luan et al. 2017 eq. (3a)-(3b), via :func:`explorer.optim.losses.guided_gram`:
    G_w = F diag(w) F^T / sum_k w_k with w the region's style mask area-averaged to layer l.

    A region whose style mask is (numerically) empty at a layer (:func:`region_valid`) gets an
    all-zero target there; ``result.valid[layer]`` says which regions are valid, and
    :func:`explorer.optim.losses.region_style_layer_loss` skips zero targets.

    Args:
        model: the :class:`~explorer.nets.models.FeatureNet`.
        style: (1, 3, H, W) style image in [0, 1].
        style_masks: (R, H, W) region masks of the style image (0/1 or in [0, 1]).
        layers: style layers.
        pooling: ``"max"`` or ``"avg"``, as in :class:`~explorer.style.settings.StyleSettings`.

    Returns:
        :class:`RegionTargets`: dict layer -> (R, N_l, N_l) float32 on the model's device
        (features computed in float32, no autocast).

    Raises:
        ValueError: shapes that do not match; UnknownLayerError.
    """
    if not isinstance(style, torch.Tensor) or style.dim() != 4 or style.shape[:2] != (1, 3):
        raise ValueError(f"the style image must have shape (1, 3, H, W); got "
                         f"{tuple(style.shape) if isinstance(style, torch.Tensor) else type(style).__name__}")
    if not isinstance(style_masks, torch.Tensor) or style_masks.dim() != 3:
        raise ValueError("style region masks must have shape (R, H, W)")
    if tuple(style_masks.shape[-2:]) != tuple(style.shape[-2:]):
        raise ValueError(f"style masks are {style_masks.shape[-1]}x{style_masks.shape[-2]} px but the style image is "
                         f"{style.shape[-1]}x{style.shape[-2]} px")
    layers = model.check_layers(layers)
    masks = region_layer_masks(style_masks.to(model.device), model, layers)
    feats = model.features(style.to(model.device, torch.float32), layers, pooling=pooling)
    targets, valid = {}, {}
    for name in layers:
        f = feats[name].float()
        ok = region_valid(masks[name])
        n = f.shape[1]
        t = torch.zeros(len(ok), n, n, device=f.device, dtype=torch.float32)
        for r in torch.nonzero(ok).flatten().tolist():
            t[r] = guided_gram(f, masks[name][r])[0]
        targets[name], valid[name] = t, ok
    return RegionTargets(targets, valid)
