"""AppTest tests of the Style saliency page and the Full vs guided Gram page.

Headless, in-process, CPU, untrained weights (``EXPLORER_ALLOW_UNTRAINED=1``; pretrained weights
cannot be downloaded here), 64 px images and 2-3 steps so the file stays well under two minutes
on a 2-core machine.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer.saliency import attribution
from explorer.io import images, samples
from explorer.saliency.methods import context_margin
from explorer.saliency.occlusion import occlusion_windows
from tests.helpers import app_env, open_app_page, conv_only_vgg19_folder
from tests.test_app import downloads, errors, png_of  # noqa: F401  (downloads is a fixture)

ROOT = Path(__file__).resolve().parents[1]
SALIENCY = "pages/style_saliency.py"
COMPARE = "pages/compare.py"


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)


def open_page(page: str) -> AppTest:
    return open_app_page(page)


def click(at: AppTest, key: str) -> None:
    assert not at.button(key=key).disabled
    at.button(key=key).click().run()
    assert not at.exception, at.exception


def captions(at: AppTest) -> list[str]:
    return [c for im in at.image for c in im.captions]


def charts(at: AppTest) -> dict[str, dict]:
    return {(f := json.loads(el.proto.spec))["layout"]["title"]["text"]: f for el in at.get("plotly_chart")}


def z_array(trace: dict) -> np.ndarray:
    """A heatmap trace's z from the figure JSON (Plotly writes NumPy arrays as typed base64)."""
    import base64

    z = trace["z"]
    if isinstance(z, dict):
        shape = tuple(int(n) for n in z["shape"].split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape)
    return np.asarray(z, dtype=np.float32)


def kept_caption(at: AppTest) -> str:
    kept = [c for c in captions(at) if c.startswith("Kept ")]
    assert len(kept) == 1, captions(at)
    return kept[0]


def working_size(sample: str, size: int = 64) -> tuple[int, int]:
    """(width, height) of a bundled sample at a working size."""
    return images.resize_long_side(samples.load_sample(sample).image, size).size


# --------------------------------------------------------------------------- style saliency


def saliency_page(size: int = 64) -> AppTest:
    at = open_page(SALIENCY)
    at.slider(key="sal_size").set_value(size).run()
    assert not at.exception
    return at


def test_saliency_page_renders_with_untrained_weights():
    at = open_page(SALIENCY)
    assert [t.value for t in at.title] == ["Style saliency"]
    assert not errors(at)
    assert any("untrained weights" in w.value for w in at.warning)
    assert at.selectbox(key="sal_method").options == [attribution.METHOD_TITLES[m] for m in attribution.METHODS]
    # the style energy and the methods are explained with their formulas
    tex = " ".join(l.value for l in at.latex)
    assert r"4 N_l^2 M_l^2" in tex and r"\lVert G^l(x) \rVert_F^2" in tex and "ReLU" in tex
    assert not at.button(key="sal_run").disabled


def test_randomization_check_is_disabled_on_untrained_weights_and_says_why():
    at = open_page(SALIENCY)
    button = at.button(key="sal_check")
    assert button.label == "Randomization check" and button.disabled
    assert "Needs trained weights" in button.help
    assert any(c.value.startswith("The randomization check needs trained weights") for c in at.caption)
    assert not at.button(key="sal_run").disabled


