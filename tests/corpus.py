"""A corpus of broken and odd image files, built at test time with Pillow and NumPy (nothing is
committed): imported by the tests, not collected.

:func:`build_corpus` writes every file into a folder and returns name -> :class:`CorpusFile`
with what :func:`explorer.io.images.load_image` must do with it: ``"ok"`` (a correct 8-bit RGB
image, with ``check`` describing it) or ``"error"`` (one-line :class:`~explorer.io.images.ImageError`
containing ``phrase``).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class CorpusFile:
    """One file of the corpus.

    Attributes:
        path: where it was written.
        expect: ``"ok"`` or ``"error"``.
        phrase: for errors, words the one-line message must contain; for ok files, the
            note :func:`load_image` must add ("" when none).
        size: for ok files, the (width, height) of the decoded image.
    """

    path: Path
    expect: str
    phrase: str = ""
    size: tuple[int, int] | None = None

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def picture(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A smooth colour picture with some texture (JPEG-friendly, not uniform)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(seed)
    rgb = np.stack([x / width * 255, y / height * 255, 128 + 60 * np.sin(x / 5) * np.cos(y / 7)], axis=-1)
    rgb += rng.normal(0, 8, rgb.shape)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")


def png_chunks(data: bytes):
    """Yield (offset_of_length_field, type, data_start, length) for each PNG chunk."""
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        yield pos, data[pos + 4:pos + 8], pos + 8, length
        pos += 12 + length


def patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR claims another size (CRC fixed), the body left as it was."""
    out = bytearray(data)
    pos, ctype, start, length = next(png_chunks(data))
    assert ctype == b"IHDR"
    out[start:start + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(out[pos + 4:start + length])) & 0xFFFFFFFF
    out[start + length:start + length + 4] = struct.pack(">I", crc)
    return bytes(out)


def _bad_crc_png() -> bytes:
    data = bytearray(encode(picture(), "PNG"))
    _, _, start, length = next(c for c in png_chunks(bytes(data)) if c[1] == b"IDAT")
    data[start + length // 2] ^= 0x01  # one flipped bit in the compressed pixels
    return bytes(data)


def _gray16() -> bytes:
    y, x = np.mgrid[0:48, 0:64]
    return encode(Image.fromarray((x * 1000 + y * 10).astype(np.uint16)), "PNG")


def _cmyk_jpeg() -> bytes:
    return encode(picture().convert("CMYK"), "JPEG", quality=90)


def _palette_transparent() -> bytes:
    p = picture().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(p, "PNG", transparency=0)


def _exif_rotated() -> bytes:
    img = picture(96, 64)
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return encode(img, "JPEG", exif=exif, quality=92)


def _exif_rotated_tiff() -> bytes:
    """A TIFF with Orientation 6 (Pillow turns TIFFs while decoding them and drops the tag)."""
    img = picture(96, 64)
    exif = img.getexif()
    exif[0x0112] = 6
    return encode(img, "TIFF", exif=exif)


def _float_rgb_tiff() -> bytes:
    """32-bit float RGB, values in 0..1 (what scientific and HDR tools write); Pillow has no mode for it."""
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.asarray(picture(), dtype=np.float32) / 255.0, photometric="rgb")
    return buf.getvalue()


#: An Encapsulated PostScript file: Pillow would hand it to Ghostscript (an external program).
POSTSCRIPT = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\n"
              b"newpath 0 0 moveto 64 64 lineto stroke\nshowpage\n%%EOF\n")


def _animated_gif() -> bytes:
    frames = [picture(64, 64, seed=k) for k in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _bomb() -> bytes:
    """A real decompression bomb: a 1-bit 12000 x 12000 PNG (144 megapixels, a few kB)."""
    return encode(Image.new("1", (12000, 12000)), "PNG", optimize=True)


SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
       b'<circle cx="50" cy="50" r="40" fill="red"/></svg>\n')


def build_corpus(folder: Path) -> dict[str, CorpusFile]:
    """Write the corpus into ``folder`` (created) and describe it.

    Returns:
        name -> CorpusFile, in a fixed order: the broken files first, then the odd but valid ones.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = encode(picture(), "JPEG", quality=90)
    rng = np.random.default_rng(7)
    small_png = encode(picture(40, 40), "PNG")
    entries: list[tuple[str, bytes, str, str, tuple[int, int] | None]] = [
        ("zero_bytes.png", b"", "error", "the file is empty", None),
        ("random_bytes.png", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "error", "not an image file", None),
        ("truncated.jpg", jpeg[: len(jpeg) // 2], "error", "truncated or corrupt", None),
        ("bad_crc.png", _bad_crc_png(), "error", "truncated or corrupt", None),
        ("bomb.png", _bomb(), "error", "decompression bomb", None),
        ("huge_header.png", patch_png_size(small_png, 60000, 60000), "error", "decompression bomb", None),
        # below the bomb limit (81 of 89.5 megapixels) but with a 40 x 40 body: truncated
        ("big_header_tiny_body.png", patch_png_size(small_png, 9000, 9000), "error", "truncated or corrupt", None),
        ("one_pixel.png", encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), "error", "too small", None),
        ("thin_10x10000.png", encode(Image.new("RGB", (10, 10000), (10, 200, 10)), "PNG"), "error", "too small", None),
        ("drawing.svg", SVG, "error", "SVG", None),
        ("notes.txt", b"This is a text file, not an image.\n" * 30, "error", "not an image file", None),
        ("text_named.png", b"This is a text file with an image name.\n" * 30, "error", "not an image file", None),
        ("postscript_named.png", POSTSCRIPT, "error", "not an image file (it looks like EPS, which is not accepted",
         None),
        ("float_rgb.tif", _float_rgb_tiff(), "error", "32-bit float RGB TIFF is not supported; save it as 8- or 16-bit",
         None),
        ("gray16.png", _gray16(), "ok", "16-bit image converted to 8-bit", (64, 48)),
        ("cmyk.jpg", _cmyk_jpeg(), "ok", "CMYK converted to RGB", (96, 64)),
        ("palette_transparent.png", _palette_transparent(), "ok", "transparent areas composited on white", (96, 64)),
        ("exif_rotated.jpg", _exif_rotated(), "ok", "rotated according to EXIF orientation", (64, 96)),
        ("turned_exif.tif", _exif_rotated_tiff(), "ok", "rotated according to EXIF orientation", (64, 96)),
        ("animated.gif", _animated_gif(), "ok", "animated image: using the first of 3 frames", (64, 64)),
        ("jpeg_named.png", jpeg, "ok", "", (96, 64)),
    ]
    out = {}
    for name, data, expect, phrase, size in entries:
        path = folder / name
        path.write_bytes(data)
        out[name] = CorpusFile(path, expect, phrase, size)
    return out


def good_png(width: int = 96, height: int = 64) -> bytes:
    """A plain valid PNG (for "the next upload works")."""
    return encode(picture(width, height, seed=3), "PNG")
