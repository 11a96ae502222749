"""Gatys style transfer: the maths on tiny tensors, and the loop's behaviour on 64 px images
with untrained weights."""

import math

import pytest
import torch

from explorer.style import color
from explorer.app import ui
from explorer.nets.models import UnknownLayerError
from explorer.optim.parameterizations import OffsetImage, fourier_scale
from explorer.core.progress import ProgressEvent
from explorer.core.recipes import migrate
from explorer.style.transfer import FIRST_STEP_MOVE, StyleTransfer, run_style_transfer
from explorer.style import gatys
from explorer.style.gatys import style_targets
from explorer.style.settings import StyleSettings
from explorer.optim.losses import content_loss, gram_matrix, style_layer_loss, style_loss, total_variation
from tests.helpers import needs_native_bf16

# ----------------------------------------------------------------------------- maths


def test_gram_matrix_eq3_by_hand():
    # N = 2 channels, M = 2 positions: F = [[1, 2], [3, 4]]
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]])
    torch.testing.assert_close(gram_matrix(f)[0], expected)
    torch.testing.assert_close(gram_matrix(f, normalize=True)[0], expected / 2)
    assert gram_matrix(f.to(torch.bfloat16)).dtype == torch.float32


def test_content_loss_eq1_by_hand():
    f = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    assert content_loss(f, torch.zeros_like(f)).item() == pytest.approx(7.0)  # 1/2 (1 + 4 + 9)


def test_style_layer_loss_is_eq4_with_unnormalized_grams():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    s = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(1, 2, 1, 2)
    g, a = gram_matrix(f)[0], gram_matrix(s)[0]
    n, m = 2, 2
    expected = ((g - a) ** 2).sum() / (4 * n**2 * m**2)  # eq. (4) as printed
    got = style_layer_loss(f, gram_matrix(s, normalize=True)[0])
    assert got.item() == pytest.approx(expected.item())
    # G = [[5, 11], [11, 25]], A = [[1, 0], [0, 1]]: sum of squares = 16 + 121 + 121 + 576 = 834
    assert got.item() == pytest.approx(834 / 64)


def test_style_loss_eq5_weights_layers():
    e = {"a": torch.tensor([2.0]), "b": torch.tensor([10.0])}
    assert style_loss(e, {"a": 0.5, "b": 0.1}).item() == pytest.approx(2.0)


def test_total_variation_by_hand():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)
    # one position: dx = 1, dy = 2 -> (1 + 4)^(beta/2)
    assert total_variation(x, beta=2.0).item() == pytest.approx(5.0)
    assert total_variation(x, beta=1.0).item() == pytest.approx(math.sqrt(5.0), rel=1e-6)
    flat = torch.ones(1, 3, 8, 8, requires_grad=True)
    total_variation(flat, beta=1.0).backward()
    assert torch.isfinite(flat.grad).all()  # beta < 2 stays differentiable on flat images


# ----------------------------------------------------------------------------- settings


def test_settings_validate_with_one_line_messages():
    for bad in ({"steps": 0}, {"optimizer": "sgd"}, {"size": 10}, {"style_weight": -1.0},
                {"lr": 0.0}, {"style_layer_weights": (1.0,)}, {"tv_weight": float("nan")}):
        with pytest.raises(ValueError) as exc:
            StyleSettings(**bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="unknown setting"):
        StyleSettings.from_dict({"stpes": 3})
    s = StyleSettings(steps=7, style_layers="relu1_1,relu2_1", style_layer_weights="0.25,0.75")
    assert s.layer_weights == {"relu1_1": 0.25, "relu2_1": 0.75}
    assert StyleSettings.from_dict(s.to_dict()) == s


# ----------------------------------------------------------------------------- the loop


def _settings(**kw):
    base = dict(size=64, steps=20, precision="fp32", preview_every=5)
    base.update(kw)
    return StyleSettings(**base)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_style_and_total_loss_fall_over_20_steps(vgg19, images64, optimizer):
    content, style = images64
    r = run_style_transfer(vgg19, content, style, _settings(optimizer=optimizer))
    first, last = r.history[0], r.history[-1]
    assert len(r.history) == 21 and r.stopped is None  # steps 0 (start) to 20
    assert last["style"] < 0.7 * first["style"]
    assert last["total"] < first["total"]
    assert r.image.shape == content.shape and 0 <= r.image.min() and r.image.max() <= 1
    assert [s for s, _ in r.snapshots] == [5, 10, 15, 20]


