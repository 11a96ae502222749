"""The low-level steps of reading and decoding a user's image, under :mod:`explorer.io.images`:
reading a regular file of bounded size (no pipes, devices or endless files), identifying the
format from the header among the accepted ones (:data:`ACCEPTED_FORMATS`, an allowlist of
Pillow plugins; no other plugin ever sees the bytes), bounding the work before and while
decoding (decoded bytes, peak memory, progressive JPEG scans, CPU time), converting a decoded
image of any mode to a new 8-bit ``"RGB"`` image (optionally scaled down on the way, converted
to sRGB from an embedded colour profile), and applying the EXIF orientation.

Each conversion appends a plain-words note to a list the caller gives (e.g. ``"16-bit image
converted to 8-bit"``); :func:`explorer.io.images.load_image` shows them. Nothing here mutates
Pillow's global settings (only its plugin registry is initialised, once), so the module is safe
to use from Streamlit's threads. No torch, no Streamlit.
"""

from __future__ import annotations

import functools
import io
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageMode


__all__ = [
    "ACCEPTED_FORMATS", "MAX_DECODED_BYTES", "MAX_DECODE_SECONDS", "MAX_JPEG_SCANS",
    "ANIMATED_FORMATS", "accepted_formats_text", "identify",
    "refused_format", "unsupported_tiff", "DecodeTimeout", "decode_deadline", "decoded_bytes",
    "decode_peak_bytes", "decoding_problem", "to_rgb", "exif_orientation", "orient", "apply_exif_orientation",
    "clear_info",
]

#: The formats decoded (Pillow plugin id -> the name users read): the one list that messages,
#: the upload help and the README name. Each is decoded in this process by Pillow's decoders
#: (zlib, libjpeg, libtiff, libwebp, libavif; parts of BMP and PPM in Python). No other plugin
#: ever sees the bytes: not EPS (Pillow hands it to Ghostscript, an external program with no
#: time limit), WMF, MPEG, FITS... JPEG includes MPO (phones), PPM includes PBM, PGM and PFM.
ACCEPTED_FORMATS: dict[str, str] = {
    "PNG": "PNG", "JPEG": "JPEG", "GIF": "GIF", "BMP": "BMP", "TIFF": "TIFF", "WEBP": "WebP",
    "PPM": "PBM/PGM/PPM", "AVIF": "AVIF",
}

#: Largest decoded image accepted, in bytes (width x height x bands x bytes per sample, as Pillow
#: stores it: 8-bit images of 2 to 4 bands take 4 bytes a pixel), checked from the header before
#: decoding. At Pillow's 89.5-megapixel limit an RGBA image takes 358 MB.
MAX_DECODED_BYTES = 512 * 2**20

#: CPU seconds (of the decoding thread) one image may take from identification to the 8-bit RGB
#: image: a file built to be slow to parse (a million empty PNG chunks, a run-length BMP of
#: single pixels) is stopped with :class:`DecodeTimeout` instead of holding a session or the
#: command line for minutes. A large legitimate image takes a few seconds.
MAX_DECODE_SECONDS = 20.0

#: Most scans a JPEG may have. Progressive JPEGs use about 10; a crafted file with thousands of
#: scans keeps libjpeg busy for minutes in one call that no deadline can interrupt, so it is
#: refused from its markers before decoding.
MAX_JPEG_SCANS = 100


# --------------------------------------------------------------------------- #
# identifying the format (accepted plugins only, header only, no bomb warning)
# --------------------------------------------------------------------------- #

_plugins_ready = False


def _ensure_plugins() -> None:
    global _plugins_ready
    if not _plugins_ready:
        Image.preinit()  # common formats first, in Pillow's own order
        Image.init()
        _plugins_ready = True


def accepted_formats_text() -> str:
    """The accepted formats this Pillow can decode, for messages: ``"PNG, JPEG, GIF, ..."``."""
    _ensure_plugins()
    return ", ".join(shown for fmt, shown in ACCEPTED_FORMATS.items() if fmt in Image.OPEN)


