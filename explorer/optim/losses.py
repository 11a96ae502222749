"""The ground floor of the explorer: the losses and the one guided Gram matrix, in plain torch.

Nothing here imports the explorer but :mod:`explorer.core.devices` (README, "Layout"): the
style-transfer loop (:mod:`explorer.style.transfer`), the guided and photorealistic variants, the
objectives (:mod:`explorer.optim.objectives`) and the attribution maps all build on these functions.

Equation numbers refer to L. A. Gatys, A. S. Ecker, M. Bethge, "Image Style Transfer Using
Convolutional Neural Networks", CVPR 2016, in that paper's own numbering:

* eq. (1)  content loss     L_content = 1/2 sum_ij (F^l_ij - P^l_ij)^2
* eq. (3)  Gram matrix      G^l_ij = sum_k F^l_ik F^l_jk
* eq. (4)  layer style term E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G^l_ij - A^l_ij)^2
* eq. (5)  style loss       L_style = sum_l w_l E_l

plus the total-variation regularizer R_{V^beta} of Mahendran & Vedaldi, "Understanding Deep
Image Representations by Inverting Them", CVPR 2015, eq. (5), and the augmented (per-region)
style loss of Luan et al., "Deep Photo Style Transfer", CVPR 2017, eq. (3a)-(3b).

**One guided Gram.** Saliency maps, semantic-region masks and channel selection are all guides
(pystiche's term): :func:`guided_gram` is the Gram matrix under a spatial weight map, and
:func:`guided_style_layer_loss` is the one style term that takes any guide (none; a channel
subset; R region masks with one target each). :func:`style_energy` is eq. (5) against an
all-zero target, the objective the saliency maps explain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..core.devices import no_autocast

__all__ = [
    "gram_matrix",
    "guided_gram",
    "content_loss",
    "style_layer_loss",
    "guided_style_layer_loss",
    "style_loss",
    "style_layer_weights",
    "style_energy",
    "total_variation",
    "region_valid",
    "RegionPlan",
    "region_plan",
    "region_style_layer_loss",
    "EMPTY_REGION_WEIGHT",
]

#: Total weight (in layer positions) below which a region counts as empty at a layer.
EMPTY_REGION_WEIGHT = 1e-6


# ----------------------------------------------------------------------------- Gram matrices and Gatys losses

def gram_matrix(features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Gram matrix, Gatys et al. 2016 eq. (3): G_ij = sum_k F_ik F_jk.

    Args:
        features: activations, shape (B, N, H, W) or (N, H, W); N channels, M = H*W positions.
            Computed in float32 for lower-precision inputs (float64 input stays float64).
        normalize: divide by M (the number of positions), giving the per-position average.
            Eq. (4) with the normalized Gram of both images is exactly eq. (4) as written when
            both images have the same M, and stays comparable when they do not.

    Returns:
        float32 (or float64) tensor of shape (B, N, N) (or (N, N) for unbatched input).
    """
    squeeze = features.dim() == 3
    if squeeze:
        features = features.unsqueeze(0)
    if features.dim() != 4:
        raise ValueError(f"expected features of shape (B, N, H, W), got {tuple(features.shape)}")
    b, n, h, w = features.shape
    g = _Gram.apply(features)
    if normalize:
        g = g / (h * w)
    return g[0] if squeeze else g


