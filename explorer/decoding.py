"""The low-level steps of reading and decoding a user's image, under :mod:`explorer.images`:
reading a regular file of bounded size (no pipes, devices or endless files), identifying the
format from the header without Pillow's decompression-bomb warning, converting a decoded image of
any mode to a new 8-bit ``"RGB"`` image, and applying the EXIF orientation.

Each conversion appends a plain-words note to a list the caller gives (e.g. ``"16-bit image
converted to 8-bit"``); :func:`explorer.images.load_image` shows them. Nothing here mutates
Pillow's global settings (only its plugin registry is initialised, once), so the module is safe
to use from Streamlit's threads. No torch, no Streamlit.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps

__all__ = [
    "MAX_FILE_BYTES",
    "short_reason",
    "open_regular_file",
    "read_regular_file",
    "ANIMATED_FORMATS",
    "identify",
    "to_rgb",
    "apply_exif_orientation",
    "clear_info",
]

#: Largest file read as an image or mask, in bytes (checked before reading: a huge or endless
#: file is refused at once instead of filling the memory).
MAX_FILE_BYTES = 256 * 2**20


# --------------------------------------------------------------------------- #
# reading a file
# --------------------------------------------------------------------------- #


def short_reason(exc: BaseException, limit: int = 120) -> str:
    """One-line, length-limited text of an exception, for parenthesised details."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_regular_file(path: str | os.PathLike, label: str, limit: int | None = MAX_FILE_BYTES,
                      error: type[Exception] = ValueError) -> BinaryIO:
    """A regular file of at most ``limit`` bytes, opened for reading (binary, buffered).

    The file is opened without blocking and checked with ``fstat`` before anything is read, so
    a named pipe (which would wait for a writer forever), a device such as ``/dev/zero``
    (endless) or a socket is refused at once, and so is a file larger than ``limit``.

    Args:
        path: the file.
        label: how messages name it, e.g. ``"content image 'x.png'"``.
        limit: the largest size accepted, bytes; None for any size.
        error: the exception class raised (one-line message).

    Returns:
        the open file (the caller closes it, e.g. ``with open_regular_file(...) as fh``).

    Raises:
        ``error``: not found, a folder, not a regular file, too large, or unreadable.
    """
    p = Path(os.fspath(path)).expanduser()
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise error(f"{label}: file not found") from None
    except IsADirectoryError:
        raise error(f"{label}: this is a folder, not a file") from None
    except PermissionError:
        raise error(f"{label}: could not read the file (permission denied)") from None
    except OSError as exc:
        if p.is_dir():
            raise error(f"{label}: this is a folder, not a file") from None
        raise error(f"{label}: could not read the file ({short_reason(exc)})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{label}: this is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            kind = "a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device" if (
                stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "a socket or other special file"
            raise error(f"{label}: this is {kind}, not a regular file")
        if limit is not None and st.st_size > limit:
            raise error(f"{label}: the file is {st.st_size / 2**20:.0f} MB; files up to {limit / 2**20:.0f} MB "
                        "are accepted")
        return os.fdopen(fd, "rb", closefd=True)
    except OSError as exc:
        os.close(fd)
        raise error(f"{label}: could not read the file ({short_reason(exc)})") from None
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike, label: str, limit: int = MAX_FILE_BYTES,
                      error: type[Exception] = ValueError) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (:func:`open_regular_file`'s
    checks first: no pipe, device, socket or folder, nothing larger than ``limit``).

    Args:
        path: the file.
        label: how messages name it, e.g. ``"content image 'x.png'"``.
        limit: the largest size accepted, bytes.
        error: the exception class raised (one-line message).

    Raises:
        ``error``: not found, a folder, not a regular file, too large, or unreadable.
    """
    with open_regular_file(path, label, limit, error) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise error(f"{label}: could not read the file ({short_reason(exc)})") from None
    if len(data) > limit:  # it grew while being read
        raise error(f"{label}: the file is larger than {limit / 2**20:.0f} MB")
    return data


# --------------------------------------------------------------------------- #
# identifying the format (header only, no decoding, no bomb warning)
# --------------------------------------------------------------------------- #

_plugins_ready = False


def _ensure_plugins() -> None:
    global _plugins_ready
    if not _plugins_ready:
        Image.preinit()  # common formats first, in Pillow's own order
        Image.init()
        _plugins_ready = True


def identify(data: bytes) -> ImageFile.ImageFile | None:
    """Open ``data`` with the first Pillow plugin that accepts it; header only.

    Mirrors the format search in :func:`PIL.Image.open` but without its built-in
    decompression-bomb check (which warns), so the caller can check the size itself.
    Returns None when no plugin recognises the data.  Raises the first plugin
    error when a plugin recognised the magic bytes but could not parse the header
    (and no other plugin could open it).
    """
    _ensure_plugins()
    prefix = data[:16]
    matched_error: BaseException | None = None
    for fmt in list(Image.ID):
        factory, accept = Image.OPEN[fmt]
        result = True if accept is None else accept(prefix)
        if not result or isinstance(result, str):
            continue
        try:
            return factory(io.BytesIO(data), "")
        except Exception as exc:
            # Like Image.open, go on to the next format; but remember the failure
            # when the magic bytes matched: then the file is a broken image of
            # that format rather than not an image at all.
            if accept is not None and matched_error is None:
                matched_error = exc
    if matched_error is not None:
        raise matched_error
    return None


# --------------------------------------------------------------------------- #
# conversion to 8-bit RGB
# --------------------------------------------------------------------------- #

#: Formats whose extra frames are animation frames (other multi-frame files have pages).
ANIMATED_FORMATS = {"GIF", "PNG", "WEBP", "FLI", "AVIF"}


def _composite_on_white(rgba: Image.Image, notes: list[str]) -> Image.Image:
    """RGBA -> RGB over a white background; note it only if something is transparent."""
    if rgba.getchannel("A").getextrema()[0] < 255:
        notes.append("transparent areas composited on white")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _gray_array_to_rgb(values: np.ndarray) -> Image.Image:
    gray = Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8), mode="L")
    return gray.convert("RGB")


def to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any decoded Pillow image to a new 8-bit ``"RGB"`` image.

    Raises:
        ValueError / OSError from Pillow for modes it cannot convert (the caller
        turns these into :class:`explorer.images.ImageError`).
    """
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode in ("L", "1"):
        notes.append(
            "black-and-white (1-bit) image converted to RGB" if mode == "1" else "grayscale converted to RGB"
        )
        return im.convert("RGB")
    if mode == "P":
        if "transparency" in im.info:
            return _composite_on_white(im.convert("RGBA"), notes)
        return im.convert("RGB")
    if mode == "RGBA":
        return _composite_on_white(im, notes)
    if mode in ("LA", "La", "PA", "RGBa"):
        if mode in ("LA", "La"):
            notes.append("grayscale converted to RGB")
        return _composite_on_white(im.convert("RGBA"), notes)
    if mode.startswith("I;16"):
        # Pillow's convert() clips 16-bit values to 0..255; scale instead.
        values = np.asarray(im).astype(np.float64)
        notes.append("16-bit image converted to 8-bit")
        notes.append("grayscale converted to RGB")
        return _gray_array_to_rgb(np.clip(np.round(values / 257.0), 0, 255))
    if mode == "I":
        # 32-bit integer grayscale: in practice 16-bit data (PNG/TIFF); scale 0..65535.
        values = np.asarray(im).astype(np.float64)
        notes.append("16-bit image converted to 8-bit")
        notes.append("grayscale converted to RGB")
        return _gray_array_to_rgb(np.clip(np.round(values / 257.0), 0, 255))
    if mode == "F":
        values = np.asarray(im).astype(np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        notes.append("floating-point image clipped to 0-255 and converted to 8-bit")
        notes.append("grayscale converted to RGB")
        return _gray_array_to_rgb(np.clip(np.round(values), 0, 255))
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
        return im.convert("RGB")
    if mode in ("YCbCr", "LAB", "HSV", "RGBX"):
        return im.convert("RGB")
    # Anything else Pillow might produce: let Pillow try, via RGBA to keep alpha right.
    try:
        return _composite_on_white(im.convert("RGBA"), notes)
    except (ValueError, OSError):
        return im.convert("RGB")


def apply_exif_orientation(im: Image.Image, notes: list[str]) -> Image.Image:
    """Return a transposed copy following the EXIF Orientation tag (2..8), with a note; ``im``
    itself when there is nothing to do or the EXIF block cannot be read (noted)."""
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # broken EXIF block: the pixels are fine, keep them as stored
        notes.append("EXIF data could not be read; orientation left as stored")
        return im
    if orientation in (3, 6, 8):
        notes.append("rotated according to EXIF orientation")
    elif orientation in (2, 4, 5, 7):
        notes.append("rotated/flipped according to EXIF orientation")
    else:
        return im
    return ImageOps.exif_transpose(im)


def clear_info(im: Image.Image) -> Image.Image:
    """Detach metadata that no longer describes the pixels (EXIF orientation etc.): empties
    ``im.info`` in place and returns ``im``."""
    im.info = {}
    return im