def identify(data: bytes) -> ImageFile.ImageFile | None:
    """Open ``data`` with the first accepted Pillow plugin (:data:`ACCEPTED_FORMATS`) that
    recognises it; header only.

    Mirrors the format search in :func:`PIL.Image.open`, but over the accepted plugins only (an
    EPS file never reaches Ghostscript, whatever its name) and without Pillow's bomb check
    (which warns; the caller checks the size). Returns None when no accepted plugin recognises
    the data. Raises the first plugin error when a plugin recognised the magic bytes but could
    not parse the header (and no other plugin could open it).
    """
    _ensure_plugins()
    prefix = data[:16]
    matched_error: BaseException | None = None
    for fmt in [f for f in Image.ID if f in ACCEPTED_FORMATS]:
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


def refused_format(data: bytes) -> str | None:
    """The Pillow plugin id (e.g. ``"EPS"``) of a format Pillow knows but this project refuses,
    recognised from the first 16 bytes by the plugin's own magic-number test (its ``accept``
    function; the plugin itself never sees the file), or None."""
    _ensure_plugins()
    for fmt in Image.ID:
        accept = Image.OPEN[fmt][1]
        if fmt not in ACCEPTED_FORMATS and accept is not None:
            try:
                if accept(data[:16]):
                    return fmt
            except Exception:  # a test that cannot read 16 bytes: not this format
                continue
    return None


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def unsupported_tiff(data: bytes) -> str | None:
    """Why Pillow cannot decode a TIFF whose samples it has no mode for, read from the header
    with tifffile (scikit-image's TIFF library; nothing is decoded), e.g. ``"32-bit float RGB
    TIFF is not supported; save it as 8- or 16-bit"``. None for other files and other
    problems."""
    if data[:4] not in _TIFF_MAGIC:
        return None
    try:
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            kind, bits, bands = page.dtype.kind, page.bitspersample, page.samplesperpixel
    except Exception:
        return None
    if kind == "f" and (bands > 1 or bits != 32):  # 32-bit float grayscale is Pillow's "F"
        colours = "RGB" if bands >= 3 else "grayscale"
        return f"{bits}-bit float {colours} TIFF is not supported; save it as 8- or 16-bit"
    return None


# --------------------------------------------------------------------------- #
# bounding the work: time while decoding, memory and scans before
# --------------------------------------------------------------------------- #


class DecodeTimeout(BaseException):
    """Decoding took more than its CPU-time limit (:func:`decode_deadline`). A
    ``BaseException`` like ``KeyboardInterrupt``, so that Pillow's ``except Exception`` clauses
    (a plugin that fails is skipped) do not swallow it."""


@contextmanager
def decode_deadline(seconds: float | None = None) -> Iterator[None]:
    """Stop the code in the ``with`` block once it has used ``seconds`` of this thread's CPU
    time (default :data:`MAX_DECODE_SECONDS`), raising :class:`DecodeTimeout`.

    Python's profiling hook (:func:`sys.setprofile`, this thread only) looks at the clock at
    every call and return, Python's and C's, so the Python-level parts of decoding (chunk and
    tag parsing, Pillow's pure-Python decoders) are stopped wherever they loop; one long call
    into C is stopped when it returns (bounded by the pixel and scan limits). A profiler
    already installed keeps receiving its events.

    Raises:
        DecodeTimeout: when the time is up (also when the block caught the first one).
    """
    limit = MAX_DECODE_SECONDS if seconds is None else float(seconds)
    clock = time.thread_time
    end = clock() + limit
    previous = sys.getprofile()
    expired = []

    def watch(frame, event, arg):
        if not expired and clock() > end:
            expired.append(True)
            raise DecodeTimeout(f"decoding took more than {limit:g} s of CPU time")
        if previous is not None:
            previous(frame, event, arg)

    sys.setprofile(watch)
    try:
        yield
    finally:
        sys.setprofile(previous)
    if expired:
        raise DecodeTimeout(f"decoding took more than {limit:g} s of CPU time")


