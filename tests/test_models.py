"""The shared model layer: canonical names, weights policy, hook-free features, threads."""

import threading

import pytest
import torch
import torchvision

from explorer.core import devices
from explorer.nets import models, registry, weights
from explorer.nets.models import UnknownLayerError, list_layers, load_model
from explorer.nets.weights import WeightsError


def test_vgg19_layers_have_canonical_names_in_forward_order():
    names = list_layers("vgg19")
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    for n in ("relu4_2", "conv5_4", "relu5_4", "pool5", "fc8"):
        assert n in names
    assert names.index("relu3_1") < names.index("relu4_1") < names.index("pool5")
    assert sum(n.startswith("conv") for n in names) == 16
    assert sum(n.startswith("conv") for n in list_layers("vgg16")) == 13


def test_inception_layers_have_canonical_names():
    g = list_layers("googlenet")
    assert g[:4] == ["conv1", "maxpool1", "conv2", "conv3"]
    assert g.index("inception3a") < g.index("inception4c") < g.index("inception5b")
    i3 = list_layers("inception_v3")
    assert i3[0] == "Conv2d_1a_3x3"
    assert i3.index("Mixed_5b") < i3.index("Mixed_6b") < i3.index("Mixed_7c")


def _state_dict_file(tmp_path, builder, seed=1, **kw):
    torch.manual_seed(seed)
    tv = builder(weights=None, **kw).eval()
    path = tmp_path / "weights.pth"
    torch.save(tv.state_dict(), path)
    return tv, path


