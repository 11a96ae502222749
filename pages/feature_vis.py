"""Feature visualization page: what a channel of a network responds to, optimized from scratch
(Olah, Mordvintsev & Schubert, Distill 2017), beside the dataset images that excite it most."""

from pathlib import Path

import streamlit as st

from explorer.app import ui

ui.page_guard()  # before anything is drawn: see explorer.app.ui.page_guard


from explorer.nets.layers import layer_info, receptive_field
from explorer.featurevis import render as FV
from explorer.featurevis import grid as G
from explorer.featurevis import examples as FVX
from explorer.core import choices, recipes
from explorer.io import grids, outputs
from explorer.nets import models
from explorer.app import plots, ui
from explorer.optim.transforms import STANDARD_TRANSFORMS

DISTILL = ("Olah, Mordvintsev & Schubert, [*Feature Visualization*](https://distill.pub/2017/feature-visualization/), "
           "Distill 2017")
LUCENT = "[Lucent](https://github.com/greentfrapp/lucent) (`lucent.optvis`, the PyTorch port of Lucid)"

st.title("Feature visualization")
st.caption(f"{DISTILL}; the loop follows {LUCENT}. What does one channel of a network look for? Start from "
           "noise and change the picture until the channel fires as strongly as it can, then compare with the "
           "real images that excite it most.")

model = ui.sidebar_model(choices.MODEL_NAMES, default=FV.FeatureVisSettings.model, key="fv_model")
model_name = model.name if model else st.session_state["fv_model_name"]

with st.expander("What is feature visualization? (optimization from scratch)"):
    st.markdown(f"Source: {DISTILL}, sections *Feature Visualization by Optimization* and *The Enemy of "
                "Feature Visualization*. The network stays fixed; the **image** is the variable. Starting from "
                "random noise, each step computes the chosen unit's activation, its gradient with respect to the "
                "image, and moves the image uphill (Adam, learning rate 0.05 as in Lucent):")
    st.latex(r"x^\star = \arg\max_x \; h_{l,c}(x), \qquad h_{l,c}(x) = \tfrac{1}{HW}\sum_{i,j} A^l_{c,i,j}(x)")
    st.markdown("Left alone, gradient ascent finds high-frequency noise that excites the unit but looks like "
                "nothing (an adversarial pattern). Two kinds of regularization keep the picture readable: a "
                "better **parameterization** of the image and **transformation robustness** (both below, "
                "and compared side by side in the third tab).\n\n"
                "**Objectives**: *channel* is the mean of a channel over all positions (the pattern repeated "
                "everywhere); *neuron* is one channel at the centre position only (one instance of the pattern); "
                "*direction* is a weighted combination of channels (a direction in activation space); *class* "
                "is an ImageNet logit (needs weights with a classifier).")

layers = [n for n in models.list_layers(model_name) if receptive_field(model_name, n) is not None]
default_layer = FV.FeatureVisSettings(model=model_name).layer
layer = st.selectbox("Layer (in forward order)", layers,
                     index=layers.index(default_layer) if default_layer in layers else len(layers) // 2,
                     key=f"fv_layer_{model_name}",
                     format_func=lambda n: f"{n} · {layer_info(model_name, n).shape[0]} channels · "
                                           f"RF {receptive_field(model_name, n)[0]} px")
info = layer_info(model_name, layer)
n_channels = info.shape[0]
st.caption(f"**{layer}** has {n_channels} channels (0-{n_channels - 1}). Each of its positions sees a "
           f"{info.receptive_field}×{info.receptive_field} px patch of the input (its receptive field), and "
           f"neighbouring positions are {info.stride} px apart.")

