"""Saliency-guided Gram matrices (explorer.saliency.guided): masked Gram maths, weight maps, per-layer
masks, channel selection, guided transfer and its comparison, and the CLI options.
Untrained VGG19 (seed 0), CPU, 48-64 px, a few steps."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.saliency import attribution as A
from explorer.saliency import guided as G
from explorer.style import guides as GD
from explorer.optim import losses as L
from explorer.style.gatys import gatys_objective
from explorer.optim.objectives import LayerGuide
from explorer.style.transfer import StyleTransfer, run_style_transfer
from explorer.style.gatys import style_targets
from explorer.style.settings import StyleSettings
from explorer.optim.losses import gram_matrix, style_layer_loss
from tests.helpers import error_line, picture, run_cli, stripes

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


# --------------------------------------------------------------------------- masked Gram

def test_all_ones_mask_gives_the_full_gram_exactly():
    f = torch.randn(2, 8, 6, 5, generator=torch.Generator().manual_seed(0))
    ones = torch.ones(6, 5)
    assert torch.equal(L.guided_gram(f, ones, normalize=False), gram_matrix(f))  # eq. (3)
    torch.testing.assert_close(L.guided_gram(f, ones), gram_matrix(f, normalize=True), rtol=1e-6, atol=0)


def test_all_ones_weight_map_gives_the_full_style_targets(vgg19):
    s = stripes(48, 64)
    full = style_targets(vgg19, s, LAYERS)
    masked = style_targets(vgg19, s, LAYERS, weight=torch.ones(48, 64))
    for l in LAYERS:
        torch.testing.assert_close(masked[l], full[l], rtol=1e-5, atol=0)


def test_a_region_mask_gives_the_gram_of_that_region():
    f = torch.randn(1, 4, 6, 7, generator=torch.Generator().manual_seed(1))
    w = torch.zeros(6, 7)
    w[1:4, 2:6] = 1
    region = f[:, :, 1:4, 2:6]
    torch.testing.assert_close(L.guided_gram(f, w, normalize=False), gram_matrix(region), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(L.guided_gram(f, w), gram_matrix(region, normalize=True), rtol=1e-5, atol=1e-6)


def test_masked_gram_weights_positions_linearly():
    f = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    w = torch.rand(4, 4, generator=torch.Generator().manual_seed(3))
    by_hand = sum(w[i, j] * torch.outer(f[0, :, i, j], f[0, :, i, j]) for i in range(4) for j in range(4)) / w.sum()
    torch.testing.assert_close(L.guided_gram(f, w)[0], by_hand, rtol=1e-5, atol=1e-6)


def test_masked_gram_errors():
    f = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="does not match"):
        L.guided_gram(f, torch.ones(3, 4))
    with pytest.raises(ValueError, match="zero everywhere"):
        L.guided_gram(f, torch.zeros(4, 4))


# --------------------------------------------------------------------------- weight maps

def test_hard_weight_map_keeps_exactly_the_top_fraction():
    h = np.arange(100, dtype=np.float32).reshape(10, 10)
    w = G.weight_map(h, keep=0.3)
    assert set(np.unique(w.numpy())) == {0.0, 1.0} and int(w.sum()) == 30
    assert w.numpy()[h >= 70].all() and not w.numpy()[h < 70].any()
    assert int(G.weight_map(h, keep=1.0).sum()) == 99  # every positive position; the 0 is not important
    assert int(G.weight_map(h, keep=0.001).sum()) == 1


def test_soft_weight_map_is_the_normalized_heatmap_to_a_power():
    h = np.array([[0.0, 1.0], [2.0, 4.0]], np.float32)
    w = G.weight_map(h, keep=1.0, soft=True, power=2.0)
    torch.testing.assert_close(w, torch.tensor([[0.0, 1 / 16], [1 / 4, 1.0]]))
    w = G.weight_map(h, keep=0.5, soft=True)
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.0], [0.5, 1.0]]))


def test_negative_occlusion_values_count_as_unimportant():
    h = np.array([[-5.0, 1.0], [2.0, -1.0]], np.float32)
    assert G.weight_map(h, keep=0.5).tolist() == [[0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(keep=0.0), "keep"), (dict(keep=1.5), "keep"), (dict(keep=0.5, power=0.0), "power")])
def test_weight_map_rejects_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        G.weight_map(np.ones((4, 4), np.float32), **kwargs)


@pytest.mark.parametrize("soft", [False, True])
def test_a_heatmap_with_nothing_positive_is_refused_in_one_line(soft):
    """An all-negative occlusion map (hiding any window raises the style energy) used to give a
    hard mask of the first 30 % of positions in reading order: a strip along the top."""
    for h in (np.zeros((4, 4), np.float32), -np.arange(1, 17, dtype=np.float32).reshape(4, 4)):
        with pytest.raises(ValueError, match="no positive value") as e:
            G.weight_map(h, keep=0.3, soft=soft)
        assert "\n" not in str(e.value)


def test_a_mostly_negative_map_keeps_only_its_positive_part_and_says_so():
    h = -np.ones((10, 10), np.float32)
    h[6:, 3:5] = [[1.0, 2.0]] * 4  # 8 positive positions, far from the top rows
    w = G.weight_map(h, keep=0.3)
    assert int(w.sum()) == 8 and w.numpy()[6:, 3:5].all() and not w.numpy()[:6].any()
    notes = G.guide_notes(h, w, 0.3)
    assert any("only 8% of the positions have a positive importance" in n and "instead of 30%" in n for n in notes)
    assert G.guide_notes(np.arange(1, 101, dtype=np.float32).reshape(10, 10),
                         G.weight_map(np.arange(1, 101, dtype=np.float32).reshape(10, 10), keep=0.3), 0.3) == []
    tiny = G.weight_map(np.arange(1, 10_001, dtype=np.float32).reshape(100, 100), keep=0.001)
    assert any("keeps 0.1% of the style image" in n for n in G.guide_notes(np.ones((100, 100)), tiny, 0.001))


def test_layer_masks_have_each_layers_resolution_and_average_the_area(vgg19):
    w = torch.zeros(48, 64)
    w[:, :16] = 1  # the left quarter
    masks = GD.layer_masks(w, vgg19, LAYERS)
    for l in LAYERS:
        assert masks[l].shape == vgg19.features(torch.zeros(1, 3, 48, 64), [l])[l].shape[-2:]
        assert float(masks[l].min()) >= 0 and float(masks[l].max()) <= 1
    torch.testing.assert_close(masks["relu3_1"].mean(), torch.tensor(0.25))  # 12 x 16 cells, exact
    assert masks["relu3_1"][:, :4].eq(1).all() and masks["relu3_1"][:, 4:].eq(0).all()


@pytest.mark.parametrize("soft", [False, True])
def test_layer_mask_cells_are_the_kept_share_or_the_mean_weight(vgg19, soft):
    """What the per-layer mask view says each cell's grey is: for a hard mask the share of the
    cell's pixels that are kept, for a soft mask the mean weight of its pixels (0 where not kept)."""
    heat = np.random.default_rng(0).random((48, 64)).astype(np.float32)
    w = G.weight_map(heat, keep=0.3, soft=soft)
    cells = GD.layer_masks(w, vgg19, LAYERS)["relu3_1"]  # 12 x 16 cells of 4 x 4 px
    blocks = w.reshape(12, 4, 16, 4)
    torch.testing.assert_close(cells, blocks.mean((1, 3)))
    share = blocks.gt(0).float().mean((1, 3))
    if soft:
        assert not torch.allclose(cells, share)  # graded weights: the share of kept pixels is not what is shown
    else:
        torch.testing.assert_close(cells, share)