def test_content_only_run_reconstructs_the_content_image(vgg19, images64):
    # With the style weight at 0 and a shallow content layer, L-BFGS from white noise must
    # recover the image itself (with untrained weights deep layers lose too much detail).
    content, _ = images64
    s = _settings(steps=30, style_weight=0.0, style_layers=(), init="noise", content_layer="relu2_1")
    r = run_style_transfer(vgg19, content, None, s)
    noise = torch.rand(content.shape, generator=torch.Generator().manual_seed(0))
    assert ((noise - content) ** 2).mean() > 0.1
    assert ((r.image - content) ** 2).mean() < 0.01


def test_same_seed_gives_the_same_image(vgg19, images64):
    content, style = images64
    a = run_style_transfer(vgg19, content, style, _settings(steps=5, init="noise", seed=3))
    b = run_style_transfer(vgg19, content, style, _settings(steps=5, init="noise", seed=3))
    c = run_style_transfer(vgg19, content, style, _settings(steps=5, init="noise", seed=4))
    assert torch.equal(a.image, b.image)
    assert not torch.equal(a.image, c.image)


@needs_native_bf16  # about bf16 itself; emulated bf16 on an AVX2-only CPU is slow
def test_mixed_precision_keeps_losses_float32_and_close_to_fp32(vgg19, images64):
    content, style = images64
    run = StyleTransfer(vgg19, content, style, _settings(steps=1, precision="bf16"))
    terms = run.losses(run.x)
    assert all(terms[k].dtype == torch.float32 for k in ("content", "style", "tv", "total"))
    assert all(v.dtype == torch.float32 for v in run.targets.values())
    fp32 = StyleTransfer(vgg19, content, style, _settings(steps=1)).losses(run.x)
    assert terms["style"].item() == pytest.approx(fp32["style"].item(), rel=0.1)


def test_unknown_layer_is_rejected_before_running(vgg19, images64):
    content, style = images64
    with pytest.raises(UnknownLayerError, match="relu4_9"):
        StyleTransfer(vgg19, content, style, _settings(content_layer="relu4_9"))


def test_style_targets_blend_normalizes_weights_and_sizes(vgg19, images64):
    content, style = images64
    layers = ["relu1_1", "relu3_1"]
    one = style_targets(vgg19, style, layers)
    same = style_targets(vgg19, [(style, 0.7), (style, 0.3)], layers)
    for k in layers:
        torch.testing.assert_close(one[k], same[k])
    mix = style_targets(vgg19, [(style, 3.0), (content, 1.0)], layers)
    c = style_targets(vgg19, content, layers)
    torch.testing.assert_close(mix["relu1_1"], 0.75 * one["relu1_1"] + 0.25 * c["relu1_1"])
    # a tiled (larger) copy of a periodic pattern has nearly the same normalized Gram
    big = style_targets(vgg19, style.repeat(1, 1, 2, 2), ["relu1_1"])["relu1_1"]
    # (borders differ, so compare in relative Frobenius norm; unnormalized Grams differ 4x)
    assert (big - one["relu1_1"]).norm() < 0.1 * one["relu1_1"].norm()


class _NanAfter(torch.nn.Module):
    """Wraps a FeatureNet; from the k-th call on, its features are NaN."""

    def __init__(self, net, k):
        super().__init__()
        self.net, self.k, self.calls = net, k, 0
        self.weights, self.spec = net.weights, net.spec

    @property
    def device(self):
        return self.net.device

    def check_layers(self, layers):
        return self.net.check_layers(layers)

    def features(self, x, layers, pooling="max", conv="direct"):
        self.calls += 1
        out = self.net.features(x, layers, pooling=pooling, conv=conv)
        if self.calls >= self.k:
            out = {n: v * float("nan") for n, v in out.items()}
        return out


