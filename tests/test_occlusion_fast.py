"""explorer.saliency.occlusion: the incremental occlusion engine against a plain Captum Occlusion call.

Every expected value comes from ``captum.attr.Occlusion`` run on the same untrained VGG19 with
``explorer.saliency.objectives.objective_function`` of the same objective spec as its forward function; nothing is
compared with stored numbers."""

import pytest
import torch
from captum.attr import Occlusion

from explorer.saliency.objectives import ObjectiveSpec, objective_function
from explorer.nets.models import meta_net
from explorer.saliency.occlusion import UnsupportedNetworkError, occlusion_fast, occlusion_windows
from explorer.style.settings import DEFAULT_STYLE_LAYERS
from tests.helpers import picture, stripes

CONV_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def captum_occlusion(model, image, baseline, *, window, stride, objective="style", layers=DEFAULT_STYLE_LAYERS,
                     layer_weights=None, pooling="max", per_eval=16):
    """Captum's Occlusion of the objective: the full (1, 3, H, W) attribution."""
    forward = objective_function(model, objective, layers=layers, weights=layer_weights, pooling=pooling)

    with torch.no_grad():
        return Occlusion(forward).attribute(image, sliding_window_shapes=(3, window, window),
                                            strides=(3, stride, stride), baselines=baseline,
                                            perturbations_per_eval=per_eval)


def assert_matches(fast, ref):
    """fast (H, W) equals every channel of Captum's (1, 3, H, W) to 1e-4 of the largest value."""
    assert fast.shape == ref.shape[-2:] and fast.dtype == torch.float32
    scale = ref.abs().max().item()
    assert scale > 0
    for c in range(3):
        torch.testing.assert_close(ref[0, c], ref[0, 0], rtol=0, atol=0)
    err = (fast - ref[0, 0]).abs().max().item()
    assert err <= 1e-4 * scale, f"max difference {err:.3g} vs largest attribution {scale:.3g}"


CASES = {
    # name: (H, W, window, stride, objective, style layers, weights, pooling)
    "style-relu-max": (64, 64, 16, 8, "style", DEFAULT_STYLE_LAYERS, None, "max"),
    # (70 - 16) and (53 - 16) are not multiples of 8: the last windows are cut off
    "style-conv-avg-nonsquare": (70, 53, 16, 8, "style", CONV_LAYERS, None, "avg"),
    # window == stride; odd sizes, so the pooling layers drop a row
    "layer-window-eq-stride": (67, 80, 12, 12, "layer:relu3_2", DEFAULT_STYLE_LAYERS, None, "max"),
    "channel-conv-max": (64, 64, 24, 12, ObjectiveSpec("channel", "conv4_1", 7), DEFAULT_STYLE_LAYERS, None, "max"),
    "channel-relu-avg": (72, 64, 20, 7, "channel:relu2_2:3", DEFAULT_STYLE_LAYERS, None, "avg"),
    # a window as wide as the image, weights given by name, a pooling layer as a style layer
    "style-weights-pool": (48, 40, 40, 3, "style", ("relu1_2", "pool4"), {"relu1_2": 0.3, "pool4": 2.0}, "max"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_equals_captum(vgg19, case):
    h, w, window, stride, objective, layers, weights, pooling = CASES[case]
    image, baseline = picture(h, w), 0.5 * stripes(h, w)
    ref = captum_occlusion(vgg19, image, baseline, window=window, stride=stride, objective=objective,
                           layers=layers, layer_weights=weights, pooling=pooling)
    fast = occlusion_fast(vgg19, image, baseline, objective=objective, layers=layers, layer_weights=weights,
                          window=window, stride=stride, pooling=pooling, batch_size=5)
    assert_matches(fast, ref)


def test_contiguous_format_and_scalar_baseline_equal_captum(vgg19):
    image = picture(48, 56)
    ref = captum_occlusion(vgg19, image, torch.full_like(image, 0.25), window=16, stride=8, objective="layer:conv3_1")
    fast = occlusion_fast(vgg19, image, 0.25, objective="layer:conv3_1", window=16, stride=8, channels_last=False)
    assert_matches(fast, ref)


def test_batch_size_does_not_change_the_result_and_progress_counts(vgg19):
    image, baseline = picture(48, 40), torch.zeros(1, 3, 48, 40)
    calls = []
    one = occlusion_fast(vgg19, image, baseline, window=16, stride=8, batch_size=1)
    many = occlusion_fast(vgg19, image, baseline, window=16, stride=8, batch_size=7,
                          progress=lambda done, total: calls.append((done, total)))
    n = len(occlusion_windows(48, 40, 16, 8))
    assert n == 5 * 4
    done = [d for d, _ in calls]
    assert all(total == n for _, total in calls) and done[-1] == n
    assert all(0 < b - a <= 7 for a, b in zip([0] + done, done))  # one call per batch of at most 7
    torch.testing.assert_close(many, one, rtol=0, atol=1e-6 * one.abs().max().item())
    assert one.abs().max() > 0


@pytest.mark.parametrize("h, w, window, stride", [(70, 53, 16, 8), (64, 64, 16, 16), (40, 33, 33, 5), (9, 12, 4, 3)])
def test_windows_match_captum_placement(h, w, window, stride):
    """Occluding zeros with ones, each forward call of Captum reveals its window's box."""
    boxes = []

    def record(x):
        for img in x:
            on = img[0].nonzero()
            if len(on):
                boxes.append((int(on[:, 0].min()), int(on[:, 1].min()), int(on[:, 0].max()), int(on[:, 1].max())))
        return torch.zeros(x.shape[0])

    Occlusion(record).attribute(torch.zeros(1, 3, h, w), sliding_window_shapes=(3, window, window),
                                strides=(3, stride, stride), baselines=1.0, perturbations_per_eval=1)
    starts = occlusion_windows(h, w, window, stride)
    assert [(y0, x0, min(y0 + window, h) - 1, min(x0 + window, w) - 1) for y0, x0 in starts] == boxes


def test_unsupported_networks_and_arguments_raise_value_error(vgg19):
    image = torch.rand(1, 3, 64, 64)
    with pytest.raises(UnsupportedNetworkError, match="VGG"):
        occlusion_fast(meta_net("googlenet"), image, 0.0, objective="layer:inception4a")
    with pytest.raises(UnsupportedNetworkError, match="fc6"):
        occlusion_fast(vgg19, image, 0.0, objective="layer:fc6")
    with pytest.raises(UnsupportedNetworkError, match="class"):  # the top class's logit: Captum's job
        occlusion_fast(vgg19, image, 0.0, objective="class")
    assert issubclass(UnsupportedNetworkError, ValueError)  # callers that catch ValueError fall back too
    with pytest.raises(ValueError, match="channel 64 does not exist"):
        occlusion_fast(vgg19, image, 0.0, objective="channel:conv1_2:64")
    with pytest.raises(ValueError, match="larger than the image"):
        occlusion_fast(vgg19, image, 0.0, window=65)
    with pytest.raises(ValueError, match="stride"):
        occlusion_windows(64, 64, 8, 9)
    with pytest.raises(ValueError, match="objective must be style, layer:NAME"):  # the one parser's words
        occlusion_fast(vgg19, image, 0.0, objective="nope")
    with pytest.raises(ValueError, match="2 layer weights for 1 style layers"):
        occlusion_fast(vgg19, image, 0.0, layers=("relu1_1",), layer_weights=[1.0, 2.0])