# --------------------------------------------------------------------------- painted masks

def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_load_mask_resizes_a_painted_mask():
    arr = np.zeros((96, 128), np.uint8)
    arr[:, :64] = 255
    m = G.load_mask(_png(arr), (48, 64))
    assert m.shape == (48, 64)
    assert m[:, :32].eq(1).all() and m[:, 32:].eq(0).all()


@pytest.mark.parametrize("arr, message", [
    (np.full((64, 64), 255, np.uint8), "aspect ratio"), (np.zeros((48, 64), np.uint8), "black everywhere")])
def test_load_mask_errors(arr, message):
    with pytest.raises(ValueError, match=message):
        G.load_mask(_png(arr), (48, 64))


# --------------------------------------------------------------------------- channel variant

def test_channel_selection_keeps_the_most_important_channels(vgg19):
    imp = G.channel_importance(vgg19, stripes(48, 48), ("relu1_1", "relu3_1"))
    assert imp["relu1_1"].shape == (64,) and imp["relu3_1"].shape == (256,)
    assert all(bool((v >= 0).all()) and float(v.sum()) > 0 for v in imp.values())
    kept = G.select_channels(imp, 0.25)
    assert len(kept["relu1_1"]) == 16 and len(kept["relu3_1"]) == 64
    for l, idx in kept.items():
        threshold = imp[l][idx].min()
        others = torch.ones(len(imp[l]), dtype=torch.bool)
        others[idx] = False
        assert bool((imp[l][others] <= threshold).all())


