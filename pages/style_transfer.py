"""Style transfer page (Gatys et al. 2016): widgets in, explorer calls, results out."""

import streamlit as st

from explorer.app import ui

ui.page_guard()  # before anything is drawn: see explorer.app.ui.page_guard

from explorer.style import blend, control, settings as style_settings, transfer
from explorer.core import choices, recipes
from explorer.io import images, outputs
from explorer.app import pickers, plots, ui
from explorer.nets import registry, weights
from explorer.optim import parameterizations

st.title("Style transfer")
st.caption("Gatys, Ecker & Bethge, *Image Style Transfer Using Convolutional Neural Networks*, CVPR 2016.")

model = ui.sidebar_model(choices.STYLE_MODELS, key="style_model")

# one style image by default; "Add style image" blends up to 6 (weighted mean of their Gram matrices).
# The default pair shows the idea on the real VGG19: the cat stays readable in the stained tissue's
# strokes and palette (astronaut + hubble deep field gave a starfield with a ghost of the astronaut).
content, content_ref, styles = pickers.content_blend_pickers("content", "style", width=320,
                                                             content="chelsea", style="immunohistochemistry")

with st.expander("What do alpha, beta, the layers and TV do?"):
    st.markdown("The network describes the **content** of an image by its activations at one deep layer, "
                "and its **style** by the correlations between channels (the Gram matrix) at several layers. "
                "The optimizer changes an image until it matches both at once. By default that image starts as the "
                "content photo recoloured with the style's colour histograms (*Start from*), and with L-BFGS the "
                "variable it changes is not the pixels but a Fourier offset added to that start (*Optimize*, "
                "below). Gatys et al. started from white noise and changed the pixels: *Start from* noise with "
                "*Optimize* pixels does that.")
    st.markdown("Each equation carries its paper and that paper's own number.")
    st.latex(r"\mathcal{L}_{content} = \tfrac12 \sum_{i,j} \left(F^l_{ij} - P^l_{ij}\right)^2 "
             r"\qquad \text{(Gatys et al. 2016, eq. 1)}")
    st.latex(r"G^l_{ij} = \sum_k F^l_{ik} F^l_{jk} \qquad \text{(Gatys et al. 2016, eq. 3)}")
    st.latex(r"E_l = \frac{1}{4 N_l^2 M_l^2} \sum_{i,j} \left(G^l_{ij} - A^l_{ij}\right)^2 "
             r"\qquad \text{(Gatys et al. 2016, eq. 4)}")
    st.latex(r"\mathcal{L}_{style} = \sum_l w_l E_l \qquad \text{(Gatys et al. 2016, eq. 5)}")
    st.latex(r"\mathcal{L}_{total} = \alpha \mathcal{L}_{content} + \beta \mathcal{L}_{style} "
             r"\qquad \text{(Gatys et al. 2016, eq. 7)}")
    # two centred rows, not one line: each must fit the expander at 1280 px (tests/test_browser.py);
    # plain line breaks, since KaTeX's aligned environment overflows its box by a pixel or two
    st.latex(r"+\; \lambda_{TV}\, R_{V^p}(x) \qquad \text{(total variation } R_{V^p}\text{, Mahendran \& "
             r"Vedaldi 2015)} \\ "
             r"R_{V^p}(x) = \sum_{i,j} \left((x_{i,j+1}-x_{ij})^2 + (x_{i+1,j}-x_{ij})^2\right)^{p/2}")
    st.markdown("**Relative losses** (the default *loss scale*): Gatys et al.'s eq. 1 grows with the square and "
                "eq. 4 with the fourth power of the activations, whose size differs between VGG19 files (the "
                "original Caffe file takes its input about 58 times larger than torchvision's, 255 × std; its "
                "activations are larger by a factor of that order, different at each layer and only estimated "
                "here). So each term is divided by the size of its target, which makes both squared relative "
                "errors:")
    st.latex(r"\tilde{\mathcal{L}}_{content} = \frac{\sum_{ij} (F^l_{ij} - P^l_{ij})^2}{\sum_{ij} (P^l_{ij})^2} "
             r"\qquad \tilde{\mathcal{L}}_{style} = \sum_l w_l \tilde{E}_l \\ "
             r"\tilde{E}_l = \frac{\sum_{ij} (G^l_{ij} - A^l_{ij})^2}{\sum_{ij} (A^l_{ij})^2} "
             r"= E_l \cdot \frac{4 N_l^2 M_l^2}{\sum_{ij} (A^l_{ij})^2} \qquad \text{(relative losses, this app)}")
    st.caption("Two scales, two symbols: E_l is eq. 4 at the paper's scale (the *Paper* loss scale, and the "
               "“Style distance E_l (paper scale)” on the Activations page); Ẽ_l is the relative scale, what the "
               "default run minimizes and what its chart's per-layer curves show (“Relative Ẽ_l” on the "
               "Activations page). For the same two images and layer they differ by the factor above, which "
               "depends on the network file and can span many orders of magnitude.")
    st.markdown(f"Then alpha = 1, beta = {style_settings.DEFAULT_STYLE_WEIGHT:g} (the default) gives about the balance of "
                "neural-style's published pictures with any VGG19 file (on their six pairs at 256 px: a median "
                "content error at most 1.2 times theirs, a median style error below theirs). With the *paper* loss scale, Gatys et al.'s eq. 1 and 4 are used as written "
                "and beta must suit the file's activation size: about alpha/beta = 1e-3 for the original Caffe VGG19, "
                "about 3e-7 for torchvision's. The 1e-3 is the paper's number, but the paper's network is a "
                "*normalized* VGG19 (weights rescaled so that each filter's mean activation over images and positions "
                "is 1). The Caffe file is not normalized: its deeper layers' activations are so much larger that "
                "relu4_1 alone carries over 98 % of the paper-scale style loss (about 99 % at the start of a run on "
                "tubingen + starry_night at 128 px), so the same alpha/beta does not weigh the layers as the paper "
                "did. The paper's alpha/beta applies to the normalized VGG19, which is offered: tick *Normalized as "
                "in Gatys et al.* under Network in the sidebar (each convolution rescaled, layer by layer, so that "
                "each channel's mean activation over the bundled samples is 1: the same features up to one factor "
                "per channel) and choose the *Paper* loss scale to run the paper's 1e-3 on the network it was "
                "meant for.")
    st.markdown(
        "- **alpha / beta** balance content against style: a larger beta repaints more.\n"
        "- **Style layers**: shallow layers (relu1_1) carry colours and fine strokes, deep ones (relu5_1) larger "
        "patterns. **Content layer** relu4_2 keeps the layout but not exact pixels.\n"
        "- **Naming**: the papers' `conv1_1` is rectified in Caffe, so the defaults here are the post-ReLU "
        "`relu*` outputs; the pre-ReLU `conv*` outputs can be picked too.\n"
        "- **TV** (total variation) smooths the image; its exponent p below 2 keeps edges sharper.\n"
        "- **Several style images** (*Add style image*): the style target of each layer is the weighted mean "
        "of their Gram matrices, with the weights divided by their sum. Each style image is scaled to the "
        "working size (long side, aspect ratio kept) and each Gram matrix is divided by its own number of "
        "positions, so images of different sizes count the same.")
    caffe_scale = registry.caffe_input_scale()
    st.markdown(
        "**Gatys et al.'s own setup** (Gatys, Ecker & Bethge 2016, *Image Style Transfer Using Convolutional "
        "Neural Networks*): a *normalized* VGG19 (each filter's mean activation over images and positions "
        "rescaled to 1), its 16 convolutional and 5 pooling layers only, max pooling replaced by average "
        "pooling for their figures (*Pooling* avg), and gradient descent that starts from a white-noise image "
        "(*Start from* noise, *Optimize* pixels). They also say that content and style cannot be fully "
        "separated: usually no image matches both targets exactly, so alpha/beta chooses where between them "
        "the result lands, and the loss never reaches zero.")
    st.markdown(
        "**Input preprocessing.** The original Caffe VGG19 (Simonyan & Zisserman 2014) takes BGR values in "
        "0-255 minus the per-channel means "
        + ", ".join(f"{m:g}" for m in registry.CAFFE_MEAN_BGR)
        + " (B, G, R); torchvision's networks take RGB in 0-1 as (x − mean) / std with mean "
        + ", ".join(f"{m:g}" for m in registry.IMAGENET_MEAN) + " and std "
        + ", ".join(f"{v:g}" for v in registry.IMAGENET_STD)
        + ". The same centred picture therefore enters the Caffe network 255 × std = "
        + f"{min(caffe_scale):.1f}–{max(caffe_scale):.1f}"
        + " times larger per channel: that, not the image, is why the two files' activations differ so much "
        "in size, and why the relative losses above exist.")
    st.markdown(
        "**Why this app optimizes.** Feed-forward networks stylize in one pass once trained: Johnson, Alahi & "
        "Fei-Fei 2016 (*Perceptual Losses for Real-Time Style Transfer and Super-Resolution*) train one network "
        "per style on this very loss; AdaIN (Huang & Belongie 2017, *Arbitrary Style Transfer in Real-time with "
        "Adaptive Instance Normalization*) and WCT (Li et al. 2017, *Universal Style Transfer via Feature "
        "Transforms*) take any style by matching feature means and variances, or whitening and colouring the "
        "features; CycleGAN (Zhu et al. 2017, *Unpaired Image-to-Image Translation using Cycle-Consistent "
        "Adversarial Networks*) learns a translation between two image collections, not from one painting. "
        "This app solves Gatys et al.'s optimization instead: it needs no training, works for any pair, and "
        "every term, weight and layer on this page acts directly on the picture you watch change, which is "
        "what a lesson needs. The price is time: hundreds of network passes per image instead of one.")

