"""Downloading torchvision's ImageNet weights files: into torch's cache, atomically, with a
timeout and the SHA-256 check torchvision's file names carry (:func:`download_file`); finding or
fetching the file of one network (:func:`fetch_weights`, :func:`imagenet_state_dict`), and
pre-downloading them for an offline classroom (:func:`download_weights`,
``python -m explorer weights download``).

Where weights are looked for first, and reading them, is :mod:`explorer.nets.weights`;
``EXPLORER_OFFLINE=1`` forbids every download.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlparse

import torch

from .registry import get_spec
from .weights import (WeightsError, cache_dir, find_local_weights, find_weights_file, missing_weights_error, offline,
                      read_state_dict)

__all__ = [
    "DOWNLOAD_TIMEOUT",
    "download_file",
    "fetch_weights",
    "imagenet_state_dict",
    "download_weights",
]


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
    found = find_weights_file(Path(urlparse(weights_enum.url).path).name)
    if found is not None:
        return found
    if offline():
        raise WeightsError("EXPLORER_OFFLINE=1 forbids downloading")
    try:
        return download_file(weights_enum.url, cache_dir(), progress)
    except OSError as exc:
        raise WeightsError(f"the download failed ({exc})") from None


def imagenet_state_dict(name: str, progress: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """The ImageNet weights of a registered network: found locally (EXPLORER_WEIGHTS_DIR, then
    torch's cache) or fetched (:func:`fetch_weights`), and read (:func:`explorer.nets.weights.read_state_dict`).

    Returns:
        (state_dict, the path of the file it was read from).

    Raises:
        ValueError: unknown model.
        WeightsMissingError: no file and no download; one line saying which file is needed and
            how to get it.
        WeightsError: a file is there but cannot be read (one line naming it).
    """
    local = find_local_weights(name)
    if local is None:
        try:
            local = fetch_weights(get_spec(name).weights_enum, progress)
        except WeightsError as exc:
            raise missing_weights_error(name, str(exc)) from None
    return read_state_dict(local), str(local)


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
