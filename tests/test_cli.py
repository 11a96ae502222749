"""Tests for the command line, ``python -m explorer``.

Most tests call :func:`explorer.cli.parser.main` in-process (capsys reads stdout/stderr); two run the
real ``python -m explorer`` in a subprocess to check exit codes and that no traceback leaks.
Every run is on the CPU, 64 px, 2-3 steps, with untrained weights (``--untrained``,
``EXPLORER_ALLOW_UNTRAINED=1``) or a state_dict file written by the test, because pretrained
weights cannot be downloaded here (conftest sets ``EXPLORER_OFFLINE=1``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import error_line, run_cli
from explorer.cli import parser as cli
from explorer.nets.models import list_layers

ROOT = Path(__file__).resolve().parents[1]

FAST = ["--size", "64", "--quiet"]
HISTORY_KEYS = {"step", "content", "style", "tv", "total"}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _no_untrained_by_default(monkeypatch):
    """Untrained weights only when a test asks for them (flag or environment)."""
    monkeypatch.delenv("EXPLORER_ALLOW_UNTRAINED", raising=False)
    monkeypatch.delenv("EXPLORER_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")




def picture(width: int, height: int) -> Image.Image:
    """A smooth, structured RGB picture (gradient with a disc), so JPEG keeps it recognisable."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    disc = ((x - width / 2) ** 2 + (y - height / 2) ** 2) < (min(width, height) / 3) ** 2
    rgb = np.stack([x / width * 255, y / height * 255, disc * 200.0 + 30], axis=-1)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")


def stripes(width: int, height: int) -> Image.Image:
    x = np.arange(width)[None, :].repeat(height, 0)
    s = (np.sin(x / 3.0) > 0).astype(np.uint8) * 255
    return Image.fromarray(np.stack([s, 255 - s, np.full_like(s, 128)], axis=-1), "RGB")


def save(img: Image.Image, path: Path, fmt: str, **kw) -> Path:
    img.save(path, format=fmt, **kw)
    return path


def read_png(path: Path) -> tuple[np.ndarray, dict]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        return np.asarray(im.convert("RGB")), dict(im.text)


def read_report(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))




def check_report(report: dict, steps: int, weights: str) -> None:
    assert {"settings", "weights", "device", "precision", "seconds", "history"} <= set(report)
    assert report["weights"] == weights
    assert report["device"] == "cpu"
    assert report["precision"] in ("fp32", "bf16")
    assert isinstance(report["seconds"], (int, float)) and report["seconds"] >= 0
    hist = report["history"]
    assert isinstance(hist, list) and len(hist) == steps + 1  # step 0 is the starting image
    for i, row in enumerate(hist):
        assert isinstance(row, dict) and HISTORY_KEYS <= set(row)
        assert row["step"] == i
        assert all(np.isfinite(row[k]) for k in ("content", "style", "tv", "total"))
    assert report["settings"]["steps"] == steps


# --------------------------------------------------------------------------- end to end


def test_stylize_samples_end_to_end(capsys, tmp_path):
    out, rep = tmp_path / "out.png", tmp_path / "report.json"
    rc, stdout, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", out,
                              "--steps", 3, "--untrained", "--report", rep, *FAST)
    assert rc == 0, err
    assert "Traceback" not in err
    pixels, text = read_png(out)
    assert max(pixels.shape[:2]) == 64  # astronaut is 512 x 512
    assert pixels.shape[:2] == (64, 64)
    assert "untrained" in text["weights"]
    assert json.loads(text["settings"])["steps"] == 3
    report = read_report(rep)
    check_report(report, steps=3, weights="untrained")
    assert "untrained" in report["weights_label"]
    assert report["inputs"] == {"content": "sample:astronaut", "style": "sample:gravel"}
    assert report["settings"]["size"] == 64
    assert "untrained weights" in err  # the run is labelled on the terminal too


