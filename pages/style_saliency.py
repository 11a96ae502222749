"""Style saliency page: which regions of a style image drive the network's activations
(Captum heatmaps of a style objective), and the masks that saliency-guided Gram transfer uses."""

import streamlit as st

from explorer.app import ui

ui.page_guard()  # before anything is drawn: see explorer.app.ui.page_guard

from explorer.saliency import attribution, guided, objectives as saliency_objectives, sanity
from explorer.style import guides
from explorer.io import images, outputs, samples
from explorer.core import choices, recipes
from explorer.nets import models, registry
from explorer.app import pickers, plots, ui

st.title("Style saliency")
st.caption("Which regions of a style image drive the network? Heatmaps of a style objective with Captum: "
           "saliency (Simonyan et al. 2014), guided backprop (Springenberg et al. 2015), integrated gradients "
           "(Sundararajan et al. 2017), occlusion (Zeiler & Fergus 2014) and Grad-CAM (Selvaraju et al. 2017).")

model = ui.sidebar_model(choices.SALIENCY_MODELS, key="sal_model")
model_name = model.name if model else st.session_state["sal_model_name"]
layer_names = models.spatial_layers(model_name)
default_style_layers = list(registry.MODELS[model_name].style_layers)
OBJECTIVES = {"style": "style energy over the style layers", "layer": "mean activation of one layer",
              "channel": "mean activation of one channel", "class": "logit of the network's top ImageNet class"}

with st.expander("What do these maps compute?"):
    st.markdown("Every method explains one number computed from the image, the **objective**. The default is the "
                "**style energy**: how much Gram-matrix “style” the network finds in the picture, summed over the "
                "style layers. It is the style loss of Gatys et al. 2016 measured against an all-zero target (their "
                "eq. 3 for the Gram matrix, eq. 4 for each layer's E_l, eq. 5 for the weighted sum over layers), "
                " so it is large where the picture has strong, co-occurring features.")
    st.latex(r"E(x) = \sum_l w_l \, \frac{\lVert G^l(x) \rVert_F^2}{4 N_l^2 M_l^2}, \qquad "
             r"G^l_{ij} = \sum_k F^l_{ik} F^l_{jk}")
    st.markdown("(N_l channels and M_l positions at layer l, w_l = 1/L.) The other objectives are the mean "
                "activation of a layer or of one channel, or the logit of the image's top ImageNet class.")
    st.markdown("**Saliency** is the size of the gradient: how much the objective changes when one pixel changes "
                "a little (largest over the three colours).")
    st.latex(r"S(p) = \max_c \left| \partial E / \partial x_{c,p} \right|")
    st.markdown("**Guided backprop** is the same gradient, but every ReLU passes back only positive gradients "
                "where its input was positive: sharper, edge-like maps.")
    st.markdown("**Integrated gradients** (Sundararajan et al. 2017) add up the gradient along the straight path "
                "from a black image to the picture. The map shown is **signed** (summed over the three colours, "
                "no absolute value): red pixels raised the objective along the path, blue ones lowered it. Only "
                "this signed map adds up to the objective's change, E(picture) − E(black) (the paper's "
                "*completeness*), up to the error of the finite number of integration steps; its absolute value "
                "would count the blue pixels as important too. **SmoothGrad** (Smilkov et al. 2017) averages the "
                "map over noisy copies of the picture.")
    st.latex(r"IG(p) = \sum_c x_{c,p} \int_0^1 \frac{\partial E(\alpha x)}{\partial x_{c,p}} \, d\alpha, "
             r"\qquad \sum_p IG(p) \approx E(x) - E(0)")
    st.markdown("**Occlusion** hides one window at a time (black, the mean colour, or a blurred copy) and "
                "measures how much the objective drops; each pixel gets the average over the windows that cover "
                "it. Positive (red): hiding it lowers the objective; negative (blue): hiding it raises it. "
                "It needs one forward pass per window, so it shows a progress bar.")
    st.latex(r"O(p) = \operatorname{mean}_{W \ni p} \left[ E(x) - E(x \text{ with } W \text{ replaced by the baseline})"
             r"\right]")
    st.markdown("**Grad-CAM** weighs the channels of one layer by their mean gradient, keeps the positive part of "
                "the weighted sum and scales it up to the image: coarse, but it shows what that layer attends to.")
    st.latex(r"L = \operatorname{ReLU}\Big(\sum_k \alpha_k A^k\Big), \qquad "
             r"\alpha_k = \frac{1}{Z} \sum_{i,j} \frac{\partial E}{\partial A^k_{ij}}")
    st.markdown("The **top-k mask** keeps the most important k % of pixels; saliency-guided style transfer "
                "builds its Gram targets from those regions only (see the *Full vs guided Gram* page).")

