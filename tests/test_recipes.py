"""Recipes: every command's ``--report`` replays with ``--recipe`` to the same output, on VGG
and on a network that is not a VGG; every recipe shape an earlier version wrote (kept in
``tests/fixtures/recipes/``, written by those versions) still replays, as it ran then; every
report starts with the same run-info block; :func:`explorer.core.recipes.migrate` is the one
reader of older shapes.

Every run is on the CPU, 32-48 px, 1-2 steps, on untrained weights.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.core import recipes
from explorer.core.settings import RecipeSettings
from tests.helpers import error_line, run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "recipes"
UNTRAINED = ["--untrained", "--quiet"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.delenv("EXPLORER_WEIGHTS_DIR", raising=False)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def dataset(root: Path) -> tuple[Path, Path]:
    """An ImageFolder input (one class, one picture) and a styles folder (one picture)."""
    rng = np.random.default_rng(0)
    (root / "in" / "cats").mkdir(parents=True)
    (root / "styles").mkdir()
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype("uint8")).save(root / "in" / "cats" / "a.png")
    Image.fromarray((rng.random((40, 40, 3)) * 255).astype("uint8")).save(root / "styles" / "s.png")
    return root / "in", root / "styles"


# --------------------------------------------------------------------------- round trips

#: (command, network, the first run's arguments before the outputs); the replay gives only
#: --recipe and the outputs.
ROUND_TRIPS = [
    ("saliency", "vgg19", ["saliency", "sample:brick", "--size", "48"]),
    ("saliency", "mobilenet_v2", ["saliency", "sample:brick", "--size", "48"]),
    ("dream", "vgg19", ["dream", "sample:chelsea", "--size", "48", "--octaves", "1", "--steps", "2"]),
    ("dream", "mobilenet_v2", ["dream", "sample:chelsea", "--size", "48", "--octaves", "1", "--steps", "2"]),
    ("featurevis", "vgg19", ["featurevis", "--size", "32", "--steps", "2", "--channels", "0,1"]),
    ("featurevis", "mobilenet_v2", ["featurevis", "--size", "32", "--steps", "2", "--channels", "0,1"]),
    ("stylize", "vgg19", ["stylize", "sample:chelsea", "sample:brick", "--size", "48", "--steps", "2"]),
    ("stylize", "vgg16", ["stylize", "sample:chelsea", "sample:brick", "--size", "48", "--steps", "2"]),
    ("reconstruct", "vgg19", ["reconstruct", "sample:chelsea", "sample:brick", "--size", "48", "--steps", "2",
                              "--layers", "relu2_2", "--style-sets", "relu1_1;relu1_1,relu2_1", "--seed", "3"]),
    ("reconstruct", "vgg16", ["reconstruct", "sample:chelsea", "sample:brick", "--size", "48", "--steps", "1",
                              "--layers", "relu1_2", "--style-sets", "relu2_1"]),
]


@pytest.mark.parametrize("command,model,args", ROUND_TRIPS, ids=[f"{c}-{m}" for c, m, _ in ROUND_TRIPS])
def test_report_then_recipe_gives_the_same_output(capsys, tmp_path, command, model, args):
    npy = ["--npy", str(tmp_path / "a.npy")] if command == "saliency" else []
    rc, _, err = run_cli(capsys, *args, "--model", model, "-o", str(tmp_path / "a.png"),
                         "--report", str(tmp_path / "a.json"), *npy, *UNTRAINED)
    assert rc == 0, err
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["recipe_version"] == recipes.RECIPE_VERSION and report["command"] == command
    assert report["run"]["model"] == model == report["settings"]["model"]
    npy = ["--npy", str(tmp_path / "b.npy")] if command == "saliency" else []
    rc, _, err = run_cli(capsys, command, "--recipe", str(tmp_path / "a.json"), "-o", str(tmp_path / "b.png"),
                         "--report", str(tmp_path / "b.json"), *npy, *UNTRAINED)
    assert rc == 0, err
    assert np.array_equal(pixels(tmp_path / "a.png"), pixels(tmp_path / "b.png"))
    if command == "saliency":
        assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    again = json.loads((tmp_path / "b.json").read_text())
    assert again["settings"] == report["settings"] and again["run"] == report["run"]


def test_augment_report_replays_to_the_same_images(capsys, tmp_path):
    inputs, styles = dataset(tmp_path)
    common = [str(inputs), str(styles), "--variants", "1", "--steps", "1", "--size", "48", "--model", "vgg16"]
    rc, _, err = run_cli(capsys, "augment", *common, "-o", str(tmp_path / "a"), "--report",
                         str(tmp_path / "a.json"), *UNTRAINED)
    assert rc == 0, err
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["command"] == "augment" and report["run"]["model"] == "vgg16"
    assert report["inputs"] == {"input_dir": str(inputs), "styles_dir": str(styles)} and report["input_files"] == 1
    rc, _, err = run_cli(capsys, "augment", str(inputs), str(styles), "--recipe", str(tmp_path / "a.json"),
                         "-o", str(tmp_path / "b"), *UNTRAINED)
    assert rc == 0, err
    made = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert made and made == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.png"))
    for rel in made:
        assert np.array_equal(pixels(tmp_path / "a" / rel), pixels(tmp_path / "b" / rel))


def test_the_run_info_block_names_the_weights_file_and_its_digest(capsys, tmp_path):
    import torchvision

    from explorer.nets.weights import file_digest

    weights = tmp_path / "mobilenet_v2-mine.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), weights)
    rc, _, err = run_cli(capsys, "saliency", "sample:brick", "--model", "mobilenet_v2", "--size", "48",
                         "--weights", str(weights), "-o", str(tmp_path / "a.png"), "--report", str(tmp_path / "a.json"),
                         "--quiet")
    assert rc == 0, err
    run = json.loads((tmp_path / "a.json").read_text())["run"]
    assert run["weights"]["file"] == weights.name and run["weights"]["digest"] == file_digest(weights)
    assert run["weights"]["kind"] == "file" and run["device"] == "cpu" and run["precision"] == "fp32"
    assert run["torch"] and run["torchvision"]
    # replayed on other weights: said, once, on stderr
    rc, _, err = run_cli(capsys, "saliency", "--recipe", str(tmp_path / "a.json"), "-o", str(tmp_path / "b.png"),
                         *UNTRAINED)
    assert rc == 0 and "the recipe was made with weights from mobilenet_v2-mine.pth" in err


# --------------------------------------------------------------------------- older shapes

def _replay(capsys, tmp_path, name: str, *extra: str) -> dict:
    fixture = FIXTURES / name
    command = "augment" if name.startswith("augment") else name.split("-")[0]
    rc, _, err = run_cli(capsys, command, *extra, "--recipe", str(fixture), "-o",
                         str(tmp_path / ("out" if command == "augment" else "out.png")),
                         "--report", str(tmp_path / "again.json"), *UNTRAINED)
    assert rc == 0, err
    return json.loads((tmp_path / "again.json").read_text())


def test_every_fixture_is_an_earlier_shape():
    names = sorted(p.name for p in FIXTURES.glob("*.json"))
    assert len(names) >= 8
    for name in names:
        assert "recipe_version" not in json.loads((FIXTURES / name).read_text()), name


@pytest.mark.parametrize("name", ["stylize-v1.json", "dream-v1.json", "featurevis-v1.json"])
def test_a_version_1_recipe_replays_with_its_settings(capsys, tmp_path, name):
    old = json.loads((FIXTURES / name).read_text())
    again = _replay(capsys, tmp_path, name)
    assert _without_added(again["settings"], old["settings"]) == old["settings"]


#: settings added after the fixtures were written, with the values that run as the code then did
#: (uniform [0, 1] noise for a noise start; occlusion without mirrored context)
ADDED_SINCE = {"noise_scale": 1.0, "context": 0}


def _without_added(settings: dict, old: dict) -> dict:
    """``settings`` less the :data:`ADDED_SINCE` keys ``old`` does not have, each checked to hold
    the value that reproduces the old run."""
    for key, value in ADDED_SINCE.items():
        if key in settings and key not in old:
            assert settings[key] == value, (key, settings[key])
    return {k: v for k, v in settings.items() if k in old or k not in ADDED_SINCE}


def test_a_version_1_saliency_recipe_of_mobilenet_replays_on_mobilenet(capsys, tmp_path):
    old = json.loads((FIXTURES / "saliency-v1.json").read_text())
    assert "model" not in old["settings"]
    again = _replay(capsys, tmp_path, "saliency-v1.json")
    assert again["settings"]["model"] == again["run"]["model"] == "mobilenet_v2"
    assert _without_added({k: v for k, v in again["settings"].items() if k != "model"}, old["settings"]) == old["settings"]


def test_a_style_recipe_from_before_relative_losses_replays_with_the_papers_losses(capsys, tmp_path):
    old = json.loads((FIXTURES / "stylize-paper-losses.json").read_text())
    assert "loss_normalization" not in old["settings"] and "parameterization" not in old["settings"]
    again = _replay(capsys, tmp_path, "stylize-paper-losses.json")
    s = again["settings"]
    assert s["loss_normalization"] == "paper" and s["style_weight"] == old["settings"]["style_weight"]
    assert s["parameterization"] == "pixel" and s["conv_algorithm"] == "direct"


def test_a_style_recipe_from_before_the_fourier_offset_replays_on_pixels(capsys, tmp_path):
    old = json.loads((FIXTURES / "stylize-pixels.json").read_text())
    assert old["settings"]["loss_normalization"] == "relative" and "parameterization" not in old["settings"]
    again = _replay(capsys, tmp_path, "stylize-pixels.json")
    assert again["settings"]["parameterization"] == "pixel" and again["settings"]["conv_algorithm"] == "direct"
    assert again["settings"]["init"] == old["settings"]["init"]


@pytest.mark.parametrize("name", ["augment-ratio.json", "augment-v1.json"])
def test_older_augment_recipes_replay(capsys, tmp_path, name):
    inputs, styles = dataset(tmp_path)
    old = json.loads((FIXTURES / name).read_text())
    again = _replay(capsys, tmp_path, name, str(inputs), str(styles))
    if "ratio_range" in old["settings"]:
        assert again["settings"]["beta_range"] == old["settings"]["ratio_range"]
        assert again["settings"]["parameterization"] == "pixel"
    else:
        assert again["settings"] == old["settings"]
    assert again["written"] == 1


def test_a_beta_range_flag_wins_over_an_older_recipes_ratio_range(capsys, tmp_path):
    inputs, styles = dataset(tmp_path)
    again = _replay(capsys, tmp_path, "augment-ratio.json", str(inputs), str(styles), "--beta-range", "6,60")
    assert again["settings"]["beta_range"] == [6.0, 60.0]


# --------------------------------------------------------------------------- migrate

@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_migrate_is_idempotent_and_leaves_its_input_alone(name):
    old = json.loads((FIXTURES / name).read_text())
    kept = json.loads(json.dumps(old))
    new = recipes.migrate(old)
    assert old == kept
    assert new["recipe_version"] == recipes.RECIPE_VERSION and new["command"] in recipes.COMMANDS
    assert recipes.migrate(new) == new


def test_the_settings_setting_only_the_settings_the_old_code_fixed():
    # a partial hand-written recipe (no channels_last, no style_weight) keeps today's defaults
    assert recipes.migrate({"settings": {"steps": 3}}, "stylize")["settings"] == {"steps": 3}
    # an augment recipe with both keys: beta_range wins, ratio_range is gone
    s = recipes.migrate({"settings": {"ratio_range": [5, 50], "beta_range": [6, 60]}}, "augment")["settings"]
    assert s == {"beta_range": [6, 60]}


def test_a_recipe_of_a_newer_version_or_another_command_is_one_line(capsys, tmp_path):
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"recipe_version": recipes.RECIPE_VERSION + 1, "settings": {}}))
    rc, _, err = run_cli(capsys, "dream", "sample:chelsea", "--recipe", str(newer), *UNTRAINED)
    assert rc == 2 and "newer explorer" in error_line(err) and len(err.strip().splitlines()) == 1
    shutil.copy(FIXTURES / "dream-v1.json", tmp_path / "d.json")
    rc, _, err = run_cli(capsys, "stylize", "--recipe", str(tmp_path / "d.json"), *UNTRAINED)
    assert rc == 2 and "unknown setting(s)" in error_line(err) and "octaves" in error_line(err)
    recipe = recipes.migrate(json.loads((FIXTURES / "dream-v1.json").read_text()))
    (tmp_path / "d2.json").write_text(json.dumps(recipe))
    rc, _, err = run_cli(capsys, "stylize", "--recipe", str(tmp_path / "d2.json"), *UNTRAINED)
    assert rc == 2 and "recipe of `explorer dream`" in error_line(err)


# --------------------------------------------------------------------------- settings classes

def _settings_classes() -> list[type]:
    from explorer.batch.augment_plan import AugmentSettings
    from explorer.dream.settings import DreamSettings
    from explorer.featurevis.render import FeatureVisSettings
    from explorer.saliency.attribution import AttributionSettings
    from explorer.style.settings import StyleSettings

    return [StyleSettings, AttributionSettings, DreamSettings, FeatureVisSettings, AugmentSettings]


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: c.__name__)
def test_every_settings_class_names_its_network(cls):
    assert issubclass(cls, RecipeSettings)
    assert "model" in {f.name for f in dataclasses.fields(cls)}
    assert cls().to_dict()["model"]


def _guide_settings() -> type:
    from explorer.saliency.guided import GuideSettings

    return GuideSettings


@pytest.mark.parametrize("cls", _settings_classes() + [_guide_settings()], ids=lambda c: c.__name__)
def test_declared_ranges_and_choices_are_checked_by_the_base_class(cls):
    checked = 0
    for f in dataclasses.fields(cls):
        rule = f.metadata.get("rule")
        if rule is None:
            continue
        name = rule.label or f.name
        if rule.choices is not None:
            with pytest.raises(ValueError, match=f"^{name} must be {'among' if rule.names else 'one of'}"):
                cls(**{f.name: "no-such-choice"})
            checked += 1
        elif isinstance(rule.hi, int) and isinstance(rule.lo, int):
            with pytest.raises(ValueError, match=f"^{name} must be between"):
                cls(**{f.name: rule.hi + 1})
            checked += 1
        elif rule.lo is not None and rule.hi is None:
            with pytest.raises(ValueError, match=f"^{name} must be >"):
                cls(**{f.name: rule.lo - 1})
            checked += 1
    assert checked >= 5


def test_a_weights_files_digest_is_computed_once_until_the_file_changes(tmp_path, monkeypatch):
    import builtins
    import os

    from explorer.nets import weights

    f = tmp_path / "w.pth"
    f.write_bytes(b"a" * 1000)
    opened = []

    def counting_open(path, *args, **kw):
        opened.append(str(path))
        return builtins.open(path, *args, **kw)

    monkeypatch.setattr(weights, "open", counting_open, raising=False)
    first = weights.file_digest(f)
    assert weights.file_digest(f) == first and opened == [str(f)]
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(1, 1))  # another modification time, whatever the clock's resolution
    assert weights.file_digest(f) != first and len(opened) == 2


def test_occlusion_recipes_from_before_the_mirrored_context_replay_without_it(capsys, tmp_path):
    # version 2 recipes ran occlusion on the bare picture: they come back with context 0
    old = {"recipe_version": 2, "command": "saliency", "settings": {"method": "occlusion", "window": 16}}
    assert recipes.migrate(old)["settings"]["context"] == 0
    old = {"recipe_version": 2, "command": "stylize", "settings": {}, "guide": {"method": "occlusion"}}
    assert recipes.migrate(old)["guide"]["context"] == 0
    # a current recipe keeps what it says
    new = {"recipe_version": recipes.RECIPE_VERSION, "command": "saliency", "settings": {"context": 8}}
    assert recipes.migrate(new)["settings"]["context"] == 8
    # and the flag reaches the run and its report
    out = tmp_path / "o.png"
    rc, _, err = run_cli(capsys, "saliency", "sample:chelsea", "--method", "occlusion", "--size", "48", "--window",
                         "24", "--stride", "24", "--context", "5", "-o", str(out), "--report",
                         str(tmp_path / "r.json"), *UNTRAINED)
    assert rc == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["context"] == 5
