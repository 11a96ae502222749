"""``python -m explorer featurevis``: the grid PNG and the report, the examples sheet (bundled
samples or --images-dir, broken files skipped), --recipe replays the run exactly and flags
override it, bad input is one error line with exit status 2. Untrained VGG19 (``--untrained``),
relu2_1, 48 px, 3 steps, in-process (:func:`tests.helpers.run_cli`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from explorer.core import choices
from explorer.featurevis import render as featurevis
from explorer.optim import parameterizations
from tests.helpers import error_line, run_cli

FAST = ["--layer", "relu2_1", "--size", "48", "--steps", "3", "--untrained", "--quiet"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.delenv("EXPLORER_ALLOW_UNTRAINED", raising=False)
    monkeypatch.delenv("EXPLORER_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """One run with examples, shared: (output folder, report)."""
    from explorer.cli import parser as cli

    d = tmp_path_factory.mktemp("fv")
    rc = cli.main(["featurevis", "--channels", "0-2", "--examples", "2", "-o", str(d / "grid.png"),
                   "--report", str(d / "report.json"), *FAST])
    assert rc == 0
    return d, json.loads((d / "report.json").read_text())


def test_writes_the_grid_the_examples_sheet_and_the_report(first):
    d, report = first
    grid, sheet = pixels(d / "grid.png"), pixels(d / "grid-examples.png")
    assert grid.shape[1] > 48 and sheet.shape[1] > grid.shape[1]  # 2 x 2 pictures; 1 + 2 tiles a row
    with Image.open(d / "grid.png") as im:
        assert im.text["weights"].startswith("untrained")
        assert json.loads(im.text["settings"])["channels"] == [0, 1, 2]
    s = report["settings"]
    assert s["channels"] == [0, 1, 2] and s["separate"] and s["batch"] == 3 and s["layer"] == "relu2_1"
    assert report["weights"] == "untrained" and report["labels"][2] == "relu2_1 channel 2"
    assert len(report["history"]) == 3 and all(np.isfinite(r["objective"]) for r in report["history"])
    assert report["examples_k"] == 2 and set(report["examples"]) == {"0", "1", "2"}
    assert len(report["examples"]["0"]["examples"]) == 2 and report["inputs"] == {"images": "samples"}
    assert report["examples_output"].endswith("grid-examples.png") and not report["partial"]


def test_recipe_replays_exactly_and_flags_override_it(first, capsys):
    d, _ = first
    rc, _, err = run_cli(capsys, "featurevis", "--recipe", d / "report.json", "-o", d / "again.png",
                         "--untrained", "--quiet")
    assert rc == 0, err
    assert np.array_equal(pixels(d / "grid.png"), pixels(d / "again.png"))
    assert (d / "again-examples.png").exists()  # examples_k comes from the recipe too
    rc, _, err = run_cli(capsys, "featurevis", "--recipe", d / "report.json", "-o", d / "seed.png", "--seed", 1,
                         "--examples", 0, "--report", d / "seed.json", "--untrained", "--quiet")
    assert rc == 0, err
    rep = json.loads((d / "seed.json").read_text())
    assert rep["settings"]["seed"] == 1 and rep["settings"]["channels"] == [0, 1, 2]
    assert not (d / "seed-examples.png").exists()
    assert not np.array_equal(pixels(d / "grid.png"), pixels(d / "seed.png"))


def test_images_dir_skips_broken_files(capsys, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (60, 70, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\x00junk")
    rc, _, err = run_cli(capsys, "featurevis", "--examples", 2, "--images-dir", folder, "-o", tmp_path / "g.png",
                         "--report", tmp_path / "r.json", *FAST)
    assert rc == 0, err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [s[0] for s in rep["examples"]["0"]["skipped"]] == ["broken.jpg"]
    assert "broken.jpg" in err or "broken.jpg" in " ".join(rep["notes"])


def test_objectives_and_options(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "featurevis", "--objective", "direction", "--channels", "1,4", "--direction-weights",
                         "1,-1", "--parameterization", "pixel", "--no-decorrelate", "--transforms", "none",
                         "--batch", 2, "--diversity", 10, "-o", tmp_path / "d.png", "--report", tmp_path / "d.json",
                         *FAST)
    assert rc == 0, err
    s = json.loads((tmp_path / "d.json").read_text())["settings"]
    assert (s["objective"], s["weights"], s["separate"], s["batch"]) == ("direction", [1.0, -1.0], False, 2)
    assert (s["parameterization"], s["decorrelate"], s["transforms"], s["diversity"]) == ("pixel", False, [], 10.0)


@pytest.mark.parametrize("args, message", [
    (["--layer", "nope"], "has no layer 'nope'"),
    (["--channels", "0,999"], "999 does not exist"),
    (["--channels", "3-1"], "runs backwards"),
    (["--transforms", "spin:3"], "spin"),
    (["--examples", "-1"], "--examples must be between 0 and 100"),
    (["--images-dir", "/nonexistent"], "--images-dir needs --examples"),
    (["-o", "grid.jpg"], "output must be a .png file"),
])
def test_bad_input_is_one_error_line(capsys, tmp_path, args, message):
    argv = [*FAST, "-o", tmp_path / "g.png", *args]
    rc, _, err = run_cli(capsys, "featurevis", *argv)
    assert rc == 2
    assert message in error_line(err)


def test_a_missing_images_dir_is_one_error_line(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "featurevis", "--examples", 2, "--images-dir", tmp_path / "none", "-o",
                         tmp_path / "g.png", *FAST)
    assert rc == 2 and "is not a folder" in error_line(err)


def test_the_parsers_choices_are_featurevis_own_lists():
    assert choices.FEATUREVIS_OBJECTIVES == featurevis.OBJECTIVES
    assert choices.PARAMETERIZATIONS == parameterizations.PARAMETERIZATIONS
