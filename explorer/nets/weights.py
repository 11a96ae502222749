"""Weights files: where a network's weights are looked for, reading ``state_dict`` files and
loading them into a network built on the meta device. Downloading them is :mod:`explorer.nets.download`.

Search order for ImageNet weights (see README "Weights and offline use"): ``EXPLORER_WEIGHTS_DIR``
(a folder holding torchvision's ``.pth`` files under their usual names, or another
``<name>-*.pth`` file such as ``vgg19-caffe-features-q8.pth``), then torch's cache
(``$TORCH_HOME/hub/checkpoints``), then a download into that cache with a timeout (unless
``EXPLORER_OFFLINE=1``). When none of that works, :class:`WeightsError` says which file is
needed, how large it is, where to put it and how to pre-download it (:class:`WeightsMissingError`);
a file that is there but unreadable, damaged (NaN or infinite values) or of the wrong kind is
never replaced by anything else: its error names it.

Also used by :mod:`explorer.style.regions` for its segmentation network (outside the registry).
"""

from __future__ import annotations

import functools
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from ..io.files import open_regular_file, short_reason
from .registry import MODELS, ModelSpec, get_spec

__all__ = [
    "WeightsError",
    "WeightsMissingError",
    "WeightsInfo",
    "weights_file_name",
    "cache_dir",
    "weights_dir",
    "untrained_allowed",
    "offline",
    "file_digest",
    "read_state_dict",
    "read_weights_file",
    "weights_file_problem",
    "find_weights_file",
    "find_local_weights",
    "missing_weights_error",
    "weights_status",
    "found_text",
    "load_state_dict_into",
]


class WeightsError(RuntimeError):
    """Pretrained weights could not be found or loaded. The message is one line that says
    which file is needed, its size, where to put it and how to pre-download it.

    Attributes:
        app_message: the same advice worded for the Streamlit app, what to do first.
        app_detail: where the app looked (paths), shown below it; may be empty.
    """

    def __init__(self, message: str, app_message: str | None = None, app_detail: str = ""):
        super().__init__(message)
        self.app_message = app_message or message
        self.app_detail = app_detail


class WeightsMissingError(WeightsError):
    """No file of a network's ImageNet weights on this machine and none could be downloaded
    (offline, or the download failed). The only case in which ``weights="auto"`` falls back to
    untrained weights (with ``EXPLORER_ALLOW_UNTRAINED=1``); a file that is there but cannot be
    used raises a plain :class:`WeightsError` naming it."""


@dataclass(frozen=True)
class WeightsInfo:
    """Where a network's parameters came from.

    Attributes:
        kind: ``"imagenet"``, ``"file"`` or ``"untrained"``.
        source: the file the weights were read from, or a note for untrained weights.
        label: short text shown on every page and report, naming the file, e.g.
            ``"weights from vgg19-caffe-features-q8.pth (conv layers only)"`` or
            ``"untrained weights (seed 0)"``.
        conv_only: the file held a VGG's convolutional layers only: the network ends at
            ``pool5`` and has no classifier (no class logits, top-5 or class objectives).
        digest: ``"sha256:"`` and the SHA-256 of the weights file's bytes (64 hex digits), so
            that two files of the same name are told apart; ``""`` for untrained weights.
        derivation: for weights derived from another file (a VGG normalized as in Gatys et al.,
            :mod:`explorer.nets.normalize`), the record of how they were made, as JSON text
            (source file and digest, images, size); ``""`` otherwise. Recipes carry it.
    """

    kind: str
    source: str
    label: str
    conv_only: bool = False
    digest: str = ""
    derivation: str = ""

    @property
    def untrained(self) -> bool:
        return self.kind == "untrained"


def weights_file_name(name: str) -> str:
    """File name torchvision uses for a model's ImageNet weights, e.g. ``vgg19-dcbb9e9d.pth``."""
    return get_spec(name).file_name


