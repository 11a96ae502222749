"""Full vs guided Gram page: the same style transfer with the style image's full Gram matrices and
with Gram matrices of its most salient regions only, side by side with their losses and metrics."""

import streamlit as st
from PIL import Image

from explorer.app import ui

ui.page_guard()  # before anything is drawn: see explorer.app.ui.page_guard

from explorer.saliency import attribution, guided
from explorer.style import gatys, settings as style_settings
from explorer.io import images
from explorer.core import choices
from explorer.nets import models
from explorer.app import pickers, plots, ui

st.title("Full vs guided Gram")
st.caption("Style transfer twice with the same content, seed and settings: once matching the Gram matrices of the "
           "whole style image (Gatys et al. 2016), once matching Gram matrices built from its most salient regions "
           "only (saliency-guided, after *Neural Style Transfer for Data Augmentation*).")

model = ui.sidebar_model(choices.STYLE_MODELS, key="cmp_model")
model_name = model.name if model else st.session_state["cmp_model_name"]
layer_names = [n for n in models.list_layers(model_name) if n.startswith(("conv", "relu"))]
KEEPS = (0.1, 0.3, 0.6, 1.0)

#: The sample pair the page opens on: on the real VGG19 at the page's defaults (128 px, 50 steps,
#: smoothed saliency, keep 30 %) the mask keeps the stained cells and drops the pale background, and
#: the guided result visibly lacks the background's texture.
DEFAULT_CONTENT, DEFAULT_STYLE = "chelsea (cat)", "immunohistochemistry"
#: Smoothing of the heatmap before its top k % is kept (Gaussian sigma, px at the working size).
DEFAULT_SMOOTH = 4.0
content, content_ref, style_img, style_ref = pickers.content_style_pickers(
    "cmp_content", "cmp_style", width=240, content=DEFAULT_CONTENT, style=DEFAULT_STYLE)

with st.expander("What does this comparison show, and what not?"):
    st.markdown("The **full** run matches, at every style layer, the Gram matrix of the whole style image (eq. 3). "
                "The **guided** run first computes a heatmap of the style image (see the *Style saliency* page), "
                "keeps its most important k % of pixels, and builds each style layer's target from those positions "
                "only, each weighted by the mask w resampled to that layer:")
    st.latex(r"G^l_w = \frac{F^l \operatorname{diag}(w^l) \, F^{l\top}}{\sum_k w^l_k}")
    st.markdown("With an all-ones mask this is the full Gram matrix divided by M_l, which is exactly what the full "
                "run matches: **keep = 100 % with a hard mask is the full-Gram transfer**. Both runs start from "
                "the same image (by default the content photo recoloured with the style image's histogram) with "
                "the same seed and settings, so only the style targets differ and at keep = 100 % the two results "
                "are the same picture. This holds when every position of the heatmap is positive (saliency on a "
                "photo or painting); positions with zero importance are never kept, and the page warns when "
                "fewer positions than asked for are positive. The *channels* variant "
                "instead keeps, per layer, the k % of channels with the largest attribution and compares Gram "
                "matrices on those channels only.")
    st.markdown("**Regions, not single pixels.** Saliency (|gradient|) changes from one pixel to the next, so "
                "its top 30 % is salt and pepper scattered over the whole painting, and a Gram target built from "
                "it is close to the full one. By default the page therefore smooths the heatmap with a Gaussian "
                f"(σ = {DEFAULT_SMOOTH:g} px at the working size; *Smoothing σ* below, 0 = off) before it keeps "
                "the top k %: the mask then keeps whole regions, ranked by their mean importance.")
    st.markdown("**How this page reads the idea.** *Neural Style Transfer for Data Augmentation* speaks of taking "
                "\"the two most important pixels as i and j\" of the Gram matrix. That cannot be done literally: in "
                "G_ij = Σ_k F_ik F_jk (Gatys et al. 2016, eq. 3) the indices i and j name two feature maps "
                "(channels), and the positions k are summed out, so no entry of G belongs to a pixel. A pixel "
                "can only matter through how much it adds to that sum. So the app weights the positions before "
                "the sum (the w above: 1 for kept pixels, 0 or a smaller weight for the others) and keeps i and "
                "j as channels; the *channels* variant is the other honest reading, choosing which i and j "
                "enter.")
    st.markdown("The table measures both results the same way: the **content loss**, the **style loss "
                "against the full Gram** targets and against the **masked Gram** targets, both relative (Gatys et "
                "al.'s eq. 1 and 5 divided by their targets' size: ‖F−P‖²/‖P‖² and Σ w_l ‖G−A‖²/‖A‖², as the "
                "*Style transfer* page explains), the **SSIM** of "
                "the result to the content image (1 = identical structure), and the wall-clock **seconds**.\n\n"
                "What it does **not** show: it is one content/style pair with one seed and one set of settings, "
                "not a study; style losses measure Gram statistics, not how good or how stylish the picture looks; "
                "with untrained weights both the heatmap and the losses describe an untrained network, and the "
                "usual content/style weights do not balance the same way as with ImageNet weights.")

