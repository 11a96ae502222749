"""What a newcomer and a class see: the switch where Home says it is, labels and equations that
are right, masks that mean something, a dead Deep Dream start explained, incompatible options
caught before Run, one CLI spelling. AppTest and in-process CLI runs on the CPU with untrained
weights and 48-64 px images (the properties are about words, layout and numbers, not results).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer.dream import deepdream as dream, settings as dream_settings
from explorer.io import images
from explorer.app import pickers, plots
from explorer.style import settings as style_settings
from tests.helpers import app_env, error_line, run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)


def _home() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception
    return at


def _box(at: AppTest):
    boxes = [c for c in at.sidebar.checkbox if c.label == "Use untrained weights"]
    assert len(boxes) == 1, [c.label for c in at.sidebar.checkbox]
    return boxes[0]


# ----------------------------------------------------------------------------- first start

def test_home_has_the_untrained_switch_it_talks_about_and_pages_keep_it(monkeypatch):
    """Home said to tick "Use untrained weights" in the sidebar, where there was no such box."""
    monkeypatch.delenv("EXPLORER_ALLOW_UNTRAINED")  # a plain first start: nothing ticked
    at = _home()
    assert not _box(at).value
    assert any("tick **Use untrained weights** in the sidebar" in m.value for m in at.info)
    _box(at).check().run()
    assert not at.info and any("Untrained weights are on" in c.value for c in at.caption)
    at.switch_page("pages/style_transfer.py").run()
    assert not at.exception and not at.error
    assert _box(at).value  # the same choice on the page
    assert any(c.value.startswith("Weights: untrained weights") for c in at.sidebar.caption)


# ----------------------------------------------------------------------------- labels and equations

def test_every_equation_on_the_style_page_names_its_paper_and_number():
    at = _home()
    at.switch_page("pages/style_transfer.py").run()
    latex = [m.value for m in at.latex]
    assert len(latex) >= 8
    for eq in latex:
        assert re.search(r"\\text\{\((Gatys et al\. 2016, eq\. \d|Luan et al\. 2017, eq\. \d[ab]?|"
                         r"relative losses, this app|total variation .*Mahendran)", eq), eq
        assert not re.search(r"\\quad \(\d\)", eq), eq  # no page-local numbers beside the papers'
    tags = [re.search(r"\((Gatys|Luan)[^)]*eq\. (\w+)\)", e) for e in latex]
    assert {(t.group(1), t.group(2)) for t in tags if t} >= {("Gatys", "1"), ("Gatys", "3"), ("Gatys", "4"),
                                                               ("Gatys", "5"), ("Gatys", "7"), ("Luan", "2"),
                                                               ("Luan", "3a")}
    text = " ".join(m.value for m in at.markdown)
    assert "1/(4N^2) as in eq." not in text and "Luan et al. weight each region's term 1/(2N²)" in text
    labels = [w.label for w in at.number_input]
    assert "TV exponent p" in labels and not any("beta" in l for l in labels if l != "Style weight beta")


def test_final_losses_say_which_are_weighted():
    row = {"content": 0.5, "style": 0.002, "tv": 0.1, "total": 0.5 + 80 * 0.002 + 0.01 * 0.1}
    line = style_settings.describe_final_losses(row, {**style_settings.StyleSettings().to_dict(), "tv_weight": 0.01,
                                                    "style_weight": 80.0})
    assert line.startswith("Final losses, unweighted: L_content 0.5, L_style 0.002, R_V^p 0.1.")
    assert line.endswith("Weighted total α·L_content + β·L_style + TV weight·R_V^p = 1·0.5 + 80·0.002 + "
                         "0.01·0.1 = 0.661.")


def test_per_layer_curves_are_labelled_with_the_product_they_show():
    w = {"relu1_1": 0.25, "relu2_1": 0.75}
    hist = [{"step": s, "content": 1.0, "style": 0.25 * 2.0 + 0.75 * 4.0, "tv": 0.0, "total": 9.0,
             "style_layers": {"relu1_1": 2.0, "relu2_1": 4.0}} for s in range(3)]
    fig = plots.loss_figure(hist, scale={"content": 1.0, "style": 80.0}, per_layer=True, layer_scale=80.0,
                            layer_weights=w, normalization="paper")
    traces = {t.name: t for t in fig.data}
    assert "β·w_l·E_l relu1_1" in traces and "β·w_l·E_l relu2_1" in traces
    assert "β·L_style (Gatys eq. 5)" in traces
    dotted = traces["β·w_l·E_l relu1_1"].y[0] + traces["β·w_l·E_l relu2_1"].y[0]
    assert dotted == pytest.approx(traces["β·L_style (Gatys eq. 5)"].y[0])  # they add up to the style curve
    raw = plots.loss_figure(hist, per_layer=True)
    assert "Ẽ_l relu1_1" in {t.name for t in raw.data}  # the relative scale: the other symbol
    assert "L_style, relative Σ w_l‖G−A‖²/‖A‖²" in {t.name for t in raw.data}


@pytest.mark.parametrize("normalization", ["relative", "paper"])
def test_loss_labels_name_an_equation_only_at_paper_scale(normalization):
    """Relative values are labelled as the ratios they are; Gatys's eq. 1 and 5 and Luan's eq. 2
    are named only where they are used as written. The TV exponent is p, as on the page."""
    hist = [{"step": s, "content": 0.5, "style": 0.01, "tv": 0.1, "photo": 0.2, "total": 2.0} for s in range(3)]
    weighted = plots.loss_figure(hist, scale={"content": 1.0, "style": 80.0, "tv": 0.01, "photo": 1e5},
                                 normalization=normalization)
    raw = plots.loss_figure(hist, normalization=normalization)
    names = [t.name for t in weighted.data] + [t.name for t in raw.data]
    assert "TV weight·R_V^p" in names and "R_V^p" in names and not any("β" in n and "R_V" in n for n in names)
    if normalization == "paper":
        assert {"α·L_content (Gatys eq. 1)", "β·L_style (Gatys eq. 5)", "λ·L_m photorealism (Luan eq. 2)",
                "L_content (Gatys eq. 1)", "L_style (Gatys eq. 5)"} <= set(names)
    else:
        assert not any("eq." in n for n in names), names
        assert {"α·L_content, relative ‖F−P‖²/‖P‖²", "β·L_style, relative Σ w_l‖G−A‖²/‖A‖²",
                "L_content, relative ‖F−P‖²/‖P‖²", "λ·L_m per pixel (relative)"} <= set(names)
    with pytest.raises(ValueError, match="unknown loss scale 'tiny'"):
        plots.loss_figure(hist, normalization="tiny")


def test_the_labelled_values_are_what_the_labels_say(vgg19, images64):
    """Relative: ‖F−P‖²/‖P‖² and Σ w_l ‖G−A‖²/‖A‖² (G, A Gram matrices per position); paper:
    Gatys et al. 2016 eq. 1 and eq. 5 (with eq. 4 per layer), computed here from the features."""
    from explorer.optim import losses
    from explorer.style import gatys, transfer

    content, style = images64
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    got = {}
    for norm in ("relative", "paper"):
        s = style_settings.StyleSettings(size=64, steps=1, precision="fp32", loss_normalization=norm)
        targets = gatys.style_targets(vgg19, style, s.style_layers)
        got[norm] = transfer.StyleTransfer(vgg19, content, targets, s).losses(x)
    layers = list(s.style_layers) + [s.content_layer]
    fx, fp = vgg19.features(x, layers), vgg19.features(content, layers)
    f, p = fx[s.content_layer], fp[s.content_layer]
    w = s.layer_weights
    rel_style = sum(w[l] * (losses.gram_matrix(fx[l], normalize=True) - targets[l]).pow(2).sum()
                    / targets[l].pow(2).sum() for l in s.style_layers)
    paper_style = sum(w[l] * losses.style_layer_loss(fx[l], targets[l]) for l in s.style_layers)
    torch.testing.assert_close(got["relative"]["content"], ((f - p).pow(2).sum() / p.pow(2).sum()).reshape(1),
                               rtol=1e-4, atol=0)
    torch.testing.assert_close(got["relative"]["style"], rel_style.reshape(1), rtol=1e-4, atol=0)
    torch.testing.assert_close(got["paper"]["content"], (0.5 * (f - p).pow(2).sum()).reshape(1), rtol=1e-4, atol=0)
    torch.testing.assert_close(got["paper"]["style"], paper_style.reshape(1), rtol=1e-4, atol=0)


def test_coarse_to_fine_ratio_is_the_one_the_plan_uses():
    """r = (size / start)^(1/(scales − 1)); the plan's sizes are start·r^k rounded."""
    for size, start, scales in ((256, 128, 3), (512, 128, 3), (300, 64, 4), (256, 128, 2)):
        s = style_settings.StyleSettings(size=size, start_size=start, scales=scales)
        r = s.scale_ratio()
        assert r == pytest.approx((size / start) ** (1 / (scales - 1)))
        assert [sz for sz, _ in s.scale_plan()] == [round(start * r ** k) for k in range(scales)]
        line = style_settings.describe_scale_plan(s)
        assert f"r = ({size}/{start})^(1/{scales - 1}) = {r:.3f}" in line
        assert line.startswith("Scales: " + " → ".join(str(sz) for sz, _ in s.scale_plan()) + " px")
    assert style_settings.StyleSettings(size=256, scales=1).scale_ratio() == 1.0


