"""Content and style reconstructions from white noise (explorer.style.reconstruct): settings and
registry defaults, the event stream, Stop, the figure, the disk cache, and the command's errors.
Untrained VGG19, 32-48 px, 1-2 steps per picture."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from explorer.core.runs import run_to_end
from explorer.nets import models, registry
from explorer.style import reconstruct, reconstruct_cache
from explorer.style.reconstruct import ReconstructSettings, Reconstruction
from tests.helpers import error_line, picture, run_cli, stripes

UNTRAINED = ["--untrained", "--quiet"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.delenv("EXPLORER_WEIGHTS_DIR", raising=False)


def small(**kw) -> ReconstructSettings:
    return ReconstructSettings(**{"size": 32, "steps": 1, "content_layers": "relu1_2,relu3_2",
                                  "style_sets": "relu1_1;relu1_1,relu2_1", **kw})


# --------------------------------------------------------------------------- settings


def test_defaults_are_the_registrys_and_gatys_layers_rectified():
    s = ReconstructSettings()
    spec = registry.MODELS["vgg19"]
    assert s.content_layers == spec.reconstruction_content_layers == ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")
    assert s.style_sets == spec.reconstruction_style_sets
    assert [len(x) for x in s.style_sets] == [1, 2, 3, 4, 5] and s.style_sets[-1] == spec.style_layers
    assert len(s.plan()) == 10 and s.size == 128 and s.steps == reconstruct.DEFAULT_STEPS
    for name in ("vgg19", "vgg16"):
        layers = set(models.list_layers(name))
        spec = registry.MODELS[name]
        assert set(spec.reconstruction_content_layers) <= layers
        assert all(set(x) <= layers for x in spec.reconstruction_style_sets)


def test_style_sets_are_read_from_text_and_lists_and_round_trip():
    assert reconstruct.parse_style_sets("relu1_1; relu1_1+relu2_1") == (("relu1_1",), ("relu1_1", "relu2_1"))
    assert reconstruct.parse_style_sets([["relu1_1"], "relu1_1,relu2_1"]) == (("relu1_1",), ("relu1_1", "relu2_1"))
    assert reconstruct.parse_style_sets("none") == ()
    s = small()
    again = ReconstructSettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s
    assert reconstruct.format_style_sets(s.style_sets) == "relu1_1;relu1_1,relu2_1"


@pytest.mark.parametrize("kw,words", [
    ({"content_layers": "none", "style_sets": "none"}, "both empty"),
    ({"style_sets": "relu1_1,relu1_1"}, "twice"),
    ({"style_sets": 3}, "style_sets must be"),
    ({"steps": 0}, "steps must be between"),
    ({"model": "googlenet"}, "model must be one of"),
])
def test_bad_settings_say_what_is_wrong_in_one_line(kw, words):
    with pytest.raises(ValueError) as e:
        ReconstructSettings(**{"size": 32, **kw})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_each_picture_minimizes_one_term_from_white_noise():
    s = small()
    c = s.picture_settings("content", ("relu3_2",))
    assert (c.content_layer, c.style_layers, c.style_weight, c.content_weight, c.init) == \
        ("relu3_2", (), 0.0, 1.0, "noise")
    t = s.picture_settings("style", ("relu2_1", "relu1_1"))
    assert (t.content_layer, t.style_layers, t.content_weight, t.style_weight) == \
        ("relu2_1", ("relu2_1", "relu1_1"), 0.0, 1.0)
    assert c.optimizer == t.optimizer == "lbfgs" and c.loss_normalization == "relative"


# --------------------------------------------------------------------------- the run


def test_events_cover_every_picture_with_previews(vgg19):
    s = small(steps=2, preview_every=2, size=48)
    run = Reconstruction(vgg19, picture(32, 48), stripes(40, 40), s)
    events = list(run)
    assert len(events) == 4 * 3  # steps 0..2 of each of the 4 pictures
    assert all(e.total == 8 for e in events)
    assert [e.step for e in events] == sorted(e.step for e in events) and events[-1].step == 8
    assert [e.done for e in events].count(True) == 1 and events[-1].done
    stages = list(dict.fromkeys(e.stage for e in events))
    assert stages == ["content relu1_2 (1 of 4)", "content relu3_2 (2 of 4)", "style relu1_1 (3 of 4)",
                      "style relu1_1 + relu2_1 (4 of 4)"]
    for st in stages:  # a preview at each picture's start and end
        previews = [e.preview for e in events if e.stage == st and e.preview is not None]
        assert len(previews) == 2
    assert events[0].preview.shape == (1, 3, 32, 48)  # content at long side 48
    assert events[-1].preview.shape == (1, 3, 48, 48)  # style reconstructions have the style's shape
    result = run.result()
    assert [p.label for p in result.pictures] == ["relu1_2", "relu3_2", "relu1_1", "relu1_1 + relu2_1"]
    assert all(p.steps == 2 and p.image.shape[1] == 3 for p in result.pictures)
    assert result.stopped is None
    rep = result.report()
    assert rep["command"] == "reconstruct" and rep["settings"] == s.to_dict()
    assert [p["label"] for p in rep["pictures"]] == [p.label for p in result.pictures]


def test_the_relative_error_is_the_features_distance_over_their_norm(vgg19):
    """Recomputed from the network's features of the finished picture and of the source."""
    run = Reconstruction(vgg19, picture(32, 32), stripes(32, 32), small(steps=2, style_sets="none"))
    result = run_to_end(run)
    for p in result.pictures:
        with torch.no_grad():
            f = vgg19.features(p.image, [p.layers[0]])[p.layers[0]]
            t = vgg19.features(result.content, [p.layers[0]])[p.layers[0]]
        want = float((f - t).norm() / t.norm())
        assert math.isclose(p.relative_error, want, rel_tol=1e-3)
        assert math.isclose(p.loss, want ** 2, rel_tol=2e-3)
        assert p.losses[-1] == pytest.approx(p.loss) and len(p.losses) == 3