def test_stylize_start_parameterization_and_convolutions_are_flags_and_replay(capsys, tmp_path):
    out, rep = tmp_path / "out.png", tmp_path / "report.json"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", out, "--steps", 2,
                         "--untrained", "--report", rep, "--init", "content", "--parameterization", "pixel",
                         "--conv-algorithm", "direct", *FAST)
    assert rc == 0, err
    settings = read_report(rep)["settings"]
    assert (settings["init"], settings["parameterization"], settings["conv_algorithm"]) == ("content", "pixel", "direct")
    again = tmp_path / "again.json"
    rc, _, err = run_cli(capsys, "stylize", "--recipe", rep, "-o", tmp_path / "b.png", "--report", again,
                         "--untrained", *FAST)
    assert rc == 0, err
    assert read_report(again)["settings"] == settings
    with pytest.raises(SystemExit) as exc:
        run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", out, "--conv-algorithm", "fast", *FAST)
    assert exc.value.code == 2
    assert "--conv-algorithm" in error_line(capsys.readouterr().err)


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_stylize_image_files(capsys, tmp_path, fmt, suffix):
    # a landscape content image and a portrait style image: each keeps its aspect ratio
    content = save(picture(90, 60), tmp_path / f"content{suffix}", fmt)
    style_ = save(stripes(50, 80), tmp_path / f"style{suffix}", fmt)
    out, rep = tmp_path / "sub" / "out.png", tmp_path / "report.json"
    rc, _, err = run_cli(capsys, "stylize", content, style_, "-o", out, "--steps", 2, "--untrained",
                         "--report", rep, *FAST)
    assert rc == 0, err
    pixels, text = read_png(out)
    assert pixels.shape[:2] == (43, 64)  # long side = --size, short side round(60 * 64 / 90)
    assert "untrained" in text["weights"]
    report = read_report(rep)
    check_report(report, steps=2, weights="untrained")
    assert report["inputs"] == {"content": str(content), "style": str(style_)}


def test_weights_file(capsys, tmp_path):
    import torch
    import torchvision

    torch.manual_seed(1)
    wfile = tmp_path / "my-vgg19.pth"
    torch.save(torchvision.models.vgg19().state_dict(), wfile)
    out, rep = tmp_path / "out.png", tmp_path / "report.json"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", out, "--steps", 2,
                         "--weights", wfile, "--report", rep, *FAST)
    assert rc == 0, err
    report = read_report(rep)
    check_report(report, steps=2, weights="file")
    assert "my-vgg19.pth" in report["weights_label"]
    assert "untrained" not in err
    _, text = read_png(out)
    assert "my-vgg19.pth" in text["weights"] and "untrained" not in text["weights"]


def test_no_weights_is_one_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # surely no cached weights
    out = tmp_path / "out.png"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", out, "--steps", 2, *FAST)
    assert rc == 2
    line = error_line(err)
    assert line.startswith("error: no pretrained weights for vgg19")
    assert "vgg19-dcbb9e9d.pth" in line
    assert "548 MB" in line
    assert "python -m explorer weights download" in line
    assert not out.exists()


def test_allow_untrained_env_falls_back_with_a_label(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_ALLOW_UNTRAINED", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    out, rep = tmp_path / "out.png", tmp_path / "report.json"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", out, "--steps", 2,
                         "--report", rep, *FAST)
    assert rc == 0, err
    check_report(read_report(rep), steps=2, weights="untrained")
    assert "untrained weights" in err
    assert "untrained" in read_png(out)[1]["weights"]