defaults = style_settings.StyleSettings()
with st.expander("Style transfer settings"):
    c1, c2, c3 = st.columns(3)
    size = c1.slider("Working size (long side, px)", 64, 512, 128, step=16, key="cmp_size")
    steps = c1.number_input("Steps (each run)", 1, 2000, 50, key="cmp_steps")
    alpha = c2.number_input("Content weight alpha", 0.0, 1e12, defaults.content_weight, format="%.3g", key="cmp_alpha")
    beta = c2.number_input("Style weight beta", 0.0, 1e15, defaults.style_weight, format="%.3g", key="cmp_beta")
    seed = c2.number_input("Seed", 0, 2**31 - 1, 0, key="cmp_seed")
    style_layers = c3.multiselect("Style layers", layer_names, default=list(defaults.style_layers),
                                  key="cmp_style_layers")

st.markdown("**Guide**")
g1, g2, g3 = st.columns(3)
method = g1.selectbox("Heatmap", list(guided.GUIDES) + ["mask"], key="cmp_method",
                      format_func=lambda m: attribution.METHOD_TITLES.get(m, "a mask I painted (upload)"))
painted = method == "mask"
variant = "positions" if painted else g1.radio(
    "Select", list(guided.VARIANTS), horizontal=True, key="cmp_variant",
    format_func={"positions": "positions (masked Gram)", "channels": "channels (top per layer)"}.get)
keep = g2.slider("Keep (%)", 1, 100, 30, key="cmp_keep", disabled=painted,
                 help="Share of pixels (or of channels per layer) whose style is transferred")
soft = g2.checkbox("Soft (graded) mask", key="cmp_soft", disabled=painted or variant == "channels",
                   help="Kept pixels weigh heatmap / max instead of 1")
smooth = g2.slider("Smoothing σ (px)", 0.0, 16.0, DEFAULT_SMOOTH, step=0.5, key="cmp_smooth",
                   disabled=painted or variant == "channels",
                   help="Gaussian smoothing of the heatmap before its top k % is kept: regions instead of "
                        "scattered pixels (0 = the heatmap as it is)")
window, stride, baseline = 32, 16, attribution.DEFAULT_BASELINE
if method == "occlusion":
    window = g3.slider("Occlusion window (px)", 2, 128, 32, key="cmp_window")
    stride = g3.slider("Occlusion stride (px)", 1, 128, 16, key="cmp_stride")
    baseline = g3.selectbox("Hidden window shows", list(attribution.BASELINES), key="cmp_baseline",
                            format_func={"zero": "black", "mean": "the mean colour", "blur": "a blurred copy"}.get)
upload = g3.file_uploader("Mask (white = transfer this region's style)", key="cmp_mask_upload") if painted else None

settings = guide = None
try:
    settings = style_settings.StyleSettings(size=int(size), steps=int(steps), content_weight=float(alpha),
                                   style_weight=float(beta), seed=int(seed), style_layers=tuple(style_layers),
                                   model=model_name)
    guide = guided.GuideSettings(method=method, keep=keep / 100, soft=bool(soft) and not painted, variant=variant,
                                 smooth=0.0 if painted or variant == "channels" else float(smooth),
                                 window=int(window), stride=int(stride), baseline=baseline)
except ValueError as exc:
    st.error(ui.one_line(exc))
    settings = guide = None

mask = None
if painted and upload is not None and style_img is not None and settings is not None:
    s_size = images.resize_long_side(style_img.image, settings.size).size
    try:
        mask = guided.load_mask(upload.getvalue(), (s_size[1], s_size[0]))
    except ValueError as exc:  # not an image, other aspect ratio, all black
        st.error(ui.one_line(exc))
    else:
        g3.image(pickers.mask_image(mask), caption=f"Mask {upload.name}, at {ui.size_text(s_size[0], s_size[1], 'px')}")
elif painted:
    g3.caption("Upload a grayscale image with the style image's aspect ratio: white regions' style is transferred.")

