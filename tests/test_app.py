"""Streamlit AppTest tests of the home page and the style transfer page.

The app runs headless in-process (``streamlit.testing.v1.AppTest``) on the CPU with untrained
weights (``EXPLORER_ALLOW_UNTRAINED=1`` makes the sidebar's "Use untrained weights" default on,
since pretrained weights cannot be downloaded here), 64 px and 3 steps.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer.style.settings import DEFAULT_STYLE_WEIGHT
from tests.helpers import app_env

ROOT = Path(__file__).resolve().parents[1]
STYLE_PAGE = "pages/style_transfer.py"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)


@pytest.fixture
def home() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception
    return at


@pytest.fixture
def page(home) -> AppTest:
    home.switch_page(STYLE_PAGE).run()
    assert not home.exception
    return home


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """What the download buttons would hand the browser, by file name.

    AppTest keeps media in a MemoryMediaFileStorage that it drops after each run, so the
    bytes are recorded as they are stored."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    seen: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        if filename and isinstance(path_or_data, (bytes, bytearray)):
            seen[filename] = bytes(path_or_data)
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return seen


def png_of(width: int, height: int) -> bytes:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    disc = ((x - width / 2) ** 2 + (y - height / 2) ** 2) < (min(width, height) / 3) ** 2
    rgb = np.stack([x / width * 255, y / height * 255, disc * 200.0 + 30], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def untrained_box(at: AppTest):
    """The sidebar's "Use untrained weights" checkbox (its key differs from page to page)."""
    boxes = [c for c in at.sidebar.checkbox if c.label == "Use untrained weights"]
    assert len(boxes) == 1, at.sidebar
    return boxes[0]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def upload_content(at: AppTest, name: str, data: bytes) -> None:
    if at.radio(key="content_source").value != "Upload":
        at.radio(key="content_source").set_value("Upload").run()
        assert not at.exception
    at.file_uploader(key="content_upload").set_value((name, data, "image/png"))
    at.run()
    assert not at.exception


def small_settings(at: AppTest) -> None:
    at.slider(key="size").set_value(64)
    at.number_input(key="steps").set_value(3)


def click_run(at: AppTest) -> None:
    assert not at.button(key="run").disabled
    at.button(key="run").click().run()
    assert not at.exception


def check_result(at: AppTest) -> None:
    assert not at.exception
    assert "Result" in [s.value for s in at.subheader]
    captions = [c for img in at.image for c in img.captions]
    assert any(c.startswith("Result (untrained weights") for c in captions), captions
    keys = {d.key for d in at.download_button}
    assert {"download_png", "download_json"} <= keys
    final = [c.value for c in at.caption if "Final losses" in c.value]
    assert len(final) == 1
    # each number is labelled with what it is: unweighted terms, then the weighted total
    num = r"-?[0-9.]+(e[+-]?[0-9]+)?"
    for term in ("L_content", "L_style", "R_V\\^p"):
        assert re.search(rf"{term} {num}\b", final[0]), final[0]
    assert re.search(rf"Weighted total α·L_content \+ β·L_style( \+ [^=]+)? = 1·{num} \+ {DEFAULT_STYLE_WEIGHT:g}·{num}( \+ [^=]+)? = {num}\.$",
                     final[0]), final[0]
    assert "(unweighted): " not in final[0]


# --------------------------------------------------------------------------- home page


def test_home_page_shows_weights_and_device(home):
    assert [t.value for t in home.title] == ["Deep Dream and style-visualization explorer"]
    assert any(m.value.startswith("Compute: CPU") for m in home.markdown)
    table = home.dataframe[0].value
    files = set(table["weights file"])
    assert {"vgg19-dcbb9e9d.pth", "vgg16-397923af.pth", "googlenet-1378be20.pth",
            "inception_v3_google-0cc3c7bd.pth"} <= files
    assert set(table["found at"]) == {"not downloaded yet"}
    # EXPLORER_ALLOW_UNTRAINED ticks Home's switch: it says so; unticked, Home says what to do
    assert any("Untrained weights are on" in c.value for c in home.caption)
    next(c for c in home.sidebar.checkbox if c.label == "Use untrained weights").uncheck().run()
    assert any("python -m explorer weights download" in i.value for i in home.info)
    assert not errors(home)


def test_home_page_intro_names_every_page(home):
    intro = " ".join(m.value for m in home.markdown)
    for page in ("Style transfer", "Deep Dream", "Layer activations", "Feature visualization", "Style saliency",
                 "Full vs guided Gram", "Parameter sweep", "What each layer keeps"):
        assert f"**{page}**" in intro


def test_home_page_size_is_that_of_the_file_found(monkeypatch, tmp_path):
    """A file other than torchvision's (here a stand-in for the Caffe conv layers) is listed by
    its own name and size, not by torchvision's download."""
    from explorer.nets import registry, weights

    wd = tmp_path / "weights"
    wd.mkdir()
    (wd / "vgg19-caffe-features.pth").write_bytes(b"\0" * (3 * 2**20 + 2**19))
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(wd))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("network")
    row = weights.weights_status(["vgg19"])[0]
    assert table.loc["VGG19", "weights file"] == "vgg19-caffe-features.pth"
    assert table.loc["VGG19", "size (MiB)"] == round(os.path.getsize(row["found"]) / 2**20, 1) == 3.5
    vgg16 = registry.MODELS["vgg16"]
    assert table.loc["VGG16", "size (MiB)"] == round(vgg16.file_size_mb, 1)  # not found: the download's
    assert any("of the file found on this machine" in c.value for c in at.caption)