def test_stop_keeps_the_finished_pictures(vgg19):
    run = Reconstruction(vgg19, picture(32, 32), stripes(32, 32), small(steps=2))
    for ev in run:
        if ev.stage.startswith("content relu3_2") and ev.step > 2:
            run.stop("stopped by the user")
    result = run.result()
    assert [p.label for p in result.pictures] == ["relu1_2"]  # the unfinished one is not kept
    assert result.stopped == "stopped by the user" and result.report()["stopped"] == "stopped by the user"
    fig = result.figure()  # still a figure: the style row shows its source only
    assert fig.width > 0


def test_the_figure_has_a_row_of_each_kind_labelled_with_layers(vgg19, monkeypatch):
    run = Reconstruction(vgg19, picture(32, 48), stripes(32, 32), small(size=48))
    list(run)
    result = run.result()
    rows = []
    real = reconstruct.image_grid
    monkeypatch.setattr(reconstruct, "image_grid",
                        lambda images, labels, **kw: rows.append((tuple(images.shape), labels, kw)) or real(images, labels, **kw))
    fig = result.figure()
    assert [r[1] for r in rows] == [["content image", "relu1_2", "relu3_2"],
                                    ["style image", "relu1_1", "relu1_1 + relu2_1"]]
    assert rows[0][0] == (3, 3, 32, 48) and rows[1][0] == (3, 3, 48, 48)
    assert all(r[2]["cols"] == 3 for r in rows)
    assert fig.width == 3 * 48 + 2 * 4 and fig.mode == "RGB"
    rows.clear()
    only_style = dataclasses.replace(result, settings=small(content_layers="none", size=48),
                                     pictures=result.of_kind("style"))
    only_style.figure()
    assert [r[1][0] for r in rows] == ["style image"]


def test_the_memory_of_every_picture_is_checked_before_any_work(vgg19, monkeypatch):
    from explorer.nets.memory import MemoryEstimateError

    seen = []

    def refuse(model, content, settings, dtype):
        seen.append(settings.content_layer)
        if settings.content_layer == "relu3_2":
            raise MemoryEstimateError("a 32 px style transfer needs about 9 GB")
        return 1

    monkeypatch.setattr(reconstruct, "check_style_memory", refuse)
    with pytest.raises(MemoryEstimateError):
        Reconstruction(vgg19, picture(32, 32), stripes(32, 32), small())
    assert seen == ["relu1_2", "relu3_2"]


def test_an_image_too_thin_at_the_working_size_is_refused_in_one_line_before_any_work(vgg19):
    with pytest.raises(ValueError) as e:
        Reconstruction(vgg19, picture(32, 32), stripes(20, 40), small())
    assert "style image is 32x16 px at size 32" in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- the cache


def _result(vgg19):
    run = Reconstruction(vgg19, picture(32, 32), stripes(32, 32), small(content_layers="relu1_2", style_sets="relu1_1"))
    list(run)
    return run.result()


