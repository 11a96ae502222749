"""Layer activation explorer: what each layer of a network computes for one picture."""

import hashlib
import math

import streamlit as st

from explorer.app import ui

ui.page_guard()  # before anything is drawn: see explorer.app.ui.page_guard

from PIL import Image

from explorer.activations import views

from explorer.nets.layers import layer_info, output_shape
from explorer.io import images, samples
from explorer.core import choices
from explorer.nets import memory, models, registry
from explorer.app import pickers, plots, ui
from explorer.io import outputs

st.title("Layer activations")
st.caption("What each layer of a network computes for one picture: its channels' feature maps, their "
           "statistics, and the Gram matrix that style transfer matches.")

model = ui.sidebar_model(choices.MODEL_NAMES, key="act_model")
model_name = model.name if model else st.session_state["act_model_name"]
SAMPLES = {**samples.SAMPLE_CONTENT, **samples.SAMPLE_STYLE}


@st.cache_data(show_spinner=False, max_entries=64)
def layer_labels(name: str, height: int, width: int) -> dict[str, str]:
    """Picker label per layer, in forward order: shape at this image size, receptive field and
    stride, parameters."""
    labels = {}
    for n in models.list_layers(name):
        info = layer_info(name, n)
        try:
            shape = output_shape(name, n, height, width)
        except ValueError:  # image too small for the network: the page says so once
            shape = None
        params = f"{info.params:,} params" if info.params else "no weights"
        if info.receptive_field is None:
            labels[n] = f"{n} · {info.shape[0]} values · whole image · {params}"
        else:
            dims = "×".join(map(str, shape)) if shape else "image too small"
            labels[n] = f"{n} · {dims} · RF {info.receptive_field} px, stride {info.stride} · {params}"
    return labels


