"""The layer activation explorer's core (explorer/nets/layers.py) and the ``activations`` command.

Receptive fields are checked three ways: against well-known published values (VGG), against a
hand computation written out below (GoogLeNet), and empirically: the input pixels that the
gradient of one output unit reaches. Statistics, rankings and the Gram view are checked against
NumPy / explorer.style.transfer on random arrays with known answers. Networks are untrained (seeded),
images 32-160 px, everything on the CPU.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from tests.helpers import error_line, picture, run_cli
from explorer.activations import views
from explorer.nets.layers import layer_activations, layer_info, output_shape, receptive_field, walk_layers
from explorer.cli import parser as cli
from explorer.io import images, samples
from explorer.nets import models
from explorer.nets import registry
from explorer.nets.models import FeatureNet, UnknownLayerError, list_layers, load_model
from explorer.nets.weights import WeightsInfo
from explorer.optim.losses import gram_matrix, style_layer_loss


# ----------------------------------------------------------------------------- helpers






def distinct_acts(c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(C, H, W) float32 with all values distinct, so every ranking has exactly one answer."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(c * h * w).reshape(c, h, w) / (c * h * w) - 0.3).astype(np.float32)






@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Untrained weights only when asked for; never a download."""
    monkeypatch.delenv("EXPLORER_ALLOW_UNTRAINED", raising=False)
    monkeypatch.delenv("EXPLORER_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")


# ----------------------------------------------------------------------------- receptive fields


@pytest.mark.parametrize("model, layer, rf, stride", [
    ("vgg19", "conv1_1", 3, 1),
    ("vgg19", "relu1_1", 3, 1),  # ReLU is pointwise
    ("vgg19", "conv1_2", 5, 1),
    ("vgg19", "pool1", 6, 2),
    ("vgg16", "pool5", 212, 32),  # the well-known value (e.g. Araujo et al., Distill 2019)
    ("vgg19", "pool5", 268, 32),
    ("vgg16", "conv1_1", 3, 1),
    ("inception_v3", "Mixed_7c", 1311, 32),  # Araujo et al., Distill 2019, table of common nets
])
def test_receptive_field_known_values(model, layer, rf, stride):
    assert receptive_field(model, layer) == (rf, stride)


def test_receptive_field_googlenet_inception4c_by_hand():
    # torchvision's GoogLeNet, receptive field r and jump j (input pixels between neighbouring
    # outputs), r += (k - 1) * j; j *= s, starting from r = j = 1:
    #   conv1     7x7 / 2          r = 1 + 6*1 = 7          j = 2
    #   maxpool1  3x3 / 2 (ceil)   r = 7 + 2*2 = 11         j = 4
    #   conv2     1x1              r = 11                   j = 4
    #   conv3     3x3              r = 11 + 2*4 = 19        j = 4
    #   maxpool2  3x3 / 2          r = 19 + 2*4 = 27        j = 8
    #   inception3a: deepest branches add 2*j: branch3 is 1x1 then 3x3 (torchvision's "5x5"
    #   branch really uses a 3x3 kernel), branch2 1x1 then 3x3, branch4 maxpool 3x3/1 then 1x1
    #             r = 27 + 2*8 = 43
    #   inception3b  r = 43 + 16 = 59
    #   maxpool3  3x3 / 2          r = 59 + 2*8 = 75        j = 16
    #   inception4a  r = 75 + 2*16 = 107
    #   inception4b  r = 107 + 32 = 139
    #   inception4c  r = 139 + 32 = 171, stride 16
    r, j = 1, 1
    for k, s in [(7, 2), (3, 2), (1, 1), (3, 1), (3, 2)]:  # conv1, maxpool1, conv2, conv3, maxpool2
        r, j = r + (k - 1) * j, j * s
    assert (r, j) == (27, 8) == receptive_field("googlenet", "maxpool2")
    for _ in ("inception3a", "inception3b"):
        r += (3 - 1) * j
    assert (r, j) == (59, 8) == receptive_field("googlenet", "inception3b")
    r, j = r + (3 - 1) * j, j * 2  # maxpool3
    for _ in ("inception4a", "inception4b", "inception4c"):
        r += (3 - 1) * j
    assert (r, j) == (171, 16)
    assert receptive_field("googlenet", "inception4c") == (r, j)


