"""AppTest of the Parameter sweep page (a 2 x 2 sweep, 64 px, 2 steps, and its downloads) and of
multi-style blending on the Style transfer page (two style images, 64 px, 2 steps). Untrained
VGG19 on the CPU (``EXPLORER_ALLOW_UNTRAINED=1``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer.app import plots
from explorer.style.settings import DEFAULT_STYLE_WEIGHT

from tests.helpers import app_env, open_app_page
from tests.test_app import downloads, errors  # noqa: F401  (fixture re-exported)

ROOT = Path(__file__).resolve().parents[1]
SWEEP_PAGE = "pages/sweep.py"
STYLE_PAGE = "pages/style_transfer.py"


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)


def open_page(page: str) -> AppTest:
    return open_app_page(page)


@pytest.fixture
def sweep_page() -> AppTest:
    return open_page(SWEEP_PAGE)


def test_sweep_page_renders_with_defaults(sweep_page):
    at = sweep_page
    assert [t.value for t in at.title] == ["Parameter sweep"]
    assert not errors(at)
    assert any("untrained weights" in w.value for w in at.warning)
    assert at.selectbox(key="sweep_rows_name").value == "alpha_beta"
    assert at.selectbox(key="sweep_cols_name").value == "steps"
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Plan: 9 cells from 1 optimization run(s) of 40 steps, batches of 3") for c in captions), \
        captions
    assert not at.button(key="sweep_run").disabled


def test_sweep_page_opens_on_the_pair_whose_ratio_shows_on_real_weights(sweep_page):
    """chelsea + immunohistochemistry: on the real VGG19 the cat keeps its photo colours at ratio 1
    and is drawn in the tissue's strokes at 0.03 and below (astronaut + hubble deep field stayed
    a dark starfield); the text's default ratio is alpha / beta of the defaults."""
    at = sweep_page
    assert at.selectbox(key="sweep_content_sample").value == "chelsea (cat)"
    assert at.selectbox(key="sweep_style_sample").value == "immunohistochemistry"
    captions = [c for img in at.image for c in img.captions]
    assert "Content: chelsea (cat)" in captions and "Style: immunohistochemistry" in captions
    text = " ".join(m.value for m in at.markdown)
    assert f"the default β = {DEFAULT_STYLE_WEIGHT:g} is a ratio of {1.0 / DEFAULT_STYLE_WEIGHT:g};" in text
    assert at.number_input(key="sweep_beta").value == DEFAULT_STYLE_WEIGHT


def test_bad_axis_values_are_one_error_and_disable_run(sweep_page):
    at = sweep_page
    at.selectbox(key="sweep_cols_name").set_value("seed").run()
    at.text_input(key="sweep_cols_seed_values").set_value("1, x").run()
    assert not at.exception
    errs = errors(at)
    assert len(errs) == 1 and "numbers separated by commas" in errs[0] and "\n" not in errs[0], errs
    assert at.button(key="sweep_run").disabled


def test_a_two_by_two_sweep_runs_and_downloads(sweep_page, downloads):
    at = sweep_page
    at.select_slider(key="sweep_rows_alpha_beta_range").set_value((1e-8, 1e-6))
    at.slider(key="sweep_rows_alpha_beta_count").set_value(2)
    at.selectbox(key="sweep_cols_name").set_value("seed").run()
    at.text_input(key="sweep_cols_seed_values").set_value("0, 1")
    at.selectbox(key="sweep_init").set_value("noise")
    at.slider(key="sweep_size").set_value(64)
    at.number_input(key="sweep_steps").set_value(2)
    at.run()
    assert not at.exception and not errors(at)
    assert any(c.value.startswith("Plan: 4 cells from 1 optimization run(s) of 2 steps, batches of 4")
               for c in at.caption)
    at.button(key="sweep_run").click().run()
    assert not at.exception and not errors(at)
    assert "Result" in [s.value for s in at.subheader]
    assert any(c.startswith("Sweep (untrained weights") for img in at.image for c in img.captions)
    assert any(c.value.startswith("4 cells from 1 optimization run(s)") for c in at.caption)
    table = at.dataframe[0].value
    assert len(table) == 4 and list(table["seed"]) == [0, 1, 0, 1]

    with Image.open(io.BytesIO(downloads["sweep.png"])) as im:
        assert im.format == "PNG" and im.width > 2 * 128 and im.height > 2 * 128
        assert "untrained" in im.text["weights"]
        info = json.loads(im.text["sweep"])
        assert [a["name"] for a in info["axes"]] == ["alpha_beta", "seed"] and info["cells_done"] == 4
    rows = list(csv.DictReader(io.StringIO(downloads["sweep.csv"].decode("utf-8"))))
    assert len(rows) == 4
    assert [(r["row_label"], r["col_label"]) for r in rows] == [
        ("ratio 1e-08", "seed 0"), ("ratio 1e-08", "seed 1"), ("ratio 1e-06", "seed 0"), ("ratio 1e-06", "seed 1")]
    assert all(float(r["total"]) > 0 and r["step"] == "2" for r in rows)