def test_style_loss_on_selected_channels_uses_only_those_channels(vgg19, images64):
    content, style = images64
    # the paper's E_l (eq. (4)), so that the expected value is the plain formula
    settings = StyleSettings(size=64, steps=1, precision="fp32", style_layers=("relu2_1",), loss_normalization="paper")
    idx = {"relu2_1": torch.tensor([3, 10, 50])}
    full = style_targets(vgg19, style, ["relu2_1"])["relu2_1"]
    objective = gatys_objective(vgg19, content, settings, {"relu2_1": full[idx["relu2_1"]][:, idx["relu2_1"]]},
                                guides={"relu2_1": LayerGuide(channels=idx["relu2_1"])})
    run = StyleTransfer(vgg19, content, style, settings, objective=objective)
    f = vgg19.features(content, ["relu2_1"])["relu2_1"]
    expected = style_layer_loss(f[:, [3, 10, 50]], gram_matrix(
        vgg19.features(style, ["relu2_1"])["relu2_1"][:, [3, 10, 50]], normalize=True)[0])
    torch.testing.assert_close(run.losses(content)["style_layers"]["relu2_1"], expected, rtol=1e-5, atol=0)


# --------------------------------------------------------------------------- guided transfer

def test_keeping_everything_reproduces_full_gram_transfer(vgg19, images64):
    content, style = images64
    settings = StyleSettings(size=64, steps=3, precision="fp32")
    heat = A.attribute(vgg19, style, A.AttributionSettings(method="saliency"))
    guidance = G.prepare_guidance(vgg19, style, settings, G.GuideSettings(keep=1.0), heatmap=heat)
    assert guidance.weight.eq(1).all()
    full = run_style_transfer(vgg19, content, style, settings)
    guided = run_style_transfer(vgg19, content, style, settings, objective=guidance.objective(vgg19, content, settings))
    torch.testing.assert_close(guided.image, full.image, rtol=0, atol=1e-5)


@pytest.mark.parametrize("smooth", [0.0, 4.0])
def test_keep_100_percent_in_the_comparison_is_the_full_run(vgg19, images64, smooth):
    # the page's comparison: the full run is given the cached full targets, the guided run its
    # own; both must start from the same (histogram) image, so only the targets can differ
    content, style = images64
    settings = StyleSettings(size=64, steps=2, precision="fp32")
    heat = A.attribute(vgg19, style, A.AttributionSettings(method="saliency", size=64))
    guidance = G.prepare_guidance(vgg19, style, settings, G.GuideSettings(keep=1.0, smooth=smooth), heatmap=heat)
    assert guidance.weight.eq(1).all()
    full_targets = style_targets(vgg19, style, settings.style_layers, pooling=settings.pooling)
    for layer in settings.style_layers:
        torch.testing.assert_close(guidance.targets[layer], full_targets[layer], rtol=1e-6, atol=0)
    run = G.CompareRun(vgg19, content, style, settings, guidance, full_targets=full_targets)
    list(run)
    c = run.result()
    torch.testing.assert_close(c.guided.image, c.full.image, rtol=0, atol=1e-6)
    assert c.full.history[0]["style"] == pytest.approx(c.guided.history[0]["style"], rel=1e-6)  # same start
    for key in ("content", "style_full", "style_masked", "ssim"):
        assert c.metrics["guided"][key] == pytest.approx(c.metrics["full"][key], rel=1e-5, abs=1e-7), key


