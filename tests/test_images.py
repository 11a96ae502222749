"""Tests for explorer.io.images: every odd file is built at test time in tmp_path."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, features

from explorer.io import decoding, samples
from explorer.io.decoding import accepted_formats_text
from tests.corpus import patch_png_size, png_chunks
from explorer.io.images import MIN_SIDE, ImageError, LoadedImage, load_image, resize_long_side, to_pil, to_tensor
from explorer.io.samples import SAMPLE_CONTENT, SAMPLE_STYLE, load_sample, parse_image_ref
from explorer.io.outputs import png_bytes, save_png_atomic, write_bytes_atomic, write_text_atomic

# --------------------------------------------------------------------------- helpers


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def noise_rgb(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_image_error(exc_info, role: str, *phrases: str) -> str:
    message = str(exc_info.value)
    assert isinstance(exc_info.value, ImageError)
    assert isinstance(exc_info.value, ValueError)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(role), message
    for phrase in phrases:
        assert phrase in message, message
    return message


def pixel(loaded: LoadedImage, x: int, y: int) -> tuple[int, int, int]:
    return loaded.image.getpixel((x, y))


class FakeUpload:
    """Looks like Streamlit's UploadedFile: .name, .getvalue(), .read()."""

    def __init__(self, data: bytes, name: str) -> None:
        self.name = name
        self._buf = io.BytesIO(data)

    def getvalue(self) -> bytes:
        return self._buf.getvalue()

    def read(self, *args) -> bytes:
        return self._buf.read(*args)


def check_rgb(loaded: LoadedImage) -> None:
    assert isinstance(loaded, LoadedImage)
    assert loaded.image.mode == "RGB"
    assert min(loaded.image.size) >= MIN_SIDE
    assert loaded.image.info == {}


# --------------------------------------------------------------------------- errors


def test_truncated_images_flag_not_set():
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_missing_file(tmp_path):
    with pytest.raises(ImageError) as ei:
        load_image(tmp_path / "nope.png", role="content image")
    assert_image_error(ei, "content image", "nope.png", "file not found")


def test_directory(tmp_path):
    with pytest.raises(ImageError) as ei:
        load_image(str(tmp_path), role="style image")
    assert_image_error(ei, "style image", "folder")


def test_empty_file(tmp_path):
    path = write(tmp_path, "empty.png", b"")
    with pytest.raises(ImageError) as ei:
        load_image(path, role="style image")
    assert_image_error(ei, "style image 'empty.png'", "the file is empty")


def test_empty_bytes_without_name():
    with pytest.raises(ImageError) as ei:
        load_image(b"", role="style image")
    assert str(ei.value) == "style image: the file is empty"


