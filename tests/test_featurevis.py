"""Feature visualization: transforms, parameterizations, objectives, the run, and
dataset examples. Mechanics on untrained seeded weights at 32-64 px; the results a user looks
at (smoother pictures with the Fourier + decorrelated + robust recipe, top crops that excite
their unit) on the real VGG19 in the ``realweights`` tier at the end."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from PIL import Image

from explorer.featurevis import examples as D
from explorer.featurevis import render as FV
from explorer.io import grids
from explorer.optim import objectives as O
from explorer.optim import transforms as T
from explorer.core.runs import run_to_end


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small(**kw) -> FV.FeatureVisSettings:
    """A quick run: VGG19 relu2_1 at 48 px, 3 steps, fp32 (bit-for-bit reproducible)."""
    base = dict(layer="relu2_1", channels=(3,), size=48, steps=3, precision="fp32", transforms=("jitter:2",))
    base.update(kw)
    return FV.FeatureVisSettings(**base)


# ----------------------------------------------------------------------------- transforms

def test_pad_grows_each_side_by_p_with_the_fill():
    x = torch.rand(2, 3, 10, 12)
    y = T.Pad(3)(x, gen())
    assert y.shape == (2, 3, 16, 18)
    assert torch.equal(y[..., 3:13, 3:15], x)
    assert torch.all(y[..., :3, :] == 0.5) and torch.all(y[..., :, -3:] == 0.5)
    r = T.Pad(2, mode="reflect")(x, gen())
    assert r.shape == (2, 3, 14, 16) and torch.equal(r[..., 0, 2:-2], x[..., 2, :])
    assert T.Pad(0)(x, gen()) is x


def test_jitter_rolls_by_its_draw_and_stays_within_k():
    x = torch.arange(2 * 3 * 9 * 9, dtype=torch.float32).view(2, 3, 9, 9)
    j = T.Jitter(3)
    for seed in range(5):
        dy, dx = j.draw_from(gen(seed))
        assert -3 <= dy <= 3 and -3 <= dx <= 3
        assert torch.equal(j(x, gen(seed)), torch.roll(x, (dy, dx), dims=(-2, -1)))
    offsets = {j.draw_from(gen(s)) for s in range(40)}
    assert len(offsets) > 10  # really random
    assert torch.equal(T.Jitter(0)(x, gen()), x)


def test_rotate_by_zero_is_identity_and_by_90_is_rot90():
    x = torch.rand(1, 3, 9, 9)
    assert T.rotate_image(x, 0.0) is x
    assert T.RandomRotate(0)(x, gen()) is x
    # anticlockwise 90 degrees on a square with an odd side maps the pixel grid onto itself
    assert torch.allclose(T.rotate_image(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    y = T.RandomRotate(10)(x, gen())
    assert y.shape == x.shape and not torch.equal(y, x)


def test_scale_one_is_identity_and_scale_changes_the_size():
    x = torch.rand(1, 3, 20, 30)
    assert T.scale_image(x, 1.0) is x
    assert T.RandomScale(0)(x, gen()) is x
    assert T.scale_image(x, 1.5).shape == (1, 3, 30, 45)
    sizes = {T.RandomScale(0.2)(x, gen(s)).shape[-1] for s in range(20)}
    assert min(sizes) >= 24 and max(sizes) <= 36 and len(sizes) > 3


def test_composed_transforms_are_seeded_differentiable_and_leave_the_global_rng_alone():
    t = T.compose(T.STANDARD_TRANSFORMS)
    assert t.spec == T.STANDARD_TRANSFORMS
    x = torch.rand(2, 3, 40, 40, requires_grad=True)
    state = torch.random.get_rng_state()
    a, b, c = t(x, gen(1)), t(x, gen(1)), t(x, gen(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b) and (a.shape != c.shape or not torch.equal(a, c))
    a.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("spec, message", [
    ("blur:3", "unknown transform"), ("pad:x", "needs a number"), ("jitter:1.5", "whole number"),
    ("scale:2", "scale must be"), ("rotate:400", "rotate must be"), ("pad:-1", "between 0 and 4096"),
])
def test_bad_transform_specs_are_one_line_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        T.parse_transform(spec)


def test_dreams_jitter_api_is_unchanged():
    import random

    r = random.Random(0)
    assert T.Jitter(4).draw(random.Random(0)) == (r.randint(-4, 4), r.randint(-4, 4))
    x = torch.rand(1, 3, 5, 5)
    assert torch.equal(T.unroll(T.roll(x, (2, -1)), (2, -1)), x)


# ----------------------------------------------------------------------------- parameterizations

@pytest.mark.parametrize("kind, decorrelate", [("pixel", False), ("pixel", True), ("fourier", False), ("fourier", True)])
def test_parameterizations_give_images_in_0_1_of_the_right_shape(kind, decorrelate):
    p = FV.ImageParam.random(kind, 2, (20, 33), decorrelate=decorrelate, sd=1.0, generator=gen())
    img = p()
    assert img.shape == (2, 3, 20, 33) and img.dtype == torch.float32
    assert 0.0 < float(img.detach().min()) and float(img.detach().max()) < 1.0
    assert p.raw.requires_grad and p.raw.shape == ((2, 3, 20, 33) if kind == "pixel" else (2, 3, 20, 17, 2))
    img.sum().backward()
    assert p.raw.grad is not None


@pytest.mark.parametrize("kind, decorrelate", [("pixel", False), ("pixel", True), ("fourier", True)])
def test_parameterizations_invert(kind, decorrelate):
    """from_image(image)() gives the image back (odd and even sides)."""
    image = torch.rand(2, 3, 15, 22) * 0.98 + 0.01
    p = FV.ImageParam.from_image(image, kind, decorrelate=decorrelate)
    assert torch.allclose(p(), image, atol=1e-5)


def test_colour_decorrelation_is_lucents_matrix_and_inverts():
    t = torch.randn(1, 3, 4, 5)
    assert torch.allclose(FV.correlate_colors(FV.decorrelate_colors(t)), t, atol=1e-5)
    one = torch.zeros(1, 3, 1, 1)
    one[0, 0] = 1.0  # the first decorrelated axis maps to the matrix's first column, normalized
    col = FV.COLOR_CORRELATION_SVD_SQRT[:, 0] / FV.COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()
    assert torch.allclose(FV.decorrelate_colors(one).flatten(), col)


def test_fourier_scale_by_hand():
    s = FV.fourier_scale(8, 8, decay=1.0)
    assert s.shape == (8, 5)
    assert s[0, 0] == pytest.approx(8.0)         # f = 0 -> 1 / (1 / max(H, W))
    assert s[0, 1] == pytest.approx(8.0)         # f = 1/8 -> 8
    assert s[0, 4] == pytest.approx(2.0)         # f = 1/2 (Nyquist) -> 2
    assert s[4, 4] == pytest.approx(1 / math.sqrt(0.5))
    assert torch.all(FV.fourier_scale(8, 8, decay=0.0) == 1.0)


def test_same_seed_same_start_different_seed_different():
    a = FV.ImageParam.random("fourier", 1, 16, generator=gen(3))()
    b = FV.ImageParam.random("fourier", 1, 16, generator=gen(3))()
    c = FV.ImageParam.random("fourier", 1, 16, generator=gen(4))()
    assert torch.equal(a, b) and not torch.equal(a, c)


# ----------------------------------------------------------------------------- objectives by hand

def acts_of(t: torch.Tensor) -> dict:
    return {"l": t}


def test_neuron_is_the_centre_of_the_channel():
    a = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).view(2, 3, 5, 4)
    v = O.neuron("l", 1)(acts_of(a))
    assert torch.equal(v, a[:, 1, 2, 2])
    assert torch.equal(O.neuron("l", 2, y=0, x=3)(acts_of(a)), a[:, 2, 0, 3])
    with pytest.raises(ValueError, match="channel 5 does not exist"):
        O.neuron("l", 5)(acts_of(a))


def test_direction_is_the_mean_dot_product_over_positions():
    a = torch.zeros(1, 2, 2, 2)
    a[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a[0, 1] = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    # v = (2, -1): positions give 2*1-1, 2*2-1, 2*3-1, 2*4-1 = 1, 3, 5, 7 -> mean 4
    assert O.direction("l", [2.0, -1.0])(acts_of(a)).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="2 channels; the direction has 3"):
        O.direction("l", [1.0, 0.0, 0.0])(acts_of(a))


def test_diversity_by_hand():
    one = torch.zeros(1, 2, 1, 2)
    one[0, 0, 0, 0] = 1.0  # Gram diag(1, 0)
    other = torch.zeros(1, 2, 1, 2)
    other[0, 1, 0, 1] = 1.0  # Gram diag(0, 1): orthogonal to the first
    assert O.diversity("l")(acts_of(torch.cat([one, one]))).tolist() == pytest.approx([-1.0, -1.0])
    assert O.diversity("l")(acts_of(torch.cat([one, other]))).tolist() == pytest.approx([0.0, 0.0])
    # three images, two alike: image 0 has similarities (1, 0) to the others -> -1/2
    assert O.diversity("l")(acts_of(torch.cat([one, one, other]))).tolist() == pytest.approx([-0.5, -0.5, 0.0])
    assert O.diversity("l")(acts_of(one)).tolist() == [0.0]


def test_objectives_compose():
    a = torch.rand(2, 3, 4, 4)
    obj = O.channel("l", [0]) - 0.5 * O.neuron("l", 1) + 2.0 * O.diversity("l")
    total, values, _ = obj.evaluate(acts_of(a))
    want = a[:, 0].mean(dim=(1, 2)) - 0.5 * a[:, 1, 2, 2] + 2.0 * O.diversity("l")(acts_of(a))
    assert torch.allclose(total, want)
    assert set(values) == {"objective", "diversity"}


# ----------------------------------------------------------------------------- settings

def test_settings_canonicalize_validate_and_round_trip():
    s = FV.FeatureVisSettings(channels="3, 7", transforms="pad:4,jitter:2", objective="direction", weights="1,-0.5")
    assert s.channels == (3, 7) and s.transforms == ("pad:4", "jitter:2") and s.weights == (1.0, -0.5)
    assert s.layer == "relu4_1"
    before = dataclasses.asdict(s)
    s.validate()
    assert dataclasses.asdict(s) == before  # validate() changes nothing
    again = FV.FeatureVisSettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s


@pytest.mark.parametrize("kw, message", [
    (dict(objective="bogus"), "objective must be one of"),
    (dict(parameterization="wavelet"), "parameterization must be one of"),
    (dict(channels=()), "at least one"),
    (dict(channels=(1, 1)), "twice"),
    (dict(channels="a,b"), "numbers separated by commas"),
    (dict(weights=(1.0,)), "direction's entries"),
    (dict(separate=True, channels=(1, 2), batch=3), "multiple of the 2 channels"),
    (dict(separate=True, objective="direction"), "not one direction"),
    (dict(transforms=("spin:3",)), "unknown transform"),
    (dict(lr=0.0), "lr must be >"),
    (dict(size=8), "size must be between"),
    (dict(decorrelate="yes"), "true or false"),
])
def test_bad_settings_are_one_line_value_errors(kw, message):
    with pytest.raises(ValueError, match=message) as info:
        FV.FeatureVisSettings(**kw)
    assert "\n" not in str(info.value)


def test_unknown_setting_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown setting.*valid:"):
        FV.FeatureVisSettings.from_dict({"chanel": 3})


# ----------------------------------------------------------------------------- the run

def test_run_shapes_events_and_report(vgg19):
    run = FV.FeatureVisualization(vgg19, small(steps=4, preview_every=2, batch=2, diversity=0.5))
    events = list(run)
    assert [e.step for e in events] == [0, 1, 2, 3, 4] and events[-1].done
    assert all(set(e.losses) == {"objective", "diversity"} for e in events[1:])
    assert events[2].preview.shape == (1, 3, 48, 96) and events[1].preview is None
    res = run.result()
    assert res.image.shape == (2, 3, 48, 48) and 0 < float(res.image.min()) and float(res.image.max()) < 1
    assert len(res.history) == 4 and res.stopped is None
    assert any("untrained" in n for n in res.notes)
    rep = json.loads(json.dumps(res.report()))
    assert rep["settings"]["transforms"] == ["jitter:2"] and rep["weights"] == "untrained"


def test_same_seed_same_image_different_seed_different(vgg19):
    a = run_to_end(FV.FeatureVisualization(vgg19, small(seed=1))).image
    b = run_to_end(FV.FeatureVisualization(vgg19, small(seed=1))).image
    c = run_to_end(FV.FeatureVisualization(vgg19, small(seed=2))).image
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_the_objective_rises(vgg19):
    res = run_to_end(FV.FeatureVisualization(vgg19, small(steps=12, transforms=(), parameterization="pixel",
                                                          decorrelate=False, lr=0.1)))
    assert res.history[-1]["objective"] > res.history[0]["objective"]


@pytest.mark.parametrize("objective", ["neuron", "direction"])
def test_other_objectives_run(vgg19, objective):
    res = run_to_end(FV.FeatureVisualization(vgg19, small(objective=objective, channels=(1, 4))))
    assert res.image.shape == (1, 3, 48, 48) and len(res.history) == 3


def test_class_objective_on_the_untrained_classifier(vgg19):
    res = run_to_end(FV.FeatureVisualization(vgg19, small(objective="class", channels=(281,), steps=1, size=32)))
    assert res.objective.startswith("logit 281") and res.image.shape == (1, 3, 32, 32)


def test_separate_images_each_optimize_their_channel(vgg19):
    """With separate=True image i's gradient comes only from its own channel (the one-hot masks)."""
    s = FV.channel_grid_settings("relu2_1", [3, 9], size=48, steps=2, precision="fp32", transforms=())
    run = FV.FeatureVisualization(vgg19, s)
    assert run.labels == ["relu2_1 channel 3", "relu2_1 channel 9"]
    run_to_end(run)
    grid = run.result().grid(cell=40)
    assert isinstance(grid, Image.Image) and grid.width == 2 * 40 + 4
    assert grid.height > 40 + 14  # "relu2_1 channel 3" wraps in a 40 px cell rather than being cut
    x = run.param().detach().requires_grad_(True)
    obj = run.objective({"relu2_1": vgg19.features(x, ["relu2_1"])["relu2_1"]})
    obj[0].backward()
    assert x.grad[1].abs().max() == 0 and x.grad[0].abs().max() > 0


