"""Writing results: checking an output path before any work (only a regular file or a new path,
never a device, pipe or link, never on an input or on another output of the same run), atomic
writes (a temporary file next to the target, then ``os.replace``, so a target is either the old
file or the complete new one) of PNG images, bytes, text and JSON, and in-memory encoders (PNG,
animated GIF, ``.npy``, strict JSON) for download buttons.

No Streamlit import here; the pages and the CLI share this module.
"""

from __future__ import annotations

import errno
import functools
import io
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image, PngImagePlugin

__all__ = [
    "OutputPathError",
    "DiskFullError",
    "DISK_FULL_ERRNOS",
    "check_output_path",
    "check_apart",
    "is_inside",
    "save_png_atomic",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "json_text",
    "png_bytes",
    "gif_bytes",
    "npy_bytes",
]


class OutputPathError(ValueError):
    """An output path that must not be written: one line naming the path and why."""


#: ``errno`` values that mean the disk will not take the file: full, over quota, read-only.
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS) if e)

_DISK_REASONS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "the file system is read-only"}
if getattr(errno, "EDQUOT", None):
    _DISK_REASONS[errno.EDQUOT] = "the disk quota is exceeded"


class DiskFullError(OSError):
    """Writing an output failed because its disk is full, over quota or read-only
    (``errno`` in :data:`DISK_FULL_ERRNOS`); ``filename`` is the output, ``str()`` one line
    naming it. The output's old file, if any, is intact and no temporary file is left."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def _png_info(pnginfo: Mapping[str, str] | None) -> PngImagePlugin.PngInfo | None:
    if not pnginfo:
        return None
    info = PngImagePlugin.PngInfo()
    for key, value in pnginfo.items():
        info.add_text(str(key), str(value))
    return info


def _special_kind(mode: int) -> str | None:
    """How messages name a file that is not a regular file (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def check_output_path(path: str | os.PathLike[str], label: str, *, folder: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written: a regular file or a new path (not a
    device such as ``/dev/null``, a named pipe, a socket or a symbolic link, which the atomic
    writer would replace by a regular file), not an existing folder (or, with ``folder``, not
    an existing file), and the nearest existing folder above it is a folder this process may
    write in (missing folders in between are created when writing).

    Returns:
        the path.

    Raises:
        OutputPathError (a ValueError): one line naming the path and what is wrong.
    """
    p = Path(os.fspath(path)).expanduser()
    try:
        mode = os.lstat(p).st_mode
    except OSError:
        mode = None
    if folder:
        if p.exists() and not p.is_dir():
            raise OutputPathError(f"{label} {path}: this is a file, not a folder")
    elif p.is_dir():
        raise OutputPathError(f"{label} {path}: this is a folder; name a file in it")
    elif mode is not None and _special_kind(mode):
        raise OutputPathError(f"{label} {path}: this is {_special_kind(mode)}; outputs are written only to "
                              "regular files or new paths")
    parent = p if folder and p.is_dir() else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{label} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{label} {path}: cannot write in {parent} (permission denied)")
    return p


@functools.lru_cache(maxsize=256)
def _case_insensitive(folder: str) -> bool:
    """Whether names in ``folder`` (an existing folder) are looked up ignoring case, as on
    macOS's and Windows' default file systems or an ext4 folder with casefolding. Detected
    in the folder itself: another spelling of an entry's name is looked up (a short-lived
    probe file is made when the folder has no name with letters). False when unknown."""
    try:
        with os.scandir(folder) as entries:
            for n, entry in enumerate(entries):
                if n >= 64:
                    break
                other = entry.name.swapcase()
                if other != entry.name and other.swapcase() == entry.name:  # not "ß" -> "SS"
                    try:
                        a, b = os.lstat(entry.path), os.lstat(os.path.join(folder, other))
                    except OSError:
                        return False  # the other spelling is not there: case matters
                    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        fd, probe = tempfile.mkstemp(prefix=".case-probe-", dir=folder)
    except OSError:
        return False
    try:
        os.close(fd)
        return os.path.lexists(os.path.join(folder, os.path.basename(probe).swapcase()))
    finally:
        os.unlink(probe)


def _file_key(path: str | os.PathLike[str]) -> tuple:
    """What identifies the file ``path`` names, links resolved: (device, inode) of an existing
    file, else the nearest existing folder's (device, inode) and the names below it (case-folded
    where that folder ignores case)."""
    real = os.path.realpath(os.path.expanduser(os.fspath(path)))
    try:
        st = os.stat(real)
        return ("file", st.st_dev, st.st_ino)
    except OSError:
        pass
    head, names = real, []
    while True:
        head, name = os.path.split(head)
        names.append(name)
        try:
            st = os.stat(head)
            break
        except OSError:
            if os.path.dirname(head) == head:
                return ("path", real)
    fold = stat.S_ISDIR(st.st_mode) and _case_insensitive(head)
    return ("new", st.st_dev, st.st_ino, tuple(n.casefold() if fold else n for n in reversed(names)))


def is_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path`` lies somewhere under ``folder`` (links resolved; an existing folder is
    recognized however it is reached, a missing one by its resolved name; a path equal to
    ``folder`` is not inside it)."""
    real = os.path.realpath(os.path.expanduser(os.fspath(path)))
    top_real = os.path.realpath(os.path.expanduser(os.fspath(folder)))
    try:
        top = os.stat(top_real)
    except OSError:
        return real != top_real and os.path.commonpath([real, top_real]) == top_real
    here = os.path.dirname(real)
    while True:
        try:
            st = os.stat(here)
            if (st.st_dev, st.st_ino) == (top.st_dev, top.st_ino):
                return True
        except OSError:
            pass
        up = os.path.dirname(here)
        if up == here:
            return False
        here = up


