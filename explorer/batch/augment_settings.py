"""The settings of a dataset augmentation (:class:`AugmentSettings`): what a recipe's ``settings``
hold, every option checked in one place, ranges accepted as ``N``, ``"LO,HI"`` or (LO, HI), the
:class:`~explorer.style.settings.StyleSettings` each batch runs with
(:meth:`AugmentSettings.style_settings`), and older recipes read as they ran
(:meth:`AugmentSettings.from_dict`).

What is drawn from these ranges for each output is :mod:`explorer.batch.augment_plan`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..core import choices
from ..core.settings import RecipeSettings, setting
from ..style.settings import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, StyleSettings

__all__ = [
    "TRADITIONAL_OPS",
    "AugmentSettings",
]

#: Traditional augmentation operations, in the order they are applied.
TRADITIONAL_OPS = ("flip", "crop", "jitter")

_MAX_STYLES = 6


@dataclass
class AugmentSettings(RecipeSettings):
    """Every option of an augmentation run (what a recipe's ``settings`` holds).

    Ranges are (LO, HI) pairs; a single number or ``"LO,HI"`` text is accepted too.

    Attributes:
        variants: stylized outputs per input image.
        batch_size: content images optimized together in one batch (same working shape and steps).
        steps: Adam steps, or a range sampled per output (grid of 10 from LO, HI included); 20 from
            the histogram start stylize as much as 50 from the content did (``bench_augment.py --real``).
        size: working size (long side, px), or a range sampled per output (grid of 32 from LO).
        beta_range: the style weight beta (alpha = 1), sampled log-uniformly per output
            (relative losses, see :mod:`explorer.style.transfer`). The default (30, 200) brackets
            StyleSettings' beta of 40, for any VGG19 file. Called ``ratio_range`` before; that
            key of an older recipe is still read (:func:`explorer.core.recipes.migrate`).
        blend: style images per output (1 = one style chosen per output; K > 1 = a blend of K
            distinct styles).
        weight_range: range of each blend weight before normalization (ignored for blend 1).
        traditional: ops from :data:`TRADITIONAL_OPS` (``"flip,crop"``, ``"none"`` or a tuple; text
            in any case), kept in that order; empty = none.
        traditional_at: ``"before"`` or ``"after"`` stylization.
        seed: the run's seed; every output's draws derive from it, its source path and variant.
        lr: Adam learning rate (None = 0.02).
        init: ``"histogram"`` (the default: the content image in its style's colours),
            ``"content"`` or ``"noise"`` (seeded per output).
        parameterization, tv_weight, content_layer, style_layers, model, pooling, precision,
            channels_last: as in :class:`explorer.style.settings.StyleSettings`.
    """

    variants: int = setting(1, lo=1, hi=10_000)
    batch_size: int = setting(4, lo=1, hi=1024)
    steps: tuple[int, int] = setting((20, 20), pair=int, lo=1, hi=100_000)
    size: tuple[int, int] = setting((128, 128), pair=int, lo=32, hi=4096)
    beta_range: tuple[float, float] = setting((30.0, 200.0), pair=float, lo=0.0, hi=1e30, exclusive_min=True,
                                              label="beta")  # beta is a float32
    blend: int = setting(1, lo=1, hi=_MAX_STYLES)
    weight_range: tuple[float, float] = setting((0.2, 1.0), pair=float, lo=0.0, label="blend weight")
    traditional: tuple[str, ...] = setting((), names=True, choices=TRADITIONAL_OPS, label="traditional augmentation")
    traditional_at: str = setting("before", choices=("before", "after"))
    seed: int = 0
    lr: float | None = None
    init: str = setting("histogram", choices=choices.AUGMENT_INITS)
    parameterization: str = "auto"
    tv_weight: float = 0.0
    content_layer: str = DEFAULT_CONTENT_LAYER
    style_layers: tuple[str, ...] = setting(DEFAULT_STYLE_LAYERS, names=True, allow_empty=True)
    model: str = "vgg19"
    pooling: str = "max"
    precision: str = "auto"
    channels_last: str = "auto"

    def validate(self) -> "AugmentSettings":
        """Check every option (changes nothing); the style options through :meth:`style_settings`.

        Raises:
            ValueError: one line naming the bad option and what is allowed.
        """
        super().validate()
        if self.weight_range[1] < 0.001:
            raise ValueError(f"the blend weight range must reach at least 0.001; got {self.weight_range}")
        self.style_settings(self.steps[0], self.size[0])  # checks the style options
        return self

    def style_settings(self, steps: int, size: int) -> StyleSettings:
        """The :class:`StyleSettings` of one batch (Adam; alpha and beta are set per image)."""
        return StyleSettings(size=size, steps=steps, optimizer="adam", lr=self.lr, content_weight=1.0,
                             style_weight=1.0, tv_weight=self.tv_weight, content_layer=self.content_layer,
                             style_layers=self.style_layers, init=self.init, seed=0, model=self.model,
                             parameterization=self.parameterization, pooling=self.pooling, precision=self.precision,
                             channels_last=self.channels_last, preview_every=max(1, steps))

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        for k in ("steps", "size", "beta_range", "weight_range", "traditional", "style_layers"):
            d[k] = list(d[k])
        return d
