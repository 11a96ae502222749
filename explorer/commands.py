"""The commands of ``python -m explorer`` (see :mod:`explorer.cli` for the parser): each
``cmd_*`` function takes the parsed arguments and returns the exit status; :func:`run`
dispatches and turns every user error into one ``error: ...`` line (exit status 2).

This module imports torch and the networks; :mod:`explorer.cli` imports it only once a
command runs, so ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import control, images, models, style
from .blend import parse_style_spec

__all__ = ["run", "CliError", "MAX_RECIPE_BYTES"]


class CliError(Exception):
    """A user-facing error: printed as one ``error: ...`` line, exit status 2."""

#: Largest recipe file read, bytes (a recipe is a few kilobytes).
MAX_RECIPE_BYTES = 2**20


def _read_recipe(path: str) -> dict:
    """The recipe's JSON object, its shape checked: ``settings`` (and ``guide``) objects,
    ``inputs`` an object of strings. A recipe is checked whole before any model is loaded.

    Raises:
        CliError: not a regular file of at most 1 MB, not JSON (or nested too deep), or of the
            wrong shape; one line.
    """
    raw = images.read_regular_file(path, f"recipe {path}", MAX_RECIPE_BYTES, error=CliError)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"recipe {path} is not valid JSON: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise CliError(f"recipe {path} is nested too deeply to be a recipe") from None
    if not isinstance(data, dict):
        raise CliError(f"recipe {path} must hold a JSON object")
    for key in ("settings", "guide", "inputs"):
        if key in data and not isinstance(data[key], dict):
            raise CliError(f"recipe {path}: '{key}' must be a JSON object, got {_json_kind(data[key])}")
    for key, value in (data.get("inputs") or {}).items():
        if not isinstance(value, str):
            raise CliError(f"recipe {path}: inputs.{key} must be a file path or sample:NAME, got {_json_kind(value)}")
    return data


def _json_kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")


def _image_ref(arg: str | None, recipe: dict, key: str) -> str:
    if arg:
        return arg
    ref = recipe.get("inputs", {}).get(key) if isinstance(recipe.get("inputs"), dict) else None
    if isinstance(ref, str) and ref.startswith("upload:"):
        raise CliError(f"the recipe's {key} image was uploaded in the browser ({ref[7:]}); "
                       f"pass its path as {key.upper()}")
    if isinstance(ref, str) and ref:
        return ref  # sample:NAME or a path the CLI recorded
    raise CliError(f"missing {key.upper()} image (a path or sample:NAME)")


def _settings_from(cls, args: argparse.Namespace, recipe: dict):
    """Defaults < the recipe's settings < flags given on the command line."""
    if recipe and "settings" not in recipe:
        raise CliError("recipe has no 'settings' object")
    merged = dict(recipe.get("settings", {})) if recipe else {}
    if cls is style.StyleSettings and "style_weight" in merged and "loss_normalization" not in merged:
        merged["loss_normalization"] = "paper"  # a recipe from before relative losses: its beta is the paper's
    for f in cls.__dataclass_fields__:
        if hasattr(args, f):
            merged[f] = getattr(args, f)
    try:
        return cls.from_dict(merged)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _weights_arg(args) -> str:
    if args.untrained:
        return "untrained"
    if args.weights:
        return args.weights
    return "auto"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def _load_net(args: argparse.Namespace, name: str) -> models.FeatureNet:
    model = models.load_model(name, weights=_weights_arg(args), device=args.device)
    if model.weights.untrained:
        _say(f"warning: using {model.weights.label}: the result shows what an untrained network "
             "computes, not what a trained one sees")
    return model


def _load_ref(ref: str, role: str) -> images.LoadedImage:
    li = images.parse_image_ref(ref, role=role)
    for note in li.notes:
        _say(f"note: {li.name}: {note}")
    return li


def _drive(run, desc: str, quiet: bool) -> bool:
    """Run an iterable of progress events under a tqdm bar; True when Ctrl-C stopped it."""
    from .progress import tqdm_events

    try:
        for _ in tqdm_events(run, desc=desc, disable=True if quiet else None):
            pass
    except KeyboardInterrupt:
        _say("interrupted: writing the last image")
        return True
    return False


def _png_out(args: argparse.Namespace, default: str) -> Path:
    out = Path(args.output or default)
    if out.suffix.lower() != ".png":
        raise CliError(f"output must be a .png file; got {out}")
    return out