def test_nan_loss_stops_the_run_and_keeps_the_last_finite_image(vgg19, images64):
    content, style = images64
    # calls 1-2 compute the style and content targets; images 0-2 are finite; image 3 is NaN
    wrapped = _NanAfter(vgg19, k=6)
    run = StyleTransfer(wrapped, content, style, _settings(steps=10, optimizer="adam"))
    events = list(run)
    result = run.result()
    assert events[-1].done and "NaN" in events[-1].message and "step 3" in events[-1].message
    assert len(result.history) == 3 and result.stopped
    assert torch.isfinite(result.image).all()
    assert torch.equal(result.image, run.last_good.cpu().clamp(0, 1))
    assert result.history[-1]["step"] == 2  # the losses shown are those of the image kept


def test_final_losses_belong_to_the_returned_image(vgg19, images64):
    content, style = images64
    run = StyleTransfer(vgg19, content, style, _settings(steps=4, precision="fp32"))
    events = list(run)
    r = run.result()
    assert [e.step for e in events] == [0, 1, 2, 3, 4] and events[-1].done
    with torch.no_grad():
        again = run.losses(r.image.to(run.device))
    assert r.final_losses["total"] == pytest.approx(float(again["total"].sum()), rel=1e-5)
    assert torch.equal(events[-1].preview, r.image)