ready = model is not None and content is not None and style_img is not None and settings is not None \
    and guide is not None and (mask is not None or not painted)
run_clicked, sweep_clicked = ui.run_buttons(
    ready, run_key="cmp_run", stop_key="cmp_stop", label="Run comparison", widths=(1.4, 1, 1, 5),
    also=("k% sweep", "cmp_sweep", ready and not painted,
          "Guided transfer with keep = 10, 30, 60 and 100 % (a painted mask has no k)"))

page_run = ui.PageRun("compare")  # the comparison
keep_run = ui.PageRun("compare_sweep")  # the k% sweep
heatmap_run = ui.PageRun("compare_heatmap")  # the guide's heatmap, when computed
page_run.recover()
keep_run.recover(lambda partial: None)  # a stopped k% sweep keeps the previous one
scale = {"content": settings.content_weight, "style": settings.style_weight, "tv": settings.tv_weight} \
    if settings is not None else None


def heatmap_for(s_tensor):
    """The style image's heatmap for the guide (cached; progress bar when computed), or None
    when the guide needs none (channels variant, painted mask)."""
    if guide.variant != "positions" or painted:
        return None
    return ui.cached_heatmap(model, s_tensor, guide.attribution(settings.style_layers, settings.size),
                             page_run=heatmap_run)


if (run_clicked or sweep_clicked) and ready:
    c, s = gatys.prepare_images(content.image, style_img.image, settings.size)
    pending = {"inputs": {"content": content_ref, "style": style_ref}, "settings": settings.to_dict(),
               "guide": guide.to_dict(), "weights_label": model.weights.label,
               "content_image": images.to_pil(c), "style_image": images.to_pil(s)}
    try:
        heatmap = heatmap_for(s)
        if run_clicked:
            guidance = guided.prepare_guidance(model, s, settings, guide, heatmap, mask)
            for note in guidance.notes:
                st.warning(f"Guide: {note}.")
            run = guided.CompareRun(model, c, s, settings, guidance,
                                    full_targets=ui.cached_style_targets(model, s, settings))
        else:
            run = guided.KeepSweep(model, c, s, settings, guide, heatmap, keeps=KEEPS)
    except ValueError as exc:  # unknown layer, window larger than the image, an all-zero soft map
        st.error(ui.one_line(exc))
    else:
        if run_clicked:
            page_run.start(pending)
            page_run.events(run, scale=scale, normalization=settings.loss_normalization)
            try:
                cmp = run.result()
            except RuntimeError:  # a part was refused for memory: run_events showed why in one line
                page_run.cancel()
            else:
                page_run.finish(full=images.to_pil(cmp.full.image), guided=images.to_pil(cmp.guided.image),
                                image=images.to_pil(cmp.guided.image), weight=pickers.mask_image(cmp.guidance.weight),
                                overlay=images.to_pil(guided.mask_over(s, cmp.guidance.weight)),
                                guidance=cmp.guidance.report(), metrics=cmp.metrics,
                                history={"full": cmp.full.history, "guided": cmp.guided.history})
        else:
            keep_run.start(pending)
            keep_run.events(run, scale=scale, preview_caption="Current image",
                            normalization=settings.loss_normalization)
            keep_run.finish(results=[(k, images.to_pil(r.image), m) for k, r, m in run.results])

