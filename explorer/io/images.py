"""Decode, validate and convert images; tensor <-> PIL.

Every image a user gives us (a Streamlit upload, a path on the command line, a
bundled sample) goes through :func:`load_image` / :func:`explorer.io.samples.load_sample`,
which always return an 8-bit ``"RGB"`` :class:`PIL.Image.Image` plus plain-words notes
about what was changed (first frame of an animation, transparency composited on
white, 16-bit reduced to 8-bit, ...).  Anything wrong with the *file* raises
:class:`ImageError`, a :class:`ValueError` whose message is one line a user can
read, e.g. ``"style image 'x.png': the file is truncated or corrupt"``.

Safety notes
------------
* Decompression bombs: the pixel count is read from the file header and checked
  against :data:`PIL.Image.MAX_IMAGE_PIXELS` *before* anything is decoded.  The
  header is identified through Pillow's own plugin registry rather than
  :func:`PIL.Image.open`, because ``Image.open`` itself emits a
  ``DecompressionBombWarning`` for images between 1x and 2x the limit; this way
  no warning is ever emitted and no global warning state is touched (thread-safe).
* ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is never set: truncated files are errors,
  not silently grey-filled images.
* Nothing here mutates Pillow's global settings, so the module is safe to use from
  Streamlit's threads.

The low-level steps (bounded file reading, header identification, mode conversion to RGB,
EXIF orientation) are in :mod:`explorer.io.decoding`; writing results (atomic writes, PNG/GIF/npy
encoders) is :mod:`explorer.io.outputs`; the bundled samples and ``sample:NAME`` references are
:mod:`explorer.io.samples`. No Streamlit import here; the pages and the CLI share this
module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageFile

from . import decoding
from .decoding import ANIMATED_FORMATS, DecodeTimeout, accepted_formats_text, clear_info, decode_deadline, decoding_problem, exif_orientation, identify, orient, refused_format, to_rgb, unsupported_tiff
from .files import read_regular_file, short_reason

__all__ = [
    "ImageError",
    "MIN_SIDE",
    "MIN_RESIZE_SIDE",
    "LoadedImage",
    "load_image",
    "resize_long_side",
    "to_tensor",
    "to_pil",
    "load_mask_image",
    "source_label",
    "unique_notes",
]

#: Smallest accepted width and height of a loaded image, in pixels.
MIN_SIDE = 32
#: Smallest long side accepted by :func:`resize_long_side`, in pixels.
MIN_RESIZE_SIDE = 16

class ImageError(ValueError):
    """A problem with an image file, explained in one line of plain words.

    The message starts with the role and, when known, the file name, e.g.
    ``"content image 'x.png': not an image file (could not be decoded)"``.
    Any whitespace (newlines included) in the message is collapsed to single
    spaces, so the message is always exactly one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass
class LoadedImage:
    """A decoded, validated image ready for the models.

    Attributes:
        image: always mode ``"RGB"``, 8 bits per channel, each side >= :data:`MIN_SIDE`
            pixels (for images from :func:`load_image` / :func:`~explorer.io.samples.load_sample`).
        name: the file name (no directories), the sample's display name, or the
            role when no name is known (e.g. bytes without a name).
        notes: plain-words notes about the conversions that were applied, e.g.
            ``"transparent areas composited on white"``; empty when none.
    """

    image: Image.Image
    name: str
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- #
# reading the source
# --------------------------------------------------------------------------- #


def source_label(role: str, name: str | None) -> str:
    """How messages name an image: ``"style image 'x.png'"``, or the role alone without a name."""
    return f"{role} '{name}'" if name else role