@pytest.mark.realweights
def test_randomization_check_on_real_weights_shows_both_maps_and_their_rank_correlation(monkeypatch):
    from tests.conftest import shared_path
    from explorer.nets import models, registry
    from explorer.saliency import sanity

    from explorer.app import ui

    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(shared_path("weights")))
    ui.cached_model.clear()  # a model another test cached under the same key is not this file's
    try:
        at = saliency_page()
        click(at, "sal_check")
        assert not errors(at)
        assert "Randomization check" in [h.value for h in at.subheader]
        caps = [c for c in captions(at) if c.startswith("Saliency (|gradient|) · ")]
        assert len(caps) == 2 and "vgg19-caffe-features-q8.pth" in caps[0] and caps[1].endswith("untrained weights (seed 0)")
        stated = float(re.search(r"ρ = (-?[0-9.]+)", next(m.value for m in at.markdown if "ρ = " in m.value)).group(1))
        # the same rho with the project's own functions on the page's image, networks and settings
        x = images.to_tensor(images.resize_long_side(samples.load_sample("hubble_deep_field").image, 64))
        s = attribution.AttributionSettings(size=64, style_layers=tuple(registry.MODELS["vgg19"].style_layers))
        trained = models.load_model("vgg19", weights="imagenet", device="cpu")
        untrained = models.load_model("vgg19", weights="untrained", device="cpu")
        _, _, rho = sanity.randomization_check(trained, untrained, x, s)
        assert stated == pytest.approx(rho, abs=5e-4)
    finally:
        ui.cached_model.clear()  # the real file stays out of later tests


def test_saliency_run_shows_heatmap_masks_and_downloads(downloads):
    at = saliency_page()
    click(at, "sal_run")
    assert not errors(at)
    w, h = working_size("hubble_deep_field")
    fig = next(f for t, f in charts(at).items() if t.startswith("Saliency (|gradient|) of style"))
    img, heat = fig["data"]
    assert img["type"] == "image" and heat["type"] == "heatmap"
    assert z_array(heat).shape == (h, w) and "importance %{z" in heat["hovertemplate"]
    assert kept_caption(at).startswith(f"Kept {int(np.ceil(0.3 * w * h)):,} of {w * h:,} px")
    layer_caps = [c for c in captions(at) if re.fullmatch(r"relu\d_1 · \d+\u2060×\u2060\d+", c)]
    assert [c.split(" · ")[0] for c in layer_caps] == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert layer_caps[0] == f"relu1_1 · {w}\u2060×\u2060{h}"  # word joiners: the size never wraps
    assert any("untrained network responds to" in i.value for i in at.info)

    with Image.open(io.BytesIO(downloads["saliency_overlay.png"])) as im:
        assert im.format == "PNG" and im.size == (w, h)
        assert "untrained" in im.text["weights"] and json.loads(im.text["heatmap"])["method"] == "saliency"
    values = np.load(io.BytesIO(downloads["saliency_heatmap.npy"]), allow_pickle=False)
    assert values.dtype == np.float32 and values.shape == (h, w) and np.isfinite(values).all()
    assert values.max() > 0
    # the page's recipe is the CLI's: replayed there, it gives the same heatmap, bit for bit
    recipe = json.loads(downloads["saliency-recipe.json"])
    assert recipe["command"] == "saliency" and recipe["settings"]["model"] == "vgg19"
    assert recipe["run"]["weights"]["kind"] == "untrained" and recipe["inputs"]["style"] == "sample:hubble_deep_field"


def test_the_saliency_pages_recipe_replays_in_the_cli_to_the_same_heatmap(downloads, tmp_path):
    from explorer.cli.parser import main

    at = saliency_page()
    click(at, "sal_run")
    assert not errors(at)
    (tmp_path / "r.json").write_bytes(downloads["saliency-recipe.json"])
    rc = main(["saliency", "--recipe", str(tmp_path / "r.json"), "--untrained", "--quiet",
               "-o", str(tmp_path / "o.png"), "--npy", str(tmp_path / "o.npy")])
    assert rc == 0
    page = np.load(io.BytesIO(downloads["saliency_heatmap.npy"]), allow_pickle=False)
    assert np.array_equal(np.load(tmp_path / "o.npy"), page)