def _where_they_differ(res: dict) -> None:
    """What to look for, and where: the difference image with its colour scale, a zoom of the
    window where the two results differ most, and the weight map over the style image."""
    diff = guided.difference_map(res["full"], res["guided"])
    h, w = diff.shape
    box = guided.largest_difference_window(diff, max(8, max(h, w) // 4))
    st.markdown("**What to look for.** Both runs copy texture statistics, not places: the guided run asks "
                "the whole result to have the texture of the *kept* regions of the painting only (bright in the "
                "mask view below), so the texture of the regions left out (dark) is missing from it everywhere. "
                "At a small working size the two pictures look alike at a glance; the difference image shows "
                "where they differ and by how much, and the zoom enlarges the window where they differ most.")
    d1, d2, d3 = st.columns([1.3, 1, 1])
    d1.plotly_chart(plots.difference_figure(diff, box, title="|full − guided|, mean over RGB"),
                    key="cmp_difference")
    d1.caption(f"Pixel values in [0, 1]: mean {diff.mean():.3f}, max {diff.max():.3f}; "
               f"the box marks the zoomed {box[3]}×{box[2]} px window.")
    top, left, bh, bw = box
    k = max(1, 240 // max(bh, bw))
    for col, key, name in ((d2, "full", "Full Gram"), (d2, "guided", "Saliency-guided")):
        crop = res[key].crop((left, top, left + bw, top + bh)).resize((bw * k, bh * k), Image.Resampling.NEAREST)
        col.image(crop, caption=f"{name}, zoom ×{k} of the boxed window", width="stretch")
    if "overlay" in res and res["guide"]["variant"] == "positions":
        d3.image(res["overlay"], caption="The weight map over the style image: kept regions as they are, "
                                         "left-out regions darkened", width="stretch")
    else:
        d3.caption("The channels variant keeps every position (it selects channels), so there is no mask to show.")


res = page_run.result
if res:
    ui.result_heading(res)
    if "full" not in res:  # stopped mid-run: only the last preview is left
        st.image(res["image"], caption=f"Last preview ({res['weights_label']})", width=320)
    else:
        g = res["guide"]
        smoothed = f" smoothed σ = {g['smooth']:g} px" if g.get("smooth") else ""
        what = ("channels: " + ", ".join(f"{l} {n}" for l, n in res["guidance"]["kept_channels"].items())
                if g["variant"] == "channels" else
                "painted mask" if g["method"] == "mask" else
                f"{attribution.METHOD_TITLES[g['method']]}{smoothed}, keep {g['keep']:.0%}"
                f"{', soft' if g['soft'] else ''}")
        cols = st.columns(4)
        cols[0].image(res["style_image"], caption="Style", width="stretch")
        cols[1].image(res["weight"], caption=f"Weight map ({what})", width="stretch")
        cols[2].image(res["full"], caption=f"Full Gram ({res['weights_label']})", width="stretch")
        cols[3].image(res["guided"], caption=f"Saliency-guided Gram ({res['weights_label']})", width="stretch")
        _where_they_differ(res)
        m = res["metrics"]
        st.dataframe([{"run": name, "content loss": m[k]["content"], "style loss (full Gram)": m[k]["style_full"],
                       "style loss (masked Gram)": m[k]["style_masked"], "SSIM to content": m[k]["ssim"],
                       "seconds": m[k]["seconds"]} for k, name in (("full", "full Gram"),
                                                                   ("guided", "saliency-guided"))],
                     hide_index=True, key="cmp_metrics",
                     column_config={c: st.column_config.NumberColumn(format="%.4g") for c in
                                    ("content loss", "style loss (full Gram)", "style loss (masked Gram)")}
                     | {"SSIM to content": st.column_config.NumberColumn(format="%.3f"),
                        "seconds": st.column_config.NumberColumn(format="%.1f")})
        norm = res["settings"].get("loss_normalization", "relative")
        st.caption(f"Losses are unweighted, {plots.term_label('content', norm)} and "
                   f"{plots.term_label('style', norm)}, evaluated the same way for both images. Each run "
                   "makes its own style loss small: the full run the full-Gram one, the guided run the masked one; "
                   "the cross terms show how far each result is from the other target.")
        s_ = res["settings"]
        used = {"content": s_["content_weight"], "style": s_["style_weight"], "tv": s_["tv_weight"]}
        l1, l2 = st.columns(2)
        for col, k, name in ((l1, "full", "Full Gram"), (l2, "guided", "Saliency-guided")):
            if res["history"][k]:
                col.plotly_chart(plots.loss_figure(res["history"][k], scale=used, title=f"{name}: loss per step",
                                                   normalization=norm),
                                 key=f"cmp_chart_{k}")
        info = {"weights": res["weights_label"]}
        ui.downloads(res, [  # three columns: room for the labels at 1280 px
            ui.png_download(res, key="cmp_download_full", file_name="full_gram.png", label="Download full-Gram PNG",
                            image="full", pnginfo=info),
            ui.png_download(res, key="cmp_download_guided", file_name="guided_gram.png", label="Download guided PNG",
                            image="guided", pnginfo=info)], widths=[1, 1, 1])

sweep = keep_run.result
if sweep:
    st.subheader("k% sweep")
    cols = st.columns(len(sweep["results"]))
    for col, (k, pil, m) in zip(cols, sweep["results"]):
        col.image(pil, width="stretch",
                  caption=f"keep {k:.0%} · style (full Gram) {m['style_full']:.3g} · SSIM {m['ssim']:.3f}")
    st.caption("Guided transfers with more and more of the style image kept (same content, seed and settings). "
               "With a hard mask, keep = 100 % is the full-Gram transfer; small k copies the texture of the few "
               "most salient regions everywhere. " + ("The same caveats as above apply: one pair, one seed, "
                                                       f"{sweep['weights_label']}."))
