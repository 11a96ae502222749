"""The Matting Laplacian and the photorealism regularizer of Deep Photo Style Transfer
(F. Luan, S. Paris, E. Shechtman, K. Bala, "Deep Photo Style Transfer", CVPR 2017).

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

Numbering: Luan et al.'s paper numbers the photorealism term eq. (2); the seed project's text
calls it "eq. 6". It is the same formula as above.

The semantic-region masks are in :mod:`explorer.style.regions`, the augmented style loss in
:mod:`explorer.photo`. No Streamlit here; pages and the CLI share this module.
"""

from __future__ import annotations

import numbers
import threading
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from ..core.devices import no_autocast

__all__ = [
    "MAX_LAPLACIAN_PIXELS",
    "as_hwc",
    "matting_laplacian",
    "MattingLaplacian",
    "photorealism_loss",
]

#: Largest image (pixels) :func:`matting_laplacian` builds: about 25 non-zeros per pixel, and
#: building takes about 1 KB per pixel at its peak (2 GB for 2 megapixels).
MAX_LAPLACIAN_PIXELS = 2 * 1024 * 1024


def as_hwc(image) -> np.ndarray:
    """An image as an (H, W, 3) float64 NumPy array (on the CPU), values checked.

    Args:
        image: (3, H, W) or (1, 3, H, W) float tensor (any device), or (H, W, 3) float NumPy
            array, RGB in [0, 1].

    Returns:
        (H, W, 3) float64 array in [0, 1] (values within 1e-6 outside are clipped).

    Raises:
        ValueError: another shape, a batch of more than one image, an integer dtype,
            non-finite values, or values outside [0, 1].
    """
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
    img = as_hwc(image)
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
        img = as_hwc(image)
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
        with no_autocast(x.device):
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