def test_start_image_is_kept_with_no_steps(vgg19):
    start = torch.rand(1, 3, 40, 40) * 0.9 + 0.05
    run = FV.FeatureVisualization(vgg19, small(steps=0, parameterization="fourier"), start=start)
    assert torch.allclose(run_to_end(run).image, start, atol=1e-4)


def test_a_run_does_not_touch_the_global_rng(vgg19):
    state = torch.random.get_rng_state()
    run_to_end(FV.FeatureVisualization(vgg19, small(transforms=T.STANDARD_TRANSFORMS, size=40)))
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize("kw, message", [
    (dict(channels=(999,)), "has 128 channels"),
    (dict(layer="nope"), "no layer 'nope'"),
    (dict(size=16), "too small"),
])
def test_bad_runs_fail_before_any_work(vgg19, kw, message):
    with pytest.raises(ValueError, match=message):
        FV.FeatureVisualization(vgg19, small(**kw))


def test_comparison_settings_and_high_frequency_share():
    names = [n for n, _ in FV.comparison_settings(small())]
    assert names == ["pixel", "pixel + transforms", "fourier + decorrelated", "fourier + decorrelated + transforms"]
    noise = torch.rand(1, 3, 64, 64, generator=gen())
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    smooth = torch.stack([x, y, x * y]).unsqueeze(0)
    assert FV.high_frequency_share(noise) == pytest.approx(1 - math.pi * 0.25 ** 2, abs=0.03)
    assert FV.high_frequency_share(smooth) < 0.05
    with pytest.raises(ValueError, match="cutoff"):
        FV.high_frequency_share(noise, cutoff=0.0)


