"""Output paths, reports and command-line arguments that could lose or mix a user's data: an
output that is a device, a pipe or a link; two outputs on one file or an output on an input;
style file names with commas and colons; blend weights whose sum overflows; reports that are not
strict JSON; messages on stdout; a disk that fills while writing.

CPU, untrained networks (the session's, through ``shared_models``), 48-64 px, 1 step: the
properties (refusals before any model is loaded, files left intact, strict JSON, empty stdout)
do not depend on the picture.
"""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer.style import blend, control
from explorer.cli import common as cmd_common
from explorer.io import images, outputs
from tests.helpers import error_line, picture, run_cli

FAST = ["--size", "48", "--untrained", "--quiet"]
STYLIZE_FAST = [*FAST, "--steps", "1", "--optimizer", "adam"]


@pytest.fixture
def shared_models(monkeypatch, vgg19, googlenet):
    """The CLI's model loading answers with the session's untrained networks."""
    nets = {"vgg19": vgg19, "googlenet": googlenet}
    monkeypatch.setattr("explorer.nets.models.load_model", lambda name, **kw: nets[name])


def _no_model(monkeypatch):
    """Any model load fails the test: the CLI must refuse before loading one."""
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the paths were checked")

    monkeypatch.setattr(cmd_common, "load_net", refuse)