def test_receptive_field_grows_along_the_network_and_is_none_after_global_pooling():
    for name in registry.MODELS:
        prev = (0, 0)
        for layer in list_layers(name):
            rf = receptive_field(name, layer)
            if layer == "avgpool" or layer.startswith(("fc", "relu6", "relu7")):
                assert rf is None, (name, layer)
                continue
            assert rf is not None and rf[0] >= prev[0] and rf[1] >= prev[1], (name, layer, rf, prev)
            prev = rf


def test_receptive_field_unknown_layer_lists_valid_layers():
    with pytest.raises(UnknownLayerError, match="valid layers:.*conv1_1"):
        receptive_field("vgg19", "conv9_9")


def _gradient_box(net: FeatureNet, layer: str, size: int, pooling: str, di: int = 0, dj: int = 0):
    """Rows and columns (first, last) of the input pixels that reach the output unit near the
    centre of ``layer`` (summed over channels), for an input of ones: the unit's field, seen."""
    x = torch.ones(1, 3, size, size, requires_grad=True)
    with torch.enable_grad():
        a = net.features(x, [layer], pooling=pooling)[layer]
        h, w = a.shape[-2:]
        (g,) = torch.autograd.grad(a[0, :, h // 2 + di, w // 2 + dj].sum(), x)
    nz = g[0].abs().sum(0) > 0
    rows, cols = torch.nonzero(nz.any(1)).flatten(), torch.nonzero(nz.any(0)).flatten()
    assert len(rows) and len(cols), "the unit's gradient is zero everywhere"
    assert 0 < rows[0] and rows[-1] < size - 1 and 0 < cols[0] and cols[-1] < size - 1, \
        "the field touches the border: use a larger probe image"
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def _positive_copy(net: FeatureNet, layer: str) -> FeatureNet:
    """A copy of the network up to ``layer`` with every weight made positive and every bias
    positive: every ReLU passes and no contribution cancels, so the gradient of a unit is
    nonzero on its whole receptive field."""
    probe = copy.deepcopy(net.truncated(layer))
    with torch.no_grad():
        for name, p in probe.named_parameters():
            p.abs_()
            if name.endswith("bias"):
                p.add_(0.01)
    return probe


@pytest.fixture(scope="module")
def inception_v3_probe():
    """Inception v3 up to its first Inception block, architecture only (torchvision's fast
    default init: the weights are replaced by positive ones in the test anyway)."""
    spec = registry.MODELS["inception_v3"]
    tv = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    layers = models._layers_for(spec, tv)
    return FeatureNet(spec, layers, WeightsInfo("untrained", "", "test probe")).truncated("Mixed_5b")


@pytest.mark.parametrize("model, layer, size", [
    ("vgg19", "conv1_2", 32),
    ("vgg19", "pool1", 32),
    ("vgg19", "conv2_1", 48),
    ("vgg19", "pool2", 64),
    ("vgg19", "conv3_1", 64),
    ("googlenet", "conv3", 64),
    ("googlenet", "maxpool2", 96),
    ("googlenet", "inception3a", 128),
    ("inception_v3", "Mixed_5b", 160),
])
def test_receptive_field_equals_the_gradients_reach(request, model, layer, size):
    """Empirical receptive field and stride. With the untrained weights and max pooling the
    gradient can only reach fewer pixels than the computed field (max pooling passes one
    pixel per window, dead ReLUs pass none). With positive weights and max pooling replaced by
    average pooling of the same windows (``pooling="avg"``; the pools inside Inception blocks
    stay max pools, but a 3x3 conv branch beside them covers the same window), it reaches the
    whole field, and moving one output unit moves the field by the stride."""
    rf, stride = receptive_field(model, layer)
    net = request.getfixturevalue("inception_v3_probe" if model == "inception_v3" else model)
    if model != "inception_v3":  # the probe's default init is not what the app shows
        r0, r1, c0, c1 = _gradient_box(net, layer, size, "max")
        assert r1 - r0 + 1 <= rf and c1 - c0 + 1 <= rf
    probe = _positive_copy(net, layer)
    r0, r1, c0, c1 = _gradient_box(probe, layer, size, "avg")
    assert (r1 - r0 + 1, c1 - c0 + 1) == (rf, rf)
    right = _gradient_box(probe, layer, size, "avg", dj=1)
    down = _gradient_box(probe, layer, size, "avg", di=1)
    assert right == (r0, r1, c0 + stride, c1 + stride)
    assert down == (r0 + stride, r1 + stride, c0, c1)


# ----------------------------------------------------------------------------- shapes and layer info


@pytest.mark.parametrize("h, w", [(97, 131), (64, 64), (131, 80)])
def test_output_shape_equals_real_forward_shapes(vgg19, googlenet, h, w):
    x = torch.rand(1, 3, h, w)
    for net, layers in [(vgg19, ["conv1_1", "pool1", "relu3_1", "pool4", "relu5_4", "avgpool", "fc8"]),
                        (googlenet, ["conv1", "maxpool1", "conv3", "inception3b", "maxpool3", "inception4c",
                                     "inception5b", "avgpool", "fc"])]:
        with torch.no_grad():
            feats = net.features(x, layers)
        for layer in layers:
            assert output_shape(net.name, layer, h, w) == tuple(feats[layer].shape[1:]), (net.name, layer)


def test_output_shape_of_inception_v3_matches_its_architecture():
    # 299 px is Inception v3's native size: Mixed_5b 35x35x256, Mixed_6a 17x17x768, Mixed_7c 8x8x2048
    assert output_shape("inception_v3", "Mixed_5b", 299, 299) == (256, 35, 35)
    assert output_shape("inception_v3", "Mixed_6e", 299, 299) == (768, 17, 17)
    assert output_shape("inception_v3", "Mixed_7c", 299, 299) == (2048, 8, 8)
    assert output_shape("inception_v3", "fc", 299, 299) == (1000,)


def test_layer_info_parameters_and_shapes(vgg19, googlenet):
    i = layer_info("vgg19", "conv1_1", 64)
    assert (i.name, i.index, i.shape, i.receptive_field, i.stride) == ("conv1_1", 0, (64, 64, 64), 3, 1)
    assert i.params == 3 * 64 * 9 + 64 == i.params_total
    r = layer_info("vgg19", "relu1_1", 64)
    assert (r.index, r.params, r.params_total) == (1, 0, 3 * 64 * 9 + 64)
    c2 = layer_info("vgg19", "conv1_2", 64)
    assert c2.params == 64 * 64 * 9 + 64
    assert c2.params_total == 3 * 64 * 9 + 64 + 64 * 64 * 9 + 64
    # cumulative: the last layer's total is the whole network's parameter count
    for net, last in [(vgg19, "fc8"), (googlenet, "fc")]:
        total = sum(p.numel() for p in net.parameters())
        assert layer_info(net.name, last).params_total == total
        names = net.layer_names
        running = 0
        for layer in names[::5]:
            info = layer_info(net.name, layer)
            assert info.params == sum(p.numel() for p in net.body[layer].parameters())
            assert info.params_total >= running
            running = info.params_total
    assert layer_info("vgg19", "fc6").params == 512 * 7 * 7 * 4096 + 4096


@pytest.mark.parametrize("model, layer, shape", [
    ("vgg19", "avgpool", (512 * 7 * 7,)),
    ("vgg19", "fc6", (4096,)),
    ("vgg19", "fc8", (1000,)),
    ("googlenet", "avgpool", (1024,)),
    ("googlenet", "fc", (1000,)),
    ("inception_v3", "fc", (1000,)),
])
def test_layer_info_after_global_pooling_has_no_receptive_field(model, layer, shape):
    info = layer_info(model, layer, 224 if model != "inception_v3" else 299)
    assert info.receptive_field is None and info.stride is None
    assert info.shape == shape


def test_layer_info_unknown_layer():
    with pytest.raises(UnknownLayerError, match="inception4c"):
        layer_info("googlenet", "relu1_1")


# ----------------------------------------------------------------------------- activations


class _Trap(nn.Module):
    def forward(self, x):
        raise AssertionError("a layer deeper than the one asked for was run")


def test_layer_activations_runs_only_up_to_the_layer(vgg19):
    """The same network with conv3_1 replaced by a module that raises: relu2_1 is still
    computed (the walk stops there); asking for conv3_1 proves the trap is live."""
    trapped = FeatureNet(vgg19.spec, [(n, _Trap() if n == "conv3_1" else vgg19.body[n]) for n in vgg19.layer_names],
                         vgg19.weights)
    x = picture(64, 80)
    a = layer_activations(trapped, x.double(), "relu2_1")  # float64 input is fine too
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert a.shape == (128, 32, 40)
    with torch.no_grad():
        want = vgg19.features(x, ["relu2_1"])["relu2_1"][0].numpy()
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(AssertionError, match="deeper"):
        layer_activations(trapped, x, "conv3_1")


def test_layer_activations_errors(vgg19):
    with pytest.raises(UnknownLayerError):
        layer_activations(vgg19, picture(64, 64), "inception4c")
    with pytest.raises(ValueError, match="at least 32 px"):
        layer_activations(vgg19, picture(16, 64), "conv1_1")


def test_channel_stats_against_numpy():
    rng = np.random.default_rng(1)
    a = np.maximum(rng.normal(size=(6, 9, 7)), 0).astype(np.float32)  # about half are zeros, as after a ReLU
    a[2] = 0.0  # a dead channel
    s = views.channel_stats(a)
    assert s.sparsity == pytest.approx(float((a == 0).mean()))
    assert 0.4 < s.sparsity < 0.7
    flat = a.reshape(6, -1)
    np.testing.assert_allclose(s.mean, flat.mean(1), rtol=1e-6)
    np.testing.assert_array_equal(s.max, flat.max(1))
    np.testing.assert_array_equal(s.min, flat.min(1))
    np.testing.assert_allclose(s.zero_fraction, (flat == 0).mean(1))
    assert s.zero_fraction[2] == 1.0 and s.max[2] == 0.0
    with pytest.raises(ValueError, match="spatial"):
        views.channel_stats(np.ones(10, np.float32))


@pytest.mark.parametrize("by", ["mean", "max"])
@pytest.mark.parametrize("n", [1, 5, 12])
def test_top_channels_are_the_n_largest(by, n):
    a = distinct_acts(12, 5, 4, seed=n)
    score = a.reshape(12, -1).mean(1) if by == "mean" else a.reshape(12, -1).max(1)
    want = sorted(range(12), key=lambda c: -score[c])[:n]
    assert views.top_channels(a, n, by=by).tolist() == want


def test_top_channels_n_larger_than_channels_and_bad_arguments():
    a = distinct_acts(7, 3, 3)
    top = views.top_channels(a, 50)
    assert sorted(top.tolist()) == list(range(7))
    with pytest.raises(ValueError, match="mean"):
        views.top_channels(a, 3, by="median")
    with pytest.raises(ValueError):
        views.top_channels(a, 0)


# ----------------------------------------------------------------------------- Gram view


@pytest.mark.parametrize("order", ["cluster", "activation", "none"])
def test_gram_view_is_the_normalized_gram_permuted(order):
    a = distinct_acts(10, 6, 5, seed=3)
    g, idx = views.gram_view(a, order)
    assert sorted(idx.tolist()) == list(range(10))
    ref = gram_matrix(torch.from_numpy(a), normalize=True).numpy()
    assert g.shape == (10, 10) and g.dtype == np.float32
    np.testing.assert_allclose(g, ref[np.ix_(idx, idx)], rtol=1e-6)
    if order == "none":
        assert idx.tolist() == list(range(10))
    if order == "activation":
        means = a.reshape(10, -1).mean(1)[idx]
        assert np.all(np.diff(means) <= 0)


def test_gram_view_cluster_puts_identical_channels_together():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(12, 8, 8)).astype(np.float32)
    a[5] = a[0]
    _, idx = views.gram_view(a, "cluster")
    pos = idx.tolist()
    assert abs(pos.index(0) - pos.index(5)) == 1, pos


def test_gram_view_bad_order():
    with pytest.raises(ValueError, match="cluster"):
        views.gram_view(distinct_acts(4, 3, 3), "random")


# ----------------------------------------------------------------------------- comparing two images


def test_compare_images_style_distance_is_eq4():
    rng = np.random.default_rng(2)
    a = np.maximum(rng.normal(size=(8, 6, 7)), 0).astype(np.float32)
    b = np.maximum(rng.normal(0.3, 1.0, size=(8, 9, 5)), 0).astype(np.float32)  # sizes may differ
    cmp = views.compare_images(a, b, n=3)
    ta, tb = torch.from_numpy(a)[None], torch.from_numpy(b)[None]
    want = float(style_layer_loss(ta, gram_matrix(tb, normalize=True)[0])[0])
    assert cmp.style_distance == pytest.approx(want, rel=1e-5)
    # and by hand: 1 / (4 N^2) sum_ij (G_ij / M_a - A_ij / M_b)^2
    fa, fb = a.reshape(8, -1).astype(np.float64), b.reshape(8, -1).astype(np.float64)
    d = fa @ fa.T / fa.shape[1] - fb @ fb.T / fb.shape[1]
    assert cmp.style_distance == pytest.approx((d ** 2).sum() / (4 * 8 * 8), rel=1e-4)
    assert cmp.style_distance > 0
    ma, mb = fa.mean(1), fb.mean(1)
    assert cmp.cosine == pytest.approx(ma @ mb / np.linalg.norm(ma) / np.linalg.norm(mb), rel=1e-5)
    assert cmp.top_a.tolist() == views.top_channels(a, 3).tolist()
    assert cmp.top_b.tolist() == views.top_channels(b, 3).tolist()
    assert cmp.shared_top == sorted(set(cmp.top_a.tolist()) & set(cmp.top_b.tolist()))


def test_relative_style_distance_is_the_style_pages_relative_scale():
    """Ẽ_l (the style page's default, relative scale) = E_l (eq. 4, paper scale) times the factor
    the style transfer itself uses (term_scales), and is what the style objective's relative
    layer term gives for the same two images; scaling every activation leaves it unchanged."""
    from explorer.style.gatys import term_scales

    rng = np.random.default_rng(5)
    a = np.maximum(rng.normal(size=(8, 6, 7)), 0).astype(np.float32)
    b = np.maximum(rng.normal(0.3, 1.0, size=(8, 9, 5)), 0).astype(np.float32)
    cmp = views.compare_images(a, b)
    target = gram_matrix(torch.from_numpy(b)[None], normalize=True)[0]
    _, factor = term_scales(torch.ones(1, 1, 1, 1), {"l": target}, "relative", 1)
    assert cmp.relative_style_distance == pytest.approx(cmp.style_distance * factor["l"], rel=1e-5)
    relative_term = float(style_layer_loss(torch.from_numpy(a)[None], target)[0]) * factor["l"]
    assert cmp.relative_style_distance == pytest.approx(relative_term, rel=1e-5)
    # by hand: ||Â - B̂||^2 / ||B̂||^2 with position-normalized Gram matrices
    fa, fb = a.reshape(8, -1).astype(np.float64), b.reshape(8, -1).astype(np.float64)
    ga, gb = fa @ fa.T / fa.shape[1], fb @ fb.T / fb.shape[1]
    assert cmp.relative_style_distance == pytest.approx(((ga - gb) ** 2).sum() / (gb ** 2).sum(), rel=1e-5)
    scaled = views.compare_images(a * np.float32(58), b * np.float32(58))
    assert scaled.relative_style_distance == pytest.approx(cmp.relative_style_distance, rel=1e-5)
    assert scaled.style_distance == pytest.approx(cmp.style_distance * 58 ** 4, rel=1e-5)


def test_cosine_of_non_negative_activations_is_at_least_0_and_centred_cosine_is_a_correlation():
    """After a ReLU every channel mean is >= 0, so the plain cosine lies in [0, 1] (here near 1
    for two unrelated random profiles); the centred one is their Pearson correlation, in [-1, 1]."""
    rng = np.random.default_rng(5)
    for seed in range(20):
        a = np.maximum(rng.normal(size=(16, 5, 5)), 0).astype(np.float32)
        b = np.maximum(rng.normal(0.2, 1.5, size=(16, 4, 6)), 0).astype(np.float32)
        cmp = views.compare_images(a, b)
        assert cmp.cosine >= 0.0
        ma, mb = a.reshape(16, -1).mean(1), b.reshape(16, -1).mean(1)
        assert cmp.centred_cosine == pytest.approx(float(np.corrcoef(ma, mb)[0, 1]), abs=1e-5)
        assert -1.0 <= cmp.centred_cosine <= 1.0
    assert cmp.cosine > 0.8 > abs(cmp.centred_cosine)  # unrelated profiles: high cosine, low correlation
    assert views.compare_images(a, a).centred_cosine == pytest.approx(1.0, abs=1e-6)
    flat = np.ones((16, 3, 3), np.float32)
    assert views.compare_images(flat, b).centred_cosine == 0.0  # a constant profile has no direction


@pytest.mark.parametrize("scale", [1e11, 1e-11])
def test_compare_images_style_distance_at_untrained_scales(scale):
    """Untrained networks' activations can be ~1e11 or ~1e-11; E_l is quartic in the
    activations (1e44 or 1e-44), so it must neither overflow to inf nor underflow to 0."""
    rng = np.random.default_rng(4)
    a = np.maximum(rng.normal(size=(8, 6, 6)), 0).astype(np.float32)
    b = np.maximum(rng.normal(0.3, 1.0, size=(8, 6, 6)), 0).astype(np.float32)
    base = views.compare_images(a, b).style_distance
    scaled = views.compare_images(a * np.float32(scale), b * np.float32(scale))
    assert math.isfinite(scaled.style_distance) and scaled.style_distance > 0
    assert scaled.style_distance == pytest.approx(base * scale ** 4, rel=1e-5)
    assert scaled.cosine == pytest.approx(views.compare_images(a, b).cosine, rel=1e-5)


def test_compare_images_of_real_activations(vgg19, images64):
    content, style = images64
    a = layer_activations(vgg19, content, "relu2_1")
    b = layer_activations(vgg19, style, "relu2_1")
    same = views.compare_images(a, a)
    assert same.cosine == pytest.approx(1.0, abs=1e-6)
    assert same.style_distance == pytest.approx(0.0, abs=1e-12)
    assert same.shared_top == sorted(same.top_a.tolist()) and len(same.top_a) == 8
    diff = views.compare_images(a, b)
    assert diff.style_distance > 0
    assert -1.0 <= diff.cosine < 1.0


def test_compare_images_channel_mismatch_raises(vgg19, images64):
    a = layer_activations(vgg19, images64[0], "relu1_1")
    b = layer_activations(vgg19, images64[0], "relu2_1")
    with pytest.raises(ValueError, match="same layer"):
        views.compare_images(a, b)


# ----------------------------------------------------------------------------- pictures


@pytest.mark.parametrize("k, cols, cell", [(8, 4, 32), (5, 4, 40), (1, 3, 24), (6, 6, 16)])
def test_channel_grid_size(k, cols, cell):
    a = distinct_acts(10, 7, 9)
    grid = views.channel_grid(a, list(range(k)), cols=cols, cell=cell)
    assert grid.mode == "RGB"
    assert grid.size == (cols * cell, math.ceil(k / cols) * (cell + 16))


def test_channel_grid_cells_show_their_own_channel():
    y, x = np.mgrid[0:8, 0:8].astype(np.float32)
    a = np.stack([x, y, x, np.zeros_like(x)])  # 0 and 2 are the same map, 1 is its transpose
    cell = 32
    grid = np.asarray(views.channel_grid(a, [0, 1, 2], cols=3, cell=cell))

    def tile(k):  # the map area of cell k (below the 16 px label strip)
        return grid[16:16 + cell, k * cell:(k + 1) * cell]

    assert not np.array_equal(tile(0), tile(1))
    assert np.array_equal(tile(0), tile(2))
    assert len(np.unique(tile(0).reshape(-1, 3), axis=0)) > 4  # a colour ramp, not one colour


def test_channel_map_rgb():
    img = views.channel_map_rgb(np.full((5, 7), 3.5, np.float32))  # a constant map: no division by zero
    assert img.size == (7, 5) and img.mode == "RGB"
    assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) == 1
    ramp = np.asarray(views.channel_map_rgb(np.arange(12, dtype=np.float32).reshape(3, 4)))
    assert not np.array_equal(ramp[0, 0], ramp[-1, -1])  # lowest and highest get different colours


