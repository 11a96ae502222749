"""Deep Photo Style Transfer building blocks (F. Luan, S. Paris, E. Shechtman, K. Bala, "Deep
Photo Style Transfer", CVPR 2017): the Matting Laplacian photorealism regularizer and the
semantic-region ("augmented") style loss.

Formulas, with the equation numbers used throughout this project (each formula is also named,
so it can be found in any version of the papers):

* Matting Laplacian, A. Levin, D. Lischinski, Y. Weiss, "A Closed-Form Solution to Natural
  Image Matting", PAMI 2008, eq. (12): for every (2r+1) x (2r+1) window w_k lying fully inside
  the image (|w_k| = (2r+1)^2 pixels, colour mean mu_k, colour covariance Sigma_k),

      M_ij = sum_{k | (i, j) in w_k} ( delta_ij - 1/|w_k| (1 + (I_i - mu_k)^T
                                         (Sigma_k + eps/|w_k| I_3)^{-1} (I_j - mu_k)) ).

  M is symmetric, positive semidefinite, and M 1 = 0: the cost alpha^T M alpha is zero exactly
  when alpha is, in every window, an affine function of the colours.
* Photorealism regularizer, Luan et al. 2017 eq. (2):

      L_m = sum_{c=1..3} V_c[O]^T M_I V_c[O],

  V_c[O] the vectorized channel c of the output image O and M_I the Matting Laplacian of the
  input (content) image I. L_m is small when O is, locally, an affine recolouring of I (so the
  transfer changes colours but not edges or textures); its gradient is 2 M_I V_c[O].
* Augmented style loss, Luan et al. 2017 eq. (3a)-(3b): with R semantic regions whose 0/1 masks
  are M_{l,c}[I] on the content image and M_{l,c}[S] on the style image (resampled to layer l),

      L^l_{s+} = sum_{c=1..R} 1/(4 N_l^2) sum_ij (G_{l,c}[O] - G_{l,c}[S])_ij^2,

  G_{l,c} the Gram matrix of the layer-l features under the region's mask. Here G_{l,c} is the
  *normalized* masked Gram of :func:`explorer.guided.masked_gram`, G_w = F diag(w) F^T / sum(w),
  the weighted mean of f_k f_k^T over the region's positions, and the constant is the
  1/(4 N^2) of Gatys et al. 2016 eq. (4) (:func:`explorer.style.style_layer_loss`), so that a
  single all-ones region gives exactly the plain style term. (Luan et al. write F_{l,c} =
  F_l M_{l,c} and 1/(2 N_{l,c}^2); the constant factors are absorbed in the layer weights, and
  with area-averaged fractional masks diag(w) is the weighted mean where F M would weigh by
  w^2. For 0/1 masks at full resolution the two agree.)

Numbering: Luan et al.'s paper numbers the total loss eq. (1)/(4), the photorealism term eq. (2)
and the augmented style loss eq. (3a)-(3b); the seed project's text calls the last two "eq. 6"
and "eq. 7-8". They are the same formulas as above.

Region masks come from colour-coded mask images (:func:`load_color_mask`, the input of Luan et
al.'s own code), from k-means colour clustering of both images at once (:func:`auto_masks`, no
weights needed), or from torchvision's DeepLabV3 semantic segmentation
(:func:`segmentation_masks`, pretrained weights needed; never untrained).

No Streamlit here; pages and the CLI share this module.
"""

from __future__ import annotations

import contextlib
import numbers
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "MAX_LAPLACIAN_PIXELS",
    "MIN_COLOR_FRACTION",
    "MAX_REGIONS",
    "CLUSTER_COLORS",
    "EMPTY_REGION_WEIGHT",
    "RegionPlan",
    "region_plan",
    "matting_laplacian",
    "MattingLaplacian",
    "photorealism_loss",
    "RegionMasks",
    "RegionTargets",
    "load_color_mask",
    "match_regions",
    "auto_masks",
    "segmentation_masks",
    "segmentation_weights_file",
    "region_layer_masks",
    "region_valid",
    "region_style_targets",
    "region_style_layer_loss",
]

#: Largest image (pixels) :func:`matting_laplacian` builds: about 25 non-zeros per pixel, and
#: building takes about 1 KB per pixel at its peak (2 GB for 2 megapixels).
MAX_LAPLACIAN_PIXELS = 2 * 1024 * 1024
#: Colours covering less than this fraction of a mask image are antialiasing speckles; they
#: are merged into the nearest major colour (:func:`load_color_mask`).
MIN_COLOR_FRACTION = 0.005
#: Most regions a colour mask may have (more means a photo was given instead of a mask).
MAX_REGIONS = 32
#: A region whose mask weighs less than this at a layer (sum of the area-averaged weights, in
#: layer positions) is empty there: zero target and no loss term (:func:`region_valid`).
EMPTY_REGION_WEIGHT = 1e-6


# ============================================================================= Matting Laplacian

def _as_hwc(image) -> np.ndarray:
    """(H, W, 3) float64 array from a (3, H, W) / (1, 3, H, W) tensor or an (H, W, 3) float
    array, values checked to be finite and in [0, 1]."""
    if isinstance(image, torch.Tensor):
        t = image.detach()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"the Matting Laplacian takes one image, (3, H, W) or (1, 3, H, W); "
                                 f"got shape {tuple(t.shape)}")
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"expected an image of shape (3, H, W) or (1, 3, H, W); got {tuple(image.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"expected a float image with values in [0, 1]; got dtype {t.dtype}")
        arr = t.to("cpu", torch.float64).permute(1, 2, 0).numpy()
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a NumPy image of shape (H, W, 3); got {image.shape}")
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"expected a float image with values in [0, 1]; got dtype {image.dtype} "
                             "(divide 8-bit images by 255)")
        arr = image.astype(np.float64)
    else:
        raise ValueError(f"expected a torch tensor or a NumPy array; got {type(image).__name__}")
    if not np.isfinite(arr).all():
        raise ValueError("the image has non-finite values (NaN or infinity)")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"image values must be in [0, 1]; got {lo:.3g} to {hi:.3g}")
    return np.clip(arr, 0.0, 1.0)


