"""Image transforms that runs compose around an objective (Lucent's ``transform`` idea): a random
shift before each gradient step, undone on the gradient, so that the picture does not fit the
network's fixed pixel grid (Deep Dream's :class:`Jitter`), and the transformation-robustness
transforms of feature visualization (:class:`Pad`, :class:`Jitter` called on an image,
:class:`RandomScale`, :class:`RandomRotate`, :class:`Compose`, :func:`compose`), seeded by a
``torch.Generator``. Ground floor: only torch (with torchvision's ``transforms.v2.functional``
for the geometry), ``math`` and Python's ``random`` (README, "Layout").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TV
from torchvision.transforms import InterpolationMode

__all__ = ["Jitter", "roll", "unroll", "Pad", "PAD_MODES", "RandomScale", "RandomRotate", "Compose",
           "scale_image", "rotate_image", "parse_transform", "compose", "STANDARD_TRANSFORMS"]


@dataclass(frozen=True)
class Jitter:
    """A random roll by (dy, dx), each drawn uniformly from the integers in [-shift, shift]
    pixels (Mordvintsev et al.'s DeepDream notebook, ``make_step``'s ``jitter``).

    Attributes:
        shift: the largest shift in pixels (0: no shift, and no random numbers are drawn).
    """

    shift: int

    def draw(self, rng: random.Random) -> tuple[int, int]:
        """(dy, dx) in pixels from ``rng`` (``randint`` for dy, then dx), or (0, 0)."""
        if not self.shift:
            return 0, 0
        return rng.randint(-self.shift, self.shift), rng.randint(-self.shift, self.shift)

    def draw_from(self, generator: torch.Generator) -> tuple[int, int]:
        """(dy, dx) in pixels, each uniform on the integers in [-shift, shift], from a
        ``torch.Generator`` (dy first), or (0, 0) without drawing."""
        if not self.shift:
            return 0, 0
        return _randint(generator, -self.shift, self.shift), _randint(generator, -self.shift, self.shift)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Feature visualization's jitter: ``x`` (B, C, H, W) rolled by :meth:`draw_from`'s
        (dy, dx) pixels, wrapping around the edges; shape kept (Lucent crops instead; a roll
        keeps every pixel and the size, as the DeepDream notebook's jitter does)."""
        _check_image(x)
        return roll(x, self.draw_from(generator))

    @property
    def spec(self) -> str:
        return f"jitter:{self.shift}"

    def __add__(self, other: "Jitter") -> "Jitters":
        return Jitters((self, other))


@dataclass(frozen=True)
class Jitters:
    """Several jitters applied in turn: their shifts add up to one roll."""

    parts: tuple[Jitter, ...]

    def draw(self, rng: random.Random) -> tuple[int, int]:
        dy = dx = 0
        for j in self.parts:
            a, b = j.draw(rng)
            dy, dx = dy + a, dx + b
        return dy, dx


