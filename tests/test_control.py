"""Control over the result: colour preservation, coarse-to-fine scales, and the photorealistic
mode run end to end (the Matting Laplacian and region maths are in test_photo.py)."""

import json

import numpy as np
import pytest
import torch

from explorer.style import color, control, gatys, matting
from explorer.io import images
from explorer.io import outputs
from explorer.style.transfer import StyleTransfer
from explorer.style.settings import StyleSettings
from helpers import error_line, picture, run_cli, stripes


def _pil(t):
    return images.to_pil(t)


def _settings(**kw):
    base = dict(size=64, steps=2, optimizer="adam", lr=0.05, style_weight=1e4)
    base.update(kw)
    return StyleSettings(**base)


# ----------------------------------------------------------------------------- colour

def _mid_colour_content(h=48, w=64):
    """Saturated but not extreme colours (so YIQ -> RGB rarely clips)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.3 + 0.4 * x, 0.6 - 0.3 * y, 0.4 + 0.2 * (x * y)]).unsqueeze(0)


def test_recombine_luminance_takes_y_from_result_and_iq_from_content():
    content = _mid_colour_content()
    result = torch.full((1, 3, 48, 64), 0.45) + 0.1 * torch.rand(1, 1, 48, 64, generator=torch.Generator().manual_seed(1))
    out = color.recombine_luminance(result.expand(-1, 3, -1, -1), content)
    inside = ((out > 0) & (out < 1)).all(1, keepdim=True).expand(-1, 2, -1, -1)
    assert inside.float().mean() > 0.9
    assert torch.allclose(color.chroma(out)[inside], color.chroma(content)[inside], atol=1e-5)
    assert torch.allclose(color.luminance(out), color.luminance(result), atol=1e-5)
    # and the chroma really is the content's, not the (gray) result's
    assert color.chroma(out).abs().mean() > 0.05 > color.chroma(result).abs().mean()


def test_match_luminance_gives_the_content_mean_and_spread():
    g = torch.Generator().manual_seed(0)
    style_y = 0.2 + 0.1 * torch.rand(1, 1, 40, 40, generator=g)
    content_y = 0.5 + 0.3 * torch.rand(1, 1, 32, 32, generator=g)
    m = color.match_luminance(style_y, content_y)
    assert m.mean() == pytest.approx(float(content_y.mean()), abs=1e-4)
    assert m.std(unbiased=False) == pytest.approx(float(content_y.std(unbiased=False)), rel=1e-3)


def test_histogram_matching_moves_style_channel_means_to_the_content():
    content = _mid_colour_content()
    n = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    st = torch.cat([0.75 + 0.25 * n, 0.2 * n, 0.1 + 0.2 * n.flip(-1)], 1)  # reddish, far from the content
    before = (st.mean((0, 2, 3)) - content.mean((0, 2, 3))).abs()
    matched = color.match_color_histogram(st, content)
    after = (matched.mean((0, 2, 3)) - content.mean((0, 2, 3))).abs()
    assert before.max() > 0.1
    assert after.max() < 0.03
    assert matched.shape == st.shape and 0 <= float(matched.min()) and float(matched.max()) <= 1


def _reddish_style(size=64, seed=2):
    n = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return torch.cat([0.55 + 0.15 * n[:, :1], 0.2 + 0.1 * (n[:, :1] + n[:, 1:2]),
                      0.25 + 0.1 * n[:, 2:]], 1)  # reddish, R and G correlated


def _rgb_stats(x):
    px = x[0].permute(1, 2, 0).reshape(-1, 3).double().numpy()
    return px.mean(0), np.cov(px, rowvar=False, bias=True)


def test_linear_colour_transform_gives_the_style_the_content_mean_and_covariance():
    """Gatys et al. 2017, sec. 5.2: x' = A x + b with A Sigma_S A^T = Sigma_C and A mu_S + b = mu_C;
    the style is what is recoloured (its size stays), towards the content's statistics."""
    content, st = _mid_colour_content(), _reddish_style()
    a, b = color.linear_color_transform(st, content)
    mu_s, cov_s = _rgb_stats(st)
    mu_c, cov_c = _rgb_stats(content)
    np.testing.assert_allclose(a @ cov_s @ a.T, cov_c, atol=1e-10)
    np.testing.assert_allclose(a @ mu_s + b, mu_c, atol=1e-10)
    out = color.match_color_linear(st, content)
    assert out.shape == st.shape and 0 < float(out.min()) and float(out.max()) < 1  # nothing clipped here
    mu_o, cov_o = _rgb_stats(out)
    np.testing.assert_allclose(mu_o, mu_c, atol=1e-5)
    np.testing.assert_allclose(cov_o, cov_c, atol=1e-6)
    assert np.abs(mu_s - mu_c).max() > 0.1 and np.abs(cov_s - cov_c).max() > 1e-3  # they did differ


