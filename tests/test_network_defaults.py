"""Every network's default layers, from its registry entry: every command runs on every network
it offers with no layer option; a layer the network lacks is refused before any weights load;
a command or page whose default network has no weights here starts on one that has them; and
every page survives switching the network after a result.

CPU, untrained weights (seed 0), 64-96 px pictures and one step.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer.core import choices
from explorer.dream.settings import DreamSettings
from explorer.featurevis.render import FeatureVisSettings
from explorer.io import images
from explorer.nets import models, registry
from explorer.style.settings import StyleSettings
from tests.helpers import app_env, error_line, picture, run_cli, stripes, open_app_page

ROOT = Path(__file__).resolve().parents[1]


def png_file(path: Path, t: torch.Tensor) -> Path:
    images.to_pil(t).save(path, "PNG")
    return path


@pytest.fixture
def square(tmp_path) -> Path:
    """A 96 x 96 picture: large enough for every network at working sizes 64-96."""
    return png_file(tmp_path / "square.png", picture(96, 96))


def size_for(name: str) -> int:
    """The smallest working size of this file's runs that the network accepts."""
    return max(64, registry.MODELS[name].min_size + 5)


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """No ImageNet weights anywhere and untrained weights only when asked for."""
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.delenv("EXPLORER_ALLOW_UNTRAINED", raising=False)
    monkeypatch.delenv("EXPLORER_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory) -> Path:
    """A usable MobileNetV2 weights file (the untrained state_dict, saved) named as the weights
    folder expects a non-torchvision file: ``mobilenet_v2-*.pth``."""
    import torchvision.models as tvm

    folder = tmp_path_factory.mktemp("weights")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = tvm.mobilenet_v2(weights=None).state_dict()  # torchvision's keys, shapes and dtypes
    torch.save(state, folder / "mobilenet_v2-test.pth")
    return folder / "mobilenet_v2-test.pth"


@pytest.fixture
def only_mobilenet(monkeypatch, tmp_path, mobilenet_file):
    """A machine whose weights folder holds MobileNetV2's file only (no untrained fallback)."""
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.delenv("EXPLORER_ALLOW_UNTRAINED", raising=False)
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(mobilenet_file.parent))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


# --------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("name", choices.MODEL_NAMES)
def test_every_default_layer_is_a_layer_of_its_network(name):
    spec, layers = registry.MODELS[name], models.spatial_layers(name)
    for use in registry.USES:
        for layer in registry.default_layers(name, use):
            assert layer in layers, (name, use, layer)
    assert spec.gradcam_layer == models.last_feature_layer(name)  # Grad-CAM's usual layer
    assert spec.supports_style == (name in choices.STYLE_MODELS)
    assert registry.default_layers(name, "content") == ((spec.content_layer,) if spec.supports_style else ())
    assert len(spec.style_layers) == 5


def test_the_defaults_users_know_are_kept():
    """The layers the README and the papers name: Gatys et al.'s on VGG, the original DeepDream's."""
    vgg = registry.MODELS["vgg19"]
    assert vgg.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1") and vgg.content_layer == "relu4_2"
    assert (vgg.activation_layer, vgg.dream_layer, vgg.featurevis_layer) == ("relu3_1", "relu4_3", "relu4_1")
    assert registry.MODELS["googlenet"].dream_layer == "inception4c"
    with pytest.raises(ValueError, match="unknown use"):
        registry.default_layers("vgg19", "dreams")


@pytest.mark.parametrize("name", choices.MODEL_NAMES)
def test_settings_classes_read_the_registry(name):
    spec = registry.MODELS[name]
    assert DreamSettings(model=name).layers == ((spec.dream_layer, 1.0),)
    assert FeatureVisSettings(model=name).layer == spec.featurevis_layer
    if spec.supports_style:
        s = StyleSettings(model=name)
        assert (s.content_layer, s.style_layers) == (spec.content_layer, spec.style_layers)


# --------------------------------------------------------------------------- every command x every network


@pytest.mark.parametrize("name", choices.MODEL_NAMES)
def test_activations_runs_on_every_network_with_its_default_layer(name, square, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "activations", square, "--model", name, "--size", size_for(name), "--top", 4,
                         "--untrained", "-o", tmp_path / "a.png", "--json", tmp_path / "a.json")
    assert rc == 0, err
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["model"] == name and report["layer"] == registry.MODELS[name].activation_layer


@pytest.mark.parametrize("name", choices.MODEL_NAMES)
def test_dream_runs_on_every_network_with_its_default_layer(name, square, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "dream", square, "--model", name, "--size", size_for(name), "--octaves", 1,
                         "--steps", 1, "--untrained", "--quiet", "-o", tmp_path / "d.png", "--report", tmp_path / "d.json")
    assert rc == 0, err
    settings = json.loads((tmp_path / "d.json").read_text())["settings"]
    assert settings["model"] == name and settings["layers"] == [[registry.MODELS[name].dream_layer, 1.0]]