def matting_laplacian(image, eps: float = 1e-7, win_rad: int = 1) -> sp.csr_matrix:
    """The Matting Laplacian of an image, Levin, Lischinski & Weiss, PAMI 2008, eq. (12).

    For every (2r+1) x (2r+1) window w_k fully inside the image (r = ``win_rad``,
    |w_k| = (2r+1)^2), with the window's colour mean mu_k and (biased, 1/|w_k|) colour
    covariance Sigma_k:

        M_ij = sum_{k | (i, j) in w_k} (delta_ij - 1/|w_k| (1 + (I_i - mu_k)^T
                                        (Sigma_k + eps/|w_k| I_3)^{-1} (I_j - mu_k))).

    Luan et al. 2017 use 3x3 windows (r = 1) and eps = 1e-7 (their code's values).

    Built without loops over pixels or windows: the windows' colours are a strided view, the
    3x3 inverses are one batched ``np.linalg.inv`` on a (K, 3, 3) array, and the K x |w|^2
    window entries are summed into 25 (for r = 1) pixel-offset bands by one slice-add per pair
    of window positions; the bands become the sparse matrix. Each pair (i, j), i != j, is
    computed once and stored at (i, j) and (j, i), so the result is exactly symmetric.

    Args:
        image: (3, H, W) or (1, 3, H, W) float tensor, or (H, W, 3) float NumPy array, RGB in
            [0, 1] (any device; read on the CPU).
        eps: regularization eps > 0 (in squared colour units, colours in [0, 1]).
        win_rad: window radius r >= 1, pixels.

    Returns:
        (H*W, H*W) float64 ``scipy.sparse.csr_matrix`` with sorted indices, pixels in row-major
        order (index = y * W + x): symmetric, positive semidefinite, rows summing to 0. About
        (4r+1)^2 non-zeros per pixel.

    Raises:
        ValueError: bad shape or dtype, values outside [0, 1] or not finite, eps <= 0, win_rad
            < 1, an image smaller than one window, or more than :data:`MAX_LAPLACIAN_PIXELS`.
    """
    if isinstance(win_rad, bool) or not isinstance(win_rad, (int, np.integer)) or win_rad < 1:
        raise ValueError(f"win_rad must be a whole number >= 1; got {win_rad!r}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not np.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a positive number; got {eps!r}")
    img = _as_hwc(image)
    h, w, _ = img.shape
    r = int(win_rad)
    s = 2 * r + 1
    if h < s or w < s:
        raise ValueError(f"the image ({w}x{h} px) is smaller than one {s}x{s} window")
    if h * w > MAX_LAPLACIAN_PIXELS:
        raise ValueError(f"the image has {w}x{h} = {h * w / 1e6:.1f} megapixels; the Matting Laplacian is built "
                         f"up to {MAX_LAPLACIAN_PIXELS / 1e6:.1f} megapixels (use a smaller working size)")
    n = s * s
    kh, kw = h - 2 * r, w - 2 * r
    # colours of every window: (kh, kw, 3, s, s) view -> (K, n, 3), window position a = dy * s + dx
    win = np.lib.stride_tricks.sliding_window_view(img, (s, s), axis=(0, 1))
    x = win.reshape(kh * kw, 3, n).transpose(0, 2, 1)
    x = x - x.mean(axis=1, keepdims=True)                       # I_i - mu_k
    cov = np.matmul(x.transpose(0, 2, 1), x) / n              # Sigma_k (biased), (K, 3, 3)
    cov += (eps / n) * np.eye(3)
    inv = np.linalg.inv(cov)
    inv = 0.5 * (inv + inv.transpose(0, 2, 1))
    y = np.matmul(x, inv)                                       # (I_i - mu_k)^T (Sigma_k + ...)^-1

    nd = 4 * r + 1                                               # offsets -2r..2r per axis
    band = np.zeros((nd, nd, h, w))                              # band[dy+2r, dx+2r, y, x] = M[(y,x), (y+dy,x+dx)]
    for a in range(n):
        ay, ax = divmod(a, s)
        # entries (a, b) for b >= a in every window: 1/n (1 + y_a . x_b), shape (K, n - a)
        vals = (1.0 + np.matmul(x[:, a:], y[:, a, :, None])[..., 0]) / n
        rows_a = slice(ay, ay + kh)
        cols_a = slice(ax, ax + kw)
        # the pixel at window position a of the window whose top-left corner is (v, u) is (v + ay, u + ax)
        band[2 * r, 2 * r, rows_a, cols_a] += 1.0 - vals[:, 0].reshape(kh, kw)
        for j in range(1, n - a):
            b = a + j
            by, bx = divmod(b, s)
            dy, dx = by - ay, bx - ax
            v = vals[:, j].reshape(kh, kw)
            band[dy + 2 * r, dx + 2 * r, rows_a, cols_a] -= v
            band[2 * r - dy, 2 * r - dx, by:by + kh, bx:bx + kw] -= v

    del x, y, inv, cov, vals
    # the bands as CSR: pixel i's row holds its in-image neighbours (y+dy, x+dx), |dy|, |dx| <= 2r,
    # in (dy, dx) order; every such pair shares a window, so no other entry is non-zero
    offs = np.arange(-2 * r, 2 * r + 1)
    yy = np.arange(h)[:, None, None, None] + offs[None, None, :, None]   # (h, 1, nd, 1) target rows
    xx = np.arange(w)[None, :, None, None] + offs[None, None, None, :]   # (1, w, 1, nd) target cols
    valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)                  # (h, w, nd, nd)
    indices = np.broadcast_to((yy * w + xx).astype(np.int32), valid.shape)[valid]
    indptr = np.zeros(h * w + 1, dtype=np.int32 if valid.sum() < 2**31 else np.int64)
    np.cumsum(valid.sum(axis=(2, 3)).reshape(-1), out=indptr[1:])
    data = band.transpose(2, 3, 0, 1)[valid]
    del band, valid
    m = sp.csr_matrix((data, indices, indptr), shape=(h * w, h * w))
    m.sort_indices()
    return m