defaults = style_settings.StyleSettings()
with st.expander("Settings", expanded=False):
    c1, c2, c3 = st.columns(3)
    size = c1.slider("Working size (long side, px)", 64, 1024, defaults.size, step=32, key="size")
    steps = c1.number_input("Steps", 1, 5000, defaults.steps, key="steps")
    optimizer = c1.selectbox("Optimizer", list(choices.OPTIMIZERS), key="optimizer")
    lr = c1.number_input("Learning rate (0 = default: 1 for L-BFGS, 0.02 for Adam)", 0.0, 100.0, 0.0,
                         format="%.4f", key="lr")
    alpha = c2.number_input("Content weight alpha", 0.0, 1e12, defaults.content_weight, format="%.3g", key="alpha")
    beta = c2.number_input("Style weight beta", 0.0, 1e15, defaults.style_weight, format="%.3g", key="beta")
    loss_normalization = c2.selectbox(
        "Loss scale", ["relative", "paper"], key="loss_normalization",
        format_func={"relative": "Relative (any VGG19 file)", "paper": "Paper (eq. 1 and 4)"}.get,
        help="Relative: content and style terms divided by their targets' size, so that alpha/beta mean the "
             "same for any VGG19 file. Paper: Gatys et al.'s eq. 1 and 4 as written (see the equations above)")
    tv_weight = c2.number_input("TV weight", 0.0, 1e9, defaults.tv_weight, format="%.3g", key="tv_weight")
    tv_beta = c2.number_input("TV exponent p", 0.5, 10.0, defaults.tv_beta, key="tv_beta",
                              help="The exponent of the total-variation term R_{V^p} (Mahendran & Vedaldi 2015, "
                                   "who call it beta; not the style weight): 2 smooths evenly, below 2 keeps edges")
    layer_names = [n for n in (model.layer_names if model else []) if n.startswith(("conv", "relu"))] or \
        list(defaults.style_layers) + [defaults.content_layer]
    content_layer = c3.selectbox("Content layer", layer_names,
                                 index=layer_names.index(defaults.content_layer), key="content_layer")
    style_layers = c3.multiselect("Style layers", layer_names, default=list(defaults.style_layers), key="style_layers")
    layer_w = c3.text_input("Style layer weights w_l (comma-separated; empty = equal)", "", key="layer_weights")
    init = c3.selectbox("Start from", list(choices.INITS), key="init", format_func=pickers.INIT_TITLES.get,
                        help="The content photo recoloured with the style's colour histograms (the default) "
                             "starts in the style's palette, so fewer steps are needed")
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="seed")
    pooling = c1.selectbox("Pooling", ["max", "avg"], key="pooling",
                           help="Gatys et al. replace max pooling by average pooling for smoother results")
    precision = c2.selectbox("Precision", list(choices.PRECISIONS), key="precision",
                             help="auto: bf16 where the CPU or GPU supports it; Gram matrices and losses stay float32")
    parameterization = c1.selectbox(
        "Optimize", list(choices.STYLE_PARAMETERIZATIONS), key="parameterization",
        format_func={"auto": "auto", "fourier": "Fourier offset", "pixel": "pixels"}.get,
        help="Fourier offset: the optimizer changes an offset to the start whose spatial frequencies are scaled "
             f"by 1/f^{parameterizations.STYLE_FOURIER_DECAY:g}, so broad changes come as easily as fine ones, and "
             "L-BFGS needs fewer steps. Olah et al. 2017 (and their Lucid library) scale by 1/f; the exponent "
             f"{parameterizations.STYLE_FOURIER_DECAY:g} is this project's, tuned on the real VGG19 (fewest L-BFGS "
             "evaluations to a given loss). Pixels: every pixel directly, as in the paper; auto: Fourier with "
             "L-BFGS, pixels with Adam")
    conv_algorithm = c2.selectbox(
        "Convolutions (CPU, fp32)", list(choices.CONV_ALGORITHMS), key="conv_algorithm",
        format_func={"auto": "auto", "direct": "direct", "winograd": "Winograd"}.get,
        help="Winograd's algorithm (NNPACK, inside PyTorch) needs fewer multiplications for 3x3 convolutions: "
             "about 2x faster on large feature maps of a CPU in float32. auto: Winograd on maps of 2048 positions "
             "and more, torch's direct convolution elsewhere. No effect on a GPU or in bf16")
    preview_every = c3.number_input("Preview every N steps", 1, 1000, 5, key="preview_every")
    st.caption(
        f"**L-BFGS** (Liu & Nocedal 1989, *On the limited memory BFGS method for large scale optimization*) is a "
        f"quasi-Newton method: it never forms the Hessian of the loss, but estimates the curvature from the last "
        f"m pairs of steps s_k and gradient changes y_k and turns the gradient into a better-scaled step. Here "
        f"m = {transfer.LBFGS_HISTORY} (torch.optim.LBFGS's history_size), with a strong-Wolfe line search. Adam "
        f"keeps only running means of the gradient and its square: cheaper per step, but it needs more steps.")

