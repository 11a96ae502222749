"""``python -m explorer reconstruct``: what each layer keeps, as one figure: content
reconstructions from single layers and style reconstructions from growing sets of layers, all
from white noise (:mod:`explorer.style.reconstruct`; Gatys, Ecker & Bethge 2016, Fig. 1).
"""

from __future__ import annotations

import argparse

from ..core import choices, devices, recipes
from ..io import outputs
from ..style import reconstruct
from . import common

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Reconstruct: the figure PNG, with ``--report`` its recipe, with ``--save-each`` every picture.

    Returns:
        the exit status (130 when interrupted: the finished pictures are still written).

    Raises:
        explorer.cli.common.CliError and the errors :func:`explorer.cli.commands.run` turns into one line.
    """
    recipe = common.read_recipe(args.recipe, args.command) if args.recipe else {}
    settings = common.settings_from(reconstruct.ReconstructSettings, args, recipe, networks=choices.STYLE_MODELS)
    content_ref = _ref(args.content, recipe, "content", reconstruct.DEFAULT_CONTENT)
    style_ref = _ref(args.style, recipe, "style", reconstruct.DEFAULT_STYLE)
    out = common.png_out(args, "reconstruct.png")
    if args.save_each:
        outputs.check_output_path(args.save_each, "--save-each", folder=True)
    common.check_apart(args, out, inputs=[("content image", common.file_ref(content_ref)),
                                          ("style image", common.file_ref(style_ref))])
    common.check_layers(settings.model, [*settings.content_layers, *[l for s in settings.style_sets for l in s]])
    content = common.load_ref(content_ref, "content image")
    style = common.load_ref(style_ref, "style image")
    model = common.load_net(args, settings.model, recipe)
    run_ = reconstruct.Reconstruction(model, content.image, style.image, settings)
    for note in run_.notes:
        common.say(f"note: {note}")
    n = len(settings.plan())
    common.say(f"reconstructing {content.name} and {style.name} ({n} pictures of {settings.steps} steps, "
               f"{settings.size} px) on {model.device}, {devices.precision_name(run_.dtype)}, {model.weights.label}")
    interrupted = common.drive(run_, "reconstruct", args.quiet, keys=("total",))
    result = run_.result()
    report = recipes.recipe("reconstruct", result.report(), {"content": content_ref, "style": style_ref})
    report["output"] = str(out)
    steps = []
    if args.report:
        steps.append((args.report, lambda: outputs.write_json_atomic(report, args.report)))
    info = {"weights": result.weights_info.label, "settings": outputs.json_text(report["settings"], indent=None)}
    steps.append((str(out), lambda: outputs.save_png_atomic(result.figure(), out, pnginfo=info)))
    if args.save_each:
        steps.append((args.save_each, lambda: reconstruct.save_pictures(result, args.save_each)))
    common.write_results(args, steps)
    for note in result.notes:
        if getattr(note, "code", "") == "picture_stopped":
            common.say(f"warning: {note}")
    for p in result.pictures:
        common.say(f"{p.kind} {p.label}: relative error {p.relative_error:.3g} after {p.steps} steps, {p.seconds:.1f} s")
    common.say(f"wrote {out}: {len(result.pictures)} of {n} pictures in {result.seconds:.1f} s")
    return 130 if interrupted else 0


def _ref(arg: str | None, recipe: dict, key: str, default: str) -> str:
    """The image given on the command line, else the recipe's ``inputs[key]``, else ``default``."""
    if arg or (isinstance(recipe.get("inputs"), dict) and recipe["inputs"].get(key)):
        return common.image_ref(arg, recipe, key)
    return default
