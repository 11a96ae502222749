"""What each layer keeps: content and style reconstructions from white noise, the whole figure in
one run (Gatys, Ecker & Bethge, CVPR 2016, Fig. 1; NeurIPS 2015; Mahendran & Vedaldi, CVPR 2015).
The default figure of the current weights opens from the disk cache."""

import streamlit as st

from explorer.app import ui

ui.page_guard()  # before anything is drawn: see explorer.app.ui.page_guard

from explorer.app import pickers, reconstruct_view as RV, ui
from explorer.core import choices, recipes
from explorer.io import outputs
from explorer.io.samples import SAMPLE_CONTENT, SAMPLE_STYLE, parse_image_ref
from explorer.nets import models, weights
from explorer.style import reconstruct as R

GATYS_2016 = "Gatys, Ecker & Bethge, *Image Style Transfer Using Convolutional Neural Networks*, CVPR 2016, Fig. 1"
GATYS_2015 = "Gatys, Ecker & Bethge, *Texture Synthesis Using Convolutional Neural Networks*, NeurIPS 2015"
MAHENDRAN = "Mahendran & Vedaldi, *Understanding Deep Image Representations by Inverting Them*, CVPR 2015"

st.title("What each layer keeps")
st.caption(f"{GATYS_2016}; {GATYS_2015}; {MAHENDRAN}. Each picture starts as white noise and is changed until "
           "one layer's features (top row) or a set of layers' Gram matrices (bottom row) match those of the "
           "image on the left: what it shows is what those layers keep of the image.")

model = ui.sidebar_model(choices.STYLE_MODELS, default=R.ReconstructSettings.model, key="rec_model")
model_name = model.name if model else st.session_state["rec_model_name"]
page_run = ui.PageRun("rec")
page_run.recover()
top = st.container()  # the figure: drawn at the end, once any run of this script run is over

st.subheader("Your own pictures")
defaults = RV.default_settings(model_name)
left, right = st.columns(2)
with left:
    samples, index = RV.picker_samples(SAMPLE_CONTENT, R.DEFAULT_CONTENT)
    content, content_ref = pickers.image_picker("Content image", samples, key="rec_content", default=index)
    if content is not None:
        st.image(content.image, caption=f"Content: {content.name}", width=160)
with right:
    samples, index = RV.picker_samples(SAMPLE_STYLE, R.DEFAULT_STYLE)
    style, style_ref = pickers.image_picker("Style image", samples, key="rec_style", default=index)
    if style is not None:
        st.image(style.image, caption=f"Style: {style.name}", width=160)

with st.expander("Settings", expanded=False):
    c1, c2, c3 = st.columns([1, 2, 1])
    size = c1.slider("Working size (long side, px)", 32, 512, defaults.size, step=32, key="rec_size")
    steps = c1.number_input("L-BFGS steps per picture", 1, 5000, defaults.steps, key="rec_steps")
    layer_names = [n for n in models.list_layers(model_name) if n.startswith(("conv", "relu"))]
    content_layers = c2.multiselect("Content layers (one picture each)", layer_names,
                                    default=[n for n in defaults.content_layers if n in layer_names],
                                    key=f"rec_content_layers_{model_name}")
    style_sets = c2.text_input("Style layer sets (one picture each)", R.format_style_sets(defaults.style_sets),
                               key=f"rec_style_sets_{model_name}",
                               help="sets split by ';', layers by ',': relu1_1;relu1_1,relu2_1 makes two pictures")
    tv_weight = c3.number_input("TV weight", 0.0, 1e9, defaults.tv_weight, format="%.3g", key="rec_tv_weight",
                                help="total variation (Mahendran & Vedaldi 2015): 0 = off, as in Gatys et al.")
    tv_beta = c3.number_input("TV exponent p", 0.5, 10.0, defaults.tv_beta, key="rec_tv_beta")
    seed = c3.number_input("Seed of the white noise", 0, 2**31 - 1, defaults.seed, key="rec_seed")
    pooling = c1.selectbox("Pooling", list(choices.POOLINGS), index=list(choices.POOLINGS).index(defaults.pooling),
                           key="rec_pooling", help="Gatys et al. used average pooling for their figures")