with st.expander("Colours, scales and photorealism", expanded=False):
    k1, k2, k3 = st.columns(3)
    preserve_color = k1.radio(
        "Keep the content's colours", list(choices.PRESERVE_COLORS), key="preserve_color",
        format_func={"none": "No (colours from the style)", "luminance": "Luminance-only transfer",
                     "histogram": "Recolour the style: content's channel histograms",
                     "linear": "Recolour the style: content's mean and covariance"}.get,
        help="Gatys et al. 2017, sec. 5: transfer only the luminance and put the content's colours back, or "
             "recolour the style image with the content's colours before the transfer (each RGB channel's "
             "histogram, or the paper's linear transform of the RGB mean and covariance)")
    scales = k2.number_input("Scales (coarse-to-fine)", 1, 8, defaults.scales, key="scales",
                             help="Optimize a small image first, then upsample it as the start of the next size: "
                                  "larger images in less time, and fewer out-of-memory errors")
    start_size = k2.slider("First scale (long side, px)", 32, 512, defaults.start_size, step=16, key="start_size",
                           disabled=scales == 1)
    ratio = k2.slider("Steps at each larger scale (fraction of the previous)", 0.1, 1.0,
                      defaults.scale_steps_ratio, step=0.05, key="scale_steps_ratio", disabled=scales == 1)
    plan_slot = k2.empty()  # the sizes of these settings' scales, once the settings are made
    photo = k3.toggle("Photorealistic mode", key="photo",
                      help="Deep Photo Style Transfer (Luan et al. 2017): penalize outputs that are not locally affine colour changes of the "
                           "content photo (Matting Laplacian), and match styles region by region")
    photo_lambda = k3.select_slider("Photorealism weight lambda", [0.0, 1e3, 1e4, 3e4, 1e5, 3e5, 1e6, 1e7],
                                    value=style_settings.DEFAULT_PHOTO_LAMBDA, key="photo_lambda", disabled=not photo,
                                    format_func=lambda v: f"{v:g}",
                                    help="With relative losses L_m is per pixel; 1e5 keeps photos photographic "
                                         "on the real VGG19, smaller values let more of the style's texture in")
    masks = k3.selectbox("Semantic regions", ["none", "auto", "files", "segmentation"], key="masks",
                         format_func={"none": "None (one Gram matrix for the whole image)",
                                      "auto": "Automatic: colour clusters (k-means)",
                                      "files": "Upload colour-coded masks",
                                      "segmentation": "DeepLabV3 segmentation (pretrained weights)"}.get)
    mask_k = k3.slider("Colour clusters k", 2, 8, defaults.mask_k, key="mask_k", disabled=masks != "auto")
    mask_uploads = None
    if masks == "files":
        m1, m2 = st.columns(2)
        cm = m1.file_uploader("Content mask (same colour = same region)", key="content_mask_upload")
        sm = m2.file_uploader("Style mask", key="style_mask_upload")
        mask_uploads = control.MaskInputs(cm.getvalue() if cm else None, sm.getvalue() if sm else None)
    st.markdown(
        "- **Luminance-only**: the network sees gray (luminance, Y of YIQ) versions of both images, the style's "
        "brightness matched to the content's mean and spread; the result's luminance is then combined with the "
        "content's colour channels (I, Q). **Recolour the style**: before the transfer the style image is "
        "given the content's colours, so the strokes stay and the palette is the content's. *Channel "
        "histograms* matches each RGB channel's histogram to the content's on its own (scikit-image "
        "`match_histograms`). *Mean and covariance* is Gatys et al. 2017's transform (sec. 5.2): every style "
        "pixel x becomes A x + b so that the style's RGB mean and 3x3 covariance equal the content's; the paper "
        "names two choices of A, Cholesky factors or symmetric matrix square roots, and this app uses the "
        "symmetric roots, A = Σ_C^½ Σ_S^-½, b = μ_C − A μ_S (colours it pushes outside 0-1 are clipped).\n"
        "- **Coarse-to-fine** (Gatys et al. 2017, *Controlling Perceptual Factors in Neural Style Transfer*): "
        "the first scale finds the layout cheaply; each next size only refines it, with fewer steps. The sizes "
        "grow geometrically: each is the previous one times r = (working size / first scale)^(1/(scales − 1)), "
        "so r = √2 ≈ 1.41 only where the working size is 2^((scales − 1)/2) times the first scale.\n"
        "- **Photorealism**: the Matting Laplacian M of the content (Levin et al. 2008) is a fixed matrix, "
        "computed once from the content photo. What is near zero is the quadratic form V_c[O]ᵀ M V_c[O] of the "
        "output O: it is when O is, in every 3x3 window, an affine function of the content's colours (Levin et "
        "al. 2008; Luan et al. eq. 2, below). The loss adds lambda times it, so edges stay where the photo has "
        "them.\n"
        "- **Semantic regions**: one Gram matrix per region (sky to sky, building to building), so styles do not "
        "spill across regions; regions present in only one image are ignored. Luan et al. weight each "
        "region's term 1/(2N²) (their eq. 3a, below; their eq. 4 sums it over the layers with weights β_l "
        "and Γ); this app averages each region's Gram matrix over the "
        "region's positions and weights the term 1/(4N²) like Gatys et al.'s eq. 4, so that a single region "
        "covering the whole image gives exactly the plain style loss.")
    st.markdown(
        f"**Luan et al.'s own values** (Luan, Paris, Shechtman & Bala 2017, *Deep Photo Style Transfer*): "
        f"Γ = 10² on the style term and λ = 10⁴ on L_m, in a two-stage procedure: first the style transfer with "
        f"the region-wise style loss and no photorealism term, then that result as the start of a second run "
        f"with λ L_m switched on (they found that solving eq. 4 at once lets the strong regularizer suppress the "
        f"local colour transfer). Their λ multiplies L_m summed over all pixels next to unnormalized losses. Here "
        f"beta plays the role of Γ, the run is one stage (the photorealism term is on from the first step; the "
        f"coarse-to-fine scales are not their stages), and with relative losses L_m is divided by the number of "
        f"pixels, so this page's lambda (default {style_settings.DEFAULT_PHOTO_LAMBDA:g}) is on another scale "
        f"and cannot be compared with their 10⁴.")
    st.latex(r"\mathcal{L}_m = \sum_{c=1}^{3} V_c[O]^\top \mathcal{M}_I V_c[O] "
             r"\qquad \text{(Luan et al. 2017, eq. 2)}")
    st.latex(r"\mathcal{L}^l_{s+} = \sum_{c=1}^{C} \frac{1}{2N_{l,c}^2} \sum_{ij} "
             r"\left(G_{l,c}[O] - G_{l,c}[S]\right)_{ij}^2 \qquad \text{(Luan et al. 2017, eq. 3a)}")
    st.latex(r"\mathcal{L}_{total} = \sum_l \alpha_l \mathcal{L}^l_c + \Gamma \sum_l \beta_l \mathcal{L}^l_{s+} "
             r"+ \lambda \mathcal{L}_m \qquad \text{(Luan et al. 2017, eq. 4)}")