def test_linear_colour_transform_of_a_flat_style_is_finite():
    content, flat = _mid_colour_content(), torch.full((1, 3, 32, 32), 0.4)
    out = color.match_color_linear(flat, content)
    assert torch.isfinite(out).all() and out.shape == flat.shape


def test_histogram_matching_is_scikit_image_per_channel():
    """The ``histogram`` option is unchanged: scikit-image's match_histograms of the style to the content."""
    from skimage import exposure

    content, st = _mid_colour_content(), _reddish_style()
    want = exposure.match_histograms(st[0].permute(1, 2, 0).double().numpy(),
                                     content[0].permute(1, 2, 0).double().numpy(), channel_axis=-1)
    got = color.match_color_histogram(st, content)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, np.clip(want, 0, 1).astype(np.float32), atol=1e-7)


def test_luminance_only_transfer_keeps_the_contents_chroma(vgg19):
    content = _pil(_mid_colour_content(48, 64))
    run = control.ControlledTransfer(vgg19, content, [(_pil(stripes(64, 64)), 1.0)],
                                     _settings(preserve_color="luminance", steps=3))
    events = list(run)
    seen = run.run.content  # what the network optimized against: gray
    assert torch.equal(seen[:, 0], seen[:, 1]) and torch.equal(seen[:, 1], seen[:, 2])
    out = run.result().image
    ref = run.content_final
    assert out.shape == ref.shape
    inside = ((out > 0) & (out < 1)).all(1, keepdim=True).expand(-1, 2, -1, -1)
    assert inside.float().mean() > 0.8
    assert torch.allclose(color.chroma(out)[inside], color.chroma(ref)[inside], atol=1e-4)
    # the luminance did change: the style was transferred
    assert (color.luminance(out) - color.luminance(ref)).abs().mean() > 1e-3
    assert events[-1].preview is not None and color.chroma(events[-1].preview).abs().mean() > 0.01


def test_histogram_mode_targets_the_recoloured_style(vgg19):
    content, st_img = _mid_colour_content(48, 64), stripes(64, 64)
    run = control.ControlledTransfer(vgg19, _pil(content), [(_pil(st_img), 1.0)], _settings(preserve_color="histogram"))
    list(run)
    plain = gatys.style_targets(vgg19, images.to_tensor(_pil(st_img)), run.settings.style_layers)
    recoloured = gatys.style_targets(vgg19, color.match_color_histogram(images.to_tensor(_pil(st_img)),
                                                                       run.content_final), run.settings.style_layers)
    used = run.targets
    assert torch.allclose(used["relu1_1"], recoloured["relu1_1"], rtol=1e-4, atol=1e-7)
    assert not torch.allclose(used["relu1_1"], plain["relu1_1"], rtol=1e-2)


@pytest.mark.parametrize("mode, recolour", [("histogram", color.match_color_histogram),
                                              ("linear", color.match_color_linear)])
def test_recolouring_modes_target_the_recoloured_style(vgg19, mode, recolour):
    content, st_img = _mid_colour_content(48, 64), stripes(64, 64)
    run = control.ControlledTransfer(vgg19, _pil(content), [(_pil(st_img), 1.0)], _settings(preserve_color=mode, steps=1))
    list(run)
    seen = run.run.content
    assert torch.equal(seen, run.content_final)  # the network sees the content in colour
    recoloured = gatys.style_targets(vgg19, recolour(images.to_tensor(_pil(st_img)), run.content_final),
                                     run.settings.style_layers)
    assert torch.allclose(run.targets["relu1_1"], recoloured["relu1_1"], rtol=1e-4, atol=1e-7)


# ----------------------------------------------------------------------------- scales