def _write_outputs(args, out: Path, image, report: dict) -> None:
    images.save_png_atomic(images.to_pil(image), out,
                           pnginfo={"weights": report["weights_label"], "settings": json.dumps(report["settings"])})
    if args.report:
        images.write_text_atomic(json.dumps(report, indent=2), args.report)


def cmd_stylize(args: argparse.Namespace) -> int:
    recipe = _read_recipe(args.recipe) if args.recipe else {}
    settings = _settings_from(style.StyleSettings, args, recipe)
    if args.style_spec and args.style:
        raise CliError("give the style image either as STYLE or with --style, not both")
    content_ref = _image_ref(args.content, recipe, "content")
    style_ref = _image_ref(args.style_spec or args.style, recipe, "style")
    out = _png_out(args, "stylized.png")
    content = _load_ref(content_ref, "content image")
    blend = parse_style_spec(style_ref)
    style_imgs = [(_load_ref(ref, "style image"), w) for ref, w in blend]
    style_img = style_imgs[0][0]
    guide = _guide_from(args, recipe)
    if guide and len(blend) > 1:
        raise CliError("guided transfer explains one style image; blend styles without --guide/--mask")
    mask_inputs = _control_flags(args, settings)
    model = _load_net(args, settings.model)
    guidance = None
    if guide:  # the heatmap and guided targets are of the style image at the working size
        guidance = _guidance(args, model, style.prepare_images(content.image, style_img.image, settings.size)[1],
                             settings, guide)
    run = control.ControlledTransfer(model, content.image, [(li.image, w) for li, w in style_imgs], settings,
                                     mask_inputs=mask_inputs, targets=guidance.targets if guidance else None,
                                     style_channels=guidance.channels if guidance else None)
    for note in run.notes:
        _say(f"note: {note}")
    how = "" if not guide else ", style targets from the painted mask" if guide.method == "mask" else \
        f", style targets guided by {guide.method} (keep {guide.keep:g}, {guide.variant})"
    how += control.describe(settings, run)
    names = " + ".join(f"{li.name} x{w / sum(x for _, x in blend):.2f}" for li, w in style_imgs) \
        if len(blend) > 1 else style_img.name
    c = run.content_final
    _say(f"stylizing {content.name} ({c.shape[-1]}x{c.shape[-2]} px) with {names} on {model.device}, "
         f"{models.precision_name(run.dtype)}, {model.weights.label}{how}")
    interrupted = _drive(run, "stylize", args.quiet)
    result = run.result()
    report = run.report(result)
    report["inputs"] = {"content": content_ref, "style": style_ref, **({"mask": args.mask} if args.mask else {}),
                        **({"content_mask": args.content_mask, "style_mask": args.style_mask}
                           if settings.masks == "files" else {})}
    if guidance:
        report["guide"] = guidance.settings.to_dict()
        report["guidance"] = guidance.report()
    report["output"] = str(out)
    if interrupted:
        report["stopped"] = f"interrupted after step {result.history[-1]['step'] if result.history else 0}"
    _write_outputs(args, out, result.image, report)
    if result.stopped:
        _say(f"warning: {result.stopped}")
    fl = result.final_losses
    _say(f"wrote {out} after {result.history[-1]['step'] if result.history else 0} steps in {result.seconds:.1f} s"
         + (f"; final total loss {fl['total']:.4g}" if fl else ""))
    return 130 if interrupted else 0


def _control_flags(args: argparse.Namespace, settings: style.StyleSettings) -> control.MaskInputs | None:
    """Apply the flags that settings cannot take as they are (the semantic-mask source, and
    ``--start-size`` without ``--scales``), validate again, and return the mask files."""
    given = [flag for flag, on in (("--content-mask/--style-mask", args.content_mask or args.style_mask),
                                   ("--auto-masks", args.auto_masks is not None),
                                   ("--segmentation-masks", args.segmentation_masks)) if on]
    if len(given) > 1:
        raise CliError(f"choose one source of semantic masks, not {' and '.join(given)}")
    if args.content_mask or args.style_mask:
        if not (args.content_mask and args.style_mask):
            raise CliError("semantic masks need both --content-mask FILE and --style-mask FILE")
        settings.masks = "files"
    elif args.auto_masks is not None:
        settings.masks, settings.mask_k = "auto", args.auto_masks
    elif args.segmentation_masks:
        settings.masks = "segmentation"
    elif settings.masks == "files":
        raise CliError("the recipe's regions came from mask files; pass them with --content-mask and --style-mask")
    if hasattr(args, "start_size") and not hasattr(args, "scales"):
        settings.scales = 0  # --start-size alone: as many sqrt(2) steps as needed
    try:
        settings.validate()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if settings.masks == "files":
        return control.MaskInputs(content=args.content_mask, style=args.style_mask)
    return None