def test_named_vgg_activations_equal_torchvision_features(tmp_path):
    tv, path = _state_dict_file(tmp_path, torchvision.models.vgg19)
    net = load_model("vgg19", weights=path, device="cpu")
    assert net.weights.kind == "file"
    x = torch.rand(2, 3, 64, 48)
    xn = (x - torch.tensor(registry.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(registry.IMAGENET_STD).view(1, 3, 1, 1)
    wanted = ["conv1_1", "relu2_1", "pool3", "relu4_2", "conv5_1"]
    got = net.features(x, wanted)
    with torch.no_grad():
        for name in wanted:
            k = net.layer_names.index(name)
            ref = tv.features[: k + 1](xn.clone())
            torch.testing.assert_close(got[name], ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net(x), tv(xn), rtol=1e-4, atol=1e-4)


def test_googlenet_logits_match_torchvision_with_transform_input(tmp_path):
    # torchvision's pretrained GoogLeNet uses transform_input=True on ImageNet-normalized input;
    # our walk feeds [-1, 1] input directly, which must give the same logits.
    tv, path = _state_dict_file(tmp_path, torchvision.models.googlenet, aux_logits=False,
                                transform_input=True, init_weights=True)
    net = load_model("googlenet", weights=path, device="cpu")
    x = torch.rand(1, 3, 64, 64)
    xn = (x - torch.tensor(registry.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(registry.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x), tv(xn), rtol=1e-4, atol=1e-4)


def test_inception_v3_features_and_minimum_size(tmp_path):
    net = load_model("inception_v3", weights="untrained", device="cpu")
    out = net.features(torch.rand(1, 3, 80, 80), ["Mixed_5b", "Mixed_6b"])
    assert out["Mixed_5b"].shape[1] == 256 and out["Mixed_6b"].shape[1] == 768
    with pytest.raises(ValueError, match="at least 75 px"):
        net.features(torch.rand(1, 3, 60, 60), ["Mixed_5b"])


def test_unknown_layer_lists_valid_names(vgg19):
    with pytest.raises(UnknownLayerError) as exc:
        vgg19.features(torch.rand(1, 3, 32, 32), ["relu9_9"])
    msg = str(exc.value)
    assert "relu9_9" in msg and "relu4_2" in msg and "\n" not in msg


def test_untrained_weights_are_seeded_labelled_and_reproducible(vgg19):
    again = load_model("vgg19", weights="untrained", device="cpu")
    assert vgg19.weights.kind == "untrained" and "untrained weights" in vgg19.weights.label
    for a, b in zip(vgg19.parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_model_is_frozen_eval_and_without_inplace_relus(vgg19):
    assert not any(p.requires_grad for p in vgg19.parameters())
    vgg19.train()
    assert not vgg19.training and not any(m.training for m in vgg19.modules())
    assert not any(isinstance(m, torch.nn.ReLU) and m.inplace for m in vgg19.modules())


def test_imagenet_weights_missing_gives_instructions(monkeypatch):
    monkeypatch.delenv("EXPLORER_ALLOW_UNTRAINED", raising=False)
    for w in ("imagenet", "auto"):
        with pytest.raises(WeightsError) as exc:
            load_model("vgg19", weights=w)
        msg = str(exc.value)
        assert "vgg19-dcbb9e9d.pth" in msg and "548 MB" in msg
        assert "python -m explorer weights download" in msg and "\n" not in msg


def test_auto_uses_untrained_only_when_allowed(monkeypatch):
    monkeypatch.setenv("EXPLORER_ALLOW_UNTRAINED", "1")
    net = load_model("googlenet", weights="auto", device="cpu")
    assert net.weights.untrained


def test_weights_dir_is_searched_for_torchvision_file_names(tmp_path, monkeypatch):
    torch.manual_seed(3)
    sd = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).state_dict()
    torch.save(sd, tmp_path / weights.weights_file_name("googlenet"))
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(tmp_path))
    net = load_model("googlenet", weights="imagenet", device="cpu")
    assert net.weights.kind == "imagenet" and str(tmp_path) in net.weights.source
    torch.testing.assert_close(net.body["conv1"].conv.weight, sd["conv1.conv.weight"])
    status = {r["model"]: r for r in weights.weights_status()}
    assert status["googlenet"]["found"] and status["vgg19"]["found"] is None


def test_bad_weights_files_give_one_line_errors(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    _, other = _state_dict_file(tmp_path, torchvision.models.googlenet, aux_logits=False, init_weights=True)
    for path, phrase in ((junk, "could not read"), (other, "is not a vgg19 state_dict"),
                         (tmp_path / "missing.pth", "not found")):
        with pytest.raises(WeightsError) as exc:
            load_model("vgg19", weights=path)
        assert phrase in str(exc.value) and "\n" not in str(exc.value)


def test_features_stop_after_the_deepest_requested_layer(vgg19):
    net = vgg19.truncated("relu3_1")
    assert net.layer_names[-1] == "relu3_1"
    assert net.body["conv1_1"].weight.data_ptr() == vgg19.body["conv1_1"].weight.data_ptr()

    class Boom(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("a layer deeper than requested was computed")

    net.body["conv3_1"] = Boom()
    net.features(torch.rand(1, 3, 32, 32), ["relu2_1"])  # must not reach conv3_1


def test_average_pooling_changes_deep_features_only(vgg19):
    x = torch.rand(1, 3, 64, 64)
    mx = vgg19.features(x, ["relu1_1", "relu3_1"], pooling="max")
    av = vgg19.features(x, ["relu1_1", "relu3_1"], pooling="avg")
    assert torch.equal(mx["relu1_1"], av["relu1_1"])
    assert not torch.allclose(mx["relu3_1"], av["relu3_1"])


def test_feature_extraction_registers_no_hooks(vgg19):
    vgg19.features(torch.rand(1, 3, 32, 32), ["relu5_1"])
    for m in vgg19.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


def test_two_threads_sharing_one_model_get_the_serial_results(vgg19):
    gen = torch.Generator().manual_seed(0)
    xs = [torch.rand(1, 3, 64, 64, generator=gen) for _ in range(2)]
    layers = ["relu1_1", "relu3_1", "relu5_1"]
    serial = [vgg19.features(x, layers) for x in xs]
    results: list = [None, None]
    barrier = threading.Barrier(2)

    def work(i):
        barrier.wait()
        for _ in range(3):
            results[i] = vgg19.features(xs[i], layers)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        for name in layers:
            assert torch.equal(results[i][name], serial[i][name])


def test_device_and_precision_resolution():
    assert devices.resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert devices.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        devices.resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            devices.resolve_device("cuda")
    cpu = torch.device("cpu")
    assert devices.resolve_precision("fp32", cpu) is None
    assert devices.resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="fp16 is not supported on the CPU"):
        devices.resolve_precision("fp16", cpu)
    with pytest.raises(ValueError):
        devices.resolve_precision("int4", cpu)


# ----------------------------------------------------------------------------- MobileNetV2, ResNet-50

@pytest.mark.parametrize("name, builder", [("mobilenet_v2", torchvision.models.mobilenet_v2),
                                           ("resnet50", torchvision.models.resnet50)])
def test_mobilenet_and_resnet_logits_and_blocks_equal_torchvision(tmp_path, name, builder):
    tv, path = _state_dict_file(tmp_path, builder)
    net = load_model(name, weights=path, device="cpu")
    x = torch.rand(1, 3, 64, 64)
    xn = (x - torch.tensor(registry.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(registry.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x), tv(xn), rtol=1e-4, atol=1e-4)
        if name == "mobilenet_v2":
            ref, got = tv.features[:7](xn), net.features(x, ["block6"])["block6"]
        else:
            ref = tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(xn))))))
            got = net.features(x, ["layer2_3"])["layer2_3"]
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_mobilenet_and_resnet_layer_names_and_receptive_fields():
    from explorer.nets.layers import receptive_field

    m = list_layers("mobilenet_v2")
    assert m[:3] == ["conv1", "block1", "block2"] and m[-3:] == ["conv_last", "avgpool", "fc"] and len(m) == 21
    r = list_layers("resnet50")
    assert r[:3] == ["conv1", "maxpool", "layer1_0"] and r[-3:] == ["layer4_2", "avgpool", "fc"]
    assert sum(n.startswith("layer3_") for n in r) == 6
    # by hand: 3x3 stem at stride 2; ResNet-50's last block sees 427 px at stride 32 (the shortcut
    # convolutions run beside the blocks and add nothing)
    assert receptive_field("mobilenet_v2", "conv1") == (3, 2)
    assert receptive_field("mobilenet_v2", "block1") == (7, 2)
    assert receptive_field("resnet50", "maxpool") == (11, 4)
    assert receptive_field("resnet50", "layer2_0") == (43, 8)
    assert receptive_field("resnet50", "layer4_2") == (427, 32)
    assert models.last_feature_layer("vgg16") == "relu5_3" and models.last_feature_layer("resnet50") == "layer4_2"