def roll(x: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """``x`` (..., H, W) rolled by ``offset`` = (dy, dx) pixels (wrapping around the edges)."""
    return torch.roll(x, shifts=offset, dims=(-2, -1)) if any(offset) else x


def unroll(x: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`roll` with the same ``offset``."""
    return torch.roll(x, shifts=(-offset[0], -offset[1]), dims=(-2, -1)) if any(offset) else x


# ----------------------------------------------------------------------------- transformation robustness
#
# Feature visualization from scratch (Olah, Mordvintsev & Schubert, "Feature Visualization",
# Distill 2017, section "Transformation robustness"; Lucent's ``optvis.transform``): before each
# step the image is padded, jittered, scaled and rotated by small random amounts, so that only
# patterns that excite the unit under all of them survive. Every draw comes from a
# ``torch.Generator`` the run owns (never torch's global RNG, which Streamlit's threads share);
# one draw per step applies to the whole batch. The geometry is torchvision's
# ``transforms.v2.functional`` (differentiable on plain tensors).


def _uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi + 1, (), generator=generator))


def _check_image(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"transforms take images of shape (B, C, H, W); got {tuple(getattr(x, 'shape', ()))}")


@dataclass(frozen=True)
class Pad:
    """Pad each side by ``pixels`` (Lucent's ``pad(12, mode="constant", constant_value=0.5)``):
    (B, C, H, W) -> (B, C, H + 2p, W + 2p). Draws no random numbers.

    Attributes:
        pixels: p >= 0, in pixels.
        mode: ``"constant"`` (filled with ``value``), ``"reflect"``, ``"edge"`` or ``"symmetric"``.
        value: the constant fill, in [0, 1] (0.5: mid-gray, what Lucent uses).

    Raises:
        ValueError: negative pixels, unknown mode, a fill outside [0, 1] (on construction);
            reflect padding of p >= the image side (when applied).
    """

    pixels: int
    mode: str = "constant"
    value: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.pixels, bool) or not isinstance(self.pixels, int) or self.pixels < 0:
            raise ValueError(f"pad must be a whole number of pixels >= 0; got {self.pixels!r}")
        if self.mode not in PAD_MODES:
            raise ValueError(f"pad mode must be one of {', '.join(PAD_MODES)}; got {self.mode!r}")
        if not (isinstance(self.value, (int, float)) and 0.0 <= self.value <= 1.0):
            raise ValueError(f"pad value must be in [0, 1]; got {self.value!r}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image(x)
        if not self.pixels:
            return x
        if self.mode == "reflect" and self.pixels >= min(x.shape[-2:]):
            raise ValueError(f"reflect padding of {self.pixels} px needs an image over {self.pixels} px a side; "
                             f"got {x.shape[-1]} x {x.shape[-2]}")
        if self.mode == "constant":
            return TV.pad(x, [self.pixels], fill=float(self.value), padding_mode="constant")
        return TV.pad(x, [self.pixels], padding_mode=self.mode)

    @property
    def spec(self) -> str:
        return f"pad:{self.pixels}"


#: Padding modes of :class:`Pad` (``torchvision.transforms.v2.functional.pad``'s).
PAD_MODES = ("constant", "reflect", "edge", "symmetric")


@dataclass(frozen=True)
class RandomScale:
    """Resize by a factor s drawn uniformly from [1 - amount, 1 + amount] (Lucent's
    ``random_scale``, whose standard list spans 0.9-1.1): (B, C, H, W) ->
    (B, C, round(s H), round(s W)), bilinear with antialiasing. s = 1 (or ``amount`` 0) returns
    the image itself.

    Raises:
        ValueError: amount outside [0, 0.9] (on construction).
    """

    amount: float

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, (int, float)) or not 0.0 <= self.amount <= 0.9:
            raise ValueError(f"scale must be a relative amount in [0, 0.9] (0.1: 90-110%); got {self.amount!r}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_image(x)
        if not self.amount:
            return x
        return scale_image(x, _uniform(generator, 1.0 - self.amount, 1.0 + self.amount))

    @property
    def spec(self) -> str:
        return f"scale:{self.amount:g}"


def scale_image(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` (B, C, H, W) resized to (round(factor H), round(factor W)) pixels (at least 1),
    bilinear with antialiasing (``torchvision.transforms.v2.functional.resize``); the image
    itself when the size does not change.

    Raises:
        ValueError: factor <= 0.
    """
    _check_image(x)
    if not factor > 0:
        raise ValueError(f"the scale factor must be > 0; got {factor!r}")
    h, w = x.shape[-2:]
    size = [max(1, round(h * factor)), max(1, round(w * factor))]
    if size == [h, w]:
        return x
    return TV.resize(x, size, interpolation=InterpolationMode.BILINEAR, antialias=True)


@dataclass(frozen=True)
class RandomRotate:
    """Rotate about the centre by an angle drawn uniformly from [-degrees, degrees] (Lucent's
    ``random_rotate``, standard list -10..10 degrees), bilinear, size kept; corners that come
    from outside the image are filled with ``value``. 0 degrees returns the image itself.

    Raises:
        ValueError: degrees outside [0, 180], fill outside [0, 1] (on construction).
    """

    degrees: float
    value: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.degrees, bool) or not isinstance(self.degrees, (int, float)) or not 0.0 <= self.degrees <= 180.0:
            raise ValueError(f"rotate must be an angle in [0, 180] degrees; got {self.degrees!r}")
        if not (isinstance(self.value, (int, float)) and 0.0 <= self.value <= 1.0):
            raise ValueError(f"rotate fill must be in [0, 1]; got {self.value!r}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_image(x)
        if not self.degrees:
            return x
        return rotate_image(x, _uniform(generator, -self.degrees, self.degrees), self.value)

    @property
    def spec(self) -> str:
        return f"rotate:{self.degrees:g}"


def rotate_image(x: torch.Tensor, degrees: float, fill: float = 0.5) -> torch.Tensor:
    """``x`` (B, C, H, W) rotated anticlockwise by ``degrees`` about its centre, bilinear, same
    size, outside filled with ``fill`` (``torchvision.transforms.v2.functional.rotate`` of
    x - fill plus fill: its own fill writes in place, which breaks the gradient)."""
    _check_image(x)
    if not degrees:
        return x
    return TV.rotate(x - fill, float(degrees), interpolation=InterpolationMode.BILINEAR) + fill


@dataclass(frozen=True)
class Compose:
    """Several transforms applied in turn (each ``t(x, generator)``), as Lucent's ``compose``."""

    parts: tuple

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for t in self.parts:
            x = t(x, generator)
        return x

    @property
    def spec(self) -> tuple[str, ...]:
        return tuple(t.spec for t in self.parts)


_KINDS = {"pad": Pad, "jitter": Jitter, "scale": RandomScale, "rotate": RandomRotate}
#: Lucent's ``standard_transforms`` in this module's spelling: pad 12 (gray), jitter 8 px,
#: scale 0.9-1.1, rotate -10..10 degrees, jitter 4 px.
STANDARD_TRANSFORMS = ("pad:12", "jitter:8", "scale:0.1", "rotate:10", "jitter:4")


def parse_transform(spec: str):
    """``"pad:12"`` (pixels), ``"jitter:8"`` (pixels), ``"scale:0.1"`` (relative amount: 90-110%)
    or ``"rotate:10"`` (degrees) -> the transform.

    Raises:
        ValueError: unknown kind or a bad number (one line listing the kinds).
    """
    if not isinstance(spec, str):
        raise ValueError(f"a transform is KIND:AMOUNT text (pad:12, jitter:8, scale:0.1, rotate:10); got {spec!r}")
    kind, _, amount = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in _KINDS:
        raise ValueError(f"unknown transform {spec!r}; use {', '.join(k + ':N' for k in _KINDS)}")
    try:
        value = float(amount)
    except ValueError:
        raise ValueError(f"transform {spec!r} needs a number after the colon, e.g. {kind}:4") from None
    if kind in ("pad", "jitter"):
        if not value.is_integer():
            raise ValueError(f"{kind} is a whole number of pixels; got {spec!r}")
        value = int(value)
        if value < 0 or (kind == "jitter" and value > 4096) or (kind == "pad" and value > 4096):
            raise ValueError(f"{kind} must be between 0 and 4096 pixels; got {spec!r}")
    return _KINDS[kind](value)


def compose(specs) -> Compose:
    """A list of transform specs (see :func:`parse_transform`) or transforms -> :class:`Compose`.

    Raises:
        ValueError: a bad spec.
    """
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    return Compose(tuple(parse_transform(s) if isinstance(s, str) else s for s in specs))