def check_apart(outputs: Sequence[tuple[str, Any]], inputs: Sequence[tuple[str, Any]] = (),
                input_folders: Sequence[tuple[str, Any]] = ()) -> None:
    """Check, before any work, that every output of a run has its own file and that none is
    one of the run's inputs: two outputs on one path (``-o same.png --report same.png``), an
    output on an input (``--report photo.jpg``), or an output on an existing file inside a
    folder the run reads (a dataset, ``--images-dir``) are refused. Paths are compared as
    files, not as text: symbolic links are resolved, an existing file is the same however it
    is reached (hard links too), and where a folder ignores case (detected per folder) names
    that differ only in case are the same.

    Args:
        outputs: (how messages name it, path) of each file the run writes; None paths skipped.
        inputs: (name, path) of each file the run reads; None paths and inputs that do not
            exist (they fail on their own, with "not found") are skipped.
        input_folders: (name, folder) of each folder whose files the run reads.

    Raises:
        OutputPathError (a ValueError): one line naming both paths.
    """
    outs = [(label, p, _file_key(p)) for label, p in outputs if p is not None and str(p) != ""]
    for i, (label, p, key) in enumerate(outs):
        for other_label, q, other in outs[:i]:
            if key == other:
                raise OutputPathError(f"{other_label} {q} and {label} {p} are the same file; "
                                      "give each output its own file")
    for name, q in inputs:
        if q is None or str(q) == "" or not os.path.exists(os.path.expanduser(os.fspath(q))):
            continue
        key = _file_key(q)
        for label, p, out_key in outs:
            if out_key == key:
                raise OutputPathError(f"{label} {p} is the {name} ({q}); an output never replaces an "
                                      "input: name another file")
    for name, folder in input_folders:
        if folder is None or not os.path.isdir(os.path.expanduser(os.fspath(folder))):
            continue
        for label, p, out_key in outs:
            if out_key[0] == "file" and is_inside(p, folder):
                raise OutputPathError(f"{label} {p} is a file in the {name} {folder}, which the run reads; "
                                      "name a file outside it")


def _refuse_special(target: Path) -> None:
    """OutputPathError when ``target`` exists and is not a regular file (a device, a pipe, a
    socket or a symbolic link: ``os.replace`` would put a regular file in its place)."""
    try:
        kind = _special_kind(os.lstat(target).st_mode)
    except OSError:
        return
    if kind:
        raise OutputPathError(f"{target}: this is {kind}; outputs are written only to regular files or new paths")


def _write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None], suffix: str) -> Path:
    """Write through ``write(file)`` into a temp file next to ``path``, then os.replace.

    The temp file is removed if anything fails, so ``path`` is either the old file, untouched,
    or the complete new one. A target that is not a regular file (a device, a pipe, a socket,
    a symbolic link) is never replaced: OutputPathError, checked before writing and again just
    before the replace. A full, over-quota or read-only disk raises :class:`DiskFullError`
    naming ``path``.
    """
    target = Path(os.fspath(path)).expanduser()
    _refuse_special(target)
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = os.lstat(target).st_mode & 0o777  # keep an existing file's permissions
        except OSError:
            mode = 0o644
        tmp = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=suffix, delete=False)
        tmp_path = Path(tmp.name)
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_path, mode)
        _refuse_special(target)  # it may have been made a link or a pipe meanwhile
        os.replace(tmp_path, target)
    except BaseException as exc:
        if tmp_path is not None:
            try:
                tmp_path.unlink()
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(exc.errno, _DISK_REASONS.get(exc.errno, exc.strerror), str(target)) from exc
        raise
    return target


