"""Gatys et al. neural style transfer: Gram matrices, losses and the optimization loop.

Equation numbers refer to L. A. Gatys, A. S. Ecker, M. Bethge, "Image Style Transfer Using
Convolutional Neural Networks", CVPR 2016, in that paper's own numbering:

* eq. (1)  content loss     L_content = 1/2 sum_ij (F^l_ij - P^l_ij)^2
* eq. (3)  Gram matrix      G^l_ij = sum_k F^l_ik F^l_jk
* eq. (4)  layer style term E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G^l_ij - A^l_ij)^2
* eq. (5)  style loss       L_style = sum_l w_l E_l
* eq. (7)  total loss       L_total = alpha L_content + beta L_style

(eq. (2) and (6) are the gradients of eq. (1) and (4)),

plus the total-variation regularizer R_{V^beta} of Mahendran & Vedaldi, "Understanding Deep
Image Representations by Inverting Them", CVPR 2015, eq. (5), which the seed paper adds with
its own weight.

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

**The image stays in [0, 1] without corrupting L-BFGS.** The optimizer's variable x is
unconstrained and the network sees (and the user gets) clamp(x, 0, 1). The loss is thus one
fixed function of x, so every curvature pair L-BFGS stores is true; clamping x in place after
each step, as before, changed the image behind L-BFGS's back and its memory no longer
described the function. L-BFGS runs with a strong-Wolfe line search, so every accepted step
lowers the loss, whatever the loss's scale: without it, torch's L-BFGS takes a plain gradient
step of length 1 whenever its first curvature pair is rejected, which on losses of 1e16 moved
pixels by 1e14 (see README "Why L-BFGS no longer diverges").

Naming trap: in the original Caffe VGG the blob called ``conv1_1`` is rectified in place, so
the papers' "conv1_1" features are post-ReLU. The defaults here are therefore ``relu1_1 ...
relu5_1`` for style and ``relu4_2`` for content; the pre-ReLU ``conv*`` outputs can be chosen too.

All losses are computed in float32, also when the network runs in bf16/fp16 (autocast).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch

from . import choices
from .devices import autocast, precision_name, resolve_precision
from .memory import check_style_run
from .models import FeatureNet
from .progress import ProgressEvent
from .settings import RecipeSettings, check_choice, check_float, check_int, check_name, check_names

__all__ = [
    "gram_matrix",
    "content_loss",
    "style_layer_loss",
    "style_loss",
    "total_variation",
    "StyleSettings",
    "StyleTransfer",
    "StyleResult",
    "style_targets",
    "prepare_images",
    "run_style_transfer",
    "describe_final_losses",
    "DEFAULT_STYLE_LAYERS",
    "DEFAULT_CONTENT_LAYER",
]

DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_LAYER = "relu4_2"
#: beta of eq. (7) with relative losses and alpha = 1 (calibrated on the real VGG19 against
#: neural-style's published outputs; README "Defaults on real weights"), and the lambda of the
#: photorealism regularizer (relative losses, L_m per pixel) that keeps a photo photographic on
#: the real VGG19 (golden_gate + hoovertowernight, 256 px: 3e4 still shows the style's shapes,
#: 3e5 mostly the content's colours). Defined in :mod:`explorer.choices` (the CLI's help states them).
DEFAULT_STYLE_WEIGHT, DEFAULT_PHOTO_LAMBDA = choices.DEFAULT_STYLE_WEIGHT, choices.DEFAULT_PHOTO_LAMBDA
#: Most loss evaluations the strong-Wolfe line search may spend on one L-BFGS step.
MAX_LINE_SEARCH_EVALS = 20
#: Past loss evaluations L-BFGS can reuse (the point its line search accepted is the next
#: step's starting point).
_EVAL_CACHE = 3
#: Fewest steps a coarse-to-fine scale runs (unless ``steps`` itself is smaller).
MIN_SCALE_STEPS = 10


# ----------------------------------------------------------------------------- the maths

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


# ----------------------------------------------------------------------------- settings

_CHOICES = {
    "optimizer": choices.OPTIMIZERS,
    "loss_normalization": choices.LOSS_NORMALIZATIONS,
    "init": choices.INITS,
    "pooling": choices.POOLINGS,
    "precision": choices.PRECISIONS,
    "channels_last": choices.CHANNELS_LAST,
    "preserve_color": choices.PRESERVE_COLORS,
    "masks": choices.MASK_SOURCES,
}


@dataclass
class StyleSettings(RecipeSettings):
    """Every option of a style transfer run (what a recipe JSON holds).

    Attributes:
        size: working size, the long side in pixels (both images are scaled to it).
        steps: optimizer steps; one step is one forward+backward pass (one L-BFGS iteration).
        optimizer: ``"lbfgs"`` (Gatys et al.) or ``"adam"``.
        lr: learning rate; ``None`` means 1.0 for L-BFGS and 0.02 for Adam (pixels in [0, 1]).
        content_weight: alpha of eq. (7).
        style_weight: beta of eq. (7). With the default relative losses alpha = 1, beta = 80
            gives a balance like the published outputs of neural-style (content readable,
            strokes and palette of the style); the same numbers hold for any VGG19 file.
            With ``loss_normalization="paper"`` the balance depends on the file: the paper's
            alpha/beta = 1e-3 suits the original Caffe VGG19 (activations of about 0-1000),
            torchvision's file needs about 3e-7 (its activations are about 58x smaller; content
            scales with s^2, style with s^4).
        loss_normalization: ``"relative"`` (each term divided by its target's squared norm,
            see the module docstring) or ``"paper"`` (eq. (4) and (1) as written).
        tv_weight: weight of the total-variation regularizer.
        tv_beta: exponent beta of R_{V^beta}.
        content_layer: layer of eq. (1).
        style_layers: layers of eq. (5).
        style_layer_weights: w_l, one per style layer; ``None`` = equal weights 1/L (the paper's 1/5).
        init: start from the content image, white noise, or the style image.
        seed: seeds the noise initialization (and anything random).
        model: network from the registry (VGG19 as in the paper).
        pooling: ``"max"`` or ``"avg"`` (Gatys et al. prefer average pooling for synthesis).
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` for the network's forward pass.
        channels_last: memory format for the network's input: ``"auto"`` (on for CUDA and CPU, off for MPS), on, off.
        preview_every: emit a preview image every this many steps.
        preserve_color: keep the content's colours (Gatys et al. 2017, "Controlling Perceptual
            Factors in Neural Style Transfer", sec. 5): ``"none"``, ``"luminance"`` (transfer
            the luminance only, then put the content's colour channels back) or ``"histogram"``
            (match the style image's colour histogram to the content's first).
        scales: coarse-to-fine: optimize at ``scales`` sizes from ``start_size`` up to ``size``
            (geometric steps), each scale starting from the previous result, upsampled; 1 = a
            single scale; 0 = as many scales as steps of sqrt(2) from ``start_size`` need.
        start_size: the long side of the first scale, pixels (only when ``scales`` != 1).
        scale_steps_ratio: each larger scale runs this fraction of the previous scale's steps
            (``steps`` is the first scale's): 0.5 keeps the work per scale about equal with
            sqrt(2) steps, since a step at twice the pixels costs about twice as much (at least
            ``MIN_SCALE_STEPS`` = 10 steps per scale, or ``steps`` if fewer).
        photo_lambda: weight lambda of the photorealism regularizer of Luan et al. 2017
            ("Deep Photo Style Transfer") eq. (2), built on the content's Matting Laplacian;
            0 = off. With relative losses L_m is divided by the number of pixels (so lambda
            does not depend on the size either; :data:`DEFAULT_PHOTO_LAMBDA` = 1e5 keeps photos
            photographic on the real VGG19); with ``loss_normalization="paper"`` it is eq. (2) as written.
        masks: semantic regions for the augmented style loss of Luan et al. 2017 eq. (3a)-(3b):
            ``"none"``, ``"files"`` (colour-coded mask images, same colour = same region),
            ``"auto"`` (k-means colour segmentation of both images, no weights needed) or
            ``"segmentation"`` (torchvision's DeepLabV3, pretrained weights needed).
        mask_k: number of colour clusters for ``masks="auto"``.
    """

    size: int = 256
    steps: int = 100
    optimizer: str = "lbfgs"
    lr: float | None = None
    content_weight: float = 1.0
    style_weight: float = DEFAULT_STYLE_WEIGHT
    loss_normalization: str = "relative"
    tv_weight: float = 0.0
    tv_beta: float = 2.0
    content_layer: str = DEFAULT_CONTENT_LAYER
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None
    init: str = "content"
    seed: int = 0
    model: str = "vgg19"
    pooling: str = "max"
    precision: str = "auto"
    channels_last: str = "auto"
    preview_every: int = 10
    preserve_color: str = "none"
    scales: int = 1
    start_size: int = 128
    scale_steps_ratio: float = 0.5
    photo_lambda: float = 0.0
    masks: str = "none"
    mask_k: int = 3

    def canonicalize(self) -> None:
        """Bring the accepted spellings to one form (done once, on construction): comma-separated
        text to tuples of names and numbers.

        Raises:
            ValueError: values of the wrong shape (one line).
        """
        from .models import list_layers

        try:
            most = len(list_layers(self.model))
        except (ValueError, TypeError):
            most = None  # an unknown model is reported by validate()
        self.style_layers = check_names("style_layers", self.style_layers, most=most, allow_empty=True)
        self.content_layer = check_name("content_layer", self.content_layer)
        if self.style_layer_weights is not None:
            raw = self.style_layer_weights
            try:
                if isinstance(raw, str):
                    raw = [s for s in raw.split(",") if s.strip()]
                if not isinstance(raw, (list, tuple)) or any(isinstance(w, (bool, list, dict)) for w in raw):
                    raise TypeError
                self.style_layer_weights = tuple(float(w) for w in raw)
            except (TypeError, ValueError):
                raise ValueError(f"style_layer_weights must be numbers separated by commas; got {raw!r}") from None

    def validate(self) -> "StyleSettings":
        """Check types and ranges (changes nothing).

        Raises:
            ValueError: one-line message naming the bad option and what is allowed.
        """
        for key, allowed in _CHOICES.items():
            check_choice(key, getattr(self, key), allowed)
        check_choice("model", self.model, _vgg_models())
        check_int("size", self.size, 32, 4096)
        check_int("steps", self.steps, 1, 100_000)
        check_int("seed", self.seed, 0, 2**63 - 1)
        check_int("preview_every", self.preview_every, 1, 100_000)
        for key in ("content_weight", "style_weight", "tv_weight"):
            check_float(key, getattr(self, key), 0.0)
        check_float("tv_beta", self.tv_beta, 0.5, 10.0)
        check_int("scales", self.scales, 0, 12)
        check_int("start_size", self.start_size, 32, 4096)
        check_float("scale_steps_ratio", self.scale_steps_ratio, 0.0, 1.0, exclusive_min=True)
        check_float("photo_lambda", self.photo_lambda, 0.0)
        check_int("mask_k", self.mask_k, 2, 8)
        if self.scales != 1 and self.start_size >= self.size:
            raise ValueError(f"start_size ({self.start_size} px) must be smaller than size ({self.size} px) "
                             "for coarse-to-fine; or use scales 1")
        if self.lr is not None:
            check_float("lr", self.lr, 0.0, exclusive_min=True)
        if not self.style_layers and self.style_weight > 0:
            raise ValueError("style_layers is empty; name at least one layer or set style_weight to 0")
        if self.style_layer_weights is not None:
            if len(self.style_layer_weights) != len(self.style_layers):
                raise ValueError(f"style_layer_weights has {len(self.style_layer_weights)} values for "
                                 f"{len(self.style_layers)} style layers")
            for w in self.style_layer_weights:
                check_float("style layer weight", w, 0.0)
        return self

    @property
    def layer_weights(self) -> dict[str, float]:
        """w_l per style layer (equal weights 1/L unless given)."""
        if self.style_layer_weights is None:
            return {l: 1.0 / len(self.style_layers) for l in self.style_layers}
        return dict(zip(self.style_layers, self.style_layer_weights))

    @property
    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else (1.0 if self.optimizer == "lbfgs" else 0.02)

    def scale_plan(self) -> list[tuple[int, int]]:
        """The coarse-to-fine schedule: (long side in pixels, steps) per scale, smallest first.

        Sizes grow geometrically from ``start_size`` to ``size`` (``scales`` = 0: as many
        scales as steps of about sqrt(2) need); the first scale runs ``steps`` steps and each
        larger one ``scale_steps_ratio`` times the previous one's, but at least
        :data:`MIN_SCALE_STEPS` (or ``steps``, if fewer): each scale starts a new optimizer, and
        L-BFGS's first steps are short while it builds its curvature estimate."""
        if self.scales == 1:
            return [(self.size, self.steps)]
        n = self.scales or 1 + max(1, round(2 * math.log2(self.size / self.start_size)))
        sizes = [round(self.start_size * (self.size / self.start_size) ** (k / (n - 1))) for k in range(n)]
        plan, steps = [], float(self.steps)
        least = min(self.steps, MIN_SCALE_STEPS)
        for sz in sizes:
            plan.append((sz, max(least, round(steps))))
            steps *= self.scale_steps_ratio
        return plan

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["style_layers"] = list(self.style_layers)
        if self.style_layer_weights is not None:
            d["style_layer_weights"] = list(self.style_layer_weights)
        return d



# ----------------------------------------------------------------------------- targets

def describe_final_losses(row: Mapping, settings: Mapping) -> str:
    """One line that labels every final loss with exactly what it is, for the page and reports:
    the unweighted terms, then the weighted total the optimizer minimized, with its weights.

    Args:
        row: a history row (``content``, ``style``, ``tv``, ``total``, maybe ``photo``).
        settings: :meth:`StyleSettings.to_dict` of the run (alpha, beta, TV weight, lambda).

    Returns:
        e.g. ``"Final losses, unweighted: L_content 0.412, L_style 0.00113, R_V^p 0. Weighted
        total α·L_content + β·L_style + TV = 1·0.412 + 80·0.00113 + 0 = 0.502."``
    """
    a, b = settings.get("content_weight", 1.0), settings.get("style_weight", DEFAULT_STYLE_WEIGHT)
    tv_w, lam = settings.get("tv_weight", 0.0), settings.get("photo_lambda", 0.0)
    names = {"content": "L_content", "style": "L_style", "tv": "R_V^p", "photo": "L_m"}
    raw = ", ".join(f"{names[k]} {row[k]:.4g}" for k in names if k in row)
    terms, values = ["α·L_content", "β·L_style"], [f"{a:g}·{row['content']:.4g}", f"{b:g}·{row['style']:.4g}"]
    if tv_w:
        terms.append("TV weight·R_V^p")
        values.append(f"{tv_w:g}·{row.get('tv', 0.0):.4g}")
    if lam and "photo" in row:
        terms.append("λ·L_m")
        values.append(f"{lam:g}·{row['photo']:.4g}")
    return (f"Final losses, unweighted: {raw}. Weighted total {' + '.join(terms)} = {' + '.join(values)} "
            f"= {row['total']:.4g}.")


def prepare_images(content, style, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale a content and a style image (PIL, RGB) so each long side is ``size`` pixels and
    return them as tensors (1, 3, H, W) in [0, 1]. Both images share the working size so that
    their features cover comparable scales; each keeps its own aspect ratio."""
    from .images import resize_long_side, to_tensor

    return to_tensor(resize_long_side(content, size)), to_tensor(resize_long_side(style, size))


def _vgg_models() -> list[str]:
    """The registered networks style transfer runs on (the VGGs)."""
    from .registry import MODELS

    return [n for n, spec in MODELS.items() if spec.family == "vgg"]


def _use_channels_last(setting: str, device: torch.device) -> bool:
    # measured on a 2-core AVX512 CPU: fp32 0.41 -> 0.32 s/step at 256 px, bf16 unchanged
    return setting == "on" or (setting == "auto" and device.type in ("cuda", "cpu"))


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


# ----------------------------------------------------------------------------- the loop

@dataclass
class StyleResult:
    """What a style transfer run returns.

    Attributes:
        image: the result, (1, 3, H, W), values in [0, 1], CPU float32: the last image whose
            losses were finite (the final image unless the run stopped early).
        history: one dict per step k = 0..steps, the losses of the image after k updates
            (k = 0 is the starting image; the last entry belongs to ``image``): ``step``,
            ``content``, ``style``, ``tv``, ``total`` (unweighted eq. (1), (5), R_V^beta and the
            weighted total of eq. (7) + TV), ``style_layers`` (E_l per layer) and ``seconds``
            (elapsed wall clock).
        snapshots: (step, image) pairs taken every ``preview_every`` steps (and at the
            ``snapshot_steps`` asked for), in step order.
        settings: the settings used.
        weights: ``"imagenet"``, ``"file"`` or ``"untrained"``; ``weights_label`` is the text to show.
        device, precision: where and how the network ran.
        seconds: wall-clock time of the optimization.
        stopped: ``None`` when all steps ran, else a one-line reason (non-finite loss).
    """

    image: torch.Tensor
    history: list[dict]
    snapshots: list[tuple[int, torch.Tensor]]
    settings: StyleSettings
    weights: str
    weights_label: str
    device: str
    precision: str
    channels_last: bool
    seconds: float
    stopped: str | None = None

    @property
    def final_losses(self) -> dict[str, float]:
        """The last finite losses (``content``, ``style``, ``tv``, any regularizer such as
        ``photo``, and ``total``)."""
        if not self.history:
            return {}
        return _main_losses(self.history[-1])

    def report(self) -> dict:
        """JSON-ready run report (the CLI's ``--report`` and the page's settings download)."""
        return {
            "settings": self.settings.to_dict(),
            "weights": self.weights,
            "weights_label": self.weights_label,
            "device": self.device,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "seconds": round(self.seconds, 3),
            "steps_done": self.history[-1]["step"] if self.history else 0,
            "stopped": self.stopped,
            "final_losses": self.final_losses,
            "history": self.history,
        }


class StyleTransfer:
    """One Gatys style transfer run, as an iterable of :class:`ProgressEvent`.

    Usage::

        run = StyleTransfer(model, content, style, settings)
        for event in run:          # a page draws these; the CLI wraps them in tqdm
            ...
        result = run.result()      # also valid after stopping early

    Batches: ``content`` may hold B images of one size, optimized together in one batch through
    the network. Every loss is per image and summed, so with Adam (element-wise) each image
    follows exactly the path it would follow alone; L-BFGS keeps one curvature history for the
    whole batch, so use Adam when batched results must equal single runs.

    Args:
        model: the shared :class:`FeatureNet` (never modified; thread-safe).
        content: content images (B, 3, H, W) in [0, 1] at the working size (B = 1 usually).
        style: style image (1, 3, H', W') in [0, 1], or a list of (image, weight) pairs for
            blending; ignored when ``targets`` is given.
        settings: :class:`StyleSettings`.
        targets: precomputed :func:`style_targets` (the page caches them per image and settings),
            or other Gram targets of the same shapes, e.g. the saliency-guided (masked) Grams of
            :func:`explorer.guided.guided_targets`.
        seeds: one seed per image for the noise initialization (default ``settings.seed`` for
            all); image i starts from ``torch.rand`` under ``manual_seed(seeds[i])``, as a single
            run with ``seed = seeds[i]`` does.
        loss_weights: per-image ``(alpha, beta)`` tensors of shape (B,) replacing
            ``settings.content_weight`` and ``settings.style_weight`` (e.g. a sweep over the
            ratio, or sampled ratios in dataset augmentation).
        style_channels: per style layer, the channel indices (1-D long tensor) whose Gram the
            style loss compares (the channel-selection variant of guided transfer); the target
            for such a layer must be the (K, K) Gram of those channels. ``None``: all channels.
        snapshot_steps: steps k (0..steps) whose image is also kept in ``snapshots`` (and sent
            as a preview), besides every ``preview_every``-th step: e.g. the iteration columns of
            a parameter sweep, taken from one run. ``None``: only the regular ones.
        init_image: (B or 1, 3, H, W) in [0, 1], the starting image instead of ``settings.init``
            (coarse-to-fine runs start each scale from the previous scale's result, upsampled).
        regularizers: extra loss terms, name -> (weight, function of x (B, 3, H, W) in [0, 1]
            returning (B,)), added to the total and recorded under their name (e.g. ``photo``,
            the photorealism regularizer of Luan et al. 2017 eq. (2)).
        region_masks: per style layer, (R, H_l, W_l) masks of the content image's R semantic
            regions at that layer's resolution; the target of such a layer is then (R, N, N),
            one Gram matrix per region, and its style term is the augmented style loss of
            Luan et al. 2017 eq. (3a)-(3b) (:func:`explorer.photo.region_style_layer_loss`).

    Raises:
        UnknownLayerError: a content/style layer the network does not have.
        ValueError: bad image shapes.
    """

    def __init__(self, model: FeatureNet, content: torch.Tensor, style, settings: StyleSettings,
                 targets: dict[str, torch.Tensor] | None = None,
                 style_channels: dict[str, torch.Tensor] | None = None, *,
                 seeds: Sequence[int] | None = None,
                 loss_weights: tuple[torch.Tensor, torch.Tensor] | None = None,
                 snapshot_steps: Iterable[int] | None = None,
                 init_image: torch.Tensor | None = None,
                 regularizers: dict[str, tuple[float, "Callable[[torch.Tensor], torch.Tensor]"]] | None = None,
                 region_masks: dict[str, torch.Tensor] | None = None):
        settings.validate()
        self.snapshot_steps = frozenset(int(k) for k in (snapshot_steps or ()))
        if any(not 0 <= k <= settings.steps for k in self.snapshot_steps):
            raise ValueError(f"snapshot steps must be between 0 and {settings.steps}; "
                             f"got {sorted(self.snapshot_steps)}")
        self.model = model
        self.settings = settings
        self.device = model.device
        self.dtype = resolve_precision(settings.precision, self.device)
        self.channels_last = _use_channels_last(settings.channels_last, self.device)
        model.check_layers([settings.content_layer, *settings.style_layers])
        if content.dim() != 4 or content.shape[1] != 3 or content.shape[0] < 1:
            raise ValueError(f"content images must have shape (B, 3, H, W), got {tuple(content.shape)}")
        check_style_run(model, content, settings, self.dtype)  # MemoryEstimateError before any allocation
        self.content = content.to(self.device, torch.float32)
        b = content.shape[0]
        self.seeds = [settings.seed] * b if seeds is None else [int(v) for v in seeds]
        if len(self.seeds) != b:
            raise ValueError(f"{len(self.seeds)} seeds for {b} content images")
        if loss_weights is None:
            self.alpha, self.beta = settings.content_weight, settings.style_weight
        else:
            self.alpha, self.beta = (torch.as_tensor(w, dtype=torch.float32).to(self.device) for w in loss_weights)
            if self.alpha.shape != (b,) or self.beta.shape != (b,):
                raise ValueError(f"loss_weights must be two tensors of shape ({b},)")
        style_list = [(style, 1.0)] if isinstance(style, torch.Tensor) else list(style or [])
        with torch.no_grad():
            if targets is None and not style_list:
                if settings.style_weight > 0 and settings.style_layers:
                    raise ValueError("a style image is needed (or set the style weight to 0)")
                targets = {}
            # targets are computed once, in float32 whatever the run's precision (cheap, and the
            # bf16 runs then end closer to the fp32 loss)
            if targets is None:
                targets = style_targets(model, style_list, settings.style_layers,
                                        pooling=settings.pooling, precision="fp32")
            p = model.features(self._fmt(self.content), [settings.content_layer], pooling=settings.pooling)
            self.content_target = p[settings.content_layer].float()
        self.targets = {k: v.to(self.device) for k, v in targets.items()}
        self.style_channels = {k: v.to(self.device) for k, v in (style_channels or {}).items()}
        self.regularizers = dict(regularizers or {})
        self.region_masks = {k: v.to(self.device, torch.float32) for k, v in (region_masks or {}).items()}
        if self.region_masks:
            from .photo import region_plan

            self._region_plans = {k: region_plan(v) for k, v in self.region_masks.items()}
        for name in self.region_masks:
            if name in self.targets and self.targets[name].dim() != 3:
                raise ValueError(f"region masks for {name} need one Gram target per region, shape (R, N, N)")
        if init_image is not None:
            if init_image.dim() != 4 or init_image.shape[1] != 3 or init_image.shape[-2:] != content.shape[-2:]:
                raise ValueError(f"the starting image must have shape (B, 3, {content.shape[-2]}, "
                                 f"{content.shape[-1]}); got {tuple(init_image.shape)}")
            self.x = init_image.to(self.device, torch.float32).expand_as(self.content).clone().clamp_(0, 1)
            self.x.requires_grad_(True)
        else:
            self.x = self._initial_image(style_list)
        self.last_good = self.x.detach().clone()
        self.history: list[dict] = []
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self.stopped: str | None = None
        self.seconds = 0.0
        self._layers = [settings.content_layer, *(l for l in settings.style_layers if l in self.targets)]
        self.content_scale, self.style_scale = self._term_scales()
        self.evaluations = 0

    def _term_scales(self) -> tuple[torch.Tensor, dict[str, float]]:
        """Factors that turn eq. (1) and each E_l of eq. (4) into the relative losses of the
        module docstring (all 1 with ``loss_normalization="paper"``): 2 / ||P||^2 per content
        image, and 4 N^2 / ||A||_F^2 per style layer (A position-normalized, as the targets
        are; for (R, N, N) region targets the mean ||A_c||^2 of the non-empty regions)."""
        b = self.content.shape[0]
        if self.settings.loss_normalization == "paper":
            return torch.ones(b, device=self.device), {l: 1.0 for l in self.targets}
        p2 = self.content_target.flatten(1).pow(2).sum(1).expand(b)
        content = torch.where(p2 > 0, 2.0 / p2.clamp_min(1e-30), torch.ones_like(p2))
        style = {}
        for name, t in self.targets.items():
            sq = t.float().pow(2).flatten(-2).sum(-1)             # () or (R,)
            sq = sq[sq > 0].mean() if sq.dim() else sq
            n = t.shape[-1]
            style[name] = float(4.0 * n * n / sq) if float(sq) > 0 else 1.0
        return content, style

    def _fmt(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _initial_image(self, style_list) -> torch.Tensor:
        s = self.settings
        if s.init == "content":
            x = self.content.clone()
        elif s.init == "noise":
            one = (1, *self.content.shape[1:])
            x = torch.cat([torch.rand(one, generator=torch.Generator().manual_seed(seed)) for seed in self.seeds])
            x = x.to(self.device)
        else:
            if not style_list:
                raise ValueError("init 'style' needs a style image")
            x = torch.nn.functional.interpolate(style_list[0][0].to(self.device, torch.float32),
                                                size=self.content.shape[-2:], mode="bilinear",
                                                align_corners=False, antialias=True).clamp(0, 1)
            x = x.expand_as(self.content).clone()
        return x.requires_grad_(True)

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All loss terms of the image clamp(x, 0, 1), for the optimizer's variable x
        (B, 3, H, W) (any values; see the module docstring). Float32 tensors of shape (B,)
        except ``style_layers`` (dict of E_l): ``content`` (L_c), ``style`` (sum_l w_l E_l),
        ``tv`` (R_V^beta), each regularizer's value, all unweighted and relative or as in the
        paper per ``loss_normalization``; ``total`` is alpha L_c + beta L_style + the weighted
        TV and regularizer terms (eq. (7) plus TV)."""
        s = self.settings
        img = x.clamp(0.0, 1.0)
        with autocast(self.device, self.dtype):
            feats = self.model.features(self._fmt(img), self._layers, pooling=s.pooling)
        # losses stay in float32: outside autocast, features cast up first
        c = content_loss(feats[s.content_layer], self.content_target) * self.content_scale
        e = {l: self._style_term(l, feats[l]) * self.style_scale[l] for l in s.style_layers if l in self.targets}
        st = style_loss(e, s.layer_weights) if e else torch.zeros_like(c)
        tv = total_variation(img, s.tv_beta) if s.tv_weight > 0 else torch.zeros_like(c)
        total = self.alpha * c + self.beta * st + s.tv_weight * tv
        extra = {}
        for name, (weight, fn) in self.regularizers.items():
            extra[name] = fn(img).float()
            total = total + weight * extra[name]
        return {"content": c, "style": st, "tv": tv, **extra, "total": total, "style_layers": e}

    def _style_term(self, layer: str, f: torch.Tensor) -> torch.Tensor:
        masks = self.region_masks.get(layer)
        if masks is None:
            return style_layer_loss(self._channels(layer, f), self.targets[layer])
        from .photo import region_style_layer_loss

        return region_style_layer_loss(f, masks, self.targets[layer], plan=self._region_plans[layer])

    def _channels(self, layer: str, f: torch.Tensor) -> torch.Tensor:
        idx = self.style_channels.get(layer)
        return f if idx is None else f.index_select(1, idx)

    def _record(self, step: int, terms: dict, total: float) -> dict:
        h = {
            "step": step,
            "content": float(terms["content"].sum()),
            "style": float(terms["style"].sum()),
            "tv": float(terms["tv"].sum()),
            **{name: float(terms[name].sum()) for name in self.regularizers},
            "total": total,
            "style_layers": {k: float(v.sum()) for k, v in terms["style_layers"].items()},
            "seconds": round(self.seconds, 4),
        }
        if self.content.shape[0] > 1:  # the rows above are sums over the batch
            h["per_image"] = {k: [float(v) for v in terms[k]] for k in ("content", "style", "tv", *self.regularizers, "total")}
        self.history.append(h)
        return h

    def __iter__(self) -> Iterator[ProgressEvent]:
        """Yield one event per step k = 0..steps: the losses of the image after k updates (the
        image itself every ``preview_every`` steps). Each optimizer step evaluates the current
        image (forward + backward) and then updates it, so the losses of image k are known
        during step k + 1; the final image gets one extra forward pass without gradients.

        L-BFGS (with the strong-Wolfe line search) may evaluate a few more points in a step;
        the point it accepts is remembered, so the next step does not evaluate it again.
        ``evaluations`` counts the forward + backward passes."""
        s = self.settings
        x = self.x
        if s.optimizer == "lbfgs":
            opt = torch.optim.LBFGS([x], lr=s.effective_lr, max_iter=1, max_eval=1 + MAX_LINE_SEARCH_EVALS,
                                    history_size=100, line_search_fn="strong_wolfe")
        else:
            opt = torch.optim.Adam([x], lr=s.effective_lr)
        start = time.perf_counter()
        record: dict = {}
        seen: list[tuple[torch.Tensor, float, torch.Tensor | None, dict]] = []  # (x, loss, grad, terms)

        def detached(terms):
            return {k: (v.detach() if isinstance(v, torch.Tensor) else {n: t.detach() for n, t in v.items()})
                    for k, v in terms.items()}

        def closure(backward: bool = True):
            for px, loss, grad, terms in seen:  # the point the line search accepted last step
                if torch.equal(px, x):
                    x.grad = None if grad is None else grad.clone()
                    record["terms"], record["loss"], record["image"] = terms, loss, px
                    return torch.tensor(loss)
            opt.zero_grad(set_to_none=True)
            with torch.set_grad_enabled(backward):
                terms = self.losses(x)
            loss = terms["total"].sum()
            value = float(loss.detach())
            self.evaluations += 1
            if backward and math.isfinite(value):
                loss.backward()
            px = x.detach().clone()
            record["terms"], record["loss"], record["image"] = detached(terms), value, px
            seen.append((px, value, None if x.grad is None else x.grad.detach().clone(), record["terms"]))
            del seen[:-_EVAL_CACHE]
            return loss

        def event(k: int) -> ProgressEvent | None:
            """Record image k's losses (just computed) or stop on a non-finite loss."""
            self.seconds = time.perf_counter() - start
            if not math.isfinite(record["loss"]):
                kind = "NaN" if math.isnan(record["loss"]) else "infinite"
                self.stopped = (f"the loss became {kind} at step {k}; stopped and kept the last finite image "
                                f"({f'step {k - 1}' if k else 'the starting image'}). Try a smaller learning rate or style weight.")
                return ProgressEvent(max(k - 1, 0), s.steps, self.seconds,
                                     _main_losses(self.history[-1]) if self.history else {},
                                     preview=self.last_good.cpu().clone(), message=self.stopped, done=True)
            with torch.no_grad():
                self.last_good.copy_(record["image"].clamp(0.0, 1.0))  # the image these losses belong to
            h = self._record(k, record["terms"], record["loss"])
            preview = None
            wanted = k in self.snapshot_steps
            if k == 0 or k % s.preview_every == 0 or k == s.steps or wanted:
                preview = self.last_good.detach().cpu().clone()
                if k > 0 or wanted:
                    self.snapshots.append((k, preview))
            return ProgressEvent(k, s.steps, self.seconds, _main_losses(h), preview=preview, done=k == s.steps)

        for step in range(1, s.steps + 1):
            if s.optimizer == "lbfgs":
                opt.step(closure)  # max_iter=1: image step-1 (remembered or evaluated), line search, update
            else:
                closure()
                if math.isfinite(record["loss"]):
                    opt.step()
                    with torch.no_grad():
                        x.clamp_(0.0, 1.0)  # Adam keeps no curvature memory: a plain projection
            ev = event(step - 1)
            yield ev
            if self.stopped:
                return
        closure(backward=False)  # the losses of the final image
        yield event(s.steps)

    def result(self) -> StyleResult:
        """The run's result so far (after the loop, or after stopping it early)."""
        return StyleResult(
            image=self.last_good.detach().clamp(0, 1).cpu().clone(),
            history=list(self.history),
            snapshots=list(self.snapshots),
            settings=self.settings,
            weights=self.model.weights.kind,
            weights_label=self.model.weights.label,
            device=str(self.device),
            precision=precision_name(self.dtype),
            channels_last=self.channels_last,
            seconds=self.seconds,
            stopped=self.stopped,
        )


    def results(self) -> list[StyleResult]:
        """One :class:`StyleResult` per content image of the batch, as a single run of that image
        would report it (its own image, losses, snapshots, seed and loss weights)."""
        whole = self.result()
        b = self.content.shape[0]
        if b == 1:
            return [whole]
        out = []
        for i in range(b):
            history = [{**{k: v for k, v in h.items() if k not in ("per_image", "style_layers")},
                        **{k: h["per_image"][k][i] for k in ("content", "style", "tv", "total")}}
                       for h in whole.history]
            changes = {"seed": self.seeds[i]}
            if isinstance(self.alpha, torch.Tensor):
                changes.update(content_weight=float(self.alpha[i]), style_weight=float(self.beta[i]))
            out.append(StyleResult(
                image=whole.image[i:i + 1].clone(), history=history,
                snapshots=[(k, im[i:i + 1].clone()) for k, im in whole.snapshots],
                settings=StyleSettings.from_dict({**self.settings.to_dict(), **changes}),
                weights=whole.weights, weights_label=whole.weights_label, device=whole.device,
                precision=whole.precision, channels_last=whole.channels_last, seconds=whole.seconds,
                stopped=whole.stopped))
        return out


def _main_losses(h: dict) -> dict[str, float]:
    return {k: v for k, v in h.items() if k not in ("step", "style_layers", "seconds", "per_image", "scale", "size")}


def run_style_transfer(model: FeatureNet, content: torch.Tensor, style, settings: StyleSettings,
                       targets: dict[str, torch.Tensor] | None = None,
                       style_channels: dict[str, torch.Tensor] | None = None) -> StyleResult:
    """Run :class:`StyleTransfer` to the end without a front end and return its result."""
    run = StyleTransfer(model, content, style, settings, targets, style_channels)
    for _ in run:
        pass
    return run.result()