def test_occlusion_reports_progress_while_it_runs(monkeypatch):
    from explorer.app import runs

    seen = []
    show = runs._EventView.show
    monkeypatch.setattr(runs._EventView, "show", lambda self, ev: seen.append(ev) or show(self, ev))
    at = saliency_page()
    at.selectbox(key="sal_method").set_value("occlusion")
    at.slider(key="sal_window").set_value(16)
    at.slider(key="sal_stride").set_value(8)
    at.number_input(key="sal_per_eval").set_value(8).run()
    click(at, "sal_run")
    assert not errors(at)
    w, h = working_size("hubble_deep_field")
    p = context_margin(h, w, attribution.AttributionSettings().context)  # the mirrored context is occluded too
    total = len(occlusion_windows(h + 2 * p, w + 2 * p, 16, 8))
    windows = [ev for ev in seen if ev.stage == "Occlusion"]
    assert len(windows) >= 3 and {ev.total for ev in windows} == {total}  # the bar counts windows
    steps = [ev.step for ev in windows]
    assert steps == sorted(steps) and steps[-1] == total
    fig = next(f for t, f in charts(at).items() if t.startswith("Occlusion of style"))
    heat = fig["data"][1]
    assert heat["zmid"] == 0 and "objective drop" in heat["hovertemplate"]  # signed map, diverging scale
    assert any("Red: hiding this region lowers the objective" in c.value for c in at.caption)


def test_integrated_gradients_show_the_signed_map_that_adds_up_to_the_objectives_change():
    import torch

    from explorer.nets.models import load_model
    from explorer.saliency.objectives import objective_function

    at = saliency_page()
    at.selectbox(key="sal_method").set_value("integrated_gradients")
    at.slider(key="sal_ig_steps").set_value(32).run()
    click(at, "sal_run")
    assert not errors(at)
    fig = next(f for t, f in charts(at).items() if t.startswith("Integrated gradients of style"))
    heat = fig["data"][1]
    assert heat["zmid"] == 0 and "attribution (signed)" in heat["hovertemplate"]  # diverging scale
    z = z_array(heat).astype(np.float64)
    assert (z < 0).any() and (z > 0).any()
    cap = next(c.value for c in at.caption if "Signed integrated gradients" in c.value)
    stated = float(re.search(r"adds up to (\S+), which", cap).group(1))
    assert stated == pytest.approx(z.sum(), rel=1e-3)
    # completeness, with the project's own objective on the page's image and network
    model = load_model("vgg19", weights="untrained", device="cpu")
    x = images.to_tensor(images.resize_long_side(samples.load_sample("hubble_deep_field").image, 64))
    f = objective_function(model, "style", layers=model.spec.style_layers)
    with torch.no_grad():
        change = float(f(x)[0] - f(torch.zeros_like(x))[0])
    assert stated == pytest.approx(change, rel=0.05)
    tex = " ".join(l.value for l in at.latex)
    assert r"\sum_p IG(p) \approx E(x) - E(0)" in tex and r"\Big|" not in tex
    # the colour range is the symmetric 99th percentile of |value| that the caption states
    top = float(np.percentile(np.abs(z), 99))
    assert heat["zmin"] == pytest.approx(-top, rel=1e-5) and heat["zmax"] == pytest.approx(top, rel=1e-5)
    assert f"P = {top:.3g}, the 99th percentile of |value|" in cap
    assert "ranked by the size of the attribution, either sign" in kept_caption(at)


def test_layer_mask_caption_says_share_for_hard_and_mean_weight_for_soft_masks():
    at = saliency_page()
    click(at, "sal_run")
    hard = [c.value for c in at.caption if c.value.startswith("The same mask at each style layer")]
    assert len(hard) == 1 and "share of its pixels that are kept" in hard[0] and "mean weight" not in hard[0]
    at.checkbox(key="sal_soft").check().run()
    soft = [c.value for c in at.caption if c.value.startswith("The same mask at each style layer")]
    assert len(soft) == 1 and "mean weight of its pixels" in soft[0] and "share of its pixels" not in soft[0]


def test_compare_methods_side_by_side():
    at = saliency_page()
    at.checkbox(key="sal_compare_on").check().run()
    at.multiselect(key="sal_compare_methods").set_value(["saliency", "guided_backprop", "gradcam"]).run()
    click(at, "sal_run")
    assert not errors(at)
    assert "Methods side by side" in [s.value for s in at.subheader]
    side = [c.split(" · ")[0] for c in captions(at) if re.fullmatch(r".+ · \d+\.\d s", c)]
    assert side == ["Saliency (|gradient|)", "Guided backprop", "Grad-CAM"]


