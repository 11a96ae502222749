"""Captum heatmaps of style objectives (explorer.saliency.attribution): objectives, every method's
output, the planted-texture property, occlusion batching, and hook safety of the shared model.

Untrained VGG19 (seed 0) on the CPU with 48-64 px images. The planted image is a flat gray
field with one quadrant of random texture: the style energy sum_l ||G_l||^2 lives in textured
regions (a flat region gives the same small feature vector everywhere, while texture excites
the random filters strongly), and that holds for an untrained network too, so most saliency and
occlusion mass must fall in the textured quadrant.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from explorer.saliency import attribution as A
from explorer.saliency import methods as M
from explorer.saliency import objectives as SO
from explorer.optim import objectives
from explorer.optim.losses import gram_matrix, style_energy as energy, style_layer_loss
from tests.helpers import picture, stripes


def style_energy(model, x, layers=None, weights=None):
    """The style objective as Captum's forward function evaluates it (the network's style layers
    by default)."""
    return SO.objective_function(model, "style", layers=layers or model.spec.style_layers, weights=weights)(x)


def planted(n: int = 64, quadrant: tuple[int, int] = (0, 0), seed: int = 1) -> torch.Tensor:
    """(1, 3, n, n): flat gray (0.5) with uniform random texture in one quadrant."""
    x = torch.full((1, 3, n, n), 0.5)
    h = n // 2
    y0, x0 = quadrant[0] * h, quadrant[1] * h
    x[..., y0:y0 + h, x0:x0 + h] = torch.rand((1, 3, h, h), generator=torch.Generator().manual_seed(seed))
    return x


def quadrant_share(values: np.ndarray, quadrant: tuple[int, int]) -> float:
    h = values.shape[0] // 2
    y0, x0 = quadrant[0] * h, quadrant[1] * h
    return float(values[y0:y0 + h, x0:x0 + h].sum() / values.sum())


# --------------------------------------------------------------------------- objectives

def test_style_energy_is_eq5_against_a_zero_target(vgg19):
    x = torch.cat([picture(48, 64), stripes(48, 64)])
    layers = ("relu1_1", "conv3_1", "relu5_1")
    weights = (0.2, 0.3, 0.5)
    feats = vgg19.features(x, layers)
    expected = sum(w * style_layer_loss(feats[l], torch.zeros(feats[l].shape[1], feats[l].shape[1]))
                   for w, l in zip(weights, layers))
    got = style_energy(vgg19, x, layers, weights)
    assert got.shape == (2,) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)
    # and by hand for one layer: ||G||^2 / (4 N^2 M^2) with the unnormalized Gram
    f = feats["relu1_1"][0]
    n, m = f.shape[0], f.shape[1] * f.shape[2]
    by_hand = gram_matrix(f).double().pow(2).sum() / (4 * n * n * m * m)
    torch.testing.assert_close(style_energy(vgg19, x[:1], ["relu1_1"])[0].double(), by_hand, rtol=1e-5, atol=0)


def test_layer_weights_by_name_mean_the_same_in_every_style_energy(vgg19):
    """Captum's forward function, the objective and the energy itself read w_l one way: a dict
    by layer name is the aligned list, and bad weights get the same one line at once."""
    x = picture(48, 64)
    layers = ("relu1_1", "relu3_1")
    by_list = style_energy(vgg19, x, layers, [0.3, 2.0])
    assert torch.equal(style_energy(vgg19, x, layers, {"relu3_1": 2.0, "relu1_1": 0.3}), by_list)
    assert torch.equal(energy(vgg19.features(x, layers), layers, {"relu1_1": 0.3, "relu3_1": 2.0}), by_list)
    for bad, message in (([1.0], "1 layer weights for 2 style layers"),
                         ({"relu1_1": 1.0}, "no layer weight for style layer relu3_1")):
        with pytest.raises(ValueError, match=message):
            objectives.style_energy(layers, bad)
        with pytest.raises(ValueError, match=message):
            SO.objective_function(vgg19, "style", layers=layers, weights=bad)


@pytest.mark.parametrize("text, kind, layer, channel", [
    ("style", "style", None, None), ("class", "class", None, None),
    ("layer:relu3_1", "layer", "relu3_1", None), ("channel:conv2_1:7", "channel", "conv2_1", 7)])
def test_parse_objective(text, kind, layer, channel):
    spec = SO.parse_objective(text)
    assert (spec.kind, spec.layer, spec.channel) == (kind, layer, channel)
    assert str(spec) == text


@pytest.mark.parametrize("text", ["", "styles", "layer:", "channel:relu1_1", "channel:relu1_1:x", "channel:relu1_1:-1"])
def test_parse_objective_rejects_with_one_line(text):
    with pytest.raises(ValueError, match="objective must be") as e:
        SO.parse_objective(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("objective, message", [
    ("layer:relu9_9", "no layer"), ("channel:relu1_1:64", "has 64 channels"), ("layer:fc7", "no spatial maps")])
def test_bad_objective_layers_are_refused_before_any_work(vgg19, objective, message):
    with pytest.raises(ValueError, match=message):
        A.AttributionRun(vgg19, picture(64, 64), A.AttributionSettings(objective=objective))


def test_channel_objective_is_the_channel_mean(vgg19):
    x = picture(64, 64)
    f = SO.objective_function(vgg19, SO.parse_objective("channel:relu2_1:5"))
    expected = vgg19.features(x, ["relu2_1"])["relu2_1"][0, 5].mean()
    torch.testing.assert_close(f(x)[0], expected)


# --------------------------------------------------------------------------- every method

@pytest.mark.parametrize("method", A.METHODS)
def test_every_method_gives_a_finite_map_of_the_input_size(vgg19, method):
    x = picture(48, 64)  # not square: rows and columns must not be swapped
    s = A.AttributionSettings(method=method, size=64, window=16, stride=8, ig_steps=4)
    heat = A.attribute(vgg19, x, s)
    assert heat.values.shape == (48, 64) and heat.values.dtype == np.float32
    assert np.isfinite(heat.values).all() and np.abs(heat.values).max() > 0
    assert heat.importance.min() >= 0
    assert heat.weights_label == vgg19.weights.label
    assert heat.signed == (method in ("integrated_gradients", "occlusion"))
    if not heat.signed:
        assert heat.values.min() >= 0  # gradient magnitudes and ReLU'd Grad-CAM


def test_smoothgrad_is_seeded_and_differs_from_plain_integrated_gradients(vgg19):
    x = stripes(48, 48)
    plain = A.attribute(vgg19, x, A.AttributionSettings(method="integrated_gradients", ig_steps=4)).values
    s = A.AttributionSettings(method="integrated_gradients", ig_steps=4, smoothgrad=2, smoothgrad_sigma=0.2)
    a, b = A.attribute(vgg19, x, s).values, A.attribute(vgg19, x, s).values
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, plain)


def test_smoothgrad_leaves_torchs_global_generator_alone(vgg19):
    """SmoothGrad's noise comes from a private generator: the global RNG state is the same
    before and after (it used to be reseeded to 0, in the worker thread, for every thread), and
    the map is what Captum's NoiseTunnel gives after that reseeding."""
    from captum.attr import IntegratedGradients, NoiseTunnel

    x = stripes(48, 48)
    s = A.AttributionSettings(method="integrated_gradients", ig_steps=4, smoothgrad=2, smoothgrad_sigma=0.2)
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    got = A.attribute(vgg19, x, s).values
    assert torch.equal(torch.get_rng_state(), state)
    ig = IntegratedGradients(SO.objective_function(vgg19, SO.parse_objective("style"), layers=vgg19.spec.style_layers))
    xl = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    torch.manual_seed(0)
    want = NoiseTunnel(ig).attribute(xl, nt_type="smoothgrad", nt_samples=2, nt_samples_batch_size=1, stdevs=0.2,
                                     baselines=torch.zeros_like(xl), n_steps=4, internal_batch_size=8)
    np.testing.assert_allclose(got, want.sum(1)[0].detach().numpy(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("objective", ["style", "layer:relu3_1"])
def test_integrated_gradients_map_is_signed_and_complete(vgg19, objective):
    """Completeness (Sundararajan et al. 2017): the signed map adds up to objective(x) -
    objective(black), both computed by the project's own objective function; the absolute
    value, which the map used to show, does not when some pixels are negative."""
    x = stripes(48, 48)
    heat = A.attribute(vgg19, x, A.AttributionSettings(method="integrated_gradients", objective=objective,
                                                       ig_steps=32))
    f = SO.objective_function(vgg19, objective, layers=vgg19.spec.style_layers)
    with torch.no_grad():
        change = float(f(x)[0] - f(torch.zeros_like(x))[0])
    total = float(heat.values.astype(np.float64).sum())
    assert total == pytest.approx(change, rel=0.03)  # up to the 32-step quadrature's error
    assert heat.signed and (heat.values < 0).any() and (heat.values > 0).any()
    assert float(np.abs(heat.values).sum()) > 1.05 * abs(change)  # |IG| does not add up to the change
    np.testing.assert_array_equal(heat.importance, np.abs(heat.values))  # masks rank by size, either sign


def test_signed_overlay_uses_a_diverging_scale_centred_on_zero():
    v = np.array([[-2.0, 0.0, 2.0, 1.0]], np.float32)
    rgb = np.asarray(A.signed_map_rgb(v)).astype(int)
    assert rgb[0, 0].tolist() == [33, 102, 172] and rgb[0, 2].tolist() == [178, 24, 43]  # -max blue, +max red
    assert rgb[0, 1].tolist() == [247, 247, 247]  # 0 is white, wherever it lies in the range
    assert rgb[0, 3, 0] > rgb[0, 3, 2]  # half of +max: reddish
    x = picture(1, 4)
    assert np.array_equal(np.asarray(A.overlay_image(x, v, 1.0, signed=True)), np.asarray(A.signed_map_rgb(v)))


@pytest.mark.parametrize("quadrant", [(0, 0), (1, 1), (0, 1)])
def test_saliency_mass_lies_in_the_textured_quadrant(vgg19, quadrant):
    x = planted(64, quadrant)
    for method in ("saliency", "guided_backprop"):
        heat = A.attribute(vgg19, x, A.AttributionSettings(method=method, size=64))
        assert quadrant_share(heat.importance, quadrant) > 0.5, method  # a uniform map gives 0.25


@pytest.mark.parametrize("quadrant", [(1, 0), (0, 1)])
def test_occlusion_mass_lies_in_the_textured_quadrant(vgg19, quadrant):
    x = planted(64, quadrant)
    heat = A.attribute(vgg19, x, A.AttributionSettings(method="occlusion", window=16, stride=8, size=64))
    assert quadrant_share(heat.importance, quadrant) > 0.5


def test_occlusion_batching_does_not_change_the_result(vgg19):
    """perturbations_per_eval only batches the occluded copies: the plain Captum call gives the
    same map with 1 and 7 per forward pass, and the fast engine agrees with it."""
    x = picture(48, 48)
    s = dict(method="occlusion", window=16, stride=8, baseline="mean", size=48)
    one = A.attribute(vgg19, x, A.AttributionSettings(perturbations_per_eval=1, fast_occlusion=False, **s))
    seven = A.attribute(vgg19, x, A.AttributionSettings(perturbations_per_eval=7, fast_occlusion=False, **s))
    fast = A.attribute(vgg19, x, A.AttributionSettings(perturbations_per_eval=5, **s))
    assert one.engine == seven.engine == "captum" and fast.engine == "fast"
    scale = np.abs(one.values).max()
    np.testing.assert_allclose(seven.values, one.values, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(fast.values, one.values, rtol=0, atol=1e-4 * scale)


def test_occlusion_reports_progress_per_batch_of_windows(vgg19):
    run = A.AttributionRun(vgg19, picture(48, 48), A.AttributionSettings(
        method="occlusion", window=16, stride=8, perturbations_per_eval=4, fast_occlusion=False, context=0))
    events = list(run)
    steps = [e.step for e in events if not e.done]
    assert steps == sorted(steps) and steps[-1] == 25 and events[0].total == 25  # 5 x 5 windows
    assert events[-1].done and run.result().values.shape == (48, 48)


@pytest.mark.parametrize("per_eval", [1, 4, 7])
def test_captum_occlusion_counts_each_window_once(vgg19, per_eval):
    """Captum's first forward call scores the image itself; only the windows count: 25 windows
    in batches of ``per_eval`` report ``per_eval``, 2 ``per_eval``, ... and end at exactly 25."""
    run = A.AttributionRun(vgg19, picture(48, 48), A.AttributionSettings(
        method="occlusion", window=16, stride=8, perturbations_per_eval=per_eval, fast_occlusion=False,
        context=0))
    steps = [e.step for e in run if not e.done]
    assert steps == [min(k, 25) for k in range(per_eval, 25 + per_eval, per_eval)]
    assert max(steps) == steps[-1] == 25


@pytest.mark.parametrize("objective, layer", [("class", "relu5_3"), ("style", "relu5_1"), ("layer:relu4_2", "relu4_2")])
def test_gradcam_default_layer_exists_on_vgg16(objective, layer):
    """Grad-CAM's default layer is the deepest the objective uses, for ``class`` the network's
    last feature layer: relu5_3 on VGG16 (relu5_4, VGG19's, does not exist there)."""
    from explorer.nets.models import load_model

    vgg16 = load_model("vgg16", weights="untrained", device="cpu")
    run = A.AttributionRun(vgg16, picture(48, 48), A.AttributionSettings(method="gradcam", objective=objective))
    assert run.gradcam_layer == layer
    list(run)
    assert run.result().values.shape == (48, 48)


@pytest.mark.parametrize("kind", A.BASELINES)
def test_baselines(kind):
    x = picture(48, 64)
    b = A.baseline_image(x, kind, window=16)
    assert b.shape == x.shape and float(b.min()) >= 0 and float(b.max()) <= 1
    if kind == "zero":
        assert float(b.abs().max()) == 0
    elif kind == "mean":
        torch.testing.assert_close(b[..., 5, 7], x.mean((2, 3)))
    else:  # a blur keeps the colour, loses the detail
        torch.testing.assert_close(b.mean((2, 3)), x.mean((2, 3)), atol=0.02, rtol=0)
        assert float((b[..., :, 1:] - b[..., :, :-1]).abs().mean()) < float((x[..., :, 1:] - x[..., :, :-1]).abs().mean())


def test_gradcam_layer_deeper_than_the_objective_is_refused(vgg19):
    with pytest.raises(ValueError, match="comes after relu3_1"):
        A.AttributionRun(vgg19, picture(64, 64), A.AttributionSettings(
            method="gradcam", objective="layer:relu3_1", gradcam_layer="relu4_1"))


@pytest.mark.parametrize("window, stride, message", [(56, 16, "larger than the image"),
                                                     (8, 16, "must not exceed the window")])
def test_bad_occlusion_geometry_is_refused_before_any_work(vgg19, window, stride, message):
    with pytest.raises(ValueError, match=message):
        A.AttributionRun(vgg19, picture(48, 64), A.AttributionSettings(method="occlusion", window=window,
                                                                       stride=stride))


def test_overlay_image_is_the_image_size():
    x = picture(48, 64)
    img = A.overlay_image(x, np.random.default_rng(0).random((48, 64), dtype=np.float32), 0.5)
    assert img.size == (64, 48) and img.mode == "RGB"
    with pytest.raises(ValueError, match="opacity"):
        A.overlay_image(x, np.zeros((48, 64), np.float32), 1.5)


# --------------------------------------------------------------------------- hook safety

def _no_hooks(model) -> bool:
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks)
               for m in model.modules())


def test_private_copy_shares_weights_and_owns_every_hookable_module(vgg19):
    net = A.private_copy(vgg19, hooked_layer="conv3_1")
    shared_modules = {id(m) for m in vgg19.modules()}
    assert not any(id(m) in shared_modules for m in net.modules())  # a hook on any of them stays private
    mine = dict(net.named_parameters())
    for name, p in vgg19.named_parameters():
        assert mine[name] is p  # the same weights, not a copy
    x = picture(48, 48)
    torch.testing.assert_close(net.features(x, ["relu5_1"])["relu5_1"], vgg19.features(x, ["relu5_1"])["relu5_1"],
                               rtol=0, atol=0)


def test_private_copy_of_mobilenet_exposes_every_rectifier_to_guided_backprop():
    """MobileNetV2 rectifies with ReLU6, which Captum's guided backprop does not hook: the private
    copy writes it as ReLU then a clamp at 6 (same outputs) and shares parameters and buffers."""
    from explorer.nets.models import load_model

    net = load_model("mobilenet_v2", weights="untrained")
    copy_ = A.private_copy(net)
    assert any(isinstance(m, torch.nn.ReLU6) for m in net.modules())
    assert not any(isinstance(m, torch.nn.ReLU6) for m in copy_.modules())
    assert sum(isinstance(m, torch.nn.ReLU) for m in copy_.modules()) == sum(
        isinstance(m, torch.nn.ReLU6) for m in net.modules())
    buffers = dict(copy_.named_buffers())
    assert all(buffers[k] is b for k, b in net.named_buffers() if k.startswith("body."))  # batch-norm statistics
    x = picture(64, 64)
    torch.testing.assert_close(copy_.features(x, ["block6"])["block6"], net.features(x, ["block6"])["block6"])


def _plain_gradient(model, x):
    x = x.clone().requires_grad_(True)
    style_energy(model, x).sum().backward()
    return x.grad


def test_guided_backprop_hooks_never_reach_the_shared_model(vgg19):
    """Deterministic interleaving: while guided backprop's hooks are registered, the forward
    function also computes an ordinary gradient through the *shared* model. With the hooks on
    the private copy that gradient is the plain one; the negative control (Captum hooked onto
    the shared model itself) shows that the check can fail."""
    from captum.attr import GuidedBackprop

    x, other = stripes(48, 48), picture(48, 48)
    reference = _plain_gradient(vgg19, other)
    seen = {}

    def objective_for(net):
        def f(t):
            with torch.enable_grad():
                seen["grad"] = _plain_gradient(vgg19, other)
            return style_energy(net, t)
        return f

    net = A.private_copy(vgg19)
    M.guided_backprop(net, objective_for(net), x.clone().requires_grad_(True))
    torch.testing.assert_close(seen["grad"], reference, rtol=0, atol=0)
    assert _no_hooks(vgg19) and _no_hooks(net)

    gb = GuidedBackprop(vgg19)  # the mistake the private copy avoids
    gb.forward_func = objective_for(vgg19)
    gb.attribute(x.clone().requires_grad_(True))
    assert not torch.equal(seen["grad"], reference)
    assert _no_hooks(vgg19)


def test_concurrent_feature_extraction_is_unaffected_by_hook_methods(vgg19):
    """Two threads at once: one runs guided backprop and Grad-CAM (hooks) again and again, the
    other extracts features and plain gradients from the shared model; every result equals the
    same computation done alone."""
    x, y = stripes(48, 48), picture(48, 48)
    ref_feats = vgg19.features(y, ["relu3_1", "relu5_1"])
    ref_grad = _plain_gradient(vgg19, y)
    ref_gb = A.attribute(vgg19, x, A.AttributionSettings(method="guided_backprop")).values
    ref_cam = A.attribute(vgg19, x, A.AttributionSettings(method="gradcam")).values
    errors: list[str] = []
    stop = threading.Event()

    def hooks_worker():
        try:
            for _ in range(3):
                if not np.array_equal(A.attribute(vgg19, x, A.AttributionSettings(method="guided_backprop")).values, ref_gb):
                    errors.append("guided backprop changed")
                if not np.array_equal(A.attribute(vgg19, x, A.AttributionSettings(method="gradcam")).values, ref_cam):
                    errors.append("grad-cam changed")
        finally:
            stop.set()

    def features_worker():
        n = 0
        while not stop.is_set() or n < 3:
            f = vgg19.features(y, ["relu3_1", "relu5_1"])
            if not all(torch.equal(f[k], ref_feats[k]) for k in f):
                errors.append("features changed")
            if not torch.equal(_plain_gradient(vgg19, y), ref_grad):
                errors.append("gradient changed")
            n += 1

    threads = [threading.Thread(target=hooks_worker), threading.Thread(target=features_worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]
    assert _no_hooks(vgg19)


def test_stopping_a_run_early_ends_its_worker(vgg19):
    run = A.AttributionRun(vgg19, picture(48, 48), A.AttributionSettings(
        method="occlusion", window=8, stride=4, perturbations_per_eval=2, fast_occlusion=False))
    it = iter(run)
    next(it)
    it.close()  # a page's Stop closes the generator
    assert not any(t.name == "explorer-attribution" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="did not finish"):
        run.result()


def _border_share(importance: np.ndarray, band: int, keep: float = 0.3) -> tuple[float, float]:
    """(share of the top-``keep`` mask in the ``band`` px border band, the band's share of the area)."""
    from explorer.saliency import guided

    kept = np.asarray(guided.weight_map(importance, keep, False, 1.0)) > 0
    edge = np.ones(kept.shape, bool)
    edge[band:-band, band:-band] = False
    return float((kept & edge).sum() / kept.sum()), float(edge.mean())


def test_occlusion_border_windows_are_a_padding_artefact_that_mirrored_context_removes(vgg19):
    """On a stationary noise texture every window hides the same kind of pixels, so the top 30 %
    of the occlusion map should fall in the border band about as often as the band's share of
    the area. Without context the convolutions' zero padding decides instead (these untrained
    weights: no border pixel at all; the real Caffe VGG19 puts most of the mask there); with the
    picture continued by its mirror image the share is near the area's."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    s = dict(method="occlusion", window=16, stride=8, size=64)
    plain = A.attribute(vgg19, x, A.AttributionSettings(context=0, **s))
    mirrored = A.attribute(vgg19, x, A.AttributionSettings(context=16, **s))
    assert mirrored.values.shape == plain.values.shape == (64, 64)
    share, area = _border_share(plain.importance, 8)
    assert abs(share - area) > 0.25, (share, area)
    share, area = _border_share(mirrored.importance, 8)
    assert abs(share - area) < 0.15, (share, area)
    assert A.AttributionSettings().context == 32 and M.context_margin(48, 64, 100) == 47


def test_with_context_mirrors_the_picture_and_zero_is_the_picture_itself():
    x = picture(8, 12)
    assert M.with_context(x, 0) is x
    y = M.with_context(x, 3)
    assert y.shape == (1, 3, 14, 18) and torch.equal(y[..., 3:11, 3:15], x)
    assert torch.equal(y[..., 3, 0], x[..., 0, 3])  # the mirror image across the left border


def test_signed_colour_range_is_the_99th_percentile_of_the_size():
    v = np.linspace(-1.0, 1.0, 201, dtype=np.float32).reshape(3, 67)
    v[0, 0] = -1e6  # one extreme pixel sets no range
    assert A.signed_range(v) == pytest.approx(np.percentile(np.abs(v), 99))
    assert A.SIGNED_PERCENTILE == 99.0 and A.signed_range(np.zeros((2, 2))) == 0.0
    rgb = np.asarray(A.signed_map_rgb(v), np.int32)
    assert tuple(rgb[0, 0]) == (33, 102, 172)  # beyond -P: the end colour
    mid = np.abs(v) < 1e-6
    assert (np.abs(rgb[mid] - 247) <= 1).all()


def test_class_objective_names_the_class_it_explains(vgg19):
    x = picture(64, 64)
    heat = A.attribute(vgg19, x, A.AttributionSettings(method="saliency", objective="class", size=64))
    with torch.no_grad():
        idx = int(vgg19(x).argmax(1)[0])
    name = vgg19.spec.weights_enum.meta["categories"][idx]
    assert heat.target == f"class {idx} '{name}', the network's top class for this image"
    assert heat.report()["target"] == heat.target
    assert A.attribute(vgg19, x, A.AttributionSettings(method="saliency", size=64)).target == ""