# ----------------------------------------------------------------------------- walk through the network


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_walk_layers_are_spatial_layers_in_forward_order(name):
    layers = walk_layers(name)
    names = list_layers(name)
    assert len(layers) >= 4
    assert all(l in names for l in layers), layers
    idx = [names.index(l) for l in layers]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    size = 299 if name == "inception_v3" else 224
    assert all(len(output_shape(name, l, size, size)) == 3 for l in layers)


@pytest.mark.parametrize("net_name, size", [("vgg19", 64), ("googlenet", 96)])
def test_walk_network_shows_the_strongest_channel_of_each_layer(request, net_name, size):
    net = request.getfixturevalue(net_name)
    x = picture(size, size + 16)
    walk = views.walk_network(net, x)
    layers = walk_layers(net_name)
    assert [w[0] for w in walk] == layers
    with torch.no_grad():  # the module runs in channels_last layout; the same here, same rounding
        feats = net.features(x.contiguous(memory_format=torch.channels_last), layers)
    for layer, c, m in walk:
        a = feats[layer][0].numpy()
        assert c == int(np.argmax(a.reshape(a.shape[0], -1).mean(1)))
        assert m.dtype == np.float32
        np.testing.assert_allclose(m, a[c], rtol=1e-5, atol=1e-30)
    chosen = views.walk_network(net, x, layers[1:3])
    assert [w[0] for w in chosen] == layers[1:3]


