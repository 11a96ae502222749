"""Image parameterizations for feature visualization (Olah, Mordvintsev & Schubert, "Feature
Visualization", Distill 2017, "Preconditioning and Parameterization"; Lucent's
``optvis.param``): pixels, or a Fourier spectrum scaled by 1 / max(f, 1 / max(H, W))^decay
(Lucent's ``fft_image``), optionally in ImageNet's decorrelated colour space (Lucent's
``color_correlation_svd_sqrt``), squashed to (0, 1) by a sigmoid (Lucent's ``to_valid_rgb``),
each invertible (:meth:`ImageParam.from_image`); and :func:`high_frequency_share`, the measure
by which they compare. Used by :mod:`explorer.featurevis.render`.

:class:`OffsetImage` is style transfer's variable: a starting picture plus an offset in pixels
or in the same scaled Fourier space, where L-BFGS reaches a given loss in fewer steps.
"""

from __future__ import annotations

import math

import torch

from ..core.settings import check_choice

__all__ = ["PARAMETERIZATIONS", "COLOR_CORRELATION_SVD_SQRT", "decorrelate_colors", "correlate_colors",
           "fourier_scale", "ImageParam", "OffsetImage", "STYLE_FOURIER_DECAY", "high_frequency_share"]

#: The parameterizations :class:`ImageParam` knows.
PARAMETERIZATIONS = ("pixel", "fourier")

#: Square root of ImageNet's colour correlation matrix from its SVD (Lucid / Lucent
#: ``color_correlation_svd_sqrt``): maps decorrelated colour coordinates to RGB.
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                           [0.27, 0.00, -0.05],
                                           [0.27, -0.09, 0.03]])
#: ... divided by its largest column norm, as Lucent does (``color_correlation_normalized``).
_COLOR = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()
_COLOR_INV = torch.linalg.inv(_COLOR)


def decorrelate_colors(t: torch.Tensor) -> torch.Tensor:
    """Decorrelated colour coordinates -> RGB (before the sigmoid): each pixel's (3,) vector
    times the normalized ``COLOR_CORRELATION_SVD_SQRT``^T (Lucent's ``_linear_decorrelate_color``).
    ``t``: (B, 3, H, W), any real values; returns the same shape."""
    return torch.einsum("bchw,dc->bdhw", t, _COLOR.to(t.device, t.dtype))