def test_style_page_states_the_start_the_scale_ratio_and_the_papers_setup():
    from explorer.optim import parameterizations

    at = _home()
    at.switch_page("pages/style_transfer.py").run()
    text = " ".join(m.value for m in at.markdown)
    assert "Starting from the content photo, the optimizer changes pixels" not in text
    assert "content photo recoloured with the style's colour histograms" in text
    assert "Fourier offset" in text and "Gatys et al. started from white noise" in text
    assert "about x1.41" not in text and "(working size / first scale)^(1/(scales − 1))" in text
    assert "Controlling Perceptual Factors" in text
    assert "*normalized* VGG19" in text and "relu4_1 alone carries over 98 %" in text and "not offered yet" not in text
    assert "The paper's alpha/beta applies to the normalized VGG19, which is offered" in text
    assert "*Normalized as in Gatys et al.* under Network in the sidebar" in text
    assert "the paper's alpha/beta = 1e-3 for the original Caffe VGG19" not in text
    assert "is small for images" not in text and "quadratic form V_c[O]ᵀ M V_c[O]" in text
    assert "their eq. 4 sums it over the layers" in text
    latex = " ".join(m.value for m in at.latex)
    assert r"\mathcal{L}^l_{s+}" in latex and "Luan et al. 2017, eq. 4" in latex
    decay = f"1/f^{parameterizations.STYLE_FOURIER_DECAY:g}"
    help_ = at.selectbox(key="parameterization").help
    assert decay in help_ and "scale by 1/f;" in help_ and "this project's, tuned" in help_

    at.number_input(key="scales").set_value(3)
    at.slider(key="size").set_value(512).run()
    at.slider(key="start_size").set_value(128).run()
    assert not at.exception
    want = style_settings.describe_scale_plan(style_settings.StyleSettings(size=512, start_size=128, scales=3))
    assert want in [c.value for c in at.caption], [c.value for c in at.caption]
    assert "r = (512/128)^(1/2) = 2.000" in want and "Scales: 128 → 256 → 512 px" in want