# ----------------------------------------------------------------------------- predictions


def test_top_predictions_none_for_untrained_weights(googlenet):
    assert googlenet.weights.untrained
    assert views.top_predictions(googlenet, picture(96, 96)) is None


@pytest.fixture(scope="module")
def googlenet_file(tmp_path_factory):
    """GoogLeNet with weights from a state_dict file the test writes (kind "file"): what a user
    with their own trained weights gets."""
    torch.manual_seed(7)
    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    path = tmp_path_factory.mktemp("weights") / "my_googlenet.pth"
    torch.save(tv.state_dict(), path)
    return path, load_model("googlenet", weights=path, device="cpu")


def test_top_predictions_with_a_weights_file(googlenet_file):
    _, net = googlenet_file
    assert net.weights.kind == "file"
    x = picture(96, 112)
    preds = views.top_predictions(net, x)
    assert isinstance(preds, list) and len(preds) == 5
    cats = registry.MODELS["googlenet"].weights_enum.meta["categories"]
    names, probs = [p[0] for p in preds], [p[1] for p in preds]
    assert all(n in cats for n in names) and len(set(names)) == 5
    assert probs == sorted(probs, reverse=True)
    assert all(0 <= p <= 1 for p in probs) and sum(probs) <= 1 + 1e-6
    with torch.no_grad():
        p = torch.softmax(net(x)[0], 0)
    want = p.topk(5)
    assert names == [cats[i] for i in want.indices.tolist()]
    np.testing.assert_allclose(probs, want.values.numpy(), rtol=1e-5)
    assert len(views.top_predictions(net, x, k=3)) == 3