def test_scale_plan_is_geometric_with_fewer_steps_at_larger_sizes():
    plan = StyleSettings(size=512, steps=200, scales=5, start_size=128).scale_plan()
    assert [sz for sz, _ in plan] == [128, 181, 256, 362, 512]
    assert [n for _, n in plan] == [200, 100, 50, 25, 12]
    auto = StyleSettings(size=1024, steps=40, scales=0, start_size=128).scale_plan()
    assert [sz for sz, _ in auto] == [128, 181, 256, 362, 512, 724, 1024]  # sqrt(2) steps
    assert StyleSettings(size=256, steps=7).scale_plan() == [(256, 7)]
    assert [n for _, n in StyleSettings(size=256, steps=3, scales=3, start_size=64,
                                        scale_steps_ratio=0.1).scale_plan()] == [3, 3, 3]  # floor: steps
    assert [n for _, n in StyleSettings(size=256, steps=100, scales=3, start_size=64,
                                        scale_steps_ratio=0.1).scale_plan()] == [100, 10, 10]  # floor: 10


@pytest.mark.parametrize("bad, msg", [
    (dict(scales=3, start_size=256, size=256), "start_size"),
    (dict(scales=-1), "scales"),
    (dict(scale_steps_ratio=0.0), "scale_steps_ratio"),
    (dict(preserve_color="sepia"), "preserve_color"),
    (dict(masks="magic"), "masks"),
    (dict(mask_k=1), "mask_k"),
    (dict(photo_lambda=-1.0), "photo_lambda"),
])
def test_bad_control_settings_are_one_line_errors(bad, msg):
    with pytest.raises(ValueError, match=msg) as e:
        StyleSettings(**bad)
    assert "\n" not in str(e.value)


def test_coarse_to_fine_returns_the_target_size_and_reports_every_scale(vgg19):
    s = _settings(size=96, steps=2, scales=3, start_size=48)
    run = control.ControlledTransfer(vgg19, _pil(picture(72, 96)), [(_pil(stripes(64, 64)), 1.0)], s)
    events = list(run)
    plan = s.scale_plan()
    assert [sz for sz, _ in plan] == [48, 68, 96]
    total = sum(n for _, n in plan)
    assert all(ev.total == total for ev in events)
    assert events[-1].step == total and events[-1].done and sum(ev.done for ev in events) == 1
    assert [ev.stage for ev in events if ev.stage][-1] == "scale 3 of 3 (96x72 px)"
    assert {ev.stage.split(" (")[0] for ev in events} == {"scale 1 of 3", "scale 2 of 3", "scale 3 of 3"}
    res = run.result()
    assert res.image.shape == (1, 3, 72, 96)
    steps = [h["step"] for h in res.history]
    assert steps == sorted(steps) and steps[-1] == total and [h["scale"] for h in res.history][-1] == 3
    report = run.report()
    assert report["scales"] == [{"size": 48, "steps": 2}, {"size": 68, "steps": 2}, {"size": 96, "steps": 2}]
    # each scale started from the previous scale's result, upsampled, plus the content's detail
    # that upsampling loses (content at 68 px minus the 48 px content upsampled)
    first, second = run.scale_results[0], run.scale_results[1]

    def up(x):
        return torch.nn.functional.interpolate(x, size=(51, 68), mode="bicubic", align_corners=False,
                                               antialias=True).clamp(0, 1)

    c48, c68 = (images.to_tensor(images.resize_long_side(_pil(picture(72, 96)), n)) for n in (48, 68))
    start = (up(first.image) + c68 - up(c48)).clamp(0, 1)
    fresh = StyleTransfer(vgg19, c68, images.to_tensor(images.resize_long_side(_pil(stripes(64, 64)), 68)),
                          StyleSettings.from_dict({**s.to_dict(), "size": 68, "steps": 1, "scales": 1}),
                          init_image=start)
    blurred = StyleTransfer(vgg19, c68, fresh.targets, fresh.settings, init_image=up(first.image))
    assert second.history[0]["total"] == pytest.approx(fresh.losses(fresh.x)["total"].item(), rel=1e-4)
    assert second.history[0]["total"] != pytest.approx(blurred.losses(blurred.x)["total"].item(), rel=1e-4)


