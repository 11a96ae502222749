"""AppTest of the Layer activations page (and the Plotly figures it adds to explorer.app.plots).

Untrained weights (``EXPLORER_ALLOW_UNTRAINED=1``), 64 to 128 px images. Every network renders
every view; pooled layers and images too small for a network give one line, not a traceback;
a bad upload is one error and the page keeps working; compare mode shows the cosine and E_l;
activations are computed once per (image, model, layer): view changes reuse them, a layer
change computes the new layer once. Top-5 predictions use a GoogLeNet weights file the test
writes (its values are random, but the page takes it for pretrained weights).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.helpers import app_env

from explorer.activations import views

from explorer.nets.layers import layer_activations, layer_info, output_shape, walk_layers
from explorer.nets import models, registry, weights
from explorer.app import plots
from tests.test_app import downloads, errors, png_of  # noqa: F401 (downloads is a fixture)

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/activations.py"
TABS = ["Top channels", "One channel", "Statistics", "Gram matrix", "Walk through the network", "Compare"]


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)


def open_page(network: str = "vgg19", size: int = 64) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception
    if network != "vgg19":
        at.sidebar.selectbox(key="act_model_name").set_value(network)
    at.slider(key="act_size").set_value(size).run()
    assert not at.exception
    return at


def layer_picker(at: AppTest):
    """The layer selectbox (its key names the network and the image size, see the page)."""
    boxes = [b for b in at.selectbox if b.label == "Layer (in forward order)"]
    assert len(boxes) == 1, [b.label for b in at.selectbox]
    return boxes[0]


def test_layer_shapes_follow_the_working_size():
    """The picker's shapes and the shape line under it are those of the current size, also
    right after the size changes (they once showed the previous size's 256x64x64 at 128 px)."""
    at = open_page("vgg19", 64)
    layer_picker(at).set_value("relu3_1").run()
    for size in (128, 96):
        at.slider(key="act_size").set_value(size).run()
        assert not at.exception
        picker = layer_picker(at)
        assert picker.value == "relu3_1"  # the choice survives the new widget
        h, w = output_shape("vgg19", "relu3_1", *_working_hw(at))[1:]
        option = next(o for o in picker.options if o.startswith("relu3_1 · "))
        assert option.startswith(f"relu3_1 · 256×{h}×{w} · "), option
        line = [m.value for m in at.markdown if m.value.startswith("Output of **relu3_1**")]
        assert len(line) == 1 and f"256 channels × {h} × {w}" in line[0], line


def _working_hw(at: AppTest) -> tuple[int, int]:
    cap = next(c for img in at.image for c in img.captions if " px" in c and "×" in c)
    w, h = re.search(r"(\d+)×(\d+) px", cap).groups()
    return int(h), int(w)


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page by title."""
    out = {}
    for el in at.get("plotly_chart"):
        fig = json.loads(el.proto.spec)
        out[fig["layout"]["title"]["text"]] = fig
    return out


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def captions(at: AppTest) -> list[str]:
    return [c for im in at.image for c in im.captions]


@pytest.mark.parametrize("network,size,layer", [
    ("vgg19", 64, "relu3_1"), ("vgg16", 64, "relu3_1"), ("googlenet", 64, "inception4c"),
    ("inception_v3", 80, "Mixed_5d"),  # Inception v3 needs at least 75 px a side
])
def test_every_view_renders_for_every_network(network, size, layer):
    at = open_page(network, size)
    assert [t.value for t in at.title] == ["Layer activations"]
    assert not errors(at)
    assert any("untrained weights" in w.value for w in at.warning)
    # layer picker in forward order, each option with shape, receptive field, stride and parameters
    picker = layer_picker(at)
    assert picker.value == layer
    names = [o.split(" · ")[0] for o in picker.options]
    assert names == models.list_layers(network)
    info = layer_info(network, layer)
    assert any(o.startswith(f"{layer} · {info.shape[0]}×") and f"RF {info.receptive_field} px, stride "
               f"{info.stride}" in o for o in picker.options), picker.options
    assert any(f"{info.receptive_field}×{info.receptive_field} px patch" in m.value for m in at.markdown)
    assert [t.label for t in at.tabs] == TABS
    # grid, statistics, Gram, channel overlay, walk strip
    assert any(re.fullmatch(rf"Top 16 of {info.shape[0]} channels of {layer}, by mean", c) for c in captions(at))
    m = metrics(at)
    assert m["Sparsity (zeros)"].endswith("%") and m["Channels never active"].endswith(f"of {info.shape[0]}")
    figs = charts(at)
    assert any(re.fullmatch(rf"All [\d,]+ values of {layer}", t) for t in figs), list(figs)
    assert f"Mean activation per channel of {layer}" in figs
    assert [d["type"] for d in figs[f"Gram matrix of {layer} ({info.shape[0]} channels)"]["data"]] == ["heatmap"]
    assert any(r"G^l_{ij} = \sum_k F^l_{ik} F^l_{jk} \qquad \text{(Gatys et al. 2016, eq. 3)}" in m.value for m in at.latex)
    overlay = next(f for t, f in figs.items() if t.startswith(f"{layer} · channel #"))
    assert [d["type"] for d in overlay["data"]] == ["image", "heatmap"]
    walk = [c for c in captions(at) if re.fullmatch(r"\S+ · channel #\d+", c)]
    assert [c.split(" · ")[0] for c in walk] == walk_layers(network)
    assert any("need pretrained weights" in c.value for c in at.caption)


def test_pooled_layer_says_so_in_one_line():
    at = open_page("googlenet", 64)
    layer_picker(at).set_value("avgpool").run()
    assert not at.exception and not errors(at)
    infos = [i.value for i in at.info]
    assert len(infos) == 5 and all("after global pooling" in i and "\n" not in i for i in infos)  # one per map view
    assert not at.get("plotly_chart")
    assert len([c for c in captions(at) if " · channel #" in c]) == 5  # the walk strip still works
    assert "avgpool · 1024 values · whole image · no weights" in layer_picker(at).options


def test_bad_upload_is_one_error_and_the_page_keeps_working():
    at = open_page()
    at.radio(key="act_input_source").set_value("Upload").run()
    at.file_uploader(key="act_input_upload").set_value(("junk.png", b"\x00garbage" * 10, "image/png")).run()
    assert not at.exception
    errs = errors(at)
    assert len(errs) == 1 and "not an image" in errs[0] and "\n" not in errs[0]
    assert not at.tabs
    at.file_uploader(key="act_input_upload").set_value(("photo.png", png_of(120, 90), "image/png")).run()
    assert not at.exception and not errors(at)
    assert "photo.png, 64×48 px" in captions(at)
    assert [t.label for t in at.tabs] == TABS


def test_missing_pretrained_weights_is_one_error():
    at = open_page()
    next(c for c in at.sidebar.checkbox if c.label == "Use untrained weights").uncheck().run()
    assert not at.exception
    errs = errors(at)
    assert len(errs) == 1 and errs[0].startswith("VGG19 needs its ImageNet weights") and "\n" not in errs[0]
    assert not at.tabs


def test_image_too_small_for_the_network_is_one_error():
    at = open_page("inception_v3", 96)
    at.selectbox(key="act_input_sample").set_value("chelsea (cat)").run()  # 451 x 300: 96 x 64 px
    assert not at.exception
    errs = errors(at)
    assert len(errs) == 1 and "at least 75 px" in errs[0] and "\n" not in errs[0]
    assert not at.tabs
    at.slider(key="act_size").set_value(128).run()  # 128 x 85
    assert not at.exception and not errors(at) and at.tabs


def test_compare_mode_shows_cosine_and_style_distance():
    at = open_page()
    assert "Cosine similarity" not in metrics(at)
    at.checkbox(key="act_compare_on").check().run()
    assert not at.exception and not errors(at)
    m = metrics(at)
    assert -1.0 <= float(m["Cosine similarity"]) <= 1.0
    e, rel = float(m["Style distance E_l (paper scale)"]), float(m["Relative Ẽ_l (style page's scale)"])
    assert e > 0 and rel > 0  # astronaut vs. cat: different Gram matrices
    assert any("*paper scale*" in c.value and "*relative scale*" in c.value and "Ẽ_l = E_l · 4N_l² / ‖Â_l‖²"
               in c.value for c in at.caption)
    assert re.fullmatch(r"\d+ of 8", m["Shared top channels"])
    assert any("Cosine similarity" in c.value and "E_l" in c.value for c in at.caption)
    assert -1.0 <= float(m["Centred cosine"]) <= 1.0
    assert any("Centred cosine" in c.value and "correlation" in c.value for c in at.caption)
    # the default layer follows a ReLU: the caption gives the plain cosine's range, and it holds
    assert float(m["Cosine similarity"]) >= 0 and any("lies between 0 and 1" in c.value for c in at.caption)
    assert any(c.startswith("chelsea (cat): top channels #") for c in captions(at))
    at.selectbox(key="act_other_sample").set_value("astronaut").run()  # the same image: identical statistics
    m = metrics(at)
    assert float(m["Cosine similarity"]) == pytest.approx(1.0, abs=1e-5)
    assert float(m["Style distance E_l (paper scale)"]) == 0 and float(m["Relative Ẽ_l (style page's scale)"]) == 0


def test_views_reuse_activations_and_a_layer_change_computes_once(monkeypatch):
    from explorer.app import ui

    calls: list[str] = []
    walks: list[int] = []
    real, real_walk = layer_activations, views.walk_network
    monkeypatch.setattr(ui, "layer_activations", lambda m, x, layer: calls.append(layer) or real(m, x, layer))
    monkeypatch.setattr(views, "walk_network", lambda m, x: walks.append(1) or real_walk(m, x))
    ui._activations.clear()
    ui._walk.clear()
    at = open_page("googlenet", 64)  # first vgg19 at 256 px, then googlenet at 64 px
    assert calls == ["relu3_1", "inception4c"] and len(walks) == 2
    calls.clear()
    walks.clear()
    chan = at.selectbox(key="act_channel_googlenet_inception4c")
    chan.set_value(int(chan.options[3].split(" · ")[0][1:])).run()  # the 4th strongest channel
    at.slider(key="act_opacity").set_value(0.3).run()
    at.slider(key="act_n").set_value(4).run()
    at.radio(key="act_rank").set_value("max").run()
    at.radio(key="act_gram_order").set_value("none").run()
    assert not at.exception and not errors(at)
    overlay = next(f for t, f in charts(at).items() if t.startswith("inception4c · channel #"))
    assert overlay["data"][1]["opacity"] == 0.3
    assert calls == [] and walks == []  # five view changes, no new forward pass
    layer_picker(at).set_value("inception3a").run()
    assert calls == ["inception3a"] and walks == []
    layer_picker(at).set_value("inception4c").run()
    assert calls == ["inception3a"]  # back to a layer seen before: cached
    at.slider(key="act_size").set_value(80).run()  # another image: new activations and walk
    assert calls == ["inception3a", "inception4c"] and walks == [1]


def test_top5_predictions_with_pretrained_weights(monkeypatch, tmp_path):
    import torch

    from explorer.app import ui

    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(models._build_torchvision(registry.MODELS["googlenet"], untrained=True).state_dict(),
               folder / weights.weights_file_name("googlenet"))
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(folder))
    try:
        at = open_page("googlenet", 64)
        box = next(c for c in at.sidebar.checkbox if c.label == "Use untrained weights")
        box.uncheck().run()
        assert not at.exception and not errors(at)
        table = at.dataframe[0].value
        assert len(table) == 5 and set(table.columns) == {"class", "probability"}
        assert set(table["class"]) <= set(registry.MODELS["googlenet"].weights_enum.meta["categories"])
        assert not any("need pretrained weights" in c.value for c in at.caption)
    finally:
        ui.cached_model.clear()  # the random "pretrained" GoogLeNet must not outlive this test


# --------------------------------------------------------------------------- the figures


def test_channel_overlay_places_the_map_over_the_image_without_upsampling():
    image = Image.new("RGB", (100, 60), "gray")
    fig = plots.channel_overlay(image, np.arange(12, dtype=np.float32).reshape(3, 4), 0.4, "t")
    img, heat = fig.data
    assert img.type == "image" and img.source.startswith("data:image/jpeg;base64,")
    assert np.asarray(heat.z).shape == (3, 4) and heat.opacity == 0.4 and heat.colorscale[0][1] == "#440154"
    # cells tile the image's pixel extent [-0.5, W - 0.5] x [-0.5, H - 0.5] exactly
    assert heat.x0 - heat.dx / 2 == pytest.approx(-0.5) and heat.x0 + 3.5 * heat.dx == pytest.approx(99.5)
    assert heat.y0 - heat.dy / 2 == pytest.approx(-0.5) and heat.y0 + 2.5 * heat.dy == pytest.approx(59.5)
    assert "%{z" in heat.hovertemplate


def test_histogram_bar_and_gram_figures():
    values = np.concatenate([np.zeros(500), np.linspace(0, 3, 500), [np.nan]]).astype(np.float32)
    hist = plots.activation_histogram(values, "h", bins=30)
    assert sum(hist.data[0].y) == 1000 and len(hist.data[0].y) == 30  # binned in NumPy, NaN left out
    bar = plots.channel_bar(np.array([0.1, 0.5, 0.3]), "b")
    assert list(bar.data[0].y) == [0.5, 0.3, 0.1] and list(bar.data[0].customdata) == [1, 2, 0]
    g = np.arange(9, dtype=np.float32).reshape(3, 3)
    heat = plots.gram_heatmap(g, [2, 0, 1], "g").data[0]
    assert list(heat.x) == ["#2", "#0", "#1"] and np.asarray(heat.z).shape == (3, 3)
    big = plots.gram_heatmap(np.ones((1030, 1030), np.float32), list(range(1030)), "g")
    assert np.asarray(big.data[0].z).shape == (344, 344) and "blocks of 3" in big.layout.title.text


def test_top_channel_grid_downloads_as_the_png_shown(downloads):  # noqa: F811
    seen = downloads
    at = open_page("vgg19", 64)
    at.slider(key="act_n").set_value(4).run()
    assert "download_grid" in {d.key for d in at.download_button}
    name = [n for n in seen if n.endswith("-top4.png")]
    assert len(name) == 1, sorted(seen)
    grid = Image.open(io.BytesIO(seen[name[0]]))
    assert grid.size == (4 * 128, 128 + 16)  # 4 columns of 128 px maps with their 16 px label row
    assert "untrained" in grid.info["weights"]


def test_receptive_field_numbers_come_with_the_effective_field_caveat():
    from explorer.nets.layers import layer_info

    at = open_page()
    layer = layer_picker(at).value
    rf = layer_info("vgg19", layer).receptive_field
    assert any(f"Each position sees a {rf}×{rf} px patch" in m.value for m in at.markdown)
    caveat = [c.value for c in at.caption if "Luo et al. 2016" in c.value]
    assert caveat and "*effective* receptive field" in caveat[0]
    assert "Understanding the Effective Receptive Field in Deep Convolutional Neural Networks" in caveat[0]


def test_gram_colour_range_is_the_one_the_caption_states(monkeypatch):
    from explorer.app import ui

    seen = {}
    real = ui.layer_activations
    monkeypatch.setattr(ui, "layer_activations", lambda m, x, layer: seen.setdefault(layer, real(m, x, layer)))
    ui._activations.clear()
    at = open_page("vgg19", 64)
    layer = layer_picker(at).value
    acts = np.asarray(seen[layer])
    acts = acts[0] if acts.ndim == 4 else acts
    g, _ = views.gram_view(acts, "cluster")
    for scale in ("correlation", "gram"):
        at.radio(key="act_gram_scale").set_value(scale).run()
        assert not at.exception and not errors(at)
        want = views.gram_display(g, scale)
        heat = charts(at)[f"Gram matrix of {layer} ({g.shape[0]} channels)"]["data"][0]
        assert heat["zmin"] == pytest.approx(want.zmin) and heat["zmax"] == pytest.approx(want.zmax)
        assert heat["colorbar"]["title"]["text"] == want.label
        cap = [c.value for c in at.caption if c.value.startswith("Colour:")]
        assert len(cap) == 1, cap
        fmt = ".3g" if scale == "correlation" else ".4g"
        assert f"from {want.zmin:{fmt}} (dark) to {want.zmax:{fmt}} (yellow, the 99th percentile of the " \
               f"off-diagonal entries)" in cap[0] and f"{want.clipped:.1%} of cells above it" in cap[0]
    # the correlation's values: each channel's strength divided out, 1 on the diagonal
    at.radio(key="act_gram_scale").set_value("correlation").run()
    z = charts(at)[f"Gram matrix of {layer} ({g.shape[0]} channels)"]["data"][0]["z"]
    if isinstance(z, dict):  # Plotly's typed array: base64 bytes, dtype and shape
        import base64

        z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(
            [int(n) for n in str(z["shape"]).split(",")])
    z = np.asarray(z, dtype=float)
    live = np.isfinite(np.diag(z))
    assert live.any() and np.allclose(np.diag(z)[live], 1.0, atol=1e-5)
