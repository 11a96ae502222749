"""Bad input and faults: a corpus of broken and odd files (built at test time by
:mod:`tests.corpus`) through ``images.load_image``, through every CLI command that reads images
and through a page's upload; parameters at their extremes; a loss that becomes non-finite.

Every broken file must give one line (``error: ...`` and exit status 2 in the CLI, one
``st.error`` on the page, never a traceback or an exception element) and the session must keep
working afterwards; every odd but valid file must give a correct result. CLI runs use the
session's untrained networks (``load_model`` is replaced by the conftest fixtures, so nothing is
built twice), 64 px and one step.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer.cli import parser as cli, commands
from explorer.style import color, transfer as style
from explorer.io import images, samples
from explorer.style import gatys
from explorer.style import settings as style_settings
from tests.corpus import CorpusFile, build_corpus, encode, good_png
from tests.helpers import app_env, error_line, run_cli

ERRORS = ["zero_bytes.png", "random_bytes.png", "truncated.jpg", "bad_crc.png", "bomb.png", "huge_header.png",
          "big_header_tiny_body.png", "one_pixel.png", "thin_10x10000.png", "drawing.svg", "notes.txt",
          "text_named.png", "postscript_named.png", "float_rgb.tif"]
ODD = ["gray16.png", "cmyk.jpg", "palette_transparent.png", "exif_rotated.jpg", "turned_exif.tif",
       "animated.gif", "jpeg_named.png"]
ALL = ERRORS + ODD
FAST = ["--size", "64", "--quiet", "--untrained"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, CorpusFile]:
    c = build_corpus(tmp_path_factory.mktemp("corpus"))
    assert sorted(c) == sorted(ALL)
    assert [n for n in c if c[n].expect == "error"] == ERRORS
    return c


@pytest.fixture
def shared_models(monkeypatch, vgg19, googlenet):
    """The CLI's model loading answers with the session's untrained networks."""
    nets = {"vgg19": vgg19, "googlenet": googlenet}
    monkeypatch.setattr("explorer.nets.models.load_model", lambda name, **kw: nets[name])


def expected_size(f: CorpusFile, side: int = 64) -> tuple[int, int]:
    w, h = f.size
    s = side / max(w, h)
    return (side, max(1, round(h * s))) if w >= h else (max(1, round(w * s)), side)


def check_error(f: CorpusFile, rc: int, err: str, role: str) -> None:
    assert rc == 2, err
    line = error_line(err)
    assert f.phrase in line, line
    assert f"{role} '" in line and f.path.name in line, line


# --------------------------------------------------------------------------- load_image


@pytest.mark.parametrize("name", ALL)
def test_load_image_corpus(corpus, name):
    f = corpus[name]
    for source in (f.path, f.data):  # a path (CLI) and bytes (an upload, in memory)
        if f.expect == "error":
            with pytest.raises(images.ImageError) as ei:
                images.load_image(source, name=name, role="content image")
            msg = str(ei.value)
            assert "\n" not in msg and msg.startswith(f"content image '{name}'") and f.phrase in msg, msg
        else:
            li = images.load_image(source, name=name, role="content image")
            assert li.image.mode == "RGB" and li.image.size == f.size and li.image.info == {}
            assert not f.phrase or f.phrase in li.notes, li.notes


def test_exif_rotation_and_transparency_are_right(corpus):
    rotated = images.load_image(corpus["exif_rotated.jpg"].path).image
    stored = Image.open(corpus["exif_rotated.jpg"].path).convert("RGB")
    # orientation 6: the stored image turned 90 degrees clockwise
    a = np.asarray(rotated, dtype=np.int16)
    b = np.asarray(stored.transpose(Image.Transpose.ROTATE_270), dtype=np.int16)
    assert a.shape == b.shape and np.abs(a - b).mean() < 2
    pal = images.load_image(corpus["palette_transparent.png"].path).image
    assert (255, 255, 255) in [c for _, c in pal.getcolors(4096)]  # transparent index shows white
    g16 = np.asarray(images.load_image(corpus["gray16.png"].path).image)
    assert g16.max() > 200  # scaled from 16 bits, not clipped to 255 or shifted to 0


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("name", ALL)
def test_cli_stylize_content_and_style(capsys, tmp_path, corpus, shared_models, name):
    f = corpus[name]
    for role, args in (("content image", [f.path, "sample:gravel"]), ("style image", ["sample:astronaut", f.path])):
        out = tmp_path / f"{role[:5]}.png"
        rc, _, err = run_cli(capsys, "stylize", *args, "-o", out, "--steps", "1", *FAST)
        if f.expect == "error":
            check_error(f, rc, err, role)
            assert not out.exists()
        else:
            assert rc == 0, err
            with Image.open(out) as im:
                size = im.size
            if role == "content image":
                assert size == expected_size(f)
            else:
                assert size == (64, 64)  # the output has the content's shape


@pytest.mark.parametrize("name", ALL)
def test_cli_stylize_mask(capsys, tmp_path, corpus, shared_models, name):
    f = corpus[name]
    style_file = tmp_path / "style.png"
    style_file.write_bytes(good_png(96, 64))
    out = tmp_path / "out.png"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", style_file, "--mask", f.path, "-o", out,
                         "--steps", "1", *FAST)
    if f.expect == "error":
        check_error(f, rc, err, "mask")
    elif rc != 0:  # a valid image of another shape: one line saying so
        assert rc == 2 and "aspect ratio" in error_line(err) or "black everywhere" in error_line(err), err
    else:
        assert out.exists()


@pytest.mark.parametrize("name", ALL)
def test_cli_dream_activations_saliency(capsys, tmp_path, corpus, shared_models, name):
    f = corpus[name]
    runs = {
        "dream": (["dream", f.path, "-o", tmp_path / "d.png", "--steps", "1", "--octaves", "1", *FAST], "image",
                  tmp_path / "d.png"),
        "activations": (["activations", f.path, "--layer", "relu1_1", "--top", "4", "--out", tmp_path / "a.png",
                         "--size", "64", "--untrained"], "image", tmp_path / "a.png"),
        "saliency": (["saliency", f.path, "-o", tmp_path / "s.png", "--npy", tmp_path / "s.npy", *FAST],
                     "style image", tmp_path / "s.png"),
    }
    for command, (args, role, out) in runs.items():
        rc, _, err = run_cli(capsys, *args)
        if f.expect == "error":
            check_error(f, rc, err, role)
            assert not out.exists(), command
        else:
            assert rc == 0, (command, err)
            assert out.exists(), command
    if f.expect == "ok":
        with Image.open(tmp_path / "d.png") as im:
            assert im.size == expected_size(f)
        heat = np.load(tmp_path / "s.npy")
        w, h = expected_size(f)
        assert heat.shape == (h, w) and np.isfinite(heat).all()


def test_cli_augment_skips_the_broken_files(capsys, tmp_path, corpus, shared_models):
    data = tmp_path / "data" / "things"
    data.mkdir(parents=True)
    for name, f in corpus.items():
        (data / name).write_bytes(f.data)
    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "s.png").write_bytes(good_png(64, 64))
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "augment", tmp_path / "data", styles, "-o", out, "--variants", "1",
                         "--steps", "1", "--size", "64", "--batch-size", "4", "--untrained", "--quiet")
    assert rc == 0, err
    assert "Traceback" not in err
    with open(out / "skipped.csv", newline="") as fh:
        skipped = {row["path"]: row["reason"] for row in csv.DictReader(fh)}
    # torchvision's ImageFolder extensions: .gif, .svg and .txt are skipped by their name
    by_name = ["drawing.svg", "notes.txt", "animated.gif"]
    assert sorted(skipped) == sorted(f"things/{n}" for n in ERRORS + ["animated.gif"])
    for name in ERRORS + ["animated.gif"]:
        reason = skipped[f"things/{name}"]
        assert "\n" not in reason
        assert ("not an image file name" if name in by_name else corpus[name].phrase) in reason, reason
    made_from = [n for n in ODD if n not in by_name]
    with open(out / "manifest.csv", newline="") as fh:
        made = sorted(row["source"] for row in csv.DictReader(fh))
    assert made == sorted(f"things/{n}" for n in made_from)
    for name in made_from:
        stem = name.rsplit(".", 1)[0]
        produced = list((out / "things").glob(f"{stem}*__v0.png"))
        assert len(produced) == 1, name
        with Image.open(produced[0]) as im:
            assert im.size == expected_size(corpus[name])


def test_cli_augment_broken_style_image_is_one_line(capsys, tmp_path, corpus, shared_models):
    data = tmp_path / "data" / "c"
    data.mkdir(parents=True)
    (data / "a.png").write_bytes(good_png())
    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "bad.jpg").write_bytes(corpus["truncated.jpg"].data)
    rc, _, err = run_cli(capsys, "augment", tmp_path / "data", styles, "-o", tmp_path / "out", "--variants", "1",
                         "--steps", "1", "--size", "64", "--untrained", "--quiet")
    assert rc == 2
    assert "truncated or corrupt" in error_line(err)


# --------------------------------------------------------------------------- a page


@pytest.fixture
def style_page(monkeypatch, tmp_path) -> AppTest:
    app_env(monkeypatch, tmp_path)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/style_transfer.py").run()
    assert not at.exception
    at.radio(key="content_source").set_value("Upload").run()
    assert not at.exception
    return at


def test_page_upload_corpus_then_a_good_upload_runs(style_page, corpus):
    at = style_page
    shown = []
    for name in ALL:
        f = corpus[name]
        at.file_uploader(key="content_upload").set_value((name, f.data, "image/png"))
        at.run()
        assert not at.exception, name
        errs = [e.value for e in at.error]
        if f.expect == "error":
            assert len(errs) == 1, (name, errs)
            assert "\n" not in errs[0] and errs[0].startswith(f"content image '{name}'") and f.phrase in errs[0]
            assert at.button(key="run").disabled == (not shown), name  # the last good image stays usable
        else:
            assert not errs, (name, errs)
            assert f"Content: {name}" in [c for img in at.image for c in img.captions]
            if f.phrase:
                assert f"Note: {f.phrase}" in [c.value for c in at.caption], name
            shown.append(name)
    # the session keeps working: a valid upload after all that runs to a result
    at.file_uploader(key="content_upload").set_value(("photo.png", good_png(80, 64), "image/png"))
    at.run()
    assert not at.exception and not at.error
    at.slider(key="size").set_value(64)
    at.number_input(key="steps").set_value(1)
    at.run()
    at.button(key="run").click().run()
    assert not at.exception and not at.error
    captions = [c for img in at.image for c in img.captions]
    assert any(c.startswith("Result (untrained weights") for c in captions), captions


# --------------------------------------------------------------------------- extremes


@pytest.mark.parametrize("flags", [
    ["--content-weight", "0", "--style-weight", "1e12"],
    ["--content-weight", "1e12", "--style-weight", "0"],
    ["--content-weight", "0", "--style-weight", "0"],
    ["--lr", "1e30"],
    ["--optimizer", "adam", "--lr", "1e30"],
])
def test_cli_extreme_parameters_finish(capsys, tmp_path, shared_models, flags):
    out, report = tmp_path / "o.png", tmp_path / "r.json"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", out, "--steps", "2",
                         "--report", report, *FAST, *flags)
    assert rc == 0, err
    r = json.loads(report.read_text())
    if r["stopped"]:  # diverged: reported, and the image is the last finite one
        assert "warning: the loss became" in err
    assert all(math.isfinite(h["total"]) for h in r["history"])
    with Image.open(out) as im:
        assert im.size == (64, 64)
        assert np.isfinite(np.asarray(im, dtype=np.float32)).all()


def test_cli_one_step_and_size_limits(capsys, tmp_path, shared_models):
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", tmp_path / "a.png",
                         "--steps", "1", *FAST)
    assert rc == 0, err
    for flags in (["--size", "4097"], ["--size", "8"], ["--steps", "0"], ["--lr", "0"], ["--lr", "nan"],
                  ["--style-weight", "-1"], ["--content-weight", "inf"]):
        rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", tmp_path / "b.png",
                             "--untrained", "--quiet", *flags)
        assert rc == 2, (flags, err)
        error_line(err)


def test_cli_overflowing_weight_keeps_the_starting_image(capsys, tmp_path, shared_models):
    """A style weight so large that even the first loss is infinite (float32 tops out at 3.4e38):
    the run stops at once, says so on one warning line, and writes the starting image (by
    default the content image in the style's colours)."""
    out, report = tmp_path / "o.png", tmp_path / "r.json"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", out, "--steps", "3",
                         "--style-weight", "1e39", "--report", report, *FAST)
    assert rc == 0, err
    warning = [l for l in err.splitlines() if l.startswith("warning: the loss became")]
    assert len(warning) == 1 and "infinite at step 0" in warning[0] and "the starting image" in warning[0], err
    r = json.loads(report.read_text())
    assert r["stopped"] and r["history"] == []
    content, style_img = gatys.prepare_images(samples.load_sample("astronaut").image,
                                              samples.load_sample("gravel").image, 64)
    start = images.to_pil(color.histogram_start(content, [(style_img, 1.0)]))
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(start))


