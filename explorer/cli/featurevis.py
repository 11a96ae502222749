"""``python -m explorer featurevis``: feature visualization by optimization from scratch
(:mod:`explorer.featurevis.render`; Olah, Mordvintsev & Schubert, Distill 2017): the grid of the
channels' pictures, and with ``--examples N`` each channel's top-N dataset crops beside it
(:mod:`explorer.featurevis.grid`); the progress bar shows the objective.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core import choices, recipes
from ..core.settings import check_int
from ..featurevis import render as FV
from ..featurevis import grid as G
from ..io import outputs
from . import common
from ..featurevis.examples import folder_sources
from ..optim.transforms import STANDARD_TRANSFORMS

__all__ = ["run", "examples_path"]


def examples_path(out: Path) -> Path:
    """Where ``--examples`` writes its sheet: ``OUT-examples.png`` beside ``OUT.png``."""
    return out.with_name(f"{out.stem}-examples.png")


def _settings(args: argparse.Namespace, recipe: dict) -> FV.FeatureVisSettings:
    """Defaults < the recipe < flags. The settings' ``weights`` (a direction's entries) come
    from ``--direction-weights`` (``--weights`` names a weights file); ``--transforms`` also
    takes ``standard`` or ``none``; ``--channels`` takes ranges (``0-3,7``). Unless a recipe says otherwise, each channel of a channel,
    neuron or class objective gets its own picture (``--together``: one picture for all), and
    ``--batch`` defaults to one image per channel.

    Raises:
        CliError: a recipe without ``settings``, or a bad value (one line).
    """
    if recipe and "settings" not in recipe:
        raise common.CliError("recipe has no 'settings' object")
    flags = {k: v for k, v in vars(args).items() if k in FV.FeatureVisSettings.__dataclass_fields__
             and k not in ("weights", "transforms", "separate")}
    if hasattr(args, "direction_weights"):
        flags["weights"] = args.direction_weights
    if hasattr(args, "transforms"):
        t = args.transforms.strip().lower()
        flags["transforms"] = STANDARD_TRANSFORMS if t == "standard" else () if t in ("none", "") else args.transforms
    merged = {**(recipe.get("settings") or {}), **flags}
    if "model" not in merged:
        merged["model"] = common.default_network(args, FV.FeatureVisSettings.model, choices.MODEL_NAMES)
    try:
        if "channels" in flags:
            merged["channels"] = G.parse_channels(flags["channels"])
        probe = FV.FeatureVisSettings.from_dict({**merged, "separate": False, "batch": 1, "diversity": 0.0})
        fresh = not recipe or "channels" in flags or "objective" in flags or args.together
        if fresh:
            merged["separate"] = probe.objective != "direction" and not args.together
        if "batch" not in flags and fresh:
            merged["batch"] = len(probe.channels) if merged["separate"] else 1
        return FV.FeatureVisSettings.from_dict(merged)
    except ValueError as exc:
        raise common.CliError(" ".join(str(exc).split())) from None


def run(args: argparse.Namespace) -> int:
    """Visualize: the grid PNG (``-o``), with ``--examples N`` the sheet of pictures and crops,
    with ``--report`` the JSON report; 130 when interrupted.

    Returns:
        the exit status.

    Raises:
        explorer.cli.common.CliError and the errors :func:`explorer.cli.commands.run` turns into one line.
    """
    recipe = common.read_recipe(args.recipe, args.command) if args.recipe else {}
    settings = _settings(args, recipe)
    out = common.png_out(args, "featurevis.png")
    k = args.examples if args.examples is not None else int(recipe.get("examples_k") or 0) if recipe else 0
    check_int("--examples", k, 0, 100)
    if args.images_dir and not k:
        raise common.CliError("--images-dir needs --examples N (how many crops per channel)")
    sources, images = None, "samples"
    if args.images_dir:
        sources, images = folder_sources(args.images_dir), str(args.images_dir)
    elif k and str((recipe.get("inputs") or {}).get("images", "samples")).startswith("upload:"):
        common.say("note: the recipe's images were uploaded in the browser; using the bundled samples "
                   "(pass --images-dir DIR for your own)")
    sheet_out = examples_path(out) if k else None
    common.check_apart(args, out, folders=[("--images-dir", args.images_dir)],
                       more=[("the examples sheet", sheet_out)] if sheet_out is not None else [])
    common.check_layers(settings.model, [settings.layer])
    model = common.load_net(args, settings.model, recipe)
    run = G.GridRun(model, settings, sources, k=k)  # a bad layer, channel or folder: one line, before any work
    what = f"{settings.layer} {settings.objective} {','.join(map(str, settings.channels))}"
    common.say(f"visualizing {what} ({settings.batch} image{'s' if settings.batch > 1 else ''}, "
               f"{settings.size} px, {settings.steps} steps) on {model.device}, {model.weights.label}")
    shown: set[str] = set()

    def events():
        for ev in run:
            if ev.message:
                shown.update(m.strip() for m in ev.message.split(";"))
            yield ev

    interrupted = common.drive(run, "featurevis", args.quiet, keys=("objective",), events=events())
    result = run.result()
    for note in result.notes:
        if note not in shown:
            common.say(f"note: {note}")
    report = recipes.recipe("featurevis", result.report(), {"images": images})
    report["output"] = str(out)
    grid = result.grid()
    info = {"weights": report["weights_label"], "settings": outputs.json_text(report["settings"], indent=None)}
    steps = [(str(out), lambda: outputs.save_png_atomic(grid, out, pnginfo=info))]
    if sheet_out is not None and result.examples:
        sheet = result.sheet()
        report["examples_output"] = str(sheet_out)
        steps.append((str(sheet_out), lambda: outputs.save_png_atomic(sheet, sheet_out,
                                                                      pnginfo={"weights": report["weights_label"]})))
    if args.report:
        steps.insert(0, (args.report, lambda: outputs.write_json_atomic(report, args.report)))
    written = common.write_results(args, steps)
    common.say(f"wrote {' and '.join(written[1:] + written[:1] if args.report else written)}")
    return 130 if interrupted else 0