settings = None
try:
    settings = style_settings.StyleSettings(
        size=int(size), steps=int(steps), optimizer=optimizer, lr=(lr or None), content_weight=alpha,
        style_weight=beta, loss_normalization=loss_normalization, tv_weight=tv_weight, tv_beta=tv_beta, content_layer=content_layer,
        style_layers=tuple(style_layers), style_layer_weights=(layer_w if layer_w.strip() else None),
        init=init, seed=int(seed), model=model.name if model else st.session_state["style_model_name"], pooling=pooling,
        precision=precision, parameterization=parameterization, conv_algorithm=conv_algorithm,
        preview_every=int(preview_every), preserve_color=preserve_color,
        scales=int(scales), start_size=int(start_size), scale_steps_ratio=float(ratio),
        photo_lambda=float(photo_lambda) if photo else 0.0, masks=masks, mask_k=int(mask_k))
except ValueError as exc:
    st.error(ui.one_line(exc))
if settings is not None and settings.scales > 1:
    plan_slot.caption(style_settings.describe_scale_plan(settings))

blocked = control.unsupported(settings, len(styles), mask_inputs=mask_uploads) \
    if settings is not None and styles is not None else None
if blocked:  # said before Run, not after
    st.warning(f"Run is off: {blocked}.")
ready = model is not None and content is not None and styles is not None and settings is not None and not blocked
run_clicked = ui.run_buttons(ready, run_key="run", stop_key="stop", toast="Stopped: the image so far is kept.")