def _read_source(source: Any, name: str | None, role: str) -> tuple[bytes, str | None, str]:
    """Return ``(data, display_name, error_label)`` for any accepted source."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name, source_label(role, name)

    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source)).expanduser()
        shown = name or path.name or str(source)
        # "Not found"-type errors name the path as typed (that is what the user can
        # fix); errors about the contents name just the file.
        label = source_label(role, name or str(source))
        data = read_regular_file(path, label, error=ImageError)
        return data, shown, source_label(role, shown)

    if hasattr(source, "getvalue") or hasattr(source, "read"):
        if name is None:
            raw_name = getattr(source, "name", None)
            if isinstance(raw_name, (str, os.PathLike)) and os.fspath(raw_name):
                name = Path(os.fspath(raw_name)).name or None
        label = source_label(role, name)
        try:
            if hasattr(source, "getvalue"):
                data = source.getvalue()
            else:
                data = source.read()
        except OSError as exc:
            raise ImageError(f"{label}: could not read the file ({short_reason(exc)})") from exc
        if isinstance(data, str):
            raise TypeError(
                f"{label}: the file object was opened in text mode; open it in binary mode ('rb')"
            )
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{label}: reading the file object gave {type(data).__name__}, not bytes")
        return bytes(data), name, label

    raise TypeError(
        f"{role}: expected bytes, a path or a binary file object, got {type(source).__name__}"
    )


# --------------------------------------------------------------------------- #
# size checks
# --------------------------------------------------------------------------- #


def _bomb_message(label: str, width: int, height: int) -> str:
    limit = Image.MAX_IMAGE_PIXELS or 0
    return (
        f"{label}: {width} x {height} = {width * height / 1e6:.1f} megapixels is above the "
        f"{limit / 1e6:.1f}-megapixel safety limit (decompression bomb protection)"
    )


def _check_bomb(label: str, size: tuple[int, int]) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    width, height = size
    if limit is not None and width * height > limit:
        raise ImageError(_bomb_message(label, width, height))


def _check_min_side(label: str, size: tuple[int, int]) -> None:
    width, height = size
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"{label}: {width} x {height} pixels is too small; "
            f"each side must be at least {MIN_SIDE} pixels"
        )


# --------------------------------------------------------------------------- #
# public loading API
# --------------------------------------------------------------------------- #


def _working_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``size`` scaled down so that the long side is at most ``max_side`` px, as
    :func:`resize_long_side` scales, but never below :data:`MIN_SIDE` on the short side."""
    w, h = size
    if not max_side or max(w, h) <= max_side:
        return w, h
    scale = min(1.0, max(max_side / max(w, h), MIN_SIDE / min(w, h)))
    return max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale))


def _open(data: bytes, label: str) -> ImageFile.ImageFile:
    """The accepted plugin's image of ``data`` (header only), or one-line refusals."""
    try:
        im = identify(data)
    except Image.DecompressionBombError:
        raise ImageError(f"{label}: the image is above the safety limit of {(Image.MAX_IMAGE_PIXELS or 0) / 1e6:.1f} "
                         "megapixels (decompression bomb protection)") from None
    except MemoryError:
        raise ImageError(f"{label}: not enough memory to open this image") from None
    except Exception as exc:
        why = unsupported_tiff(data)
        raise ImageError(f"{label}: {why}" if why else
                         f"{label}: the file is truncated or corrupt ({short_reason(exc)})") from exc
    if im is not None:
        return im
    head = data[:1024].lstrip().lower()
    refused = refused_format(data)
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in head):
        why = "could not be decoded; SVG vector drawings are not supported, export it as PNG or JPEG"
    elif refused is not None:
        why = f"it looks like {refused}, which is not accepted"
    else:
        why = "could not be decoded"
    raise ImageError(f"{label}: not an image file ({why}; the accepted formats are {accepted_formats_text()})")


