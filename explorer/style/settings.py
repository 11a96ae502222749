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
from ..core.settings import RecipeSettings, check_float, check_name, setting

__all__ = ["StyleSettings", "describe_final_losses", "describe_scale_plan", "DEFAULT_STYLE_LAYERS", "DEFAULT_CONTENT_LAYER",
           "DEFAULT_STYLE_WEIGHT", "DEFAULT_PHOTO_LAMBDA", "MIN_SCALE_STEPS", "REFERENCE_STEP_SECONDS",
           "step_units", "estimate_seconds"]

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


def _layer_count(s: "StyleSettings") -> int | None:
    """How many layers the settings' network has (None for an unknown one: validate() names it)."""
    from ..nets.models import list_layers

    try:
        return len(list_layers(s.model))
    except (ValueError, TypeError, KeyError):
        return None


# ----------------------------------------------------------------------------- settings


@dataclass
class StyleSettings(RecipeSettings):
    """Every option of a style transfer run (what a recipe JSON holds).

    Attributes:
        size: working size, the long side in pixels (both images are scaled to it).
        steps: optimizer steps; one step is one forward+backward pass (one L-BFGS iteration).
        optimizer: ``"lbfgs"`` (Gatys et al.) or ``"adam"``.
        lr: learning rate; ``None`` means 1.0 for L-BFGS and 0.02 for Adam (pixels in [0, 1]).
        content_weight: alpha of eq. (7).
        style_weight: beta of eq. (7). With the default relative losses alpha = 1, beta = 40
            (:data:`DEFAULT_STYLE_WEIGHT`) gives a balance like the published outputs of
            neural-style: on their six pairs at 256 px the median content error is at most 1.2x
            theirs and the median style error below theirs (``bench/bench_calibration.py``); the
            same numbers hold for any VGG19 file.
            With ``loss_normalization="paper"`` the balance depends on the file: the paper's
            alpha/beta = 1e-3 suits the original Caffe VGG19 (activations of about 0-1000),
            torchvision's file needs about 3e-7 (an estimate: its input is 58x smaller, 255 x std,
            and its activations are taken to be too, though each layer's ratio differs; content
            scales with s^2, style with s^4). The 1e-3 is the paper's number for its *normalized*
            VGG19 (each filter's mean activation 1), offered as ``load_model`` on the file
            :mod:`explorer.nets.normalize` writes (``--normalized``); on the unnormalized Caffe file
            relu4_1 carries over 98 % of the paper-scale style loss.
        loss_normalization: ``"relative"`` (each term divided by its target's squared norm,
            see the module docstring) or ``"paper"`` (eq. (4) and (1) as written).
        tv_weight: weight of the total-variation regularizer.
        tv_beta: exponent p of R_{V^p} (Mahendran & Vedaldi 2015 call it beta).
        content_layer: layer of eq. (1).
        style_layers: layers of eq. (5).
        style_layer_weights: w_l, one per style layer; ``None`` = equal weights 1/L (the paper's 1/5).
        init: the starting image: ``"histogram"`` (the content image with each colour channel's
            histogram matched to the style's, :func:`explorer.style.color.histogram_start`: the
            content's layout in the style's palette; the default), ``"content"``, ``"noise"``
            (white noise) or ``"style"``.
        noise_scale: the ``"noise"`` start's amplitude: uniform white noise on
            [0.5 - noise_scale/2, 0.5 + noise_scale/2] (1, the default: uniform on [0, 1]; small
            values start near mid-grey, as neural-style's random start, Gaussian noise of
            standard deviation 0.001 on Caffe's 0-255 scale, does). In (0, 1].
        seed: seeds the noise initialization (and anything random).
        model: network from the registry (VGG19 as in the paper).
        pooling: ``"max"`` or ``"avg"`` (Gatys et al. prefer average pooling for synthesis).
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` for the network's forward pass.
        channels_last: memory format for the network's input: ``"auto"`` (on for CUDA and CPU, off for MPS), on, off.
        parameterization: what the optimizer changes: ``"fourier"``, an offset to the start
            image whose spectrum is scaled by 1/f^0.5 (Olah et al. 2017 and Lucid use 1/f; 0.5
            is this project's tuned exponent,
            :data:`explorer.optim.parameterizations.STYLE_FOURIER_DECAY`;
            :class:`explorer.optim.parameterizations.OffsetImage`), with which L-BFGS needs fewer
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
            the luminance only, then put the content's colour channels back), ``"histogram"``
            (first recolour the style image so that each RGB channel's histogram is the
            content's) or ``"linear"`` (first recolour the style image so that its RGB mean and
            covariance are the content's, x' = A x + b, sec. 5.2; A from symmetric matrix square
            roots, :func:`explorer.style.color.linear_color_transform`).
        scales: coarse-to-fine (Gatys et al. 2017): optimize at ``scales`` sizes from
            ``start_size`` up to ``size`` (geometric steps of r = (size / start_size)^(1/(scales-1)),
            :meth:`scale_ratio`), each scale starting from the previous result, upsampled; 1 = a
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

    size: int = setting(256, lo=32, hi=4096)
    steps: int = setting(100, lo=1, hi=100_000)
    optimizer: str = setting("lbfgs", choices=choices.OPTIMIZERS)
    lr: float | None = setting(None, lo=0.0, exclusive_min=True, optional=True)
    content_weight: float = setting(1.0, lo=0.0)
    style_weight: float = setting(DEFAULT_STYLE_WEIGHT, lo=0.0)
    loss_normalization: str = setting("relative", choices=choices.LOSS_NORMALIZATIONS)
    tv_weight: float = setting(0.0, lo=0.0)
    tv_beta: float = setting(2.0, lo=0.5, hi=10.0)
    content_layer: str = DEFAULT_CONTENT_LAYER
    style_layers: tuple[str, ...] = setting(DEFAULT_STYLE_LAYERS, names=True, allow_empty=True, most=_layer_count)
    style_layer_weights: tuple[float, ...] | None = setting(None, numbers=float, optional=True)
    init: str = setting("histogram", choices=choices.INITS)
    noise_scale: float = setting(1.0, lo=0.0, hi=1.0, exclusive_min=True)
    seed: int = setting(0, lo=0, hi=2**63 - 1)
    model: str = setting("vgg19", choices=_vgg_models)
    pooling: str = setting("max", choices=choices.POOLINGS)
    precision: str = setting("auto", choices=choices.PRECISIONS)
    channels_last: str = setting("auto", choices=choices.CHANNELS_LAST)
    parameterization: str = setting("auto", choices=choices.STYLE_PARAMETERIZATIONS)
    conv_algorithm: str = setting("auto", choices=choices.CONV_ALGORITHMS)
    preview_every: int = setting(10, lo=1, hi=100_000)
    preserve_color: str = setting("none", choices=choices.PRESERVE_COLORS)
    scales: int = setting(1, lo=0, hi=12)
    start_size: int = setting(128, lo=32, hi=4096)
    scale_steps_ratio: float = setting(0.5, lo=0.0, hi=1.0, exclusive_min=True)
    photo_lambda: float = setting(0.0, lo=0.0)
    masks: str = setting("none", choices=choices.MASK_SOURCES)
    mask_k: int = setting(3, lo=2, hi=8)

    def canonicalize(self) -> None:
        """The content layer's name without surrounding spaces (the lists are the base class's)."""
        self.content_layer = check_name("content_layer", self.content_layer)

    def validate(self) -> "StyleSettings":
        """Check every field's rule (:func:`~explorer.core.settings.setting`) and the rules
        between fields (changes nothing).

        Raises:
            ValueError: one-line message naming the bad option and what is allowed.
        """
        super().validate()
        if self.scales != 1 and self.start_size >= self.size:
            raise ValueError(f"start_size ({self.start_size} px) must be smaller than size ({self.size} px) "
                             "for coarse-to-fine; or use scales 1")
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

    def scale_ratio(self) -> float:
        """The factor r between consecutive coarse-to-fine sizes before rounding:
        r = (size / start_size)^(1 / (n - 1)) for the n scales of :meth:`scale_plan`
        (coarse-to-fine after Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style
        Transfer"); 1.0 with a single scale."""
        n = len(self.scale_plan())
        return 1.0 if n == 1 else (self.size / self.start_size) ** (1 / (n - 1))

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
        total α·L_content + β·L_style + TV = 1·0.412 + 40·0.00113 + 0 = 0.457."``
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


def describe_scale_plan(settings: StyleSettings) -> str:
    """One line that states a coarse-to-fine schedule exactly as :meth:`StyleSettings.scale_plan`
    makes it, e.g. ``"Scales: 128 → 181 → 256 px, each the previous times r = (256/128)^(1/2) =
    1.414 (rounded to whole pixels); steps 100 → 50 → 25."``"""
    plan = settings.scale_plan()
    n = len(plan)
    sizes = " → ".join(str(sz) for sz, _ in plan)
    steps = " → ".join(str(k) for _, k in plan)
    if n == 1:
        return f"One scale: {sizes} px, {steps} steps."
    return (f"Scales: {sizes} px, each the previous times r = ({settings.size}/{settings.start_size})^(1/{n - 1}) "
            f"= {settings.scale_ratio():.3f} (rounded to whole pixels); steps {steps}.")


#: Seconds per optimizer step at 256 px (long side) for the default run (VGG19, L-BFGS, fp32),
#: measured on this project's CPU, an AMD EPYC (Zen 3, AVX2 only) with 2 cores shared with other
#: work: chelsea + immunohistochemistry (256 x 170 px) on the real Caffe VGG19, 1.0 s per step at a
#: load average of 2.5 (the 20 steps between a 5-step and a 25-step run) and 4.3 s over 6 steps at
#: a load average of 24. A GPU is far faster; after one run the page uses that run's own time instead.
REFERENCE_STEP_SECONDS = (1.0, 4.3)


def step_units(settings: StyleSettings) -> float:
    """A run's work in units of one optimizer step at 256 px: the sum over the coarse-to-fine
    plan (:meth:`StyleSettings.scale_plan`) of steps x (long side / 256 px)² (first order: a
    step's cost grows with the pixels; its fixed part is ignored)."""
    return sum(steps * (size / 256.0) ** 2 for size, steps in settings.scale_plan())


def estimate_seconds(settings: StyleSettings, measured: Mapping | None = None) -> tuple[float, float, str]:
    """Seconds ``settings`` will take: (low, high, basis).

    Args:
        measured: a finished run of this session, ``{"settings": StyleSettings.to_dict(),
            "seconds": s}`` (same network): then both ends are its seconds per step unit times
            :func:`step_units` of ``settings``, basis ``"measured"``. Otherwise
            :func:`step_units` times :data:`REFERENCE_STEP_SECONDS`, basis ``"reference"``.
    """
    work = step_units(settings)
    try:
        done = step_units(StyleSettings.from_dict(measured["settings"]))
        if float(measured["seconds"]) > 0 and done > 0 and measured["settings"].get("model") == settings.model:
            per = float(measured["seconds"]) / done
            return per * work, per * work, "measured"
    except (KeyError, TypeError, ValueError):
        pass
    return work * REFERENCE_STEP_SECONDS[0], work * REFERENCE_STEP_SECONDS[1], "reference"