left, right = st.columns([1, 2])
with left:
    img, ref = pickers.image_picker("Style image", samples.SAMPLE_STYLE, key="sal_style")
    size = st.slider("Working size (long side, px)", 64, 512, 256, step=16, key="sal_size",
                     help="The image is scaled so its long side has this many pixels; the heatmap has the same size.")
    pil = images.resize_long_side(img.image, int(size)) if img is not None else None
    if pil is not None:
        st.image(pil, caption=f"{img.name}, {pil.width}×{pil.height} px", width="stretch")

with right:
    c1, c2 = st.columns(2)
    kind = c1.selectbox("Objective", list(OBJECTIVES), key="sal_objective", format_func=OBJECTIVES.get)
    method = c2.selectbox("Method", list(attribution.METHODS), key="sal_method",
                          format_func=attribution.METHOD_TITLES.get)
    style_layers = st.multiselect("Style layers (style energy, and the per-layer masks)", layer_names,
                                  default=default_style_layers, key=f"sal_style_layers_{model_name}")
    objective = kind
    if kind in ("layer", "channel"):
        c1, c2 = st.columns(2)
        layer = c1.selectbox("Layer", layer_names, index=layer_names.index(registry.MODELS[model_name].saliency_layer),
                             key=f"sal_layer_{model_name}")
        objective = f"layer:{layer}"
        if kind == "channel":
            objective = f"channel:{layer}:{int(c2.number_input('Channel', 0, 4095, 0, key='sal_channel'))}"
    elif kind == "class" and model is not None and not model.has_classifier:
        st.caption(f"{model.weights.label} has conv layers only, no classifier: there is no class to explain; "
                   "pick another objective or weights with a classifier.")
    elif kind == "class" and model is not None and model.weights.untrained:
        st.caption("With untrained weights the top class is arbitrary: the map shows what drives that logit.")
    compare_on = st.checkbox("Compare methods", key="sal_compare_on",
                             help="Compute several methods on the same image and show them side by side")
    compared = st.multiselect("Methods to compare", list(attribution.METHODS),
                              default=["saliency", "guided_backprop", "gradcam"], key="sal_compare_methods",
                              format_func=attribution.METHOD_TITLES.get) if compare_on else []
    methods = [method] + [m for m in compared if m != method]

    defaults = attribution.AttributionSettings()
    with st.expander("Method settings", expanded="occlusion" in methods):
        c1, c2, c3 = st.columns(3)
        c1.markdown("**Occlusion**")
        window = c1.slider("Window (px)", 2, 128, defaults.window, key="sal_window")
        stride = c1.slider("Stride (px)", 1, 128, defaults.stride, key="sal_stride")
        context = c1.slider("Mirrored context (px)", 0, 128, defaults.context, key="sal_context",
                            help="The network sees the picture continued by its mirror image this far beyond each "
                                 "border, so its zero padding does not make border windows look important; "
                                 "0 = plain occlusion (Captum's)")
        baseline = c1.selectbox("Hidden window shows", list(attribution.BASELINES), key="sal_baseline",
                                format_func={"zero": "black", "mean": "the mean colour",
                                             "blur": "a blurred copy"}.get)
        per_eval = c1.number_input("Occluded images per forward pass", 1, 256, defaults.perturbations_per_eval,
                                   key="sal_per_eval", help="Batching: same result, different speed and memory")
        c2.markdown("**Integrated gradients**")
        ig_steps = c2.slider("Integration steps", 1, 128, 16, key="sal_ig_steps",
                             help="One forward and backward pass per step (per sample with SmoothGrad)")
        smoothgrad = c2.slider("SmoothGrad samples (0 = off)", 0, 32, 0, key="sal_smoothgrad")
        sigma = c2.slider("SmoothGrad noise sigma", 0.01, 1.0, defaults.smoothgrad_sigma, key="sal_sigma")
        c3.markdown("**Grad-CAM**")
        gradcam_layer = c3.selectbox("Layer", [""] + layer_names, key="sal_gradcam_layer",
                                     format_func=lambda n: n or "auto: deepest layer of the objective")