settings = None
try:
    settings = R.ReconstructSettings(size=int(size), steps=int(steps), content_layers=tuple(content_layers),
                                     style_sets=style_sets, tv_weight=float(tv_weight), tv_beta=float(tv_beta),
                                     seed=int(seed), model=model_name, pooling=pooling)
    if model is not None:
        model.check_layers([l for s in settings.style_sets for l in s])
except ValueError as exc:
    st.error(ui.one_line(exc))
    settings = None

inputs = {"content": content_ref, "style": style_ref}
ready = model is not None and content is not None and style is not None and settings is not None
run_clicked = ui.run_buttons(ready, run_key="rec_run", stop_key="rec_stop",
                             toast="Stopped: the finished pictures are kept.")
cached = RV.load_default(model) if model is not None else None
if settings is not None:
    last = (page_run.result or {}).get("report") or (cached.recipe if cached is not None else None)
    st.caption(f"Time: {RV.time_text(RV.estimate_seconds(settings, last))} here for {len(settings.plan())} "
               f"pictures of {settings.steps} steps (it grows with pictures × steps × pixels).")


def make(content_image, style_image, run_settings: R.ReconstructSettings, run_inputs: dict) -> None:
    """Run the figure with progress and previews; keep a whole default figure in the cache."""
    try:
        run = R.Reconstruction(model, content_image, style_image, run_settings)
    except (ValueError, weights.WeightsError) as exc:
        st.error(ui.one_line(exc))
        return
    page_run.start({"inputs": run_inputs, "settings": run_settings.to_dict(), "weights_label": model.weights.label})
    page_run.events(run, preview_caption="Current picture", fields=RV.result_fields)
    page_run.finish(**RV.result_fields(run))
    if RV.is_default(run_settings, run_inputs) and not run.stopped:
        problem = RV.save_default(run.result(), model)
        if problem:
            st.caption(problem)


if run_clicked:
    make(content.image, style.image, settings, inputs)


def show(res: dict, name: str) -> None:
    """A figure (a run's or the cached one), its numbers and its downloads."""
    # at its own width (the page's width at most): a small figure blown up would blur its labels
    st.image(res["image"], caption=f"What each layer keeps ({res.get('weights_label')})", width=res["image"].width)
    numbers = RV.errors_text(res.get("pictures") or [])
    if numbers:
        st.caption(f"Relative error of each picture on its own layers (0 = the features match exactly): {numbers}.")
    report = recipes.recipe("reconstruct", res["report"], res.get("inputs")) if res.get("report") else None
    settings_only = recipes.recipe("reconstruct", {"settings": res["settings"]}, res.get("inputs"))
    ui.downloads(res, [
        ui.png_download(res, key=f"{name}_download_png", file_name="what-each-layer-keeps.png",
                        label="Download figure (PNG)", pnginfo={"weights": str(res.get("weights_label"))}),
        ui.recipe_download(settings_only, key=f"{name}_download_recipe", file_name="reconstruct-recipe.json",
                           help="Replay with: python -m explorer reconstruct --recipe reconstruct-recipe.json "
                                "-o figure.png"),
        ui.recipe_download(report, key=f"{name}_download_report", file_name="reconstruct-report.json",
                           label="Download report (JSON)",
                           help="every picture's layers, final loss, relative error and loss per step")
        if report else None], widths=[1, 1, 1, 0.4])
    pics = res.get("pictures") or []
    if pics:
        with st.expander("Each picture on its own"):
            cols = st.columns(min(len(pics), 5))
            for i, (kind, label, image, err, stem) in enumerate(pics):
                col = cols[i % len(cols)]
                col.image(image, caption=f"{kind} {label}" + (f" · error {err:.3g}" if err is not None else ""),
                          width="stretch")
                data = ui.result_bytes(res, f"pic_{stem}",
                                       lambda image=image, label=label: outputs.png_bytes(image, pnginfo={"layers": label}))
                col.download_button("PNG", data, file_name=f"{stem}.png", mime="image/png", key=f"{name}_pic_{stem}")


