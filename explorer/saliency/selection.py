"""What a heatmap of the style image keeps for saliency-guided transfer
(:mod:`explorer.saliency.guided`): a spatial weight map of the most important positions
(:func:`weight_map`, optionally of the heatmap smoothed into regions first,
:func:`smooth_importance`; or a painted mask, :func:`load_mask`), with warnings when it will not guide
much (:func:`guide_notes`), or the most important channels of each style layer
(:func:`channel_importance`, :func:`select_channels`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..nets.models import FeatureNet
from .methods import private_copy
from .objectives import ObjectiveSpec, objective_function

__all__ = ["NO_POSITIVE", "guide_notes", "smooth_importance", "weight_map", "load_mask", "channel_importance", "select_channels"]


#: The one line for a heatmap with nothing positive to keep.
NO_POSITIVE = ("the heatmap has no positive value, so no region can be kept (for occlusion: hiding no window "
               "lowers the objective); try another method, or another occlusion baseline such as blur")


def guide_notes(importance, weight: torch.Tensor, keep: float) -> list[str]:
    """One-line warnings about a weight map that will not guide much, for the pages and the CLI:
    fewer positive positions than ``keep`` asked for, or a mask that keeps almost nothing or
    almost everything (then guided and full Gram transfer look alike).

    Args:
        importance: the (H, W) heatmap the map came from (negative values count as 0).
        weight: the (H, W) weight map of :func:`weight_map`.
        keep: the fraction asked for.
    """
    h = np.maximum(np.asarray(importance, dtype=np.float32), 0.0)
    notes = []
    share = float((h > 0).mean())
    if share < keep - 1e-9:
        notes.append(f"only {share:.0%} of the positions have a positive importance, so the mask keeps those "
                     f"{share:.0%} instead of {keep:.0%}")
    kept = float(weight.gt(0).float().mean())
    if kept < 0.01:
        notes.append(f"the mask keeps {kept:.1%} of the style image: the guided style comes from a few pixels")
    elif kept > 0.95 and keep < 0.95:
        notes.append(f"the mask keeps {kept:.0%} of the style image: guided and full Gram transfer will look alike")
    return notes


def smooth_importance(importance, sigma: float) -> np.ndarray:
    """The heatmap smoothed with a Gaussian of standard deviation ``sigma`` pixels, so that its
    top positions form regions rather than scattered single pixels.

    A per-pixel map such as saliency (|d objective / d pixel|) varies from one pixel to the next,
    so its top 30 % is salt and pepper spread over the whole image; averaged over a
    neighbourhood of about ``sigma`` pixels, it ranks regions by their mean importance. Negative
    values count as 0 before smoothing; every position within a few ``sigma`` of a positive one
    becomes positive (an all-positive map stays all positive).

    Args:
        importance: (H, W) importance (NumPy or tensor), at the style image's working size.
        sigma: Gaussian standard deviation in pixels of that image, >= 0; 0 returns the map as it
            is (negative values set to 0). The borders are reflected.

    Returns:
        (H, W) float32 NumPy array, >= 0.

    Raises:
        ValueError: a negative or non-finite sigma, or a map that is not 2-D.
    """
    h = np.maximum(np.asarray(importance, dtype=np.float32), 0.0)
    if h.ndim != 2:
        raise ValueError(f"a heatmap must be 2-D (H, W); got shape {h.shape}")
    if not (math.isfinite(float(sigma)) and float(sigma) >= 0):
        raise ValueError(f"the smoothing sigma must be a number of pixels >= 0; got {sigma!r}")
    if float(sigma) == 0:
        return h
    from scipy.ndimage import gaussian_filter

    return np.maximum(gaussian_filter(h, float(sigma), mode="reflect"), 0.0).astype(np.float32)


def weight_map(importance, keep: float = 0.3, soft: bool = False, power: float = 1.0) -> torch.Tensor:
    """Turn a heatmap into a spatial weight map in [0, 1].

    The rule: positions are ranked by their positive importance (for occlusion, how much hiding
    the window around them lowers the objective), and only positions with a positive value can
    be kept; when fewer than ``ceil(keep * H * W)`` are positive, the mask keeps just those
    (:func:`guide_notes` says so). Zero positions are never kept to fill up the fraction, which
    used to keep a strip along the top of the image in reading order.

    Args:
        importance: (H, W) non-negative importance (NumPy or tensor); negative values count as 0.
        keep: fraction of positions kept, in (0, 1]: the ``ceil(keep * H * W)`` largest positive
            values (ties broken by position). 1 keeps every positive position.
        soft: False: kept positions weigh 1 (the seed's "select the most important pixels").
            True: kept positions weigh (h / max h) ** power, a graded map.
        power: exponent (inverse temperature) of the soft map; > 1 sharpens, < 1 flattens.

    Returns:
        (H, W) float32 tensor with values in [0, 1] and at least one positive value.

    Raises:
        ValueError: keep or power out of range, a map that is not 2-D or not finite, or a map
            with no positive value (nothing to keep; one line saying so).
    """
    h = torch.as_tensor(np.asarray(importance, dtype=np.float32)).clamp_min(0)
    if h.dim() != 2:
        raise ValueError(f"a heatmap must be 2-D (H, W); got shape {tuple(h.shape)}")
    if not torch.isfinite(h).all():
        raise ValueError("the heatmap has non-finite values")
    if isinstance(keep, bool) or not (0.0 < float(keep) <= 1.0):
        raise ValueError(f"keep must be a fraction in (0, 1]; got {keep!r}")
    if not (0.0 < float(power) <= 100.0):
        raise ValueError(f"power must be in (0, 100]; got {power!r}")
    n = h.numel()
    flat = h.flatten()
    positive = int((flat > 0).sum())
    if positive == 0:
        raise ValueError(NO_POSITIVE)
    k = min(positive, max(1, math.ceil(float(keep) * n - 1e-9)))
    # stable: equal values are kept in position order, so the result is deterministic
    order = torch.argsort(flat, descending=True, stable=True)
    kept = torch.zeros(n, dtype=torch.bool)
    kept[order[:k]] = True
    if not soft:
        return kept.float().reshape(h.shape)
    top = float(flat.max())
    if top <= 0:
        raise ValueError("the heatmap is zero everywhere, so a soft map has no weight; use a hard mask (keep)")
    w = (flat / top).pow(float(power)) * kept
    if float(w.sum()) <= 0:
        raise ValueError("the kept positions all have zero importance; raise keep")
    return w.reshape(h.shape)


def load_mask(ref, size: tuple[int, int]) -> torch.Tensor:
    """A user-painted grayscale mask (white = transfer this region's style) as a weight map.

    Args:
        ref: a path or bytes of an image file (any mode; converted to 8-bit gray).
        size: (H, W) of the style image at its working size, pixels.

    Returns:
        (H, W) float32 tensor in [0, 1] (gray / 255, resized with area averaging).

    Raises:
        explorer.io.images.ImageError: not a readable image.
        ValueError: an aspect ratio other than the style image's (more than 5% off), or an
            all-black mask.
    """
    from ..io.images import load_mask_image

    li = load_mask_image(ref, size, role="mask", image="the style image")
    gray = torch.from_numpy(np.asarray(li.image.convert("L"), dtype=np.float32) / 255.0)
    mh, mw = gray.shape
    h, w = size
    out = F.interpolate(gray[None, None], size=(h, w), mode="area")[0, 0] if (mh, mw) != (h, w) else gray
    if float(out.max()) <= 0:
        raise ValueError(f"mask {li.name} is black everywhere: no region is selected")
    return out.clamp(0, 1)


def channel_importance(model: FeatureNet, style: torch.Tensor, layers: Sequence[str],
                       pooling: str = "max") -> dict[str, torch.Tensor]:
    """Per-channel attribution of the style energy over ``layers`` (the ``style``
    :class:`~explorer.saliency.objectives.ObjectiveSpec`, :func:`explorer.optim.losses.style_energy`
    with w_l = 1/L) at each style layer: Captum's LayerGradientXActivation (Shrikumar et al.
    2016's gradient x input at a layer), absolute value summed over positions. Runs on a
    :func:`~explorer.saliency.methods.private_copy` (Captum hooks the layers).

    Args:
        model: the feature network; ``style``: (1, 3, H, W) in [0, 1]; ``layers``: style layers;
        pooling: ``"max"`` or ``"avg"``.

    Returns:
        dict layer -> (N_l,) float32 CPU tensor, >= 0.
    """
    from captum.attr import LayerGradientXActivation

    layers = list(model.check_layers(layers))
    out: dict[str, torch.Tensor] = {}
    x = style.to(model.device, torch.float32)
    for name in layers:
        net = private_copy(model, hooked_layer=name)
        energy = objective_function(net, ObjectiveSpec("style"), layers=layers, pooling=pooling)
        attr = LayerGradientXActivation(energy, net.body[name])
        a = attr.attribute(x.clone().requires_grad_(True))
        out[name] = a.detach().float().abs().sum((0, 2, 3)).cpu()
    return out


def select_channels(importance: dict[str, torch.Tensor], keep: float) -> dict[str, torch.Tensor]:
    """The ``ceil(keep * N_l)`` most important channels of each layer, in ascending index order.

    Raises:
        ValueError: keep outside (0, 1].
    """
    if isinstance(keep, bool) or not 0.0 < float(keep) <= 1.0:
        raise ValueError(f"keep must be a fraction in (0, 1]; got {keep!r}")
    out = {}
    for name, imp in importance.items():
        k = min(len(imp), max(1, math.ceil(float(keep) * len(imp) - 1e-9)))
        top = torch.argsort(imp, descending=True, stable=True)[:k]
        out[name] = torch.sort(top).values
    return out