def test_image_grid_layout():
    g = grids.image_grid(torch.rand(5, 3, 10, 20), ["a"] * 5, cols=3, cell=20)
    assert g.size == (3 * 20 + 2 * 4, 2 * (10 + 14) + 4)
    with pytest.raises(ValueError, match="2 labels for 5 images"):
        grids.image_grid(torch.rand(5, 3, 10, 20), ["a", "b"])


# ----------------------------------------------------------------------------- dataset examples

def test_position_box_by_hand():
    # relu3_1 of VGG: field 24 px, stride 4; position i maps to 4 i + 1.5
    assert D.position_box(24, (8, 8), (16, 16), (64, 64)) == (22, 22, 46, 46)
    assert D.position_box(24, (0, 15), (16, 16), (64, 64)) == (40, 0, 64, 24)  # shifted inside
    assert D.position_box(300, (1, 1), (2, 2), (64, 64)) == (0, 0, 64, 64)     # field larger than the image
    with pytest.raises(ValueError, match="outside"):
        D.position_box(24, (16, 0), (16, 16), (64, 64))


def _write(folder, name, array):
    Image.fromarray(array).save(folder / name)


@pytest.fixture
def planted(tmp_path):
    """Four dark 64 px pictures; one has a bright 8 x 8 patch at rows 40-47, columns 12-19."""
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(4):
        a = (rng.random((64, 64, 3)) * 40).astype(np.uint8)
        if i == 2:
            a[40:48, 12:20] = 255
        _write(tmp_path, f"img{i}.png", a)
    return tmp_path