def test_gram_backward_matches_autograd_in_both_memory_formats():
    from explorer.optim.losses import _Gram

    for fmt in (torch.contiguous_format, torch.channels_last):
        f = torch.randn(2, 5, 4, 3, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_(True)
        assert torch.autograd.gradcheck(_Gram.apply, (f,))
        ref = torch.bmm(f.reshape(2, 5, 12), f.reshape(2, 5, 12).transpose(1, 2))
        torch.testing.assert_close(_Gram.apply(f), ref)


def test_report_has_what_the_cli_and_page_need(vgg19, images64):
    content, style = images64
    r = run_style_transfer(vgg19, content, style, _settings(steps=2))
    rep = r.report()
    for key in ("settings", "weights", "device", "precision", "seconds", "history"):
        assert key in rep
    assert rep["weights"] == "untrained"
    assert set(rep["history"][0]) >= {"step", "content", "style", "tv", "total"}


def test_init_from_style_and_noise(vgg19, images64):
    content, style = images64
    run = StyleTransfer(vgg19, content, style, _settings(steps=1, init="style"))
    torch.testing.assert_close(run.x.detach(), style, atol=1e-5, rtol=0)
    run = StyleTransfer(vgg19, content, style, _settings(steps=1, init="noise", seed=1))
    assert not torch.allclose(run.x.detach(), content)


@pytest.mark.parametrize("parameterization, mean_diff", [("pixel", 1e-3), ("fourier", 5e-3)])
def test_a_batch_of_two_contents_follows_the_two_single_runs(vgg19, parameterization, mean_diff):
    """Batched optimization (Adam, per-image seeds and loss weights) gives each image the run it
    would get alone. Tolerance: the batched convolutions round differently, and Adam's update
    (g / sqrt(v)) is about lr * sign(g) in its first steps, so where a gradient component is
    near 0 a rounding difference can move that pixel by up to lr; losses agree closely. In the
    Fourier parameterization such a component is a spatial frequency, whose flip moves every
    pixel a little, hence the larger mean difference. The convolutions run direct: Winograd's
    rounding (about 1e-5 relative against 1e-7) flips more max-pooling switches between the
    batched and the single forward pass, which is rounding, not a batching bug
    (test_winograd.py checks Winograd batches against single images)."""
    from tests.helpers import picture, stripes

    contents = torch.cat([picture(64, 64), 0.5 * stripes(64, 64) + 0.2])
    style = stripes(64, 64)
    settings = StyleSettings(size=64, steps=5, optimizer="adam", precision="fp32", init="noise",
                             parameterization=parameterization, conv_algorithm="direct")
    alphas, betas = torch.tensor([1.0, 2.0]), torch.tensor([1e6, 1e5])
    objective = gatys.gatys_objective(vgg19, contents, settings, gatys.style_targets(vgg19, style, settings.style_layers),
                                      alpha=alphas, beta=betas)
    run = StyleTransfer(vgg19, contents, style, settings, objective=objective, seeds=[3, 4])
    for _ in run:
        pass
    batched = run.results([{"content_weight": float(a), "style_weight": float(b)} for a, b in zip(alphas, betas)])
    assert len(batched) == 2 and batched[0].image.shape == (1, 3, 64, 64)
    for i in range(2):
        single_settings = StyleSettings.from_dict({**settings.to_dict(), "seed": 3 + i,
                                                   "content_weight": float(alphas[i]), "style_weight": float(betas[i])})
        single = run_style_transfer(vgg19, contents[i:i + 1], style, single_settings)
        assert batched[i].settings == single_settings
        for a, b in zip(batched[i].history, single.history):
            assert a["total"] == pytest.approx(b["total"], rel=1e-3)
            assert a["content"] == pytest.approx(b["content"], rel=1e-3)
        diff = (batched[i].image - single.image).abs()
        assert float(diff.mean()) < mean_diff and float(diff.max()) <= 5 * settings.effective_lr
    # the batch's own history rows are the sums over its images
    assert run.history[-1]["total"] == pytest.approx(sum(r.history[-1]["total"] for r in batched), rel=1e-6)


# ----------------------------------------------------------------------------- starts, parameterizations, steps

def test_history_row_k_is_the_image_after_k_steps(vgg19, images64):
    """Row k holds the losses of the image the optimizer held after k updates (row 0: the start),
    not of a point the line search tried and dropped. Checked against the variable itself: after
    the event of step j arrives, the variable is already image j + 1."""
    content, style = images64
    run = StyleTransfer(vgg19, content, style, _settings(steps=5, optimizer="lbfgs"))
    start = color.histogram_start(content, [(style, 1.0)])
    after = {}
    for ev in run:
        if not ev.done:
            after[ev.step + 1] = run.x.detach().clone()
    assert run.history[0]["total"] == pytest.approx(run.losses(start)["total"].item(), rel=1e-5)
    for k, x in after.items():
        assert run.history[k]["total"] == pytest.approx(run.losses(x)["total"].item(), rel=1e-5), k
    assert [h["step"] for h in run.history] == list(range(6))


def test_histogram_start_gives_the_content_the_style_s_colours():
    """Each channel of the start has the style's value distribution (its quantiles) while the
    content's order of brightness is kept (histogram matching is monotone)."""
    g = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, 40, 50, generator=g)
    style = torch.rand(1, 3, 30, 30, generator=g) ** 3  # darker, skewed
    out = color.histogram_start(content, [(style, 1.0)])
    assert out.shape == content.shape and out.dtype == torch.float32 and 0 <= float(out.min()) <= float(out.max()) <= 1
    q = torch.tensor([0.1, 0.5, 0.9])
    for c in range(3):
        assert torch.allclose(out[0, c].flatten().quantile(q), style[0, c].flatten().quantile(q), atol=0.03)
        order = content[0, c].flatten().argsort()
        assert bool((out[0, c].flatten()[order].diff() >= 0).all())  # brighter stays brighter
    # a blend with all the weight on one style is that style alone; weights must be positive
    other = torch.ones(1, 3, 10, 10)
    torch.testing.assert_close(color.histogram_start(content, [(style, 1.0), (other, 0.0)]), out)
    with pytest.raises(ValueError, match="sum to a positive number"):
        color.histogram_start(content, [(style, 0.0)])
    with pytest.raises(ValueError, match="needs a style image"):
        color.histogram_start(content, [])


def test_the_default_start_is_the_histogram_start_and_targets_alone_fall_back_to_content(vgg19, images64):
    content, style = images64
    run = StyleTransfer(vgg19, content, style, _settings(steps=1))
    torch.testing.assert_close(run.x.detach(), color.histogram_start(content, [(style, 1.0)]))
    assert run.notes == []
    targets = style_targets(vgg19, style, StyleSettings().style_layers)
    run = StyleTransfer(vgg19, content, targets, _settings(steps=1))  # precomputed Gram matrices, no picture
    torch.testing.assert_close(run.x.detach(), content)
    assert len(run.notes) == 1 and "content image" in run.notes[0]


