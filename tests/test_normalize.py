"""The VGG normalized as in Gatys et al. (explorer.nets.normalize): the same features up to one
positive factor per channel, each channel's mean activation 1 on the images it was measured on,
the written file read back through load_model and the command line, and the command's checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from explorer.io import images

from explorer.core import recipes
from explorer.nets import models, normalize

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64


def _relus():
    return [n for n in models.spatial_layers("vgg19") if n.startswith("relu")]


@pytest.fixture(scope="module")
def normalized(tmp_path_factory):
    """An untrained conv-only VGG19 file (seed 3), its normalization on the samples at 64 px, and
    the normalized file written and loaded back."""
    folder = tmp_path_factory.mktemp("normalize")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        sd = torchvision.models.vgg19(weights=None).features.state_dict()
    source = folder / "vgg19-untrained-conv.pth"
    torch.save({f"features.{k}": v for k, v in sd.items()}, source)
    net = models.load_model("vgg19", weights=source, device="cpu")
    batch = normalize.normalization_images(size=SIZE)
    events = []
    result = normalize.normalize_vgg(net, batch, size=SIZE, progress=events.append)
    out = normalize.write_normalized(net, result, folder / "vgg19-normalized.pth")
    return {"net": net, "batch": batch, "result": result, "out": out, "source": source, "events": events,
            "normalized": models.load_model("vgg19", weights=out, device="cpu")}


def test_each_channel_mean_is_one_on_the_images_it_was_measured_on(normalized):
    means = normalize.channel_means(normalized["normalized"], [x for _, x in normalized["batch"]], _relus())
    result = normalized["result"]
    for layer, m in means.items():
        active = result.means[layer] > 0
        assert torch.allclose(m[active], torch.ones_like(m[active]), atol=1e-3), layer
        assert (m[~active] == 0).all() and sorted(result.inactive.get(layer, [])) == torch.nonzero(~active).flatten().tolist()
    assert [e.step for e in normalized["events"]] == list(range(1, 17)) and normalized["events"][-1].total == 16


def test_features_are_the_same_up_to_one_positive_factor_per_channel(normalized):
    """Per-channel scaling keeps, for every channel, where it is strongest (its argmax position)
    and every activation up to that channel's factor (the mean it had before)."""
    net, norm, result = normalized["net"], normalized["normalized"], normalized["result"]
    x = torch.rand(1, 3, 80, 72, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = net.features(x, _relus()), norm.features(x, _relus())
    for layer in _relus():
        factor = normalize.channel_means(net, [x for _, x in normalized["batch"]], [layer])[layer]
        factor = torch.where(factor > 0, factor, torch.ones_like(factor)).float().view(1, -1, 1, 1)
        torch.testing.assert_close(b[layer] * factor, a[layer], rtol=1e-3, atol=1e-5 * float(a[layer].abs().max()))
        flat_a, flat_b = a[layer].flatten(2), b[layer].flatten(2)
        live = flat_a.amax(2) > 0  # a channel that is 0 everywhere has no argmax position
        assert torch.equal(flat_a.argmax(2)[live], flat_b.argmax(2)[live]), layer
        assert result.means[layer].numel() == a[layer].shape[1]


def test_the_file_keeps_the_source_keys_and_a_record_that_reaches_the_recipe(normalized):
    norm = normalized["normalized"]
    raw = torch.load(normalized["out"], weights_only=True)
    assert set(raw["state_dict"]) == set(torch.load(normalized["source"], weights_only=True))
    record = json.loads(norm.weights.derivation)
    assert record["source"]["file"] == "vgg19-untrained-conv.pth" and record["source"]["digest"].startswith("sha256:")
    assert record["size"] == SIZE and record["images"][0] == "astronaut" and len(record["images"]) == 7
    assert norm.weights.label.startswith("VGG19, normalized as in Gatys et al. (vgg19-normalized.pth")
    block = recipes.run_info("stylize", {"model": "vgg19"}, norm.weights, "cpu", "fp32")["run"]["weights"]
    assert block["derivation"] == record and block["digest"] == norm.weights.digest
    plain = recipes.run_info("stylize", {"model": "vgg19"}, normalized["net"].weights, "cpu", "fp32")["run"]["weights"]
    assert "derivation" not in plain


def test_load_normalized_derives_once_into_the_cache(normalized, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(normalize, "DEFAULT_SIZE", SIZE)
    monkeypatch.setattr(normalize, "source_file", lambda name: normalized["source"])
    net = normalize.load_normalized("vgg19", device="cpu")
    files = list((tmp_path / "cache" / "weights").iterdir())
    assert [f.name for f in files] == [net.weights.source.rsplit("/", 1)[-1]]
    assert f"-{SIZE}px.pth" in files[0].name and not any(f.name.startswith(".") for f in files)
    mtime = files[0].stat().st_mtime_ns
    again = normalize.load_normalized("vgg19", device="cpu")  # read back, not derived again
    assert files[0].stat().st_mtime_ns == mtime and again.weights.digest == net.weights.digest
    with pytest.raises(ValueError, match="only VGG networks"):
        normalize.load_normalized("mobilenet_v2")


def _cli(*args, cwd=None):
    env = {**os.environ, "EXPLORER_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=600)


def test_the_command_writes_the_file_atomically_and_it_loads_back_through_weights(normalized, tmp_path):
    out = tmp_path / "n.pth"
    r = _cli("weights", "normalize", "--weights", str(normalized["source"]), "--size", str(SIZE), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"ok {out}" and "layer 16/16, normalizing conv5_4" in r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["n.pth"]  # no temporary file left beside it
    net = models.load_model("vgg19", weights=out)
    x = normalized["batch"][0][1]
    with torch.no_grad():
        a, b = normalized["normalized"].features(x, ["relu5_4"]), net.features(x, ["relu5_4"])
    assert torch.equal(a["relu5_4"].flatten(2).argmax(2), b["relu5_4"].flatten(2).argmax(2))
    torch.testing.assert_close(a["relu5_4"], b["relu5_4"])


@pytest.mark.parametrize("args, message", [
    (["--size", "8"], "--size must be from 32 to 4096 px"),
    (["--images", "/nonexistent-folder"], "image folder /nonexistent-folder: not a folder"),
    (["--no-samples"], "no images to normalize on"),
    (["--model", "vgg16"], "is not a vgg16 state_dict"),
])
def test_the_command_refuses_bad_input_in_one_line(normalized, tmp_path, args, message):
    out = tmp_path / "n.pth"
    r = _cli("weights", "normalize", "--weights", str(normalized["source"]), "-o", str(out), *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def test_the_command_refuses_an_output_on_its_source_and_a_normalized_source(normalized, tmp_path):
    r = _cli("weights", "normalize", "--weights", str(normalized["source"]), "-o", str(normalized["source"]))
    assert r.returncode == 2 and "an output never replaces an input" in r.stderr
    r = _cli("weights", "normalize", "--weights", str(normalized["out"]), "--size", "32", "-o", str(tmp_path / "x.pth"))
    assert r.returncode == 2 and "is already normalized" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_sidebar_offers_the_normalized_vgg19_and_the_page_runs_on_it(normalized, tmp_path, monkeypatch):
    from tests.helpers import open_app_page

    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "vgg19-untrained-conv.pth").write_bytes(normalized["source"].read_bytes())
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(folder))
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(normalize, "DEFAULT_SIZE", SIZE)
    at = open_app_page("pages/style_transfer.py", timeout=600)
    box = at.sidebar.checkbox(key="style_model_normalized") if any(
        c.key == "style_model_normalized" for c in at.sidebar.checkbox) else None
    assert box is not None, [c.key for c in at.sidebar.checkbox]
    assert box.label == "Normalized as in Gatys et al." and "sec. 2" in box.help
    box.check().run()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "Weights: VGG19, normalized as in Gatys et al. (vgg19-gatys-normalized-" in captions
    assert "from vgg19-untrained-conv.pth" in captions
    assert len(list((tmp_path / "cache" / "weights").iterdir())) == 1


# ----------------------------------------------------------------------------- the real Caffe VGG19

@pytest.fixture(scope="module")
def real_normalized(tmp_path_factory):
    from tests.conftest import shared_path

    base = models.load_model("vgg19", weights=str(shared_path("weights/vgg19-caffe-features-q8.pth")), device="cpu")
    result = normalize.normalize_vgg(base, normalize.normalization_images(size=256), size=256)
    out = normalize.write_normalized(base, result, tmp_path_factory.mktemp("real") / "vgg19-normalized.pth")
    return base, result, models.load_model("vgg19", weights=out, device="cpu")


@pytest.mark.realweights
def test_the_normalized_caffe_vgg19_gives_layer_means_near_1_on_held_out_pictures(real_normalized, shared_images):
    """Normalized on the 7 bundled samples at 256 px, measured on the 7 held-out pictures of the
    shared folder at 256 px: each layer's average channel mean was 0.98-2.74, while single
    channels ranged from 0.001 to 50: 7 samples (3 photos, 4 textures) fix each layer's scale,
    not each channel's."""
    base, result, net = real_normalized
    batch = [images.to_tensor(images.resize_long_side(images.load_image(p).image, 256))
             for p in sorted(shared_images.glob("*.jpg"))]
    relus = [n for n in models.spatial_layers("vgg19") if n.startswith("relu")]
    held = normalize.channel_means(net, batch, relus)
    for layer in relus:
        m = held[layer][result.means[layer] > 0]
        assert 0.9 < float(m.mean()) < 3.0, (layer, float(m.mean()))
        assert 0.5 < float(m.median()) < 2.0, (layer, float(m.median()))
