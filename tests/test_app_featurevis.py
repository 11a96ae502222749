"""AppTest of the Feature visualization page: it renders and explains itself, a channel grid with
dataset examples and its downloads, the recipe that replays through the CLI to the same grid,
uploaded images and zips (broken files skipped and reported), one channel in detail, the
parameterization comparison, and one-line errors that keep the last result. Untrained VGG19,
relu2_1, 64 px, 8 steps; dataset examples over the bundled samples (7 images)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.helpers import app_env, run_cli
from tests.test_app import downloads, errors, png_of  # noqa: F401  (fixture re-exported)

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/feature_vis.py"


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)


@pytest.fixture
def page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception
    at.selectbox(key="fv_layer_vgg19").set_value("relu2_1")
    at.select_slider(key="fv_size").set_value(64)
    at.select_slider(key="fv_steps").set_value(8)
    at.slider(key="fv_k").set_value(2)
    at.run()
    assert not at.exception
    return at


def click(at: AppTest, key: str) -> None:
    assert not at.button(key=key).disabled
    at.button(key=key).click().run()
    assert not at.exception


def test_page_renders_explains_and_labels_untrained_weights(page):
    assert "Feature visualization" in [t.value for t in page.title]
    assert any("untrained weights" in w.value for w in page.warning)
    text = " ".join(e.label for e in page.expander) + " ".join(m.value for m in page.markdown)
    for idea in ("Fourier", "Transformation robustness", "Diversity", "Dataset examples", "receptive field"):
        assert idea in text, idea
    assert "Distill 2017" in " ".join(m.value for m in page.markdown) and "Lucent" in page.caption[0].value
    assert page.selectbox(key="fv_layer_vgg19").value == "relu2_1"
    assert any("Time:" in c.value and "steps" in c.value for c in page.caption)  # how long a run takes
    # every registered network is offered
    assert set(page.sidebar.selectbox(key="fv_model_name").options) >= {"VGG19", "MobileNetV2"}


def test_grid_run_shows_sheet_downloads_and_recipe_replays_in_the_cli(page, downloads, capsys, tmp_path):  # noqa: F811
    page.text_input(key="fv_grid_channels").input("0-2").run()
    click(page, "fv_grid_run")
    assert not errors(page)
    assert "Result" in [s.value for s in page.subheader]
    keys = {d.key for d in page.download_button}
    assert {"fv_grid_download_png", "fv_grid_download_sheet", "fv_grid_download_json"} <= keys
    grid = Image.open(io.BytesIO(downloads["featurevis-grid.png"]))
    assert grid.text.get("weights", "").startswith("untrained")
    sheet = Image.open(io.BytesIO(downloads["featurevis-examples.png"]))
    assert sheet.width > grid.width  # pictures plus 2 crops per row
    recipe = json.loads(downloads["featurevis-recipe.json"])
    s = recipe["settings"]
    assert s["channels"] == [0, 1, 2] and s["separate"] and s["size"] == 64 and s["steps"] == 8
    assert recipe["inputs"] == {"images": "samples"} and recipe["weights"] == "untrained"
    assert set(recipe["examples"]) == {"0", "1", "2"} and len(recipe["examples"]["1"]["examples"]) == 2
    assert len(recipe["history"]) == 8
    # the recipe replays through the command line to the same grid
    path, out = tmp_path / "recipe.json", tmp_path / "grid.png"
    path.write_text(json.dumps(recipe))
    rc, _, err = run_cli(capsys, "featurevis", "--recipe", path, "-o", out, "--untrained", "--quiet")
    assert rc == 0, err
    a = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    b = np.asarray(grid.convert("RGB"), dtype=np.int16)
    assert a.shape == b.shape and np.abs(a - b).max() <= 2


def test_bad_input_is_one_line_and_keeps_the_last_result(page):
    click(page, "fv_grid_run")
    assert "Result" in [s.value for s in page.subheader]
    page.text_input(key="fv_grid_channels").input("0,999").run()
    click(page, "fv_grid_run")
    errs = errors(page)
    assert len(errs) == 1 and "999" in errs[0] and "128 channels" in errs[0] and "\n" not in errs[0]
    assert "Result" in [s.value for s in page.subheader]  # the last good result stays
    page.text_input(key="fv_grid_channels").input("3-1").run()
    errs = errors(page)
    assert len(errs) == 1 and "backwards" in errs[0]
    assert page.button(key="fv_grid_run").disabled


def test_uploaded_images_and_zip_skip_broken_files(page):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("set/a.png", png_of(80, 60))
        z.writestr("set/broken.png", b"\x00not an image")
    page.radio(key="fv_dataset").set_value("upload").run()
    page.file_uploader(key="fv_upload").set_value([("photo.png", png_of(90, 70), "image/png"),
                                                   ("set.zip", buf.getvalue(), "application/zip")])
    page.run()
    assert not page.exception and not errors(page)
    click(page, "fv_grid_run")
    assert not errors(page)
    notes = " ".join(c.value for c in page.caption)
    assert "skipped 1 file" in notes and "broken.png" in notes


def test_one_channel_in_detail_with_a_diverse_batch(page):
    page.slider(key="fv_batch").set_value(2).run()
    page.number_input(key="fv_one_channel").set_value(5).run()
    click(page, "fv_one_run")
    assert not errors(page)
    assert len(page.get("image")) >= 3  # two pictures (the batch) and the crops
    assert any("receptive field" in c.value for c in page.caption)
    page.selectbox(key="fv_objective").set_value("direction").run()
    click(page, "fv_one_run")
    assert not errors(page)
    page.text_input(key="fv_dir_weights").input("1,2,3").run()
    errs = errors(page)
    assert len(errs) == 1 and "weights" in errs[0]


def test_parameterizations_compared(page):
    click(page, "fv_cmp_run")
    assert not errors(page)
    metrics = [m.label for m in page.metric]
    assert metrics.count("High-frequency share") == 4


def test_class_objective_and_mobilenet(page, downloads):  # noqa: F811
    page.selectbox(key="fv_objective").set_value("class").run()
    assert page.selectbox(key="fv_class").value == "tabby"
    assert any("carry no meaning" in c.value for c in page.caption)
    click(page, "fv_one_run")
    assert not errors(page) and "Result" in [s.value for s in page.subheader]
    page.sidebar.selectbox(key="fv_model_name").set_value("mobilenet_v2").run()
    assert not page.exception and not errors(page)
    page.selectbox(key="fv_layer_mobilenet_v2").set_value("block3").run()
    click(page, "fv_grid_run")
    assert not errors(page)
    assert "Result" in [s.value for s in page.subheader]
    recipe = json.loads(downloads["featurevis-recipe.json"])
    assert (recipe["settings"]["model"], recipe["settings"]["layer"]) == ("mobilenet_v2", "block3")


def test_live_chart_shows_the_objective_during_a_run(page, monkeypatch):
    from tests.test_app_dream import _record_live_figures

    seen = _record_live_figures(monkeypatch)
    click(page, "fv_grid_run")
    assert not errors(page) and seen
    rows, fig = seen[-1]
    assert [t.name for t in fig.data] == ["objective"]
    assert list(fig.data[0].y) == pytest.approx([r["objective"] for r in rows]) and len(rows) >= 2


def test_page_says_the_dataset_examples_are_the_bundled_samples_not_imagenet(page):
    from explorer.featurevis import examples

    names = [s.name for s in examples.sample_sources()]
    text = " ".join(m.value for m in page.markdown)
    assert f"the {len(names)} pictures bundled with the app ({', '.join(names)})" in text
    assert "Distill's dataset examples are drawn from ImageNet" in text and "*my images*" in text


def test_dataset_examples_from_a_folder_skip_broken_files(page, tmp_path):
    folder = tmp_path / "my set"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_of(80, 60))
    (folder / "b.png").write_bytes(png_of(70, 90))
    (folder / "broken.jpg").write_bytes(b"\x00not an image")
    page.radio(key="fv_dataset").set_value("folder").run()
    assert any("until then the bundled samples are used" in i.value for i in page.info)
    page.text_input(key="fv_folder").input(str(tmp_path / "missing")).run()
    errs = errors(page)
    assert len(errs) == 1 and "is not a folder" in errs[0] and "\n" not in errs[0]
    page.text_input(key="fv_folder").input(str(folder)).run()
    assert not page.exception and not errors(page)
    assert any(c.value.startswith(f"Dataset examples from the 3 files in {folder}: a.png, b.png, broken.jpg")
               for c in page.caption)
    page.number_input(key="fv_one_channel").set_value(1).run()
    click(page, "fv_one_run")
    assert not errors(page)
    notes = " ".join(c.value for c in page.caption)
    assert "skipped 1 file" in notes and "broken.jpg" in notes
    assert f"dataset: the images in the folder {folder})" in notes
    crops = [c for im in page.image for c in im.captions if " · " in c]
    assert crops and {c.split(" · ", 1)[1] for c in crops} <= {"a.png", "b.png"}  # the folder's images only


def test_dataset_defaults_to_the_bundled_samples_and_says_so(page):
    from explorer.featurevis import examples

    names = [s.name for s in examples.sample_sources()]
    assert any(c.value == f"Dataset examples from the {len(names)} bundled samples ({', '.join(names)}), not "
               "ImageNet." for c in page.caption)
    empty = page.radio(key="fv_dataset").set_value("folder").run()
    assert not errors(empty)


def test_time_hint_is_computed_from_the_settings(page):
    import re

    from explorer.featurevis import grid as G
    from explorer.featurevis import render as FV

    s = FV.FeatureVisSettings(model="vgg19", layer="relu2_1", channels=(0, 1, 2, 3), separate=True, batch=4,
                              steps=8, size=64)
    lo, hi, _ = G.estimate_range(s, None)
    hint = [c.value for c in page.caption if c.value.startswith("Time:")]
    assert hint and f"about {lo:.0f}-{hi:.0f} s on a 2-core CPU: 8 steps × 4 images × (64/128 px)² × " \
                     f"{G.REFERENCE_STEP_SECONDS[0]:g}-{G.REFERENCE_STEP_SECONDS[1]:g} s" in hint[0]
    assert "shared" in hint[0]
    click(page, "fv_grid_run")
    page.run()  # the hint above the button uses the run that ended after it was drawn
    assert not errors(page)
    hint = [c.value for c in page.caption if c.value.startswith("Time:")][0]
    m = re.search(r"about (\d+) s here: 8 steps × 4 images × \(64/128 px\)² × ([\d.e+-]+) s, the time per step", hint)
    assert m, hint
    est, per = float(m.group(1)), float(m.group(2))
    assert abs(est - per * G.work_units(8, 4, 64)) <= 0.5 + 1e-3 * est