# ----------------------------------------------------------------------------- the activations command


def test_cli_activations_end_to_end(capsys, tmp_path, vgg19):
    out, js = tmp_path / "g.png", tmp_path / "s.json"
    rc, _, err = run_cli(capsys, "activations", "sample:chelsea", "--untrained", "--layer", "relu2_1",
                         "--top", "8", "--size", "96", "--out", out, "--json", js, "--device", "cpu")
    assert rc == 0, err
    assert "untrained" in err
    with Image.open(out) as im:
        assert im.format == "PNG"
        im.load()
        assert im.size == (4 * 128, 2 * (128 + 16))  # 8 channels, 4 columns of 128 px cells
        assert "untrained" in im.text["weights"]
    r = json.loads(js.read_text(encoding="utf-8"))
    assert r["model"] == "vgg19" and r["layer"] == "relu2_1"
    assert r["weights"] == "untrained" and r["predictions"] is None
    assert r["receptive_field"] == 10 and r["stride"] == 2
    # chelsea is 451x300: 96 px long side -> 96x64 input -> relu2_1 maps of 48x32
    assert r["input_hw"] == [64, 96] and r["shape"] == [128, 32, 48]
    top = r["top_channels"]
    assert len(top) == 8 and len({t["channel"] for t in top}) == 8
    means = [t["mean"] for t in top]
    assert means == sorted(means, reverse=True)
    assert means[-1] >= sorted(r["channel_mean"], reverse=True)[7]  # really the 8 largest
    # the same numbers as the library gives for the same input
    x = images.to_tensor(images.resize_long_side(samples.parse_image_ref("sample:chelsea").image, 96))
    a = layer_activations(vgg19, x, "relu2_1")
    assert r["sparsity"] == pytest.approx(float((a == 0).mean()))
    assert [t["channel"] for t in top] == views.top_channels(a, 8).tolist()