@pytest.mark.parametrize(
    "filename, data",
    [
        ("random.png", np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        ("notes.txt", b"This is just some text.\nNot an image at all.\n" * 20),
        ("x.png", b"hello"),
    ],
)
def test_not_an_image(tmp_path, filename, data):
    path = write(tmp_path, filename, data)
    with pytest.raises(ImageError) as ei:
        load_image(path, role="content image")
    assert_image_error(ei, f"content image '{filename}'", "not an image file")


def test_svg_is_not_an_image(tmp_path):
    svg = (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        b'<circle cx="50" cy="50" r="40" fill="red"/></svg>\n'
    )
    path = write(tmp_path, "logo.svg", svg)
    with pytest.raises(ImageError) as ei:
        load_image(path, role="style image")
    msg = assert_image_error(ei, "style image 'logo.svg'", "not an image file")
    assert "SVG" in msg


def test_truncated_jpeg(tmp_path):
    data = encode(noise_rgb(64, 64), "JPEG", quality=90)
    path = write(tmp_path, "cut.jpg", data[: len(data) // 2])
    with pytest.raises(ImageError) as ei:
        load_image(path, role="content image")
    assert_image_error(ei, "content image 'cut.jpg'", "truncated or corrupt")


def test_png_with_a_broken_stream_but_valid_checksums_is_corrupt():
    import struct
    import zlib

    data = encode(noise_rgb(200, 200), "PNG")
    at = data.index(b"IDAT")
    (n,) = struct.unpack(">I", data[at - 4:at])
    body = bytearray(data[at + 4:at + 4 + n])
    body[n // 2:n // 2 + 50] = bytes(50)  # zeroed compressed data ...
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + bytes(body)) & 0xFFFFFFFF)  # ... under a matching checksum
    with pytest.raises(ImageError) as ei:
        load_image(data[:at + 4] + bytes(body) + crc + data[at + 8 + n:], name="b.png")
    assert_image_error(ei, "image 'b.png'", "truncated or corrupt")


def test_truncated_png(tmp_path):
    data = encode(noise_rgb(64, 64), "PNG")
    with pytest.raises(ImageError) as ei:
        load_image(data[: len(data) // 2], name="half.png", role="content image")
    assert_image_error(ei, "content image 'half.png'", "truncated or corrupt")


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_png_with_bad_crc(tmp_path, where):
    data = bytearray(encode(noise_rgb(64, 64), "PNG"))
    _, _, start, length = next(c for c in png_chunks(bytes(data)) if c[1] == b"IDAT")
    data[start + int(length * where)] ^= 0x01
    path = write(tmp_path, "bad_crc.png", bytes(data))
    with pytest.raises(ImageError) as ei:
        load_image(path, role="style image")
    assert_image_error(ei, "style image 'bad_crc.png'", "truncated or corrupt")


@pytest.mark.filterwarnings("error")
def test_bomb_patched_header(tmp_path):
    data = patch_png_size(encode(noise_rgb(40, 40), "PNG"), 20000, 20000)
    path = write(tmp_path, "bomb.png", data)
    with pytest.raises(ImageError) as ei:
        load_image(path, role="content image")
    assert_image_error(
        ei,
        "content image 'bomb.png'",
        "20000 x 20000 = 400.0 megapixels",
        "89.5-megapixel safety limit",
        "decompression bomb",
    )


@pytest.mark.filterwarnings("error")  # between 1x and 2x the limit Image.open would warn
def test_bomb_just_above_limit_no_warning(tmp_path):
    data = patch_png_size(encode(noise_rgb(40, 40), "PNG"), 10000, 9000)
    with pytest.raises(ImageError) as ei:
        load_image(data, name="big.png", role="style image")
    assert_image_error(ei, "style image 'big.png'", "10000 x 9000 = 90.0 megapixels", "safety limit")


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("side", [9500, 12000])
def test_bomb_real_1bit_png(tmp_path, side):
    path = tmp_path / "big1bit.png"
    Image.new("1", (side, side)).save(path)
    with pytest.raises(ImageError) as ei:
        load_image(path, role="content image")
    assert_image_error(ei, "content image 'big1bit.png'", f"{side} x {side}", "decompression bomb")


@pytest.mark.parametrize("size", [(1, 1), (10, 10000), (20, 500), (10000, 31)])
def test_too_small(tmp_path, size):
    path = tmp_path / "small.png"
    Image.new("RGB", size, (10, 20, 30)).save(path)
    with pytest.raises(ImageError) as ei:
        load_image(path, role="style image")
    assert_image_error(
        ei, "style image 'small.png'", f"{size[0]} x {size[1]} pixels is too small", f"at least {MIN_SIDE}"
    )


def test_unsupported_source_type():
    with pytest.raises(TypeError):
        load_image(12345)


# --------------------------------------------------------------------------- sources


def test_sources_bytes_path_str_filelike(tmp_path):
    img = noise_rgb(48, 40)
    data = encode(img, "PNG")
    path = write(tmp_path, "ok.png", data)
    expected = np.asarray(img)
    for source in (data, bytearray(data), path, str(path), io.BytesIO(data), FakeUpload(data, "up.png")):
        loaded = load_image(source, role="content image")
        check_rgb(loaded)
        assert np.array_equal(np.asarray(loaded.image), expected)
        assert loaded.notes == []
    assert load_image(path).name == "ok.png"
    assert load_image(FakeUpload(data, "up.png")).name == "up.png"
    assert load_image(data, name="given.png").name == "given.png"
    with open(path, "rb") as fh:
        assert load_image(fh).name == "ok.png"


def test_upload_error_names_file():
    with pytest.raises(ImageError) as ei:
        load_image(FakeUpload(b"not an image", "x.png"), role="content image")
    assert str(ei.value) == ("content image 'x.png': not an image file (could not be decoded; the accepted formats "
                             f"are {accepted_formats_text()})")
    assert accepted_formats_text().startswith("PNG, JPEG, GIF, BMP, TIFF, WebP")


# --------------------------------------------------------------------------- conversions


def test_grayscale(tmp_path):
    arr = np.tile(np.arange(64, dtype=np.uint8) * 4, (40, 1))
    loaded = load_image(encode(Image.fromarray(arr, "L"), "PNG"))
    check_rgb(loaded)
    out = np.asarray(loaded.image)
    assert np.array_equal(out[..., 0], arr) and np.array_equal(out[..., 2], arr)
    assert "grayscale converted to RGB" in loaded.notes


def test_one_bit():
    img = Image.new("1", (40, 40), 0)
    img.paste(1, (0, 0, 20, 40))
    loaded = load_image(encode(img, "PNG"))
    check_rgb(loaded)
    assert pixel(loaded, 5, 5) == (255, 255, 255) and pixel(loaded, 30, 5) == (0, 0, 0)


def test_16bit_png_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 48).round().astype(np.uint16).reshape(48, 64)
    img = Image.fromarray(values)
    assert img.mode.startswith("I;16")
    path = tmp_path / "deep.png"
    img.save(path)
    loaded = load_image(path)
    check_rgb(loaded)
    out = np.asarray(loaded.image)
    expected = np.round(values / 257.0).astype(np.uint8)
    assert np.array_equal(out[..., 0], expected)
    assert np.array_equal(out[..., 1], expected)
    assert out.max() == 255 and out.min() == 0
    assert "16-bit image converted to 8-bit" in loaded.notes


def test_32bit_int_tiff():
    values = (np.arange(40 * 40).reshape(40, 40) * 40).astype(np.int32)
    loaded = load_image(encode(Image.fromarray(values, "I"), "TIFF"))
    check_rgb(loaded)
    expected = np.round(np.clip(values, 0, 65535) / 257.0).astype(np.uint8)
    assert np.array_equal(np.asarray(loaded.image)[..., 0], expected)
    assert "16-bit image converted to 8-bit" in loaded.notes


def test_float_tiff_clipped():
    values = np.linspace(-100, 400, 40 * 40, dtype=np.float32).reshape(40, 40)
    loaded = load_image(encode(Image.fromarray(values, "F"), "TIFF"))
    check_rgb(loaded)
    out = np.asarray(loaded.image)[..., 0]
    assert np.array_equal(out, np.clip(np.round(values), 0, 255).astype(np.uint8))


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(path, quality=95)  # pure red ink mix
    assert Image.open(path).mode == "CMYK"
    loaded = load_image(path)
    check_rgb(loaded)
    r, g, b = pixel(loaded, 10, 10)
    assert r > 240 and g < 15 and b < 15
    assert "CMYK converted to RGB" in loaded.notes


def test_palette_with_transparency_becomes_white():
    img = Image.new("P", (40, 40), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    img.paste(1, (20, 0, 40, 40))
    data = encode(img, "PNG", transparency=0)  # palette index 0 (red) is transparent
    loaded = load_image(data)
    check_rgb(loaded)
    assert pixel(loaded, 5, 5) == (255, 255, 255)
    assert pixel(loaded, 30, 5) == (0, 0, 255)
    assert "transparent areas composited on white" in loaded.notes


def test_palette_without_transparency_no_note():
    img = noise_rgb(40, 40).convert("P")
    loaded = load_image(encode(img, "PNG"))
    check_rgb(loaded)
    assert np.array_equal(np.asarray(loaded.image), np.asarray(img.convert("RGB")))
    assert loaded.notes == []


def test_rgba_composited_on_white():
    arr = np.zeros((40, 40, 4), dtype=np.uint8)
    arr[..., 0] = 200  # red channel
    arr[:, :10, 3] = 0  # fully transparent
    arr[:, 10:20, 3] = 128  # half
    arr[:, 20:, 3] = 255  # opaque
    loaded = load_image(encode(Image.fromarray(arr, "RGBA"), "PNG"))
    check_rgb(loaded)
    assert pixel(loaded, 5, 5) == (255, 255, 255)
    r, g, b = pixel(loaded, 15, 5)
    assert abs(r - 227) <= 1 and abs(g - 127) <= 1 and abs(b - 127) <= 1
    assert pixel(loaded, 30, 5) == (200, 0, 0)
    assert "transparent areas composited on white" in loaded.notes


def test_opaque_rgba_has_no_transparency_note():
    loaded = load_image(encode(noise_rgb(40, 40).convert("RGBA"), "PNG"))
    check_rgb(loaded)
    assert "transparent areas composited on white" not in loaded.notes


def test_la_composited_on_white():
    arr = np.zeros((40, 40, 2), dtype=np.uint8)
    arr[..., 0] = 50
    arr[:, :20, 1] = 0
    arr[:, 20:, 1] = 255
    loaded = load_image(encode(Image.fromarray(arr, "LA"), "PNG"))
    check_rgb(loaded)
    assert pixel(loaded, 5, 5) == (255, 255, 255)
    assert pixel(loaded, 30, 5) == (50, 50, 50)
    assert "transparent areas composited on white" in loaded.notes


def test_exif_rotated_jpeg(tmp_path):
    img = Image.new("RGB", (64, 40), (255, 0, 0))
    img.paste((0, 0, 255), (32, 0, 64, 40))  # left red, right blue (as stored)
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    check_rgb(loaded)
    assert loaded.image.size == (40, 64)
    top, bottom = pixel(loaded, 20, 5), pixel(loaded, 20, 58)
    assert top[0] > 200 and top[2] < 50  # stored left (red) is displayed on top
    assert bottom[2] > 200 and bottom[0] < 50
    assert "rotated according to EXIF orientation" in loaded.notes


def test_animated_gif_first_frame(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (40, 40), c) for c in colours]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    loaded = load_image(path)
    check_rgb(loaded)
    assert pixel(loaded, 10, 10) == (255, 0, 0)
    assert any("first of 3 frames" in note for note in loaded.notes), loaded.notes


def test_animated_png_first_frame():
    frames = [Image.new("RGBA", (40, 40), (0, 0, 255, 255)), Image.new("RGBA", (40, 40), (0, 255, 0, 255))]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    loaded = load_image(data)
    assert pixel(loaded, 10, 10) == (0, 0, 255)
    assert any("first of 2 frames" in note for note in loaded.notes), loaded.notes


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_animated_webp_first_frame():
    frames = [Image.new("RGB", (40, 40), (255, 0, 0)), Image.new("RGB", (40, 40), (0, 255, 0))]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    loaded = load_image(data)
    check_rgb(loaded)
    r, g, _ = pixel(loaded, 10, 10)
    assert r > 240 and g < 15
    assert any("first of 2 frames" in note for note in loaded.notes), loaded.notes


def test_ycbcr_and_lab_tiff():
    ycc = noise_rgb(40, 40).convert("YCbCr")
    loaded = load_image(encode(ycc, "TIFF"))
    check_rgb(loaded)
    lab = Image.new("LAB", (40, 40), (128, 128, 128))
    loaded = load_image(encode(lab, "TIFF"))
    check_rgb(loaded)


# --------------------------------------------------------------------------- resize & tensors


@pytest.mark.parametrize(
    "size_in, target, size_out",
    [
        ((100, 50), 64, (64, 32)),
        ((50, 100), 200, (100, 200)),
        ((64, 64), 16, (16, 16)),
        ((1000, 10), 16, (16, 1)),
        ((300, 451), 256, (170, 256)),
        ((80, 60), 80, (80, 60)),
    ],
)
def test_resize_long_side(size_in, target, size_out):
    out = resize_long_side(Image.new("RGB", size_in, (1, 2, 3)), target)
    assert out.size == size_out
    assert out.mode == "RGB"


def test_resize_long_side_rejects_tiny():
    with pytest.raises(ImageError) as ei:
        resize_long_side(Image.new("RGB", (64, 64)), 15)
    assert "\n" not in str(ei.value) and "at least 16" in str(ei.value)


def test_to_tensor_to_pil_round_trip():
    img = noise_rgb(37, 29, seed=3)
    t = to_tensor(img)
    assert t.shape == (1, 3, 29, 37) and t.dtype == torch.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    back = to_pil(t)
    assert back.mode == "RGB" and back.size == (37, 29)
    assert np.array_equal(np.asarray(back), np.asarray(img))
    assert np.array_equal(np.asarray(to_pil(t[0].double())), np.asarray(img))


def test_to_pil_clamps_and_validates():
    t = torch.tensor([-1.0, 0.5, 2.0, float("nan")]).view(1, 1, 2, 2).expand(1, 3, 2, 2).clone()
    out = np.asarray(to_pil(t.requires_grad_()))
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 128 and out[1, 0, 0] == 255 and out[1, 1, 0] == 0
    assert np.asarray(to_pil(t.detach().to(torch.bfloat16))).shape == (2, 2, 3)
    with pytest.raises(ValueError):
        to_pil(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError):
        to_pil(torch.zeros(1, 4, 4, 4))
    with pytest.raises(TypeError):
        to_pil(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_to_tensor_rejects_rgba():
    with pytest.raises(ValueError):
        to_tensor(Image.new("RGBA", (8, 8)))


# --------------------------------------------------------------------------- writing


def test_save_png_atomic(tmp_path):
    img = noise_rgb(40, 30)
    target = tmp_path / "out" / "deeper" / "result.png"
    returned = save_png_atomic(img, target, pnginfo={"weights": "untrained", "note": "é ok"})
    assert returned == target
    assert os.listdir(target.parent) == ["result.png"]
    with Image.open(target) as reread:
        assert reread.text["weights"] == "untrained"
        assert reread.text["note"] == "é ok"
        assert np.array_equal(np.asarray(reread.convert("RGB")), np.asarray(img))
    # overwrite in place
    save_png_atomic(Image.new("RGB", (40, 30), (9, 9, 9)), target)
    assert os.listdir(target.parent) == ["result.png"]
    with Image.open(target) as reread:
        assert reread.getpixel((0, 0)) == (9, 9, 9)


def test_save_png_atomic_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "keep.png"
    save_png_atomic(noise_rgb(40, 30), target)
    before = target.read_bytes()
    with pytest.raises((OSError, ValueError)):
        save_png_atomic(Image.new("CMYK", (40, 30)), target)  # PNG cannot store CMYK
    with pytest.raises(Exception):
        save_png_atomic(object(), target)  # type: ignore[arg-type]
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.png"]


def test_write_bytes_and_text_atomic(tmp_path):
    path = write_text_atomic('{"a": "é"}\n', tmp_path / "r" / "report.json")
    assert path.read_text(encoding="utf-8") == '{"a": "é"}\n'
    write_bytes_atomic(b"\x00\x01", path)
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(path.parent) == ["report.json"]


def test_png_bytes():
    img = noise_rgb(40, 30)
    data = png_bytes(img, pnginfo={"weights": "untrained"})
    assert data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(data)) as reread:
        assert reread.text == {"weights": "untrained"}
        assert np.array_equal(np.asarray(reread), np.asarray(img))


# --------------------------------------------------------------------------- samples


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    samples._decode_sample.cache_clear()
    yield
    samples._decode_sample.cache_clear()


def test_samples_load_offline(no_network):
    for display, func in {**SAMPLE_CONTENT, **SAMPLE_STYLE}.items():
        loaded = load_sample(display)
        check_rgb(loaded)
        assert loaded.name == display
        by_func = load_sample(func)
        assert by_func.name == display
        assert np.array_equal(np.asarray(by_func.image), np.asarray(loaded.image))


def test_sample_cache_returns_copies():
    first = load_sample("coffee")
    first.image.paste((1, 2, 3), (0, 0, 10, 10))
    first.notes.append("mutated")
    second = load_sample("coffee")
    assert second.image.getpixel((0, 0)) != (1, 2, 3)
    assert "mutated" not in second.notes


def test_grayscale_sample_note():
    loaded = load_sample("gravel")
    check_rgb(loaded)
    assert "grayscale converted to RGB" in loaded.notes


def test_unknown_sample():
    with pytest.raises(ImageError) as ei:
        load_sample("mona lisa", role="style image")
    msg = assert_image_error(ei, "style image", "unknown sample 'mona lisa'")
    for func in {**SAMPLE_CONTENT, **SAMPLE_STYLE}.values():
        assert func in msg
    # on the command line the names are listed as they are written there
    with pytest.raises(ImageError) as ei:
        parse_image_ref("sample:mona lisa", role="style image")
    msg = str(ei.value)
    for func in {**SAMPLE_CONTENT, **SAMPLE_STYLE}.values():
        assert f"sample:{func}" in msg
    assert "(cat)" not in msg


def test_parse_image_ref(tmp_path):
    assert parse_image_ref("sample:chelsea").name == "chelsea (cat)"
    assert parse_image_ref("sample:Chelsea (cat)").name == "chelsea (cat)"
    path = tmp_path / "a.png"
    noise_rgb(40, 40).save(path)
    loaded = parse_image_ref(str(path))
    check_rgb(loaded)
    assert loaded.name == "a.png"
    with pytest.raises(ImageError) as ei:
        parse_image_ref(str(tmp_path / "missing.png"), role="content image")
    assert_image_error(ei, "content image", "file not found")


@pytest.mark.parametrize("name, data", [("head.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 30), ("head.gif", b"GIF89a garbage")])
def test_broken_header_is_corrupt(name, data):
    with pytest.raises(ImageError) as ei:
        load_image(data, name=name, role="style image")
    assert_image_error(ei, f"style image '{name}'", "truncated or corrupt")


def test_image_error_is_one_line():
    assert str(ImageError("a\nb\r\n  c")) == "a b c"


# --------------------------------------------------------------------------- accepted formats and limits


POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\nnewpath 0 0 moveto\nshowpage\n%%EOF\n"


@pytest.fixture
def eps_plugin_calls(monkeypatch):
    """Calls that reached Pillow's EPS plugin or Ghostscript (both replaced by recorders)."""
    from PIL import EpsImagePlugin

    Image.init()
    calls = []

    def plugin(*args, **kwargs):
        calls.append("EpsImageFile")
        raise SyntaxError("the EPS plugin was consulted")

    def ghostscript(*args, **kwargs):
        calls.append("Ghostscript")
        raise OSError("Ghostscript was started")

    monkeypatch.setitem(Image.OPEN, "EPS", (plugin, Image.OPEN["EPS"][1]))
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)  # as on a machine that has it
    return calls


def test_postscript_named_png_is_refused_without_consulting_the_eps_plugin(eps_plugin_calls):
    with pytest.raises(ImageError) as ei:
        load_image(POSTSCRIPT, name="holiday.png", role="content image")
    message = assert_image_error(ei, "content image 'holiday.png'", "not an image file", "it looks like EPS",
                                 "the accepted formats are PNG, JPEG, GIF, BMP, TIFF, WebP")
    assert eps_plugin_calls == [], message


@pytest.mark.parametrize("fmt, options", [("PNG", {}), ("JPEG", {"quality": 95}), ("GIF", {}), ("BMP", {}),
                                          ("TIFF", {}), ("PPM", {}),
                                          pytest.param("WEBP", {"lossless": True}, marks=pytest.mark.skipif(
                                              not features.check("webp"), reason="Pillow built without WebP"))])
def test_every_accepted_format_decodes(fmt, options):
    assert fmt in decoding.ACCEPTED_FORMATS
    loaded = load_image(encode(noise_rgb(48, 40), fmt, **options), name=f"x.{fmt.lower()}")
    check_rgb(loaded)
    assert loaded.image.size == (48, 40)


@pytest.mark.parametrize("fmt", ["PCX", "SGI", "ICO", "TGA", "DDS"])
def test_formats_outside_the_allowlist_are_refused_and_the_accepted_ones_named(fmt):
    data = encode(noise_rgb(48, 48), fmt)
    with pytest.raises(ImageError) as ei:
        load_image(data, name="x.png", role="style image")
    assert_image_error(ei, "style image 'x.png'", "not an image file",
                       f"the accepted formats are {accepted_formats_text()}")
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow itself would have decoded it


def _png_with_empty_chunks(count: int) -> bytes:
    import struct
    import zlib

    chunk = struct.pack(">I", 0) + b"prIv" + struct.pack(">I", zlib.crc32(b"prIv") & 0xFFFFFFFF)
    png = encode(noise_rgb(40, 40), "PNG")
    return png[:33] + chunk * count + png[33:]  # after IHDR: Pillow parses each chunk in Python


def test_a_file_built_to_be_slow_to_parse_is_stopped_by_the_cpu_time_limit(monkeypatch):
    """300,000 empty chunks (3.6 MB) keep Pillow's PNG parser busy for seconds; at the full 256 MB
    it would be most of an hour. The limit is lowered so that the test stays fast."""
    import sys

    data = _png_with_empty_chunks(300_000)
    monkeypatch.setattr(decoding, "MAX_DECODE_SECONDS", 0.05)
    profiler = sys.getprofile()
    with pytest.raises(ImageError) as ei:
        load_image(data, name="slow.png", role="content image")
    assert_image_error(ei, "content image 'slow.png'", "decoding took more than 0.05 s of CPU time and was stopped")
    assert sys.getprofile() is profiler  # the hook is gone again
    # a normal image decodes within the same limit
    check_rgb(load_image(_png_with_empty_chunks(3)))


def test_the_time_limit_holds_even_when_the_code_catches_it():
    with pytest.raises(decoding.DecodeTimeout):
        with decoding.decode_deadline(0.0):
            try:
                while True:
                    len(())
            except decoding.DecodeTimeout:
                pass  # Pillow catching it, say: the block still ends with it


def test_a_jpeg_of_hundreds_of_scans_is_refused_before_decoding():
    data = encode(noise_rgb(64, 64), "JPEG", progressive=True, quality=90)
    first_scan = data.index(b"\xff\xda")
    scans = data[first_scan:-2]  # every scan, without the end-of-image marker
    many = data[:first_scan] + scans * 12 + b"\xff\xd9"
    assert many.count(b"\xff\xda") > decoding.MAX_JPEG_SCANS
    with pytest.raises(ImageError) as ei:
        load_image(many, name="scans.jpg")
    assert_image_error(ei, "image 'scans.jpg'", f"at most {decoding.MAX_JPEG_SCANS} are accepted")
    check_rgb(load_image(data))  # an ordinary progressive JPEG is fine


def test_decoded_bytes_by_hand():
    assert decoding.decoded_bytes("L", (100, 50)) == 5000
    assert decoding.decoded_bytes("I;16", (100, 50)) == 10000
    assert decoding.decoded_bytes("F", (100, 50)) == 20000
    assert decoding.decoded_bytes("RGB", (100, 50)) == 20000  # Pillow keeps RGB in 4 bytes a pixel
    assert decoding.decoded_bytes("CMYK", (100, 50)) == 20000


def test_decoded_size_and_memory_are_checked_before_anything_is_decoded(monkeypatch):
    from PIL import PngImagePlugin

    decoded = []
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load",
                        lambda self: decoded.append(self.size) or ImageFile.ImageFile.load(self))
    values = np.linspace(0, 65535, 200 * 100).astype(np.uint16).reshape(100, 200)
    data = encode(Image.fromarray(values), "PNG")
    with pytest.raises(ImageError) as ei:
        load_image(data, name="deep.png", memory_budget=50_000)
    assert_image_error(ei, "image 'deep.png'", "decoding it needs about", "MB of memory")
    monkeypatch.setattr(decoding, "MAX_DECODED_BYTES", 30_000)  # 200 x 100 x 2 bytes = 40,000
    with pytest.raises(ImageError) as ei:
        load_image(data, name="deep.png")
    assert_image_error(ei, "image 'deep.png'", "200 x 100 px in mode I;16")
    assert decoded == []
    monkeypatch.setattr(decoding, "MAX_DECODED_BYTES", 40_000)
    check_rgb(load_image(data, memory_budget=10**9))
    assert decoded and set(decoded) == {(200, 100)}


def test_16bit_scan_is_scaled_down_in_one_band_with_a_note():
    values = (np.arange(400)[None, :] * 160 + np.arange(300)[:, None] * 7).astype(np.uint16)
    full = load_image(encode(Image.fromarray(values), "PNG"))
    small = load_image(encode(Image.fromarray(values), "PNG"), max_side=100)
    check_rgb(small)
    assert small.image.size == (100, 75)
    assert "scaled down from 400 x 300 to 100 x 75 px" in small.notes
    assert "16-bit image converted to 8-bit" in small.notes
    expected = np.asarray(full.image.resize((100, 75), Image.Resampling.LANCZOS), dtype=np.int16)
    assert np.abs(np.asarray(small.image, dtype=np.int16) - expected).mean() < 1.0


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_and_stays_upright():
    img = Image.new("RGB", (1024, 768), (255, 0, 0))
    img.paste((0, 0, 255), (512, 0, 1024, 768))  # left red, right blue (as stored)
    exif = img.getexif()
    exif[0x0112] = 6
    loaded = load_image(encode(img, "JPEG", exif=exif, quality=95), max_side=128)
    check_rgb(loaded)
    assert loaded.image.size == (96, 128)  # turned upright: portrait
    assert loaded.notes == ["rotated according to EXIF orientation", "scaled down from 768 x 1024 to 96 x 128 px"]
    top, bottom = pixel(loaded, 48, 10), pixel(loaded, 48, 118)
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    assert load_image(encode(noise_rgb(64, 40), "PNG"), max_side=40).image.size == (51, 32)  # short side kept >= 32


def test_exif_rotated_tiff_is_turned_with_a_note():
    img = Image.new("RGB", (64, 40), (255, 0, 0))
    img.paste((0, 0, 255), (32, 0, 64, 40))
    exif = img.getexif()
    exif[0x0112] = 6
    loaded = load_image(encode(img, "TIFF", exif=exif))
    assert loaded.image.size == (40, 64)
    assert pixel(loaded, 20, 5) == (255, 0, 0) and pixel(loaded, 20, 58) == (0, 0, 255)
    assert "rotated according to EXIF orientation" in loaded.notes


def test_float_rgb_tiff_is_refused_with_what_to_do():
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.random.default_rng(0).random((40, 40, 3), dtype=np.float32), photometric="rgb")
    with pytest.raises(ImageError) as ei:
        load_image(buf.getvalue(), name="hdr.tif", role="style image")
    assert str(ei.value) == "style image 'hdr.tif': 32-bit float RGB TIFF is not supported; save it as 8- or 16-bit"


def _swapped_srgb_profile() -> bytes:
    """sRGB with its red and blue primaries swapped: an RGB profile that is not sRGB, whose
    conversion to sRGB is easy to predict (stored red shows blue)."""
    import struct

    from PIL import ImageCms

    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", data[128:132])
    entries = {bytes(data[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    r, b = entries[b"rXYZ"], entries[b"bXYZ"]
    data[r + 4:r + 12], data[b + 4:b + 12] = data[b + 4:b + 12], data[r + 4:r + 12]
    return bytes(data)


@pytest.mark.skipif(not features.check("littlecms2"), reason="Pillow built without LittleCMS")
def test_an_embedded_colour_profile_is_converted_to_srgb():
    from PIL import ImageCms

    img = Image.new("RGB", (40, 40), (220, 20, 20))
    loaded = load_image(encode(img, "PNG", icc_profile=_swapped_srgb_profile()))
    check_rgb(loaded)
    r, g, b = pixel(loaded, 5, 5)
    assert b > 150 and r < 80  # stored red means the profile's first primary: sRGB blue
    assert any(n.startswith("converted from the embedded colour profile") and n.endswith("to sRGB")
               for n in loaded.notes), loaded.notes
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    plain = load_image(encode(img, "PNG", icc_profile=srgb))
    assert pixel(plain, 5, 5) == (220, 20, 20) and plain.notes == []  # sRGB stays as it is
    broken = load_image(encode(img, "PNG", icc_profile=b"not a profile"))
    assert pixel(broken, 5, 5) == (220, 20, 20)
    assert "the embedded colour profile could not be read and was ignored (colours as stored)" in broken.notes