def _as_matrix(features: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(B, N, H, W) -> (B, M, N) view for channels_last storage, else (B, N, M) view."""
    b, n, h, w = features.shape
    if features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
        return features.permute(0, 2, 3, 1).reshape(b, h * w, n), True
    return features.reshape(b, n, h * w), False


class _Gram(torch.autograd.Function):
    """G = F F^T in float32 for F of shape (B, N, H, W) of any float dtype.

    The backward, dL/dF = (dG + dG^T) F, is one matrix product (autograd's own takes two) in
    F's dtype: under bf16 autocast the gradient flowing into the network is bf16 anyway, so
    only the Gram matrix itself, which the losses use, needs float32. channels_last features
    are read as (B, M, N) views, without a copy."""

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(features)
        full = features if features.dtype in (torch.float32, torch.float64) else features.float()
        f, cl = _as_matrix(full)
        return torch.bmm(f.transpose(1, 2), f) if cl else torch.bmm(f, f.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad_g: torch.Tensor) -> torch.Tensor:
        (features,) = ctx.saved_tensors
        b, n, h, w = features.shape
        sym = (grad_g + grad_g.transpose(1, 2)).to(features.dtype)
        f, cl = _as_matrix(features)
        if cl:
            return torch.bmm(f, sym).reshape(b, h, w, n).permute(0, 3, 1, 2)
        return torch.bmm(sym, f).reshape(b, n, h, w)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Content loss, Gatys et al. 2016 eq. (1): 1/2 sum_ij (F_ij - P_ij)^2.

    Args:
        features: activations of the generated image at the content layer, (B, N, H, W).
        target: activations of the content image at the same layer, (1 or B, N, H, W).

    Returns:
        float32 tensor of shape (B,): one loss per image in the batch.
    """
    d = features.float() - target.float()
    return 0.5 * d.pow(2).flatten(1).sum(1)


def style_layer_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """One layer's style term, Gatys et al. 2016 eq. (4): 1/(4 N^2 M^2) sum_ij (G_ij - A_ij)^2.

    Written with position-normalized Gram matrices (G/M, A/M), which is the same quantity:
    1/(4 N^2) sum_ij (G_ij/M - A_ij/M)^2.

    Args:
        features: activations of the generated image, (B, N, H, W).
        target_gram: the style image's normalized Gram matrix ``gram_matrix(F_s, normalize=True)``,
            shape (N, N) or (B, N, N), float32.

    Returns:
        float32 tensor of shape (B,).
    """
    g = gram_matrix(features, normalize=True)
    n = g.shape[-1]
    return (g - target_gram).pow(2).flatten(1).sum(1) / (4.0 * n * n)


def guided_style_layer_loss(features: torch.Tensor, target: torch.Tensor, *,
                            channels: torch.Tensor | None = None, masks: torch.Tensor | None = None,
                            valid: torch.Tensor | None = None, plan: "RegionPlan | None" = None) -> torch.Tensor:
    """One layer's style term under any guide: the single code path of plain, channel-selected
    and per-region style transfer.

    * no guide: :func:`style_layer_loss` (Gatys et al. 2016 eq. (4)), ``target`` (N, N) or (B, N, N);
    * ``channels``: eq. (4) on the Gram of those channels only (the channel-selection variant of
      saliency-guided transfer); ``target`` is the (K, K) Gram of the same channels;
    * ``masks``: the augmented style term of Luan et al. 2017 eq. (3a)-(3b),
      :func:`region_style_layer_loss`, ``target`` (R, N, N) (``valid``, ``plan`` as there).

    A saliency-guided target (the style image's :func:`guided_gram` under a saliency map) needs
    no guide on the generated image's side: it is compared by the plain term.

    Args:
        features: (B, N, H_l, W_l) activations of the generated images (any float dtype).

    Returns:
        (B,) float32 tensor, differentiable with respect to ``features``.

    Raises:
        ValueError: shapes that do not match.
    """
    if channels is not None:
        features = features.index_select(1, channels.to(features.device))
    if masks is None:
        return style_layer_loss(features, target)
    return region_style_layer_loss(features, masks, target, valid=valid, plan=plan)


def style_layer_weights(layers: Sequence[str],
                        weights: Sequence[float] | Mapping[str, float] | None = None) -> list[float]:
    """The layer weights w_l of Gatys et al. 2016 eq. (5) as a list aligned with ``layers``:
    the one reading of "w_l per style layer, default 1/L each" that the style energy, its
    objective and the fast occlusion engine share.

    Args:
        layers: the style layer names (L of them).
        weights: ``None`` (1/L each), a sequence of L numbers, or a dict by layer name.

    Returns:
        L floats (as given, not normalized).

    Raises:
        ValueError: no layers, a sequence of another length, or a dict without some layer.
    """
    layers = list(layers)
    if not layers:
        raise ValueError("name at least one style layer")
    if weights is None:
        return [1.0 / len(layers)] * len(layers)
    if isinstance(weights, Mapping):
        try:
            return [float(weights[n]) for n in layers]
        except KeyError as exc:
            raise ValueError(f"no layer weight for style layer {exc.args[0]}") from None
    w = [float(v) for v in weights]
    if len(w) != len(layers):
        raise ValueError(f"{len(w)} layer weights for {len(layers)} style layers")
    return w


def style_energy(features: Mapping[str, torch.Tensor], layers: Sequence[str],
                 weights: Sequence[float] | Mapping[str, float] | None = None) -> torch.Tensor:
    """Style-representation energy E = sum_l w_l ||G_l||_F^2 / (4 N_l^2 M_l^2): the style loss
    eq. (5) of Gatys et al. 2016 that an all-zero style target A_l would give (their eq. (4)
    with A_l = 0), written with the position-normalized Gram g = G/M: sum_l w_l ||g_l||^2 / (4 N_l^2).

    The one definition of the energy that the saliency maps explain: its objective is
    :func:`explorer.optim.objectives.style_energy`, and :func:`explorer.saliency.occlusion.occlusion_fast`
    computes the change of this same sum window by window.

    Args:
        features: activations per layer name, each (B, N_l, H_l, W_l).
        layers: the style layers to sum over; ``weights``: w_l per layer (:func:`style_layer_weights`;
            default 1/L each).

    Returns:
        (B,) float32 tensor.

    Raises:
        ValueError: no layers, weights of another length, or a layer without spatial maps.
    """
    layers = list(layers)
    w = style_layer_weights(layers, weights)
    total = None
    for wl, name in zip(w, layers):
        f = features[name]
        if f.dim() != 4:
            raise ValueError(f"style layer {name} has no spatial maps; pick a convolutional layer")
        g = gram_matrix(f, normalize=True)
        term = wl * g.pow(2).flatten(1).sum(1) / (4.0 * g.shape[-1] ** 2)
        total = term if total is None else total + term
    return total


def style_loss(layer_losses: dict[str, torch.Tensor], layer_weights: dict[str, float]) -> torch.Tensor:
    """Style loss, Gatys et al. 2016 eq. (5): sum_l w_l E_l.

    Args:
        layer_losses: E_l per layer name, each of shape (B,).
        layer_weights: w_l per layer name.
    """
    return sum(layer_weights[name] * e for name, e in layer_losses.items())


def total_variation(image: torch.Tensor, beta: float = 2.0, eps: float = 1e-8) -> torch.Tensor:
    """Total-variation regularizer R_{V^beta}, Mahendran & Vedaldi 2015 eq. (5):
    sum_{i,j} ((x_{i,j+1} - x_{ij})^2 + (x_{i+1,j} - x_{ij})^2)^(beta/2), summed over channels.

    Args:
        image: (B, C, H, W), any range (here pixels in [0, 1]).
        beta: the exponent; 2 gives the plain squared-gradient penalty, beta < 2 keeps edges
            sharper. ``eps`` keeps the gradient finite where the image is flat when beta < 2.

    Returns:
        float32 tensor of shape (B,).
    """
    x = image.float()
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    sq = dx.pow(2) + dy.pow(2)
    if beta == 2.0:
        return sq.flatten(1).sum(1)
    return (sq + eps).pow(beta / 2.0).flatten(1).sum(1)


def guided_gram(features: torch.Tensor, weight: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
    """The one guided Gram matrix: G_w = F diag(w) F^T (normalized: divided by sum_k w_k).

    Every Gram matrix of the explorer is this one: with ``weight=None`` it is the Gram matrix of
    Gatys et al. 2016 eq. (3) (normalized: G / M, as :func:`gram_matrix` with ``normalize``);
    with a saliency weight map it is the saliency-guided Gram of the style image; with a region
    mask it is G_{l,c} of Luan et al. 2017 eq. (3a)-(3b), the Gram of one semantic region.
    Computed as the Gram of F sqrt(w), which keeps the features' memory layout (channels_last
    stays a (B, M, N) view) and has a one-product backward (:func:`gram_matrix`).

    Args:
        features: (B, N, H, W) activations (any float dtype; the Gram is float32).
        weight: ``None`` (every position counts 1), or (H, W) or (B, H, W) weights >= 0 at the
            layer's resolution.
        normalize: divide by the total weight sum_k w_k (M without a weight): the weighted mean
            of f_k f_k^T over positions.

    Returns:
        (B, N, N) float32 tensor.

    Raises:
        ValueError: shapes that do not match, or a weight map that sums to 0 when normalizing.
    """
    if features.dim() != 4:
        raise ValueError(f"expected features of shape (B, N, H, W), got {tuple(features.shape)}")
    if weight is None:
        return gram_matrix(features, normalize=normalize)
    b, n, h, w = features.shape
    wt = weight.to(features.device, torch.float32)
    if wt.shape[-2:] != (h, w):
        raise ValueError(f"weight map {tuple(wt.shape[-2:])} does not match the features' {h}x{w} positions")
    wt = wt.clamp(min=0).reshape(-1, 1, h, w)
    g = gram_matrix(features * wt.sqrt())
    if normalize:
        total = wt.flatten(1).sum(1)
        if bool((total <= 0).any()):
            raise ValueError("the weight map is zero everywhere at this layer")
        g = g / total.reshape(-1, 1, 1)
    return g


# ----------------------------------------------------------------------------- per-region (Luan et al. 2017)

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
    (:func:`guided_gram`), and G_{l,c}[S] the target from
    :func:`explorer.style.gatys.style_targets` with ``regions``. With one all-ones region this is exactly
    :func:`style_layer_loss` against ``gram_matrix(F_s, normalize=True)``
    (Gatys et al. 2016 eq. (4)).

    Region c contributes 0 (and no gradient) when its content mask is empty at this layer
    (:func:`region_valid`), or when it is not valid on the style side: ``valid[c]`` False, or,
    without ``valid``, an all-zero target (how :func:`explorer.style.gatys.style_targets` marks empty style
    regions). No host-device synchronization: safe to call every step on a GPU.

    Args:
        features: (B, N, H_l, W_l) activations of the generated images (any float dtype;
            computed in float32, autocast off).
        masks: (R, H_l, W_l) content-image region masks at this layer
            (:func:`explorer.style.guides.region_layer_masks` of the content masks).
        targets: (R, N, N) float32 style targets of this layer.
        valid: optional (R,) bool, regions whose style target is valid (default: those with a
            target that is not all zero).
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
    dev = features.device
    with no_autocast(dev):
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
            g = guided_gram(features, wts[c].reshape(h, w), normalize=False) / denom[c]  # (B, N, N) float32
            loss = loss + (g - tg[c]).pow(2).flatten(1).sum(1) * scale[c]
    return loss