def test_nan_mid_run_keeps_the_last_finite_image(vgg19, images64):
    """A loss that turns NaN at step 2: the run stops, reports it and keeps the image of step 1
    (the one the last finite losses belong to)."""
    content, style_img = images64
    settings = style_settings.StyleSettings(size=64, steps=5, optimizer="adam", lr=0.05, preview_every=1, precision="fp32")
    run = style.StyleTransfer(vgg19, content, style_img, settings)
    original, calls = run.losses, [0]

    def poisoned(x):
        calls[0] += 1
        terms = original(x)
        if calls[0] >= 3:  # the losses of image 2
            terms = {**terms, "total": terms["total"] * float("nan")}
        return terms

    run.losses = poisoned
    events = list(run)
    result = run.result()
    assert result.stopped and "NaN at step 2" in result.stopped and "(step 1)" in result.stopped
    assert [h["step"] for h in result.history] == [0, 1]
    assert events[-1].done and events[-1].message == result.stopped
    assert torch.isfinite(result.image).all()
    step1 = [ev.preview for ev in events if ev.step == 1 and ev.preview is not None][0]
    assert torch.equal(result.image, step1.clamp(0, 1))


def test_cli_dream_extremes(capsys, tmp_path, shared_models):
    for flags in (["--steps", "0"], ["--step-size", "1", "--steps", "2", "--octaves", "12"],
                  ["--jitter", "0", "--steps", "1", "--octaves", "1", "--tile", "64"]):
        out = tmp_path / "d.png"
        rc, _, err = run_cli(capsys, "dream", "sample:coffee", "-o", out, *FAST, *flags)
        assert rc == 0, (flags, err)
        with Image.open(out) as im:
            assert max(im.size) == 64 and np.isfinite(np.asarray(im, dtype=np.float32)).all()


