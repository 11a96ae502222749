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
from ..core.settings import RecipeSettings, check_choice, check_float, check_int
from ..style.settings import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, StyleSettings

__all__ = [
    "TRADITIONAL_OPS",
    "AugmentSettings",
]

#: Traditional augmentation operations, in the order they are applied.
TRADITIONAL_OPS = ("flip", "crop", "jitter")

_MAX_STYLES = 6


def _pair(key: str, value, cast):
    """``N``, ``"N"``, ``"LO,HI"``, ``(LO, HI)`` or ``[LO, HI]`` -> (lo, hi) of ``cast``."""
    raw = value
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    try:
        items = list(value)
        if not 1 <= len(items) <= 2 or any(isinstance(v, bool) for v in items):
            raise ValueError
        if cast is int:
            nums = []
            for v in items:
                f = float(v)
                if not f.is_integer():
                    raise ValueError
                nums.append(int(f))
        else:
            nums = [float(v) for v in items]
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number or a range LO,HI; got {raw!r}") from None
    lo, hi = nums[0], nums[-1]
    if lo > hi:
        raise ValueError(f"{key}: LO must not be above HI; got {raw!r}")
    return lo, hi


def _names(v) -> tuple[str, ...]:
    """``"a, b"`` or a sequence of names -> a tuple of names."""
    if isinstance(v, str):
        return tuple(s.strip() for s in v.split(",") if s.strip())
    return tuple(v)


def _traditional(v) -> tuple[str, ...]:
    """``"flip,crop"``, ``"none"`` or a sequence -> a tuple of lower-case operation names."""
    if isinstance(v, str):
        raw = [s.strip().lower() for s in v.split(",") if s.strip()]
        return () if raw in (["none"], []) else tuple(raw)
    return tuple(v)


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
            StyleSettings' beta of 80, for any VGG19 file. Called ``ratio_range`` before; that
            key of an older recipe is still read (:func:`explorer.core.recipes.migrate`).
        blend: style images per output (1 = one style chosen per output; K > 1 = a blend of K
            distinct styles).
        weight_range: range of each blend weight before normalization (ignored for blend 1).
        traditional: ops from :data:`TRADITIONAL_OPS` (``"flip,crop"`` or a tuple); empty = none.
        traditional_at: ``"before"`` or ``"after"`` stylization.
        seed: the run's seed; every output's draws derive from it, its source path and variant.
        lr: Adam learning rate (None = 0.02).
        init: ``"histogram"`` (the default: the content image in its style's colours),
            ``"content"`` or ``"noise"`` (seeded per output).
        parameterization, tv_weight, content_layer, style_layers, model, pooling, precision,
            channels_last: as in :class:`explorer.style.settings.StyleSettings`.
    """

    variants: int = 1
    batch_size: int = 4
    steps: tuple[int, int] = (20, 20)
    size: tuple[int, int] = (128, 128)
    beta_range: tuple[float, float] = (30.0, 200.0)
    blend: int = 1
    weight_range: tuple[float, float] = (0.2, 1.0)
    traditional: tuple[str, ...] = ()
    traditional_at: str = "before"
    seed: int = 0
    lr: float | None = None
    init: str = "histogram"
    parameterization: str = "auto"
    tv_weight: float = 0.0
    content_layer: str = DEFAULT_CONTENT_LAYER
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    model: str = "vgg19"
    pooling: str = "max"
    precision: str = "auto"
    channels_last: str = "auto"

    def canonicalize(self) -> None:
        """Bring accepted spellings to one form (on construction): ``"LO,HI"`` or a number for
        the ranges become (LO, HI) tuples; ``"a,b"`` layer and operation lists become tuples,
        the operations in :data:`TRADITIONAL_OPS` order (unknown ones kept for :meth:`validate`
        to name)."""
        self.steps = _pair("steps", self.steps, int)
        self.size = _pair("size", self.size, int)
        self.beta_range = _pair("beta range", self.beta_range, float)
        self.weight_range = _pair("weight range", self.weight_range, float)
        self.style_layers = _names(self.style_layers)
        trad = _traditional(self.traditional)
        self.traditional = tuple(t for t in TRADITIONAL_OPS if t in trad) + tuple(t for t in trad if t not in TRADITIONAL_OPS)

    def validate(self) -> "AugmentSettings":
        """Check every option (changes nothing).

        Raises:
            ValueError: one line naming the bad option and what is allowed.
        """
        steps, size = _pair("steps", self.steps, int), _pair("size", self.size, int)
        beta_range = _pair("beta range", self.beta_range, float)
        weight_range = _pair("weight range", self.weight_range, float)
        bad = [t for t in _traditional(self.traditional) if t not in TRADITIONAL_OPS]
        if bad:
            raise ValueError(f"traditional augmentation must be among {', '.join(TRADITIONAL_OPS)}; got {bad[0]!r}")
        if self.traditional_at not in ("before", "after"):
            raise ValueError(f"traditional_at must be before or after; got {self.traditional_at!r}")
        check_choice("init", self.init, choices.AUGMENT_INITS)
        check_int("variants", self.variants, 1, 10_000)
        check_int("batch_size", self.batch_size, 1, 1024)
        check_int("blend", self.blend, 1, _MAX_STYLES)
        for v in steps:
            check_int("steps", v, 1, 100_000)
        for v in size:
            check_int("size", v, 32, 4096)
        for v in beta_range:
            check_float("beta", v, 0.0, 1e30, exclusive_min=True)  # beta is a float32
        for v in weight_range:
            check_float("blend weight", v, 0.0)
        if weight_range[1] < 0.001:
            raise ValueError(f"the blend weight range must reach at least 0.001; got {weight_range}")
        self.style_settings(steps[0], size[0])  # checks the style options
        return self

    def style_settings(self, steps: int, size: int) -> StyleSettings:
        """The :class:`StyleSettings` of one batch (Adam; alpha and beta are set per image)."""
        return StyleSettings(size=size, steps=steps, optimizer="adam", lr=self.lr, content_weight=1.0,
                             style_weight=1.0, tv_weight=self.tv_weight, content_layer=self.content_layer,
                             style_layers=_names(self.style_layers), init=self.init, seed=0, model=self.model,
                             parameterization=self.parameterization, pooling=self.pooling, precision=self.precision,
                             channels_last=self.channels_last, preview_every=max(1, steps))

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        for k in ("steps", "size", "beta_range", "weight_range", "traditional", "style_layers"):
            d[k] = list(d[k])
        return d
