"""Writing results: checking an output path before any work, atomic writes (a temporary file
next to the target, then ``os.replace``, so a target is either the old file or the complete new
one) of PNG images, bytes and text, and in-memory encoders (PNG, animated GIF, ``.npy``) for
download buttons.

No Streamlit import here; the pages and the CLI share this module.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Mapping

import numpy as np
from PIL import Image, PngImagePlugin

__all__ = [
    "check_output_path",
    "save_png_atomic",
    "write_bytes_atomic",
    "write_text_atomic",
    "png_bytes",
    "gif_bytes",
    "npy_bytes",
]


def _png_info(pnginfo: Mapping[str, str] | None) -> PngImagePlugin.PngInfo | None:
    if not pnginfo:
        return None
    info = PngImagePlugin.PngInfo()
    for key, value in pnginfo.items():
        info.add_text(str(key), str(value))
    return info


def check_output_path(path: str | os.PathLike[str], label: str, *, folder: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written: it is not an existing folder (or,
    with ``folder``, not an existing file), and the nearest existing folder above it is a folder
    this process may write in (missing folders in between are created when writing).

    Returns:
        the path.

    Raises:
        ValueError: one line naming the path and what is wrong.
    """
    p = Path(os.fspath(path)).expanduser()
    if folder:
        if p.exists() and not p.is_dir():
            raise ValueError(f"{label} {path}: this is a file, not a folder")
    elif p.is_dir():
        raise ValueError(f"{label} {path}: this is a folder; name a file in it")
    parent = p if folder and p.is_dir() else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{label} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{label} {path}: cannot write in {parent} (permission denied)")
    return p


def _write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None], suffix: str) -> Path:
    """Write through ``write(file)`` into a temp file next to ``path``, then os.replace.

    The temp file is removed if anything fails, so ``path`` is either the old
    file, untouched, or the complete new one.
    """
    target = Path(os.fspath(path)).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o777  # keep an existing file's permissions
    except OSError:
        mode = 0o644
    tmp = tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{target.name}.", suffix=suffix, delete=False
    )
    tmp_path = Path(tmp.name)
    try:
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, target)
    except BaseException:
        try:
            tmp_path.unlink()
        except FileNotFoundError:
            pass
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
        OSError / ValueError from Pillow or the file system (e.g. a mode PNG cannot
        store). On any failure the temporary file is removed and an existing file
        at ``path`` is left intact.
    """
    info = _png_info(pnginfo)
    return _write_atomic(path, lambda f: img.save(f, format="PNG", pnginfo=info), ".png")


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + ``os.replace``).

    Returns the destination ``Path``; missing parent folders are created.
    Raises ``OSError`` on file-system errors, leaving any existing file intact.
    """
    payload = bytes(data)
    return _write_atomic(path, lambda f: f.write(payload), ".tmp")


def write_text_atomic(text: str, path: str | os.PathLike[str], *, encoding: str = "utf-8") -> Path:
    """Write ``text`` (encoded as UTF-8 by default) to ``path`` atomically.

    Returns the destination ``Path``; missing parent folders are created.
    Raises ``OSError`` on file-system errors (``UnicodeEncodeError`` for text the
    encoding cannot represent), leaving any existing file intact.
    """
    return write_bytes_atomic(text.encode(encoding), path)


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
