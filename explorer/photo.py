"""The augmented style loss of Deep Photo Style Transfer (F. Luan, S. Paris, E. Shechtman,
K. Bala, "Deep Photo Style Transfer", CVPR 2017): the style loss matched region by region.

Formula, with the equation numbers used throughout this project (also named, so it can be found
in any version of the paper):

* Augmented style loss, Luan et al. 2017 eq. (3a)-(3b): with R semantic regions whose 0/1 masks
  are M_{l,c}[I] on the content image and M_{l,c}[S] on the style image (resampled to layer l),

      L^l_{s+} = sum_{c=1..R} 1/(4 N_l^2) sum_ij (G_{l,c}[O] - G_{l,c}[S])_ij^2,

  G_{l,c} the Gram matrix of the layer-l features under the region's mask. Here G_{l,c} is the
  *normalized* masked Gram of :func:`explorer.guided.masked_gram`, G_w = F diag(w) F^T / sum(w),
  the weighted mean of f_k f_k^T over the region's positions, and the constant is the
  1/(4 N^2) of Gatys et al. 2016 eq. (4) (:func:`explorer.style.style_layer_loss`), so that a
  single all-ones region gives exactly the plain style term. (Luan et al. write F_{l,c} =
  F_l M_{l,c} and 1/(2 N_{l,c}^2); the constant factors are absorbed in the layer weights, and
  with area-averaged fractional masks diag(w) is the weighted mean where F M would weigh by
  w^2. For 0/1 masks at full resolution the two agree.)

Numbering: Luan et al.'s paper numbers the total loss eq. (1)/(4), the photorealism term eq. (2)
and the augmented style loss eq. (3a)-(3b); the seed project's text calls the last one
"eq. 7-8". It is the same formula as above.

The region masks themselves come from :mod:`explorer.regions`; the Matting Laplacian and the
photorealism regularizer L_m are in :mod:`explorer.matting`.

No Streamlit here; pages and the CLI share this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .matting import no_autocast as _no_autocast

__all__ = [
    "EMPTY_REGION_WEIGHT",
    "RegionPlan",
    "region_plan",
    "RegionTargets",
    "region_layer_masks",
    "region_valid",
    "region_style_targets",
    "region_style_layer_loss",
]

#: A region whose mask weighs less than this at a layer (sum of the area-averaged weights, in
#: layer positions) is empty there: zero target and no loss term (:func:`region_valid`).
EMPTY_REGION_WEIGHT = 1e-6


# ============================================================================= augmented style loss

def region_layer_masks(masks: torch.Tensor, model, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Resample R region masks to every layer's resolution by area averaging
    (``F.adaptive_avg_pool2d``: each layer cell gets the mean of the input pixels it covers),
    all regions at once; :func:`explorer.guided.layer_masks` is the one-map case.

    Args:
        masks: (R, H, W) masks in [0, 1] at the size of the image the network sees.
        model: the :class:`~explorer.models.FeatureNet` (only its architecture is used).
        layers: layer names.

    Returns:
        dict layer -> (R, H_l, W_l) float32 tensor in [0, 1], on ``masks``' device.

    Raises:
        UnknownLayerError: an unknown layer; ValueError: masks not (R, H, W), or a layer
            without spatial maps.
    """
    from .activations import output_shape

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


def region_valid(layer_masks: torch.Tensor) -> torch.Tensor:
    """Which regions are non-empty at a layer, i.e. take part in the augmented style loss of
    Luan et al. 2017 eq. (3a) there.

    Args:
        layer_masks: (R, H_l, W_l) region masks in [0, 1] at the layer's resolution.

    Returns:
        (R,) bool tensor on the masks' device: True where the region's total weight (sum of its
        area-averaged mask, in layer positions) exceeds :data:`EMPTY_REGION_WEIGHT`.

    Raises:
        ValueError: masks that are not (R, H_l, W_l).
    """
    if not isinstance(layer_masks, torch.Tensor) or layer_masks.dim() != 3:
        raise ValueError("layer masks must have shape (R, H_l, W_l)")
    return layer_masks.flatten(1).float().sum(1) > EMPTY_REGION_WEIGHT


