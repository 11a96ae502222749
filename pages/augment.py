"""Dataset augmentation page: a zip of an ImageFolder dataset in, N stylized variants of every
image out (same class folders, manifest.csv, skipped.csv), as a zip download."""

import tempfile
from pathlib import Path

import streamlit as st

from explorer.app import ui

ui.page_guard()  # before anything is drawn: see explorer.app.ui.page_guard

from PIL import Image  # noqa: E402

from explorer.batch import augment, augment_io, augment_settings
from explorer.core import choices
from explorer.io import archives, images, samples
from explorer.app import pickers, ui  # noqa: E402

st.title("Dataset augmentation")
st.caption("Stylized copies of a training set with Gatys style transfer: every image gets N variants, each with its "
           "own randomly chosen style (or blend of styles), style weight, steps and size, drawn from the seed. "
           "For large datasets, resuming and several GPUs or machines, use `python -m explorer augment`.")

model = ui.sidebar_model(choices.STYLE_MODELS, key="aug_model")

left, right = st.columns(2)
with left:
    up = st.file_uploader("Dataset (.zip, one folder per class: cats/1.jpg, dogs/2.png, …)", type=["zip"],
                          key="aug_zip", help=f"At most {archives.MAX_ZIP_FILES} files and "
                                              f"{archives.MAX_ZIP_BYTES // 2**20} MB unpacked. Bad files are skipped "
                                              "and listed in skipped.csv.")
with right:
    sample_names = st.multiselect("Style images: samples", list(samples.SAMPLE_STYLE),
                                  default=list(samples.SAMPLE_STYLE)[2:4], key="aug_style_samples")
    uploads = st.file_uploader("Style images: uploads", accept_multiple_files=True, key="aug_style_upload")

styles: list[augment_io.StyleImage] = []
for name in sample_names:
    try:
        styles.append(augment_io.StyleImage(f"sample:{samples.SAMPLE_STYLE[name]}",
                                         samples.load_sample(samples.SAMPLE_STYLE[name]).image))
    except images.ImageError as exc:  # pragma: no cover - samples ship with scikit-image
        st.error(ui.one_line(exc))
taken = {s.name for s in styles}
for f in uploads or []:
    try:
        img = pickers.decode_upload(f.getvalue(), f.name, "style image")
    except ValueError as exc:  # ImageError, or a malformed EXPLORER_MEMORY_LIMIT
        st.error(ui.one_line(exc))
        continue
    name, k = f.name, 1
    while name in taken:
        k += 1
        name = f"{Path(f.name).stem}_{k}{Path(f.name).suffix}"
    taken.add(name)
    styles.append(augment_io.StyleImage(name, img.image))
if styles:
    cols = st.columns(min(len(styles), 6))
    for i, s in enumerate(styles[:6]):
        cols[i].image(s.image, caption=s.name, width=120)

with st.expander("Why stylize a dataset, and what it costs"):
    st.markdown(
        "ImageNet-trained CNNs lean on texture more than on shape: Geirhos et al. 2019 (*ImageNet-trained CNNs "
        "are biased towards texture; increasing shape bias improves accuracy and robustness*) showed that a "
        "cat's shape with an elephant's skin is mostly called an elephant, and that training on "
        "Stylized-ImageNet (each image repainted with a random painting's style, by AdaIN) shifts networks "
        "towards shape and makes them more robust to many distortions. Jackson et al. 2019 (*Style "
        "Augmentation: Data Augmentation via Style Randomization*) used random styles as an augmentation next "
        "to the usual flips, crops and colour jitter, and found better generalization, above all across "
        "domains.")
    st.markdown(
        "The costs: each output here is an optimization of many network passes, seconds to minutes per image "
        "on a CPU where a flip costs nothing (those papers used feed-forward stylizers); the label is assumed "
        "to survive the restyling, which fails when colour or texture is what defines the class (a ripe fruit, "
        "a tissue stain); and a network trained on stylized images only scored lower on the original images in "
        "Geirhos et al., who mixed them with the originals and fine-tuned on ImageNet for their best accuracy. "
        "So keep the originals in the training set, and check a few outputs by eye.")

with st.expander("What is drawn per output, and how to read manifest.csv"):
    st.markdown(
        "Each output image gets its own draws from the seed, its source path and its variant number, so the same "
        "settings give the same dataset, bit for bit:\n"
        "- **style**: one style image chosen at random, or with *Styles per output* K > 1 a blend of K different "
        "ones with random weights (their Gram matrices are averaged with the weights normalized to sum to 1);\n"
        "- **style weight** beta (the content weight alpha is 1), drawn log-uniformly from its range;\n"
        "- **steps** and **working size**, drawn from their ranges (equal ranges = a fixed value);\n"
        "- **traditional augmentation** (flip, crop, colour jitter) with random parameters, before or after "
        "the stylization.\n\n"
        "Several images are optimized together in one batch (Adam, so each follows exactly its own run). "
        "`manifest.csv` has one row per output: source, class, styles and weights, beta, steps, size, seed, "
        "traditional parameters, final losses and seconds; `skipped.csv` lists the files that could not be used "
        "and why.")

