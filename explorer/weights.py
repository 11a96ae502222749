"""Weights files: where a network's weights are looked for, downloading them, reading
``state_dict`` files and loading them into a network built on the meta device.

Search order for ImageNet weights (see README "Weights and offline use"): ``EXPLORER_WEIGHTS_DIR``
(a folder holding torchvision's ``.pth`` files under their usual names, or another
``<name>-*.pth`` file such as ``vgg19-caffe-features-q8.pth``), then torch's cache
(``$TORCH_HOME/hub/checkpoints``), then a download into that cache with a timeout (unless
``EXPLORER_OFFLINE=1``). When none of that works, :class:`WeightsError` says which file is
needed, how large it is, where to put it and how to pre-download it.

Also used by :mod:`explorer.photo` for its segmentation network (outside the registry).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlparse

import torch
from torch import nn

from .registry import MODELS, ModelSpec, get_spec

__all__ = [
    "WeightsError",
    "WeightsInfo",
    "weights_file_name",
    "cache_dir",
    "weights_dir",
    "untrained_allowed",
    "offline",
    "file_digest",
    "read_state_dict",
    "DOWNLOAD_TIMEOUT",
    "download_file",
    "fetch_weights",
    "imagenet_state_dict",
    "weights_status",
    "download_weights",
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
    """

    kind: str
    source: str
    label: str
    conv_only: bool = False
    digest: str = ""

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


def _find_local(name: str) -> Path | None:
    """torchvision's file for ``name`` in EXPLORER_WEIGHTS_DIR or torch's cache; failing that, in
    EXPLORER_WEIGHTS_DIR, another ``.pth``/``.pt`` file named ``<name>-*`` (e.g.
    ``vgg19-caffe-features-q8.pth``), the first in alphabetical order."""
    fname = weights_file_name(name)
    folders = [f for f in (weights_dir(), cache_dir()) if f is not None]
    for folder in folders:
        if (folder / fname).is_file():
            return folder / fname
    wd = weights_dir()
    if wd is not None and wd.is_dir():
        other = sorted(p for p in wd.glob(f"{name}-*") if p.suffix in (".pth", ".pt") and p.is_file())
        if other:
            return other[0]
    return None


def _missing_error(name: str, reason: str) -> WeightsError:
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
    return WeightsError(head + ", pass --weights FILE, or try it with untrained weights "
                               "(--untrained or EXPLORER_ALLOW_UNTRAINED=1).", app_message=app, app_detail=detail)


def file_digest(path: str | os.PathLike) -> str:
    """``"sha256:"`` followed by the SHA-256 of a file's bytes (64 hex digits), read in 1 MB
    blocks (about 0.1 s per 100 MB).

    Raises:
        OSError: the file cannot be read.
    """
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return "sha256:" + h.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (``torch.load(weights_only=True)``; a ``state_dict``,
    ``model`` or ``model_state_dict`` entry is unwrapped, ``module.`` prefixes dropped).

    Raises:
        WeightsError: missing, not a PyTorch file, or not a dict of tensors (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickle/zip errors, or objects that are not plain tensors
        raise WeightsError(f"could not read weights file {path}: it is not a PyTorch state_dict file (.pth/.pt) "
                           "holding only tensors") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} does not hold a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


#: Seconds a weights download may wait to connect, and then for each block of data: behind a
#: network that accepts connections and never answers, the download gives up with one line
#: instead of hanging (torchvision's own download has no timeout). ``EXPLORER_DOWNLOAD_TIMEOUT``
#: sets another value.
DOWNLOAD_TIMEOUT = 30.0


def _download_timeout() -> float:
    raw = os.environ.get("EXPLORER_DOWNLOAD_TIMEOUT", "").strip()
    try:
        value = float(raw) if raw else DOWNLOAD_TIMEOUT
    except ValueError:
        raise WeightsError(f"EXPLORER_DOWNLOAD_TIMEOUT must be a number of seconds; got {raw!r}") from None
    if not 0 < value < 1e6:
        raise WeightsError(f"EXPLORER_DOWNLOAD_TIMEOUT must be a positive number of seconds; got {raw!r}")
    return value


def download_file(url: str, folder: Path, progress: bool | Callable[[int, int], None] = True,
                  timeout: float | None = None) -> Path:
    """Download ``url`` into ``folder`` under its own file name, atomically (a hidden
    ``.part`` file renamed when complete), checking the SHA-256 prefix torchvision puts in its
    file names (``vgg19-dcbb9e9d.pth``: the digest starts with ``dcbb9e9d``).

    Args:
        url: an http(s) address.
        folder: where the file goes (created).
        progress: True for a tqdm bar on stderr, False for none, or a function called with
            (bytes so far, total bytes or 0) after each block.
        timeout: seconds to connect and for each block (default: ``EXPLORER_DOWNLOAD_TIMEOUT``
            or :data:`DOWNLOAD_TIMEOUT`).

    Returns:
        the file's path.

    Raises:
        OSError: the download failed or timed out, or the digest does not match (one line).
    """
    import hashlib
    import urllib.request

    timeout = _download_timeout() if timeout is None else timeout
    name = Path(urlparse(url).path).name
    folder.mkdir(parents=True, exist_ok=True)
    dest, part = folder / name, folder / f".{name}.part"
    match = torch.hub.HASH_REGEX.search(name)
    digest = hashlib.sha256()
    bar = None
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "dream-style-explorer"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(part, "wb") as fh:
            total, done = int(resp.headers.get("Content-Length") or 0), 0
            if progress is True:
                from tqdm.auto import tqdm

                bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=name)
            while block := resp.read(1 << 20):
                fh.write(block)
                digest.update(block)
                done += len(block)
                if bar is not None:
                    bar.update(len(block))
                elif callable(progress):
                    progress(done, total)
        if match and not digest.hexdigest().startswith(match.group(1)):
            raise OSError(f"{name} is damaged: its SHA-256 does not start with {match.group(1)}")
        os.replace(part, dest)
    except TimeoutError:
        raise OSError(f"no answer from {urlparse(url).netloc} within {timeout:g} s") from None
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise OSError(f"no answer from {urlparse(url).netloc} within {timeout:g} s") from None
        raise OSError(" ".join(str(reason).split()) or type(exc).__name__) from None
    finally:
        if bar is not None:
            bar.close()
        part.unlink(missing_ok=True)
    return dest