def test_smoothing_turns_scattered_pixels_into_regions():
    from scipy.ndimage import label

    rng = np.random.default_rng(0)
    pixels = rng.random((64, 64)).astype(np.float32)  # per-pixel importance, no spatial structure
    assert np.array_equal(G.smooth_importance(pixels, 0), pixels)
    smooth = G.smooth_importance(pixels, 4)
    assert smooth.shape == pixels.shape and smooth.dtype == np.float32 and (smooth > 0).all()
    raw_parts = label(G.weight_map(pixels, 0.3).numpy())[1]
    smooth_parts = label(G.weight_map(smooth, 0.3).numpy())[1]
    assert smooth_parts * 10 < raw_parts, (raw_parts, smooth_parts)
    # negative values count as 0; an isolated positive pixel spreads to its neighbourhood
    one = np.full((9, 9), -1.0, np.float32)
    one[4, 4] = 1.0
    s = G.smooth_importance(one, 1.0)
    assert s[4, 4] == s.max() and s[4, 5] > 0 and s.min() >= 0
    with pytest.raises(ValueError, match="sigma"):
        G.smooth_importance(pixels, -1)
    with pytest.raises(ValueError, match="2-D"):
        G.smooth_importance(pixels[None], 1)


def test_guide_settings_smooth_the_heatmap_before_ranking(vgg19, images64):
    _, style = images64
    settings = StyleSettings(size=64, steps=1)
    heat = A.attribute(vgg19, style, A.AttributionSettings(method="saliency", size=64))
    g = G.prepare_guidance(vgg19, style, settings, G.GuideSettings(keep=0.3, smooth=3.0), heatmap=heat)
    expected = G.weight_map(G.smooth_importance(heat.importance, 3.0), 0.3)
    assert torch.equal(g.weight, expected) and not torch.equal(g.weight, G.weight_map(heat.importance, 0.3))
    with pytest.raises(ValueError, match="smooth"):
        G.GuideSettings(smooth=-1)


@pytest.mark.realweights
def test_smoothed_saliency_of_the_default_style_keeps_regions(real_vgg19):
    # the page's claim: on the real VGG19 the top 30 % of saliency is salt and pepper, smoothed
    # with sigma = 4 px (the page's default, at its 128 px working size) it is a few regions
    from scipy.ndimage import label
    from explorer.io.samples import load_sample
    from explorer.io.images import resize_long_side, to_tensor

    style = to_tensor(resize_long_side(load_sample("immunohistochemistry").image, 128))
    heat = A.attribute(real_vgg19, style, A.AttributionSettings(method="saliency", size=128))
    assert (heat.importance > 0).all()  # keep = 100 % keeps every position: the full-Gram target
    raw = G.weight_map(heat.importance, 0.3).numpy()
    smooth = G.weight_map(G.smooth_importance(heat.importance, 4.0), 0.3).numpy()
    raw_parts, smooth_parts = label(raw)[1], label(smooth)[1]
    assert raw_parts > 300 and smooth_parts < 40, (raw_parts, smooth_parts)


def test_difference_map_zoom_window_and_mask_over_the_style():
    a = torch.zeros(1, 3, 20, 30)
    b = a.clone()
    b[:, :, 12:16, 20:26] = 0.6
    b[:, 0, 0, 0] = 0.9  # one strong pixel: the window ranks mean difference, not the maximum
    d = G.difference_map(a, b)
    assert d.shape == (20, 30) and d[13, 21] == pytest.approx(0.6) and d[0, 0] == pytest.approx(0.3)
    from explorer.io.images import to_pil
    assert np.allclose(G.difference_map(to_pil(a), to_pil(b)), d, atol=1 / 255)
    top, left, h, w = G.largest_difference_window(d, 4)
    assert (h, w) == (4, 4) and 12 <= top <= 12 and 20 <= left <= 22
    assert G.largest_difference_window(d, 100)[2:] == (20, 30)  # never larger than the image
    with pytest.raises(ValueError, match="differ in size"):
        G.difference_map(a, torch.zeros(1, 3, 20, 31))
    style = torch.full((1, 3, 4, 4), 0.8)
    w = torch.zeros(4, 4)
    w[:2] = 1
    over = G.mask_over(style, w, dim=0.25)
    assert torch.allclose(over[..., :2, :], style[..., :2, :]) and torch.allclose(over[..., 2:, :], style[..., 2:, :] * 0.25)
    with pytest.raises(ValueError, match="weight map"):
        G.mask_over(style, torch.ones(3, 4))