def save_png_atomic(
    img: Image.Image, path: str | os.PathLike[str], *, pnginfo: Mapping[str, str] | None = None
) -> Path:
    """Save ``img`` as PNG at ``path`` atomically.

    Args:
        img: any image mode PNG can store (normally 8-bit RGB).
        path: destination; missing parent folders are created.
        pnginfo: optional text chunks, e.g. ``{"weights": "untrained"}``.

    Returns:
        The destination path (``Path``).

    Raises:
        OutputPathError: ``path`` is a device, a pipe, a socket or a symbolic link.
        DiskFullError: the disk is full, over quota or read-only (one line naming ``path``).
        OSError / ValueError from Pillow or the file system (e.g. a mode PNG cannot
        store). On any failure the temporary file is removed and an existing file
        at ``path`` is left intact.
    """
    info = _png_info(pnginfo)
    return _write_atomic(path, lambda f: img.save(f, format="PNG", pnginfo=info), ".png")


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + ``os.replace``).

    Returns the destination ``Path``; missing parent folders are created.
    Raises :class:`OutputPathError` for a path that is not a regular file or a new path,
    :class:`DiskFullError` for a full, over-quota or read-only disk, ``OSError`` on other
    file-system errors; any existing file is left intact.
    """
    payload = bytes(data)
    return _write_atomic(path, lambda f: f.write(payload), ".tmp")


def write_text_atomic(text: str, path: str | os.PathLike[str], *, encoding: str = "utf-8") -> Path:
    """Write ``text`` (encoded as UTF-8 by default) to ``path`` atomically.

    Returns the destination ``Path``; missing parent folders are created.
    Raises as :func:`write_bytes_atomic` (and ``UnicodeEncodeError`` for text the
    encoding cannot represent), leaving any existing file intact.
    """
    return write_bytes_atomic(text.encode(encoding), path)


def _finite(value):
    """``value`` with every non-finite float (NaN, +-inf) replaced by None, recursively through
    dicts, lists and tuples; NumPy scalars and arrays become plain numbers and lists."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_text(obj: Any, *, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text, the one form of every report, recipe, ``--json`` file, PNG
    settings chunk and page download: a number that is not finite (a loss that became NaN or
    infinite) is written as ``null``, since bare ``NaN``/``Infinity`` are not JSON and strict
    readers (JavaScript, jq, most languages) refuse them. Recipes replay from this form.

    Args:
        obj: dicts, lists, tuples, strings, numbers (NumPy scalars too), booleans and None.
        indent: as :func:`json.dumps` (None: one line).

    Raises:
        TypeError: a value JSON cannot hold (an object of another type).
    """
    return json.dumps(_finite(obj), indent=indent, allow_nan=False)


def write_json_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as strict JSON (:func:`json_text`, UTF-8, a final newline) to ``path``
    atomically. Returns the destination; raises as :func:`write_text_atomic` and
    :func:`json_text`."""
    return write_text_atomic(json_text(obj) + "\n", path)


def png_bytes(img: Image.Image, pnginfo: Mapping[str, str] | None = None) -> bytes:
    """Encode ``img`` as PNG in memory (for download buttons).

    Args:
        img: any image mode PNG can store.
        pnginfo: optional text chunks.

    Returns:
        The PNG file contents.

    Raises:
        OSError / ValueError from Pillow for modes PNG cannot store.
    """
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", pnginfo=_png_info(pnginfo))
    return buffer.getvalue()


def gif_bytes(frames: list[Image.Image], duration_ms: int = 400, loop: int = 0) -> bytes:
    """Encode frames as an animated GIF in memory (Pillow's GIF writer, adaptive palette).

    Args:
        frames: RGB images; all are resized to the first frame's size.
        duration_ms: display time of each frame in milliseconds.
        loop: 0 = loop forever.

    Raises:
        ValueError: no frames.
    """
    if not frames:
        raise ValueError("an animation needs at least one frame")
    size = frames[0].size
    frames = [f if f.size == size else f.resize(size, Image.Resampling.LANCZOS) for f in frames]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms,
                   loop=loop, optimize=False)
    return buffer.getvalue()


def npy_bytes(values) -> bytes:
    """An array as the bytes of a ``.npy`` file (``numpy.save`` without pickling; read back
    with ``numpy.load``)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(values), allow_pickle=False)
    return buf.getvalue()