@pytest.fixture
def style_page() -> AppTest:
    at = open_page(STYLE_PAGE)
    at.slider(key="size").set_value(64)
    at.number_input(key="steps").set_value(2)
    at.run()
    return at


def test_style_page_blends_two_style_images(style_page, downloads):
    at = style_page
    assert not [s for s in at.slider if s.key.startswith("style_weight_")]  # one style image: no weight
    at.button(key="style_add").click().run()
    assert not at.exception and not errors(at)
    weights = [s for s in at.slider if s.key.startswith("style_weight_")]
    assert len(weights) == 2
    weights[0].set_value(0.75)
    weights[1].set_value(0.25)
    at.run()
    assert any(c.value.startswith("Blend (normalized weights): immunohistochemistry 75%, gravel 25%")
               for c in at.caption), [c.value for c in at.caption]
    at.button(key="run").click().run()
    assert not at.exception and not errors(at)
    assert "Result" in [s.value for s in at.subheader]
    captions = [c for img in at.image for c in img.captions]
    assert "Style immunohistochemistry (75%)" in captions and "Style gravel (25%)" in captions
    recipe = json.loads(downloads["recipe.json"])
    assert recipe["inputs"]["style"] == "sample:immunohistochemistry:0.75,sample:gravel:0.25"
    assert [h["step"] for h in recipe["history"]] == [0, 1, 2]

    # all weights 0: one error, no run; removing the second image brings back the single picker
    weights = [s for s in at.slider if s.key.startswith("style_weight_")]
    for w in weights:
        w.set_value(0.0)
    at.run()
    errs = errors(at)
    assert len(errs) == 1 and "sum to 0" in errs[0], errs
    assert at.button(key="run").disabled
    at.button(key="style_remove_1").click().run()
    assert not at.exception and not errors(at)
    assert not [s for s in at.slider if s.key.startswith("style_weight_")]
    assert not at.button(key="run").disabled


@pytest.mark.parametrize("normalization", ["relative", "paper"])
def test_style_page_loss_chart_names_the_scale_it_shows(style_page, normalization):
    """The final chart's legend: relative terms as the ratios they are, Gatys's equations only
    at paper scale; TV with its exponent p."""
    at = style_page
    at.number_input(key="steps").set_value(1)
    at.number_input(key="tv_weight").set_value(0.01)
    at.selectbox(key="loss_normalization").set_value(normalization).run()
    at.button(key="run").click().run()
    assert not at.exception and not errors(at)
    final = [json.loads(el.proto.spec) for el in at.get("plotly_chart") if el.key == "final_chart"]
    assert len(final) == 1
    names = {t["name"] for t in final[0]["data"]}
    assert "TV weight·R_V^p" in names
    want = {plots.term_label(k, normalization, weighted=True) for k in ("content", "style")}
    assert want <= names, names
    if normalization == "relative":
        assert not any("eq." in n for n in names), names
    else:
        assert {"α·L_content (Gatys eq. 1)", "β·L_style (Gatys eq. 5)"} <= names