page_run = ui.PageRun("style")
page_run.recover()
if settings is not None:  # how long Run takes: these settings' work times a per-step cost
    last = page_run.result
    measured = ({"settings": last["settings"], "seconds": last["report"]["seconds"]}
                if last and not last.get("stopped") and (last.get("report") or {}).get("seconds") else None)
    low, high, basis = style_settings.estimate_seconds(settings, measured)
    units = style_settings.step_units(settings)
    work = " + ".join(f"{k} × ({sz}/256 px)²" for sz, k in settings.scale_plan())
    if basis == "measured":
        st.caption(f"Time: about {low:.0f} s here: {work} = {units:.3g} step units × {low / units:.3g} s, the "
                   "time per step at 256 px of this session's last run. The machine may be shared, so the next "
                   "run can be faster or slower.")
    else:
        ref_lo, ref_hi = style_settings.REFERENCE_STEP_SECONDS
        st.caption(f"Time: about {low:.0f}-{high:.0f} s on a 2-core CPU: {work} = {units:.3g} step units × "
                   f"{ref_lo:g}-{ref_hi:g} s, the time per step at 256 px measured with VGG19 on this project's "
                   "2-core AMD EPYC CPU, lightly and heavily shared with other work (a GPU is far faster; after a "
                   "run the estimate uses this session's own time).")