settings = {}
try:
    for m in methods:
        settings[m] = attribution.AttributionSettings(
            method=m, objective=objective, style_layers=tuple(style_layers), size=int(size), window=int(window),
            stride=int(stride), context=int(context), baseline=baseline, perturbations_per_eval=int(per_eval), ig_steps=int(ig_steps),
            smoothgrad=int(smoothgrad), smoothgrad_sigma=float(sigma), gradcam_layer=gradcam_layer)
except ValueError as exc:
    st.error(ui.one_line(exc))
    settings = {}

no_class = kind == "class" and model is not None and not model.has_classifier  # said once, above
ready = model is not None and pil is not None and bool(settings) and not no_class
trained = model is not None and not model.weights.untrained
check_help = (f"Compute the {attribution.METHOD_TITLES[method]} map again with the untrained weights of this "
              "network and compare the two (Adebayo et al. 2018)") if trained else \
    "Needs trained weights: this network has untrained weights"
run_clicked, check_clicked = ui.run_buttons(ready, run_key="sal_run", stop_key="sal_stop", widths=(2, 2, 1, 3),
                                            label="Compute heatmap" + ("s" if len(methods) > 1 else ""),
                                            also=("Randomization check", "sal_check", ready and trained, check_help))
if model is not None and not trained:
    st.caption("The randomization check needs trained weights: it compares the map of the trained network with "
               "the map of the same network with untrained weights, and this network has untrained weights.")

page_run = ui.PageRun("saliency")
page_run.recover()

if run_clicked and ready:
    x = images.to_tensor(pil)
    page_run.start({"inputs": {"style": ref}, "image_name": img.name, "image": pil,
                    "weights_label": model.weights.label, "untrained": model.weights.untrained,
                    "style_layers": tuple(style_layers), "model": model.name})
    done = []
    try:
        for m in methods:
            heatmap = ui.cached_heatmap(model, x, settings[m], page_run=page_run)
            if heatmap is None:
                break
            done.append(heatmap)
    except ValueError as exc:  # unknown layer, channel out of range, window larger than the image
        st.error(ui.one_line(exc))
    if done:
        page_run.finish(heatmaps=done)
    else:
        page_run.cancel()

check_run = ui.PageRun("saliency_check")
check_run.recover()
if check_clicked and ready and trained:
    twin = ui.cached_model(model.name, "untrained", str(model.device))
    check_run.start({"image_name": img.name, "model": model.name})
    try:
        check = sanity.randomization_check(
            model, twin, images.to_tensor(pil), settings[method],
            compute=lambda net, x, s: ui.cached_heatmap(net, x, s, page_run=check_run))
    except ValueError as exc:  # a class objective on a conv-only file, a window larger than the image
        st.error(ui.one_line(exc))
        check = None
    if check is not None:
        check_run.finish(maps=check[:2], rho=check[2])
    else:
        check_run.cancel()

