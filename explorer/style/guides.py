"""Guides pushed through the encoder: saliency weight maps and semantic-region masks resampled
to every layer's resolution (pystiche's "guides").

A guide says which positions of an image a Gram matrix looks at. At the image's resolution it is
an (H, W) weight map (a saliency map) or R (H, W) region masks; a network layer sees it area
averaged to (H_l, W_l) (:func:`layer_masks`, :func:`region_layer_masks`). The style targets
under a guide are the style image's :func:`explorer.optim.losses.guided_gram` there, built by
:func:`explorer.style.gatys.style_targets` (``weight=`` or ``regions=``; Luan et al. 2017
eq. (3a)-(3b) per region). Floor: above :mod:`explorer.nets.models` and :mod:`explorer.nets.layers`,
below every run (README, "Layout").
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..nets.layers import output_shape
from ..nets.models import FeatureNet

__all__ = ["layer_masks", "region_layer_masks"]


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
