"""Parameter sweep page: a grid of style transfers over one or two parameters, side by side with
their losses; the grid (PNG) and the numbers (CSV) download."""

import streamlit as st

from explorer.app import ui

ui.page_guard()  # before anything is drawn: see explorer.app.ui.page_guard

from explorer.batch import sweep as batch, sweep_axes, sweep_render
from explorer.core import choices
from explorer.style import gatys, settings as style_settings
from explorer.app import pickers, plots, ui
from explorer.io.outputs import json_text

st.title("Parameter sweep")
st.caption("One style transfer per cell of a grid: change one or two settings, keep everything else, and see "
           "what each does to the picture and to the losses (Gatys, Ecker & Bethge, CVPR 2016).")

model = ui.sidebar_model(choices.STYLE_MODELS, key="sweep_model")
# the default pair shows the ratio on the real VGG19: at ratio 1 the cat keeps its photo colours, at 0.03 and
# below it is drawn in the stained tissue's strokes (astronaut + hubble deep field stayed a dark starfield)
content, content_ref, style_img, style_ref = pickers.content_style_pickers(
    "sweep_content", "sweep_style", width=200, content="chelsea", style="immunohistochemistry")

defaults = style_settings.StyleSettings()  # the sweep runs at its loss scale (relative)
with st.expander("What does each parameter do, and what should I look for?"):
    st.markdown(
        "- **Content/style ratio α/β**: how much the optimizer cares about keeping the photo's layout (α, the "
        "content loss at relu4_2) against matching the style's texture statistics (β, the Gram matrices). A "
        "*smaller* ratio means *more* style. Each cell uses α = the content weight below and β = α / ratio; the "
        "values are spaced evenly on a log scale. Look for the ratio where the photo starts to dissolve into "
        "texture.\n"
        "- **Iterations**: *one* run, photographed at the chosen steps (not separate runs). Look at how fast the "
        "losses fall and when the picture stops changing: colours come first, larger patterns later.\n"
        "- **Seed**: the random start when starting from *noise*. Different seeds give different arrangements "
        "of the same texture (a Gram matrix does not record *where* things are). Starting from the content "
        "image, the seed changes nothing.\n"
        "- **Initialization**: start from the content photo in the style's colours (the default) or as it is "
        "(both keep its layout, fastest), white noise (Gatys et al.'s start; pure synthesis: needs many more "
        "steps, or a larger learning rate) or the style image.\n"
        "- **Style layers**: *shallow* (relu1_1, relu2_1) carry colours and fine grain, *deep* (relu4_1, "
        "relu5_1) larger motifs; *all five* is the paper's choice. Each layer weighs 1/L of its own set, so "
        "style losses of different sets are not comparable with each other.\n"
        "- **Optimizer**: L-BFGS (the paper's) usually gets lower in fewer steps; Adam moves each pixel by at "
        "most about its learning rate per step, slower but steady.\n\n"
        f"Under each cell: its **content** loss ({plots.term_label('content', defaults.loss_normalization)}), "
        f"**style** loss ({plots.term_label('style', defaults.loss_normalization)}), both unweighted, and the "
        "**total** the optimizer minimized (α content + β style). Compare totals only between cells with the same "
        "α and β.\n\n"
        "**Batching**: cells that differ only in the seed (and, with Adam, in α/β) are computed together, as one "
        "batch of images through the network, which is faster than one after another. Adam treats every pixel "
        "on its own, so a batched image gets exactly the run it would get alone. L-BFGS keeps one memory of "
        "past gradients for everything it optimizes, so batching would couple the images: with L-BFGS every "
        "seed and ratio is its own run, one after another.")
    st.markdown("**Ratios** are of the relative losses (each term divided by its target's size, so the same "
                f"numbers hold for any VGG19 file): the default β = {defaults.style_weight:g} is a ratio of "
                f"{defaults.content_weight / defaults.style_weight:g}; about 1 keeps "
                "mostly the photo, about 1e-3 mostly the painting.")
    if model is not None and model.weights.untrained:
        st.markdown("**With untrained weights** the features are not ImageNet's, so these ratios do not balance "
                    "content and style the same way: a ratio sweep is exactly how to find the range where the "
                    "picture changes.")

st.subheader("What to vary")
a1, a2 = st.columns(2)
with a1:
    axis1, ok1 = pickers.sweep_axis_picker("Rows", "sweep_rows", default="alpha_beta")
with a2:
    axis2, ok2 = pickers.sweep_axis_picker("Columns", "sweep_cols", default="steps", optional=True,
                                      exclude=(axis1.name,) if axis1 is not None else ())