defaults = augment_settings.AugmentSettings()
with st.expander("Settings", expanded=True):
    c1, c2, c3 = st.columns(3)
    variants = c1.number_input("Variants per image", 1, 20, 2, key="aug_variants")
    batch_size = c1.number_input("Batch size (images per optimization)", 1, 16, defaults.batch_size,
                                 key="aug_batch")
    seed = c1.number_input("Seed", 0, 2**31 - 1, 0, key="aug_seed")
    size = c2.slider("Working size range (long side, px)", 32, 512, defaults.size, step=16, key="aug_size",
                     help="A range draws each output's size in steps of 32 px from the low end")
    steps = c2.slider("Steps range", 1, 500, defaults.steps, key="aug_steps")
    beta_lo = c2.number_input("Style weight β from (α = 1)", 1e-3, 1e15, defaults.beta_range[0], format="%.3g",
                              key="aug_beta_lo")
    beta_hi = c2.number_input("… to", 1e-3, 1e15, defaults.beta_range[1], format="%.3g", key="aug_beta_hi")
    blend = c3.number_input("Styles per output (blend)", 1, 6, 1, key="aug_blend")
    weight_range = c3.slider("Blend weight range", 0.0, 1.0, defaults.weight_range, step=0.05,
                             key="aug_weight_range", disabled=blend == 1)
    traditional = c3.multiselect("Traditional augmentation", list(augment_settings.TRADITIONAL_OPS), key="aug_traditional",
                                 format_func={"flip": "horizontal flip", "crop": "random resized crop",
                                              "jitter": "colour jitter"}.get)
    traditional_at = c3.radio("Apply it", ["before", "after"], horizontal=True, key="aug_traditional_at",
                              format_func={"before": "before stylization", "after": "after stylization"}.get)

settings = None
try:
    settings = augment_settings.AugmentSettings(
        variants=int(variants), batch_size=int(batch_size), steps=tuple(steps), size=tuple(size),
        beta_range=(float(beta_lo), float(beta_hi)), blend=int(blend), weight_range=tuple(weight_range),
        traditional=tuple(traditional), traditional_at=traditional_at, seed=int(seed),
        model=model.name if model else st.session_state["aug_model_name"])
except ValueError as exc:
    st.error(ui.one_line(exc))
if settings is not None and styles and settings.blend > len(styles):
    st.error(f"Blending {settings.blend} styles per output needs at least {settings.blend} style images; "
             f"{len(styles)} chosen.")
    settings = None
if up is None:
    st.info("Upload a zip of the dataset to start.")
elif not styles:
    st.info("Choose at least one style image.")

ready = model is not None and up is not None and bool(styles) and settings is not None
run_clicked = ui.run_buttons(ready, run_key="aug_run", stop_key="aug_stop", label="Augment",
                             toast="Stopped: the images finished so far are kept.")

SHOWN = 6


def collect(run: augment.Augmentation, out: Path, stopped: str | None) -> dict:
    """What the result section shows, read from the output folder before it is removed."""
    rows = list(augment_io.read_manifest(out).values())
    rows = sorted((found[-1] for found in rows if (out / found[-1]["output"]).is_file()), key=lambda r: r["output"])
    shown = []
    for r in rows[:SHOWN]:
        with Image.open(out / r["output"]) as im:
            shown.append((im.convert("RGB"), r))
    return {"rows": rows, "skipped": list(run.skipped), "shown": shown,
            "zip": archives.zip_folder(out) if out.is_dir() else b"", "summary": run.summary(),
            "weights_label": model.weights.label, "stopped": stopped}


page_run = ui.PageRun("augment")

if run_clicked and ready:
    page_run.clear()
    with tempfile.TemporaryDirectory(prefix="explorer-augment-") as tmp:
        src, out = Path(tmp) / "input", Path(tmp) / "output"
        try:
            archives.extract_dataset_zip(up.getvalue(), src)
            run = augment.Augmentation(model, src, styles, out, settings)
        except ValueError as exc:  # not a zip, unsafe names, too large, unknown layers
            st.error(ui.one_line(exc))
        else:
            stopped = "stopped before the end"
            try:
                page_run.events(run, preview_caption="Latest output")
                stopped = None
            finally:  # also when the user stops the page: keep what was written
                run.finish()
                page_run.finish(**collect(run, out, stopped))

res = page_run.result
if res:
    ui.result_heading(res)
    summary = res["summary"]
    st.write(f"{summary['written']} image(s) written from {summary['input_files']} input file(s) in "
             f"{summary['seconds']:.1f} s ({summary['images_per_minute']:.1f} images/min), "
             f"{res['weights_label']}.")
    if res["shown"]:
        cols = st.columns(len(res["shown"]))
        for col, (im, row) in zip(cols, res["shown"]):
            col.image(im, caption=f"{row['output']} · {row['styles']} · β {row['beta']}", width="stretch")
    if res["rows"]:
        st.dataframe([{k: r[k] for k in ("output", "class", "styles", "style_weights", "beta", "steps", "size",
                                         "traditional", "style_loss", "seconds")} for r in res["rows"]],
                     hide_index=True, key="aug_manifest")
    if res["skipped"]:
        st.warning(f"{len(res['skipped'])} input file(s) skipped (listed in skipped.csv):")
        st.dataframe(res["skipped"], hide_index=True, key="aug_skipped")
    if res["zip"]:
        ui.downloads(res, [ui.Download("Download the augmented dataset (.zip)", "augmented.zip", "application/zip",
                                       "aug_download", lambda: res["zip"],
                                       help="The class folders with the stylized images, manifest.csv and skipped.csv")],
                     widths=[1])