class RegionTargets(dict):
    """dict layer -> (R, N_l, N_l) float32 style targets, one normalized masked Gram per region;
    ``valid`` holds, per layer, the (R,) bool of regions with a non-empty style mask there.
    Invalid regions have an all-zero target, which :func:`region_style_layer_loss` skips
    (also when only the plain dict survives, e.g. after ``{l: t.to(dev) for ...}``)."""

    def __init__(self, targets: dict[str, torch.Tensor], valid: dict[str, torch.Tensor]):
        super().__init__(targets)
        self.valid = valid


@torch.no_grad()
def region_style_targets(model, style: torch.Tensor, style_masks: torch.Tensor, layers: Sequence[str],
                         pooling: str = "max") -> RegionTargets:
    """Per region and style layer, the style image's normalized masked Gram matrix
    G_{l,c}[S] of Luan et al. 2017 eq. (3a)-(3b), via :func:`explorer.guided.masked_gram`:
    G_w = F diag(w) F^T / sum_k w_k with w the region's style mask area-averaged to layer l.

    A region whose style mask is (numerically) empty at a layer (:func:`region_valid`) gets an
    all-zero target there; ``result.valid[layer]`` says which regions are valid, and
    :func:`region_style_layer_loss` skips zero targets.

    Args:
        model: the :class:`~explorer.models.FeatureNet`.
        style: (1, 3, H, W) style image in [0, 1].
        style_masks: (R, H, W) region masks of the style image (0/1 or in [0, 1]).
        layers: style layers.
        pooling: ``"max"`` or ``"avg"``, as in :class:`~explorer.style.StyleSettings`.

    Returns:
        :class:`RegionTargets`: dict layer -> (R, N_l, N_l) float32 on the model's device
        (features computed in float32, no autocast).

    Raises:
        ValueError: shapes that do not match; UnknownLayerError.
    """
    from .guided import masked_gram

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
            t[r] = masked_gram(f, masks[name][r])[0]
        targets[name], valid[name] = t, ok
    return RegionTargets(targets, valid)


@dataclass
class RegionPlan:
    """Where each region of one layer is: the positions with a weight > 0 and sqrt(weight)
    there. Built once per run by :func:`region_plan`, so that every step's Gram matrix of a
    region is a product over that region's positions only (together about one full Gram
    matrix per layer instead of one per region), with no host-device synchronization.

    Attributes:
        index: per region, a 1-D long tensor of flattened positions (y * W_l + x).
        root: per region, sqrt(w) at those positions, 1-D float32.
    """

    index: list[torch.Tensor]
    root: list[torch.Tensor]


def region_plan(masks: torch.Tensor) -> RegionPlan:
    """The :class:`RegionPlan` of (R, H_l, W_l) region masks in [0, 1] at one layer (one host
    synchronization per region; call it once, not every step)."""
    if masks.dim() != 3:
        raise ValueError(f"expected region masks of shape (R, H_l, W_l); got {tuple(masks.shape)}")
    flat = masks.float().clamp(min=0).flatten(1)
    index = [torch.nonzero(row > 0).flatten() for row in flat]
    return RegionPlan(index=index, root=[row[i].sqrt() for row, i in zip(flat, index)])