@pytest.mark.parametrize("name", choices.MODEL_NAMES)
def test_featurevis_runs_on_every_network_with_its_default_layer(name, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "featurevis", "--model", name, "--size", size_for(name), "--steps", 1,
                         "--untrained", "--quiet", "-o", tmp_path / "f.png", "--report", tmp_path / "f.json")
    assert rc == 0, err
    settings = json.loads((tmp_path / "f.json").read_text())["settings"]
    assert settings["model"] == name and settings["layer"] == registry.MODELS[name].featurevis_layer


@pytest.mark.parametrize("name", choices.SALIENCY_MODELS)
@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_saliency_runs_on_every_network_with_its_default_layers(name, method, square, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "saliency", square, "--model", name, "--method", method, "--size", 64,
                         "--untrained", "--quiet", "-o", tmp_path / "h.png", "--report", tmp_path / "h.json")
    assert rc == 0, err
    report = json.loads((tmp_path / "h.json").read_text())
    assert report["settings"]["style_layers"] == list(registry.MODELS[name].style_layers)


def test_gradcam_of_the_class_uses_the_registry_layer(square, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "saliency", square, "--model", "resnet50", "--method", "gradcam", "--objective",
                         "class", "--size", 64, "--untrained", "--quiet", "-o", tmp_path / "h.png",
                         "--report", tmp_path / "h.json")
    assert rc == 0, err
    report = json.loads((tmp_path / "h.json").read_text())
    assert report["settings"]["gradcam_layer"] in ("", registry.MODELS["resnet50"].gradcam_layer)


@pytest.mark.parametrize("name", choices.STYLE_MODELS)
def test_stylize_and_augment_run_on_every_style_network(name, square, tmp_path, capsys):
    style = png_file(tmp_path / "style.png", stripes(64, 64))
    rc, _, err = run_cli(capsys, "stylize", square, style, "--model", name, "--size", 64, "--steps", 1,
                         "--untrained", "--quiet", "-o", tmp_path / "s.png", "--report", tmp_path / "s.json")
    assert rc == 0, err
    settings = json.loads((tmp_path / "s.json").read_text())["settings"]
    spec = registry.MODELS[name]
    assert (settings["content_layer"], settings["style_layers"]) == (spec.content_layer, list(spec.style_layers))

    data, styles = tmp_path / "data" / "cats", tmp_path / "styles"
    data.mkdir(parents=True)
    styles.mkdir()
    png_file(data / "a.png", picture(48, 48))
    png_file(styles / "s.png", stripes(48, 48))
    rc, _, err = run_cli(capsys, "augment", tmp_path / "data", styles, "-o", tmp_path / "aug", "--model", name,
                         "--variants", 1, "--steps", 1, "--size", 48, "--batch-size", 1, "--untrained", "--quiet")
    assert rc == 0, err
    assert len(list((tmp_path / "aug" / "cats").glob("*.png"))) == 1


@pytest.mark.parametrize("command", ["stylize", "augment"])
def test_style_commands_refuse_networks_without_style_transfer(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(capsys, command, "a", "b", *(["-o", "x"] if command == "augment" else []),
                "--model", "googlenet", "--untrained")
    line = error_line(capsys.readouterr().err)
    assert exit_.value.code == 2 and "googlenet" in line and "vgg19" in line


# --------------------------------------------------------------------------- layers checked before weights


@pytest.mark.parametrize("args", [
    ["activations", "IMG", "--model", "mobilenet_v2", "--layer", "relu3_1"],
    ["dream", "IMG", "--model", "resnet50", "--layers", "inception4c"],
    ["featurevis", "--model", "googlenet", "--layer", "relu4_1"],
    ["saliency", "IMG", "--model", "mobilenet_v2", "--style-layers", "relu1_1,relu2_1"],
    ["saliency", "IMG", "--model", "resnet50", "--method", "gradcam", "--gradcam-layer", "relu5_4"],
    ["stylize", "IMG", "IMG", "--content-layer", "relu9_9"],
])
def test_a_layer_the_network_lacks_is_named_before_weights_are_looked_for(args, no_weights, square, tmp_path, capsys):
    argv = [square if a == "IMG" else a for a in args] + ["-o", tmp_path / "out.png"]
    rc, _, err = run_cli(capsys, *argv)
    line = error_line(err)
    assert rc == 2 and "has no layer" in line and "valid layers:" in line, line
    assert "weights" not in line.split("valid layers:")[0]


# --------------------------------------------------------------------------- default network without weights


def test_default_network_without_weights_falls_back_to_one_with_weights(only_mobilenet, tmp_path):
    assert models.network_with_weights("vgg19", choices.MODEL_NAMES)[0] == "mobilenet_v2"
    name, note = models.network_with_weights("googlenet", choices.MODEL_NAMES)
    assert name == "mobilenet_v2"
    assert "GoogLeNet" in note and "MobileNetV2" in note and "explorer weights download --models googlenet" in note
    assert models.network_with_weights("mobilenet_v2", choices.MODEL_NAMES) == ("mobilenet_v2", None)
    assert models.network_with_weights("vgg19", choices.STYLE_MODELS) == ("vgg19", None)  # none of them has


def test_a_damaged_default_file_is_not_passed_over(only_mobilenet, mobilenet_file, tmp_path, monkeypatch):
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "googlenet-broken.pth").write_bytes(b"not a checkpoint")
    (folder / mobilenet_file.name).symlink_to(mobilenet_file)
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(folder))
    assert models.network_with_weights("googlenet", choices.MODEL_NAMES) == ("googlenet", None)