def result_fields(run: control.ControlledTransfer) -> dict:
    """The result section's fields of a finished or stopped run."""
    result = run.result()
    report = run.report()
    report["inputs"] = page_run.pending["inputs"]
    return {"image": images.to_pil(result.image), "history": result.history, "report": report,
            "stopped": result.stopped}


if run_clicked and ready:
    try:
        run = control.ControlledTransfer(
            model, content.image, [(img.image, w) for img, _, w in styles], settings, mask_inputs=mask_uploads,
            targets_fn=lambda m, pairs, s: ui.cached_style_targets(m, pairs if len(pairs) > 1 else pairs[0][0], s))
    except (ValueError, weights.WeightsError) as exc:
        st.error(ui.one_line(exc))
    else:
        total_w = sum(w for _, _, w in styles)
        page_run.start({"inputs": {"content": content_ref,
                                   "style": blend.format_style_spec([(r, w) for _, r, w in styles])},
                        "settings": settings.to_dict(), "weights_label": model.weights.label,
                        "content_image": content.image, "style_images": [img.image for img, _, _ in styles],
                        "style_captions": ["Style"] if len(styles) == 1 else
                                          [f"Style {img.name} ({w / total_w:.0%})" for img, _, w in styles],
                        "regions": run.regions.preview_images() if run.regions is not None else None,
                        "notes": run.notes})
        for note in run.notes:
            st.caption(f"Note: {note}")
        page_run.events(run, scale={"content": settings.content_weight, "style": settings.style_weight,
                                    "tv": settings.tv_weight, "photo": settings.photo_lambda},
                        normalization=settings.loss_normalization, fields=result_fields)
        if not run.started:  # its first scale was refused: run_events showed why in one line
            page_run.cancel()
        else:
            page_run.finish(**result_fields(run))