def _no_autocast(device: torch.device):
    """A context with autocast off on ``device`` (losses stay in float32)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def _torch_csr(matrix: sp.csr_matrix, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    crow = torch.from_numpy(matrix.indptr.astype(np.int64))
    col = torch.from_numpy(matrix.indices.astype(np.int64))
    val = torch.from_numpy(matrix.data).to(dtype)
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        t = torch.sparse_csr_tensor(crow, col, val, size=matrix.shape, check_invariants=False)
        return t.to(device)


class _QuadraticForm(torch.autograd.Function):
    """sum_c V_c^T M V_c per image, for x (B, C, H, W) and a sparse symmetric M (HW, HW).

    Forward keeps M V; the backward is the analytic gradient 2 M V_c (M symmetric) scaled by
    the incoming gradient: no second sparse product."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        v = x.reshape(b * c, h * w).t().contiguous()             # (HW, B*C)
        mv = torch.sparse.mm(m, v) if m.layout == torch.sparse_coo else m @ v
        ctx.save_for_backward(mv)
        ctx.shape = (b, c, h, w)
        return (v * mv).sum(0).reshape(b, c).sum(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mv,) = ctx.saved_tensors
        b, c, h, w = ctx.shape
        g = 2.0 * mv.t().reshape(b, c, h, w)
        return g * grad.to(g.dtype).reshape(b, 1, 1, 1), None