def test_top_crop_covers_the_planted_patch(vgg19, planted):
    D.clear_cache()
    layer = "relu3_1"
    run = D.DatasetExamples(vgg19, layer, 0, planted, k=4, size=64, precision="fp32")
    events = list(run)
    assert events[-1].done and events[-1].step == 4
    index = run.index
    plain = [i for i, n in enumerate(index.names) if n != "img2.png"]
    hit = index.names.index("img2.png")
    # the channel that tells the patch apart best
    c = int((index.values[hit] - index.values[plain].max(dim=0).values).argmax())
    res = run.result().for_channel(c, k=2)
    top = res.examples[0]
    assert top.name == "img2.png" and top.value == pytest.approx(float(index.values[hit, c]))
    left, t, right, bottom = top.box
    assert right - left == 24 and bottom - t == 24 and top.crop.size == (24, 24)
    assert left <= 12 and right >= 20 and t <= 40 and bottom >= 48  # the whole patch is in the crop
    assert json.loads(json.dumps(res.report()))["examples"][0]["name"] == "img2.png"


def test_broken_files_are_skipped_and_reported(vgg19, planted):
    (planted / "notes.txt").write_text("not an image")
    data = (planted / "img0.png").read_bytes()
    (planted / "cut.png").write_bytes(data[: len(data) // 2])
    run = D.DatasetExamples(vgg19, "relu2_1", 1, planted, k=10, size=48, precision="fp32", use_cache=False)
    events = list(run)
    res = run.result()
    assert sorted(n for n, _ in res.skipped) == ["cut.png", "notes.txt"]
    assert all("\n" not in why for _, why in res.skipped)
    assert len(res.examples) == 4 and res.stopped is None
    assert any("skipped 2 files" in n for n in res.notes)
    assert any(e.message and "cut.png" in e.message for e in events)


def test_prepare_never_makes_an_image_larger_than_its_working_size(monkeypatch):
    """A 32 x 4000 strip once became 224 x 28,000 px before the crop (32 x 200,000: 1.5 GB)."""
    import numpy as np

    made = []
    resize = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize",
                        lambda self, size, *a, **k: made.append(size) or resize(self, size, *a, **k))
    strip = Image.fromarray((np.random.default_rng(0).random((4000, 32, 3)) * 255).astype(np.uint8))
    x = D.prepare(strip, 224)
    assert x.shape == (1, 3, 224, 224) and made == [(224, 224)]
    wide = Image.new("RGB", (300, 100), (0, 0, 0))
    wide.paste((255, 255, 255), (100, 0, 200, 100))  # the central square is white
    assert float(D.prepare(wide, 64).min()) > 0.95


def test_thin_images_are_skipped_and_listed_like_unreadable_files(vgg19, planted):
    import numpy as np

    _write(planted, "strip.png", np.full((40, 400, 3), 128, dtype=np.uint8))     # 10 : 1
    _write(planted, "panorama.png", np.full((40, 300, 3), 128, dtype=np.uint8))  # 7.5 : 1, kept
    run = D.DatasetExamples(vgg19, "relu2_1", 1, planted, k=10, size=48, precision="fp32", use_cache=False)
    events = list(run)
    res = run.result()
    assert [n for n, _ in res.skipped] == ["strip.png"]
    assert res.skipped[0][1] == ("dataset image 'strip.png': too thin for a dataset example: its long side is 10 "
                                 "times its short side (at most 8 times)")
    assert "panorama.png" in run.index.names and len(res.examples) == 5
    assert any("skipped 1 file" in n for n in res.notes)
    assert any(e.message and "strip.png" in e.message for e in events)


def test_a_folder_without_images_stops_with_a_reason(vgg19, tmp_path):
    (tmp_path / "a.txt").write_text("x")
    run = D.DatasetExamples(vgg19, "relu2_1", 1, tmp_path, size=48, precision="fp32")
    run_to_end(run)
    assert run.stopped and run.result().examples == [] and run.result().skipped[0][0] == "a.txt"


def test_the_index_is_cached_per_folder_contents(vgg19, planted):
    D.clear_cache()
    first = D.DatasetExamples(vgg19, "relu2_1", 1, planted, size=48, precision="fp32")
    run_to_end(first)
    again = D.DatasetExamples(vgg19, "relu2_1", 5, planted, size=48, precision="fp32")
    events = list(again)
    assert again.cached and len(events) == 1 and again.index is first.index
    _write(planted, "img9.png", (torch.rand(64, 64, 3) * 255).to(torch.uint8).numpy())
    changed = D.DatasetExamples(vgg19, "relu2_1", 1, planted, size=48, precision="fp32")
    run_to_end(changed)
    assert not changed.cached and len(changed.index.names) == 5


def test_default_dataset_is_the_skimage_samples(vgg19):
    run = D.DatasetExamples(vgg19, "relu1_2", 0, k=2, size=48, precision="fp32", batch=4, use_cache=False)
    events = list(run)
    assert len(events) == 1 + 2 + 1 and len(run.index.names) == len(D.sample_sources())
    assert len(run.result().examples) == 2


@pytest.mark.parametrize("kw, message", [
    (dict(layer="fc8", channel=0), "no spatial map"),
    (dict(layer="relu2_1", channel=0, k=0), "k must be"),
    (dict(layer="relu2_1", channel=0, sources="/nonexistent/folder"), "not a folder"),
])
def test_bad_dataset_requests(vgg19, kw, message):
    with pytest.raises(ValueError, match=message):
        D.DatasetExamples(vgg19, **kw)


def test_a_channel_the_layer_lacks(vgg19, planted):
    with pytest.raises(ValueError, match="channel 500 does not exist"):
        run_to_end(D.DatasetExamples(vgg19, "relu2_1", 500, planted, size=48, use_cache=False))


# ----------------------------------------------------------------------------- real weights

@pytest.mark.realweights
def test_fourier_decorrelated_robust_is_smoother_than_pixels(real_vgg19):
    """Distill 2017's point, on the Caffe VGG19: after the same 48 Adam steps on relu4_1
    channel 50 (96 px), the Fourier + decorrelated + transformed picture has under 0.7 times the
    pixel picture's share of spectral power above a quarter cycle per pixel (measured 0.16 vs
    0.39; relu4_1-5_1 channels 1, 50, 200 all give 0.4-0.5 times)."""
    base = FV.FeatureVisSettings(layer="relu4_1", channels=(50,), size=96, steps=48)
    cmp = dict(FV.comparison_settings(base))
    pixel = run_to_end(FV.FeatureVisualization(real_vgg19, cmp["pixel"]))
    robust = run_to_end(FV.FeatureVisualization(real_vgg19, cmp["fourier + decorrelated + transforms"]))
    for r in (pixel, robust):  # the channel is alive and both runs optimized it
        assert r.history[-1]["objective"] > 10 * max(r.history[0]["objective"], 1e-3)
    assert FV.high_frequency_share(robust.image) < 0.7 * FV.high_frequency_share(pixel.image)


@pytest.mark.realweights
def test_top_dataset_crop_excites_its_channel_more_than_the_median_crop(real_vgg19, shared_images):
    """Over the shared pictures and the scikit-image samples (14 images, 128 px), each of three
    relu3_1 channels responds more to its top crop alone than to the median image's crop."""
    sources = D.folder_sources(shared_images) + D.sample_sources()
    run = D.DatasetExamples(real_vgg19, "relu3_1", 0, sources, k=len(sources), size=128, use_cache=False)
    run_to_end(run)
    assert {"LICENSE-neural-style", "SOURCE.md"} <= {n for n, _ in run.result().skipped}
    for c in (5, 40, 100):
        res = run.result().for_channel(c)
        top, median = res.examples[0], res.examples[len(res.examples) // 2]
        assert top.value > median.value
        assert D.crop_value(real_vgg19, "relu3_1", c, top.crop) > D.crop_value(real_vgg19, "relu3_1", c, median.crop)


def test_stopped_runs_report_themselves_as_partial(vgg19, planted):
    run = FV.FeatureVisualization(vgg19, small(steps=5))
    for ev in run:
        if ev.step == 2:
            run.stop("stopped by the user")
            break
    rep = run.report()
    assert rep["partial"] and rep["stopped"] == "stopped by the user" and len(rep["history"]) == 2
    ex = D.DatasetExamples(vgg19, "relu2_1", 0, planted, size=48, batch=2, use_cache=False)
    for ev in ex:
        if ev.step == 2:
            ex.stop("stopped by the user")
            break
    assert ex.report()["partial"] and ex.result().examples == []


def test_grid_progress_counts_the_steps_set_and_names_the_extra_ones(vgg19, planted):
    from explorer.app.runs import progress_text
    from explorer.featurevis.grid import ComparisonRun, GridRun

    run = GridRun(vgg19, small(steps=3), sources=planted, k=1)
    events = list(run)
    n = len(run.examples.sources)
    vis = [e for e in events if e.stage.startswith("visualization")]
    assert [e.step for e in vis] == [0, 1, 2, 3] and {e.total for e in events} == {3 + n}
    assert progress_text(vis[2]).startswith(f"Step 2 of {3 + n} · visualization step 2 of 3, then {n} dataset images")
    assert all(e.stage.startswith("dataset examples") for e in events[len(vis):])
    comparison = list(ComparisonRun(vgg19, small(steps=2)))
    assert comparison[-1].stage.endswith(", step 2 of 2") and comparison[-1].total == 4 * 2


def test_grid_labels_wrap_to_fit_their_cell_and_keep_every_character():
    from PIL import Image, ImageDraw, ImageFont

    labels = ["chelsea (cat) 0.93", "immunohistochemistry", "a"]
    g = grids.image_grid(torch.rand(3, 3, 16, 48), labels, cols=3, cell=48)
    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), ImageFont.load_default()
    for label in labels:
        lines = grids.wrap_label(draw, label, 48 - 4, font)
        assert "".join(lines).replace(" ", "") == label.replace(" ", "")  # nothing cut
        for line in lines:
            left, _, right, _ = draw.textbbox((0, 0), line, font=font)
            assert right - left <= 48 - 4, line
    assert len(grids.wrap_label(draw, labels[0], 44, font)) > 1 and g.height > 16 + 14  # the strip grew
    assert grids.wrap_label(draw, "a", 44, font) == ["a"]


def test_time_estimate_is_steps_images_pixels_times_a_per_step_cost():
    from explorer.featurevis import grid as G

    s = FV.FeatureVisSettings(model="vgg19", channels=(0, 1, 2, 3), separate=True, batch=4, steps=64, size=128)
    lo, hi, basis = G.estimate_range(s, None)
    w = G.work_units(s.steps, s.batch, s.size)
    assert basis == "reference" and w == 64 * 4
    assert (lo, hi) == pytest.approx((w * G.REFERENCE_STEP_SECONDS[0], w * G.REFERENCE_STEP_SECONDS[1]))
    assert G.work_units(64, 4, 256) == pytest.approx(4 * w)  # four times the pixels, four times the work
    # after a run: that run's own time per unit of work, scaled to these settings
    report = {"settings": {"model": "vgg19", "steps": 8, "batch": 1, "size": 64}, "seconds": 2.0}
    lo, hi, basis = G.estimate_range(s, report)
    assert basis == "measured" and lo == hi == pytest.approx(2.0 / G.work_units(8, 1, 64) * w)
    assert G.estimate_range(s, {**report, "settings": {**report["settings"], "model": "googlenet"}})[2] == "reference"