_GUIDE_FLAGS = ("guide", "keep", "soft", "power", "variant", "window", "stride", "baseline")


def _guide_from(args: argparse.Namespace, recipe: dict):
    """GuideSettings from the recipe's ``guide`` object and the flags, or None for plain transfer."""
    from .guided import GuideSettings

    given = {k: getattr(args, k) for k in _GUIDE_FLAGS if hasattr(args, k)}
    base = recipe.get("guide") if isinstance(recipe.get("guide"), dict) else {}
    if "guide" in given:
        given["method"] = given.pop("guide")
    if args.mask:
        if given.get("method"):
            raise CliError("use either --guide METHOD or --mask FILE, not both")
        given["method"] = "mask"
    elif base.get("method") == "mask" and "method" not in given:
        raise CliError("the recipe's style targets came from a painted mask; pass it with --mask FILE")
    if not base and "method" not in given:
        if given:
            raise CliError(f"--{next(iter(given)).replace('variant', 'guide-variant')} needs --guide METHOD or --mask FILE")
        return None
    try:
        return GuideSettings.from_dict({**base, **given})
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _guidance(args, model, style_t, settings, guide):
    from . import attribution, guided

    if guide.method == "mask":
        return guided.prepare_guidance(model, style_t, settings, guide,
                                       mask=guided.load_mask(args.mask, tuple(style_t.shape[-2:])))
    heat = None
    if guide.variant == "positions":
        run = attribution.AttributionRun(model, style_t, guide.attribution(settings.style_layers, settings.size))
        _say(f"heatmap of the style image: {attribution.METHOD_TITLES[guide.method]}")
        if _drive(run, guide.method, args.quiet):
            raise KeyboardInterrupt
        heat = run.result()
    guidance = guided.prepare_guidance(model, style_t, settings, guide, heatmap=heat)
    for note in guidance.notes:
        _say(f"warning: {note}")
    return guidance


def cmd_saliency(args: argparse.Namespace) -> int:
    from . import attribution

    out = _png_out(args, "saliency.png")
    if args.npy and Path(args.npy).suffix.lower() != ".npy":
        raise CliError(f"--npy must name a .npy file; got {args.npy}")
    if not 0.0 <= args.opacity <= 1.0:
        raise CliError("--opacity must be between 0 and 1")
    recipe = _read_recipe(args.recipe) if args.recipe else {}
    settings = _settings_from(attribution.AttributionSettings, args, recipe)
    li = _load_ref(args.style, "style image")
    model = _load_net(args, args.model)
    x = images.to_tensor(images.resize_long_side(li.image, settings.size))
    run = attribution.AttributionRun(model, x, settings)
    for note in run.notes:
        _say(f"note: {note}")
    _say(f"{attribution.METHOD_TITLES[settings.method]} of {run.spec.describe()} for {li.name} "
         f"({x.shape[-1]}x{x.shape[-2]} px) on {model.device}, {model.weights.label}")
    if _drive(run, settings.method, args.quiet):
        return 130
    heat = run.result()
    images.save_png_atomic(attribution.overlay_image(heat.image, heat.values, args.opacity), out,
                           pnginfo={"weights": model.weights.label, "heatmap": json.dumps(heat.report())})
    if args.npy:
        images.write_bytes_atomic(images.npy_bytes(heat.values), args.npy)
    if args.report:
        images.write_text_atomic(json.dumps({**heat.report(), "inputs": {"style": args.style}}, indent=2), args.report)
    _say(f"wrote {out}" + (f" and {args.npy}" if args.npy else "") +
         f" ({heat.values.shape[1]}x{heat.values.shape[0]}, values {heat.values.min():.3g} to "
         f"{heat.values.max():.3g}, {heat.seconds:.1f} s" + (f", {heat.engine} occlusion" if settings.method == "occlusion" else "") + ")")
    return 0