with st.expander("Settings", expanded=True):
    c1, c2, c3 = st.columns(3)
    size = c1.select_slider("Image size (px)", [64, 96, 128, 160, 192, 224, 256, 320, 384, 512], 128, key="fv_size")
    steps = c1.select_slider("Steps", [8, 16, 32, 64, 128, 256, 512, 1024], 64, key="fv_steps")
    lr = c1.number_input("Learning rate (Adam)", 0.001, 1.0, 0.05, step=0.01, format="%.3f", key="fv_lr")
    parameterization = c2.radio("Parameterization", ["fourier", "pixel"], key="fv_param", horizontal=True,
                                format_func={"fourier": "Fourier (scaled spectrum)", "pixel": "pixels"}.get)
    decorrelate = c2.checkbox("Decorrelated colours", True, key="fv_decorrelate")
    robust = c2.checkbox("Transformation robustness", True, key="fv_robust")
    transforms = c2.text_input("Transforms (applied each step)", ",".join(STANDARD_TRANSFORMS), key="fv_transforms",
                               disabled=not robust, help="pad:P, jitter:K, scale:S (±S), rotate:D (±D degrees); "
                                                         "the default is Lucent's standard list")
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="fv_seed")
    precision = c3.selectbox("Precision", list(choices.PRECISIONS), key="fv_precision")
    k = c3.slider("Dataset examples per channel", 0, 12, 4, key="fv_k")
    dataset = c3.radio("Dataset examples from", ["samples", "upload", "folder"], key="fv_dataset", horizontal=True,
                       format_func={"samples": "bundled samples", "upload": "my images",
                                    "folder": "a folder"}.get)


def dataset_words(res: dict) -> str:
    """Where a result's dataset crops came from, in words: the bundled samples, an upload or a
    folder (its path, as the recipe records it)."""
    ref = str((res.get("inputs") or {}).get("images", "samples"))
    if ref == "samples":
        return f"the {len(FVX.sample_sources())} bundled samples, not ImageNet"
    if ref.startswith("upload:"):
        return f"your uploaded images ({ref[len('upload:'):]})"
    return f"the images in the folder {ref}"


sources, dataset_ref = None, "samples"
if dataset == "upload":
    files = st.file_uploader("Images or a zip of images (the dataset the examples are drawn from)",
                             accept_multiple_files=True, key="fv_upload")
    if files:
        try:
            sources, notes = G.upload_sources([(f.name, f.getvalue()) for f in files])
        except ValueError as exc:
            st.error(ui.one_line(exc))
        else:
            for note in notes:
                st.caption(f"Note: {note}")
            dataset_ref = f"upload:{len(sources)} files"
    else:
        st.info("Choose image files or a zip; until then the bundled samples are used.")
elif dataset == "folder":
    folder = st.text_input("Folder of images (a path on the machine that runs the app)", key="fv_folder",
                           help="every file directly in it, sorted by name; files that are not images are skipped "
                                "and listed after the run (the command line's --images-dir)").strip()
    if folder:
        try:
            sources = FVX.folder_sources(folder)
        except ValueError as exc:  # not a folder, or no files in it
            st.error(ui.one_line(exc))
        else:
            dataset_ref = str(Path(folder).expanduser())
            shown = ", ".join(src.name for src in sources[:8]) + (f" and {len(sources) - 8} more"
                                                                  if len(sources) > 8 else "")
            st.caption(f"Dataset examples from the {len(sources)} file{'s' if len(sources) > 1 else ''} in "
                       f"{dataset_ref}: {shown}. Files that cannot be read as images are skipped and listed "
                       "after the run.")
    if dataset_ref == "samples":
        st.info("Type the path of a folder of images; until then the bundled samples are used.")
if dataset_ref == "samples":
    st.caption(f"Dataset examples from the {len(FVX.sample_sources())} bundled samples "
               f"({', '.join(src.name for src in FVX.sample_sources())}), not ImageNet.")