def test_cli_activations_unknown_layer(capsys, tmp_path):
    out = tmp_path / "g.png"
    rc, _, err = run_cli(capsys, "activations", "sample:chelsea", "--untrained", "--layer", "relu9_9",
                         "--size", "64", "--out", out, "--device", "cpu")
    assert rc == 2
    line = error_line(err)
    assert "relu9_9" in line and "valid layers" in line and "relu2_1" in line and "pool5" in line
    assert not out.exists()


def test_cli_activations_layer_without_maps(capsys, tmp_path):
    out = tmp_path / "g.png"
    rc, _, err = run_cli(capsys, "activations", "sample:chelsea", "--untrained", "--layer", "fc8",
                         "--size", "64", "--out", out, "--device", "cpu")
    assert rc == 2
    assert "no spatial maps" in error_line(err)
    assert not out.exists()


def test_cli_activations_missing_image_and_bad_output(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "activations", tmp_path / "nope.png", "--untrained", "--layer", "relu1_1",
                         "--size", "64", "--out", tmp_path / "g.png", "--device", "cpu")
    assert rc == 2
    assert "nope.png" in error_line(err)
    rc, _, err = run_cli(capsys, "activations", "sample:chelsea", "--untrained", "--layer", "relu1_1",
                         "--size", "64", "--out", tmp_path / "x.jpg", "--device", "cpu")
    assert rc == 2
    assert ".png" in error_line(err)
    assert not (tmp_path / "x.jpg").exists() and not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("scale", ["correlation", "gram"])
