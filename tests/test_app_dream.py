"""AppTest of the Deep Dream page: sample and upload inputs, a small dream, the downloads
(PNG, recipe, octave GIF), the zoom sequence, feature visualization from gray, and one-line
errors that leave the session working. Untrained GoogLeNet, 96 px, 2 octaves, 2 steps."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.helpers import app_env, conv_only_vgg19_folder

from tests.test_app import downloads, errors, png_of  # noqa: F401  (fixture re-exported)

ROOT = Path(__file__).resolve().parents[1]
DREAM_PAGE = "pages/deep_dream.py"


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)


@pytest.fixture
def page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(DREAM_PAGE).run()
    assert not at.exception
    at.slider(key="dream_size").set_value(96)
    at.slider(key="dream_steps").set_value(2)
    at.slider(key="dream_octaves").set_value(2)
    at.run()
    return at


def run(at: AppTest) -> None:
    assert not at.button(key="dream_run").disabled
    at.button(key="dream_run").click().run()
    assert not at.exception


def test_page_explains_and_labels_untrained_weights(page):
    assert "Deep Dream" in [t.value for t in page.title]
    assert any("untrained weights" in w.value for w in page.warning)
    assert any(r"\operatorname{mean}|g|" in l.value for l in page.latex)  # the update equation
    layers = page.multiselect(key="dream_layers_googlenet")
    assert layers.value == ["inception4c"]  # the classic starting point is preselected
    # every option carries a hint of what that depth shows
    assert any(o.startswith("inception3a") and "textures" in o for o in layers.options), layers.options


def test_sample_dream_gives_result_and_downloads(page, downloads):  # noqa: F811
    run(page)
    assert not errors(page)
    assert "Result" in [s.value for s in page.subheader]
    assert {"dream_download_png", "dream_download_json", "dream_download_gif"} <= {d.key for d in page.download_button}
    png = Image.open(io.BytesIO(downloads["dream.png"]))
    assert max(png.size) == 96 and png.text.get("weights", "").startswith("untrained")
    gif = Image.open(io.BytesIO(downloads["dream.gif"]))
    assert gif.n_frames == 3  # the input, then one frame per octave
    recipe = json.loads(downloads["dream-recipe.json"])
    assert recipe["settings"]["octaves"] == 2 and recipe["weights"] == "untrained"
    assert recipe["inputs"]["image"].startswith("sample:") and len(recipe["history"]) == 4


def test_upload_and_bad_upload_keep_the_session_working(page):
    page.radio(key="dream_input_source").set_value("Upload").run()
    page.file_uploader(key="dream_input_upload").set_value(("junk.png", b"\x00garbage" * 10, "image/png"))
    page.run()
    assert not page.exception
    errs = errors(page)
    assert len(errs) == 1 and "not an image" in errs[0] and "\n" not in errs[0]
    assert page.button(key="dream_run").disabled
    page.file_uploader(key="dream_input_upload").set_value(("photo.png", png_of(120, 90), "image/png"))
    page.run()
    assert not errors(page)
    run(page)
    assert "Result" in [s.value for s in page.subheader]


def test_bad_channel_is_one_line_and_keeps_the_page(page):
    page.text_input(key="dream_channels").input("3,9999").run()
    run(page)
    errs = errors(page)
    assert len(errs) == 1 and "9999" in errs[0] and "512 channels" in errs[0]
    page.text_input(key="dream_channels").input("abc").run()
    assert any("channels must be whole numbers" in e for e in errors(page))
    assert page.button(key="dream_run").disabled


def test_zoom_sequence_and_gray_start(page, downloads):  # noqa: F811
    page.radio(key="dream_start").set_value("gray (visualize from scratch)").run()
    page.checkbox(key="dream_zoom_mode").check().run()
    page.slider(key="dream_zoom_frames").set_value(3).run()
    run(page)
    assert not errors(page)
    assert Image.open(io.BytesIO(downloads["dream.gif"])).n_frames == 3
    recipe = json.loads(downloads["dream-recipe.json"])
    assert recipe["zoom_frames"] == 3 and recipe["inputs"]["image"] == "gray"


def test_class_objective_notes_untrained_logits(page):
    page.selectbox(key="dream_objective").set_value("class").run()
    assert page.selectbox(key="dream_class").value == "tabby"
    assert any("carry no meaning" in c.value for c in page.caption)
    run(page)
    assert "Result" in [s.value for s in page.subheader] and not errors(page)


@pytest.mark.parametrize("model, layer", [("mobilenet_v2", "block10"), ("resnet50", "layer3_3")])
def test_mobilenet_and_resnet_dream_on_the_page(page, model, layer):
    page.sidebar.selectbox(key="dream_model_name").set_value(model).run()
    assert not page.exception and not errors(page)
    assert page.multiselect(key=f"dream_layers_{model}").value == [layer]
    run(page)
    assert not errors(page) and "Result" in [s.value for s in page.subheader]


def _record_live_figures(monkeypatch) -> list:
    """Every figure the live chart beside the preview draws during a run."""
    from explorer.app import plots

    seen: list = []
    real = plots.live_figure

    def recording(rows, **kw):
        seen.append((list(rows), real(rows, **kw)))
        return seen[-1][1]

    monkeypatch.setattr(plots, "live_figure", recording)
    return seen


def test_live_chart_shows_the_objective_as_the_dream_runs(page, monkeypatch, downloads):  # noqa: F811
    seen = _record_live_figures(monkeypatch)
    run(page)
    assert seen
    rows, fig = seen[-1]
    assert [t.name for t in fig.data] == ["objective"]  # not an empty "Loss per step" plot
    history = json.loads(downloads["dream-recipe.json"])["history"]
    assert list(fig.data[0].y) == pytest.approx([h["objective"] for h in history])
    assert fig.layout.yaxis.type != "log" and "Objective" in fig.layout.title.text


def test_live_figure_keeps_weighted_loss_curves_for_style_rows():
    from explorer.app import plots

    rows = [{"step": 0, "total": 3.0, "content": 1.0, "style": 0.02},
            {"step": 1, "total": 2.0, "content": 0.8, "style": 0.012}]
    live = plots.live_figure(rows, scale={"content": 1.0, "style": 100.0})
    assert live.to_dict() == plots.loss_figure(rows, scale={"content": 1.0, "style": 100.0}).to_dict()
    fv = plots.live_figure([{"step": 1, "objective": -0.5, "diversity": 0.1}, {"step": 2, "objective": 0.5}])
    assert [t.name for t in fv.data] == ["objective", "diversity"] and list(fv.data[0].y) == [-0.5, 0.5]


def test_class_objective_without_a_classifier_shows_one_error_and_no_cli_flag(monkeypatch, tmp_path):
    """A conv-only VGG19 file (as the Caffe one) has no class scores: the page says so once, in
    the page's words, and offers no Run; before, a second error asked for ``--class NAME``."""
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(conv_only_vgg19_folder(tmp_path)))
    from explorer.app import ui

    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        at.switch_page(DREAM_PAGE).run()
        at.selectbox(key="dream_model_name").set_value("vgg19").run()
        at.checkbox(key="dream_model_untrained").uncheck().run()
        at.selectbox(key="dream_objective").set_value("class").run()
        assert not at.exception
        shown = [e.value for e in at.error]
        assert len(shown) == 1 and "has no classifier" in shown[0], shown
        assert not any("--" in e for e in shown)
        assert at.button(key="dream_run").disabled
    finally:
        ui.cached_model.clear()  # the process-wide model cache must not hand this file to later tests