def test_dream_and_activations_start_on_a_network_with_weights(only_mobilenet, square, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "dream", square, "--size", 64, "--octaves", 1, "--steps", 1, "--quiet",
                         "-o", tmp_path / "d.png", "--report", tmp_path / "d.json")
    assert rc == 0, err
    notes = [l for l in err.splitlines() if l.startswith("note:")]
    assert len(notes) == 1 and "GoogLeNet" in notes[0] and "--models googlenet" in notes[0], err
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["settings"]["model"] == "mobilenet_v2" and report["settings"]["layers"] == [["block10", 1.0]]
    assert "mobilenet_v2-test.pth" in report["weights_label"]

    rc, _, err = run_cli(capsys, "activations", square, "--size", 64, "-o", tmp_path / "a.png",
                         "--json", tmp_path / "a.json")
    assert rc == 0, err
    report = json.loads((tmp_path / "a.json").read_text())
    assert (report["model"], report["layer"]) == ("mobilenet_v2", "block10") and report["weights"] == "file"


def test_a_named_network_or_untrained_weights_never_fall_back(only_mobilenet, square, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "activations", square, "--model", "vgg19", "--size", 64, "-o", tmp_path / "a.png")
    assert rc == 2 and "no pretrained weights for vgg19" in error_line(err)
    rc, _, err = run_cli(capsys, "activations", square, "--untrained", "--size", 64, "-o", tmp_path / "a.png",
                         "--json", tmp_path / "a.json")
    assert rc == 0 and json.loads((tmp_path / "a.json").read_text())["model"] == "vgg19"
    assert "note:" not in err


# --------------------------------------------------------------------------- pages


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, t in (("d/cats/a.png", picture(48, 48)), ("d/dogs/b.png", stripes(48, 48))):
            b = io.BytesIO()
            images.to_pil(t).save(b, "PNG")
            zf.writestr(name, b.getvalue())
    return buf.getvalue()


def _activations(at):
    at.slider(key="act_size").set_value(96).run()


def _dream(at):
    at.slider(key="dream_size").set_value(96)
    at.slider(key="dream_steps").set_value(1)
    at.slider(key="dream_octaves").set_value(1)
    at.run()
    at.button(key="dream_run").click().run()


def _featurevis(at):
    at.select_slider(key="fv_size").set_value(64)
    at.select_slider(key="fv_steps").set_value(8)
    at.slider(key="fv_k").set_value(0)
    at.run()
    at.button(key="fv_grid_run").click().run()


def _saliency(at):
    at.slider(key="sal_size").set_value(64)
    at.selectbox(key="sal_objective").set_value("layer").run()
    at.button(key="sal_run").click().run()


def _style(at):
    at.slider(key="size").set_value(64)
    at.number_input(key="steps").set_value(1)
    at.run()
    at.button(key="run").click().run()


def _compare(at):
    at.slider(key="cmp_size").set_value(64)
    at.number_input(key="cmp_steps").set_value(1)
    at.run()
    at.button(key="cmp_run").click().run()


def _sweep(at):
    at.selectbox(key="sweep_cols_name").set_value("seed").run()
    at.text_input(key="sweep_cols_seed_values").set_value("0, 1")
    at.select_slider(key="sweep_rows_alpha_beta_range").set_value((1e-8, 1e-6))
    at.slider(key="sweep_rows_alpha_beta_count").set_value(2)
    at.selectbox(key="sweep_init").set_value("noise")
    at.slider(key="sweep_size").set_value(64)
    at.number_input(key="sweep_steps").set_value(1)
    at.run()
    at.button(key="sweep_run").click().run()