@pytest.mark.slow  # over 5 s on a 2-core CPU; -m "not slow" leaves it out
def test_guided_targets_differ_and_the_comparison_measures_both(vgg19, images64):
    content, style = images64
    # style only (alpha = 0): with untrained weights the content term would otherwise dominate
    # the first steps, and this test checks what each run's style target does. Adam, because
    # L-BFGS without line search oscillates in its first steps at this beta. From the content
    # image: the default start already has the whole style image's colours, a head start for
    # the full Gram target that this comparison of targets must not give either run
    settings = StyleSettings(size=64, steps=30, optimizer="adam", precision="fp32", content_weight=0.0,
                             init="content")
    heat = A.attribute(vgg19, style, A.AttributionSettings(method="guided_backprop"))
    guidance = G.prepare_guidance(vgg19, style, settings, G.GuideSettings(method="guided_backprop", keep=0.2),
                                  heatmap=heat)
    assert abs(float(guidance.weight.mean()) - 0.2) < 0.01
    run = G.CompareRun(vgg19, content, style, settings, guidance)
    events = list(run)
    assert [e.stage for e in events].count("full Gram") == 31 and events[-1].done
    assert events[-1].step == events[-1].total
    c = run.result()
    assert not torch.equal(c.full.image, c.guided.image)
    for row in c.metrics.values():
        assert set(row) == {"content", "style_full", "style_masked", "ssim", "seconds"}
        assert all(np.isfinite(v) for v in row.values()) and -1 <= row["ssim"] <= 1
    # the guided run optimizes the masked style loss, the full run the full one
    assert c.metrics["guided"]["style_masked"] < c.metrics["full"]["style_masked"]
    assert c.metrics["full"]["style_full"] < c.metrics["guided"]["style_full"]


def test_keep_sweep_runs_one_transfer_per_fraction(vgg19, images64):
    content, style = images64
    settings = StyleSettings(size=64, steps=1, precision="fp32")
    heat = A.attribute(vgg19, style, A.AttributionSettings(method="saliency"))
    sweep = G.KeepSweep(vgg19, content, style, settings, G.GuideSettings(), heat, keeps=(0.1, 1.0))
    events = list(sweep)
    assert events[-1].done and [k for k, _, _ in sweep.results] == [0.1, 1.0]
    m_full = sweep.results[1][2]
    assert m_full["style_masked"] == pytest.approx(m_full["style_full"], rel=1e-5)  # keep 100% = full Gram


def test_guide_settings_errors():
    with pytest.raises(ValueError, match="guide must be one of"):
        G.GuideSettings(method="magic")
    with pytest.raises(ValueError, match="keep"):
        G.GuideSettings(keep=0)
    with pytest.raises(ValueError, match="cannot select channels"):
        G.GuideSettings(method="mask", variant="channels")


@pytest.mark.parametrize("given, message", [
    ({"power": True}, "power must be a finite number; got True"),
    ({"keep": 1.5}, "keep must be > 0 and <= 1; got 1.5"),
    ({"window": 0}, "window must be between 1 and 4096; got 0"),
    ({"stride": "8"}, "stride must be a whole number; got '8'"),
    ({"baseline": "grey"}, "baseline must be one of blur, mean, zero; got 'grey'"),
    ({"variant": "pixels"}, "variant must be one of positions, channels; got 'pixels'"),
])
def test_a_recipes_guide_with_a_wrong_value_names_the_option(given, message):
    assert G.GuideSettings.from_dict({**G.GuideSettings().to_dict(), "keep": 1}).keep == 1  # a whole fraction
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        G.GuideSettings.from_dict({**G.GuideSettings().to_dict(), **given})