# --------------------------------------------------------------------------- style page


def test_style_page_renders_with_untrained_warning(page):
    assert not errors(page)
    assert untrained_box(page).value is True
    warnings = [w.value for w in page.warning]
    assert any("untrained weights" in w for w in warnings), warnings
    assert any(c.value.startswith("Weights: untrained weights") for c in page.sidebar.caption)
    # samples are picked by default, so the page is ready to run
    assert not page.button(key="run").disabled


def test_style_page_opens_on_the_pair_that_shows_the_idea_on_real_weights(page):
    """chelsea + immunohistochemistry: on the real VGG19 the cat stays readable in the tissue's
    strokes and palette (astronaut + hubble deep field gave a starfield with a ghost of the
    astronaut); beta starts at the calibrated default and the text quotes it."""
    assert page.selectbox(key="content_sample").value == "chelsea (cat)"
    assert page.selectbox(key="style_sample").value == "immunohistochemistry"
    captions = [c for img in page.image for c in img.captions]
    assert "Content: chelsea (cat)" in captions and "Style: immunohistochemistry" in captions
    assert page.number_input(key="beta").value == DEFAULT_STYLE_WEIGHT
    text = " ".join(m.value for m in page.markdown)
    assert f"alpha = 1, beta = {DEFAULT_STYLE_WEIGHT:g} (the default)" in text


def test_style_page_names_the_paper_and_the_relative_layer_term_apart(page):
    tex = " ".join(l.value for l in page.latex)
    assert r"E_l = \frac{1}{4 N_l^2 M_l^2}" in tex and r"\tilde{E}_l = \frac" in tex
    assert r"= E_l \cdot \frac{4 N_l^2 M_l^2}{\sum_{ij} (A^l_{ij})^2}" in tex
    assert any(c.value.startswith("Two scales, two symbols") for c in page.caption)
    small_settings(page)
    for scale, symbol in (("relative", "Ẽ_l"), ("paper", "E_l")):
        page.selectbox(key="loss_normalization").set_value(scale).run()
        click_run(page)
        assert not errors(page)
        chart = next(json.loads(el.proto.spec) for el in page.get("plotly_chart") if el.key == "final_chart")
        layer_traces = [t["name"] for t in chart["data"] if " relu" in t["name"]]
        assert layer_traces and all(n.startswith(f"β·w_l·{symbol} relu") for n in layer_traces), layer_traces


def test_upload_run_and_download(page, downloads):
    upload_content(page, "photo.png", png_of(100, 80))
    assert not errors(page)
    assert "Content: photo.png" in [c for img in page.image for c in img.captions]
    small_settings(page)
    page.run()
    click_run(page)
    assert not errors(page)
    check_result(page)

    # the PNG the user downloads: working size, labelled as untrained
    with Image.open(io.BytesIO(downloads["stylized.png"])) as im:
        assert im.format == "PNG"
        assert im.size == (64, 51)  # long side = working size, aspect ratio of the 100 x 80 upload kept
        assert "untrained" in im.text["weights"]
        assert json.loads(im.text["settings"])["steps"] == 3
    # the settings download is a recipe the CLI can replay
    recipe = json.loads(downloads["recipe.json"])
    assert recipe["settings"]["size"] == 64 and recipe["settings"]["steps"] == 3
    assert recipe["weights"] == "untrained"
    assert recipe["inputs"]["content"] == "upload:photo.png"
    assert recipe["inputs"]["style"].startswith("sample:")
    assert [h["step"] for h in recipe["history"]] == [0, 1, 2, 3]