res = page_run.result
if res:
    heatmaps = res["heatmaps"]
    main = heatmaps[0]
    ui.result_heading(res)
    view, side = st.columns([3, 2])
    with view:
        opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.6, step=0.05, key="sal_opacity")
        signed, occluded = main.signed, main.method == "occlusion"
        title = f"{attribution.METHOD_TITLES[main.method]} of {main.objective} · {res['image_name']}"
        value_label = "objective drop" if occluded else "attribution (signed)" if signed else "importance"
        top = attribution.signed_range(main.values) if signed else None
        st.plotly_chart(plots.channel_overlay(res["image"], main.values, opacity, title,
                                              colorscale="RdBu_r" if signed else "Viridis", value_label=value_label,
                                              zmid=0.0 if signed else None, max_cells=128,
                                              zrange=(-top, top) if signed else None),
                        key="sal_overlay")
        engine = f" ({'exact incremental' if main.engine == 'fast' else 'Captum'} engine)" if occluded else ""
        sign_note = ""
        if signed:
            sign_note = (f" Colours run from −P (blue) through 0 (white) to +P (red), P = {top:.3g}, the "
                         f"{attribution.SIGNED_PERCENTILE:.0f}th percentile of |value|: the top 1 % of pixels "
                         "get the end colours, so a few extreme pixels do not wash the rest out.")
        if occluded:
            ctx = main.settings.context
            sign_note += (" Red: hiding this region lowers the objective; blue: raises it. "
                          + (f"The network saw the picture continued by its mirror image {ctx} px beyond each "
                             "border, so its zero padding lies outside the picture; without that, the padding "
                             "makes the deep layers' border positions carry extra style energy and a border "
                             "window looks important on any picture." if ctx else
                             "No mirrored context: a strong frame along the border is partly the convolutions' "
                             "zero padding, not the picture."))
        elif signed:
            sign_note += (f" Signed integrated gradients, summed over RGB: red raised the objective along the path "
                         f"from black, blue lowered it; the map adds up to {float(main.values.sum()):.4g}, which "
                         "approximates the objective's change from the black image.")
        explained = saliency_objectives.parse_objective(main.objective).describe()
        if main.target:  # the class objective: which class
            explained = f"logit of {main.target}"
        st.caption(f"Objective: {explained}. Heatmap "
                   f"{main.values.shape[1]}×{main.values.shape[0]} px, {main.seconds:.1f} s{engine}. "
                   "Hover to read the value at a pixel."
                   + sign_note)
        for note in main.notes:
            st.caption(f"Note: {note}")
        if res["untrained"]:
            st.info(f"These maps come from a network with {res['weights_label']}: they show what an untrained "
                    "network responds to (colour, contrast and edges pass through random filters), not what a "
                    "trained one has learned to look for.")
        ui.downloads(res, [
            ui.Download("Download overlay PNG", "saliency_overlay.png", "image/png", "sal_download_png",
                        lambda: outputs.png_bytes(attribution.overlay_image(main.image, main.values, opacity,
                                                                            signed=signed),
                                                  pnginfo={"weights": res["weights_label"],
                                                           "heatmap": outputs.json_text(main.report(), indent=None)}),
                        slot="overlay", depends=opacity),
            ui.Download("Download heatmap (.npy)", "saliency_heatmap.npy", "application/octet-stream", "sal_download_npy",
                        lambda: outputs.npy_bytes(main.values), slot="npy",
                        help="float32 array (height, width), the raw values: numpy.load('saliency_heatmap.npy')")],
            widths=[1, 1], stretch=True)
        ui.downloads(res, [  # its own row: three buttons side by side cut their labels at 1280 px
            ui.recipe_download(recipes.recipe("saliency", main.report(), res["inputs"]), key="sal_download_json",
                               file_name="saliency-recipe.json",
                               help="Replay with: python -m explorer saliency --recipe saliency-recipe.json -o out.png")],
            widths=[1, 1], stretch=True)

    with side:
        st.markdown("**Top-k mask**")
        c1, c2 = st.columns(2)
        keep = c1.slider("Keep (% of pixels)", 1, 100, 30, key="sal_keep")
        soft = c2.checkbox("Soft mask", key="sal_soft",
                           help="A graded mask: kept pixels weigh (heatmap / max) ** power instead of 1")
        power = c2.slider("Power", 0.25, 4.0, 1.0, step=0.25, key="sal_power", disabled=not soft)
        weight = None
        try:
            weight = guided.weight_map(main.importance, keep / 100, soft, power)
        except ValueError as exc:
            st.error(ui.one_line(exc))
        if weight is not None:
            kept = int(weight.gt(0).sum())
            for note in guided.guide_notes(main.importance, weight, keep / 100):
                st.warning(f"This mask as a guide: {note}.")
            st.image(pickers.mask_image(weight, cell=320), width="stretch",
                     caption=f"Kept {kept:,} of {weight.numel():,} px ({kept / weight.numel():.0%}), "
                             + ("graded by importance" if soft else "white = kept") + "; ranked by "
                             + ("the positive part of the map (where hiding a window lowers the objective)"
                                if occluded else "the size of the attribution, either sign" if signed else "importance"))
            if model is not None and model.name != res.get("model", model.name):  # the sidebar changed since
                st.caption(f"The per-layer masks are drawn at the style layers of {res['model']}, the network "
                           f"of these heatmaps: switch back to it, or compute the heatmaps again on {model.name}.")
            elif model is not None:
                masks = guides.layer_masks(weight, model, res["style_layers"])
                cols = st.columns(len(masks))
                for col, (name, m) in zip(cols, masks.items()):
                    col.image(pickers.mask_image(m, cell=96), caption=f"{name} · {ui.size_text(m.shape[1], m.shape[0])}",
                              width="stretch")
                st.caption("The same mask at each style layer's resolution (area-averaged): each cell's grey is "
                           + ("the mean weight of its pixels (the graded weights, 0 where a pixel is not kept)"
                              if soft else "the share of its pixels that are kept") + ". Saliency-guided Gram transfer weighs each position's "
                           "features by these values when it builds the style targets.")

    if len(heatmaps) > 1:
        st.subheader("Methods side by side")
        cols = st.columns(len(heatmaps))
        for col, hm in zip(cols, heatmaps):
            col.image(attribution.overlay_image(hm.image, hm.values, opacity, signed=hm.signed), width="stretch",
                      caption=f"{attribution.METHOD_TITLES[hm.method]} · {hm.seconds:.1f} s")
        st.caption("Each unsigned map is coloured from its own minimum (dark purple) to its own maximum (yellow); "
                   "each signed map (integrated gradients, occlusion) from blue (negative) through white (0) to red "
                   "(positive), scaled to the 99th percentile of its own |values|. So compare where the strong regions are, not how "
                   "strong they are. Gradient maps are sharp and "
                   "speckled (one pixel at a time); occlusion and Grad-CAM are smooth (windows, deep layers).")