def cmd_dream(args: argparse.Namespace) -> int:
    from . import dream

    recipe = _read_recipe(args.recipe) if args.recipe else {}
    settings = _settings_from(dream.DreamSettings, args, recipe)
    ref = _image_ref(args.image, recipe, "image") if args.image not in ("gray", "noise") else args.image
    out = _png_out(args, "dream.png")
    if args.gif and Path(args.gif).suffix.lower() != ".gif":
        raise CliError(f"--gif must name a .gif file; got {args.gif}")
    if args.zoom_frames and not args.gif:
        raise CliError("--zoom-frames needs --gif OUT.gif to write the sequence to")
    if not 0 <= args.zoom_frames <= 500:
        raise CliError("--zoom-frames must be between 0 and 500")
    if ref in ("gray", "noise"):
        x = dream.start_image(ref, settings.size or 256, settings.seed)
    else:
        li = _load_ref(ref, "image")
        pil = images.resize_long_side(li.image, settings.size) if settings.size else li.image
        x = images.to_tensor(pil)
    guide_img = None
    if settings.objective == "guide":
        if not args.guide:
            raise CliError("--objective guide needs --guide IMAGE")
        g = _load_ref(args.guide, "guide image")
        guide_img = images.to_tensor(images.resize_long_side(g.image, max(x.shape[-2:])))
    model = _load_net(args, settings.model)
    _say(f"dreaming {ref} ({x.shape[-1]}x{x.shape[-2]} px) on {model.device}, {model.weights.label}")
    run = dream.ZoomRun(model, x, settings, args.zoom_frames, args.zoom, guide_img) if args.zoom_frames \
        else dream.DreamRun(model, x, settings, guide_image=guide_img)
    for note in run.notes:
        _say(f"note: {note}")
    interrupted = _drive(run, "zoom" if args.zoom_frames else "dream", args.quiet)
    for note in ([] if args.zoom_frames else run.notes):
        if note.startswith(dream.DEAD_START):
            _say(f"warning: {note}")
    if args.zoom_frames:
        if not run.frames:
            raise CliError("interrupted before the first frame was done")
        last, report, frames = run.frames[-1], run.report(), run.frames
    else:
        result = run.result()
        last, report, frames = result.image, result.report(), result.animation_frames()
    pil_frames = [images.to_pil(f) for f in frames]
    report["inputs"] = {"image": ref, **({"guide": args.guide} if args.guide else {})}
    report["output"] = str(out)
    if interrupted:
        report["stopped"] = "interrupted"
    _write_outputs(args, out, last, report)
    if args.gif:
        images.write_bytes_atomic(images.gif_bytes(pil_frames, duration_ms=250 if args.zoom_frames else 600), args.gif)
    _say(f"wrote {out}" + (f" and {args.gif}" if args.gif else ""))
    return 130 if interrupted else 0


def cmd_activations(args: argparse.Namespace) -> int:
    from . import activations as act

    out = _png_out(args, "activations.png")
    if not 1 <= args.top <= 1024:
        raise CliError("--top must be between 1 and 1024")
    if not 32 <= args.size <= 4096:
        raise CliError("--size must be between 32 and 4096")
    li = _load_ref(args.image, "image")
    model = _load_net(args, args.model)
    model.check_layers([args.layer])
    x = images.to_tensor(images.resize_long_side(li.image, args.size))
    info = act.layer_info(model.name, args.layer, max(x.shape[-2:]))
    acts = act.layer_activations(model, x, args.layer)
    if acts.ndim != 3:
        raise CliError(f"{args.layer} has no spatial maps (shape {acts.shape}); pick a convolutional layer")
    stats = act.channel_stats(acts)
    top = act.top_channels(acts, args.top, by=args.by)
    images.save_png_atomic(act.channel_grid(acts, top), out, pnginfo={"weights": model.weights.label,
                                                                      "layer": f"{model.name} {args.layer}"})
    report = {
        "image": args.image, "model": model.name, "layer": args.layer, "weights": model.weights.kind,
        "weights_label": model.weights.label, "input_hw": list(x.shape[-2:]),
        "shape": list(acts.shape), "receptive_field": info.receptive_field, "stride": info.stride,
        "params": info.params, "params_total": info.params_total, "sparsity": stats.sparsity,
        "top_channels": [{"channel": int(c), "mean": float(stats.mean[c]), "max": float(stats.max[c])} for c in top],
        "channel_mean": [float(v) for v in stats.mean],
        "predictions": act.top_predictions(model, x),
    }
    if args.json:
        images.write_text_atomic(json.dumps(report, indent=2), args.json)
    _say(f"wrote {out}: top {len(top)} of {acts.shape[0]} channels of {model.name} {args.layer} "
         f"({acts.shape[1]}x{acts.shape[2]}, receptive field {info.receptive_field} px, stride {info.stride}); "
         f"sparsity {stats.sparsity:.1%}" + (f"; stats in {args.json}" if args.json else ""))
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    from . import augment

    recipe = _read_recipe(args.recipe) if args.recipe else {}
    if not hasattr(args, "variants") and "variants" not in (recipe.get("settings") or {}):
        raise CliError("--variants N is required (stylized outputs per input image)")
    settings = _settings_from(augment.AugmentSettings, args, recipe)
    shard = augment.Shard.parse(args.shard) if args.shard else augment.shard_from_env() or augment.Shard()
    inputs = augment.check_folders(args.input_dir, args.output, args.styles_dir)
    notes: list[str] = []
    styles = augment.load_styles(args.styles_dir, notes)
    for note in notes:
        _say(f"note: {note}")
    if settings.blend > len(styles):
        raise CliError(f"--blend {settings.blend} needs at least {settings.blend} style images; "
                       f"{args.styles_dir} has {len(styles)}")
    augment.ShardLock(Path(args.output), shard).acquire().release()  # a second writer: one line, before the model
    args.device = augment.device_from_env(args.device)
    model = _load_net(args, settings.model)
    run = augment.Augmentation(model, args.input_dir, styles, args.output, settings, shard=shard)
    _say(f"augmenting shard {shard}: {len(run.mine)} of {len(inputs)} inputs, {len(run.jobs)} outputs "
         f"({run.already_done} already done) with {len(styles)} style image(s) on {model.device}, "
         f"{model.weights.label}")
    from .progress import tqdm_events

    interrupted, events = False, iter(run)
    try:  # not _drive: there is no "last image" to write, finished images are already on disk
        for _ in tqdm_events(events, desc="augment", disable=True if args.quiet else None):
            pass
    except KeyboardInterrupt:
        interrupted = True
    finally:
        events.close()  # closes this shard's logs
    rows, skipped = run.finish()
    summary = run.summary()
    if args.report:
        images.write_text_atomic(json.dumps({**summary, "interrupted": interrupted}, indent=2), args.report)
    out = Path(args.output)
    _say(f"wrote {summary['written']} image(s) in {summary['seconds']:.1f} s ({summary['images_per_minute']:.1f} "
         f"images/min); {out / 'manifest.csv'} lists {rows} output(s)")
    if skipped:
        _say(f"warning: {skipped} input(s) skipped, reasons in {out / 'skipped.csv'}")
    if interrupted:
        _say("interrupted: the finished images and their manifest rows are kept; run the same command to resume")
    return 130 if interrupted else 0