def test_broken_upload_is_one_error_and_session_recovers(page):
    junk = np.random.default_rng(0).bytes(3000)
    upload_content(page, "x.png", junk)
    errs = errors(page)
    assert len(errs) == 1, errs
    assert "\n" not in errs[0] and "not an image" in errs[0] and "x.png" in errs[0]
    assert page.button(key="run").disabled

    upload_content(page, "photo.png", png_of(80, 80))
    assert not errors(page)
    small_settings(page)
    page.run()
    click_run(page)
    assert not errors(page)
    check_result(page)


def test_bad_settings_show_an_error_and_disable_run(page):
    page.multiselect(key="style_layers").set_value([]).run()
    assert not page.exception
    errs = errors(page)
    assert len(errs) == 1 and "style_layers is empty" in errs[0], errs
    assert page.button(key="run").disabled

    page.multiselect(key="style_layers").set_value(["relu1_1", "relu2_1"]).run()
    page.text_input(key="layer_weights").set_value("1, 2, 3").run()
    assert not page.exception
    errs = errors(page)
    assert len(errs) == 1 and "3 values for 2 style layers" in errs[0], errs
    assert page.button(key="run").disabled

    page.text_input(key="layer_weights").set_value("1, 2").run()
    assert not errors(page)
    assert not page.button(key="run").disabled


def test_without_untrained_and_no_weights_one_error_line(page):
    untrained_box(page).uncheck().run()
    assert not page.exception
    errs = errors(page)
    assert len(errs) == 1, errs
    assert "\n" not in errs[0]
    # it leads with what to do; where the app looked follows as a caption
    assert errs[0].startswith("VGG19 needs its ImageNet weights (vgg19-dcbb9e9d.pth, 548 MB)")
    assert errs[0].index("To go on, tick “Use untrained weights”") < errs[0].index("python -m explorer weights download")
    assert "/" not in errs[0].split("To go on")[0]  # no file paths before the advice
    assert any(c.value.startswith("Looked in ") for c in page.caption)
    assert page.button(key="run").disabled
    assert not any("untrained weights" in w.value for w in page.warning)

    # ticking it again brings the page back
    untrained_box(page).check().run()
    assert not page.exception and not errors(page)
    assert not page.button(key="run").disabled


# --------------------------------------------------------------------------- damaged weights files


def test_damaged_or_unreadable_weights_files_are_named_on_the_page(monkeypatch, tmp_path):
    """With EXPLORER_ALLOW_UNTRAINED=1 an unreadable weights file was quietly replaced by untrained
    weights (Home listed it as found), and a file holding NaN values ran, making black pictures."""
    import torch
    import torchvision

    from explorer.app import ui

    folder = tmp_path / "weights"
    folder.mkdir()
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.mobilenet_v2().state_dict().items()}
    sd = {k: torch.zeros(shape, dtype=torch.float16 if "num_batches" not in k else torch.int64)
          for k, shape in shapes.items()}
    sd["features.2.conv.1.1.bias"][5] = float("nan")
    torch.save(sd, folder / "mobilenet_v2-damaged.pth")  # 7 MB
    vgg = folder / "vgg19-dcbb9e9d.pth"
    vgg.write_bytes((folder / "mobilenet_v2-damaged.pth").read_bytes()[:4096])  # a copy cut short
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(folder))
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        assert not at.exception
        found = dict(zip(at.dataframe[0].value["weights file"], at.dataframe[0].value["found at"]))
        assert found["vgg19-dcbb9e9d.pth"].startswith(f"{vgg}: found but unreadable: the file is truncated or damaged")
        assert found["mobilenet_v2-damaged.pth"] == str(folder / "mobilenet_v2-damaged.pth")  # the file found, by its name

        at.switch_page(STYLE_PAGE).run()
        assert not at.exception
        assert untrained_box(at).value is False  # a file is there: no quiet switch to untrained weights
        errs = errors(at)
        assert len(errs) == 1 and "\n" not in errs[0], errs
        assert errs[0].startswith(f"could not read weights file {vgg}: the file is truncated or damaged")
        assert any("Use untrained weights" in c.value for c in at.caption)  # the way forward
        assert at.button(key="run").disabled

        at.switch_page("pages/style_saliency.py").run()
        at.sidebar.selectbox(key="sal_model_name").set_value("mobilenet_v2").run()
        assert not at.exception
        assert errors(at) == [f"weights file {folder / 'mobilenet_v2-damaged.pth'}: features.2.conv.1.1.bias holds "
                              "NaN or infinite values; the file is damaged"]
        assert at.button(key="sal_run").disabled
    finally:
        ui.cached_model.clear()