def decoded_bytes(mode: str, size: tuple[int, int]) -> int:
    """Bytes of a decoded image of ``mode`` and ``size`` (width, height): width x height x bands
    x bytes per sample, as Pillow stores it (8-bit images of 2 to 4 bands take 4 bytes a
    pixel; a 16-bit grayscale image 2, a float one 4).

    Raises:
        KeyError: a mode Pillow does not know.
    """
    desc = ImageMode.getmode(mode)
    sample, bands = np.dtype(desc.typestr).itemsize, len(desc.bands)
    return int(size[0]) * int(size[1]) * (4 if sample == 1 and bands > 1 else bands * sample)


# modes to_rgb scales as they are; the others first become a full-size 8-bit image
_BASE_MODES = ("RGB", "RGBA", "L", "LA")
_GRAY_MODES = ("1", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")


def decode_peak_bytes(mode: str, size: tuple[int, int], out_size: tuple[int, int] | None = None) -> int:
    """An upper estimate of the memory :func:`explorer.io.images.load_image` uses at once to decode
    an image of ``mode`` and ``size`` (width, height) and turn it into an 8-bit RGB image of
    ``out_size`` (default: ``size``), in bytes: the decoded image, the full-size 8-bit image
    :func:`to_rgb` makes from modes it cannot scale directly (1 byte a pixel for grayscale, 4
    for the others), the scaling's intermediate image and two output-sized images.

    Raises:
        KeyError: a mode Pillow does not know.
    """
    w, h = size
    ow, oh = out_size or size
    middle = 0 if mode in _BASE_MODES else (1 if mode in _GRAY_MODES else 4) * w * h
    scaling = 4 * ow * h if (ow, oh) != (w, h) else 0
    return decoded_bytes(mode, size) + middle + scaling + 2 * 4 * ow * oh


def decoding_problem(im: ImageFile.ImageFile, data: bytes, out_size: tuple[int, int] | None = None,
                     budget: int | None = None) -> str | None:
    """Why ``im`` (opened by :func:`identify` from ``data``, not loaded) may not be decoded into
    an 8-bit RGB image of ``out_size``, in words that follow the file's label; None when it may:
    the decoded image must fit :data:`MAX_DECODED_BYTES`, the peak (:func:`decode_peak_bytes`)
    ``budget`` bytes when one is given, and a JPEG have at most :data:`MAX_JPEG_SCANS` scans."""
    mb = 2**20
    try:
        need = decoded_bytes(im.mode, im.size)
        peak = decode_peak_bytes(im.mode, im.size, out_size)
    except (KeyError, TypeError, ValueError):
        return f"unsupported pixel format '{im.mode}'"
    if need > MAX_DECODED_BYTES:
        return (f"{im.size[0]} x {im.size[1]} px in mode {im.mode} takes {need / mb:.0f} MB decoded; images up to "
                f"{MAX_DECODED_BYTES / mb:.0f} MB decoded are accepted")
    if budget is not None and peak > budget:
        return (f"decoding it needs about {peak / mb:.0f} MB of memory and {max(budget, 0) / mb:.0f} MB is free now; "
                "try a smaller image, or again when other runs have finished")
    # start-of-scan markers (an upper bound: a thumbnail's count too; inside entropy-coded
    # data 0xFF is always followed by 0x00 or a restart code)
    if im.format in ("JPEG", "MPO") and (scans := data.count(b"\xff\xda")) > MAX_JPEG_SCANS:
        return (f"the JPEG has {scans} scans (at most {MAX_JPEG_SCANS} are accepted; a normal progressive JPEG "
                "has about 10); save it again as a baseline JPEG or PNG")
    return None


# --------------------------------------------------------------------------- #
# conversion to 8-bit RGB
# --------------------------------------------------------------------------- #

#: Formats whose extra frames are animation frames (other multi-frame files have pages).
ANIMATED_FORMATS = {"GIF", "PNG", "WEBP", "FLI", "AVIF"}

#: Pixels per strip when 16-bit and float images are reduced to 8 bits (bounds the temporaries).
_STRIP_PIXELS = 1 << 22


def _composite_on_white(rgba: Image.Image, notes: list[str], transparent: bool | None = None) -> Image.Image:
    """RGBA -> RGB over a white background; note it only if something is transparent (as found
    by the caller before scaling, or here)."""
    if transparent is None:
        transparent = rgba.getchannel("A").getextrema()[0] < 255
    if transparent:
        notes.append("transparent areas composited on white")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _gray_to_8bit(im: Image.Image, floating: bool) -> Image.Image:
    """A 16/32-bit integer or float grayscale image as an 8-bit ``"L"`` image, in strips of
    about 4 megapixels: integers clipped to 0..65535 and scaled by round(v / 257), computed as
    (v + 128) // 257 (equal for every integer, 257 being odd); floats clipped to 0..255 and
    rounded (NaN -> 0, +inf -> 255)."""
    w, h = im.size
    out = np.empty((h, w), dtype=np.uint8)
    rows = max(1, _STRIP_PIXELS // max(w, 1))
    for top in range(0, h, rows):
        strip = np.asarray(im.crop((0, top, w, min(h, top + rows))))
        if floating:
            v = np.nan_to_num(strip.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
            out[top:top + rows] = np.clip(np.round(v), 0, 255)
        else:
            v = strip.astype(np.int32)
            np.clip(v, 0, 65535, out=v)
            v += 128
            v //= 257
            out[top:top + rows] = v
    return Image.fromarray(out, mode="L")


def _to_base(im: Image.Image, notes: list[str]) -> Image.Image:
    """``im`` itself when its mode is L, LA, RGB or RGBA; otherwise a new image in one of them."""
    mode = im.mode
    if mode in ("RGB", "RGBA"):
        return im
    if mode in ("L", "1", "LA", "La"):
        notes.append("black-and-white (1-bit) image converted to RGB" if mode == "1" else "grayscale converted to RGB")
        return im if mode in ("L", "LA") else im.convert("L" if mode == "1" else "RGBA")
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode in ("PA", "RGBa"):
        return im.convert("RGBA")
    if mode.startswith("I;16") or mode in ("I", "F"):
        # Pillow's convert() clips 16-bit values to 0..255; scale instead. Mode "I" (32-bit
        # integer grayscale) holds 16-bit data in practice (PNG/TIFF): scaled the same way.
        notes.append("floating-point image clipped to 0-255 and converted to 8-bit" if mode == "F"
                     else "16-bit image converted to 8-bit")
        notes.append("grayscale converted to RGB")
        return _gray_to_8bit(im, floating=mode == "F")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
        return im.convert("RGB")
    if mode in ("YCbCr", "LAB", "HSV", "RGBX"):
        return im.convert("RGB")
    # Anything else Pillow might produce: let Pillow try, via RGBA to keep alpha right.
    try:
        return im.convert("RGBA")
    except (ValueError, OSError):
        return im.convert("RGB")


@functools.lru_cache(maxsize=1)
def _srgb():
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _embedded_profile(im: Image.Image, notes: list[str]):
    """The image's embedded ICC profile (an ``ImageCms.ImageCmsProfile``), or None when it has
    none, the profile is sRGB (its red, green and blue colorants are sRGB's) or it cannot be
    read (noted)."""
    icc = im.info.get("icc_profile")
    if not icc:
        return None
    try:
        from PIL import ImageCms

        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = _srgb().profile
        core = profile.profile
        if core.xcolor_space.strip() == "RGB" and all(
                np.allclose(getattr(core, c)[0], getattr(srgb, c)[0], atol=2e-3)
                for c in ("red_colorant", "green_colorant", "blue_colorant")):
            return None
    except Exception:  # no LittleCMS in this Pillow, or a broken profile
        notes.append("the embedded colour profile could not be read and was ignored (colours as stored)")
        return None
    return profile


def _to_srgb(im: Image.Image, profile, notes: list[str]) -> Image.Image:
    """``im`` (RGB, RGBA, L or CMYK) converted from ``profile`` to sRGB (RGB or RGBA), noted;
    ``im`` unchanged, with a note, when the profile is for other colours or the conversion fails."""
    from PIL import ImageCms

    name = " ".join(ImageCms.getProfileDescription(profile).split()) or "unnamed"
    space = profile.profile.xcolor_space.strip()
    fits = {"RGB": ("RGB", "RGBA"), "GRAY": ("L",), "CMYK": ("CMYK",)}.get(space, ())
    if im.mode in fits:
        try:
            out = ImageCms.profileToProfile(im, profile, _srgb(), outputMode="RGBA" if im.mode == "RGBA" else "RGB")
        except (ImageCms.PyCMSError, ValueError, OSError):
            out = None
        if out is not None:
            notes.append(f"converted from the embedded colour profile '{name}' to sRGB")
            return out
    notes.append(f"the embedded colour profile '{name}' could not be applied (colours as stored)")
    return im


def to_rgb(im: Image.Image, notes: list[str], size: tuple[int, int] | None = None) -> Image.Image:
    """Convert any decoded Pillow image to a new 8-bit ``"RGB"`` image, optionally scaled.

    16-bit and 32-bit integer grayscale is scaled to 8 bits (round(v / 257), values clipped to
    0..65535) and float grayscale clipped to 0..255, in strips, so no full-size wider copy is
    made; transparency is composited on white; an embedded colour profile other than sRGB is
    converted to sRGB with LittleCMS (``PIL.ImageCms``); each step that changes something is
    noted.

    Args:
        im: a loaded image of any mode (not modified).
        notes: the list the notes are appended to.
        size: (width, height) to scale to (Lanczos, alpha premultiplied), normally smaller; the
            scaling happens while the image is still one band when it is grayscale and before
            transparency is composited, so a large scan never exists in full-size RGB.

    Returns:
        a new ``"RGB"`` image of ``size`` (default ``im.size``), values 0..255.

    Raises:
        ValueError / OSError from Pillow for modes it cannot convert (the caller
        turns these into :class:`explorer.io.images.ImageError`).
    """
    profile = _embedded_profile(im, notes)
    if profile is not None and im.mode == "CMYK":
        base, profile = _to_srgb(im, profile, notes), None
        if base.mode == "CMYK":
            base = _to_base(im, notes)
    else:
        base = _to_base(im, notes)
    transparent = base.getchannel("A").getextrema()[0] < 255 if base.mode in ("LA", "RGBA") else False
    if size is not None and tuple(size) != base.size:
        base = base.resize(tuple(size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    if profile is not None:
        base = _to_srgb(base, profile, notes)
    if base.mode in ("LA", "RGBA"):
        return _composite_on_white(base.convert("RGBA"), notes, transparent)
    if base.mode != "RGB":
        return base.convert("RGB")
    return base.copy() if base is im else base


# --------------------------------------------------------------------------- #
# orientation
# --------------------------------------------------------------------------- #

_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def exif_orientation(im: Image.Image, notes: list[str]) -> int:
    """The EXIF Orientation of ``im`` (1 to 8; 1 when there is none or the EXIF block cannot
    be read, which is noted), with a note when it turns or flips the image.

    Call it before decoding as well: Pillow turns TIFF images upright while it decodes them and
    drops the tag, so only the header still says the image was turned."""
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # broken EXIF block: the pixels are fine, keep them as stored
        notes.append("EXIF data could not be read; orientation left as stored")
        return 1
    if orientation in (3, 6, 8):
        notes.append("rotated according to EXIF orientation")
    elif orientation in (2, 4, 5, 7):
        notes.append("rotated/flipped according to EXIF orientation")
    else:
        return 1
    return int(orientation)


def orient(im: Image.Image, orientation: int) -> Image.Image:
    """``im`` turned and flipped as EXIF ``orientation`` (1 to 8) says (a new image), or ``im``
    itself for 1 or an unknown value."""
    method = _TRANSPOSE.get(orientation)
    return im if method is None else im.transpose(method)


def apply_exif_orientation(im: Image.Image, notes: list[str]) -> Image.Image:
    """Return a transposed copy following the EXIF Orientation tag (2..8), with a note; ``im``
    itself when there is nothing to do or the EXIF block cannot be read (noted)."""
    return orient(im, exif_orientation(im, notes))


def clear_info(im: Image.Image) -> Image.Image:
    """Detach metadata that no longer describes the pixels (EXIF orientation etc.): empties
    ``im.info`` in place and returns ``im``."""
    im.info = {}
    return im
