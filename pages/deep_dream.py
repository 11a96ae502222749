"""Deep Dream page: gradient ascent on a layer's activations, with octaves, jitter and tiles."""

import streamlit as st

from explorer.app import ui

ui.page_guard()  # before anything is drawn: see explorer.app.ui.page_guard

from explorer.dream import deepdream as dream
from explorer.io import images, samples
from explorer.nets import models, registry
from explorer.app import pickers, plots, ui
from explorer.io import outputs
from explorer.core import choices, recipes
from explorer.dream.zoom import ZoomRun
from explorer.dream import settings as dream_settings

st.title("Deep Dream")
st.caption("Mordvintsev, Olah & Tyka, *Inceptionism: Going Deeper into Neural Networks*, Google Research 2015.")

model = ui.sidebar_model(choices.MODEL_NAMES, default=dream_settings.DreamSettings.model, key="dream_model")
model_name = model.name if model else st.session_state["dream_model_name"]

start = st.radio("Start from", ["an image", "gray (visualize from scratch)", "noise"], horizontal=True, key="dream_start")
img = ref = None
if start == "an image":
    img, ref = pickers.image_picker("Input image", {**samples.SAMPLE_CONTENT, **samples.SAMPLE_STYLE}, key="dream_input")
else:
    ref = "gray" if start.startswith("gray") else "noise"

with st.expander("What is Deep Dream?"):
    st.markdown("Instead of changing the network to fit the image, Deep Dream changes the **image** to excite a "
                "layer of the network more: it follows the gradient of an objective (here the mean squared "
                "activation of the chosen layer) with respect to the pixels, a little at a time.")
    st.latex(r"x \leftarrow \operatorname{clip}\!\left(x + \eta \, \frac{g}{\operatorname{mean}|g|}, 0, 1\right),"
             r"\qquad g = \frac{\partial}{\partial x} \, \tfrac{1}{CHW} \sum A^l(x)^2")
    st.markdown("- **Octaves**: the image is processed from small to large (each octave 1.4x bigger), so "
                "patterns appear at several scales; details the dream added are carried up to the next size.\n"
                "- **Jitter**: the image is shifted by a random offset before each step and shifted back after, "
                "which avoids grid artefacts.\n"
                "- **Tiles**: big images get their gradient tile by tile, so memory stays bounded.\n"
                "- **Shallow layers** amplify edges and colours; **deep layers** textures, patterns, object parts.")

layer_opts = models.spatial_layers(model_name)
default_layer = registry.MODELS[model_name].dream_layer
with st.expander("Settings", expanded=True):
    c1, c2, c3 = st.columns(3)
    layers = c1.multiselect("Layers", layer_opts, default=[default_layer], key=f"dream_layers_{model_name}",
                            format_func=lambda n: f"{n} · {dream.layer_hint(model_name, n)}")
    weights = {l: c1.number_input(f"weight of {l}", 0.0, 10.0, 1.0, key=f"dream_w_{l}") for l in layers} \
        if len(layers) > 1 else {l: 1.0 for l in layers}
    objective = c1.selectbox("Objective", ["l2", "mean", "guide", "class"], key="dream_objective",
                             format_func={"l2": "L2: mean squared activation", "mean": "mean activation",
                                          "guide": "guided by another image", "class": "towards an ImageNet class"}.get)
    channels = c1.text_input("Channels (e.g. 139 or 12,97; empty = whole layer)", "", key="dream_channels")
    center = c1.checkbox("Centre neuron only", key="dream_center")
    octaves = c2.slider("Octaves", 1, 8, 4, key="dream_octaves")
    octave_scale = c2.slider("Octave scale", 1.1, 2.0, 1.4, step=0.05, key="dream_scale")
    steps = c2.slider("Steps per octave", 1, 100, 10, key="dream_steps")
    step_size = c2.number_input("Step size (mean pixel change, 0-1)", 0.0, 0.2, 0.01, step=0.002, format="%.3f",
                                key="dream_step_size")
    size = c3.slider("Working size (long side, px)", 64, 2048, 384, step=32, key="dream_size")
    jitter = c3.slider("Jitter (px)", 0, 64, 32, key="dream_jitter")
    smooth = c3.slider("Gradient smoothing sigma (px)", 0.0, 4.0, 0.0, step=0.25, key="dream_smooth")
    tile = c3.select_slider("Tile size (px)", [128, 256, 384, 512, 768, 1024], 512, key="dream_tile")
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="dream_seed")
    precision = c3.selectbox("Precision", list(choices.PRECISIONS), key="dream_precision")
    zoom_mode = c2.checkbox("Dream-zoom sequence", key="dream_zoom_mode",
                            help="dream, zoom in a few percent and crop, dream again: an animation")
    zoom_frames = c2.slider("Zoom frames", 2, 60, 8, key="dream_zoom_frames", disabled=not zoom_mode)
    zoom = c2.slider("Zoom per frame (%)", 1, 20, 5, key="dream_zoom", disabled=not zoom_mode) / 100