class MattingLaplacian:
    """The content image's Matting Laplacian, ready to evaluate the photorealism regularizer
    of Luan et al. 2017 eq. (2) on any device.

    Args:
        image: the content image, as for :func:`matting_laplacian` ((3, H, W) or (1, 3, H, W)
            tensor or (H, W, 3) array, RGB in [0, 1]), at the working size of the transfer.
        eps, win_rad: as for :func:`matting_laplacian` (Luan et al.: 1e-7 and 1).
        device: where the torch sparse (CSR) copy is built first (default CPU). Inputs on other
            devices get their own copy on first use (cached).

    Attributes:
        matrix: the (H*W, H*W) float64 ``scipy.sparse.csr_matrix``.
        shape: (H, W) of the image, pixels.
        eps, win_rad: the parameters used.
        device: the first device.

    The object is callable: ``lap(x)`` is :meth:`loss` (so it can be passed as a regularizer
    ``fn(x) -> (B,)``). x must be at the same (H, W): a coarse-to-fine run needs one
    Laplacian per scale.

    Raises:
        ValueError: as :func:`matting_laplacian`.
    """

    def __init__(self, image, eps: float = 1e-7, win_rad: int = 1, device: str | torch.device | None = None):
        img = _as_hwc(image)
        self.matrix = matting_laplacian(img, eps=eps, win_rad=win_rad)
        self.shape: tuple[int, int] = (int(img.shape[0]), int(img.shape[1]))
        self.eps, self.win_rad = float(eps), int(win_rad)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._cache: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self._lock = threading.Lock()
        self.sparse(self.device)

    @classmethod
    def from_matrix(cls, matrix, shape: tuple[int, int], device: str | torch.device | None = None
                    ) -> "MattingLaplacian":
        """Wrap an existing (H*W, H*W) sparse matrix (e.g. one built earlier and cached).

        Raises:
            ValueError: a matrix whose size is not (H*W, H*W).
        """
        h, w = (int(v) for v in shape)
        if matrix.shape != (h * w, h * w):
            raise ValueError(f"a Laplacian for {w}x{h} px must be {h * w}x{h * w}; "
                             f"got {matrix.shape[0]}x{matrix.shape[1]}")
        self = cls.__new__(cls)
        self.matrix = sp.csr_matrix(matrix, dtype=np.float64)
        self.matrix.sort_indices()
        self.shape = (h, w)
        self.eps, self.win_rad = float("nan"), 0
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._cache, self._lock = {}, threading.Lock()
        return self

    def sparse(self, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The matrix as a torch sparse CSR tensor (H*W, H*W) on ``device`` (default
        :attr:`device`) in ``dtype`` (float32 or float64), built once per (device, dtype) and
        cached (thread-safe). About 16 bytes per non-zero (values and int64 column indices).

        Raises:
            RuntimeError: from torch, a device that is not available."""
        dev = torch.device(device) if device is not None else self.device
        key = (str(dev), dtype)
        with self._lock:
            t = self._cache.get(key)
            if t is None:
                t = self._cache[key] = _torch_csr(self.matrix, dev, dtype)
        return t

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The photorealism regularizer, Luan et al. 2017 eq. (2):
        L_m = sum_{c=1..3} V_c[O]^T M_I V_c[O], one value per image.

        Args:
            x: (B, 3, H, W) output images in [0, 1] (values outside are allowed, e.g. during
                optimization), on any device, any float dtype; (H, W) must be :attr:`shape`.

        Returns:
            (B,) float32 tensor (float64 if x is float64), differentiable: the backward is the
            analytic gradient 2 M_I V_c[O] (a torch.autograd.Function on a torch sparse CSR
            matrix, the same code on CPU and CUDA). Unitless (squared colour values).

        Raises:
            ValueError: x not (B, 3, H, W), or at another size than the Laplacian.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"the photorealism loss takes images of shape (B, 3, H, W); got {shape}")
        h, w = self.shape
        if tuple(x.shape[-2:]) != (h, w):
            raise ValueError(f"the image is {x.shape[-1]}x{x.shape[-2]} px but the Matting Laplacian was built "
                             f"for {w}x{h} px")
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        m = self.sparse(x.device, dtype)
        with _no_autocast(x.device):
            return _QuadraticForm.apply(x.to(dtype), m)

    __call__ = loss
    photorealism_loss = loss

    @property
    def nnz(self) -> int:
        """Stored non-zeros of the matrix."""
        return int(self.matrix.nnz)

    def __repr__(self) -> str:
        h, w = self.shape
        return f"MattingLaplacian({w}x{h} px, eps={self.eps:g}, win_rad={self.win_rad}, nnz={self.nnz})"


def photorealism_loss(x: torch.Tensor, laplacian) -> torch.Tensor:
    """The photorealism regularizer of Luan et al. 2017 eq. (2),
    L_m = sum_{c=1..3} V_c[O]^T M_I V_c[O], for each image of a batch.

    Args:
        x: (B, 3, H, W) output images (pixels in [0, 1]), any device.
        laplacian: a :class:`MattingLaplacian`, or an (H*W, H*W) ``scipy.sparse`` matrix for
            x's (H, W) in row-major pixel order (wrapped on every call; prefer a
            :class:`MattingLaplacian`, which caches its torch copy).

    Returns:
        (B,) float32 tensor (float64 for float64 x), differentiable (gradient 2 M_I V_c[O]).

    Raises:
        ValueError: shapes that do not match, or a laplacian of another type.
    """
    if isinstance(laplacian, MattingLaplacian):
        return laplacian.loss(x)
    if sp.issparse(laplacian):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError("the photorealism loss takes images of shape (B, 3, H, W)")
        return MattingLaplacian.from_matrix(laplacian, tuple(x.shape[-2:]), x.device).loss(x)
    raise ValueError(f"laplacian must be a MattingLaplacian or a scipy sparse matrix; got {type(laplacian).__name__}")


# ============================================================================= region masks

_UNASSIGNED = ((96, 96, 96), (160, 160, 160))  # checkerboard for pixels of no region


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


@dataclass
class RegionMasks:
    """Semantic regions shared by the content and the style image (Luan et al. 2017 eq. (3a)-(3b)).

    Attributes:
        content: (R, H_c, W_c) float32 0/1 masks on the content image (disjoint). Pixels in no
            mask belong to a region the style image lacks: they get no style target.
        style: (R, H_s, W_s) float32 0/1 masks on the style image (disjoint).
        names: R display names, e.g. ``"#ff0000"``, ``"cluster 3"`` or ``"person"``.
        colors: R display colours (r, g, b), 0-255.
        notes: plain-words notes, e.g. regions dropped because only one image has them.

    Raises:
        ValueError: (on construction) inconsistent shapes or list lengths.
    """

    content: torch.Tensor
    style: torch.Tensor
    names: list[str]
    colors: list[tuple[int, int, int]]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.content.dim() != 3 or self.style.dim() != 3:
            raise ValueError(f"region masks must be (R, H, W); got content {tuple(self.content.shape)}, "
                             f"style {tuple(self.style.shape)}")
        r = self.content.shape[0]
        if self.style.shape[0] != r or len(self.names) != r or len(self.colors) != r:
            raise ValueError(f"{r} content regions but {self.style.shape[0]} style regions, {len(self.names)} names "
                             f"and {len(self.colors)} colours")

    @property
    def count(self) -> int:
        """R, the number of shared regions."""
        return int(self.content.shape[0])

    def _picture(self, masks: torch.Tensor) -> Image.Image:
        _, h, w = masks.shape
        yy, xx = np.mgrid[0:h, 0:w]
        checker = ((yy // 8 + xx // 8) % 2).astype(bool)
        canvas = np.where(checker[..., None], np.array(_UNASSIGNED[1], np.uint8), np.array(_UNASSIGNED[0], np.uint8))
        m = masks.detach().cpu().numpy() > 0.5
        if len(m):
            palette = np.asarray(self.colors, dtype=np.uint8)
            any_region = m.any(0)
            canvas[any_region] = palette[m.argmax(0)[any_region]]
        return Image.fromarray(np.ascontiguousarray(canvas, dtype=np.uint8), mode="RGB")

    def preview_images(self) -> tuple[Image.Image, Image.Image]:
        """Colour-coded pictures of the content and the style label maps (each region in its
        display colour; pixels of no shared region as a grey checkerboard), at the masks' sizes.

        Returns:
            (content picture, style picture), 8-bit RGB PIL images.
        """
        return self._picture(self.content), self._picture(self.style)

    def fractions(self) -> list[tuple[float, float]]:
        """Per region, the fraction of the content and of the style image it covers (0..1)."""
        c = self.content.flatten(1).float().mean(1).tolist()
        s = self.style.flatten(1).float().mean(1).tolist()
        return list(zip(c, s))


def _check_labels(labels, n: int, what: str) -> torch.Tensor:
    t = torch.as_tensor(labels)
    if t.dim() != 2:
        raise ValueError(f"{what} labels must be a 2-D (H, W) map; got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{what} labels must be integers; got {t.dtype}")
    t = t.long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        raise ValueError(f"{what} labels must be in 0..{n - 1} (one per colour); got {int(t.min())}..{int(t.max())}")
    return t


def _match(c_labels: torch.Tensor, c_keys: Sequence, s_labels: torch.Tensor, s_keys: Sequence,
           names: dict, colors: dict) -> RegionMasks:
    """Regions (identified by key) present in both label maps -> RegionMasks."""
    c_present = [c_keys[i] for i in torch.unique(c_labels).tolist()]
    s_present = [s_keys[i] for i in torch.unique(s_labels).tolist()]
    shared = [k for k in c_present if k in s_present]
    if not shared:
        raise ValueError(f"the content and style masks share no colour: content has "
                         f"{', '.join(names[k] for k in c_present)}; "
                         f"style has {', '.join(names[k] for k in s_present)}")
    notes = []
    c_total = c_labels.numel()
    for k in c_present:
        if k not in s_present:
            frac = float((c_labels == c_keys.index(k)).sum()) / c_total
            notes.append(f"region {names[k]} appears only in the content mask ({frac:.0%} of the content image): "
                         "no style target there, only the content and photorealism terms act on those pixels")
    for k in s_present:
        if k not in c_present:
            notes.append(f"region {names[k]} appears only in the style mask; ignored")
    c_idx = torch.tensor([c_keys.index(k) for k in shared])
    s_idx = torch.tensor([s_keys.index(k) for k in shared])
    content = (c_labels[None] == c_idx[:, None, None]).float()
    style = (s_labels[None] == s_idx[:, None, None]).float()
    return RegionMasks(content, style, [names[k] for k in shared], [tuple(int(v) for v in colors[k]) for k in shared],
                       notes)


def match_regions(content_labels, content_colors: Sequence[tuple[int, int, int]],
                  style_labels, style_colors: Sequence[tuple[int, int, int]]) -> RegionMasks:
    """Pair the regions of two colour-coded label maps by colour (Luan et al. 2017 eq. (3a)-(3b)).

    Regions whose colour occurs in both maps become the R shared regions (in the order of
    ``content_colors``); a colour only in the style map is dropped with a note; a colour only
    in the content map is dropped too, and the note says that its pixels get no style target
    (only the content and photorealism terms act there). Colours listed but not used by any
    pixel are ignored.

    Args:
        content_labels: (H_c, W_c) integer map, values indexing ``content_colors``.
        content_colors: (r, g, b) 0-255 colour of each content label.
        style_labels: (H_s, W_s) integer map, values indexing ``style_colors``.
        style_colors: (r, g, b) colour of each style label.

    Returns:
        :class:`RegionMasks` named by hex colour (``"#ff0000"``).

    Raises:
        ValueError: maps that are not 2-D integer maps with valid indices, or no shared colour
            ("the content and style masks share no colour: ...").
    """
    cc = [tuple(int(v) for v in c) for c in content_colors]
    sc = [tuple(int(v) for v in c) for c in style_colors]
    cl = _check_labels(content_labels, len(cc), "content")
    sl = _check_labels(style_labels, len(sc), "style")
    keys = set(cc) | set(sc)
    return _match(cl, cc, sl, sc, {k: _hex(k) for k in keys}, {k: k for k in keys})


def load_color_mask(ref, size: tuple[int, int], role: str = "content mask"
                    ) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """Read a colour-coded region mask (same colour = same region), as used by Luan et al.

    The image is read with :func:`explorer.images.load_image` (any format; transparency on
    white), resized to ``size`` with nearest-neighbour sampling (no new colours), and colours
    that cover less than :data:`MIN_COLOR_FRACTION` (0.5 %) of the resized pixels, the
    antialiased edges of painted masks, are merged into the nearest major colour (Euclidean
    RGB). Small regions painted on purpose below that size are merged as well.

    Args:
        ref: a path, bytes, or a binary file object (e.g. a Streamlit upload).
        size: (H, W) of the image the mask belongs to, at its working size, pixels.
        role: what the mask is for; it starts error messages (``"style mask"``).

    Returns:
        (labels, colors): (H, W) ``torch.long`` map with values 0..K-1, and the K region
        colours (r, g, b), 0-255, in ascending order of the packed 0xRRGGBB value.

    Raises:
        explorer.images.ImageError: an unreadable file (one-line message).
        ValueError: an aspect ratio more than 5 % off the image's (the message gives both
            sizes), no colour large enough to be a region, or more than :data:`MAX_REGIONS`
            regions (a photo instead of a flat-colour mask).
    """
    from .images import load_mask_image

    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be (H, W) in pixels; got {size!r}")
    image = f"the {role.removesuffix(' mask')} image" if role.endswith(" mask") else "its image"
    li = load_mask_image(ref, (h, w), role=role, image=image)
    mw, mh = li.image.size
    im = li.image if (mw, mh) == (w, h) else li.image.resize((w, h), Image.NEAREST)
    rgb = np.asarray(im, dtype=np.uint8).reshape(-1, 3).astype(np.int64)
    codes = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    major = counts >= MIN_COLOR_FRACTION * codes.size
    if not major.any():
        raise ValueError(f"{role} {li.name}: no colour covers {MIN_COLOR_FRACTION:.1%} of the mask; "
                         "paint the regions in flat colours")
    if int(major.sum()) > MAX_REGIONS:
        raise ValueError(f"{role} {li.name} has {int(major.sum())} colours covering {MIN_COLOR_FRACTION:.1%} or more "
                         f"each; a mask has at most {MAX_REGIONS} flat-colour regions (is it a photo?)")
    palette = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], 1)      # (U, 3)
    major_idx = np.flatnonzero(major)
    d = ((palette[:, None, :] - palette[None, major_idx, :]) ** 2).sum(-1)          # (U, K)
    to_major = d.argmin(1)                                                            # major colours map to themselves
    labels = to_major[inverse.reshape(-1)].reshape(h, w)
    colors = [tuple(int(v) for v in palette[i]) for i in major_idx]
    return torch.from_numpy(labels.astype(np.int64)), colors


# ----------------------------------------------------------------------------- k-means masks

#: Display colours of k-means clusters (distinct hues, so neighbouring clusters differ).
CLUSTER_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
                  (148, 103, 189), (140, 86, 75), (227, 119, 194), (188, 189, 34)]
_KMEANS_SAMPLE = 10_000  # pixels sampled from each image to fit the centroids


def _image_hwc(t: torch.Tensor, what: str) -> np.ndarray:
    if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.shape[0] != 1 or t.shape[1] != 3:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"the {what} image must have shape (1, 3, H, W); got {shape}")
    return _as_hwc(t)


def _kmeans_pp(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007); fewer than k centres when the data has
    fewer distinct points."""
    centres = [data[rng.integers(len(data))]]
    d2 = ((data - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 1e-12:
            break
        c = data[rng.choice(len(data), p=d2 / total)]
        centres.append(c)
        d2 = np.minimum(d2, ((data - c) ** 2).sum(1))
    return np.stack(centres)


def _majority3(labels: np.ndarray, k: int) -> np.ndarray:
    """3x3 majority (mode) filter of a label map (ties: the lower label)."""
    from scipy.ndimage import uniform_filter

    onehot = (labels[None] == np.arange(k)[:, None, None]).astype(np.float32)
    votes = uniform_filter(onehot, size=(1, 3, 3), mode="nearest")
    return votes.argmax(0)


def auto_masks(content: torch.Tensor, style: torch.Tensor, k: int, seed: int = 0, *,
               smooth: bool = True) -> RegionMasks:
    """Region masks without any weights: k-means colour clusters shared by both images.

    Both images are converted to CIELAB (``skimage.color.rgb2lab``, so distances follow
    perceived colour differences); up to 10 000 pixels of each image are sampled (seeded) and
    clustered *together* with ``scipy.cluster.vq.kmeans2`` (k-means++ seeding from the same
    seed, then Lloyd iterations), so cluster c means the same colours in both images. Every
    pixel then gets its nearest centroid; a 3x3 majority filter removes isolated pixels
    (``smooth``). Clusters are numbered by lightness (cluster 1 darkest) and paired with
    :func:`match_regions`' rules (a cluster only one image has is dropped with a note).
    Deterministic for a given seed.

    Args:
        content, style: (1, 3, H, W) images in [0, 1] (sizes may differ).
        k: number of clusters, 2..8. Fewer regions result when the images have fewer distinct
            colours (noted).
        seed: random seed of the sampling and the seeding.
        smooth: apply the 3x3 majority filter.

    Returns:
        :class:`RegionMasks` named ``"cluster 1"`` ... with distinct display colours.

    Raises:
        ValueError: bad shapes or values, k outside 2..8, or no cluster in both images.
    """
    from scipy.cluster.vq import kmeans2, vq
    from skimage.color import rgb2lab

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= len(CLUSTER_COLORS):
        raise ValueError(f"k (the number of colour clusters) must be a whole number from 2 to "
                         f"{len(CLUSTER_COLORS)}; got {k!r}")
    c_img, s_img = _image_hwc(content, "content"), _image_hwc(style, "style")
    c_lab = rgb2lab(c_img).reshape(-1, 3)
    s_lab = rgb2lab(s_img).reshape(-1, 3)
    rng = np.random.default_rng(int(seed))
    sample = np.concatenate([
        lab[rng.choice(len(lab), size=min(len(lab), _KMEANS_SAMPLE), replace=False)] for lab in (c_lab, s_lab)])
    init = _kmeans_pp(sample, int(k), rng)
    notes = []
    if len(init) < k:
        notes.append(f"the images have only {len(init)} distinct colours, so {len(init)} clusters instead of {k}")
    with warnings.catch_warnings():  # an empty cluster keeps its centre (dropped below if unused)
        warnings.simplefilter("ignore")
        centroids, _ = kmeans2(sample, init, iter=20, minit="matrix", missing="warn")
    order = np.argsort(centroids[:, 0], kind="stable")           # by lightness L*
    centroids = centroids[order]
    kk = len(centroids)
    c_lab_labels = vq(c_lab, centroids, check_finite=False)[0].reshape(c_img.shape[:2])
    s_lab_labels = vq(s_lab, centroids, check_finite=False)[0].reshape(s_img.shape[:2])
    if smooth:
        c_lab_labels = _majority3(c_lab_labels, kk)
        s_lab_labels = _majority3(s_lab_labels, kk)
    keys = list(range(kk))
    masks = _match(torch.from_numpy(c_lab_labels.astype(np.int64)), keys,
                   torch.from_numpy(s_lab_labels.astype(np.int64)), keys,
                   {i: f"cluster {i + 1}" for i in keys}, {i: CLUSTER_COLORS[i] for i in keys})
    masks.notes = notes + [n.replace("mask", "image") for n in masks.notes]
    return masks


# ----------------------------------------------------------------------------- segmentation masks

_seg_lock = threading.Lock()
_seg_models: dict[tuple[str, str], torch.nn.Module] = {}


def _seg_weights():
    from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights

    return DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1


def segmentation_weights_file() -> str:
    """File name of the DeepLabV3 weights (``deeplabv3_resnet50_coco-cd0a2569.pth``), to put
    in ``EXPLORER_WEIGHTS_DIR`` or torch's cache for offline use."""
    return Path(urlparse(_seg_weights().url).path).name


def _seg_missing(reason: str):
    from .weights import WeightsError, cache_dir, weights_dir

    wts = _seg_weights()
    fname = segmentation_weights_file()
    size = float(wts.meta.get("_file_size", 0.0))
    wd = weights_dir()
    where = f"EXPLORER_WEIGHTS_DIR ({wd})" if wd else "a folder named by EXPLORER_WEIGHTS_DIR"
    head = (f"no pretrained weights for DeepLabV3 segmentation masks: {fname} ({size:.0f} MB) is not in {where} "
            f"nor in torch's cache ({cache_dir()}), and {reason}. Download it on a machine with internet "
            f"(python -c \"from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights as W; "
            f"W.COCO_WITH_VOC_LABELS_V1.get_state_dict()\" saves it in torch's cache) and copy the file into one "
            f"of those folders")
    return WeightsError(head + ", or use colour mask files or k-means masks (auto) instead.",
                        app_message=head + ", or pick colour mask files or k-means masks instead.")


def _seg_source() -> Path:
    """The DeepLabV3 weights file: EXPLORER_WEIGHTS_DIR, then torch's cache, then a download
    with a timeout (unless EXPLORER_OFFLINE=1), :func:`explorer.weights.fetch_weights`."""
    from .weights import WeightsError, fetch_weights

    try:
        return fetch_weights(_seg_weights())
    except WeightsError as exc:
        raise _seg_missing(str(exc)) from None


def _seg_model(device: torch.device) -> torch.nn.Module:
    """DeepLabV3-ResNet50 with the pretrained COCO/VOC weights (never untrained), cached."""
    from torchvision.models.segmentation import deeplabv3_resnet50

    from .weights import load_state_dict_into, read_state_dict

    path = _seg_source()
    key = (str(path), str(device))
    with _seg_lock:
        net = _seg_models.get(key)
        if net is None:
            sd = read_state_dict(path)
            with torch.device("meta"):
                net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
            load_state_dict_into(net, sd, "deeplabv3_resnet50", str(path))
            net.aux_classifier = None
            net = net.eval().requires_grad_(False).to(device)
            _seg_models.clear()  # one model (about 160 MB) at a time
            _seg_models[key] = net
    return net


def _voc_color(i: int) -> tuple[int, int, int]:
    """The PASCAL VOC colour map's colour of class i."""
    r = g = b = 0
    c = i
    for j in range(8):
        r |= ((c >> 0) & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return (r, g, b)


@torch.no_grad()
def _segment(net: torch.nn.Module, image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    x = image.float()
    if scale != 1.0:
        x = F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                          align_corners=False, antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
    logits = net((x - mean) / std)["out"].float()
    logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].cpu()


def segmentation_masks(content: torch.Tensor, style: torch.Tensor, device: str | torch.device | None = None, *,
                       size: int = 520) -> RegionMasks:
    """Region masks from semantic segmentation: torchvision's DeepLabV3-ResNet50 with the
    ``COCO_WITH_VOC_LABELS_V1`` weights (21 PASCAL VOC classes: background, aeroplane, ...,
    tvmonitor), as Luan et al. 2017 use automatic segmentation when no masks are painted.

    Each image is resized so that its shorter side is ``size`` px (the weights' own 520 px),
    normalized with ImageNet mean/std, segmented, and the per-class scores are resized back to
    the image's size before the arg-max. Classes found in both images become the regions
    (:func:`match_regions`' rules), named by the weights' categories, in the VOC colour map.

    Weights are found as for the classification networks (:mod:`explorer.weights`):
    ``EXPLORER_WEIGHTS_DIR``, then torch's cache (``$TORCH_HOME/hub/checkpoints``), then a
    download through torchvision's weights API unless ``EXPLORER_OFFLINE=1``; loaded with
    ``torch.load(weights_only=True)``. There is never an untrained fallback: untrained
    segmentation would be meaningless.

    Args:
        content, style: (1, 3, H, W) images in [0, 1].
        device: where the network runs (:func:`explorer.devices.resolve_device`; default auto).
        size: the shorter side, pixels, the network sees (>= 32).

    Returns:
        :class:`RegionMasks` at the content's and the style's sizes.

    Raises:
        explorer.weights.WeightsError: no pretrained weights (one line saying how to get them),
            or a file that is not these weights.
        ValueError: bad shapes or values, or no class found in both images.
    """
    from .devices import resolve_device

    _image_hwc(content, "content")
    _image_hwc(style, "style")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be a whole number of pixels >= 32; got {size!r}")
    dev = resolve_device(device if device is not None else "auto")
    net = _seg_model(dev)
    c_labels = _segment(net, content.to(dev), int(size))
    s_labels = _segment(net, style.to(dev), int(size))
    cats = list(_seg_weights().meta["categories"])
    keys = list(range(len(cats)))
    names = {i: ("background" if cats[i] == "__background__" else cats[i]) for i in keys}
    return _match(c_labels, keys, s_labels, keys, names, {i: _voc_color(i) for i in keys})


# ============================================================================= augmented style loss

def region_layer_masks(masks: torch.Tensor, model, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Resample R region masks to every layer's resolution by area averaging
    (``F.adaptive_avg_pool2d``: each layer cell gets the mean of the input pixels it covers),
    all regions at once; :func:`explorer.guided.layer_masks` is the one-map case.

    Args:
        masks: (R, H, W) masks in [0, 1] at the size of the image the network sees.
        model: the :class:`~explorer.models.FeatureNet` (only its architecture is used).
        layers: layer names.

    Returns:
        dict layer -> (R, H_l, W_l) float32 tensor in [0, 1], on ``masks``' device.

    Raises:
        UnknownLayerError: an unknown layer; ValueError: masks not (R, H, W), or a layer
            without spatial maps.
    """
    from .activations import output_shape

    if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"region masks must have shape (R, H, W); got {shape}")
    layers = model.check_layers(layers)
    _, h, w = masks.shape
    out = {}
    m = masks.float()[:, None]
    for name in layers:
        shape = output_shape(model.name, name, h, w)
        if len(shape) != 3:
            raise ValueError(f"{name} has no spatial maps; pick a convolutional layer")
        out[name] = F.adaptive_avg_pool2d(m, shape[1:])[:, 0]
    return out


def region_valid(layer_masks: torch.Tensor) -> torch.Tensor:
    """Which regions are non-empty at a layer, i.e. take part in the augmented style loss of
    Luan et al. 2017 eq. (3a) there.

    Args:
        layer_masks: (R, H_l, W_l) region masks in [0, 1] at the layer's resolution.

    Returns:
        (R,) bool tensor on the masks' device: True where the region's total weight (sum of its
        area-averaged mask, in layer positions) exceeds :data:`EMPTY_REGION_WEIGHT`.

    Raises:
        ValueError: masks that are not (R, H_l, W_l).
    """
    if not isinstance(layer_masks, torch.Tensor) or layer_masks.dim() != 3:
        raise ValueError("layer masks must have shape (R, H_l, W_l)")
    return layer_masks.flatten(1).float().sum(1) > EMPTY_REGION_WEIGHT


class RegionTargets(dict):
    """dict layer -> (R, N_l, N_l) float32 style targets, one normalized masked Gram per region;
    ``valid`` holds, per layer, the (R,) bool of regions with a non-empty style mask there.
    Invalid regions have an all-zero target, which :func:`region_style_layer_loss` skips
    (also when only the plain dict survives, e.g. after ``{l: t.to(dev) for ...}``)."""

    def __init__(self, targets: dict[str, torch.Tensor], valid: dict[str, torch.Tensor]):
        super().__init__(targets)
        self.valid = valid


@torch.no_grad()
def region_style_targets(model, style: torch.Tensor, style_masks: torch.Tensor, layers: Sequence[str],
                         pooling: str = "max") -> RegionTargets:
    """Per region and style layer, the style image's normalized masked Gram matrix
    G_{l,c}[S] of Luan et al. 2017 eq. (3a)-(3b), via :func:`explorer.guided.masked_gram`:
    G_w = F diag(w) F^T / sum_k w_k with w the region's style mask area-averaged to layer l.

    A region whose style mask is (numerically) empty at a layer (:func:`region_valid`) gets an
    all-zero target there; ``result.valid[layer]`` says which regions are valid, and
    :func:`region_style_layer_loss` skips zero targets.

    Args:
        model: the :class:`~explorer.models.FeatureNet`.
        style: (1, 3, H, W) style image in [0, 1].
        style_masks: (R, H, W) region masks of the style image (0/1 or in [0, 1]).
        layers: style layers.
        pooling: ``"max"`` or ``"avg"``, as in :class:`~explorer.style.StyleSettings`.

    Returns:
        :class:`RegionTargets`: dict layer -> (R, N_l, N_l) float32 on the model's device
        (features computed in float32, no autocast).

    Raises:
        ValueError: shapes that do not match; UnknownLayerError.
    """
    from .guided import masked_gram

    if not isinstance(style, torch.Tensor) or style.dim() != 4 or style.shape[:2] != (1, 3):
        raise ValueError(f"the style image must have shape (1, 3, H, W); got "
                         f"{tuple(style.shape) if isinstance(style, torch.Tensor) else type(style).__name__}")
    if not isinstance(style_masks, torch.Tensor) or style_masks.dim() != 3:
        raise ValueError("style region masks must have shape (R, H, W)")
    if tuple(style_masks.shape[-2:]) != tuple(style.shape[-2:]):
        raise ValueError(f"style masks are {style_masks.shape[-1]}x{style_masks.shape[-2]} px but the style image is "
                         f"{style.shape[-1]}x{style.shape[-2]} px")
    layers = model.check_layers(layers)
    masks = region_layer_masks(style_masks.to(model.device), model, layers)
    feats = model.features(style.to(model.device, torch.float32), layers, pooling=pooling)
    targets, valid = {}, {}
    for name in layers:
        f = feats[name].float()
        ok = region_valid(masks[name])
        n = f.shape[1]
        t = torch.zeros(len(ok), n, n, device=f.device, dtype=torch.float32)
        for r in torch.nonzero(ok).flatten().tolist():
            t[r] = masked_gram(f, masks[name][r])[0]
        targets[name], valid[name] = t, ok
    return RegionTargets(targets, valid)


@dataclass
class RegionPlan:
    """Where each region of one layer is: the positions with a weight > 0 and sqrt(weight)
    there. Built once per run by :func:`region_plan`, so that every step's Gram matrix of a
    region is a product over that region's positions only (together about one full Gram
    matrix per layer instead of one per region), with no host-device synchronization.

    Attributes:
        index: per region, a 1-D long tensor of flattened positions (y * W_l + x).
        root: per region, sqrt(w) at those positions, 1-D float32.
    """

    index: list[torch.Tensor]
    root: list[torch.Tensor]


def region_plan(masks: torch.Tensor) -> RegionPlan:
    """The :class:`RegionPlan` of (R, H_l, W_l) region masks in [0, 1] at one layer (one host
    synchronization per region; call it once, not every step)."""
    if masks.dim() != 3:
        raise ValueError(f"expected region masks of shape (R, H_l, W_l); got {tuple(masks.shape)}")
    flat = masks.float().clamp(min=0).flatten(1)
    index = [torch.nonzero(row > 0).flatten() for row in flat]
    return RegionPlan(index=index, root=[row[i].sqrt() for row, i in zip(flat, index)])


def region_style_layer_loss(features: torch.Tensor, masks: torch.Tensor, targets: torch.Tensor,
                            valid: torch.Tensor | None = None, plan: RegionPlan | None = None) -> torch.Tensor:
    """One layer's augmented style term, Luan et al. 2017 eq. (3a)-(3b):

        L^l_{s+} = sum_{c=1..R} 1/(4 N^2) sum_ij (G_{l,c}[O] - G_{l,c}[S])_ij^2,

    with G_{l,c}[O] = F diag(w_c) F^T / sum_k w_{c,k} the normalized masked Gram of the
    generated image's features under the *content* image's region-c mask w_c at this layer
    (:func:`explorer.guided.masked_gram`'s formula), and G_{l,c}[S] the target from
    :func:`region_style_targets`. With one all-ones region this is exactly
    :func:`explorer.style.style_layer_loss` against ``gram_matrix(F_s, normalize=True)``
    (Gatys et al. 2016 eq. (4)).

    Region c contributes 0 (and no gradient) when its content mask is empty at this layer
    (:func:`region_valid`), or when it is not valid on the style side: ``valid[c]`` False, or,
    without ``valid``, an all-zero target (how :func:`region_style_targets` marks empty style
    regions). No host-device synchronization: safe to call every step on a GPU.

    Args:
        features: (B, N, H_l, W_l) activations of the generated images (any float dtype;
            computed in float32, autocast off).
        masks: (R, H_l, W_l) content-image region masks at this layer
            (:func:`region_layer_masks` of :attr:`RegionMasks.content`).
        targets: (R, N, N) float32 style targets of this layer.
        valid: optional (R,) bool, regions whose style target is valid
            (``RegionTargets.valid[layer]``).
        plan: :func:`region_plan` of ``masks``: the same value, computed over each region's
            positions only (faster when regions are many or small).

    Returns:
        (B,) float32 tensor, differentiable with respect to ``features``.

    Raises:
        ValueError: shapes that do not match.
    """
    if features.dim() != 4:
        raise ValueError(f"expected features of shape (B, N, H, W); got {tuple(features.shape)}")
    b, n, h, w = features.shape
    if masks.dim() != 3 or tuple(masks.shape[-2:]) != (h, w):
        raise ValueError(f"region masks {tuple(masks.shape)} do not match the features' {h}x{w} positions "
                         "(expected (R, H_l, W_l))")
    r = masks.shape[0]
    if targets.dim() != 3 or tuple(targets.shape) != (r, n, n):
        raise ValueError(f"expected {r} region targets of shape ({r}, {n}, {n}); got {tuple(targets.shape)}")
    from .style import gram_matrix

    dev = features.device
    with _no_autocast(dev):
        wts = masks.to(dev, torch.float32).clamp(min=0).reshape(r, h * w)
        tg = targets.to(dev, torch.float32)
        total = wts.sum(1)                                                   # (R,)
        ok = total > EMPTY_REGION_WEIGHT
        if valid is not None:
            ok = ok & valid.to(dev, torch.bool).reshape(r)
        else:
            ok = ok & (tg.flatten(1).abs().amax(1) > 0)
        denom = torch.where(ok, total, torch.ones_like(total))
        scale = ok.float() / (4.0 * n * n)
        loss = torch.zeros(b, device=dev, dtype=torch.float32)
        if plan is not None:
            if len(plan.index) != r:
                raise ValueError(f"the region plan has {len(plan.index)} regions for {r} masks")
            # (B, M, N) view of the features: a plain view for channels_last storage
            if features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
                fm = features.permute(0, 2, 3, 1).reshape(b, h * w, n)
            else:
                fm = features.reshape(b, n, h * w).transpose(1, 2)
            for c in range(r):
                x = fm.index_select(1, plan.index[c].to(dev)).float() * plan.root[c].to(dev)[:, None]
                g = torch.bmm(x.transpose(1, 2), x) / denom[c]                   # (B, N, N) float32
                loss = loss + (g - tg[c]).pow(2).flatten(1).sum(1) * scale[c]
            return loss
        for c in range(r):
            # F diag(w) F^T = (F sqrt(w)) (F sqrt(w))^T: the Gram of the weighted features keeps their
            # memory layout (channels_last stays a (B, M, N) view) and has a one-product backward
            root = wts[c].sqrt().reshape(1, 1, h, w)
            g = gram_matrix(features * root) / denom[c]                      # (B, N, N) float32
            loss = loss + (g - tg[c]).pow(2).flatten(1).sum(1) * scale[c]
    return loss