# ----------------------------------------------------------------------------- conv-only VGG files

def _conv_only_file(path, dtype=torch.float16):
    torch.manual_seed(3)
    sd = torchvision.models.vgg19(weights=None).features.state_dict()
    torch.save({f"features.{k}": v.to(dtype) for k, v in sd.items()}, path)
    return {f"features.{k}": v for k, v in sd.items()}


def test_conv_only_vgg_file_loads_and_ends_at_pool5(tmp_path):
    path = tmp_path / "vgg19-caffe-conv.pth"
    sd = _conv_only_file(path)
    net = load_model("vgg19", weights=path, device="cpu")
    assert net.layer_names[-1] == "pool5" and not net.has_classifier
    assert net.weights.conv_only and net.weights.label == "weights from vgg19-caffe-conv.pth (conv layers only)"
    torch.testing.assert_close(net.body["conv1_1"].weight, sd["features.0.weight"].half().float())
    assert net.features(torch.rand(1, 3, 64, 64), ["relu5_4"])["relu5_4"].shape[1] == 512
    with pytest.raises(models.NoClassifierError, match="has no classifier") as exc:
        net(torch.rand(1, 3, 64, 64))
    assert "vgg19-caffe-conv.pth" in str(exc.value) and "\n" not in str(exc.value)


def test_conv_only_file_is_found_in_the_weights_dir(tmp_path, monkeypatch):
    _conv_only_file(tmp_path / "vgg19-caffe-conv.pth", torch.bfloat16)
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(tmp_path))
    assert weights.weights_status(["vgg19"])[0]["found"] == str(tmp_path / "vgg19-caffe-conv.pth")
    net = load_model("vgg19", device="cpu")
    assert net.weights.kind == "file" and "vgg19-caffe-conv.pth" in net.weights.label
    assert weights.weights_status(["vgg16"])[0]["found"] is None  # vgg19-* is not VGG16's