res = page_run.result
if res:
    ui.result_heading(res)
    cols = st.columns(3)
    cols[0].image(res["content_image"], caption="Content", width="stretch")
    cols[1].image(res["style_images"], caption=res["style_captions"], width="stretch")
    cols[2].image(res["image"], caption=f"Result ({res['weights_label']})", width="stretch")
    if res.get("regions"):
        r1, r2, _ = st.columns(3)
        r1.image(res["regions"][0], caption="Content regions", width="stretch")
        r2.image(res["regions"][1], caption="Style regions (same colour = matched)", width="stretch")
    for note in res.get("notes") or []:
        st.caption(f"Note: {note}")
    pnginfo = {"weights": res["weights_label"], "settings": outputs.json_text(res["settings"], indent=None)}
    ui.downloads(res, [
        ui.png_download(res, key="download_png", file_name="stylized.png", pnginfo=pnginfo),
        ui.recipe_download(recipes.recipe("stylize", res["report"], res["inputs"]), key="download_json",
                           file_name="recipe.json", label="Download settings (JSON)",
                           help="Replay with: python -m explorer stylize --recipe recipe.json CONTENT STYLE -o out.png")],
        widths=[1, 1.4, 2])
    hist = res["history"]
    if hist:
        s_ = res["settings"]
        st.plotly_chart(plots.loss_figure(hist, scale={"content": s_["content_weight"], "style": s_["style_weight"],
                                                       "tv": s_["tv_weight"], "photo": s_.get("photo_lambda", 0)},
                                          per_layer="style_layers" in hist[-1], layer_scale=s_["style_weight"],
                                          normalization=s_.get("loss_normalization", "relative"),
                                          layer_weights=style_settings.StyleSettings.from_dict(s_).layer_weights),
                        key="final_chart")
        took = f"{hist[-1]['step']} steps in {res['report']['seconds']:.1f} s. "
        st.caption(took + style_settings.describe_final_losses(hist[-1], s_))
