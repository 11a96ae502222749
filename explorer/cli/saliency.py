"""``python -m explorer saliency``: a Captum heatmap of a style objective over the style image
(:mod:`explorer.saliency.attribution`), written as an overlay PNG, optionally the raw map as ``.npy``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core import choices, recipes
from ..core.settings import check_float
from ..saliency import attribution, objectives as saliency_objectives
from ..io import images
from ..io import outputs
from . import common

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Saliency: the heatmap overlay PNG, ``--npy`` the raw (H, W) map, ``--report`` its JSON.

    Returns:
        the exit status.

    Raises:
        explorer.cli.common.CliError and the errors :func:`explorer.cli.commands.run` turns into one line.
    """
    out = common.png_out(args, "saliency.png")
    if args.npy and Path(args.npy).suffix.lower() != ".npy":
        raise common.CliError(f"--npy must name a .npy file; got {args.npy}")
    check_float("--opacity", args.opacity, 0.0, 1.0)
    recipe = common.read_recipe(args.recipe, args.command) if args.recipe else {}
    settings = common.settings_from(attribution.AttributionSettings, args, recipe, networks=choices.SALIENCY_MODELS)
    style_ref = common.image_ref(args.style, recipe, "style")
    common.check_apart(args, out, inputs=[("style image", common.file_ref(style_ref))])
    common.check_layers(settings.model, [*settings.style_layers, settings.gradcam_layer,
                                         saliency_objectives.parse_objective(settings.objective).layer or ""])
    li = common.load_ref(style_ref, "style image")
    model = common.load_net(args, settings.model, recipe)
    x = images.to_tensor(images.resize_long_side(li.image, settings.size))
    run = attribution.AttributionRun(model, x, settings)
    for note in run.notes:
        common.say(f"note: {note}")
    explained = f"logit of {run.target}" if run.target else run.spec.describe()  # the class objective names its class
    common.say(f"{attribution.METHOD_TITLES[settings.method]} of {explained} for {li.name} "
         f"({x.shape[-1]}x{x.shape[-2]} px) on {model.device}, {model.weights.label}")
    if common.drive(run, settings.method, args.quiet):
        return 130
    heat = run.result()
    info = {"weights": model.weights.label, "heatmap": outputs.json_text(heat.report(), indent=None)}
    common.write_results(args, [
        *([(args.report, lambda: outputs.write_json_atomic(recipes.recipe("saliency", heat.report(),
                                                                          {"style": style_ref}), args.report))]
          if args.report else []),
        (str(out), lambda: outputs.save_png_atomic(
            attribution.overlay_image(heat.image, heat.values, args.opacity, signed=heat.signed), out, pnginfo=info)),
        *([(args.npy, lambda: outputs.write_bytes_atomic(outputs.npy_bytes(heat.values), args.npy))]
          if args.npy else [])])
    common.say(f"wrote {out}" + (f" and {args.npy}" if args.npy else "") +
         f" ({heat.values.shape[1]}x{heat.values.shape[0]}, values {heat.values.min():.3g} to "
         f"{heat.values.max():.3g}, {heat.seconds:.1f} s" + (f", {heat.engine} occlusion" if settings.method == "occlusion" else "") + ")")
    return 0