def test_a_conv_file_that_does_not_fit_names_the_key(tmp_path):
    sd = _conv_only_file(tmp_path / "a.pth")
    del sd["features.34.bias"]
    torch.save(sd, tmp_path / "b.pth")
    with pytest.raises(WeightsError, match=r"missing \['features.34.bias'\]"):
        load_model("vgg19", weights=tmp_path / "b.pth")


def test_class_objectives_and_predictions_say_conv_only_weights_have_no_classifier(tmp_path, capsys):
    from explorer.activations import views
    from explorer.dream import deepdream as dream
    from tests.helpers import error_line, run_cli

    path = tmp_path / "vgg19-conv.pth"
    _conv_only_file(path)
    net = load_model("vgg19", weights=path)
    assert views.top_predictions(net, torch.rand(1, 3, 64, 64)) is None
    rc, _, err = run_cli(capsys, "dream", "gray", "-o", tmp_path / "d.png", "--model", "vgg19", "--objective", "class",
                         "--class", "tabby", "--weights", path, "--size", "64", "--quiet")
    assert rc == 2 and "no classifier" in error_line(err)
    rc, _, err = run_cli(capsys, "saliency", "sample:gravel", "-o", tmp_path / "s.png", "--objective", "class",
                         "--weights", path, "--size", "64", "--quiet")
    assert rc == 2 and "no classifier" in error_line(err)


# ----------------------------------------------------------------------------- damaged or wrong files

def _mobilenet_file(path, edit=None):
    """A MobileNetV2 state dict (untrained values; its BatchNorm counters are int64) changed by
    ``edit(sd)`` and saved to ``path``; returns the dict saved."""
    torch.manual_seed(2)
    sd = torchvision.models.mobilenet_v2(weights=None).state_dict()
    if edit is not None:
        edit(sd)
    torch.save(sd, path)
    return sd


@pytest.mark.parametrize("bad, dtype", [(float("nan"), torch.float32), (float("inf"), torch.float16),
                                        (-float("inf"), torch.float32), (1e300, torch.float64)])
def test_weights_holding_nan_or_infinity_are_refused_naming_the_file_and_tensor(tmp_path, bad, dtype):
    """NaN weights made an all-black dream with exit 0 and NaN saliency maps. 1e300 in a
    float64 file is finite there but infinite in float32, the network's dtype."""
    path = tmp_path / "mnet.pth"

    def poison(sd):
        for k, v in sd.items():
            if v.is_floating_point():
                sd[k] = v.to(dtype)
        sd["features.5.conv.1.0.weight"][3, 0, 1, 1] = bad

    _mobilenet_file(path, poison)
    with pytest.raises(WeightsError) as exc:
        load_model("mobilenet_v2", weights=path, device="cpu")
    assert str(exc.value) == (f"weights file {path}: features.5.conv.1.0.weight holds NaN or infinite values; "
                              "the file is damaged")