def _augment(at):
    at.file_uploader(key="aug_zip").set_value(("d.zip", _zip(), "application/zip")).run()
    at.slider(key="aug_size").set_value((48, 48))
    at.slider(key="aug_steps").set_value((1, 1))
    at.number_input(key="aug_variants").set_value(1)
    at.run()
    at.button(key="aug_run").click().run()


def _reconstruct(at):
    at.slider(key="rec_size").set_value(32)
    at.number_input(key="rec_steps").set_value(1)
    at.multiselect(key="rec_content_layers_vgg19").set_value(["relu1_2"])
    at.text_input(key="rec_style_sets_vgg19").set_value("relu1_1")
    at.run()
    at.button(key="rec_run").click().run()


#: page, its network picker's key, the networks it offers, how to get a result.
PAGES = [
    ("pages/activations.py", "act_model", choices.MODEL_NAMES, _activations),
    ("pages/deep_dream.py", "dream_model", choices.MODEL_NAMES, _dream),
    ("pages/feature_vis.py", "fv_model", choices.MODEL_NAMES, _featurevis),
    ("pages/style_saliency.py", "sal_model", choices.SALIENCY_MODELS, _saliency),
    ("pages/style_transfer.py", "style_model", choices.STYLE_MODELS, _style),
    ("pages/compare.py", "cmp_model", choices.STYLE_MODELS, _compare),
    ("pages/sweep.py", "sweep_model", choices.STYLE_MODELS, _sweep),
    ("pages/augment.py", "aug_model", choices.STYLE_MODELS, _augment),
    ("pages/what_each_layer_keeps.py", "rec_model", choices.STYLE_MODELS, _reconstruct),
]


def open_page(page: str) -> AppTest:
    return open_app_page(page, timeout=180)


@pytest.mark.slow
@pytest.mark.parametrize("page,key,networks,get_result", PAGES, ids=[p[0].split("/")[1][:-3] for p in PAGES])
def test_switching_the_network_after_a_result_never_shows_a_traceback(page, key, networks, get_result,
                                                                      monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)
    at = open_page(page)
    get_result(at)
    assert not at.exception, at.exception
    assert not [e.value for e in at.error]
    if page != "pages/activations.py":  # the activation views are the result there
        assert "Result" in [s.value for s in at.subheader]
    for name in [*networks[1:], networks[0]]:
        at.sidebar.selectbox(key=f"{key}_name").set_value(name).run()
        assert not at.exception, (name, at.exception)
        assert all("Traceback" not in e.value and "Error:" not in e.value for e in at.error), (name, at.error)


@pytest.mark.parametrize("page,key,networks", [p[:3] for p in PAGES if p[2] != choices.STYLE_MODELS],
                         ids=["activations", "deep_dream", "feature_vis", "style_saliency"])
def test_pages_open_on_every_network_with_its_default_layer(page, key, networks, monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)
    at = open_page(page)
    for name in networks:
        at.sidebar.selectbox(key=f"{key}_name").set_value(name).run()
        assert not at.exception, (name, at.exception)
        spec = registry.MODELS[name]
        if page == "pages/activations.py":
            picker = [b for b in at.selectbox if (b.key or "").startswith(f"act_layer_{name}_")]
            assert len(picker) == 1 and picker[0].value == spec.activation_layer
        elif page == "pages/deep_dream.py":
            assert at.multiselect(key=f"dream_layers_{name}").value == [spec.dream_layer]
        elif page == "pages/feature_vis.py":
            assert at.selectbox(key=f"fv_layer_{name}").value == spec.featurevis_layer
        else:
            assert at.multiselect(key=f"sal_style_layers_{name}").value == list(spec.style_layers)


def test_a_page_whose_default_has_no_weights_starts_on_one_that_has(only_mobilenet):
    at = open_page("pages/deep_dream.py")
    assert at.sidebar.selectbox(key="dream_model_name").value == "mobilenet_v2"
    notes = [i.value for i in at.info if "has no weights on this machine" in i.value]
    assert len(notes) == 1 and "GoogLeNet" in notes[0] and "explorer weights download --models googlenet" in notes[0]
    assert not [e.value for e in at.error]
    assert not at.button(key="dream_run").disabled
    assert at.multiselect(key="dream_layers_mobilenet_v2").value == ["block10"]
    # the user's own choice is kept, and the weights error then names the networks that have weights
    at.sidebar.selectbox(key="dream_model_name").set_value("googlenet").run()
    assert not at.exception
    assert len(at.error) == 1 and any("MobileNetV2" in c.value for c in at.caption)
