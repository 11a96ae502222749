"""The settings of a Gatys style transfer (what a recipe JSON holds) and how its final losses
are described: :class:`StyleSettings`, the default layers and weights, :func:`describe_final_losses`.

The weights mean relative losses by default (``loss_normalization="relative"``; see
:mod:`explorer.style.gatys`): alpha = 1 and beta = :data:`DEFAULT_STYLE_WEIGHT` suit any VGG19 file.
Equation numbers refer to Gatys et al., CVPR 2016 (see :mod:`explorer.optim.losses`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

from ..core import choices
from ..nets.registry import MODELS
from ..core.settings import RecipeSettings, check_choice, check_float, check_int, check_name, check_names

__all__ = ["StyleSettings", "describe_final_losses", "DEFAULT_STYLE_LAYERS", "DEFAULT_CONTENT_LAYER",
           "DEFAULT_STYLE_WEIGHT", "DEFAULT_PHOTO_LAMBDA", "MIN_SCALE_STEPS"]

#: The default network's style and content layers, read from the registry (``ModelSpec.style_layers``
#: and ``content_layer``: Gatys et al.'s relu1_1 ... relu5_1 and relu4_2, the same names on both VGGs).
DEFAULT_STYLE_LAYERS = MODELS[choices.STYLE_MODELS[0]].style_layers
DEFAULT_CONTENT_LAYER: str = MODELS[choices.STYLE_MODELS[0]].content_layer
#: beta of eq. (7) with relative losses and alpha = 1 (calibrated on the real VGG19 against
#: neural-style's published outputs; README "Defaults on real weights"), and the lambda of the
#: photorealism regularizer (relative losses, L_m per pixel) that keeps a photo photographic on
#: the real VGG19 (golden_gate + hoovertowernight, 256 px: 3e4 still shows the style's shapes,
#: 3e5 mostly the content's colours). Defined in :mod:`explorer.core.choices` (the CLI's help states them).
DEFAULT_STYLE_WEIGHT, DEFAULT_PHOTO_LAMBDA = choices.DEFAULT_STYLE_WEIGHT, choices.DEFAULT_PHOTO_LAMBDA
#: Fewest steps a coarse-to-fine scale runs (unless ``steps`` itself is smaller).
MIN_SCALE_STEPS = 10


def _vgg_models() -> list[str]:
    """The registered networks style transfer runs on (those with a content layer: the VGGs)."""
    return [n for n, spec in MODELS.items() if spec.supports_style]



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
    "parameterization": choices.STYLE_PARAMETERIZATIONS,
    "conv_algorithm": choices.CONV_ALGORITHMS,
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
        init: the starting image: ``"histogram"`` (the content image with each colour channel's
            histogram matched to the style's, :func:`explorer.style.color.histogram_start`: the
            content's layout in the style's palette; the default), ``"content"``, ``"noise"``
            (white noise) or ``"style"``.
        seed: seeds the noise initialization (and anything random).
        model: network from the registry (VGG19 as in the paper).
        pooling: ``"max"`` or ``"avg"`` (Gatys et al. prefer average pooling for synthesis).
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` for the network's forward pass.
        channels_last: memory format for the network's input: ``"auto"`` (on for CUDA and CPU, off for MPS), on, off.
        parameterization: what the optimizer changes: ``"fourier"``, an offset to the start
            image whose spectrum is scaled by 1/f^0.5
            (:class:`explorer.optim.parameterizations.OffsetImage`), with which L-BFGS needs fewer
            steps to a given loss; ``"pixel"``, the pixels themselves, as Gatys et al.; or
            ``"auto"`` (the default): Fourier with L-BFGS, pixels with Adam (whose fixed
            per-coefficient step moved the Fourier offset's broad frequencies so far that
            content was lost; bench/README.md, ``bench_augment.py --real``). See
            :attr:`image_parameterization`.
        conv_algorithm: float32 3x3 convolutions on the CPU (:mod:`explorer.nets.winograd`):
            ``"auto"`` (Winograd where it is timed faster for the shape, else torch's own),
            ``"direct"`` (torch's own) or ``"winograd"``. No effect on GPUs or in bf16.
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
    init: str = "histogram"
    seed: int = 0
    model: str = "vgg19"
    pooling: str = "max"
    precision: str = "auto"
    channels_last: str = "auto"
    parameterization: str = "auto"
    conv_algorithm: str = "auto"
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
        from ..nets.models import list_layers

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
    def image_parameterization(self) -> str:
        """``"fourier"`` or ``"pixel"``: ``parameterization`` with ``"auto"`` resolved by the optimizer."""
        if self.parameterization != "auto":
            return self.parameterization
        return "fourier" if self.optimizer == "lbfgs" else "pixel"

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

    @classmethod
    def from_dict(cls, d: dict) -> "StyleSettings":
        """Build from a dict such as a recipe's ``settings`` (see
        :meth:`~explorer.core.settings.RecipeSettings.from_dict`). A complete settings dict written
        before ``parameterization`` and ``conv_algorithm`` existed (it has ``channels_last``
        but not them) replays as it ran then: pixels and torch's own convolutions.

        Raises:
            ValueError: not a JSON object, unknown keys, or bad values.
        """
        if isinstance(d, dict) and "channels_last" in d:
            d = {"parameterization": "pixel", "conv_algorithm": "direct", **d}
        return super().from_dict(d)

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["style_layers"] = list(self.style_layers)
        if self.style_layer_weights is not None:
            d["style_layer_weights"] = list(self.style_layer_weights)
        return d



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