def test_gram_display_colour_range_is_the_percentile_of_the_off_diagonal(scale):
    a = np.abs(distinct_acts(6, 5, 4)).astype(np.float32)
    a[2] = 0.0  # a channel that is zero everywhere
    g = gram_matrix(torch.from_numpy(a), normalize=True).numpy().astype(np.float64)
    shown = views.gram_display(g, scale)
    if scale == "correlation":
        d = np.sqrt(np.diag(g))
        with np.errstate(invalid="ignore", divide="ignore"):
            want = g / np.outer(d, d)
        want[2, :] = want[:, 2] = np.nan
        assert np.allclose(np.diag(shown.z)[[0, 1, 3, 4, 5]], 1.0, atol=1e-6)
    else:
        want = g
    np.testing.assert_allclose(shown.z, want, rtol=1e-5, equal_nan=True)
    off = want[~np.eye(6, dtype=bool)]
    assert shown.zmax == pytest.approx(np.percentile(off[np.isfinite(off)], views.GRAM_PERCENTILE))
    assert shown.zmin == 0.0  # non-negative maps
    assert shown.clipped == pytest.approx(np.mean(np.nan_to_num(want, nan=-1) > shown.zmax))


def test_gram_display_signed_maps_and_bad_scale():
    a = distinct_acts(4, 3, 3)  # signed maps: correlations can be negative
    g = gram_matrix(torch.from_numpy(a), normalize=True).numpy()
    shown = views.gram_display(g, "correlation")
    assert np.nanmin(shown.z) < 0 and shown.zmin == -1.0
    with pytest.raises(ValueError, match="scale must be correlation or gram"):
        views.gram_display(g, "log")
