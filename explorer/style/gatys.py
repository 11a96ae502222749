"""The Gatys objective: style targets (the one builder of every style target: plain, blended,
saliency-guided and per-region Gram matrices of the style images), the scales that make
the losses relative, and the composed objective ``alpha * content + beta * style + tv``
(Gatys et al. 2016 eq. (7) plus total variation) that :class:`explorer.style.transfer.StyleTransfer`
minimizes. Equation numbers as in :mod:`explorer.optim.losses`.

**Relative losses** (``loss_normalization="relative"``, the default). Eq. (1) grows with the
square and eq. (4) with the fourth power of the activations' magnitude, which differs between
VGG19 files by large factors (the Caffe file's input is about 58x torchvision's, 255 x std, and
its activations are larger by a per-layer factor of that order, estimated, not measured), so a
fixed alpha/beta cannot suit every file. The default therefore divides each term by its
target's magnitude:

* content  L_c = ||F^l - P^l||^2 / ||P^l||^2            (= eq. (1) * 2 / ||P^l||^2)
* style    E_l = ||G^l - A^l||_F^2 / ||A^l||_F^2         (= eq. (4) * 4 N_l^2 M_l^2 / ||A^l||_F^2)

both squared relative errors, unchanged when every activation is scaled by the same factor:
alpha and beta then mean the same for any VGG19 file. ``loss_normalization="paper"`` keeps
eq. (4) and (1) as written.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch

from ..optim import objectives
from ..io.images import resize_long_side, to_tensor
from ..optim.losses import content_loss, guided_gram, region_valid, style_layer_loss, style_loss
from ..core.devices import autocast, resolve_precision, to_memory_format, use_channels_last
from ..nets.models import FeatureNet
from ..optim.objectives import LayerGuide, Objective
from .guides import layer_masks, region_layer_masks
from .settings import StyleSettings

__all__ = ["style_targets", "prepare_images", "term_scales", "gatys_objective", "balance_errors"]


def prepare_images(content, style, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale a content and a style image (PIL, RGB) so each long side is ``size`` pixels and
    return them as tensors (1, 3, H, W) in [0, 1]. Both images share the working size so that
    their features cover comparable scales; each keeps its own aspect ratio."""
    return to_tensor(resize_long_side(content, size)), to_tensor(resize_long_side(style, size))