def load_image(source: Any, *, name: str | None = None, role: str = "image", max_side: int | None = None,
               memory_budget: int | None = None) -> LoadedImage:
    """Decode and validate a user's image and convert it to 8-bit RGB.

    Args:
        source: ``bytes``/``bytearray``/``memoryview``; a binary file-like object
            with ``.getvalue()`` (Streamlit ``UploadedFile``, ``io.BytesIO``) or
            ``.read()``; or a path (``str`` / ``os.PathLike``, ``~`` expanded).
        name: display name; defaults to the file name of a path, or the ``.name``
            of a file object, or ``role`` when unknown.
        role: what the image is for (``"content image"``, ``"style image"``, ...);
            it starts every error message.
        max_side: when given, the long side is scaled down (Lanczos) to at most this many
            pixels (never the short side below :data:`MIN_SIDE`), with a note; a JPEG is
            then decoded at 1/2, 1/4 or 1/8 scale when that is still large enough. The
            pages keep only what their largest working size needs.
        memory_budget: when given, bytes decoding may use (e.g. the memory free now);
            an image whose decoding would need more is refused before decoding.

    Returns:
        :class:`LoadedImage` whose ``image`` is a new, fully decoded ``"RGB"``
        8-bit image (values 0..255), width and height >= :data:`MIN_SIDE` px,
        with EXIF orientation applied, and ``notes`` saying what was converted:
        first frame of an animation/multi-page file, transparency composited on
        white, 16-bit / float scaled to 8-bit (16-bit: ``round(v / 257)``;
        float: clipped to 0..255), CMYK / grayscale / palette / YCbCr / LAB /
        HSV converted to RGB, an embedded colour profile converted to sRGB,
        scaled down to ``max_side``. ``image.info`` is emptied.

    Raises:
        ImageError: file not found, a folder, unreadable, empty, not in an accepted format
            (:data:`explorer.io.decoding.ACCEPTED_FORMATS`, which the message lists: random
            bytes, text, SVG, EPS...), truncated or corrupt (bad PNG checksum, cut-off JPEG),
            above ``PIL.Image.MAX_IMAGE_PIXELS`` pixels, the limits of
            :func:`explorer.io.decoding.decoding_problem` or ``memory_budget`` (all checked from
            the header), a side below :data:`MIN_SIDE` px, more than
            :data:`~explorer.io.decoding.MAX_DECODE_SECONDS` of CPU time, or a pixel format
            that cannot be converted. Message: one line.
        TypeError: ``source`` is not one of the accepted types (a programming error).
    """
    data, shown, label = _read_source(source, name, role)
    if not data:
        raise ImageError(f"{label}: the file is empty")

    notes: list[str] = []
    im: ImageFile.ImageFile | None = None
    try:
        with decode_deadline():
            im = _open(data, label)
            _check_bomb(label, im.size)  # header size checks before any pixel is decoded
            _check_min_side(label, im.size)
            target = _working_size(im.size, max_side)
            rgb = _decode(im, data, label, target, memory_budget, notes)
    except DecodeTimeout:
        raise ImageError(f"{label}: decoding took more than {decoding.MAX_DECODE_SECONDS:g} s of CPU time and was "
                         "stopped; save the image again as PNG or JPEG") from None
    finally:
        if im is not None:
            im.close()

    _check_min_side(label, rgb.size)
    return LoadedImage(image=clear_info(rgb), name=shown or role, notes=unique_notes(notes))


def _decode(im: ImageFile.ImageFile, data: bytes, label: str, target: tuple[int, int], budget: int | None,
            notes: list[str]) -> Image.Image:
    """The checked, decoded, converted, scaled and oriented RGB image of ``im`` (``load_image``)."""
    stored = im.size
    try:
        # Integrity pass (PNG: verifies every chunk checksum); needs its own instance.
        checker = identify(data)
        if checker is not None:
            checker.verify()
            checker.close()

        frames = int(getattr(im, "n_frames", 1) or 1)
        if frames > 1:
            im.seek(0)
            kind, unit = ("animated image", "frames") if im.format in ANIMATED_FORMATS else ("multi-page image", "pages")
            notes.append(f"{kind}: using the first of {frames} {unit}")
        if target != im.size:  # JPEG: decode at the smallest 1/2^k scale still at least as large
            im.draft(None, target)
        problem = decoding_problem(im, data, target if target != im.size else None, budget)
        if problem is not None:
            raise ImageError(f"{label}: {problem}")
        if im.format == "TIFF":  # Pillow turns TIFFs while decoding them and drops the tag: note it now
            exif_orientation(im, notes)
        im.load()
        orientation = exif_orientation(im, notes)  # what is left to do
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(_bomb_message(label, *im.size)) from None
    except MemoryError:
        raise ImageError(f"{label}: not enough memory to decode this image") from None
    except Exception as exc:
        # OSError ("image file is truncated", "broken data stream"), SyntaxError
        # ("broken PNG file"), ValueError, EOFError, struct.error, ...
        raise ImageError(f"{label}: the file is truncated or corrupt ({short_reason(exc)})") from exc

    _check_bomb(label, im.size)  # decoding may change the size: re-check
    if (target[0] > target[1]) != (im.size[0] > im.size[1]) and im.size[0] != im.size[1]:
        stored, target = stored[::-1], target[::-1]  # turned while decoding (TIFF)
    try:
        rgb = to_rgb(im, notes, size=target if target != im.size else None)
        if rgb.size != stored:
            (w, h), (nw, nh) = (stored, rgb.size) if orientation < 5 else (stored[::-1], rgb.size[::-1])
            notes.append(f"scaled down from {w} x {h} to {nw} x {nh} px")
        return orient(rgb, orientation)
    except MemoryError:
        raise ImageError(f"{label}: not enough memory to convert this image") from None
    except Exception as exc:
        raise ImageError(f"{label}: unsupported pixel format '{im.mode}' ({short_reason(exc)})") from exc


def unique_notes(notes: list[str]) -> list[str]:
    """``notes`` without repeats, in first-seen order."""
    return list(dict.fromkeys(notes))