def page_words(at: AppTest) -> str:
    """Every markdown and caption text of a rendered page, expanders included, as one string."""
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_style_page_gives_the_papers_setups_preprocessing_context_and_lbfgs_with_sources(page):
    from explorer.nets import registry
    from explorer.style import settings as style_settings, transfer

    text = page_words(page)
    # Gatys et al.'s own setup, and that no image satisfies both targets
    for phrase in ("Gatys, Ecker & Bethge 2016", "*normalized* VGG19", "average pooling", "white-noise image",
                   "no image matches both targets"):
        assert phrase in text, phrase
    # input preprocessing: the constants as the code has them, and the ratio computed from them
    assert ", ".join(f"{m:g}" for m in registry.CAFFE_MEAN_BGR) in text
    assert ", ".join(f"{v:g}" for v in registry.IMAGENET_STD) in text
    scale = sorted(registry.caffe_input_scale())
    assert f"255 × std = {scale[0]:.1f}–{scale[-1]:.1f} times larger" in text
    # feed-forward and arbitrary-style methods, and why the app optimizes
    for phrase in ("Johnson, Alahi & Fei-Fei 2016", "Huang & Belongie 2017", "Li et al. 2017", "Zhu et al. 2017",
                   "Why this app optimizes"):
        assert phrase in text, phrase
    # L-BFGS beside the optimizer choice: m is the history_size the run gives torch
    assert "quasi-Newton" in text and f"m = {transfer.LBFGS_HISTORY} (torch.optim.LBFGS's history_size)" in text
    # Luan et al.'s values and stages, related to the page's lambda
    assert "Γ = 10² on the style term and λ = 10⁴" in text and "two-stage procedure" in text
    assert f"this page's lambda (default {style_settings.DEFAULT_PHOTO_LAMBDA:g})" in text
    assert page.select_slider(key="photo_lambda").value == style_settings.DEFAULT_PHOTO_LAMBDA


def test_readme_background_quotes_the_codes_numbers():
    from explorer.featurevis import examples
    from explorer.nets import registry
    from explorer.style import transfer

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Background for lecturers", 1)[1].split("\n## ", 1)[0]
    assert "(" + ", ".join(f"{m:g}" for m in registry.CAFFE_MEAN_BGR) + ")" in " ".join(section.split())
    assert f"m = {transfer.LBFGS_HISTORY} here" in section
    words = {7: "seven", 8: "eight", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve"}
    assert f"the {words[len(examples.sample_sources())]} bundled" in " ".join(section.split())


def test_style_page_time_hint_is_computed_from_size_steps_and_scales(page):
    import re

    from explorer.style import settings as style_settings

    small_settings(page)
    page.number_input(key="scales").set_value(2).run()
    page.slider(key="start_size").set_value(48).run()
    s = style_settings.StyleSettings(size=64, steps=3, scales=2, start_size=48,
                                     scale_steps_ratio=page.slider(key="scale_steps_ratio").value)
    low, high, basis = style_settings.estimate_seconds(s, None)
    units = style_settings.step_units(s)
    assert basis == "reference" and units == pytest.approx(sum(k * (sz / 256) ** 2 for sz, k in s.scale_plan()))
    work = " + ".join(f"{k} × ({sz}/256 px)²" for sz, k in s.scale_plan())
    hint = [c.value for c in page.caption if c.value.startswith("Time:")]
    assert len(hint) == 1 and hint[0].startswith(f"Time: about {low:.0f}-{high:.0f} s on a 2-core CPU: {work} = "
                                                 f"{units:.3g} step units × ") and "shared" in hint[0]
    click_run(page)
    page.run()  # the hint above the result uses the run that ended after it was drawn
    check_result(page)
    hint = [c.value for c in page.caption if c.value.startswith("Time:")][0]
    m = re.search(r"about (\d+) s here: .* = ([\d.e+-]+) step units × ([\d.e+-]+) s, the time per step at 256 px "
                  r"of this session's last run", hint)
    assert m, hint
    assert float(m.group(2)) == pytest.approx(units, rel=1e-3)
    assert abs(float(m.group(1)) - float(m.group(3)) * units) <= 0.5 + 1e-3 * float(m.group(1))