def test_fourier_offset_starts_at_the_start_and_is_affine_in_its_spectrum():
    g = torch.Generator().manual_seed(1)
    start = torch.rand(2, 3, 24, 31, generator=g)
    p = OffsetImage(start, "fourier")
    assert p.raw.shape == (2, 3, 24, 16, 2) and torch.equal(p(), start)
    d1, d2 = torch.randn(p.raw.shape, generator=g), torch.randn(p.raw.shape, generator=g)
    with torch.no_grad():
        p.raw.copy_(d1 + d2)
    torch.testing.assert_close(p(), start + p.offset(d1) + p.offset(d2), atol=1e-5, rtol=0)
    # low frequencies weigh more, by 1/f^0.5: a unit coefficient at frequency f moves the image by
    # scale(f) / sqrt(HW) (twice that but for the constant, whose spectrum has no mirror image)
    dc, hi = torch.zeros(p.raw.shape), torch.zeros(p.raw.shape)
    dc[0, 0, 0, 0, 0], hi[0, 0, 12, 15, 0] = 1.0, 1.0
    scale = fourier_scale(24, 31, 0.5)
    ratio = float(p.offset(dc).abs().max()) / float(p.offset(hi).abs().max())
    assert ratio == pytest.approx(float(scale[0, 0]) / (2 * float(scale[12, 15])), rel=1e-3) and ratio > 2
    q = OffsetImage(start, "pixel")
    assert torch.equal(q(), start) and q.raw.is_contiguous() and torch.equal(q.offset(d1[..., 0]), d1[..., 0])
    with pytest.raises(ValueError, match="parameterization"):
        OffsetImage(start, "wavelet")
    with pytest.raises(ValueError, match="shape"):
        OffsetImage(start[0], "pixel")


@pytest.mark.parametrize("parameterization", ["pixel", "fourier"])
def test_the_first_lbfgs_step_moves_the_image_by_the_set_amount(vgg19, images64, parameterization):
    """torch's L-BFGS would first step min(1, 1/|g|_1) along -g: here the learning rate of that
    step makes its largest change of a pixel FIRST_STEP_MOVE (before any line search)."""
    content, style = images64
    run = StyleTransfer(vgg19, content, style, _settings(steps=1, parameterization=parameterization))
    x = run.image_param()
    run.losses(x)["total"].sum().backward()
    g = run.image_param.raw.grad
    lr = run._first_step_lr(g)
    move = lr * min(1.0, 1.0 / float(g.abs().sum())) * float(run.image_param.offset(g).abs().max())
    assert move == pytest.approx(FIRST_STEP_MOVE, rel=1e-5)
    assert run._first_step_lr(None) == run.settings.effective_lr


def test_recipes_from_before_the_fourier_offset_replay_as_they_ran():
    old = StyleSettings().to_dict()
    del old["parameterization"], old["conv_algorithm"]
    replay = StyleSettings.from_dict(migrate({"settings": old}, "stylize")["settings"])
    assert (replay.parameterization, replay.conv_algorithm) == ("pixel", "direct")
    assert StyleSettings.from_dict(StyleSettings().to_dict()) == StyleSettings()
    partial = migrate({"settings": {"steps": 3}}, "stylize")["settings"]
    assert StyleSettings.from_dict(partial).parameterization == "auto"  # a partial recipe: today's defaults


def test_each_parameterization_and_conv_algorithm_lowers_the_loss(vgg19, images64):
    content, style = images64
    for parameterization in ("pixel", "fourier"):
        for conv in ("direct", "auto", "winograd"):
            r = run_style_transfer(vgg19, content, style, _settings(steps=4, parameterization=parameterization,
                                                                     conv_algorithm=conv))
            assert r.history[-1]["total"] < r.history[0]["total"], (parameterization, conv)
            assert r.settings.conv_algorithm == conv and r.image.shape == content.shape


def test_the_progress_line_shows_seconds_per_step():
    assert ui.progress_text(ProgressEvent(0, 100, 0.4)) == "Step 0 of 100 · 0.4 s"
    assert ui.progress_text(ProgressEvent(20, 100, 5.0)) == "Step 20 of 100 · 5.0 s · 0.25 s/step"
    assert "scale 1 of 2" in ui.progress_text(ProgressEvent(4, 10, 1.0, stage="scale 1 of 2 (64x48 px)"))