def test_init_image_is_the_starting_point(vgg19, images64):
    content, st = images64
    x0 = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    run = StyleTransfer(vgg19, content, st, _settings(), init_image=x0)
    assert torch.equal(run.x.detach(), x0)
    with pytest.raises(ValueError, match="starting image"):
        StyleTransfer(vgg19, content, st, _settings(), init_image=x0[..., :32])


def test_stopping_during_a_smaller_scale_still_gives_the_final_size(vgg19):
    s = _settings(size=96, steps=3, scales=2, start_size=48)
    run = control.ControlledTransfer(vgg19, _pil(picture(72, 96)), [(_pil(stripes(64, 64)), 1.0)], s)
    it = iter(run)
    for _ in range(2):
        next(it)
    it.close()  # what a Stop on the page does to the generator
    res = run.result()
    assert res.image.shape == (1, 3, 72, 96)
    assert res.history and res.history[-1]["step"] <= 2 and res.history[-1]["scale"] == 1


def test_guided_targets_need_a_plain_single_scale_run(vgg19):
    with pytest.raises(ValueError, match="one scale"):
        control.ControlledTransfer(vgg19, _pil(picture(64, 64)), [(_pil(stripes(64, 64)), 1.0)],
                                   _settings(scales=2, start_size=32), targets={})


def test_masks_need_exactly_one_style_image(vgg19):
    st = _pil(stripes(64, 64))
    with pytest.raises(ValueError, match="one style image"):
        control.ControlledTransfer(vgg19, _pil(picture(64, 64)), [(st, 0.5), (st, 0.5)], _settings(masks="auto"))


# ----------------------------------------------------------------------------- CLI

def test_cli_preserve_color_and_scales(tmp_path, capsys):
    out, rep = tmp_path / "o.png", tmp_path / "r.json"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:astronaut", "--untrained", "--size", "64",
                         "--steps", "2", "--optimizer", "adam", "--start-size", "32", "--preserve-color",
                         "luminance", "-o", out, "--report", rep, "--quiet")
    assert rc == 0, err
    assert "luminance colour preservation" in err and "3 scales 32 px x2 -> 45 px x2 -> 64 px x2" in err
    from PIL import Image

    assert Image.open(out).size == (64, 64)
    r = json.loads(rep.read_text())
    assert r["settings"]["preserve_color"] == "luminance" and r["settings"]["scales"] == 0
    assert [x["size"] for x in r["scales"]] == [32, 45, 64]
    assert r["steps_done"] == 6 and "wrote" in err and "after 6 steps" in err
    # the recipe replays the controls
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:astronaut", "--untrained", "--recipe", rep,
                         "-o", tmp_path / "again.png", "--quiet")
    assert rc == 0 and "3 scales" in err and "luminance colour preservation" in err


@pytest.mark.parametrize("flags, msg", [
    (["--content-mask", "m.png"], "need both --content-mask"),
    (["--auto-masks", "3", "--segmentation-masks"], "one source of semantic masks"),
    (["--auto-masks", "12"], "mask_k"),
    (["--scales", "3", "--start-size", "64"], "start_size"),
    (["--scales", "2", "--start-size", "32"], "use a start size of 48 px or more"),  # coffee: 600x400
])
def test_cli_control_errors_are_one_line(tmp_path, capsys, flags, msg):
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:coffee", "--untrained", "--size", "64",
                         "--steps", "1", "-o", tmp_path / "o.png", *flags)
    assert rc == 2
    assert msg in error_line(err)
    assert not (tmp_path / "o.png").exists()


# ----------------------------------------------------------------------------- photorealism, regions

def test_photorealism_weight_keeps_the_result_locally_affine_in_the_content(vgg19):
    """With lambda > 0 the optimizer also lowers L_m, so the result's Matting-Laplacian energy
    ends far below an unregularized run's (same seed, steps and Adam settings; with relative
    losses L_m is per pixel (about 0.25 here) and beta is 1e4, so lambda = 4e5 makes it count
    against the style term of this untrained network at 64 px)."""
    c, s = _pil(picture(64, 64)), _pil(stripes(64, 64))
    energy = {}
    for lam in (0.0, 4e5):
        run = control.ControlledTransfer(vgg19, c, [(s, 1.0)], _settings(steps=5, photo_lambda=lam))
        list(run)
        res = run.result()
        energy[lam] = float(matting.MattingLaplacian(run.content_final[0]).loss(res.image))
        if lam:
            assert res.history[-1]["photo"] == pytest.approx(energy[lam] / (64 * 64), rel=1e-3)  # per pixel
            assert "photo" in res.final_losses and "size" not in res.final_losses
    assert energy[4e5] < 0.5 * energy[0.0]