def cache_dir() -> Path:
    """torch's cache of downloaded weights, ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_dir() -> Path | None:
    """The offline weights folder named by ``EXPLORER_WEIGHTS_DIR``, or None."""
    d = os.environ.get("EXPLORER_WEIGHTS_DIR", "").strip()
    return Path(d).expanduser() if d else None


def untrained_allowed() -> bool:
    """True when ``EXPLORER_ALLOW_UNTRAINED`` is set to 1/true/yes."""
    return os.environ.get("EXPLORER_ALLOW_UNTRAINED", "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    """True when ``EXPLORER_OFFLINE`` forbids downloads."""
    return os.environ.get("EXPLORER_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _present(path: Path) -> bool:
    """Something is at ``path``: a file, but also a folder, a device, a pipe or a dangling link,
    so that a broken entry is reported (named) instead of passed over."""
    return os.path.lexists(path)


def find_weights_file(fname: str) -> Path | None:
    """The entry named ``fname`` (a file name such as ``vgg19-dcbb9e9d.pth``) in
    EXPLORER_WEIGHTS_DIR, else in torch's cache, or None. Entries that are not regular files
    count too: reading them says what they are."""
    for folder in (weights_dir(), cache_dir()):
        if folder is not None and _present(folder / fname):
            return folder / fname
    return None


def find_local_weights(name: str) -> Path | None:
    """torchvision's file for ``name`` in EXPLORER_WEIGHTS_DIR or torch's cache
    (:func:`find_weights_file`); failing that, in EXPLORER_WEIGHTS_DIR, another ``.pth``/``.pt``
    entry named ``<name>-*`` (e.g. ``vgg19-caffe-features-q8.pth``), the first in alphabetical
    order. Entries that are not regular files count too: reading them says what they are.

    Raises:
        ValueError: unknown model.
    """
    found = find_weights_file(weights_file_name(name))
    if found is not None:
        return found
    wd = weights_dir()
    if wd is not None and wd.is_dir():
        other = sorted(p for p in wd.glob(f"{name}-*") if p.suffix in (".pth", ".pt"))
        if other:
            return other[0]
    return None


def missing_weights_error(name: str, reason: str) -> WeightsError:
    """The :class:`WeightsMissingError` for a registered network whose ImageNet weights are not on
    this machine and could not be fetched (``reason``, a few words): which file is needed, its
    size, where to put it and how to pre-download it, for the CLI and (``app_message``) the app.

    Raises:
        ValueError: unknown model.
    """
    spec = get_spec(name)
    wd = weights_dir()
    where = f"EXPLORER_WEIGHTS_DIR ({wd})" if wd else "a folder named by EXPLORER_WEIGHTS_DIR"
    head = (f"no pretrained weights for {name}: {spec.file_name} ({spec.file_size_mb:.0f} MB) is not in "
            f"{where} nor in torch's cache ({cache_dir()}), and {reason}. "
            f"Pre-download it with `python -m explorer weights download --models {name}` on a machine with "
            f"internet and copy the file into one of those folders")
    # the page leads with what to do; the paths follow as detail
    app = (f"{spec.title} needs its ImageNet weights ({spec.file_name}, {spec.file_size_mb:.0f} MB), and "
           f"{reason}. To go on, tick “Use untrained weights” in the sidebar (results are labelled), or "
           f"pre-download the file with `python -m explorer weights download --models {name}` and put it in "
           "the folder named by EXPLORER_WEIGHTS_DIR or in torch's cache.")
    detail = (f"Looked in {where} and torch's cache ({cache_dir()}). Offline classrooms: see “Weights and "
              "offline use” in the README.")
    return WeightsMissingError(head + ", pass --weights FILE, or try it with untrained weights "
                                      "(--untrained or EXPLORER_ALLOW_UNTRAINED=1).", app_message=app, app_detail=detail)


#: Digests already computed, by (device, inode, size, modification time in ns) of the file.
_DIGESTS: dict[tuple[int, int, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """``"sha256:"`` followed by the SHA-256 of a file's bytes (64 hex digits), read in 1 MB
    blocks (about 0.1 s per 100 MB). Computed once per file in a process: a file of the same
    device, inode, size and modification time gives the digest it gave before.

    Raises:
        OSError: the file cannot be read.
    """
    import hashlib

    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    _DIGESTS[key] = "sha256:" + h.hexdigest()
    return _DIGESTS[key]


#: The first bytes of a ``torch.save`` file: a zip archive (PyTorch 1.6 and later), or the
#: legacy format (torchvision's older files), a pickled magic number.
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def _load_problem(exc: BaseException, head: bytes) -> str:
    """What went wrong in ``torch.load``, in a few words (torch's own messages run to many lines)."""
    if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc).lower():
        return ("it holds Python objects other than tensors (only plain state_dict files are read, with "
                "torch.load(weights_only=True))")
    if head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_MAGIC):
        return f"the file is truncated or damaged ({short_reason(exc, 80)})"
    return "it is not a PyTorch state_dict file (.pth/.pt)"