def test_auto_parameterization_is_fourier_for_lbfgs_and_pixels_for_adam(vgg19, images64):
    content, style = images64
    assert StyleSettings().image_parameterization == "fourier"
    assert StyleSettings(optimizer="adam").image_parameterization == "pixel"
    assert StyleSettings(optimizer="adam", parameterization="fourier").image_parameterization == "fourier"
    assert StyleSettings(parameterization="pixel").image_parameterization == "pixel"
    assert StyleTransfer(vgg19, content, style, _settings(optimizer="adam", steps=1)).image_param.kind == "pixel"
    assert StyleTransfer(vgg19, content, style, _settings(steps=1)).image_param.kind == "fourier"


def test_the_lbfgs_memory_the_pages_name_is_the_one_torch_is_given(vgg19, images64, monkeypatch):
    from explorer.style import transfer

    seen = {}
    real = torch.optim.LBFGS

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "LBFGS", spy)
    content, style = images64
    run_style_transfer(vgg19, content, style, _settings(steps=1, optimizer="lbfgs"))
    assert seen["history_size"] == transfer.LBFGS_HISTORY


def test_time_estimate_sums_steps_times_pixels_over_the_scales():
    from explorer.style import settings as S

    s = S.StyleSettings(size=256, steps=100, scales=3, start_size=64)
    plan = s.scale_plan()
    assert S.step_units(s) == pytest.approx(sum(k * (sz / 256) ** 2 for sz, k in plan))
    one = S.StyleSettings(size=256, steps=100)
    assert S.step_units(one) == 100
    low, high, basis = S.estimate_seconds(one)
    assert basis == "reference" and (low, high) == pytest.approx((100 * S.REFERENCE_STEP_SECONDS[0],
                                                                  100 * S.REFERENCE_STEP_SECONDS[1]))
    measured = {"settings": S.StyleSettings(size=128, steps=10).to_dict(), "seconds": 5.0}
    low, high, basis = S.estimate_seconds(s, measured)
    per = 5.0 / S.step_units(S.StyleSettings(size=128, steps=10))  # seconds per 256 px step of that run
    assert basis == "measured" and low == high == pytest.approx(per * S.step_units(s))
    other = {**measured, "settings": {**measured["settings"], "model": "vgg16"}}
    assert S.estimate_seconds(s, other)[2] == "reference"


def test_balance_errors_are_the_plain_relative_gatys_terms(vgg19, images64):
    """The score the default beta is calibrated with: ||F - P||^2 / ||P||^2 at relu4_2 and
    sum_l w_l ||G_l - A_l||^2 / ||A_l||^2 (position-normalized Grams, w_l = 1/5), by hand from the
    features; 0 and the style's own Gram distance for the content image, 0 style error for the style."""
    content, style = images64
    image = (0.5 * content + 0.5 * style).clamp(0, 1)
    s = StyleSettings()
    c_err, s_err = gatys.balance_errors(vgg19, torch.cat([image, content]), content, style)
    assert c_err.shape == s_err.shape == (2,)
    with torch.no_grad():
        f = vgg19.features(image, [*s.style_layers, s.content_layer])
        p = vgg19.features(content, [s.content_layer])[s.content_layer]
        fs = vgg19.features(style, s.style_layers)
    assert float(c_err[0]) == pytest.approx(float((f[s.content_layer] - p).pow(2).sum() / p.pow(2).sum()), rel=1e-4)
    by_hand = 0.0
    for layer in s.style_layers:
        g, a = gram_matrix(f[layer], normalize=True), gram_matrix(fs[layer], normalize=True)
        by_hand += float((g - a).pow(2).sum() / a.pow(2).sum()) / len(s.style_layers)
    assert float(s_err[0]) == pytest.approx(by_hand, rel=1e-4)
    assert float(c_err[1]) == pytest.approx(0.0, abs=1e-9) and float(s_err[1]) > 0.0
    assert float(gatys.balance_errors(vgg19, style, content, style)[1][0]) == pytest.approx(0.0, abs=1e-6)