# --------------------------------------------------------------------------- formats, memory and uploads


def test_cli_refuses_postscript_named_png_without_consulting_the_eps_plugin(capsys, tmp_path, corpus, monkeypatch):
    from PIL import EpsImagePlugin

    Image.init()
    calls = []
    monkeypatch.setitem(Image.OPEN, "EPS", (lambda *a, **k: calls.append("plugin"), Image.OPEN["EPS"][1]))
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append("Ghostscript"))
    holiday = tmp_path / "holiday.png"
    holiday.write_bytes(corpus["postscript_named.png"].data)
    rc, _, err = run_cli(capsys, "activations", holiday, "--layer", "relu1_1", "--out", tmp_path / "a.png",
                         "--size", "64", "--untrained")
    assert rc == 2
    line = error_line(err)
    assert "image 'holiday.png': not an image file (it looks like EPS, which is not accepted; the accepted" in line
    assert calls == [] and not (tmp_path / "a.png").exists()


def _deep_png(width: int, height: int) -> bytes:
    """A 16-bit grayscale PNG with a gradient (what scanners and microscopes write)."""
    values = (np.arange(width)[None, :] * 65535 // width + np.arange(height)[:, None] * 3).astype(np.uint16)
    return encode(Image.fromarray(values), "PNG")


def test_page_keeps_an_upload_at_the_largest_working_size_only(style_page, monkeypatch):
    """The session keeps the upload scaled to the largest working size a page offers, not the
    full-size pixels (a 9400 x 9400 scan was 350 MB per session, held after the tab closed)."""
    from explorer.app import pickers

    monkeypatch.setattr(pickers, "UPLOAD_MAX_SIDE", 64)
    at = style_page
    at.file_uploader(key="content_upload").set_value(("scan.png", _deep_png(200, 150), "image/png"))
    at.run()
    assert not at.exception and not at.error
    kept = at.session_state["content_last_good"][1]
    assert kept.image.size == (64, 48) and kept.image.mode == "RGB"
    captions = [c.value for c in at.caption]
    assert "Note: scaled down from 200 x 150 to 64 x 48 px" in captions
    assert "Note: 16-bit image converted to 8-bit" in captions
    at.radio(key="content_source").set_value("Sample").run()
    assert not at.exception and "content_last_good" not in at.session_state  # released with the upload


def test_page_refuses_an_upload_that_does_not_fit_in_free_memory_and_keeps_the_last_image(style_page, monkeypatch):
    from explorer.nets import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 3 * 2**20)
    at = style_page
    at.file_uploader(key="content_upload").set_value(("small.png", good_png(80, 64), "image/png"))
    at.run()
    assert not at.exception and not at.error
    at.file_uploader(key="content_upload").set_value(("scan.png", _deep_png(1200, 1000), "image/png"))
    at.run()
    assert not at.exception
    errs = [e.value for e in at.error]
    assert len(errs) == 1 and errs[0].startswith("content image 'scan.png': decoding it needs about"), errs
    assert "MB is free now" in errs[0]
    assert "Still using the previous image, small.png." in [c.value for c in at.caption]
    assert at.session_state["content_last_good"][1].name == "small.png"