guide_img = class_name = None
if objective == "guide":
    g, _ = pickers.image_picker("Guide image", {**samples.SAMPLE_STYLE, **samples.SAMPLE_CONTENT}, key="dream_guide")
    guide_img = g.image if g else None
elif objective == "class" and model is not None:
    cats = list(model.spec.weights_enum.meta["categories"]) if model.has_classifier else []
    class_name = st.selectbox("ImageNet class", cats, index=cats.index("tabby") if "tabby" in cats else 0,
                              key="dream_class") if cats else None
    if not cats:
        st.error(f"{model.weights.label} has no classifier, so there are no class scores to dream towards; "
                 "pick another objective or weights with a classifier.")
    if model.weights.untrained:
        st.caption("With untrained weights the class logits carry no meaning.")

settings = None
try:
    settings = dream_settings.DreamSettings(
        model=model_name, layers=tuple((l, float(weights[l])) for l in layers) or None, objective=objective,
        channels=channels, center=center, class_name=class_name, octaves=octaves, octave_scale=float(octave_scale),
        steps=steps, step_size=float(step_size), jitter=jitter, smooth=float(smooth), tile=int(tile),
        size=int(size), seed=int(seed), precision=precision)
except ValueError as exc:
    if not (objective == "class" and class_name is None):  # no classifier: said once, above
        st.error(ui.one_line(exc))

ready = model is not None and settings is not None and (img is not None or start != "an image") and \
    (objective != "guide" or guide_img is not None) and (objective != "class" or class_name)
run_clicked = ui.run_buttons(ready, run_key="dream_run", stop_key="dream_stop")

page_run = ui.PageRun("dream")
page_run.recover()


def result_fields(run) -> dict:
    """The result section's fields of a finished or stopped dream (or dream-zoom)."""
    if isinstance(run, ZoomRun):
        frames = [images.to_pil(f) for f in run.frames] or [page_run.pending["input_image"]]
        return {"image": frames[-1], "frames": frames, "report": run.report(), "history": [], "notes": run.notes}
    result = run.result()
    return {"image": images.to_pil(result.image), "report": result.report(), "history": result.history,
            "frames": [images.to_pil(f) for f in result.animation_frames()], "notes": result.notes}


if run_clicked and ready:
    x = images.to_tensor(images.resize_long_side(img.image, settings.size)) if img is not None else \
        dream.start_image(ref, settings.size, settings.seed)
    guide_t = images.to_tensor(images.resize_long_side(guide_img, settings.size)) if guide_img is not None else None
    try:
        run = ZoomRun(model, x, settings, zoom_frames, zoom, guide_t) if zoom_mode else \
            dream.DreamRun(model, x, settings, guide_image=guide_t)
        for note in run.notes:
            st.info(note)
        page_run.start({"inputs": {"image": ref}, "settings": settings.to_dict(),
                        "weights_label": model.weights.label, "input_image": images.to_pil(x)})
        page_run.events(run, preview_caption="Dream", fields=result_fields)
    except ValueError as exc:  # bad channel, unknown class, guide problems: checked before the run starts
        st.error(ui.one_line(exc))
    else:
        page_run.finish(**result_fields(run))

res = page_run.result
if res:
    ui.result_heading(res)
    for note in res["notes"]:
        if getattr(note, "code", None) == dream.DEAD_START_CODE:  # a flat start and a dead channel: say why, offer the fix
            st.warning(f"Nothing changed: {note}.")
            st.button("Start from noise instead", key="dream_use_noise",
                      on_click=lambda: st.session_state.update(dream_start="noise"))
    cols = st.columns(2)
    cols[0].image(res["input_image"], caption="Input", width="stretch")
    cols[1].image(res["image"], caption=f"Dream ({res['weights_label']})", width="stretch")
    report = recipes.recipe("dream", res["report"], res["inputs"])
    gif = ui.Download("Download GIF", "dream.gif", "image/gif", "dream_download_gif",
                      lambda: outputs.gif_bytes(res["frames"], 600), slot="gif") if len(res["frames"]) > 1 else None
    ui.downloads(res, [
        ui.png_download(res, key="dream_download_png", file_name="dream.png", pnginfo={"weights": res["weights_label"]}),
        ui.recipe_download(report, key="dream_download_json", file_name="dream-recipe.json",
                           help="Replay with: python -m explorer dream IMAGE --recipe dream-recipe.json -o out.png"),
        gif], widths=[1, 1.4, 1, 1])
    if res.get("history"):
        st.plotly_chart(plots.loss_figure(res["history"], keys=("objective",), title="Objective per step",
                                          log=False),
                        key="dream_final_chart")