def cmd_weights(args: argparse.Namespace) -> int:
    if args.weights_command == "status":
        rows = models.weights_status()
        for row in rows:
            where = row["found"] or "missing"
            print(f"{row['model']:13s} {row['file']:34s} {row['size_mb']:7.1f} MB  {where}")
        print(f"torch cache: {rows[0]['cache_dir']}")
        print(f"EXPLORER_WEIGHTS_DIR: {rows[0]['weights_dir'] or '(not set)'}")
        return 0
    names = list(models.MODELS) if args.models.strip() == "all" else [n.strip() for n in args.models.split(",") if n.strip()]
    for n in names:
        if n not in models.MODELS:
            raise CliError(f"unknown model {n!r}; choose from {', '.join(models.MODELS)} or 'all'")
    for p in models.download_weights(names, dest=args.dir):
        print(f"ok {p}")
    return 0


#: Output options (attribute, how messages name it). Every command checks the ones it has
#: before any work, so a bad path costs nothing (augment's output is a folder).
_OUTPUTS = (("output", "output"), ("report", "--report"), ("npy", "--npy"), ("gif", "--gif"), ("json", "--json"))


def _check_outputs(args: argparse.Namespace) -> None:
    for attr, label in _OUTPUTS:
        value = getattr(args, attr, None)
        if value:
            images.check_output_path(value, label, folder=args.command == "augment" and attr == "output")


def run(args: argparse.Namespace) -> int:
    """Run the parsed command. Returns the exit status (0 ok, 2 error, 130 interrupted)."""
    try:
        if args.command != "weights":
            _check_outputs(args)
        if args.command == "stylize":
            return cmd_stylize(args)
        if args.command == "dream":
            return cmd_dream(args)
        if args.command == "activations":
            return cmd_activations(args)
        if args.command == "saliency":
            return cmd_saliency(args)
        if args.command == "augment":
            return cmd_augment(args)
        return cmd_weights(args)
    except (CliError, images.ImageError, models.WeightsError, ValueError, OSError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except (RuntimeError, MemoryError) as exc:  # out of (GPU) memory anyway: cache freed, one line
        from .memory import free_cached_memory, is_out_of_memory, out_of_memory_message

        if not is_out_of_memory(exc):
            raise
        msg = out_of_memory_message(exc, f"the {args.command} run")
        del exc
        free_cached_memory()
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