def correlate_colors(t: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`decorrelate_colors` (the matrix is invertible): (B, 3, H, W) -> same."""
    return torch.einsum("bchw,dc->bdhw", t, _COLOR_INV.to(t.device, t.dtype))


def fourier_scale(height: int, width: int, decay: float = 1.0) -> torch.Tensor:
    """The spectrum scale of Lucent's ``fft_image``: 1 / max(f, 1 / max(H, W))^decay for the
    radial frequency f = sqrt(fy^2 + fx^2) in cycles per pixel (``fftfreq``, ``rfftfreq``).
    Shape (H, W // 2 + 1), float32, values in [1, max(H, W)^decay] (decay >= 0)."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    f = torch.sqrt(fx * fx + fy * fy)
    return (1.0 / torch.clamp(f, min=1.0 / max(height, width)) ** decay).float()


#: Lucent divides the Fourier image by 4 (its ``magic``) so that the start's values are small.
_FOURIER_DIVISOR = 4.0


class ImageParam:
    """A batch of images as learnable parameters; calling it gives (B, 3, H, W) in (0, 1).

    ``pixel``: the parameters are the pre-sigmoid values themselves. ``fourier``: they are a
    spectrum (B, 3, H, W // 2 + 1, 2) (real, imaginary) and the image is
    irfft2(spectrum * :func:`fourier_scale`, orthonormal) / 4 (Lucent's ``fft_image``). With
    ``decorrelate``, :func:`decorrelate_colors` follows. Then the sigmoid (Lucent's
    ``to_valid_rgb``). Every step is invertible: :meth:`from_image` starts from a given image.

    Attributes:
        raw: the leaf tensor the optimizer changes (float32, requires grad).
    """

    def __init__(self, raw: torch.Tensor, kind: str, size: tuple[int, int], decorrelate: bool, decay: float):
        check_choice("parameterization", kind, PARAMETERIZATIONS)
        self.kind, self.size, self.decorrelate, self.decay = kind, (int(size[0]), int(size[1])), bool(decorrelate), decay
        self.raw = raw.detach().float().requires_grad_(True)
        self._scale = fourier_scale(*self.size, decay).to(raw.device) if kind == "fourier" else None

    @classmethod
    def random(cls, kind: str, batch: int, size: int | tuple[int, int], *, decorrelate: bool = True,
               decay: float = 1.0, sd: float = 0.01, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> "ImageParam":
        """A random start: normal values of standard deviation ``sd`` (Lucent's 0.01) drawn on the
        CPU from ``generator`` (same seed, same start on every device).

        Raises:
            ValueError: unknown kind, batch < 1 or a side < 1 pixel.
        """
        h, w = (size, size) if isinstance(size, int) else size
        if batch < 1 or h < 1 or w < 1:
            raise ValueError(f"an image parameterization needs batch >= 1 and sides >= 1 px; got {batch}, {h} x {w}")
        shape = (batch, 3, h, w) if kind == "pixel" else (batch, 3, h, w // 2 + 1, 2)
        raw = torch.randn(shape, generator=generator) * sd
        return cls(raw.to(device), kind, (h, w), decorrelate, decay)

    @classmethod
    def from_image(cls, image: torch.Tensor, kind: str = "pixel", *, decorrelate: bool = True,
                   decay: float = 1.0, eps: float = 1e-4) -> "ImageParam":
        """The parameters whose image is ``image`` (B, 3, H, W) in [0, 1] (values clamped to
        [eps, 1 - eps] first, where the sigmoid's inverse, the logit, is finite): logit, then
        :func:`correlate_colors`, then for ``fourier`` rfft2 / scale.

        Raises:
            ValueError: not (B, 3, H, W).
        """
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"the start image must have shape (B, 3, H, W); got {tuple(getattr(image, 'shape', ()))}")
        t = torch.logit(image.detach().float().clamp(eps, 1.0 - eps))
        if decorrelate:
            t = correlate_colors(t)
        h, w = image.shape[-2:]
        if kind == "fourier":
            spec = torch.fft.rfft2(t * _FOURIER_DIVISOR, norm="ortho") / fourier_scale(h, w, decay).to(t.device)
            t = torch.view_as_real(spec)
        return cls(t, kind, (h, w), decorrelate, decay)

    def parameters(self) -> list[torch.Tensor]:
        """The tensors an optimizer updates."""
        return [self.raw]

    def pre_sigmoid(self) -> torch.Tensor:
        """(B, 3, H, W) float32 values before the sigmoid (any real numbers)."""
        t = self.raw
        if self.kind == "fourier":
            t = torch.fft.irfft2(torch.view_as_complex(t) * self._scale, s=self.size, norm="ortho") / _FOURIER_DIVISOR
        return decorrelate_colors(t) if self.decorrelate else t

    def __call__(self) -> torch.Tensor:
        """The images, (B, 3, H, W) float32 in (0, 1)."""
        return torch.sigmoid(self.pre_sigmoid())


#: The spectrum exponent of style transfer's Fourier offset: 1 / f^0.5. On the real VGG19
#: (tubingen + shipwreck, 256 px, L-BFGS) it needed the fewest evaluations to a given loss
#: among 0.35, 0.5, 0.65, 0.75 and 1 (bench/README.md, ``bench_speed.py``).
STYLE_FOURIER_DECAY = 0.5


class OffsetImage:
    """Style transfer's optimization variable: images x = start + offset, (B, 3, H, W), with
    no squashing (the loop clamps x to [0, 1] where the network sees it).

    ``pixel``: the parameters are x itself (the offset is implicit). ``fourier``: the offset is
    irfft2(spectrum * :func:`fourier_scale` (decay), orthonormal) of a spectrum that starts at
    zero, so x starts exactly at ``start``; low spatial frequencies are scaled up relative to
    high ones, which preconditions gradient steps and L-BFGS (Olah, Mordvintsev & Schubert,
    "Feature Visualization", Distill 2017, "Preconditioning and Parameterization").

    Attributes:
        raw: the leaf tensor the optimizer changes (float32, requires grad): (B, 3, H, W) for
            ``pixel``, (B, 3, H, W // 2 + 1, 2) (real, imaginary) for ``fourier``.
        kind, decay: as given.
    """

    def __init__(self, start: torch.Tensor, kind: str = "pixel", decay: float = STYLE_FOURIER_DECAY):
        check_choice("parameterization", kind, PARAMETERIZATIONS)
        if not isinstance(start, torch.Tensor) or start.dim() != 4 or start.shape[1] != 3:
            raise ValueError(f"the start image must have shape (B, 3, H, W); got {tuple(getattr(start, 'shape', ()))}")
        self.kind, self.decay = kind, float(decay)
        h, w = start.shape[-2:]
        self.size = (int(h), int(w))
        if kind == "pixel":
            self.start = None
            self.raw = start.detach().float().clone(memory_format=torch.contiguous_format).requires_grad_(True)
            self._scale = None
        else:
            self.start = start.detach().float().clone(memory_format=torch.contiguous_format)
            self.raw = torch.zeros((*start.shape[:2], h, w // 2 + 1, 2), device=start.device).requires_grad_(True)
            self._scale = fourier_scale(h, w, decay).to(start.device)

    def parameters(self) -> list[torch.Tensor]:
        """The tensors an optimizer updates."""
        return [self.raw]

    def offset(self, raw: torch.Tensor) -> torch.Tensor:
        """The image-space change (B, 3, H, W) that adding ``raw`` (shaped like :attr:`raw`)
        to the parameters makes: x is affine in the parameters, and this is its linear part."""
        if self.kind == "pixel":
            return raw
        return torch.fft.irfft2(torch.view_as_complex(raw) * self._scale, s=self.size, norm="ortho")

    def __call__(self) -> torch.Tensor:
        """The images x, (B, 3, H, W) float32, not clamped (differentiable in :attr:`raw`)."""
        return self.raw if self.kind == "pixel" else self.start + self.offset(self.raw)


def high_frequency_share(image: torch.Tensor, cutoff: float = 0.25) -> float:
    """The share of an image's spectral power above ``cutoff`` cycles per pixel (Nyquist: 0.5):
    sum of |FFT2|^2 at radial frequencies > cutoff over the sum at all non-zero frequencies,
    per channel of the mean-free image, pooled over the batch. In [0, 1]; white noise gives
    about 1 - pi cutoff^2 (0.80 for 0.25); smooth pictures a few percent.

    Args:
        image: (B, 3, H, W) or (3, H, W), values in [0, 1].

    Raises:
        ValueError: not 3- or 4-dimensional, or cutoff outside (0, 0.5 sqrt 2).
    """
    if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4):
        raise ValueError(f"high_frequency_share takes (B, 3, H, W) or (3, H, W); got {tuple(getattr(image, 'shape', ()))}")
    if not 0.0 < cutoff < 0.5 * math.sqrt(2):
        raise ValueError(f"cutoff must be in (0, 0.707) cycles per pixel; got {cutoff!r}")
    x = image.detach().float().cpu()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().pow(2)
    h, w = x.shape[-2:]
    f = torch.sqrt(torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None, :] ** 2)
    whole = float(power.sum())
    return float(power[..., f > cutoff].sum()) / whole if whole > 0 else 0.0