def load_mask_image(ref: Any, size: tuple[int, int], *, role: str = "mask",
                    image: str = "the style image") -> LoadedImage:
    """Read a mask painted over an image (:func:`load_image`) and check that it has that
    image's aspect ratio (within 5 %), so that it can be resized onto it.

    Args:
        ref: a path, bytes, or a binary file object (e.g. a Streamlit upload).
        size: (H, W) of the image the mask belongs to, at its working size, pixels.
        role: what the mask is, for messages (``"mask"``, ``"content mask"``).
        image: how messages name that image (``"the style image"``).

    Raises:
        ImageError: an unreadable file (one line).
        ValueError: another aspect ratio; the one-line message gives both sizes.
    """
    li = load_image(ref, role=role)
    mw, mh = li.image.size
    h, w = size
    if abs((mw / mh) / (w / h) - 1.0) > 0.05:
        raise ValueError(f"{role} {li.name} is {mw}x{mh} px but {image} is {w}x{h} px; "
                         f"paint the mask over {image} at the same aspect ratio")
    return li


# --------------------------------------------------------------------------- #
# resizing, tensors
# --------------------------------------------------------------------------- #


def resize_long_side(img: Image.Image, size: int) -> Image.Image:
    """Scale ``img`` so its long side is ``size`` pixels, keeping the aspect ratio.

    Args:
        img: any PIL image (normally 8-bit RGB from :func:`load_image`).
        size: target length of the long side in pixels, >= :data:`MIN_RESIZE_SIDE`
            (16).  Upscaling and downscaling are both allowed.

    Returns:
        A new image of the same mode; long side exactly ``size`` px, short side
        ``round(short * size / long)`` px but at least 1 px.  Lanczos resampling.
        If the image already has that size, a copy.

    Raises:
        ImageError: ``size`` below :data:`MIN_RESIZE_SIDE`, or not a whole number.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ImageError(f"image size must be a whole number of pixels, got {size!r}")
    size = int(size)
    if size < MIN_RESIZE_SIDE:
        raise ImageError(
            f"image size {size} pixels is too small; the long side must be at least {MIN_RESIZE_SIDE} pixels"
        )
    width, height = img.size
    long_side = max(width, height)
    if long_side == 0:
        raise ImageError("cannot resize an empty (0-pixel) image")
    scale = size / long_side
    if width >= height:
        new_size = (size, max(1, round(height * scale)))
    else:
        new_size = (max(1, round(width * scale)), size)
    if new_size == img.size:
        return img.copy()
    return img.resize(new_size, Image.Resampling.LANCZOS)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor for the models.

    Args:
        img: mode ``"RGB"`` (or ``"L"``, repeated to 3 channels), H x W pixels.

    Returns:
        ``torch.float32`` tensor of shape ``(1, 3, H, W)`` on the CPU, values in
        [0, 1] (``pixel / 255``).

    Raises:
        ValueError: other modes (pass the image through :func:`load_image` first,
            which composites alpha and scales 16-bit data correctly).
    """
    if img.mode == "L":
        img = img.convert("RGB")
    if img.mode != "RGB":
        raise ValueError(
            f"to_tensor expects an RGB image, got mode '{img.mode}'; convert it with load_image first"
        )
    return TF.to_tensor(img).unsqueeze(0).to(torch.float32)


def to_pil(t: torch.Tensor) -> Image.Image:
    """Float tensor -> 8-bit RGB PIL image.

    Args:
        t: shape ``(1, 3, H, W)`` or ``(3, H, W)``, any floating dtype, any device,
            values nominally in [0, 1]; gradients are ignored.

    Returns:
        A mode ``"RGB"`` image, W x H pixels: values clamped to [0, 1] (NaN -> 0),
        then ``round(v * 255)``.

    Raises:
        ValueError: wrong shape (batch size other than 1, or not 3 channels).
        TypeError: not a floating-point tensor.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"to_pil expects a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"to_pil expects a floating-point tensor in [0, 1], got {t.dtype}")
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"to_pil expects a batch of one image, got shape {tuple(t.shape)}")
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"to_pil expects shape (1, 3, H, W) or (3, H, W), got {tuple(t.shape)}")
    t = t.detach().to(device="cpu", dtype=torch.float32)
    t = torch.nan_to_num(t, nan=0.0).clamp(0.0, 1.0)
    as_bytes = t.mul(255.0).round().to(torch.uint8)
    return TF.to_pil_image(as_bytes, mode="RGB")
