"""The Gatys objective: style targets (Gram matrices of the style images), the scales that make
the losses relative, and the composed objective ``alpha * content + beta * style + tv``
(Gatys et al. 2016 eq. (7) plus total variation) that :class:`explorer.style.transfer.StyleTransfer`
minimizes. Equation numbers as in :mod:`explorer.optim.losses`.

**Relative losses** (``loss_normalization="relative"``, the default). Eq. (1) grows with the
square and eq. (4) with the fourth power of the activations' magnitude, which differs between
VGG19 files by large factors (the Caffe file's activations are about 58x torchvision's), so a
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
from ..optim.losses import gram_matrix
from ..core.devices import autocast, resolve_precision, to_memory_format, use_channels_last
from ..nets.models import FeatureNet
from ..optim.objectives import LayerGuide, Objective
from .settings import StyleSettings

__all__ = ["style_targets", "prepare_images", "term_scales", "gatys_objective"]


def prepare_images(content, style, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale a content and a style image (PIL, RGB) so each long side is ``size`` pixels and
    return them as tensors (1, 3, H, W) in [0, 1]. Both images share the working size so that
    their features cover comparable scales; each keeps its own aspect ratio."""
    return to_tensor(resize_long_side(content, size)), to_tensor(resize_long_side(style, size))


@torch.no_grad()
def style_targets(model: FeatureNet, styles: Sequence[tuple[torch.Tensor, float]] | torch.Tensor,
                  layers: Iterable[str], *, pooling: str = "max", precision: str = "fp32") -> dict[str, torch.Tensor]:
    """The style representation to match: per layer, the (blended) position-normalized Gram matrix.

    Args:
        model: the feature network.
        styles: one style image (1, 3, H, W) in [0, 1], or a list of (image, weight) pairs whose
            Gram matrices are averaged with the weights normalized to sum to 1. Images may have
            different sizes: each Gram is normalized by its own number of positions M.
        layers: style layer names.
        pooling, precision: as in :class:`StyleSettings`.

    Returns:
        dict layer -> float32 tensor (N_l, N_l) on the model's device.

    Raises:
        ValueError: no style image, or weights that do not sum to a positive number.
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
    dtype = resolve_precision(precision, model.device)
    out: dict[str, torch.Tensor] = {}
    for img, w in styles:
        x = img.to(model.device, torch.float32)
        with autocast(model.device, dtype):
            feats = model.features(x, layers, pooling=pooling)
        for name in layers:
            g = gram_matrix(feats[name], normalize=True)[0] * (w / total)
            out[name] = out[name] + g if name in out else g
    return out


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