# --------------------------------------------------------------------------- CLI

def test_cli_saliency_writes_overlay_and_raw_heatmap(capsys, tmp_path):
    out, npy = tmp_path / "heat.png", tmp_path / "heat.npy"
    rc, _, err = run_cli(capsys, "saliency", "sample:gravel", "-o", out, "--npy", npy, "--size", 64,
                         "--method", "occlusion", "--window", 16, "--stride", 8, "--baseline", "blur",
                         "--untrained", "--quiet")
    assert rc == 0, err
    with Image.open(out) as im:
        assert im.size == (64, 64) and "untrained" in im.info["weights"]
    heat = np.load(npy)
    assert heat.shape == (64, 64) and heat.dtype == np.float32 and np.isfinite(heat).all()
    assert "fast occlusion" in err


@pytest.mark.parametrize("args, message", [
    (["--objective", "channel:relu1_1:99"], "has 64 channels"),
    (["--method", "gradcam", "--objective", "layer:relu2_1", "--gradcam-layer", "relu3_1"], "comes after"),
    (["--window", "100", "--method", "occlusion"], "larger than the image"),
    (["--npy", "x.txt"], "--npy must name a .npy"),
    (["--opacity", "2"], "--opacity"),
])
def test_cli_saliency_errors_are_one_line(capsys, tmp_path, args, message):
    rc, _, err = run_cli(capsys, "saliency", "sample:gravel", "-o", tmp_path / "h.png", "--size", 64,
                         "--untrained", *args)
    assert rc == 2 and message in error_line(err)


def test_cli_stylize_with_a_guide_records_it_and_replays(capsys, tmp_path):
    out, report = tmp_path / "g.png", tmp_path / "r.json"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", out, "--size", 64,
                         "--steps", 2, "--guide", "guided_backprop", "--keep", 0.2, "--soft", "--power", 2,
                         "--smooth", 2, "--untrained", "--quiet", "--report", report)
    assert rc == 0, err
    rep = json.loads(report.read_text())
    assert rep["guide"]["method"] == "guided_backprop" and rep["guide"]["keep"] == 0.2 and rep["guide"]["soft"]
    assert rep["guide"]["smooth"] == 2
    assert rep["guidance"]["kept_fraction"] == pytest.approx(0.2, abs=0.01)
    rc, _, err = run_cli(capsys, "stylize", "--recipe", report, "-o", tmp_path / "again.png", "--untrained", "--quiet")
    assert rc == 0, err
    with Image.open(out) as a, Image.open(tmp_path / "again.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))  # same guide, same seed: same picture


def test_cli_stylize_with_a_painted_mask_and_the_channel_variant(capsys, tmp_path):
    arr = np.zeros((64, 64), np.uint8)
    arr[:32] = 255
    mask = tmp_path / "mask.png"
    mask.write_bytes(_png(arr))
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", tmp_path / "m.png",
                         "--size", 64, "--steps", 1, "--mask", mask, "--untrained", "--quiet", "--report",
                         tmp_path / "m.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "m.json").read_text())["guidance"]["kept_fraction"] == pytest.approx(0.5)
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", tmp_path / "c.png",
                         "--size", 64, "--steps", 1, "--guide", "saliency", "--guide-variant", "channels",
                         "--keep", 0.5, "--untrained", "--quiet", "--report", tmp_path / "c.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "c.json").read_text())["guidance"]["kept_channels"]["relu1_1"] == 32


@pytest.mark.parametrize("args, message", [
    (["--keep", "0.2"], "--keep needs --guide"),
    (["--guide", "saliency", "--mask", "m.png"], "either --guide"),
    (["--guide", "saliency", "--keep", "0"], "keep must be"),
    (["--mask", "missing.png"], "missing.png"),
])
def test_cli_stylize_guide_errors_are_one_line(capsys, tmp_path, args, message):
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "-o", tmp_path / "x.png",
                         "--size", 64, "--steps", 1, "--untrained", *args)
    assert rc == 2 and message in error_line(err)