with st.expander("Base settings (every cell starts from these)"):
    c1, c2, c3 = st.columns(3)
    size = c1.slider("Working size (long side, px)", 64, 256, 96, step=16, key="sweep_size",
                     help="Small is quick: a 3 x 3 grid at 96 px takes well under a minute on a laptop CPU")
    steps = c1.number_input("Steps per run", 1, 2000, 40, key="sweep_steps",
                            help="An iterations axis replaces this by its largest step")
    optimizer = c1.selectbox("Optimizer", ["adam", "lbfgs"], key="sweep_optimizer",
                             format_func={"adam": "Adam", "lbfgs": "L-BFGS"}.get)
    lr = c1.number_input("Learning rate (0 = default: 1 for L-BFGS, 0.02 for Adam)", 0.0, 100.0, 0.0,
                         format="%.4f", key="sweep_lr")
    alpha = c2.number_input("Content weight α", 0.0, 1e12, defaults.content_weight, format="%.3g",
                            key="sweep_alpha", help="A ratio axis keeps α and sets β = α / ratio")
    beta = c2.number_input("Style weight β", 0.0, 1e15, defaults.style_weight, format="%.3g", key="sweep_beta",
                           help="Not used by a ratio axis")
    init = c3.selectbox("Start from", list(choices.INITS), key="sweep_init", format_func=pickers.INIT_TITLES.get)
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="sweep_seed")
    layer_set = c3.selectbox("Style layers", list(sweep_axes.STYLE_LAYER_SETS), key="sweep_layers",
                             index=list(sweep_axes.STYLE_LAYER_SETS).index("all five"),
                             format_func=lambda n: f"{n} ({', '.join(sweep_axes.STYLE_LAYER_SETS[n])})")

axes = [a for a in (axis1, axis2) if a is not None]
names = {a.name for a in axes}
if "seed" in names and init != "noise" and "init" not in names:
    st.info("The seed only changes the *noise* start: set **Start from** to noise in the base settings, or every "
            "seed gives the same picture.")

settings = sweep = None
try:
    settings = style_settings.StyleSettings(size=int(size), steps=int(steps), optimizer=optimizer, lr=(lr or None),
                                   content_weight=float(alpha), style_weight=float(beta), init=init, seed=int(seed),
                                   style_layers=sweep_axes.STYLE_LAYER_SETS[layer_set], preview_every=5,
                                   model=model.name if model else st.session_state["sweep_model_name"])
    if model is not None and content is not None and style_img is not None and axis1 is not None and ok2:
        c, s = gatys.prepare_images(content.image, style_img.image, settings.size)
        sweep = batch.Sweep(model, c, s, settings, axis1, axis2)  # plans only; runs when iterated
except ValueError as exc:
    st.error(ui.one_line(exc))

if sweep is not None:
    sizes = [p.batch for p in sweep.plan]
    st.caption(f"Plan: {sweep.shape[0] * sweep.shape[1]} cells from {len(sizes)} optimization "
               f"run(s) of {sweep.run_steps} steps" + (f", batches of {', '.join(map(str, sizes))} images"
                                                       if max(sizes) > 1 else "") + ".")

run_clicked = ui.run_buttons(sweep is not None, run_key="sweep_run", stop_key="sweep_stop", label="Run sweep")


def outputs(sw: batch.Sweep) -> dict | None:
    """The result fields of a (possibly stopped) sweep: grid image, table, CSV, summary line."""
    cells = sw.cells
    if not cells:
        return None
    rows, cols = sw.row_labels, sw.col_labels
    grid = sweep_render.sweep_grid_image(cells, rows=rows, cols=cols, row_title=sw.axes[0].title if len(sw.axes) > 1 else "",
                                  col_title=sw.axes[-1].title, title=f"{model.weights.label if model else ''}",
                                  cell_px=max(160, *sw.content.shape[-2:]))  # readable on a projector
    n_runs = len({c.run for c in cells})
    summary = (f"{len(cells)} cells from {n_runs} optimization run(s) in {sw.seconds:.1f} s: "
               f"{sw.seconds / len(cells):.2f} s per cell.")
    return {"grid": grid, "table": sweep_render.sweep_table(cells), "csv": sweep_render.sweep_csv(cells), "summary": summary,
            "report": sw.report()}


# a Stop (or any widget change) mid-sweep reruns this script: keep the cells finished so far
page_run = ui.PageRun("sweep")
page_run.recover()

if run_clicked and sweep is not None:
    try:
        targets = ui.cached_style_targets(model, sweep.style, settings, layers=sweep.style_layers)
        sweep = batch.Sweep(model, sweep.content, sweep.style, settings, axis1, axis2, targets=targets)
    except ValueError as exc:
        st.error(ui.one_line(exc))
    else:
        page_run.start({"inputs": {"content": content_ref, "style": style_ref},
                        "weights_label": model.weights.label})
        page_run.events(sweep, preview_caption="Current run's images", fields=outputs)
        page_run.finish(**(outputs(sweep) or {}))

res = page_run.result
if res and res.get("grid") is not None:
    ui.result_heading(res)
    st.image(res["grid"], caption=f"Sweep ({res['weights_label']})")
    st.caption(res["summary"] + " Cells of one batch share their run's seconds.")
    # significant digits, not fixed decimals: style losses of 3e-4 would all read 0.0003
    st.dataframe(res["table"], hide_index=True, key="sweep_table",
                 column_config={c: st.column_config.NumberColumn(format="%.4g") for c in
                                ("content", "style", "tv", "total", "ratio", "content_weight", "style_weight")})
    pnginfo = {"weights": res["weights_label"],
               "sweep": json_text({**res["report"], "inputs": res["inputs"]}, indent=None)}
    ui.downloads(res, [  # three columns: room for the labels at 1280 px
        ui.png_download(res, key="sweep_download_png", file_name="sweep.png", label="Download grid (PNG)",
                        image="grid", slot="png", pnginfo=pnginfo),
        ui.Download("Download numbers (CSV)", "sweep.csv", "text/csv", "sweep_download_csv", lambda: res["csv"])],
        widths=[1, 1, 1])