def test_cli_runs_refuse_nan_weights_in_one_line_and_write_nothing(tmp_path, capsys):
    from tests.helpers import error_line, run_cli

    path = tmp_path / "mnet-nan.pth"
    _mobilenet_file(path, lambda sd: sd["classifier.1.bias"].fill_(float("nan")))
    for command in (["dream", "gray", "--octaves", "1", "--steps", "1"], ["saliency", "sample:gravel"]):
        out = tmp_path / f"{command[0]}.png"
        rc, _, err = run_cli(capsys, *command, "-o", out, "--model", "mobilenet_v2", "--weights", path,
                             "--size", "64", "--quiet")
        assert rc == 2 and "RuntimeWarning" not in err
        assert error_line(err) == f"error: weights file {path}: classifier.1.bias holds NaN or infinite values; " \
                                  "the file is damaged"
        assert not out.exists()


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool, torch.complex64])
def test_weights_of_a_dtype_that_is_not_floating_point_are_refused_naming_it(tmp_path, dtype):
    """int64 or complex weights of the right shapes gave a traceback from deep inside torch."""
    path = tmp_path / "mnet.pth"
    _mobilenet_file(path, lambda sd: sd.update({"classifier.1.weight": sd["classifier.1.weight"].to(dtype)}))
    with pytest.raises(WeightsError) as exc:
        load_model("mobilenet_v2", weights=path, device="cpu")
    name = str(dtype).removeprefix("torch.")
    assert str(exc.value) == (f"weights file {path}: classifier.1.weight holds {name} values, where mobilenet_v2 "
                              "needs floating-point values (float16, bfloat16, float32 or float64); this is not a "
                              "file of network weights")
    # what is exact keeps loading: float64 weights become float32, and integer counters of any
    # width (BatchNorm's num_batches_tracked) stay integers
    ok = tmp_path / "mnet64.pth"
    sd = _mobilenet_file(ok, lambda sd: sd.update({k: v.double() if v.is_floating_point() else v.int()
                                                   for k, v in sd.items()}))
    net = load_model("mobilenet_v2", weights=ok, device="cpu")
    assert net.body["fc"][1].weight.dtype == torch.float32
    assert torch.equal(net.body["fc"][1].weight, sd["classifier.1.weight"].float())
    assert net.body["conv1"][1].num_batches_tracked.dtype == torch.int64


def test_a_broken_file_in_the_weights_dir_is_named_never_replaced_by_untrained_weights(tmp_path, monkeypatch):
    """With EXPLORER_ALLOW_UNTRAINED=1 a damaged file in EXPLORER_WEIGHTS_DIR fell back to
    untrained weights without a word, and ``weights status`` listed it as found."""
    monkeypatch.setenv("EXPLORER_ALLOW_UNTRAINED", "1")
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(folder))
    _mobilenet_file(tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    broken = folder / weights.weights_file_name("mobilenet_v2")
    broken.write_bytes(data[: len(data) // 2])  # a copy cut short
    with pytest.raises(WeightsError) as exc:
        load_model("mobilenet_v2", device="cpu")
    msg = str(exc.value)
    assert msg.startswith(f"could not read weights file {broken}: the file is truncated or damaged")
    assert "\n" not in msg and len(msg) < 300
    row = weights.weights_status(["mobilenet_v2"])[0]
    assert row["found"] == str(broken) and row["problem"].startswith("the file is truncated or damaged")
    broken.write_bytes(data)  # the whole file: found, readable and loaded
    assert weights.weights_status(["mobilenet_v2"])[0]["problem"] is None
    assert load_model("mobilenet_v2", device="cpu").weights.kind == "imagenet"
    broken.unlink()  # only a missing file falls back (labelled)
    assert weights.weights_status(["mobilenet_v2"])[0]["found"] is None
    assert load_model("mobilenet_v2", device="cpu").weights.untrained


def test_building_untrained_weights_leaves_the_global_generator_alone():
    """The untrained build seeds torch's generator for itself only (fork_rng): another session's
    random draws do not repeat because a model was built meanwhile."""
    import torch

    from explorer.nets import models

    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    models.load_model("vgg16", weights="untrained", device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_caffe_input_is_about_58_times_torchvision_s():
    """The "about 58" of the docs is the ratio of the two input conventions, 255 x std per channel:
    a picture prepared the Caffe way (BGR 0-255 minus its mean) is the torchvision-normalized one
    times caffe_input_scale(), up to the two conventions' slightly different means (< 0.6 of 255)."""
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, std = (torch.tensor(v, dtype=torch.float64).view(3, 1, 1) for v in (registry.IMAGENET_MEAN,
                                                                             registry.IMAGENET_STD))
    tv = (x - mean) / std
    caffe_bgr = 255 * x.flip(0) - torch.tensor(registry.CAFFE_MEAN_BGR, dtype=torch.float64).view(3, 1, 1)
    scale = torch.tensor(registry.caffe_input_scale(), dtype=torch.float64).view(3, 1, 1)
    assert torch.allclose(caffe_bgr.flip(0), tv * scale, atol=0.6)
    assert [round(s, 1) for s in registry.caffe_input_scale()] == [58.4, 57.1, 57.4]
    assert round(sum(registry.caffe_input_scale()) / 3) == 58
