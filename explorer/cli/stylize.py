"""``python -m explorer stylize``: style transfer of a content image with one style image or
a blend (Gatys et al. 2016, :mod:`explorer.style.transfer`), with the controls of :mod:`explorer.style.control`
(colour preservation, coarse-to-fine scales, photorealism, semantic masks) and optionally style
targets guided by a heatmap or a painted mask (:mod:`explorer.saliency.guided`).
"""

from __future__ import annotations

import argparse
import os

from ..saliency import attribution, guided
from ..style import control, gatys, settings as style_settings
from ..core import choices, devices, recipes
from ..io import images
from . import common
from ..style.blend import format_style_spec, parse_style_entries, parse_style_spec

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Stylize: the content image in the style of the style image (or blend); writes the PNG and the report.

    Returns:
        the exit status.

    Raises:
        explorer.cli.common.CliError and the errors :func:`explorer.cli.commands.run` turns into one line.
    """
    recipe = common.read_recipe(args.recipe, args.command) if args.recipe else {}
    settings = common.settings_from(style_settings.StyleSettings, args, recipe, networks=choices.STYLE_MODELS)
    if args.style_spec and args.style:
        raise common.CliError("give the style image either as STYLE or with --style, not both")
    content_ref = common.image_ref(args.content, recipe, "content")
    out = common.png_out(args, "stylized.png")
    blend, style_ref = _blend(args, recipe)
    guide = _guide_from(args, recipe)
    if guide and len(blend) > 1:
        raise common.CliError("guided transfer explains one style image; blend styles without --guide/--mask")
    mask_inputs = _control_flags(args, settings)
    common.check_apart(args, out, inputs=[
        ("content image", common.file_ref(content_ref)),
        *[("style image", common.file_ref(ref)) for ref, _ in blend],
        ("--mask", args.mask), ("--content-mask", args.content_mask), ("--style-mask", args.style_mask)])
    common.check_layers(settings.model, [settings.content_layer, *settings.style_layers])
    content = common.load_ref(content_ref, "content image")
    style_imgs = [(_load_style(ref, len(blend), style_ref), w) for ref, w in blend]
    style_img = style_imgs[0][0]
    model = common.load_net(args, settings.model, recipe)
    guidance = None
    if guide:  # the heatmap and guided targets are of the style image at the working size
        guidance = _guidance(args, model, gatys.prepare_images(content.image, style_img.image, settings.size)[1],
                             settings, guide)
    run = control.ControlledTransfer(model, content.image, [(li.image, w) for li, w in style_imgs], settings,
                                     mask_inputs=mask_inputs, targets=guidance.targets if guidance else None,
                                     style_channels=guidance.channels if guidance else None)
    for note in run.notes:
        common.say(f"note: {note}")
    how = "" if not guide else ", style targets from the painted mask" if guide.method == "mask" else \
        f", style targets guided by {guide.method} (keep {guide.keep:g}, {guide.variant})"
    how += control.describe(settings, run)
    names = " + ".join(f"{li.name} x{w / sum(x for _, x in blend):.2f}" for li, w in style_imgs) \
        if len(blend) > 1 else style_img.name
    c = run.content_final
    common.say(f"stylizing {content.name} ({c.shape[-1]}x{c.shape[-2]} px) with {names} on {model.device}, "
         f"{devices.precision_name(run.dtype)}, {model.weights.label}{how}")
    interrupted = common.drive(run, "stylize", args.quiet)
    result = run.result()
    report = recipes.recipe("stylize", run.report(), {
        "content": content_ref, "style": style_ref, **({"mask": args.mask} if args.mask else {}),
        **({"content_mask": args.content_mask, "style_mask": args.style_mask} if settings.masks == "files" else {})})
    if guidance:
        report["guide"] = guidance.settings.to_dict()
        report["guidance"] = guidance.report()
    report["output"] = str(out)
    common.write_outputs(args, out, result.image, report)
    if result.stopped and not interrupted:  # an interruption was said when it happened
        common.say(f"warning: {result.stopped}")
    fl = result.final_losses
    common.say(f"wrote {out} after {result.history[-1]['step'] if result.history else 0} steps in {result.seconds:.1f} s"
         + (f"; final total loss {fl['total']:.4g}" if fl else ""))
    return 130 if interrupted else 0


def _blend(args: argparse.Namespace, recipe: dict) -> tuple[list[tuple[str, float]], str]:
    """The style blend [(reference, weight), ...] and how the report stores it: from
    ``--style`` given once (a file, or an ``a:0.7,b:0.3`` spec) or several times (one image
    each, commas kept in names), else STYLE or the recipe's ``inputs.style``. A reference that
    names an existing file is that file whatever its characters."""
    try:
        if args.style_spec and len(args.style_spec) > 1:
            blend = parse_style_entries(args.style_spec, os.path.isfile)
            return blend, format_style_spec(blend)
        ref = args.style_spec[0] if args.style_spec else common.image_ref(args.style, recipe, "style")
        return parse_style_spec(ref, os.path.isfile), ref
    except ValueError as exc:
        raise common.CliError(str(exc)) from None


def _load_style(ref: str, members: int, spec: str):
    """A style image of the blend; a missing file of a spec with commas says how to name it."""
    try:
        return common.load_ref(ref, "style image")
    except images.ImageError as exc:
        if members > 1 and "," in spec and not os.path.isfile(ref) and not ref.lower().startswith("sample:"):
            raise common.CliError(f"{exc} (a comma separates the images of a blend: for a file name with a "
                                  "comma, give --style FILE[:WEIGHT] once per image)") from None
        raise


def _control_flags(args: argparse.Namespace, settings: style_settings.StyleSettings) -> control.MaskInputs | None:
    """Apply the flags that settings cannot take as they are (the semantic-mask source, and
    ``--start-size`` without ``--scales``), validate again, and return the mask files."""
    given = [flag for flag, on in (("--content-mask/--style-mask", args.content_mask or args.style_mask),
                                   ("--auto-masks", args.auto_masks is not None),
                                   ("--segmentation-masks", args.segmentation_masks)) if on]
    if len(given) > 1:
        raise common.CliError(f"choose one source of semantic masks, not {' and '.join(given)}")
    if args.content_mask or args.style_mask:
        if not (args.content_mask and args.style_mask):
            raise common.CliError("semantic masks need both --content-mask FILE and --style-mask FILE")
        settings.masks = "files"
    elif args.auto_masks is not None:
        settings.masks, settings.mask_k = "auto", args.auto_masks
    elif args.segmentation_masks:
        settings.masks = "segmentation"
    elif settings.masks == "files":
        raise common.CliError("the recipe's regions came from mask files; pass them with --content-mask and --style-mask")
    if hasattr(args, "start_size") and not hasattr(args, "scales"):
        settings.scales = 0  # --start-size alone: as many sqrt(2) steps as needed
    try:
        settings.validate()
    except ValueError as exc:
        raise common.CliError(str(exc)) from None
    if settings.masks == "files":
        return control.MaskInputs(content=args.content_mask, style=args.style_mask)
    return None


_GUIDE_FLAGS = ("guide", "keep", "soft", "power", "smooth", "variant", "window", "stride", "baseline", "context")


def _guide_from(args: argparse.Namespace, recipe: dict):
    """GuideSettings from the recipe's ``guide`` object and the flags, or None for plain transfer."""
    given = {k: getattr(args, k) for k in _GUIDE_FLAGS if hasattr(args, k)}
    base = recipe.get("guide") if isinstance(recipe.get("guide"), dict) else {}
    if "guide" in given:
        given["method"] = given.pop("guide")
    if args.mask:
        if given.get("method"):
            raise common.CliError("use either --guide METHOD or --mask FILE, not both")
        given["method"] = "mask"
    elif base.get("method") == "mask" and "method" not in given:
        raise common.CliError("the recipe's style targets came from a painted mask; pass it with --mask FILE")
    if not base and "method" not in given:
        if given:
            raise common.CliError(f"--{next(iter(given)).replace('variant', 'guide-variant')} needs --guide METHOD or --mask FILE")
        return None
    try:
        return guided.GuideSettings.from_dict({**base, **given})
    except ValueError as exc:
        raise common.CliError(str(exc)) from None


def _guidance(args, model, style_t, settings, guide):
    if guide.method == "mask":
        return guided.prepare_guidance(model, style_t, settings, guide,
                                       mask=guided.load_mask(args.mask, tuple(style_t.shape[-2:])))
    heat = None
    if guide.variant == "positions":
        run = attribution.AttributionRun(model, style_t, guide.attribution(settings.style_layers, settings.size))
        common.say(f"heatmap of the style image: {attribution.METHOD_TITLES[guide.method]}")
        if common.drive(run, guide.method, args.quiet):
            raise KeyboardInterrupt
        heat = run.result()
    guidance = guided.prepare_guidance(model, style_t, settings, guide, heatmap=heat)
    for note in guidance.notes:
        common.say(f"warning: {note}")
    return guidance