def _halves(h, w, left, right):
    t = torch.zeros(1, 3, h, w)
    t[..., : w // 2] = torch.tensor(left, dtype=torch.float32).view(1, 3, 1, 1) / 255
    t[..., w // 2:] = torch.tensor(right, dtype=torch.float32).view(1, 3, 1, 1) / 255
    return outputs.png_bytes(images.to_pil(t))


def test_mask_files_give_one_gram_per_shared_region(vgg19):
    content, st_img = _pil(picture(64, 64)), _pil(stripes(64, 64))
    masks = control.MaskInputs(_halves(64, 64, (255, 0, 0), (0, 0, 255)),
                               _halves(64, 64, (0, 0, 255), (0, 255, 0)))  # only blue is shared
    run = control.ControlledTransfer(vgg19, content, [(st_img, 1.0)], _settings(masks="files"), mask_inputs=masks)
    assert run.regions.names == ["#0000ff"] and any("only" in n for n in run.notes)
    list(run)
    t = run.targets["relu1_1"]
    assert t.shape[0] == 1 and run.layer_guides["relu1_1"].masks.shape[0] == 1
    # the content's blue region is its right half; the style's is its left half
    assert float(run.layer_guides["relu1_1"].masks[0, :, :28].max()) == 0.0
    full = gatys.style_targets(vgg19, images.to_tensor(st_img), ["relu1_1"])["relu1_1"]
    assert not torch.allclose(t[0], full, rtol=1e-2)


def test_auto_masks_run_end_to_end_with_the_photorealism_term(vgg19):
    run = control.ControlledTransfer(vgg19, _pil(picture(64, 64)), [(_pil(stripes(64, 64)), 1.0)],
                                     _settings(masks="auto", mask_k=2, photo_lambda=1.0, scales=2, start_size=48))
    events = list(run)
    res = run.result()
    assert res.image.shape == (1, 3, 64, 64) and events[-1].done
    assert "photo" in res.history[-1] and len(run.regions.names) >= 1
    report = run.report()
    assert report["regions"] == run.regions.names and report["settings"]["masks"] == "auto"


def test_cli_mask_files_and_photo_lambda(tmp_path, capsys):
    cm, sm = tmp_path / "cm.png", tmp_path / "sm.png"
    cm.write_bytes(_halves(64, 64, (255, 0, 0), (0, 0, 255)))
    sm.write_bytes(_halves(64, 64, (255, 0, 0), (0, 0, 255)))
    out, rep = tmp_path / "o.png", tmp_path / "r.json"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:gravel", "--untrained", "--size", "64",
                         "--steps", "2", "--content-mask", cm, "--style-mask", sm, "--photo-lambda", "1",
                         "-o", out, "--report", rep, "--quiet")
    assert rc == 0, err
    assert "2 semantic regions from files" in err and "photorealism lambda 1" in err
    r = json.loads(rep.read_text())
    assert sorted(r["regions"]) == ["#0000ff", "#ff0000"] and r["inputs"]["content_mask"] == str(cm)
    assert "photo" in r["final_losses"]
    # a recipe with mask-file regions needs the files again
    rc, _, err = run_cli(capsys, "stylize", "--recipe", rep, "--untrained", "-o", tmp_path / "b.png")
    assert rc == 2 and "--content-mask" in error_line(err)


def test_cli_preserve_color_linear(tmp_path, capsys):
    rep = tmp_path / "r.json"
    rc, _, err = run_cli(capsys, "stylize", "sample:astronaut", "sample:chelsea", "--untrained", "--size", "64",
                         "--steps", "1", "--optimizer", "adam", "--preserve-color", "linear",
                         "-o", tmp_path / "o.png", "--report", rep, "--quiet")
    assert rc == 0, err
    assert "linear colour preservation" in err
    assert json.loads(rep.read_text())["settings"]["preserve_color"] == "linear"