def fetch_weights(weights_enum, progress: bool | Callable[[int, int], None] = True) -> Path:
    """The file of a torchvision weights entry: from EXPLORER_WEIGHTS_DIR, torch's cache, or
    downloaded into torch's cache (:func:`download_file`, with a timeout) unless
    EXPLORER_OFFLINE=1.

    Raises:
        WeightsError: offline, or the download failed; the message says why in a few words and
            the caller adds the way forward.
    """
    fname = Path(urlparse(weights_enum.url).path).name
    for folder in (weights_dir(), cache_dir()):
        if folder is not None and (folder / fname).is_file():
            return folder / fname
    if offline():
        raise WeightsError("EXPLORER_OFFLINE=1 forbids downloading")
    try:
        return download_file(weights_enum.url, cache_dir(), progress)
    except OSError as exc:
        raise WeightsError(f"the download failed ({exc})") from None


def imagenet_state_dict(name: str, progress: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """The ImageNet weights of a registered network: found locally (EXPLORER_WEIGHTS_DIR, then
    torch's cache) or fetched (:func:`fetch_weights`), and read (:func:`read_state_dict`).

    Returns:
        (state_dict, the path of the file it was read from).

    Raises:
        ValueError: unknown model.
        WeightsError: no file and no download; one line saying which file is needed and how to
            get it.
    """
    local = _find_local(name)
    if local is None:
        try:
            local = fetch_weights(get_spec(name).weights_enum, progress)
        except WeightsError as exc:
            raise _missing_error(name, str(exc)) from None
    return read_state_dict(local), str(local)


def weights_status(names: Iterable[str] | None = None) -> list[dict]:
    """Where each model's ImageNet weights are on this machine.

    Returns:
        one dict per model: ``model``, ``file``, ``size_mb``, ``found`` (path or ``None``),
        ``weights_dir``, ``cache_dir``.
    """
    out = []
    for n in names or MODELS:
        spec = get_spec(n)
        found = _find_local(n)
        out.append({
            "model": n, "file": spec.file_name, "size_mb": spec.file_size_mb,
            "found": str(found) if found else None,
            "weights_dir": str(weights_dir()) if weights_dir() else None,
            "cache_dir": str(cache_dir()),
        })
    return out


def download_weights(names: Iterable[str], dest: str | Path | None = None, progress: bool = True) -> list[Path]:
    """Download ImageNet weights (torchvision's files, with a timeout) into torch's cache and, when
    ``dest`` is given, copy them there too (to prepare an ``EXPLORER_WEIGHTS_DIR`` for an
    offline classroom machine). Returns the paths written.

    Raises:
        WeightsError: a download failed (the message names the file).
    """
    import shutil

    paths = []
    for n in names:
        spec = get_spec(n)
        cached = cache_dir() / spec.file_name
        if not cached.is_file():
            try:
                download_file(spec.weights_enum.url, cache_dir(), progress)
            except OSError as exc:
                raise WeightsError(f"download of {spec.file_name} ({spec.file_size_mb:.0f} MB) for {n} failed: "
                                   f"{exc}") from None
        if dest is not None:
            d = Path(dest).expanduser()
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / (spec.file_name + ".part")
            shutil.copyfile(cached, tmp)
            os.replace(tmp, d / spec.file_name)
            paths.append(d / spec.file_name)
        else:
            paths.append(cached)
    return paths


def _is_conv_only(spec: ModelSpec, sd: dict[str, torch.Tensor]) -> bool:
    """True for a VGG state dict holding only the ``features.N.*`` keys (no classifier), the form
    most style-transfer tools distribute (e.g. the original Caffe VGG19 conv layers)."""
    return spec.family == "vgg" and bool(sd) and all(k.startswith("features.") for k in sd)


def load_state_dict_into(model: nn.Module, sd: dict[str, torch.Tensor], name: str, source: str) -> bool:
    """Load ``sd`` into ``model`` (built on the meta device), strictly, casting any float dtype
    to float32. A VGG state dict with only ``features.*`` keys fills ``model.features``.

    Returns:
        True when the weights hold the convolutional layers only (no classifier).

    Raises:
        WeightsError: keys or shapes that do not fit (one line naming the first few).
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
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}  # fp16/bf16 files too
    target.load_state_dict(sd, strict=True, assign=True)
    return conv_only
