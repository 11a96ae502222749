"""``python -m explorer dream``: Deep Dream from an image, gray or noise (:mod:`explorer.dream.deepdream`),
or a zoom sequence written as a GIF; the progress bar shows the dream's objective.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core import choices, recipes
from ..core.settings import check_int
from ..dream import deepdream as dream
from ..io import images
from ..io import outputs
from ..dream import zoom
from ..dream import settings as dream_settings
from . import common

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Dream: the dreamed PNG (``--gif`` its octaves, or the zoom frames); 130 when interrupted.

    Returns:
        the exit status.

    Raises:
        explorer.cli.common.CliError and the errors :func:`explorer.cli.commands.run` turns into one line.
    """
    recipe = common.read_recipe(args.recipe, args.command) if args.recipe else {}
    settings = common.settings_from(dream_settings.DreamSettings, args, recipe, networks=choices.MODEL_NAMES)
    ref = common.image_ref(args.image, recipe, "image") if args.image not in ("gray", "noise") else args.image
    out = common.png_out(args, "dream.png")
    if args.gif and Path(args.gif).suffix.lower() != ".gif":
        raise common.CliError(f"--gif must name a .gif file; got {args.gif}")
    if args.zoom_frames and not args.gif:
        raise common.CliError("--zoom-frames needs --gif OUT.gif to write the sequence to")
    check_int("--zoom-frames", args.zoom_frames, 0, 500)
    common.check_apart(args, out, inputs=[("image", common.file_ref(ref)), ("guide image", args.guide)])
    common.check_layers(settings.model, [layer for layer, _ in settings.layers])
    if ref in ("gray", "noise"):
        x = dream.start_image(ref, settings.size or 256, settings.seed)
    else:
        li = common.load_ref(ref, "image")
        pil = images.resize_long_side(li.image, settings.size) if settings.size else li.image
        x = images.to_tensor(pil)
    guide_img = None
    if settings.objective == "guide":
        if not args.guide:
            raise common.CliError("--objective guide needs --guide IMAGE")
        g = common.load_ref(args.guide, "guide image")
        guide_img = images.to_tensor(images.resize_long_side(g.image, max(x.shape[-2:])))
    model = common.load_net(args, settings.model, recipe)
    common.say(f"dreaming {ref} ({x.shape[-1]}x{x.shape[-2]} px) on {model.device}, {model.weights.label}")
    run = zoom.ZoomRun(model, x, settings, args.zoom_frames, args.zoom, guide_img) if args.zoom_frames \
        else dream.DreamRun(model, x, settings, guide_image=guide_img)
    for note in run.notes:
        common.say(f"note: {note}")
    interrupted = common.drive(run, "zoom" if args.zoom_frames else "dream", args.quiet, keys=("objective",))
    for note in ([] if args.zoom_frames else run.notes):
        if getattr(note, "code", None) == dream.DEAD_START_CODE:
            common.say(f"warning: {note}")
    if args.zoom_frames:
        if not run.frames:
            raise common.CliError("interrupted before the first frame was done")
        last, report, frames = run.frames[-1], run.report(), run.frames
    else:
        result = run.result()
        last, report, frames = result.image, result.report(), result.animation_frames()
    pil_frames = [images.to_pil(f) for f in frames]
    report = recipes.recipe("dream", report, {"image": ref, **({"guide": args.guide} if args.guide else {})})
    report["output"] = str(out)
    gif = [(args.gif, lambda: outputs.write_bytes_atomic(
        outputs.gif_bytes(pil_frames, duration_ms=250 if args.zoom_frames else 600), args.gif))] if args.gif else []
    common.write_outputs(args, out, last, report, extra=gif)
    common.say(f"wrote {out}" + (f" and {args.gif}" if args.gif else ""))
    return 130 if interrupted else 0