def test_keep_slider_changes_the_mask_without_recomputing(monkeypatch):
    from explorer.app import ui

    made = []
    real = attribution.AttributionRun
    monkeypatch.setattr(attribution, "AttributionRun", lambda *a, **k: made.append(a[2].method) or real(*a, **k))
    ui.heatmap_cache().clear()
    at = saliency_page()
    click(at, "sal_run")
    assert made == ["saliency"]
    before = kept_caption(at)
    at.slider(key="sal_keep").set_value(60).run()
    after = kept_caption(at)
    assert after != before and "(60%)" in after
    at.checkbox(key="sal_soft").check().run()
    assert "graded by importance" in kept_caption(at)
    at.slider(key="sal_opacity").set_value(0.3).run()
    assert not at.exception and not errors(at)
    fig = next(f for t, f in charts(at).items() if t.startswith("Saliency"))
    assert fig["data"][1]["opacity"] == 0.3
    click(at, "sal_run")  # the same image and settings again: from the cache
    assert made == ["saliency"]


def test_bad_upload_is_one_error_and_the_page_keeps_working():
    at = saliency_page()
    at.radio(key="sal_style_source").set_value("Upload").run()
    at.file_uploader(key="sal_style_upload").set_value(("junk.png", np.random.default_rng(0).bytes(300),
                                                        "image/png")).run()
    assert not at.exception
    errs = errors(at)
    assert len(errs) == 1 and "not an image" in errs[0] and "\n" not in errs[0]
    assert at.button(key="sal_run").disabled
    at.file_uploader(key="sal_style_upload").set_value(("photo.png", png_of(96, 72), "image/png")).run()
    assert not at.exception and not errors(at)
    click(at, "sal_run")
    assert not errors(at) and f"of {64 * 48:,} px (30%), white = kept; ranked by importance" in kept_caption(at)


def test_bad_objective_channel_is_one_error():
    at = saliency_page()
    at.selectbox(key="sal_objective").set_value("channel").run()
    at.number_input(key="sal_channel").set_value(999).run()  # relu3_1 has 256 channels
    click(at, "sal_run")
    errs = errors(at)
    assert len(errs) == 1 and "256 channels" in errs[0] and "\n" not in errs[0]


# --------------------------------------------------------------------------- full vs guided Gram


def compare_page(size: int = 64, steps: int = 3) -> AppTest:
    at = open_page(COMPARE)
    at.slider(key="cmp_size").set_value(size)
    at.number_input(key="cmp_steps").set_value(steps).run()
    assert not at.exception
    return at


def test_compare_page_renders_with_untrained_weights():
    at = open_page(COMPARE)
    assert [t.value for t in at.title] == ["Full vs guided Gram"]
    assert not errors(at)
    assert any("untrained weights" in w.value for w in at.warning)
    assert at.slider(key="cmp_size").value == 128 and at.number_input(key="cmp_steps").value == 50
    assert not at.button(key="cmp_run").disabled and not at.button(key="cmp_sweep").disabled
    assert any("keep = 100 % with a hard mask is the full-Gram transfer" in m.value for m in at.markdown)