def small_map(channel_map) -> Image.Image:
    """A channel map as a Viridis image, blown up with square pixels to about 160 px."""
    im = views.channel_map_rgb(channel_map)
    k = max(1, 160 // max(im.size))
    return im.resize((im.width * k, im.height * k), Image.Resampling.NEAREST)


left, right = st.columns([1, 2])
with left:
    img, ref = pickers.image_picker("Input image", SAMPLES, key="act_input")
    size = st.slider("Working size (long side, px)", 64, 512, 256, step=16, key="act_size",
                     help="The image is scaled so its long side has this many pixels before it enters the network.")
x = pil = None
if img is not None:
    pil = images.resize_long_side(img.image, int(size))
    x = images.to_tensor(pil)
    left.image(pil, caption=f"{img.name}, {pil.width}×{pil.height} px", width="stretch")

with right:
    height, width = (pil.height, pil.width) if pil is not None else (size, size)
    labels = layer_labels(model_name, height, width)
    names = list(labels)
    # The labels hold each layer's output shape at this image size, so the picker is a new widget
    # for every size (its key names the size): a browser never keeps showing the shapes of the
    # previous size. The chosen layer is carried over from the last size (per network).
    pref_key = f"act_layer_pref_{model_name}"
    chosen = st.session_state.get(pref_key, registry.MODELS[model_name].activation_layer)
    layer = st.selectbox("Layer (in forward order)", names, index=names.index(chosen) if chosen in names else 0,
                         key=f"act_layer_{model_name}_{width}x{height}", format_func=labels.get)
    st.session_state[pref_key] = layer
    info = layer_info(model_name, layer)
    if info.receptive_field is None:
        sees = "It comes after global pooling: each of its values depends on the whole image."
    else:
        bigger = " (larger than the image: it sees all of it, and the padding around it)" \
            if info.receptive_field > max(height, width) else ""
        sees = (f"Each position sees a {info.receptive_field}×{info.receptive_field} px patch of the input "
                f"(its receptive field){bigger}; neighbouring positions are {info.stride} px apart (stride).")
    st.markdown(f"**{layer}** is layer {info.index + 1} of {len(names)}. {sees} Parameters: "
                + (f"{info.params:,} in this layer" if info.params else "none in this layer (pointwise or pooling)")
                + f", {info.params_total:,} up to here.")
    st.caption("Layer labels: output shape channels × height × width at this image size · receptive field (RF) "
               "and stride in input pixels · learned parameters.")
    st.caption("The receptive field is the theoretical one, counted from the kernel sizes and strides. Luo et al. "
               "2016 (*Understanding the Effective Receptive Field in Deep Convolutional Neural Networks*) show "
               "that the pixels that really move a unit cover much less: their influence falls off like a "
               "Gaussian from the centre, so the *effective* receptive field is a fraction of the number above "
               "(training enlarges it somewhat).")

acts = None
if model is not None and x is not None:
    try:
        memory.check_fits(model, x.shape[-2], x.shape[-1], kind="activations", device=model.device, backward=False,
                          layers=[layer])  # MemoryEstimateError (a ValueError) before computing
        with st.spinner(f"Computing {layer}…"):
            acts = ui.cached_activations(model, x, layer)
    except ValueError as exc:  # image too small for the network at this layer, or too large for the memory
        st.error(ui.one_line(exc))
    else:  # the shape of the maps just computed, so the page never shows a stale one
        right.markdown(f"Output of **{layer}** for this {pil.width}×{pil.height} px image: "
                       + ("×".join(str(d) for d in acts.shape) if acts.ndim != 3 else
                          f"**{acts.shape[0]} channels × {acts.shape[1]} × {acts.shape[2]}** positions"
                          f" (height × width)"))

if acts is not None:
    with left:
        preds = ui.cached_predictions(model, x)
        if preds is None:
            st.caption("Top-5 ImageNet predictions need pretrained weights with a classifier; "
                       f"this network has {model.weights.label}.")
        else:
            st.markdown("**Top-5 ImageNet predictions**")
            st.dataframe([{"class": c, "probability": f"{p:.1%}"} for c, p in preds], hide_index=True,
                         key="act_predictions")

if acts is not None:
    spatial = acts.ndim == 3
    t_grid, t_channel, t_stats, t_gram, t_walk, t_compare = st.tabs(
        ["Top channels", "One channel", "Statistics", "Gram matrix", "Walk through the network", "Compare"])
    no_maps = (f"{layer} comes after global pooling ({acts.shape[0]} numbers for the whole image), so it has no "
               "spatial maps: pick a layer before avgpool for this view.")

    with t_grid:
        if not spatial:
            st.info(no_maps)
        else:
            c1, c2 = st.columns(2)
            n_top = c1.slider("Channels to show", 1, min(64, acts.shape[0]), min(16, acts.shape[0]), key="act_n")
            rank = c2.radio("Rank channels by", ["mean", "max"], horizontal=True, key="act_rank",
                            format_func={"mean": "mean activation", "max": "peak activation"}.get)
            top = views.top_channels(acts, n_top, by=rank)
            grid = views.channel_grid(acts, top, cols=min(8, len(top)), cell=128)
            st.image(grid, caption=f"Top {len(top)} of {acts.shape[0]} channels of {layer}, by {rank}")
            grid_info = {"weights": model.weights.label, "layer": layer}  # PNG encoded again only for another grid
            ui.downloads(st.session_state.setdefault("act_downloads", {}), [
                ui.Download("Download grid (PNG)", f"{layer}-top{len(top)}.png", "image/png", "download_grid",
                            lambda: outputs.png_bytes(grid, pnginfo=grid_info), slot="grid",
                            depends=(hashlib.sha1(grid.tobytes()).hexdigest(), *grid_info.values()))], widths=[1])
            st.caption("Each tile is one channel's feature map, coloured from its own minimum (dark purple) to its own "
                       "maximum (yellow); the label gives the channel index and that value range. Bright areas are "
                       "where the pattern this channel detects is present in the picture.")

    with t_channel:
        if not spatial:
            st.info(no_maps)
        else:
            ranked = [int(c) for c in views.top_channels(acts, acts.shape[0], by=rank)]
            stats = views.channel_stats(acts)
            c1, c2 = st.columns([2, 1])
            channel = c1.selectbox("Channel (strongest first)", ranked, index=0,
                                   key=f"act_channel_{model_name}_{layer}",
                                   format_func=lambda c: f"#{c} · mean {stats.mean[c]:.3g} · max {stats.max[c]:.3g}")
            opacity = c2.slider("Map opacity", 0.0, 1.0, 0.6, step=0.05, key="act_opacity")
            st.plotly_chart(plots.channel_overlay(pil, acts[channel], opacity, f"{layer} · channel #{channel}"),
                            key="act_overlay")
            st.caption(f"Channel #{channel}'s map stretched over the picture: each cell covers about "
                       f"{pil.width / acts.shape[2]:.0f}×{pil.height / acts.shape[1]:.0f} px. Hover to read the "
                       "activation there; lower the opacity to see what lies underneath.")

    with t_stats:
        if not spatial:
            st.info(no_maps)
        else:
            stats = views.channel_stats(acts)
            m1, m2, m3 = st.columns(3)
            m1.metric("Sparsity (zeros)", f"{stats.sparsity:.1%}",
                      help="Fraction of all values in the layer that are exactly 0")
            m2.metric("Mean activation", f"{float(stats.mean.mean()):.3g}")
            m3.metric("Channels never active", f"{int((stats.max <= 0).sum())} of {acts.shape[0]}")
            st.caption("Sparsity is the fraction of values that are exactly zero: after a ReLU these units are off. "
                       "Deep layers of a trained network are sparse: each channel fires only where its pattern is.")
            c1, c2 = st.columns(2)
            c1.plotly_chart(plots.activation_histogram(acts, f"All {acts.size:,} values of {layer}"),
                            key="act_hist")
            c2.plotly_chart(plots.channel_bar(stats.mean, f"Mean activation per channel of {layer}"),
                            key="act_bar")
            st.caption("Left: how often each activation value occurs (counts on a log scale; the spike at 0 is the "
                       "inactive units). Right: each channel's average over all positions, sorted: a few strong "
                       "channels and a long tail means the layer describes this picture with few features.")

    with t_gram:
        if not spatial:
            st.info(no_maps)
        else:
            order = st.radio("Order channels by", ["cluster", "activation", "none"], horizontal=True,
                             key="act_gram_order",
                             format_func={"cluster": "similarity (clusters)", "activation": "mean activation",
                                          "none": "channel index"}.get)
            scale = st.radio("Colour shows", ["correlation", "gram"], horizontal=True, key="act_gram_scale",
                             format_func={"correlation": "correlation G_ij/√(G_ii·G_jj)",
                                          "gram": "Gram matrix G/M"}.get)
            g, idx = views.gram_view(acts, order)
            shown = views.gram_display(g, scale)
            st.plotly_chart(plots.gram_heatmap(shown.z, idx, f"Gram matrix of {layer} ({g.shape[0]} channels)",
                                               zmin=shown.zmin, zmax=shown.zmax, colorbar_title=shown.label),
                            key="act_gram")
            pct = f"{views.GRAM_PERCENTILE:g}th percentile of the off-diagonal entries"
            if scale == "correlation":
                diag = ", the diagonal (always 1) among them," if shown.zmax < 1 else ""
                st.caption(f"Colour: the correlation G_ij/√(G_ii·G_jj) from {shown.zmin:.3g} (dark) to "
                           f"{shown.zmax:.3g} (yellow, the {pct}); the {shown.clipped:.1%} of cells above it{diag} "
                           "are yellow too. Empty cells: a channel that is zero everywhere, whose correlation is "
                           "undefined.")
            else:
                st.caption(f"Colour: G/M from {shown.zmin:.4g} (dark) to {shown.zmax:.4g} (yellow, the {pct}); "
                           f"the {shown.clipped:.1%} of cells above it are yellow too. The largest entry is "
                           f"{float(g.max()):.4g}: a scale up to it would paint almost every cell dark.")
            st.latex(r"G^l_{ij} = \sum_k F^l_{ik} F^l_{jk} \qquad \text{(Gatys et al. 2016, eq. 3)}")
            st.markdown("Entry *(i, j)* says how strongly channels *i* and *j* fire **together**, summed over all "
                        "positions *k* (divided by the number of positions M in the **Gram matrix** view). It "
                        "forgets *where* things are and keeps *which features occur together*: that is the "
                        "picture's **style** as Gatys et al. define it. Style transfer changes an image until its "
                        "Gram matrices match the style image's (compared by Gatys et al.'s eq. 4).\n\n"
                        "A few strong channels dominate G itself, so its view shows them as bright rows and "
                        "columns. The **correlation** view divides each channel's strength out: it is the cosine "
                        "between two channels' maps (0 to 1 after a ReLU, since the maps are non-negative), so "
                        "weak channels that fire together show as much as strong ones. Ordering by similarity "
                        "(average-linkage clustering of these correlations) puts channels that fire together next "
                        "to each other, and they appear as bright square blocks along the diagonal.")
            st.page_link("pages/style_transfer.py", label="The equations of style transfer, and style transfer itself", icon="🖌️")

    with t_walk:
        try:
            walk = ui.cached_walk(model, x)
        except ValueError as exc:
            st.error(ui.one_line(exc))
        else:
            cols = st.columns(len(walk))
            for col, (lname, c, cmap) in zip(cols, walk):
                col.image(small_map(cmap), caption=f"{lname} · channel #{c}", width="stretch")
            st.caption("The strongest channel (largest mean) at one layer per block, from the first layer to the "
                       "last: maps get coarser (each position sees a larger part of the picture) and, in a trained "
                       "network, respond to more complex things: edges and colours, textures, parts, objects.")

    with t_compare:
        if not spatial:
            st.info(no_maps)
        elif st.checkbox("Compare with a second image", key="act_compare_on"):
            other, _ = pickers.image_picker("Second image", SAMPLES, key="act_other", default=1)
            acts_b = None
            if other is not None:
                pil_b = images.resize_long_side(other.image, int(size))
                try:
                    acts_b = ui.cached_activations(model, images.to_tensor(pil_b), layer)
                except ValueError as exc:
                    st.error(ui.one_line(exc))
            if acts_b is not None:
                cmp = views.compare_images(acts, acts_b)
                m1, m0, m2, m4 = st.columns(4)
                m1.metric("Cosine similarity", f"{cmp.cosine:.3f}")
                m0.metric("Centred cosine", f"{cmp.centred_cosine:.3f}")
                m2.metric("Style distance E_l (paper scale)", f"{cmp.style_distance:.3g}",
                          help="Gatys et al. 2016 eq. 4 as written: grows with the 4th power of the activations")
                m4.metric("Relative Ẽ_l (style page's scale)", f"{cmp.relative_style_distance:.3g}",
                          help="E_l · 4N_l² / ‖Â‖²: the squared relative error of the Gram matrix")
                if not math.isfinite(cmp.style_distance):
                    st.caption("E_l is too large for float32 here: the activations of this network are huge "
                               f"(up to {float(abs(acts).max()):.3g}), as with untrained weights.")
                m3.metric("Shared top channels", f"{len(cmp.shared_top)} of {len(cmp.top_a)}")
                nonneg = float(acts.min()) >= 0 and float(acts_b.min()) >= 0
                range_note = ("Here both vectors are non-negative (the layer follows a ReLU), so it lies between 0 "
                              "and 1 and is near 1 for almost any two pictures: every channel's mean is positive, "
                              "so the two vectors point roughly the same way; 0 would need the images to use "
                              "disjoint channels. " if nonneg else "")
                st.caption("**Cosine similarity** compares the two images' average activation per channel (a vector "
                           "of one mean per channel): 1 means the same channels fire in the same proportions. "
                           + range_note +
                           "**Centred cosine** subtracts each vector's mean over the channels first (the correlation "
                           "of the two channel profiles): between -1 and 1, 0 when the profiles are unrelated, so it "
                           "shows the differences the plain cosine hides. **E_l** (Gatys et al. 2016, eq. 4; see the Style transfer page) is the difference of the two Gram "
                           "matrices, the quantity style transfer makes small at this layer: 0 means the same style "
                           "statistics. It is shown at two scales. **E_l** is the *paper scale*, eq. 4 as written "
                           "(what the style page's *Paper* loss scale uses): it grows with the fourth power of the "
                           "activations, so its size depends on the network file. **Ẽ_l** is the *relative scale*, "
                           "what the style page uses by default and shows in its charts: the same difference divided "
                           "by the size of the second image's Gram matrix, Ẽ_l = E_l · 4N_l² / ‖Â_l‖² (N_l channels, "
                           "Â_l the Gram matrix divided by the number of positions), a squared relative error that "
                           "does not depend on the file. **Shared top channels** are among both images' strongest.")
                c1, c2 = st.columns(2)
                for col, name, im, a, top in ((c1, img.name, pil, acts, cmp.top_a),
                                              (c2, other.name, pil_b, acts_b, cmp.top_b)):
                    col.image(im, caption=name, width=256)
                    col.image(views.channel_grid(a, top, cols=4, cell=96),
                              caption=f"{name}: top channels " + ", ".join(f"#{c}" for c in top), width="stretch")