# --------------------------------------------------------------------------- bad input


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    jpeg = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(jpeg, "JPEG", quality=90)
    data = jpeg.getvalue()
    files = {
        "empty": tmp_path / "empty.png",
        "text": tmp_path / "notes.png",
        "truncated": tmp_path / "cut.jpg",
        "tiny": tmp_path / "tiny.png",
        "notjson": tmp_path / "recipe.json",
        "unknown_key": tmp_path / "unknown.json",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a picture\n", encoding="utf-8")
    files["truncated"].write_bytes(data[: len(data) // 2])
    Image.new("RGB", (10, 10), "red").save(files["tiny"])
    files["notjson"].write_text("{'settings': steps=3", encoding="utf-8")
    files["unknown_key"].write_text(json.dumps({"settings": {"steps": 2, "octaves": 4}}), encoding="utf-8")
    return files


BAD_INPUT = {
    # id: (arguments after "stylize", with {name} naming a file from _bad_files, expected text)
    "missing file": (["{tmp}/nope.png", "sample:gravel"], ["nope.png", "file not found"]),
    "empty file": (["{empty}", "sample:gravel"], ["empty.png", "empty"]),
    "text named .png": (["sample:astronaut", "{text}"], ["style image", "notes.png", "not an image"]),
    "truncated jpeg": (["{truncated}", "sample:gravel"], ["cut.jpg", "truncated or corrupt"]),
    "10x10 image": (["{tiny}", "sample:gravel"], ["tiny.png", "too small", "32"]),
    "unknown content layer": (["sample:astronaut", "sample:gravel", "--content-layer", "relu9_9"],
                              ["relu9_9", "valid layers", "relu4_2", "conv1_1"]),
    "unknown style layer": (["sample:astronaut", "sample:gravel", "--style-layers", "relu1_1,rleu2_1"],
                            ["rleu2_1", "valid layers", "relu2_1"]),
    "zero steps": (["sample:astronaut", "sample:gravel", "--steps", "0"], ["steps", "between 1"]),
    "output not png": (["sample:astronaut", "sample:gravel", "-o", "{tmp}/out.jpg"], [".png", "out.jpg"]),
    "recipe not json": (["sample:astronaut", "sample:gravel", "--recipe", "{notjson}"], ["recipe", "not valid JSON"]),
    "unknown recipe key": (["sample:astronaut", "sample:gravel", "--recipe", "{unknown_key}"],
                           ["unknown setting", "octaves", "valid:", "style_weight"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_error_line(capsys, tmp_path, case):
    files = _bad_files(tmp_path)
    argv, expected = BAD_INPUT[case]
    argv = [a.format(tmp=tmp_path, **files) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "out.png")]
    # the case's own flags come last so that they win over the common ones
    rc, _, err = run_cli(capsys, "stylize", "--untrained", "--steps", "2", *FAST, *argv)
    assert rc == 2
    line = error_line(err)
    for text in expected:
        assert text in line, line
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "out.jpg").exists()


def test_unknown_layer_message_lists_every_valid_layer(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", tmp_path / "o.png",
                         "--content-layer", "conv9_1", "--untrained", "--steps", 1, *FAST)
    assert rc == 2
    listed = error_line(err).split("valid layers:", 1)[1]
    assert [n.strip() for n in listed.split(",")] == list_layers("vgg19")


def test_argparse_error_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["stylize", "sample:astronaut", "sample:gravel", "-o", str(tmp_path / "o.png"),
                  "--optimizer", "foo", "--untrained"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    line = error_line(err)
    assert "--optimizer" in line and "foo" in line and "lbfgs" in line
    assert "usage:" not in err
    assert not (tmp_path / "o.png").exists()


# --------------------------------------------------------------------------- real subprocess


def _subprocess(*args, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    env.pop("EXPLORER_ALLOW_UNTRAINED", None)
    return subprocess.run([sys.executable, "-m", "explorer", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # over 5 s on a 2-core CPU; -m "not slow" leaves it out
def test_subprocess_exit_codes(tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_text("not an image", encoding="utf-8")
    p = _subprocess("stylize", bad, "sample:gravel", "-o", tmp_path / "bad.png", "--untrained", "--steps", 2, *FAST)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert error_line(p.stderr).startswith("error: content image 'photo.png': not an image")
    assert not (tmp_path / "bad.png").exists()

    out = tmp_path / "good.png"
    p = _subprocess("stylize", "sample:chelsea", "sample:brick", "-o", out, "--untrained", "--steps", 2, *FAST)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    pixels, text = read_png(out)
    assert max(pixels.shape[:2]) == 64
    assert "untrained" in text["weights"]


def test_subprocess_missing_weights_exit_2(tmp_path):
    p = _subprocess("stylize", "sample:astronaut", "sample:gravel", "-o", tmp_path / "o.png", "--steps", 1, *FAST,
                    env_extra={"TORCH_HOME": str(tmp_path / "th"), "EXPLORER_OFFLINE": "1"})
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert error_line(p.stderr).startswith("error: no pretrained weights for vgg19")


# --------------------------------------------------------------------------- recipes and seeds


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One run with non-default settings and a report, shared by the recipe tests."""
    d = tmp_path_factory.mktemp("recipe")
    out, rep = d / "first.png", d / "first.json"
    rc = cli.main(["stylize", "sample:astronaut", "sample:gravel", "-o", str(out), "--report", str(rep),
                   "--untrained", "--steps", "3", "--style-weight", "1e5", "--seed", "7", "--init", "noise",
                   "--tv-weight", "0.5", "--style-layers", "relu1_1,relu2_1,relu3_1", *FAST])
    assert rc == 0
    return d, out, rep


def test_recipe_replays_the_run_exactly(capsys, first_run):
    d, first_png, first_rep = first_run
    r1 = read_report(first_rep)
    assert r1["inputs"] == {"content": "sample:astronaut", "style": "sample:gravel"}
    # the flags really were non-default, so the replay cannot pass by falling back to defaults
    assert (r1["settings"]["steps"], r1["settings"]["style_weight"], r1["settings"]["seed"],
            r1["settings"]["init"], r1["settings"]["tv_weight"]) == (3, 1e5, 7, "noise", 0.5)
    assert r1["settings"]["style_layers"] == ["relu1_1", "relu2_1", "relu3_1"]

    out, rep = d / "replay.png", d / "replay.json"
    rc, _, err = run_cli(capsys, "stylize", "--recipe", first_rep, "-o", out, "--report", rep,
                         "--untrained", "--quiet")  # no images: the recipe names the samples
    assert rc == 0, err
    r2 = read_report(rep)
    assert r2["settings"] == r1["settings"]
    assert r2["inputs"] == r1["inputs"]
    assert len(r2["history"]) == 4
    # same seed, same CPU, deterministic ops: the very same pixels and losses
    a, _ = read_png(first_png)
    b, _ = read_png(out)
    assert np.array_equal(a, b)
    assert [h["total"] for h in r2["history"]] == [h["total"] for h in r1["history"]]


def test_flags_override_the_recipe(capsys, first_run):
    d, _, first_rep = first_run
    r1 = read_report(first_rep)
    out, rep = d / "override.png", d / "override.json"
    rc, _, err = run_cli(capsys, "stylize", "--recipe", first_rep, "-o", out, "--report", rep,
                         "--untrained", "--quiet", "--steps", "2")
    assert rc == 0, err
    r2 = read_report(rep)
    assert len(r2["history"]) == 3
    assert r2["settings"]["steps"] == 2
    assert {k: v for k, v in r2["settings"].items() if k != "steps"} == \
        {k: v for k, v in r1["settings"].items() if k != "steps"}


def test_recipe_without_settings_is_an_error(capsys, tmp_path):
    rec = tmp_path / "r.json"
    rec.write_text(json.dumps({"inputs": {"content": "sample:astronaut", "style": "sample:gravel"}}), "utf-8")
    rc, _, err = run_cli(capsys, "stylize", "--recipe", rec, "-o", tmp_path / "o.png", "--untrained", "--quiet")
    assert rc == 2
    assert "settings" in error_line(err)


def _noise_run(capsys, tmp_path: Path, seed: int, name: str) -> np.ndarray:
    out = tmp_path / f"{name}.png"
    rc, _, err = run_cli(capsys, "stylize", "sample:coffee", "sample:brick", "-o", out, "--untrained",
                         "--init", "noise", "--seed", seed, "--steps", 2, *FAST)
    assert rc == 0, err
    return read_png(out)[0]


def test_seeds_reproduce_and_differ(capsys, tmp_path):
    a = _noise_run(capsys, tmp_path, 3, "a")
    b = _noise_run(capsys, tmp_path, 3, "b")
    c = _noise_run(capsys, tmp_path, 4, "c")
    assert np.array_equal(a, b)
    # a different seed starts from different noise; after 2 steps most pixels still differ
    assert np.mean(a != c) > 0.5


# --------------------------------------------------------------------------- weights command


def test_weights_status_lists_models_and_files(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    rc, out, err = run_cli(capsys, "weights", "status")
    assert rc == 0, err
    for model, fname in [("vgg19", "vgg19-dcbb9e9d.pth"), ("vgg16", "vgg16-397923af.pth"),
                         ("googlenet", "googlenet-1378be20.pth"),
                         ("inception_v3", "inception_v3_google-0cc3c7bd.pth")]:
        rows = [l for l in out.splitlines() if l.split()[:1] == [model]]
        assert len(rows) == 1, out
        assert fname in rows[0] and "missing" in rows[0]
    assert str(tmp_path / "th") in out  # where the torch cache is


def test_weights_status_finds_a_file_in_weights_dir(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "googlenet-1378be20.pth").write_bytes(b"placeholder")
    rc, out, _ = run_cli(capsys, "weights", "status")
    assert rc == 0
    row = next(l for l in out.splitlines() if l.startswith("googlenet"))
    assert str(tmp_path / "googlenet-1378be20.pth") in row
    assert "missing" in next(l for l in out.splitlines() if l.startswith("vgg19"))


def test_weights_status_says_found_but_unreadable_and_why(capsys, tmp_path, monkeypatch):
    """A damaged file was listed as found, and a folder in its place as missing."""
    import torch

    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    torch.save({"fc.weight": torch.zeros(3, 2)}, tmp_path / "resnet50-0676ba61.pth")  # keys are checked on load
    data = (tmp_path / "resnet50-0676ba61.pth").read_bytes()
    (tmp_path / "googlenet-1378be20.pth").write_bytes(data[: len(data) - 40])  # cut short
    (tmp_path / "vgg16-397923af.pth").mkdir()
    (tmp_path / "mobilenet_v2-b0353104.pth").write_text("not a checkpoint")
    torch.save({"net": torch.nn.Linear(2, 2)}, tmp_path / "inception_v3-pickled-module.pth")
    rc, out, err = run_cli(capsys, "weights", "status")
    assert rc == 0, err
    rows = {l.split()[0]: l for l in out.splitlines() if l.split() and not l.startswith(("torch", "EXPLORER"))}
    assert rows["resnet50"].endswith(f"  {tmp_path / 'resnet50-0676ba61.pth'}")
    assert rows["vgg19"].endswith("  missing")
    expected = {"googlenet": "the file is truncated or damaged", "vgg16": "this is a folder, not a file",
                "mobilenet_v2": "it is not a PyTorch state_dict file",
                "inception_v3": "it holds Python objects other than tensors"}
    for model, reason in expected.items():
        assert f": found but unreadable: {reason}" in rows[model], rows[model]
    assert len(out.splitlines()) == len(rows) + 2  # one line per network


def test_weights_download_unknown_model(capsys):
    rc, out, err = run_cli(capsys, "weights", "download", "--models", "nosuch")
    assert rc == 2
    line = error_line(err)
    assert "nosuch" in line and "vgg19" in line
    assert "ok " not in out


# --------------------------------------------------------------------------- MobileNetV2 and ResNet-50

@pytest.mark.parametrize("model", ["mobilenet_v2", "resnet50"])
def test_dream_activations_and_saliency_commands_take_mobilenet_and_resnet(capsys, tmp_path, model):
    rc, _, err = run_cli(capsys, "dream", "sample:chelsea", "-o", tmp_path / "d.png", "--model", model,
                         "--octaves", "1", "--steps", "2", "--untrained", *FAST)
    assert rc == 0, err
    with Image.open(tmp_path / "d.png") as im:
        assert max(im.size) == 64
    layer = "block6" if model == "mobilenet_v2" else "layer2_1"
    rc, _, err = run_cli(capsys, "activations", "sample:coffee", "--model", model, "--layer", layer, "--untrained",
                         "--size", "96", "--out", tmp_path / "a.png", "--json", tmp_path / "a.json")
    assert rc == 0, err
    info = json.loads((tmp_path / "a.json").read_text())
    assert info["layer"] == layer and info["shape"][1:] == [8, 12]  # stride 8, coffee at 96 x 64 px
    rc, _, err = run_cli(capsys, "saliency", "sample:gravel", "-o", tmp_path / "s.png", "--model", model,
                         "--method", "guided_backprop", "--npy", tmp_path / "s.npy", "--untrained", *FAST)
    assert rc == 0, err
    heat = np.load(tmp_path / "s.npy")
    assert heat.shape == (64, 64) and np.isfinite(heat).all() and heat.max() > 0


@pytest.mark.parametrize("argv", [["--help"], ["stylize", "--help"], ["stylize", "a.png", "b.png", "--steps", "x"],
                                  ["nonsense"], ["featurevis", "--help"], ["featurevis", "--objective", "x"]])
def test_help_and_argument_errors_do_not_import_torch(argv):
    """``--help`` and argument errors answer without importing torch (5-35 s on a loaded 2-core
    machine); the commands import it only once they run."""
    code = ("import sys\nfrom explorer import cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'explorer.nets.models' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False False", out.stdout + out.stderr


# --------------------------------------------------------------------------- progress bar

class _Bar:
    """A stand-in for tqdm that records the postfix of every update."""

    posts: list[dict] = []

    def __init__(self, *args, **kwargs):
        self.n = 0

    def set_postfix(self, post, refresh=False):
        _Bar.posts.append(dict(post))

    def refresh(self):
        pass

    def write(self, message):
        pass

    def close(self):
        pass


def test_dream_progress_bar_shows_the_objective(capsys, tmp_path, monkeypatch, googlenet):
    """The dream's events carry ``losses = {"objective": value}``; the bar showed only total,
    content and style losses, so a dream's bar never showed its objective."""
    import tqdm.auto

    from explorer.nets import models

    _Bar.posts = []
    monkeypatch.setattr(tqdm.auto, "tqdm", _Bar)
    monkeypatch.setattr(models, "load_model", lambda name, **kw: googlenet)
    rc, _, err = run_cli(capsys, "dream", "gray", "-o", tmp_path / "d.png", "--octaves", "1", "--steps", "2",
                         "--size", "64", "--untrained")
    assert rc == 0, err
    shown = [p["objective"] for p in _Bar.posts if "objective" in p]
    assert len(shown) >= 2 and all(float(v) == float(v) for v in shown)  # one per step, numbers


def test_saliency_class_objective_names_the_class_it_explains(capsys, tmp_path):
    import torch

    from explorer.io import images, samples
    from explorer.nets.models import load_model

    rc, out, err = run_cli(capsys, "saliency", "sample:gravel", "-o", tmp_path / "s.png", "--objective", "class",
                           "--report", tmp_path / "r.json", "--untrained", "--size", "64")
    assert rc == 0, err
    model = load_model("vgg19", weights="untrained", device="cpu")
    with torch.no_grad():
        idx = int(model(images.to_tensor(images.resize_long_side(samples.load_sample("gravel").image, 64))).argmax(1)[0])
    target = f"class {idx} '{model.spec.weights_enum.meta['categories'][idx]}', the network's top class for this image"
    assert f"of logit of {target} for gravel" in out + err
    assert json.loads((tmp_path / "r.json").read_text())["target"] == target