def test_cache_save_and_load_round_trip(vgg19, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))
    result = _result(vgg19)
    inputs = {"content": "sample:chelsea", "style": "sample:brick"}
    path = reconstruct_cache.cache_path("vgg19", vgg19.weights, result.settings, inputs)
    assert path.parent == tmp_path / "cache" / "reconstruct"
    assert reconstruct_cache.load_cached(path) is None
    reconstruct_cache.save_cached(result, path, inputs)
    got = reconstruct_cache.load_cached(path)
    assert got is not None and got.recipe["command"] == "reconstruct" and got.recipe["inputs"] == inputs
    assert got.recipe["settings"] == result.settings.to_dict()
    assert ReconstructSettings.from_dict(got.recipe["settings"]) == result.settings
    assert got.figure.size == result.figure().size
    assert [(k, l) for k, l, _ in got.pictures] == [("content", "relu1_2"), ("style", "relu1_1")]
    assert got.pictures[0][2].size == (32, 32)
    (path / reconstruct_cache.RECIPE_FILE).write_text("{not json")
    assert reconstruct_cache.load_cached(path) is None


def test_the_cache_key_changes_with_the_weights_digest_settings_and_images():
    s = ReconstructSettings()
    inputs = {"content": "sample:astronaut", "style": "sample:gravel"}
    a = reconstruct_cache.cache_key("vgg19", "sha256:" + "a" * 64, s, inputs)
    assert a == reconstruct_cache.cache_key("vgg19", "sha256:" + "a" * 64, ReconstructSettings(), dict(inputs))
    assert a != reconstruct_cache.cache_key("vgg19", "sha256:" + "b" * 64, s, inputs)
    assert a != reconstruct_cache.cache_key("vgg19", "sha256:" + "a" * 64, ReconstructSettings(steps=3), inputs)
    assert a != reconstruct_cache.cache_key("vgg19", "sha256:" + "a" * 64, s, {**inputs, "style": "sample:brick"})
    assert a != reconstruct_cache.cache_key("vgg16", "sha256:" + "a" * 64, ReconstructSettings(model="vgg16"), inputs)


def test_a_stopped_run_is_not_cached(vgg19, tmp_path):
    result = dataclasses.replace(_result(vgg19), stopped="stopped by the user")
    with pytest.raises(ValueError, match="not cached"):
        reconstruct_cache.save_cached(result, tmp_path / "x", {})
    assert not (tmp_path / "x" / reconstruct_cache.RECIPE_FILE).exists()


# --------------------------------------------------------------------------- the command


def test_the_command_writes_the_figure_each_picture_and_a_report(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "reconstruct", "sample:chelsea", "sample:brick", "--size", "48", "--steps", "1",
                           "--layers", "relu1_2", "--style-sets", "relu1_1;relu1_1,relu2_1", "-o", tmp_path / "f.png",
                           "--report", tmp_path / "r.json", "--save-each", tmp_path / "each", *UNTRAINED)
    assert rc == 0, err
    assert out == ""
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == [
        "content-relu1_2.png", "style-relu1_1-relu2_1.png", "style-relu1_1.png"]
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["command"] == "reconstruct" and rep["inputs"] == {"content": "sample:chelsea", "style": "sample:brick"}
    assert [p["label"] for p in rep["pictures"]] == ["relu1_2", "relu1_1", "relu1_1 + relu2_1"]


@pytest.mark.parametrize("args,words", [
    (["--layers", "relu9_9"], "relu9_9"),
    (["--style-sets", "relu1_1,relu1_1"], "twice"),
    (["--layers", "none", "--style-sets", "none"], "both empty"),
    (["--steps", "0"], "steps must be between"),
    (["-o", "{tmp}/f.jpg"], "must be a .png"),
    (["sample:nothing"], "sample"),
])
def test_command_errors_are_one_line(capsys, tmp_path, args, words):
    args = [a.format(tmp=tmp_path) for a in args]
    out = [] if "-o" in args else ["-o", tmp_path / "f.png"]
    lead = [] if args[0].startswith("-") else ["sample:brick"]
    rc, _, err = run_cli(capsys, "reconstruct", "--size", "48", "--steps", "1", *args, *lead, *out, *UNTRAINED)
    assert rc == 2
    assert words in error_line(err)
    assert not (tmp_path / "f.png").exists()


def test_a_recipe_of_another_command_is_refused(capsys, tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"recipe_version": 2, "command": "dream", "settings": {}}))
    rc, _, err = run_cli(capsys, "reconstruct", "--recipe", tmp_path / "d.json", "-o", tmp_path / "f.png", *UNTRAINED)
    assert rc == 2 and "not of `explorer reconstruct`" in error_line(err)
