"""Colour preservation for style transfer: keep the content photo's colours.

Both methods are from L. A. Gatys, A. S. Ecker, M. Bethge, A. Hertzmann, E. Shechtman,
"Controlling Perceptual Factors in Neural Style Transfer", CVPR 2017, section 5:

* **luminance-only transfer** (sec. 5.1): the network sees only the luminance channels of the
  content and style images; before the transfer the style luminance is matched to the content
  luminance's mean and standard deviation, L_S' = sigma_C / sigma_S (L_S - mu_S) + mu_C; the
  result's luminance is then recombined with the content's colour channels. YIQ is used (the
  paper's choice), via scikit-image.
* **colour matching** (sec. 5.2): the style image is recoloured with the content image's colours
  before the transfer, so the style that the network matches already has the content's palette.
  Two ways are offered: ``histogram`` matches each RGB channel's histogram on its own
  (scikit-image's ``match_histograms``; not the paper's method), and ``linear`` is the paper's
  linear transform x' = A x + b, which gives the style's RGB values the content's mean and
  3x3 covariance. The paper names two choices of A, the Cholesky factors (A = L_C L_S^-1) and
  the symmetric matrix square roots of Image Analogies (A = Sigma_C^1/2 Sigma_S^-1/2); this module
  uses the symmetric square roots (:func:`linear_color_transform`).

All images here are float tensors (B, 3, H, W) with values in [0, 1] on any device; the work
is done with scikit-image on the CPU in float64 and returned in float32 on the input's device.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage import color as skcolor
from skimage import exposure

__all__ = ["PRESERVE_COLOR", "luminance", "match_luminance", "luminance_only", "recombine_luminance",
           "match_color_histogram", "linear_color_transform", "match_color_linear", "histogram_start", "chroma"]

PRESERVE_COLOR = ("none", "luminance", "histogram", "linear")


def _check(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be an image tensor of shape (B, 3, H, W); got {shape}")


def _to_hwc(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) tensor -> (B, H, W, 3) float64 array."""
    return x.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()


def _from_hwc(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).to(like.device, torch.float32)


def _yiq(x: torch.Tensor) -> np.ndarray:
    return skcolor.rgb2yiq(_to_hwc(x))


def luminance(x: torch.Tensor) -> torch.Tensor:
    """The luminance Y of YIQ (Y = 0.299 R + 0.587 G + 0.114 B), shape (B, 1, H, W), in [0, 1].

    Raises:
        ValueError: not a (B, 3, H, W) tensor.
    """
    _check(x, "image")
    return _from_hwc(_yiq(x)[..., :1], x)


def chroma(x: torch.Tensor) -> torch.Tensor:
    """The colour channels I and Q of YIQ, shape (B, 2, H, W) (I in about [-0.6, 0.6], Q in
    about [-0.52, 0.52]): what luminance-only transfer keeps from the content image."""
    _check(x, "image")
    return _from_hwc(_yiq(x)[..., 1:], x)


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """Match the style luminance's mean and standard deviation to the content's
    (Gatys et al. 2017, sec. 5.1): L_S' = sigma_C / sigma_S (L_S - mu_S) + mu_C, clipped to [0, 1].

    Args:
        style_y: (1, 1, H_s, W_s) luminance in [0, 1].
        content_y: (B, 1, H_c, W_c) luminance in [0, 1]; the statistics are over all of it.

    Returns:
        (1, 1, H_s, W_s) float32 in [0, 1]. A flat style image (sigma_S = 0) is only shifted.
    """
    mu_s, sd_s = style_y.mean(), style_y.std(unbiased=False)
    mu_c, sd_c = content_y.mean(), content_y.std(unbiased=False)
    scale = sd_c / sd_s if float(sd_s) > 1e-8 else torch.ones_like(sd_s)
    return ((style_y - mu_s) * scale + mu_c).clamp(0, 1)