def test_saliency_and_sweep_pages_cite_the_right_equations():
    at = _home()
    at.switch_page("pages/style_saliency.py").run()
    text = " ".join(m.value for m in at.markdown)
    assert "(eq. 3 and 4)" not in text and "eq. 5 for the weighted sum over layers" in text
    at.switch_page("pages/sweep.py").run()
    text = " ".join(m.value for m in at.markdown)
    assert "(eq. 1)" not in text and plots.term_label("content", "relative") in text
    assert plots.term_label("style", "relative") in text


def test_figures_use_plain_scientific_notation_not_si_suffixes():
    """Plotly's default "100µ" and "500n" read as units."""
    img = images.to_pil(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    small = np.full((4, 4), 3e-7, np.float32)
    figs = [plots.loss_figure([{"step": 0, "content": 1e-4, "style": 5e-7, "total": 2e-4}]),
            plots.channel_overlay(img, small), plots.activation_histogram(small),
            plots.channel_bar(small.ravel()), plots.gram_heatmap(small, range(4))]
    for fig in figs:
        layout = fig.to_plotly_json()["layout"]
        for axis in ("xaxis", "yaxis"):
            assert layout[axis]["exponentformat"] == "e", (fig.layout.title.text, axis)
        for trace in fig.data:
            if trace.type == "heatmap":
                assert trace.colorbar.exponentformat == "e"


# ----------------------------------------------------------------------------- masks and objectives

def test_masks_are_framed_so_white_regions_show_on_a_white_page():
    w = torch.zeros(8, 8)
    w[:2] = 1.0  # a strip along the top edge
    im = np.asarray(pickers.mask_image(w, cell=64, border=3))
    assert im.shape == (64 + 6, 64 + 6, 3)
    assert (im[:3] == 128).all() and (im[:, :3] == 128).all()  # the frame
    assert (im[3:19, 3:-3] == 255).all() and (im[19:-3, 3:-3] == 0).all()


def _dead_channel(model, layer: str, start: torch.Tensor) -> int:
    with torch.no_grad():
        a = model.features(start, [layer])[layer][0]
    dead = torch.nonzero(a.flatten(1).amax(1) == 0).flatten()
    if not len(dead):
        pytest.skip(f"no channel of {layer} is dead on a gray image with these weights")
    return int(dead[0])


def test_a_dead_channel_from_gray_says_why_and_what_to_do(vgg19, tmp_path, capsys):
    """Deep Dream from gray on a channel that is 0 everywhere gave a gray picture, silently."""
    start = dream.start_image("gray", 64, 0)
    k = _dead_channel(vgg19, "relu3_1", start)
    settings = dream_settings.DreamSettings(model="vgg19", layers="relu3_1", channels=str(k), octaves=1, steps=2, size=64)
    run = dream.DreamRun(vgg19, start, settings)
    for _ in run:
        pass
    assert run.dead_start
    note = next(n for n in run.result().notes if n.startswith(dream.DEAD_START))
    assert "Start from noise instead" in note and "\n" not in note
    assert torch.equal(run.result().image, start.clamp(0, 1))  # nothing changed, and now it says why
    rc, _, err = run_cli(capsys, "dream", "gray", "-o", tmp_path / "d.png", "--model", "vgg19", "--layers",
                         "relu3_1", "--channels", str(k), "--octaves", "1", "--steps", "2", "--size", "64",
                         "--untrained", "--quiet")
    assert rc == 0 and "warning: the objective is exactly 0 on this starting image" in err


def test_incompatible_options_turn_run_off_before_it_is_clicked():
    at = _home()
    at.switch_page("pages/style_transfer.py").run()
    at.button(key="style_add").click().run()  # a second style image
    at.selectbox(key="masks").set_value("auto").run()
    assert at.button(key="run").disabled
    warnings = [w.value for w in at.warning if w.value.startswith("Run is off")]
    assert len(warnings) == 1 and "one style image" in warnings[0]
    at.selectbox(key="masks").set_value("none").run()
    assert not at.button(key="run").disabled and not any(w.value.startswith("Run is off") for w in at.warning)
    at.button(key="style_remove_1").click().run()  # back to one style image
    at.selectbox(key="masks").set_value("files").run()  # but no masks uploaded yet
    assert at.button(key="run").disabled
    assert any("need a colour-coded mask for the content and one for the style image" in w.value
               for w in at.warning)


# ----------------------------------------------------------------------------- one tool

def test_activations_writes_with_o_like_every_other_command(vgg19, tmp_path, capsys, monkeypatch):
    from explorer.cli import commands

    monkeypatch.setattr("explorer.nets.models.load_model", lambda name, **kw: vgg19)
    out = tmp_path / "grid.png"
    rc, _, err = run_cli(capsys, "activations", "sample:coffee", "-o", out, "--size", "64", "--top", "4",
                         "--untrained")
    assert rc == 0 and out.is_file(), err
    rc, _, err = run_cli(capsys, "activations", "sample:coffee", "-o", tmp_path / "grid.jpg", "--untrained")
    assert rc == 2 and ".png" in error_line(err)