def _png(path: Path, k: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    images.to_pil(picture(48, 56).roll(7 * k, dims=-1)).save(path, "PNG")
    return path


def _strict_json(path: Path):
    """The file as JSON, refusing the bare NaN / Infinity that Python's json writes by default."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=refuse)


def _leftovers(folder: Path) -> list[str]:
    """Temporary files of the atomic writer left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- devices, pipes, links

def test_outputs_that_are_devices_pipes_or_links_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """`--report /dev/null` (as root) turned /dev/null into a regular file, and the same for a
    pipe or a link: now every such output is one line before any model is loaded."""
    _no_model(monkeypatch)
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    kept = tmp_path / "kept.png"
    kept.write_bytes(b"the user's file")
    link = tmp_path / "link.png"
    link.symlink_to(kept)
    link_json = tmp_path / "link.json"
    link_json.symlink_to(kept)
    stylize = ["stylize", "sample:astronaut", "sample:gravel"]
    cases = [
        ([*stylize, "-o", tmp_path / "o.png", "--report", "/dev/null"], "a device"),
        ([*stylize, "-o", tmp_path / "o.png", "--report", fifo], "a named pipe"),
        ([*stylize, "-o", link], "a symbolic link"),
        (["dream", "gray", "-o", tmp_path / "d.png", "--gif", "/dev/full"], "a device"),
        (["activations", "sample:astronaut", "-o", tmp_path / "a.png", "--json", link_json], "a symbolic link"),
        (["saliency", "sample:gravel", "-o", tmp_path / "h.png", "--npy", "/dev/null"], "a device"),
    ]
    for args, words in cases:
        rc, _, err = run_cli(capsys, *args, "--untrained")
        line = error_line(err)
        assert rc == 2 and words in line and "regular files" in line, (args, line)
    assert fifo.is_fifo() and link.is_symlink() and link_json.is_symlink()
    assert kept.read_bytes() == b"the user's file"
    assert Path("/dev/null").is_char_device()


def test_the_atomic_writer_itself_never_replaces_a_special_file_or_a_link(tmp_path, monkeypatch):
    """Defence in depth: the writer refuses what the command-line check refuses, also when the
    target becomes a link while the temporary file is written."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    kept = tmp_path / "kept.txt"
    kept.write_text("keep me")
    link = tmp_path / "link.txt"
    link.symlink_to(kept)
    img = Image.new("RGB", (8, 8))
    for write, target in ((lambda p: outputs.save_png_atomic(img, p), fifo),
                          (lambda p: outputs.write_text_atomic("x", p), link),
                          (lambda p: outputs.write_json_atomic({}, p), "/dev/null")):
        with pytest.raises(outputs.OutputPathError, match="regular files"):
            write(target)
    assert fifo.is_fifo() and link.is_symlink() and kept.read_text() == "keep me"
    assert _leftovers(tmp_path) == []

    # a link made between the check and the replace is not replaced either
    target = tmp_path / "report.json"
    real_fsync = os.fsync

    def fsync_then_link(fd):
        real_fsync(fd)
        if not target.is_symlink():
            target.symlink_to(kept)

    monkeypatch.setattr(outputs.os, "fsync", fsync_then_link)
    with pytest.raises(outputs.OutputPathError, match="symbolic link"):
        outputs.write_text_atomic("late", target)
    assert target.is_symlink() and kept.read_text() == "keep me"
    assert _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- outputs apart from inputs

def _files(tmp_path: Path) -> dict[str, Path]:
    f = {name: _png(tmp_path / f"{name}.png", k) for k, name in enumerate(("content", "style", "b", "mask"))}
    (tmp_path / "imgs").mkdir()
    f["dataset"] = _png(tmp_path / "imgs" / "x.png")
    f["recipe"] = tmp_path / "recipe.json"
    f["recipe"].write_text(json.dumps({"settings": {"steps": 1}}))
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    os.link(f["content"], tmp_path / "hard.png")
    src = tmp_path / "in"
    _png(src / "cats" / "a.png")
    _png(tmp_path / "styles" / "s.png", 1)
    return f


CLASHES = [
    # two outputs on one path
    (["stylize", "{content}", "{style}", "-o", "{t}/same.png", "--report", "{t}/same.png"], "are the same file"),
    (["dream", "gray", "-o", "{t}/d.png", "--gif", "{t}/d.gif", "--report", "{t}/d.gif"], "are the same file"),
    (["featurevis", "-o", "{t}/g.png", "--examples", "1", "--report", "{t}/g-examples.png"], "are the same file"),
    (["activations", "{content}", "-o", "{t}/a.png", "--json", "{t}/alias/a.png"], "are the same file"),
    (["saliency", "{style}", "-o", "{t}/h.png", "--npy", "{t}/h.npy", "--report", "{t}/h.npy"], "are the same file"),
    # an output on an input
    (["stylize", "{content}", "{style}", "-o", "{t}/o.png", "--report", "{content}"], "is the content image"),
    (["stylize", "{content}", "{style}", "-o", "{t}/alias/style.png"], "is the style image"),
    (["stylize", "{content}", "{style}", "-o", "{t}/hard.png"], "is the content image"),
    (["stylize", "{content}", "--style", "{style}:0.5", "--style", "{b}:0.5", "-o", "{b}"], "is the style image"),
    (["stylize", "{content}", "{style}", "-o", "{mask}", "--mask", "{mask}"], "is the --mask"),
    (["stylize", "{content}", "{style}", "-o", "{t}/o.png", "--recipe", "{recipe}", "--report", "{recipe}"],
     "is the recipe"),
    (["dream", "{content}", "-o", "{b}", "--objective", "guide", "--guide", "{b}"],
     "is the guide image"),
    (["saliency", "{style}", "-o", "{style}"], "is the style image"),
    (["activations", "{content}", "-o", "{content}"], "is the image"),
    (["featurevis", "-o", "{dataset}", "--examples", "1", "--images-dir", "{t}/imgs"], "is a file in the --images-dir"),
    (["augment", "{t}/in", "{t}/styles", "-o", "{t}/out", "--variants", "1", "--report", "{t}/in/cats/a.png"],
     "is a file in the input folder"),
    (["augment", "{t}/in", "{t}/styles", "-o", "{t}/out", "--variants", "1", "--report", "{t}/out/manifest.csv"],
     "must be a .json file"),
]


@pytest.mark.parametrize("args, words", CLASHES, ids=[f"{c[0][0]}-{c[1]}-{i}" for i, c in enumerate(CLASHES)])
def test_an_output_on_another_output_or_on_an_input_is_refused_before_any_work(tmp_path, capsys, monkeypatch,
                                                                                args, words):
    """`-o same.png --report same.png` left JSON where the image was; `--report photo.jpg`
    overwrote the photo; links, hard links and implicit outputs (the examples sheet) too."""
    files = _files(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()}
    _no_model(monkeypatch)
    argv = [a.format(t=tmp_path, **files) for a in args]
    rc, _, err = run_cli(capsys, *argv, "--untrained")
    assert rc == 2 and words in error_line(err), err
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == before  # nothing written, nothing changed


def test_names_that_differ_only_in_case_are_one_file_where_the_folder_ignores_case(tmp_path, capsys, monkeypatch):
    """Case is compared per folder, detected there: in a folder where another spelling of a
    name reaches the same file (as on macOS or Windows), `-o Out.png --report out.PNG` is one
    file; in a folder where case matters they are two."""
    _no_model(monkeypatch)
    folded = tmp_path / "folded"
    folded.mkdir()
    (folded / "Probe").write_text("x")
    os.link(folded / "Probe", folded / "pROBE")  # what a case-insensitive folder shows
    rc, _, err = run_cli(capsys, "activations", "sample:astronaut", "-o", folded / "Out.png", "--json",
                         folded / "out.PNG", "--untrained")
    assert rc == 2 and "are the same file" in error_line(err)

    exact = tmp_path / "exact"
    exact.mkdir()
    (exact / "Probe").write_text("x")
    outs = [("output", exact / "Out.png"), ("--json", exact / "out.PNG")]
    outputs.check_apart(outs)  # no error: two files where case matters
    with pytest.raises(outputs.OutputPathError, match="same file"):
        outputs.check_apart([*outs, ("--report", exact / "sub" / ".." / "Out.png")])


# ----------------------------------------------------------------------------- commas and colons in style names

def test_a_style_file_with_a_comma_is_one_image_and_a_blend_of_such_names_replays(tmp_path, capsys, shared_models):
    """ "Monet, Water Lilies.png" gave "file not found: .../Monet". A STYLE that names an
    existing file is that file; `--style FILE[:WEIGHT]` repeated blends such names; the recipe
    (which stores "a:0.75,b:0.25") replays the same blend."""
    content = _png(tmp_path / "content.png")
    monet = _png(tmp_path / "Monet, Water Lilies.png", 1)
    odd = _png(tmp_path / "b:1,2.png", 2)
    rc, _, err = run_cli(capsys, "stylize", content, monet, "-o", tmp_path / "one.png", *STYLIZE_FAST)
    assert rc == 0, err
    report = tmp_path / "blend.json"
    rc, _, err = run_cli(capsys, "stylize", content, "--style", f"{monet}:0.75", "--style", f"{odd}:0.25",
                         "-o", tmp_path / "blend.png", "--report", report, *STYLIZE_FAST)
    assert rc == 0, err
    assert "x0.75" in err and "x0.25" in err
    stored = _strict_json(report)["inputs"]["style"]
    assert stored == f"{monet}:0.75,{odd}:0.25"
    again = tmp_path / "again.json"
    rc, _, err = run_cli(capsys, "stylize", "--recipe", report, "-o", tmp_path / "again.png", "--report", again,
                         *STYLIZE_FAST)
    assert rc == 0, err
    assert _strict_json(again)["inputs"]["style"] == stored and "x0.75" in err
    # the old spec in one argument still works, and a spec of names with commas reads back
    assert blend.parse_style_spec(stored, os.path.isfile) == [(str(monet), 0.75), (str(odd), 0.25)]
    rc, _, err = run_cli(capsys, "stylize", content, f"{content}:0.7,{odd}:0.3", "-o", tmp_path / "old.png",
                         *STYLIZE_FAST)
    assert rc == 0, err


def test_a_missing_blend_member_with_a_comma_says_how_to_name_it(tmp_path, capsys, monkeypatch):
    content = _png(tmp_path / "content.png")
    _no_model(monkeypatch)
    rc, _, err = run_cli(capsys, "stylize", content, f"{tmp_path}/Monet, Water Lilies.png", "-o",
                         tmp_path / "o.png", "--untrained")
    line = error_line(err)
    assert rc == 2 and "Monet" in line and "--style FILE[:WEIGHT] once per image" in line


@pytest.mark.parametrize("text, expected", [
    ("Monet, Water Lilies.png", [("Monet, Water Lilies.png", 1.0)]),
    ("Monet, Water Lilies.png:0.7,b.png:0.3", [("Monet, Water Lilies.png", 0.7), ("b.png", 0.3)]),
    ("ends:2.png:0.5,sample:gravel", [("ends:2.png", 0.5), ("sample:gravel", 1.0)]),
    ("x:3", [("x:3", 1.0)]),  # an existing file whose name ends like a weight
    ("x:3:1,b.png:2", [("x:3", 1.0), ("b.png", 2.0)]),
    ("a.png:0.7,b.png:0.3", [("a.png", 0.7), ("b.png", 0.3)]),
])
def test_blend_specs_keep_commas_and_colons_that_belong_to_existing_files(text, expected):
    existing = {"Monet, Water Lilies.png", "b.png", "ends:2.png", "x:3", "a.png"}
    assert blend.parse_style_spec(text, existing.__contains__) == expected
    assert blend.parse_style_spec(blend.format_style_spec(expected), existing.__contains__) == expected
    entries = [f"{ref}:{w:g}" for ref, w in expected]
    assert blend.parse_style_entries(entries, existing.__contains__) == expected


# ----------------------------------------------------------------------------- blend weights

@pytest.mark.parametrize("weights", [[1e308, 1e308], [math.inf, 1.0], [math.nan, 1.0], [-1.0, 2.0], [0.0, 0.0]])
def test_blend_weights_must_be_finite_with_a_finite_positive_sum(weights):
    with pytest.raises(ValueError) as exc:
        blend.check_weights(weights)
    assert "\n" not in str(exc.value)
    assert "finite" in str(exc.value) or "sum to 0" in str(exc.value)
    with pytest.raises(ValueError):
        blend.prepare_blend(Image.new("RGB", (40, 40)), [(Image.new("RGB", (40, 40)), w) for w in weights], 32)


def test_blend_weights_that_sum_to_infinity_are_one_line_before_any_model(tmp_path, capsys, monkeypatch):
    """`a.png:1e308,b.png:1e308` gave "cannot convert float NaN to integer"."""
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", 1)
    _no_model(monkeypatch)
    for style in ([f"{a}:1e308,{b}:1e308"], ["--style", f"{a}:1e308", "--style", f"{b}:1e308"]):
        rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", *style, "-o", tmp_path / "o.png", "--untrained")
        line = error_line(err)
        assert rc == 2 and "sum finite and > 0" in line and "infinity" in line, line
    assert not (tmp_path / "o.png").exists()


# ----------------------------------------------------------------------------- strict JSON

def test_json_text_writes_non_finite_numbers_as_null():
    text = outputs.json_text({"loss": math.nan, "up": [math.inf, -math.inf, 1.5], "f32": np.float32("nan"),
                              "n": np.int64(3), "ok": True, "none": None})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {
        "loss": None, "up": [None, None, 1.5], "f32": None, "n": 3, "ok": True, "none": None}


def test_a_report_whose_losses_became_nan_is_strict_json_and_replays(tmp_path, capsys, shared_models, monkeypatch):
    """Reports held bare NaN / Infinity, which strict JSON readers refuse."""
    real = control.ControlledTransfer.report

    def poisoned(self):
        rep = real(self)
        rep["final_losses"] = {**(rep.get("final_losses") or {}), "total": math.nan, "style": math.inf}
        rep["history"] = [{**h, "total": math.nan} for h in rep["history"]]
        return rep

    monkeypatch.setattr(control.ControlledTransfer, "report", poisoned)
    report = tmp_path / "r.json"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", tmp_path / "o.png",
                         "--report", report, *STYLIZE_FAST, "--seed", "4")
    assert rc == 0, err
    r = _strict_json(report)
    assert r["final_losses"]["total"] is None and r["final_losses"]["style"] is None
    with Image.open(tmp_path / "o.png") as im:
        assert json.loads(im.text["settings"])["seed"] == 4
    again = tmp_path / "again.json"
    rc, _, err = run_cli(capsys, "stylize", "--recipe", report, "-o", tmp_path / "again.png", "--report", again,
                         "--untrained", "--quiet")
    assert rc == 0, err
    assert _strict_json(again)["settings"] == r["settings"]


# ----------------------------------------------------------------------------- stdout

def test_no_command_prints_on_stdout(tmp_path, capsys, shared_models):
    """Under --quiet run messages (featurevis's and augment's notes) went to stdout; every
    message goes to stderr, results go to files."""
    imgs, src, styles = tmp_path / "imgs", tmp_path / "in", tmp_path / "styles"
    _png(imgs / "x.png")
    (imgs / "broken.jpg").write_text("not a picture")  # a note while the examples are collected
    _png(src / "cats" / "a.png")
    (src / "cats" / "broken.png").write_text("not a picture")  # a skipped input, said while running
    _png(styles / "s.png", 1)
    t = tmp_path
    commands = [
        ["stylize", "sample:astronaut", "sample:gravel", "-o", t / "s.png", *STYLIZE_FAST],
        ["dream", "gray", "-o", t / "d.png", "--steps", "1", "--octaves", "1", *FAST],
        ["featurevis", "-o", t / "f.png", "--layer", "relu2_1", "--steps", "1", "--examples", "1", "--images-dir", imgs,
         *FAST],
        ["activations", "sample:astronaut", "-o", t / "a.png", "--json", t / "a.json", *FAST],
        ["saliency", "sample:gravel", "-o", t / "h.png", "--method", "gradcam", *FAST],
        ["augment", src, styles, "-o", t / "out", "--variants", "1", "--steps", "1", "--batch-size", "1", *FAST],
    ]
    for args in commands:
        rc, out, err = run_cli(capsys, *args)
        assert rc == 0, (args[0], err)
        assert out == "", (args[0], out)
        assert "wrote" in err  # the messages are all on stderr


# ----------------------------------------------------------------------------- a full disk

class _FullDisk:
    """``os`` as :mod:`explorer.io.outputs` sees it, with a disk that fills after ``room`` files."""

    def __init__(self, room: int = 0, code: int = errno.ENOSPC):
        self.room, self.code = room, code

    def fsync(self, fd):
        if self.room <= 0:
            raise OSError(self.code, os.strerror(self.code))
        self.room -= 1
        os.fsync(fd)

    def __getattr__(self, name):
        return getattr(os, name)


def test_a_full_disk_names_the_file_keeps_it_intact_and_says_how_to_resume(tmp_path, capsys, shared_models,
                                                                           monkeypatch):
    """"No space left on device" named no file and gave no way forward."""
    out, report = tmp_path / "o.png", tmp_path / "r.json"
    out.write_bytes(b"yesterday's picture")
    monkeypatch.setattr(outputs, "os", _FullDisk(room=1))  # the report fits, the picture does not
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", out, "--report", report,
                         *STYLIZE_FAST)
    line = error_line(err)
    assert rc == 2 and f"cannot write {out}: no space left" in line and "free some space" in line
    assert f"--recipe {report}" in line
    assert out.read_bytes() == b"yesterday's picture"
    assert _strict_json(report)["output"] == str(out)
    assert _leftovers(tmp_path) == []

    monkeypatch.setattr(outputs, "os", _FullDisk(room=0, code=errno.EROFS))
    rc, _, err = run_cli(capsys, "activations", "sample:astronaut", "-o", out, *FAST)
    line = error_line(err)
    assert rc == 2 and str(out) in line and "read-only" in line and "writable disk" in line
    assert out.read_bytes() == b"yesterday's picture"


def test_augment_on_a_full_disk_names_the_image_and_running_again_resumes(tmp_path, capsys, shared_models,
                                                                          monkeypatch):
    src, styles, out = tmp_path / "in", tmp_path / "styles", tmp_path / "out"
    _png(src / "cats" / "a.png")
    _png(src / "cats" / "b.png", 2)
    _png(styles / "s.png", 1)
    args = ["augment", src, styles, "-o", out, "--variants", "1", "--steps", "1", "--batch-size", "1", *FAST]
    # the folder's settings file and the first image fit, the second image does not
    monkeypatch.setattr(outputs, "os", _FullDisk(room=2))
    rc, _, err = run_cli(capsys, *args)
    line = error_line(err)
    assert rc == 2 and "cannot write" in line and str(out / "cats") in line and ".png" in line
    assert "no space left" in line and "run the same command again: it resumes" in line
    written = sorted(p.name for p in (out / "cats").glob("*.png"))
    assert len(written) == 1 and _leftovers(out / "cats") == []
    monkeypatch.setattr(outputs, "os", os)  # space freed
    rc, _, err = run_cli(capsys, *args)
    assert rc == 0 and "1 already done" in err, err
    assert len(list((out / "cats").glob("*.png"))) == 2
