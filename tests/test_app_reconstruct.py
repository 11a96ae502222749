"""AppTest of the "What each layer keeps" page: it opens with the cached default figure of the
current weights, or says in one line that there is none yet and offers one button to make it
(which keeps it in the cache); a run of the user's own settings gives the figure, its numbers
and downloads; a bad upload is one error line. Untrained VGG19, 32 px, 1 step per picture, the
cache folder in tmp_path (``EXPLORER_CACHE_DIR``)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from explorer.app import reconstruct_view as RV
from explorer.nets import models
from explorer.style import reconstruct as R
from explorer.style import reconstruct_cache as RC
from tests.helpers import app_env, open_app_page, picture, stripes
from tests.test_app import downloads, errors, png_of  # noqa: F401  (fixture re-exported)

PAGE = "pages/what_each_layer_keeps.py"


def small(**kw) -> R.ReconstructSettings:
    return R.ReconstructSettings(**{"size": 32, "steps": 1, "content_layers": "relu1_2,relu2_2",
                                    "style_sets": "relu1_1;relu1_1,relu2_1", **kw})


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def vgg19():
    return models.load_model("vgg19", weights="untrained", device="cpu")


def small_settings(at) -> None:
    at.slider(key="rec_size").set_value(32)
    at.number_input(key="rec_steps").set_value(1)
    at.multiselect(key="rec_content_layers_vgg19").set_value(["relu1_2", "relu2_2"])
    at.text_input(key="rec_style_sets_vgg19").set_value("relu1_1;relu1_1,relu2_1")
    at.run()
    assert not at.exception


def test_without_a_cached_figure_the_page_says_so_and_offers_one_button():
    at = open_app_page(PAGE)
    assert "What each layer keeps" in [t.value for t in at.title]
    lines = [i.value for i in at.info if "No figure for" in i.value]
    assert len(lines) == 1 and "\n" not in lines[0] and "untrained weights" in lines[0]
    settings = RV.default_settings("vgg19")
    estimate = RV.time_text(RV.estimate_seconds(settings))
    assert estimate in lines[0]
    assert at.button(key="rec_make_default").label == f"Make the default figure ({estimate})"
    assert not errors(at) and not at.button(key="rec_run").disabled
    # the pickers open on the engine's default pair, the settings on the engine's defaults
    assert at.selectbox(key="rec_content_sample").value.startswith(R.DEFAULT_CONTENT.split(":")[1])
    assert at.selectbox(key="rec_style_sample").value.startswith(R.DEFAULT_STYLE.split(":")[1])
    assert at.number_input(key="rec_steps").value == settings.steps and at.slider(key="rec_size").value == settings.size
    assert at.multiselect(key="rec_content_layers_vgg19").value == list(settings.content_layers)
    assert R.parse_style_sets(at.text_input(key="rec_style_sets_vgg19").value) == settings.style_sets
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    for idea in ("Gatys, Ecker & Bethge", "Texture Synthesis", "Mahendran & Vedaldi", "white noise", "receptive field",
                 "invariance", "pooling", "sums the products", "relative error"):
        assert idea in text, idea


def test_the_cached_default_figure_is_shown_with_its_numbers(vgg19):
    run = R.Reconstruction(vgg19, picture(48, 48), stripes(48, 48), small())
    for _ in run:
        pass
    result = run.result()
    path = RV.default_path(vgg19)
    RC.save_cached(result, path, RV.default_inputs())
    at = open_app_page(PAGE)
    assert not errors(at) and not [i for i in at.info if "No figure for" in i.value]
    assert "The default figure" in [s.value for s in at.subheader]
    shown = [img for img in at.image if any(c.startswith("What each layer keeps") for c in img.captions)]
    assert len(shown) == 1
    numbers = next(c.value for c in at.caption if c.value.startswith("Relative error of each picture"))
    for p in result.pictures:
        assert f"{p.label} {p.relative_error:.3g}" in numbers
    keys = {d.key for d in at.download_button}
    assert {"rec_cached_download_png", "rec_cached_download_recipe", "rec_cached_download_report"} <= keys
    assert {f"rec_cached_pic_{p.file_stem}" for p in result.pictures} <= keys


def test_a_run_makes_the_figure_its_numbers_and_downloads(downloads):  # noqa: F811
    at = open_app_page(PAGE)
    small_settings(at)
    at.button(key="rec_run").click().run()
    assert not at.exception and not errors(at)
    assert "Result" in [s.value for s in at.subheader]
    keys = {d.key for d in at.download_button}
    assert {"rec_download_png", "rec_download_recipe", "rec_download_report"} <= keys
    figure = Image.open(io.BytesIO(downloads["what-each-layer-keeps.png"]))
    assert figure.text.get("weights", "").startswith("untrained")
    report = json.loads(downloads["reconstruct-report.json"])
    assert report["command"] == "reconstruct" and [p["label"] for p in report["pictures"]] == \
        ["relu1_2", "relu2_2", "relu1_1", "relu1_1 + relu2_1"]
    recipe = json.loads(downloads["reconstruct-recipe.json"])
    assert recipe["settings"]["size"] == 32 and recipe["settings"]["steps"] == 1
    assert recipe["inputs"] == RV.default_inputs()
    assert {f"rec_pic_{p['kind']}-{'-'.join(p['layers'])}" for p in report["pictures"]} <= keys
    numbers = next(c.value for c in at.caption if c.value.startswith("Relative error of each picture"))
    for p in report["pictures"]:
        assert f"{p['label']} {p['relative_error']:.3g}" in numbers
    # not the default settings: nothing is cached
    assert RV.load_default(models.load_model("vgg19", weights="untrained", device="cpu")) is None


def test_the_button_makes_the_default_figure_and_keeps_it(monkeypatch, vgg19):
    monkeypatch.setattr(RV, "default_settings", lambda name: small(model=name))
    at = open_app_page(PAGE)
    at.button(key="rec_make_default").click().run()
    assert not at.exception and not errors(at)
    cached = RV.load_default(vgg19)
    assert cached is not None and len(cached.pictures) == 4
    assert cached.recipe["settings"] == small().to_dict() and cached.recipe["inputs"] == RV.default_inputs()
    at.button(key="rec_back").click().run()  # the session's result cleared: the page opens on the cached one
    assert not at.exception and "The default figure" in [s.value for s in at.subheader]


def test_a_bad_upload_is_one_error_line():
    at = open_app_page(PAGE)
    at.radio(key="rec_content_source").set_value("Upload").run()
    at.file_uploader(key="rec_content_upload").set_value(("x.png", np.random.default_rng(0).bytes(3000),
                                                           "image/png")).run()
    assert not at.exception
    errs = errors(at)
    assert len(errs) == 1 and "\n" not in errs[0] and "x.png" in errs[0]
    assert at.button(key="rec_run").disabled


def test_unknown_layers_in_a_style_set_are_one_error_line():
    at = open_app_page(PAGE)
    at.text_input(key="rec_style_sets_vgg19").set_value("relu1_1;relu9_9").run()
    errs = errors(at)
    assert len(errs) == 1 and "relu9_9" in errs[0] and "\n" not in errs[0]
    assert at.button(key="rec_run").disabled


def test_the_time_estimate_scales_the_last_run_with_pictures_steps_and_pixels(vgg19):
    run = R.Reconstruction(vgg19, picture(48, 48), stripes(48, 48), small())
    for _ in run:
        pass
    report = run.result().report()
    assert RV.estimate_seconds(small(), report) == pytest.approx(report["seconds"])
    bigger = small(size=64, steps=3, content_layers="relu1_2")
    assert RV.estimate_seconds(bigger, report) == pytest.approx(report["seconds"] * 3 / 4 * 3 * (64 / 32) ** 2)
    without = RV.estimate_seconds(RV.default_settings("vgg19"))
    assert without == pytest.approx(len(RV.default_settings("vgg19").plan()) * R.DEFAULT_STEPS * RV.SECONDS_PER_STEP
                                    * (R.ReconstructSettings().size / 128) ** 2)