check = check_run.result
if check:
    st.subheader("Randomization check")
    a, b = check["maps"]
    cols = st.columns(2)
    for col, hm in zip(cols, (a, b)):
        col.image(attribution.overlay_image(hm.image, hm.values, 1.0, signed=hm.signed), width="stretch",
                  caption=f"{attribution.METHOD_TITLES[hm.method]} · {hm.weights_label}")
    rho = check["rho"]
    st.markdown(f"Spearman rank correlation of the two maps, pixel by pixel: **ρ = {rho:.3f}**" if rho == rho else
                "Spearman rank correlation: undefined (one of the maps is constant, so it ranks no pixel above another).")
    st.caption(f"{check['image_name']}, {a.values.shape[1]}×{a.values.shape[0]} px, objective "
               f"{saliency_objectives.parse_objective(a.objective).describe()}. ρ = 1: both maps rank the pixels "
               "in the same order; ρ near 0: unrelated orders. The model-parameter randomization test of Adebayo "
               "et al. 2018 (“Sanity Checks for Saliency Maps”): a method whose map barely changes when the weights "
               "are randomized explains the image (its edges and contrasts), not the network, because nothing the "
               "network learned is left. They found guided backprop's maps stay edge-like with random weights "
               "while the plain gradient's change. Here every layer is re-initialized at once (torchvision's "
               f"default initialization, seed {models.UNTRAINED_SEED}), the last step of their cascade, which randomizes the layers "
               "from the top down; and the objective is this page's, not their class logit. Each map is coloured "
               "on its own scale (unsigned: its minimum to its maximum; signed: blue, white at 0, red, to the 99th "
               "percentile of its |values|).")