def region_style_layer_loss(features: torch.Tensor, masks: torch.Tensor, targets: torch.Tensor,
                            valid: torch.Tensor | None = None, plan: RegionPlan | None = None) -> torch.Tensor:
    """One layer's augmented style term, Luan et al. 2017 eq. (3a)-(3b):

        L^l_{s+} = sum_{c=1..R} 1/(4 N^2) sum_ij (G_{l,c}[O] - G_{l,c}[S])_ij^2,

    with G_{l,c}[O] = F diag(w_c) F^T / sum_k w_{c,k} the normalized masked Gram of the
    generated image's features under the *content* image's region-c mask w_c at this layer
    (:func:`explorer.guided.masked_gram`'s formula), and G_{l,c}[S] the target from
    :func:`region_style_targets`. With one all-ones region this is exactly
    :func:`explorer.style.style_layer_loss` against ``gram_matrix(F_s, normalize=True)``
    (Gatys et al. 2016 eq. (4)).

    Region c contributes 0 (and no gradient) when its content mask is empty at this layer
    (:func:`region_valid`), or when it is not valid on the style side: ``valid[c]`` False, or,
    without ``valid``, an all-zero target (how :func:`region_style_targets` marks empty style
    regions). No host-device synchronization: safe to call every step on a GPU.

    Args:
        features: (B, N, H_l, W_l) activations of the generated images (any float dtype;
            computed in float32, autocast off).
        masks: (R, H_l, W_l) content-image region masks at this layer
            (:func:`region_layer_masks` of :attr:`RegionMasks.content`).
        targets: (R, N, N) float32 style targets of this layer.
        valid: optional (R,) bool, regions whose style target is valid
            (``RegionTargets.valid[layer]``).
        plan: :func:`region_plan` of ``masks``: the same value, computed over each region's
            positions only (faster when regions are many or small).

    Returns:
        (B,) float32 tensor, differentiable with respect to ``features``.

    Raises:
        ValueError: shapes that do not match.
    """
    if features.dim() != 4:
        raise ValueError(f"expected features of shape (B, N, H, W); got {tuple(features.shape)}")
    b, n, h, w = features.shape
    if masks.dim() != 3 or tuple(masks.shape[-2:]) != (h, w):
        raise ValueError(f"region masks {tuple(masks.shape)} do not match the features' {h}x{w} positions "
                         "(expected (R, H_l, W_l))")
    r = masks.shape[0]
    if targets.dim() != 3 or tuple(targets.shape) != (r, n, n):
        raise ValueError(f"expected {r} region targets of shape ({r}, {n}, {n}); got {tuple(targets.shape)}")
    from .style import gram_matrix

    dev = features.device
    with _no_autocast(dev):
        wts = masks.to(dev, torch.float32).clamp(min=0).reshape(r, h * w)
        tg = targets.to(dev, torch.float32)
        total = wts.sum(1)                                                   # (R,)
        ok = total > EMPTY_REGION_WEIGHT
        if valid is not None:
            ok = ok & valid.to(dev, torch.bool).reshape(r)
        else:
            ok = ok & (tg.flatten(1).abs().amax(1) > 0)
        denom = torch.where(ok, total, torch.ones_like(total))
        scale = ok.float() / (4.0 * n * n)
        loss = torch.zeros(b, device=dev, dtype=torch.float32)
        if plan is not None:
            if len(plan.index) != r:
                raise ValueError(f"the region plan has {len(plan.index)} regions for {r} masks")
            # (B, M, N) view of the features: a plain view for channels_last storage
            if features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
                fm = features.permute(0, 2, 3, 1).reshape(b, h * w, n)
            else:
                fm = features.reshape(b, n, h * w).transpose(1, 2)
            for c in range(r):
                x = fm.index_select(1, plan.index[c].to(dev)).float() * plan.root[c].to(dev)[:, None]
                g = torch.bmm(x.transpose(1, 2), x) / denom[c]                   # (B, N, N) float32
                loss = loss + (g - tg[c]).pow(2).flatten(1).sum(1) * scale[c]
            return loss
        for c in range(r):
            # F diag(w) F^T = (F sqrt(w)) (F sqrt(w))^T: the Gram of the weighted features keeps their
            # memory layout (channels_last stays a (B, M, N) view) and has a one-product backward
            root = wts[c].sqrt().reshape(1, 1, h, w)
            g = gram_matrix(features * root) / denom[c]                      # (B, N, N) float32
            loss = loss + (g - tg[c]).pow(2).flatten(1).sum(1) * scale[c]
    return loss