def _derivation(obj) -> dict | None:
    """The record a derived weights file keeps beside its ``state_dict`` (a ``derivation`` dict),
    or None."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and isinstance(obj.get("derivation"), dict):
        return obj["derivation"]
    return None


def _as_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of what ``torch.load`` gave: a ``state_dict``, ``model`` or
    ``model_state_dict`` entry unwrapped, ``module.`` prefixes dropped."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path}: it does not hold a state_dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """:func:`read_weights_file` without the record."""
    return read_weights_file(path)[0]


def read_weights_file(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The tensors of a weights file, and the record of how it was made when it is a derived file
    (``{"state_dict": ..., "derivation": {...}}``, :mod:`explorer.nets.normalize`), else None.
    Read with ``torch.load(weights_only=True)``; a ``state_dict``, ``model`` or
    ``model_state_dict`` entry is unwrapped, ``module.`` prefixes dropped.

    The path is opened without blocking and checked first
    (:func:`explorer.io.files.open_regular_file`): a folder, a device such as ``/dev/zero``, a
    named pipe or a socket is refused at once, saying what it is. Values are not checked here:
    :func:`load_state_dict_into` checks dtypes and NaN or infinite values.

    Raises:
        WeightsError: missing, not a regular file, not a PyTorch file, truncated, or not a dict
            of tensors (one line naming the file).
    """
    path = Path(path).expanduser()
    with open_regular_file(path, f"weights file {path}", limit=None, error=WeightsError) as fh:
        head = fh.read(len(_LEGACY_MAGIC))
        fh.seek(0)
        try:
            obj = torch.load(fh, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle/zip errors, or objects that are not plain tensors
            raise WeightsError(f"could not read weights file {path}: {_load_problem(exc, head)}") from None
    return _as_state_dict(obj, path), _derivation(obj)


def weights_file_problem(path: str | os.PathLike) -> str | None:
    """Why a weights file cannot be read, in a few words, or None when it can; cheap enough for
    a status table: a zip archive (``torch.save``'s format) is opened memory-mapped (its index
    and the pickle are read and checked to hold only tensors; the tensor data is not read), a
    legacy-format file is checked by its header only. NaN or infinite values and keys or shapes
    that do not fit a network show only when the file is loaded (:func:`load_state_dict_into`).

    Args:
        path: the file (anything at that path: a folder or a device is a problem too).

    Returns:
        e.g. ``"the file is truncated or damaged (...)"``, ``"this is a folder, not a file"``,
        or None.
    """
    path = Path(path).expanduser()
    label = f"weights file {path}"
    try:
        with open_regular_file(path, label, limit=None, error=WeightsError) as fh:
            head = fh.read(len(_LEGACY_MAGIC))
        if head.startswith(_LEGACY_MAGIC):
            return None
        if not head.startswith(_ZIP_MAGIC):
            return "it is not a PyTorch state_dict file (.pth/.pt)"
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:
            return _load_problem(exc, head)
        _as_state_dict(obj, path)
    except WeightsError as exc:
        return str(exc).removeprefix(label + ": ")
    return None


def weights_status(names: Iterable[str] | None = None) -> list[dict]:
    """Where each model's ImageNet weights are on this machine.

    Returns:
        one dict per model: ``model``, ``file``, ``size_mb``, ``found`` (path or ``None``),
        ``problem`` (None, or why the found file cannot be read: :func:`weights_file_problem`),
        ``weights_dir``, ``cache_dir``.
    """
    out = []
    for n in names or MODELS:
        spec = get_spec(n)
        found = find_local_weights(n)
        out.append({
            "model": n, "file": spec.file_name, "size_mb": spec.file_size_mb,
            "found": str(found) if found else None,
            "problem": _status_problem(found) if found else None,
            "weights_dir": str(weights_dir()) if weights_dir() else None,
            "cache_dir": str(cache_dir()),
        })
    return out


def _status_problem(path: Path) -> str | None:
    """:func:`weights_file_problem`, remembered per version of the file (path, size, mtime, inode):
    every rerun of a page asks, and a file of hundreds of tensors takes a fraction of a second."""
    try:
        st = os.stat(path)
    except OSError:
        return weights_file_problem(path)
    return _problem_of_version(str(path), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=32)
def _problem_of_version(path: str, size: int, mtime_ns: int, inode: int) -> str | None:
    return weights_file_problem(path)


def found_text(row: dict, missing: str = "missing") -> str:
    """One line for a row of :func:`weights_status`: where its file is, ``"PATH: found but
    unreadable: REASON"``, or ``missing`` when there is none."""
    if not row["found"]:
        return missing
    return f"{row['found']}: found but unreadable: {row['problem']}" if row["problem"] else row["found"]


def _is_conv_only(spec: ModelSpec, sd: dict[str, torch.Tensor]) -> bool:
    """True for a VGG state dict holding only the ``features.N.*`` keys (no classifier), the form
    most style-transfer tools distribute (e.g. the original Caffe VGG19 conv layers)."""
    return spec.family == "vgg" and bool(sd) and all(k.startswith("features.") for k in sd)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _fitting_dtypes(own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], name: str, source: str,
                    prefix: str) -> dict[str, torch.Tensor]:
    """``sd`` cast to the dtypes of the model's own tensors where that is exact and meaningful:
    any floating dtype for float32 parameters and buffers, integers or floats for integer
    counters (BatchNorm's ``num_batches_tracked``). Integers or booleans as weights (almost
    surely another kind of file), complex or quantized tensors are refused, naming the first."""
    out = {}
    for k, mine in own.items():
        v = sd[k]
        if v.is_complex() or v.is_quantized or v.dtype == torch.bool or (
                mine.is_floating_point() and not v.is_floating_point()):
            wanted = ("floating-point values (float16, bfloat16, float32 or float64)" if mine.is_floating_point()
                      else "integers")
            raise WeightsError(f"weights file {source}: {prefix}{k} holds {_dtype_name(v.dtype)} values, "
                               f"where {name} needs {wanted}; this is not a file of network weights")
        out[k] = v.to(mine.dtype)
    return out