def luminance_only(content: torch.Tensor, styles: list[tuple[torch.Tensor, float]]
                   ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, float]]]:
    """The images the network sees in luminance-only transfer (Gatys et al. 2017, sec. 5.1):
    the content's luminance and each style image's luminance matched to it, each repeated
    into three equal channels (the network expects RGB).

    Args:
        content: (B, 3, H, W) in [0, 1].
        styles: list of (style image (1, 3, H_s, W_s) in [0, 1], blend weight).

    Returns:
        (content luminance (B, 3, H, W), [(style luminance (1, 3, H_s, W_s), weight), ...]),
        float32 in [0, 1], gray (R = G = B).

    Raises:
        ValueError: tensors that are not (B, 3, H, W).
    """
    yc = luminance(content)
    out = []
    for s, w in styles:
        out.append((match_luminance(luminance(s), yc).expand(-1, 3, -1, -1).contiguous(), w))
    return yc.expand(-1, 3, -1, -1).contiguous(), out


def recombine_luminance(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Combine the luminance Y of the (gray) stylized result with the content's I and Q
    channels and convert back to RGB (Gatys et al. 2017, sec. 5.1).

    Args:
        result: (B, 3, H, W) in [0, 1], the output of the luminance-only transfer.
        content: (B or 1, 3, H, W) in [0, 1], the original colour content image, same H and W.

    Returns:
        (B, 3, H, W) float32 in [0, 1] (values that YIQ -> RGB puts outside [0, 1] are clipped;
        elsewhere the I and Q channels equal the content's exactly).

    Raises:
        ValueError: shapes that do not match.
    """
    _check(result, "result")
    _check(content, "content")
    if result.shape[-2:] != content.shape[-2:]:
        raise ValueError(f"result {tuple(result.shape[-2:])} and content {tuple(content.shape[-2:])} "
                         "must have the same size")
    yiq = _yiq(content.expand(result.shape[0], -1, -1, -1))
    yiq[..., 0] = _yiq(result)[..., 0]
    return _from_hwc(np.clip(skcolor.yiq2rgb(yiq), 0.0, 1.0), result)


def match_color_histogram(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Recolour the style image so that each RGB channel's histogram matches the content
    image's (scikit-image ``exposure.match_histograms``, each channel on its own; Gatys et al.
    2017, sec. 5.2, match colours with a linear transform instead: :func:`match_color_linear`).
    The style's patterns stay; its palette becomes the content's, so the transfer keeps the
    content's colours.

    Args:
        style: (1, 3, H_s, W_s) in [0, 1].
        content: (1, 3, H_c, W_c) in [0, 1] (the first image if B > 1).

    Returns:
        (1, 3, H_s, W_s) float32 in [0, 1].

    Raises:
        ValueError: tensors that are not (B, 3, H, W).
    """
    _check(style, "style")
    _check(content, "content")
    matched = exposure.match_histograms(_to_hwc(style[:1])[0], _to_hwc(content[:1])[0], channel_axis=-1)
    return _from_hwc(np.clip(matched, 0.0, 1.0)[None], style)


def _sym_power(cov: np.ndarray, power: float) -> np.ndarray:
    """cov^power for a symmetric positive semi-definite 3x3 matrix (eigendecomposition, NumPy);
    eigenvalues below 1e-10 are raised to 1e-10 so that a flat image's inverse root is finite."""
    vals, vecs = np.linalg.eigh(cov)
    return (vecs * np.maximum(vals, 1e-10) ** power) @ vecs.T


def linear_color_transform(style: torch.Tensor, content: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The linear colour transform of Gatys et al. 2017, sec. 5.2: A (3x3) and b (3,) such that
    the style pixels x' = A x + b have the content's RGB mean and covariance,

        A = Sigma_C^(1/2) Sigma_S^(-1/2),   b = mu_C - A mu_S,

    with the symmetric matrix square roots (the Image Analogies variant that the paper names
    beside the Cholesky one). Then A Sigma_S A^T = Sigma_C and A mu_S + b = mu_C.

    Args:
        style: (1, 3, H_s, W_s) in [0, 1] (the first image if B > 1).
        content: (1, 3, H_c, W_c) in [0, 1] (the first image if B > 1).

    Returns:
        (A, b), float64 NumPy arrays of shape (3, 3) and (3,), acting on RGB values in [0, 1].
        Covariances are over all pixels (population, divided by H*W).

    Raises:
        ValueError: tensors that are not (B, 3, H, W).
    """
    _check(style, "style")
    _check(content, "content")
    xs = _to_hwc(style[:1])[0].reshape(-1, 3)
    xc = _to_hwc(content[:1])[0].reshape(-1, 3)
    mu_s, mu_c = xs.mean(0), xc.mean(0)
    cov_s = np.cov(xs, rowvar=False, bias=True)
    cov_c = np.cov(xc, rowvar=False, bias=True)
    a = _sym_power(cov_c, 0.5) @ _sym_power(cov_s, -0.5)
    return a, mu_c - a @ mu_s


def match_color_linear(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Recolour the style image with :func:`linear_color_transform` (Gatys et al. 2017,
    sec. 5.2): its RGB mean and covariance become the content's, its patterns stay.

    Args:
        style: (1, 3, H_s, W_s) in [0, 1].
        content: (1, 3, H_c, W_c) in [0, 1] (the first image if B > 1).

    Returns:
        (1, 3, H_s, W_s) float32 in [0, 1]. Values the transform puts outside [0, 1] are
        clipped, so the statistics match exactly only where nothing was clipped.

    Raises:
        ValueError: tensors that are not (B, 3, H, W).
    """
    a, b = linear_color_transform(style, content)
    xs = _to_hwc(style[:1])[0]
    out = xs.reshape(-1, 3) @ a.T + b
    return _from_hwc(np.clip(out, 0.0, 1.0).reshape(xs.shape)[None], style)


def histogram_start(content: torch.Tensor, styles: list[tuple[torch.Tensor, float]]) -> torch.Tensor:
    """Style transfer's ``init="histogram"`` start: the content images with each RGB channel's
    histogram matched to the style's (scikit-image ``exposure.match_histograms``), the reverse
    of :func:`match_color_histogram`. The layout is the content's, the palette the style's, so
    the optimizer does not have to repaint every colour: on the real VGG19 it reached a given
    loss in fewer steps (bench/README.md, ``bench_speed.py``).

    Args:
        content: (B, 3, H, W) in [0, 1]; each image is matched on its own.
        styles: (image (1, 3, H_s, W_s) in [0, 1], weight) pairs; a blend's palette is the
            weighted mixture of theirs (each style contributes pixels in proportion to its
            weight, taken at evenly spaced positions).

    Returns:
        (B, 3, H, W) float32 in [0, 1] on the content's device.

    Raises:
        ValueError: no style, weights that do not sum to a positive number, or tensors that
            are not (B, 3, H, W).
    """
    _check(content, "content")
    if not styles:
        raise ValueError("a histogram start needs a style image")
    for st, _ in styles:
        _check(st, "style")
    total = float(sum(w for _, w in styles))
    if not total > 0:
        raise ValueError("style weights must sum to a positive number")
    pixels = [_to_hwc(st[:1])[0].reshape(-1, 3) for st, _ in styles]
    most = max(len(p) for p in pixels)
    parts = []
    for p, (_, w) in zip(pixels, styles):
        n = round(most * float(w) / total)
        if n > 0:
            parts.append(p[np.linspace(0, len(p) - 1, n).round().astype(int)])
    reference = np.concatenate(parts)[None]  # (1, N, 3): an "image" holding the palette
    out = [np.clip(exposure.match_histograms(img, reference, channel_axis=-1), 0.0, 1.0) for img in _to_hwc(content)]
    return _from_hwc(np.stack(out), content)
