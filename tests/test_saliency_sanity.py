"""The randomization check (:mod:`explorer.saliency.sanity`): Spearman's rank correlation of one
attribution map computed with two sets of weights of the same network.

Fast: 48 px, untrained VGG19 weights built with two seeds; the real-weights check is in
``test_saliency_sanity_realweights`` below, marked ``realweights``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from explorer.nets import models
from explorer.nets.weights import WeightsInfo
from explorer.saliency import attribution, sanity
from tests.helpers import picture

SIZE = 48


@pytest.fixture(scope="module")
def nets():
    """VGG19 with untrained weights of seed 0 (the app's), and of seed 1 standing in for trained
    weights (labelled as a file, so that the check accepts it as the trained network)."""
    seed0 = models.load_model("vgg19", weights="untrained", device="cpu")
    saved = models.UNTRAINED_SEED
    models.UNTRAINED_SEED = 1
    try:
        seed1 = models.load_model("vgg19", weights="untrained", device="cpu")
    finally:
        models.UNTRAINED_SEED = saved
    seed1.weights = WeightsInfo("file", "test: untrained, seed 1", "weights (test: untrained, seed 1)")
    return seed1, seed0


def settings(method: str = "saliency") -> attribution.AttributionSettings:
    return attribution.AttributionSettings(method=method, size=SIZE, style_layers=("relu1_1", "relu2_1"))


def test_a_map_ranked_against_itself_or_a_monotone_copy_has_rho_one(nets):
    _, seed0 = nets
    v = attribution.attribute(seed0, picture(SIZE, SIZE), settings()).values
    assert v.shape == (SIZE, SIZE) and np.ptp(v) > 0
    assert sanity.rank_correlation(v, v) == pytest.approx(1.0)
    assert sanity.rank_correlation(v, np.exp(v / np.abs(v).max()) * 3) == pytest.approx(1.0)  # only ranks count
    assert sanity.rank_correlation(v, -v) == pytest.approx(-1.0)


def test_two_seeds_give_different_maps_and_rho_below_one(nets):
    seed1, seed0 = nets
    x = picture(SIZE, SIZE)
    out = sanity.randomization_check(seed1, seed0, x, settings())
    assert out is not None
    a, b, rho = out
    assert a.weights_label == seed1.weights.label and b.weights_label == "untrained weights (seed 0)"
    assert a.values.shape == b.values.shape == (SIZE, SIZE)
    assert not np.array_equal(a.values, b.values)
    assert math.isfinite(rho) and -1.0 <= rho < 1.0
    # the rho is the rank correlation of the two maps the check returns, as computed on their own
    assert rho == pytest.approx(sanity.rank_correlation(
        attribution.attribute(seed1, x, settings()).values, attribution.attribute(seed0, x, settings()).values))


def test_a_stopped_heatmap_stops_the_check(nets):
    seed1, seed0 = nets
    assert sanity.randomization_check(seed1, seed0, picture(SIZE, SIZE), settings(),
                                      compute=lambda net, x, s: None) is None


def test_the_check_needs_one_network_with_trained_and_untrained_weights(nets):
    seed1, seed0 = nets
    x = picture(SIZE, SIZE)
    with pytest.raises(ValueError, match="needs trained weights"):
        sanity.randomization_check(seed0, seed0, x, settings())
    with pytest.raises(ValueError, match="must have untrained weights"):
        sanity.randomization_check(seed1, seed1, x, settings())
    other = models.meta_net("vgg16")
    other.weights = seed1.weights
    with pytest.raises(ValueError, match="compares one network with itself"):
        sanity.check_pair(other, seed0)


def test_rank_correlation_of_a_constant_map_is_nan_and_shapes_must_agree():
    v = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert math.isnan(sanity.rank_correlation(v, np.ones_like(v)))
    with pytest.raises(ValueError, match="same shape"):
        sanity.rank_correlation(v, v.T)


@pytest.mark.realweights
def test_saliency_sanity_realweights(real_vgg19, capsys):
    """Guided backprop and plain saliency on a real painting, trained Caffe VGG19 vs its untrained
    twin: the rank correlations are computed and finite (their values are printed, not judged)."""
    from tests.conftest import shared_path
    from explorer.io import images

    pil = images.resize_long_side(images.load_image(shared_path("images/starry_night.jpg")).image, 128)
    x = images.to_tensor(pil)
    untrained = models.load_model("vgg19", weights="untrained", device="cpu")
    rhos = {}
    for method in ("guided_backprop", "saliency"):
        s = attribution.AttributionSettings(method=method, size=128)
        a, b, rho = sanity.randomization_check(real_vgg19, untrained, x, s)
        assert a.weights_label == real_vgg19.weights.label and b.weights_label == untrained.weights.label
        assert math.isfinite(rho) and -1.0 <= rho <= 1.0
        rhos[method] = rho
    with capsys.disabled():
        print(f"\nrandomization check, starry_night 128 px, style objective: "
              + ", ".join(f"{m} rho = {r:.4f}" for m, r in rhos.items()))