def _check_finite(sd: dict[str, torch.Tensor], source: str, prefix: str) -> None:
    """Refuse the first floating tensor holding a NaN or an infinity. ``aminmax`` (NaN propagates)
    needs no temporary as large as the tensor, unlike ``isfinite(t).all()``, and is much faster
    (0.15 s against 4 s for VGG19's fc6 weight, 102 million values, on a busy 2-core CPU)."""
    for k, v in sd.items():
        if v.is_floating_point() and v.numel():
            lo, hi = torch.aminmax(v.detach().reshape(-1))
            if not (torch.isfinite(lo) and torch.isfinite(hi)):
                raise WeightsError(f"weights file {source}: {prefix}{k} holds NaN or infinite values; "
                                   "the file is damaged")


def load_state_dict_into(model: nn.Module, sd: dict[str, torch.Tensor], name: str, source: str) -> bool:
    """Load ``sd`` into ``model`` (built on the meta device), strictly, casting any float dtype
    to float32. A VGG state dict with only ``features.*`` keys fills ``model.features``.

    Checked before anything is loaded, in this order: the keys, the shapes, the dtypes (a
    floating dtype for every parameter and floating buffer, integers or floats for integer
    buffers such as BatchNorm's ``num_batches_tracked``; never booleans, complex or quantized
    tensors), and that every value is finite (no NaN, no infinity, also after the cast to
    float32).

    Returns:
        True when the weights hold the convolutional layers only (no classifier).

    Raises:
        WeightsError: keys, shapes or dtypes that do not fit, or NaN or infinite values (one
            line naming the file and the first tensor concerned).
    """
    sd = {k: v for k, v in sd.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}
    spec = MODELS.get(name)  # also loads networks outside the registry (DeepLabV3 for explorer.photo)
    conv_only = spec is not None and _is_conv_only(spec, sd)
    target = model.features if conv_only else model
    if conv_only:
        sd = {k.removeprefix("features."): v for k, v in sd.items()}
    own = target.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    prefix = "features." if conv_only else ""
    if missing or unexpected:
        detail = (f"missing {[prefix + k for k in missing[:3]]}" if missing
                  else f"unexpected {[prefix + k for k in unexpected[:3]]}")
        raise WeightsError(f"{source} is not a {name} state_dict ({detail})")
    bad = [k for k in own if own[k].shape != sd[k].shape]
    if bad:
        raise WeightsError(f"{source} does not fit {name}: shape of {prefix}{bad[0]} is {tuple(sd[bad[0]].shape)}, "
                           f"expected {tuple(own[bad[0]].shape)}")
    sd = _fitting_dtypes(own, sd, name, source, prefix)  # fp16/bf16/fp64 files become float32
    _check_finite(sd, source, prefix)
    target.load_state_dict(sd, strict=True, assign=True)
    return conv_only