def test_compare_runs_end_to_end(downloads):
    at = compare_page()
    click(at, "cmp_run")
    assert not errors(at)
    caps = captions(at)
    assert any(c.startswith("Weight map (Saliency (|gradient|) smoothed σ = 4 px, keep 30%") for c in caps), caps
    # where they differ: the difference image with its colour scale, the zoom and the mask over the painting
    diff = charts(at)["|full − guided|, mean over RGB"]["data"][0]
    assert diff["colorbar"]["title"]["text"] == "|Δ| (0–1)" and diff["zmin"] == 0
    assert sum(c.endswith("zoom ×15 of the boxed window") for c in caps) == 2, caps  # 64 px: a 16 px window
    assert any(c.startswith("The weight map over the style image") for c in caps)
    assert any(re.match(r"Pixel values in \[0, 1\]: mean \d\.\d{3}, max \d\.\d{3}; the box marks the zoomed "
                        r"16×16 px window\.", c.value) for c in at.caption), [c.value for c in at.caption]
    assert any(c.startswith("Full Gram (untrained weights") for c in caps)
    assert any(c.startswith("Saliency-guided Gram (untrained weights") for c in caps)
    table = at.dataframe[0].value
    assert list(table["run"]) == ["full Gram", "saliency-guided"]
    assert list(table.columns) == ["run", "content loss", "style loss (full Gram)", "style loss (masked Gram)",
                                   "SSIM to content", "seconds"]
    assert np.isfinite(table.drop(columns="run").to_numpy(dtype=float)).all()
    assert set(charts(at)) == {"Full Gram: loss per step", "Saliency-guided: loss per step",
                               "|full − guided|, mean over RGB"}
    # the default loss scale is relative: the caption and legends say so and name no equation
    assert any("unweighted, L_content, relative ‖F−P‖²/‖P‖² and L_style, relative" in c.value for c in at.caption)
    legend = {t["name"] for k, f in charts(at).items() if "loss per step" in k for t in f["data"]}
    assert "β·L_style, relative Σ w_l‖G−A‖²/‖A‖²" in legend and not any("eq." in n for n in legend), legend
    for name in ("full_gram.png", "guided_gram.png"):
        with Image.open(io.BytesIO(downloads[name])) as im:
            assert im.format == "PNG" and im.size == working_size("chelsea")


def test_keep_sweep_shows_a_strip():
    at = compare_page(steps=2)
    click(at, "cmp_sweep")
    assert not errors(at)
    strip = [c for c in captions(at) if c.startswith("keep ")]
    assert [c.split(" · ")[0] for c in strip] == ["keep 10%", "keep 30%", "keep 60%", "keep 100%"]
    assert all(re.search(r"SSIM -?\d\.\d{3}$", c) for c in strip), strip