base = dict(model=model_name, layer=layer, parameterization=parameterization, decorrelate=decorrelate,
            transforms=transforms if robust else (), steps=int(steps), lr=float(lr), size=int(size), seed=int(seed),
            precision=precision, preview_every=max(1, int(steps) // 8))


def settings_or_error(**kw):
    """The settings, or None after one error line."""
    try:
        return FV.FeatureVisSettings(**{**base, **kw})
    except ValueError as exc:
        st.error(ui.one_line(exc))
        return None


def timing(settings, *results) -> None:
    """How long a run at these settings takes here (scaled from this session's last run, or a
    stated reference range before one), and what more steps give."""
    measured = next((r["report"] for r in results if r and G.estimate_seconds(settings, r.get("report"))), None)
    lo, hi, basis = G.estimate_range(settings, measured)
    work = (f"{settings.steps} steps × {settings.batch} image{'s' if settings.batch > 1 else ''} × "
            f"({settings.size}/128 px)²")
    if basis == "measured":
        m = measured["settings"]
        per = measured["seconds"] / G.work_units(m["steps"], m["batch"], m["size"])
        guess = (f"about {lo:.0f} s here: {work} × {per:.3g} s, the time per step per 128 px image of this "
                 "session's last run. The machine may be shared, so the next run can be faster or slower")
    else:
        ref_lo, ref_hi = G.REFERENCE_STEP_SECONDS
        guess = (f"about {lo:.0f}-{hi:.0f} s on a 2-core CPU: {work} × {ref_lo:g}-{ref_hi:g} s, the time per "
                 "step per 128 px image measured with VGG19 on this project's 2-core AMD EPYC CPU while other "
                 "work shared it (idle it is faster, a GPU far faster; after a run the estimate uses this "
                 "session's own time)")
    st.caption(f"Time: {guess}. 32-64 steps show the pattern; 256-512 (Lucent's default is 512) make it sharper "
               "and more saturated. Pixels without transforms need far more steps than the Fourier "
               "parameterization.")


def run_buttons(name: str, ready: bool) -> bool:
    return ui.run_buttons(ready, run_key=f"{name}_run", stop_key=f"{name}_stop")


def notes_of(res: dict) -> None:
    for note in (res.get("report") or {}).get("notes") or []:
        st.caption(f"Note: {note}")


grid_run, one_run, cmp_run = ui.PageRun("fv_grid"), ui.PageRun("fv_one"), ui.PageRun("fv_cmp")
for page_run in (grid_run, one_run, cmp_run):
    page_run.recover()

t_grid, t_one, t_cmp = st.tabs(["Channel grid", "One channel in detail", "Parameterizations compared"])

# ----------------------------------------------------------------------------- the channel grid
with t_grid:
    st.markdown("One picture per channel, all optimized together, each next to the dataset crops that excite "
                "that channel most (largest activation first).")
    text = st.text_input("Channels", "0-3", key="fv_grid_channels", help="indices or ranges, e.g. 0-7 or 3,17,42")
    settings = None
    try:
        chans = G.parse_channels(text)
    except ValueError as exc:
        st.error(ui.one_line(exc))
    else:
        settings = settings_or_error(channels=chans, separate=True, batch=len(chans))
    if settings is not None:
        timing(settings, grid_run.result, one_run.result)
    if run_buttons("fv_grid", model is not None and settings is not None):
        try:
            run = G.GridRun(model, settings, sources, k=k)
        except ValueError as exc:  # a channel the layer lacks, an image too small: before any work
            st.error(ui.one_line(exc))
        else:
            def grid_fields(run: G.GridRun) -> dict:
                result = run.result()
                return {"image": result.grid(), "sheet": result.sheet(), "history": result.vis.history,
                        "report": {**result.report(), "inputs": {"images": dataset_ref}}, "stopped": result.stopped}

            grid_run.start({"settings": settings.to_dict(), "inputs": {"images": dataset_ref},
                            "weights_label": model.weights.label})
            grid_run.events(run, preview_caption="Visualizations", fields=grid_fields)
            grid_run.finish(**grid_fields(run))
    res = grid_run.result
    if res:
        ui.result_heading(res)
        notes_of(res)
        sheet = res.get("sheet") or res["image"]
        st.image(sheet, caption=f"Left: the optimized picture of each channel; right: its top dataset crops with "
                                f"their activation ({res['weights_label']}; dataset: {dataset_words(res)})",
                 width="stretch")
        info_png = {"weights": res["weights_label"], "settings": outputs.json_text(res["settings"], indent=None)}
        ui.downloads(res, [
            ui.png_download(res, key="fv_grid_download_png", file_name="featurevis-grid.png",
                            label="Download grid (PNG)", pnginfo=info_png),
            ui.png_download(res, key="fv_grid_download_sheet", file_name="featurevis-examples.png", image="sheet",
                            label="Download with examples (PNG)", pnginfo=info_png)
            if res.get("sheet") is not None else None,
            ui.recipe_download(recipes.recipe("featurevis", res["report"], res["inputs"]),
                               key="fv_grid_download_json", file_name="featurevis-recipe.json",
                               help="Replay with: python -m explorer featurevis --recipe featurevis-recipe.json "
                                    "-o grid.png")], widths=[1, 1.3, 1.3, 1])
        if res.get("history"):
            seconds = res["report"].get("seconds") or res["history"][-1]["seconds"]
            st.caption(f"This run: {seconds:.1f} s for {len(res['history'])} steps "
                       f"({seconds / len(res['history']):.3f} s per step).")
            st.plotly_chart(plots.loss_figure(res["history"], keys=("objective",), title="Objective per step "
                                              "(batch mean)", log=False), key="fv_grid_chart")

# ----------------------------------------------------------------------------- one channel
with t_one:
    c1, c2 = st.columns(2)
    objective = c1.selectbox("Objective", list(FV.OBJECTIVES), key="fv_objective",
                             format_func={"channel": "channel: mean over positions",
                                          "neuron": "neuron: the channel at the centre position",
                                          "direction": "direction: a weighted combination of channels",
                                          "class": "class: an ImageNet logit"}.get)
    extra, ok = {}, True
    if objective in ("channel", "neuron"):
        extra["channels"] = (int(c1.number_input("Channel", 0, n_channels - 1, 0, key="fv_one_channel")),)
    elif objective == "direction":
        try:
            extra["channels"] = G.parse_channels(c1.text_input("Channels of the direction", "0,1",
                                                               key="fv_dir_channels"))
        except ValueError as exc:
            st.error(ui.one_line(exc))
            ok = False
        extra["weights"] = c1.text_input("Their weights (empty: all 1)", "1,-1", key="fv_dir_weights",
                                         help="one per channel, e.g. 1,-1: more of the first, less of the second")
        if ok and not str(extra["weights"]).strip():
            extra["weights"] = ()
    elif model is not None:
        cats = list(model.spec.weights_enum.meta["categories"]) if model.has_classifier else []
        if not cats:
            st.error(f"{model.weights.label} has no classifier, so there are no class logits; pick another "
                     "objective or weights with a classifier.")
            ok = False
        else:
            name = c1.selectbox("ImageNet class", cats, index=cats.index("tabby") if "tabby" in cats else 0,
                                key="fv_class")
            extra["channels"] = (cats.index(name),)
            if model.weights.untrained:
                st.caption("With untrained weights the class logits carry no meaning.")
    batch = c2.slider("Images (a batch, for diversity)", 1, 4, 1, key="fv_batch")
    diversity = c2.number_input("Diversity weight", 0.0, 10_000.0, 100.0, step=10.0, key="fv_diversity",
                                disabled=batch == 1, help="rewards pictures of the batch that differ in style "
                                                          "(Gram matrices); Lucent's example uses 100")
    one = settings_or_error(objective=objective, batch=batch, diversity=float(diversity) if batch > 1 else 0.0,
                            **extra) if ok else None
    if one is not None:
        timing(one, one_run.result, grid_run.result)
    if run_buttons("fv_one", model is not None and one is not None):
        try:
            run = G.GridRun(model, one, sources, k=max(k, 1) if objective in G.example_objectives else 0)
        except ValueError as exc:
            st.error(ui.one_line(exc))
        else:
            def one_fields(run: G.GridRun) -> dict:
                result = run.result()
                ex = next(iter(result.examples.values()), None)
                return {"image": result.grid(), "images": [grids.image_grid(result.vis.image[i:i + 1])
                                                           for i in range(result.vis.image.shape[0])],
                        "crops": [(e.crop, f"{e.value:.3g} · {e.name}") for e in (ex.examples if ex else [])],
                        "field_px": ex.field_px if ex else None,
                        "report": {**result.report(), "inputs": {"images": dataset_ref}},
                        "history": result.vis.history, "stopped": result.stopped}

            one_run.start({"settings": one.to_dict(), "inputs": {"images": dataset_ref},
                           "weights_label": model.weights.label})
            one_run.events(run, preview_caption="Visualization", fields=one_fields)
            one_run.finish(**one_fields(run))
    res = one_run.result
    if res:
        ui.result_heading(res)
        notes_of(res)
        pics = res.get("images") or [res["image"]]
        for col, pic in zip(st.columns(len(pics)), pics):
            col.image(pic, caption=f"{res['report'].get('objective', '')} ({res['weights_label']})",
                      width="stretch")
        if res.get("crops"):
            st.markdown("**Dataset examples**: the crops that excite this channel most, with the activation")
            st.image([c for c, _ in res["crops"]], caption=[t for _, t in res["crops"]], width=128)
            st.caption(f"Each crop is the {res['field_px']} px receptive field around the position where the channel "
                       f"is largest on that image (images prepared at {G.EXAMPLES_SIZE} px; dataset: "
                       f"{dataset_words(res)}).")
        ui.downloads(res, [
            ui.png_download(res, key="fv_one_download_png", file_name="featurevis-channel.png",
                            pnginfo={"weights": res["weights_label"]}),
            ui.recipe_download(recipes.recipe("featurevis", res["report"], res["inputs"]),
                               key="fv_one_download_json", file_name="featurevis-channel-recipe.json")],
            widths=[1, 1.3, 2])
        if res.get("history"):
            keys = ("objective", "diversity") if "diversity" in res["history"][0] else ("objective",)
            st.plotly_chart(plots.loss_figure(res["history"], keys=keys, title="Objective per step", log=False),
                            key="fv_one_chart")

# ----------------------------------------------------------------------------- the comparison
with t_cmp:
    st.markdown("The same channel, seed and steps four times: pixels or a Fourier + decorrelated "
                "parameterization, each with and without transformation robustness (the Distill article's "
                "comparison). The number under each picture is its share of high-frequency power (above 0.25 "
                "cycles per pixel): noise is about 0.8, smooth pictures a few percent.")
    cmp_channel = st.number_input("Channel", 0, n_channels - 1, 0, key="fv_cmp_channel")
    cmp = settings_or_error(channels=(int(cmp_channel),))
    if run_buttons("fv_cmp", model is not None and cmp is not None):
        try:
            run = G.ComparisonRun(model, cmp)
        except ValueError as exc:
            st.error(ui.one_line(exc))
        else:
            def cmp_fields(run: G.ComparisonRun) -> dict:
                result = run.result()
                return {"image": result.grid(), "rows": [(label, grids.image_grid(r.image[:1]), share, r.history)
                                                         for label, r, share in result.rows],
                        "report": result.report(), "history": [], "stopped": result.stopped}

            cmp_run.start({"settings": cmp.to_dict(), "weights_label": model.weights.label})
            cmp_run.events(run, preview_caption="Current run", fields=cmp_fields)
            cmp_run.finish(**cmp_fields(run))
    res = cmp_run.result
    if res:
        ui.result_heading(res)
        rows = res.get("rows") or []
        for col, (label, pic, share, _) in zip(st.columns(max(1, len(rows))), rows):
            col.image(pic, caption=label, width="stretch")
            col.metric("High-frequency share", f"{share:.1%}")
        if not rows:
            st.image(res["image"], caption="Last preview", width="stretch")
        if rows:
            st.plotly_chart(plots.objective_curves({label: hist for label, _, _, hist in rows}), key="fv_cmp_chart")
            st.caption("The objective each run reaches: pixels without transforms often score highest, with "
                       "the least readable picture: the enemy of feature visualization is high-frequency noise.")
        ui.downloads(res, [
            ui.png_download(res, key="fv_cmp_download_png", file_name="featurevis-comparison.png",
                            pnginfo={"weights": res["weights_label"]}),
            ui.recipe_download(res["report"], key="fv_cmp_download_json", file_name="featurevis-comparison.json",
                               label="Download report (JSON)")], widths=[1, 1.3, 2])

st.subheader("The ideas, with their sources")
with st.expander("Parameterization: Fourier spectrum and decorrelated colours"):
    st.markdown(f"{DISTILL}, section *Preconditioning and Parameterization*. Optimizing pixels directly lets "
                "high frequencies grow as fast as low ones. Instead the image is described by its Fourier "
                "spectrum, each frequency f scaled by 1 / max(f, 1/N): a gradient step then changes low "
                "frequencies more (a whitened, decorrelated space). Colours are decorrelated the same way: the "
                "three values per pixel are coordinates along the principal axes of ImageNet's colour "
                "correlation (Lucid's `color_correlation_svd_sqrt`), then a sigmoid maps to [0, 1]. "
                f"Code: {LUCENT}, `param.fft_image` and `param.color`.")
with st.expander("Transformation robustness"):
    st.markdown(f"{DISTILL}, section *Transformation robustness*. Each step the picture is padded, jittered by a "
                "few pixels, scaled by up to ±10% and rotated by up to ±10° at random before it enters the "
                "network: a pattern that excites the unit under all of these is a real feature, not a fragile "
                "pixel arrangement. The page's default is Lucent's `transform.standard_transforms` "
                "(pad 12, jitter 8, scale, rotate, jitter 4), seeded so every run reproduces.")
with st.expander("Diversity"):
    st.markdown(f"{DISTILL}, section *Diversity*. One picture shows one facet of a unit; a batch of pictures "
                "optimized together with a penalty on their similarity (the cosine similarity of their Gram "
                "matrices at the layer, as in style transfer) shows several. Set *Images* above 1 in the "
                "second tab.")
with st.expander("Dataset examples and the receptive field of the crops"):
    st.markdown(f"{DISTILL}, section *Dataset Examples*. Optimized pictures show what a unit responds to in "
                "isolation; real images show it in context. One forward pass over the dataset records, for "
                "every channel, each image's largest activation and where it is; a channel's examples are the "
                "images with the largest values. The crop is the layer's **receptive field** (the input pixels "
                "one position can see, computed from the architecture) centred on that position mapped back "
                f"to input pixels. At {layer} that is {info.receptive_field} px of a {G.EXAMPLES_SIZE} px image; "
                "at deep layers it covers the whole image. Choosing another channel of the same layer reuses the "
                "pass. With untrained weights both views show what random filters respond to.")
    bundled = [src.name for src in FVX.sample_sources()]
    st.markdown(f"**Where the examples come from.** Distill's dataset examples are drawn from ImageNet, the "
                f"million-image set the network was trained on. Here, by default, they come from the "
                f"{len(bundled)} pictures bundled with the app ({', '.join(bundled)}): a channel's top "
                "example is the best of these few, so it can look unlike the optimized picture simply because "
                "no bundled image contains what the channel looks for. Choose *my images* to upload your own set, "
                "or *a folder* to use the images in a folder on the machine that runs the app (on the command "
                "line, `featurevis --images-dir DIR`).")