with top:
    res = page_run.result
    if res:
        ui.result_heading(res)
        show(res, "rec")
        st.button("Back to the default figure", key="rec_back", on_click=page_run.clear)
    elif model is not None:
        if cached is None:
            estimate = RV.time_text(RV.estimate_seconds(RV.default_settings(model.name)))
            st.info(f"No figure for {model.weights.label} yet: make it once ({estimate} here) and it is kept "
                    "for the next visit.")
            if st.button(f"Make the default figure ({estimate})", type="primary", key="rec_make_default"):
                make(parse_image_ref(R.DEFAULT_CONTENT).image, parse_image_ref(R.DEFAULT_STYLE).image,
                     RV.default_settings(model.name), RV.default_inputs())
                if page_run.result:
                    st.rerun()
        else:
            st.subheader("The default figure")
            fields = RV.cached_fields(cached)
            show(fields, "rec_cached")
            st.caption(f"Made once on this machine for {fields['weights_label']} "
                       f"({float(cached.recipe.get('seconds') or 0):.0f} s) and kept: press Run below to make it again "
                       "or for your own pictures.")

st.subheader("The ideas, with their sources")
with st.expander("Which layers, and why white noise"):
    st.markdown(
        f"Following {GATYS_2016}, the top row uses the content representation of one layer each: conv1_2, "
        "conv2_2, conv3_2, conv4_2 and conv5_2 of VGG19 (here `relu1_2` ... `relu5_2`: Caffe rectifies the conv "
        "layers in place, so the papers' conv layers are these ReLU outputs). The bottom row uses the style "
        "representation of growing sets: conv1_1; conv1_1 + conv2_1; ... up to conv5_1. Every picture starts "
        "as white noise and L-BFGS changes the pixels until that one term is as small as it gets: nothing of "
        "the image is put in at the start, so whatever of it appears came from the layers' features alone. "
        f"The noise is faint (amplitude {defaults.noise_scale:g} around mid-grey, like neural-style's random "
        f"start): from full-range noise a fine grain that the layers barely see is still there after {defaults.steps} steps. "
        "This is Mahendran & Vedaldi's inversion of a representation (CVPR 2015), done layer by layer.")
with st.expander("Why the deep content reconstructions look abstract"):
    st.markdown(
        "Early layers see small patches at full resolution, so matching their features pins down almost every "
        "pixel: the picture comes back nearly as it was. Each deeper layer has passed through more pooling (lower "
        "resolution), sees a larger part of the image (a larger receptive field) and was trained to respond the "
        "same way to an object whatever its exact colour, texture or position (more invariance). Many different "
        "images give the same deep features, and the optimizer finds one of them: the arrangement of objects "
        f"stays, the exact pixels do not ({GATYS_2016}; {MAHENDRAN}, who show several such images from different "
        "random starts).")
with st.expander("Why the style reconstructions lose the arrangement"):
    st.markdown(
        f"A layer's Gram matrix G_ij = Σ_k F_ik F_jk sums the products of two channels over all positions k "
        f"({GATYS_2015}). The sum forgets where each feature was: shuffle the positions and it stays the same. "
        "Matching Gram matrices from white noise is therefore texture synthesis: colours and strokes return, "
        "from fine grain (conv1_1) to larger structures as deeper layers join the set, but not where they were "
        "in the painting.")
with st.expander("What the numbers under the figure mean"):
    st.markdown(
        "Each picture's number is its relative error on its own layers, the square root of the loss it "
        "minimized: for a content picture ‖F − P‖ / ‖P‖ of its layer's features F against the image's P; for a "
        "style picture the root mean square over its set of ‖G_l − A_l‖ / ‖A_l‖ of the Gram matrices. 0 means "
        "the layers cannot tell the picture from the image; it says nothing about how alike they look to us, "
        "which is the point of the figure: a deep content picture with a small error can look nothing like the "
        "photo.")