@torch.no_grad()
def style_targets(model: FeatureNet, styles: Sequence[tuple[torch.Tensor, float]] | torch.Tensor,
                  layers: Iterable[str], *, pooling: str = "max", precision: str = "fp32",
                  weight: torch.Tensor | None = None, regions: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The style representation to match, per layer: the one builder of every style target, each
    a normalized :func:`explorer.optim.losses.guided_gram` of the style image's features F
    (G_w = F diag(w) F^T / sum_k w_k):

    * plain (no guide): w = 1 everywhere, the position-normalized Gram G / M of Gatys et al.
      2016 eq. (3); (N_l, N_l);
    * a weighted blend of several style images: the Gram matrices averaged with the weights
      normalized to sum to 1 (images may have different sizes: each Gram is normalized by its
      own number of positions M); (N_l, N_l);
    * saliency-guided (``weight``): w the weight map area-averaged to each layer
      (:func:`explorer.style.guides.layer_masks`); (N_l, N_l); an all-ones map gives exactly
      the plain target;
    * per region (``regions``): one target per region, G_{l,c}[S] of Luan et al. 2017
      eq. (3a)-(3b) with w the region's style mask at the layer
      (:func:`explorer.style.guides.region_layer_masks`); (R, N_l, N_l). A region whose mask is
      (numerically) empty at a layer (:func:`explorer.optim.losses.region_valid`) gets an
      all-zero target there, which :func:`explorer.optim.losses.region_style_layer_loss` skips.

    Args:
        model: the feature network.
        styles: one style image (1, 3, H, W) in [0, 1], or a list of (image, weight) pairs.
        layers: style layer names.
        pooling, precision: as in :class:`StyleSettings` (the features are computed under that
            precision's autocast; the Gram matrices are float32).
        weight: an (H, W) weight map in [0, 1] at the style image's size (one style image only).
        regions: (R, H, W) region masks of the style image in [0, 1] (one style image only).

    Returns:
        dict layer -> float32 tensor (N_l, N_l), or (R, N_l, N_l) with ``regions``, on the
        model's device: a plain dict, safe to copy or move.

    Raises:
        ValueError: no style image, weights that do not sum to a positive number, a guide with
            more than one style image or with both ``weight`` and ``regions``, or a guide whose
            size is not the style image's; UnknownLayerError: an unknown layer.
    """
    if isinstance(styles, torch.Tensor):
        styles = [(styles, 1.0)]
    styles = list(styles)
    if not styles:
        raise ValueError("at least one style image is needed")
    total = float(sum(w for _, w in styles))
    if not total > 0:
        raise ValueError("style weights must sum to a positive number")
    layers = model.check_layers(layers)
    masks = _guide_masks(model, styles, layers, weight, regions)
    dtype = resolve_precision(precision, model.device)
    out: dict[str, torch.Tensor] = {}
    for img, w in styles:
        x = img.to(model.device, torch.float32)
        with autocast(model.device, dtype):
            feats = model.features(x, layers, pooling=pooling)
        for name in layers:
            if regions is None:
                g = guided_gram(feats[name], None if masks is None else masks[name])[0]
            else:
                f = feats[name].float()
                ok = region_valid(masks[name])
                n = f.shape[1]
                g = torch.zeros(len(ok), n, n, device=f.device, dtype=torch.float32)
                for r in torch.nonzero(ok).flatten().tolist():
                    g[r] = guided_gram(f, masks[name][r])[0]
            g = g * (w / total)
            out[name] = out[name] + g if name in out else g
    return out


def _guide_masks(model: FeatureNet, styles: list, layers: list[str], weight: torch.Tensor | None,
                 regions: torch.Tensor | None) -> dict[str, torch.Tensor] | None:
    """The guide of :func:`style_targets` at every layer: (H_l, W_l) for ``weight``, (R, H_l, W_l)
    for ``regions``, None without a guide. Raises ValueError as :func:`style_targets` says."""
    if weight is None and regions is None:
        return None
    if weight is not None and regions is not None:
        raise ValueError("give a saliency weight map or region masks, not both")
    if len(styles) != 1:
        raise ValueError("guided and per-region style targets take one style image, not a blend")
    style = styles[0][0]
    if not isinstance(style, torch.Tensor) or style.dim() != 4 or style.shape[:2] != (1, 3):
        raise ValueError(f"the style image must have shape (1, 3, H, W); got "
                         f"{tuple(style.shape) if isinstance(style, torch.Tensor) else type(style).__name__}")
    if weight is not None:
        if tuple(weight.shape) != tuple(style.shape[-2:]):
            raise ValueError(f"weight map {tuple(weight.shape)} does not match the style image "
                             f"{tuple(style.shape[-2:])}")
        return layer_masks(weight, model, layers)
    if not isinstance(regions, torch.Tensor) or regions.dim() != 3:
        raise ValueError("style region masks must have shape (R, H, W)")
    if tuple(regions.shape[-2:]) != tuple(style.shape[-2:]):
        raise ValueError(f"style masks are {regions.shape[-1]}x{regions.shape[-2]} px but the style image is "
                         f"{style.shape[-1]}x{style.shape[-2]} px")
    return region_layer_masks(regions.to(model.device), model, layers)


def term_scales(content_target: torch.Tensor, targets: Mapping[str, torch.Tensor], normalization: str,
                batch: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Factors that turn eq. (1) and each E_l of eq. (4) into the relative losses of the module
    docstring (all 1 with ``normalization="paper"``): 2 / ||P||^2 per content image, and
    4 N^2 / ||A||_F^2 per style layer (A position-normalized, as the targets are; for (R, N, N)
    region targets the mean ||A_c||^2 of the non-empty regions).

    Args:
        content_target: P, (1 or B, N, H, W) float32; targets: layer -> (N, N), (B, N, N) or (R, N, N).
        normalization: ``"relative"`` or ``"paper"``; batch: B.

    Returns:
        ((B,) float32 content factors on P's device, factor per style layer).
    """
    dev = content_target.device
    if normalization == "paper":
        return torch.ones(batch, device=dev), {l: 1.0 for l in targets}
    p2 = content_target.flatten(1).pow(2).sum(1).expand(batch)
    content_scale = torch.where(p2 > 0, 2.0 / p2.clamp_min(1e-30), torch.ones_like(p2))
    style_scale = {}
    for name, tg in targets.items():
        sq = tg.float().pow(2).flatten(-2).sum(-1)             # () or (R,)
        sq = sq[sq > 0].mean() if sq.dim() else sq
        n = tg.shape[-1]
        style_scale[name] = float(4.0 * n * n / sq) if float(sq) > 0 else 1.0
    return content_scale, style_scale


def gatys_objective(model: FeatureNet, content: torch.Tensor, settings: StyleSettings,
                    targets: Mapping[str, torch.Tensor], *, alpha: float | torch.Tensor | None = None,
                    beta: float | torch.Tensor | None = None,
                    guides: Mapping[str, LayerGuide] | None = None) -> Objective:
    """The objective of Gatys et al. 2016 eq. (7) plus total variation, composed from
    :mod:`explorer.optim.objectives`: ``alpha * content + beta * style + tv_weight * tv``, each term
    relative or as in the paper per ``settings.loss_normalization`` (:func:`term_scales`).
    Add other terms with ``+`` (e.g. ``lam * objectives.image_term("photo", laplacian_loss)``).

    Args:
        model: the feature network (computes the content target P, in float32).
        content: content images (B, 3, H, W) in [0, 1].
        settings: the run's :class:`StyleSettings` (layers, weights, pooling, normalization).
        targets: per style layer the target Gram, (N, N), (B, N, N) per image, or (R, N, N)
            per region (then with a region :class:`~explorer.optim.objectives.LayerGuide`); empty: no
            style term.
        alpha, beta: weights replacing ``settings.content_weight`` / ``style_weight``, floats
            or (B,) tensors of per-image weights (a sweep's alpha/beta, augmentation's beta).
        guides: per style layer, a :class:`~explorer.optim.objectives.LayerGuide` (channel subset or
            the content image's region masks).

    Raises:
        UnknownLayerError: a layer the network does not have.
    """
    s = settings
    b = content.shape[0]
    channels_last = use_channels_last(s.channels_last, model.device)
    with torch.no_grad():
        x = to_memory_format(content.to(model.device, torch.float32), channels_last)
        p = model.features(x, [s.content_layer], pooling=s.pooling)[s.content_layer].float()
    targets = {k: v.to(model.device) for k, v in targets.items()}
    content_scale, style_scale = term_scales(p, targets, s.loss_normalization, b)
    a = s.content_weight if alpha is None else torch.as_tensor(alpha, dtype=torch.float32).to(model.device)
    bt = s.style_weight if beta is None else torch.as_tensor(beta, dtype=torch.float32).to(model.device)
    for name, w in (("alpha", a), ("beta", bt)):
        if isinstance(w, torch.Tensor) and w.shape != (b,):
            raise ValueError(f"{name} must be a number or a tensor of shape ({b},); got {tuple(w.shape)}")
    obj = a * objectives.content(s.content_layer, p, content_scale)
    if targets:
        obj = obj + bt * objectives.style(targets, s.layer_weights, style_scale, guides)
    if s.tv_weight > 0:
        obj = obj + s.tv_weight * objectives.tv(s.tv_beta)
    return obj


@torch.no_grad()
def balance_errors(model: FeatureNet, image: torch.Tensor, content: torch.Tensor, style: torch.Tensor,
                   settings: StyleSettings | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """How far a finished picture is from its content and from its style, by the plain Gatys loss
    with relative terms (the objective's own functions, :func:`term_scales`, in float32,
    whatever the settings' loss normalization): the content error ||F - P||^2 / ||P||^2 at the
    content layer, and the style error sum_l w_l ||G_l - A_l||_F^2 / ||A_l||_F^2 with Gram
    matrices normalized by the number of positions (Gatys et al. 2016 eq. (1), (4), (5), each
    divided by its target's squared norm). 0 is a perfect match for either; the photo itself
    has content error 0. Used to compare a result with another implementation's picture of the
    same pair (``bench/bench_calibration.py``).

    Args:
        model: the feature network.
        image: pictures to score, (B, 3, H, W) in [0, 1], at the content's size.
        content: the content image (1, 3, H, W) in [0, 1]; style: the style image (1, 3, H', W').
        settings: layers, layer weights w_l and pooling (default :class:`StyleSettings`: relu4_2,
            relu1_1 ... relu5_1 with w_l = 1/5, max pooling).

    Returns:
        (content error, style error), each a (B,) float32 tensor (dimensionless).

    Raises:
        UnknownLayerError: a layer the network does not have.
    """
    s = settings or StyleSettings()
    targets = style_targets(model, style, s.style_layers, pooling=s.pooling, precision="fp32")
    dev = model.device
    p = model.features(content.to(dev, torch.float32), [s.content_layer], pooling=s.pooling)[s.content_layer]
    f = model.features(image.to(dev, torch.float32), [*s.style_layers, s.content_layer], pooling=s.pooling)
    c_scale, st_scale = term_scales(p.float(), targets, "relative", image.shape[0])
    c_err = content_loss(f[s.content_layer], p) * c_scale
    per_layer = {l: style_layer_loss(f[l], targets[l]) * st_scale[l] for l in s.style_layers}
    return c_err, style_loss(per_layer, s.layer_weights)