def test_bad_mask_upload_is_one_error_and_a_good_mask_runs():
    at = compare_page(steps=2)
    at.selectbox(key="cmp_method").set_value("mask").run()
    assert at.button(key="cmp_run").disabled
    at.file_uploader(key="cmp_mask_upload").set_value(("mask.png", np.random.default_rng(1).bytes(300),
                                                       "image/png")).run()
    assert not at.exception
    errs = errors(at)
    assert len(errs) == 1 and "not an image" in errs[0] and "\n" not in errs[0]
    assert at.button(key="cmp_run").disabled
    w, h = working_size("immunohistochemistry")
    mask = np.zeros((h, w), np.uint8)
    mask[:, : w // 2] = 255
    buf = io.BytesIO()
    Image.fromarray(mask, "L").save(buf, "PNG")
    at.file_uploader(key="cmp_mask_upload").set_value(("mask.png", buf.getvalue(), "image/png")).run()
    assert not at.exception and not errors(at)
    assert at.button(key="cmp_sweep").disabled  # a painted mask has no k
    click(at, "cmp_run")
    assert not errors(at)
    assert any(c.startswith("Weight map (painted mask)") for c in captions(at))
    assert len(at.dataframe[0].value) == 2


# --------------------------------------------------------------------------- the figure


def test_overlay_colour_scale_label_and_block_means():
    from explorer.app import plots

    image = Image.new("RGB", (10, 6), "gray")
    values = np.arange(60, dtype=np.float32).reshape(6, 10) - 20
    heat = plots.channel_overlay(image, values, 0.5, "t", colorscale="RdBu_r", value_label="objective drop",
                                 zmid=0.0).data[1]
    assert heat.zmid == 0 and heat.colorbar.title.text == "objective drop" and heat.colorscale[0][1] == "rgb(5,48,97)"
    assert "objective drop %{z" in heat.hovertemplate and np.asarray(heat.z).shape == (6, 10)
    # max_cells: 4x4 would need 3x3 blocks (last row and column partial); cells still start at pixel -0.5
    small = plots.channel_overlay(image, values, max_cells=4).data[1]
    z = np.asarray(small.z)
    assert z.shape == (2, 4) and z[0, 0] == pytest.approx(values[:3, :3].mean())
    assert z[1, 3] == pytest.approx(values[3:, 9].mean())  # a partial block averages its own pixels only
    assert small.dx == 3 and small.x0 - small.dx / 2 == pytest.approx(-0.5)
    assert small.colorbar.title.text == "activation" and small.zmid is None  # the activation page's defaults


def test_compare_page_opens_on_its_default_pair_and_says_what_keep_100_and_smoothing_do():
    at = open_page(COMPARE)
    assert at.selectbox(key="cmp_content_sample").value == "chelsea (cat)"
    assert at.selectbox(key="cmp_style_sample").value == "immunohistochemistry"
    assert at.slider(key="cmp_smooth").value == 4.0
    text = " ".join(m.value for m in at.markdown)
    for phrase in ("Both runs start from the same image", "at keep = 100 % the two results are the same picture",
                   "its top 30 % is salt and pepper", "(σ = 4 px at the working size;"):
        assert phrase in text, phrase


def test_compare_page_says_how_it_reads_the_pixels_as_i_and_j_idea():
    at = open_page(COMPARE)
    text = " ".join(m.value for m in at.markdown)
    for phrase in ("the two most important pixels as i and j", "Gatys et al. 2016, eq. 3",
                   "the indices i and j name two feature maps", "the positions k are summed out",
                   "the app weights the positions before the sum", "*Neural Style Transfer for Data Augmentation*"):
        assert phrase in text, phrase


def test_occlusion_caption_says_what_the_border_means_and_its_colour_range():
    at = saliency_page()
    at.selectbox(key="sal_method").set_value("occlusion")
    at.slider(key="sal_window").set_value(16).run()
    at.slider(key="sal_stride").set_value(8).run()
    click(at, "sal_run")
    assert not errors(at)
    cap = next(c.value for c in at.caption if "Hover to read" in c.value)
    assert "continued by its mirror image 32 px beyond each border" in cap and "zero padding" in cap
    z = z_array(next(f for t, f in charts(at).items() if t.startswith("Occlusion"))["data"][1])
    assert "the 99th percentile of |value|" in cap and f"P = {np.percentile(np.abs(z), 99):.3g}" in cap


def test_class_objective_names_its_class_on_the_page():
    import torch

    from explorer.nets.models import load_model

    at = saliency_page()
    at.selectbox(key="sal_objective").set_value("class").run()
    click(at, "sal_run")
    assert not errors(at)
    model = load_model("vgg19", weights="untrained", device="cpu")
    x = images.to_tensor(images.resize_long_side(samples.load_sample("hubble_deep_field").image, 64))
    with torch.no_grad():
        idx = int(model(x).argmax(1)[0])
    name = model.spec.weights_enum.meta["categories"][idx]
    cap = next(c.value for c in at.caption if "Hover to read" in c.value)
    assert f"Objective: logit of class {idx} '{name}', the network's top class for this image." in cap


def test_class_objective_on_a_conv_only_file_says_so_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(conv_only_vgg19_folder(tmp_path)))
    from explorer.app import ui

    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        at.switch_page(SALIENCY).run()
        at.checkbox(key="sal_model_untrained").uncheck().run()
        at.selectbox(key="sal_objective").set_value("class").run()
        assert not at.exception and not errors(at)
        said = [c.value for c in at.caption if "no classifier" in c.value]
        assert len(said) == 1 and "conv layers only" in said[0] and "--" not in said[0], said
        assert at.button(key="sal_run").disabled
    finally:
        ui.cached_model.clear()  # the process-wide model cache must not hand this file to later tests
