"""Command line: ``python -m explorer ...``.

Commands:
    stylize CONTENT STYLE -o OUT.png [options]   Gatys style transfer (see ``--help``)
    dream IMAGE -o OUT.png [options]             Deep Dream with octaves, jitter and tiles
    activations IMAGE --layer L [--out GRID.png] [--json STATS.json]   what a layer computes
    saliency STYLE -o HEAT.png [--method ...] [--npy HEAT.npy]   which regions drive the style
    augment INPUT_DIR STYLES_DIR -o OUT_DIR --variants N [options]   stylized copies of a dataset
    weights download [--models ...] [--dir DIR]  fetch ImageNet weights for offline use
    weights status                               where each model's weights are

Exit codes: 0 success; 2 bad input or missing weights (one line ``error: ...`` on stderr, no
traceback); 130 interrupted (the partial result is still written).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from . import control, images, models, style
from .batch import parse_style_spec
from .guided import GUIDES

__all__ = ["main", "build_parser", "CliError"]


class CliError(Exception):
    """A user-facing error: printed as one ``error: ...`` line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage dump) and exit status 2."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _stylize_options(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset flags stay absent so a recipe's values are not overridden
    p.add_argument("content", nargs="?", help="content image: a path or sample:NAME (e.g. sample:astronaut)")
    p.add_argument("style", nargs="?",
                   help="style image: a path or sample:NAME (e.g. sample:gravel), or a blend a.jpg:0.7,b.jpg:0.3")
    p.add_argument("--style", dest="style_spec", metavar="A:W,B:W",
                   help="blend of up to 6 style images with weights, e.g. a.jpg:0.7,b.jpg:0.3 (instead of STYLE)")
    p.add_argument("-o", "--output", help="output PNG path (default: stylized.png)")
    p.add_argument("--size", type=int, default=S, help="working size: long side in pixels (default 256)")
    p.add_argument("--steps", type=int, default=S, help="optimizer steps (default 100)")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default=S, help="default lbfgs")
    p.add_argument("--lr", type=float, default=S, help="learning rate (default 1.0 for L-BFGS, 0.02 for Adam)")
    p.add_argument("--content-weight", type=float, default=S, dest="content_weight", help="alpha of eq. (5) (default 1)")
    p.add_argument("--style-weight", type=float, default=S, dest="style_weight",
                   help=f"beta of eq. (5) (default {style.DEFAULT_STYLE_WEIGHT:g} with relative losses)")
    p.add_argument("--loss-normalization", choices=["relative", "paper"], default=S, dest="loss_normalization",
                   help="relative (default): content and style terms divided by their targets' squared norms, so "
                        "alpha/beta mean the same for any VGG19 file; paper: eq. (2) and (4) as written")
    p.add_argument("--tv-weight", type=float, default=S, dest="tv_weight", help="total-variation weight (default 0)")
    p.add_argument("--tv-beta", type=float, default=S, dest="tv_beta", help="total-variation exponent beta (default 2)")
    p.add_argument("--content-layer", default=S, dest="content_layer", help="default relu4_2")
    p.add_argument("--style-layers", default=S, dest="style_layers",
                   help="comma-separated, default relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")
    p.add_argument("--style-layer-weights", default=S, dest="style_layer_weights",
                   help="comma-separated w_l, one per style layer (default equal)")
    p.add_argument("--init", choices=["content", "noise", "style"], default=S, help="default content")
    p.add_argument("--seed", type=int, default=S, help="default 0")
    p.add_argument("--model", choices=[n for n in models.MODELS if models.MODELS[n].family == "vgg"], default=S,
                   help="default vgg19")
    p.add_argument("--pooling", choices=["max", "avg"], default=S, help="default max")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=S, help="default auto")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default=S, dest="channels_last")
    p.add_argument("--preview-every", type=int, default=S, dest="preview_every",
                   help="keep a snapshot every N steps (default 10)")
    c = p.add_argument_group("control over the result (colours, scales, photorealism, semantic masks)")
    c.add_argument("--preserve-color", choices=["none", "luminance", "histogram"], default=S, dest="preserve_color",
                   help="keep the content's colours: transfer luminance only, or match the style's colour "
                        "histogram to the content first (Gatys et al. 2017)")
    c.add_argument("--scales", type=int, default=S,
                   help="coarse-to-fine: optimize at N sizes from --start-size up to --size (default 1)")
    c.add_argument("--start-size", type=int, default=S, dest="start_size",
                   help="long side of the first scale in px (default 128); alone it picks sqrt(2) steps")
    c.add_argument("--scale-steps-ratio", type=float, default=S, dest="scale_steps_ratio",
                   help="each larger scale runs this fraction of the previous one's steps (default 0.5)")
    c.add_argument("--photo-lambda", type=float, default=S, dest="photo_lambda",
                   help="weight of the Matting Laplacian photorealism regularizer (Luan et al. 2017; default 0 = off; "
                        f"try {style.DEFAULT_PHOTO_LAMBDA:g} with relative losses)")
    c.add_argument("--content-mask", metavar="FILE", dest="content_mask",
                   help="colour-coded regions of the content image (same colour = same region as in --style-mask)")
    c.add_argument("--style-mask", metavar="FILE", dest="style_mask", help="colour-coded regions of the style image")
    c.add_argument("--auto-masks", type=int, metavar="K", dest="auto_masks",
                   help="regions from k-means colour clusters of both images (no weights needed)")
    c.add_argument("--segmentation-masks", action="store_true", dest="segmentation_masks",
                   help="regions from DeepLabV3 semantic segmentation (needs its pretrained weights)")
    g = p.add_argument_group("saliency-guided Gram (style targets from the style image's most important regions)")
    g.add_argument("--guide", choices=list(GUIDES), default=S,
                   help="heatmap method that selects the style image's important positions")
    g.add_argument("--keep", type=float, default=S, help="fraction of positions (or channels) kept (default 0.3)")
    g.add_argument("--soft", action="store_true", default=S,
                   help="weights graded by the normalized heatmap instead of a 0/1 mask")
    g.add_argument("--power", type=float, default=S, help="exponent of the --soft map (default 1)")
    g.add_argument("--guide-variant", choices=["positions", "channels"], default=S, dest="variant",
                   help="positions: masked Gram (default); channels: keep the top channels per style layer")
    g.add_argument("--mask", metavar="FILE", help="a grayscale mask painted over the style image (white = keep)")
    _occlusion_options(g, S)
    _common_options(p)


def _occlusion_options(p, default) -> None:
    p.add_argument("--window", type=int, default=default, help="occlusion window side in pixels (default 32)")
    p.add_argument("--stride", type=int, default=default, help="occlusion stride in pixels (default 16)")
    p.add_argument("--baseline", choices=["blur", "mean", "zero"], default=default,
                   help="what an occluded window shows: a blur (keeps colours, removes texture; the default), "
                        "the mean colour, or black")


def _common_options(p: argparse.ArgumentParser) -> None:
    """Options every long-running command shares."""
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--weights", metavar="FILE", help="a state_dict file to use instead of ImageNet weights")
    w.add_argument("--untrained", action="store_true",
                   help="use untrained weights (seed 0); results are labelled 'untrained weights'")
    p.add_argument("--report", metavar="REPORT.json", help="write settings, weights, timing and history as JSON")
    p.add_argument("--recipe", metavar="RECIPE.json",
                   help="replay the settings of a report or of the page's settings download; flags override it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _dream_options(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS
    p.add_argument("image", nargs="?",
                   help="a path, sample:NAME, or 'gray' / 'noise' to visualize features from scratch")
    p.add_argument("-o", "--output", help="output PNG path (default: dream.png)")
    p.add_argument("--model", choices=list(models.MODELS), default=S, help="default googlenet")
    p.add_argument("--layers", default=S, help="LAYER[:WEIGHT],... (default inception4c for GoogLeNet)")
    p.add_argument("--channels", default=S, help="channel indices, e.g. 12,97: dream those channels only")
    p.add_argument("--center", action="store_true", default=S, help="channel objective at the centre position only")
    p.add_argument("--objective", choices=["l2", "mean", "guide", "class"], default=S, help="default l2")
    p.add_argument("--guide", metavar="IMAGE", help="guide image for --objective guide")
    p.add_argument("--class", dest="class_name", default=S, metavar="NAME", help="ImageNet class for --objective class")
    p.add_argument("--octaves", type=int, default=S, help="default 4")
    p.add_argument("--octave-scale", type=float, dest="octave_scale", default=S, help="default 1.4")
    p.add_argument("--steps", type=int, default=S, help="steps per octave (default 10)")
    p.add_argument("--step-size", type=float, dest="step_size", default=S,
                   help="mean pixel change per step, pixels in [0, 1] (default 0.01)")
    p.add_argument("--jitter", type=int, default=S, help="largest random roll in pixels (default 32)")
    p.add_argument("--smooth", type=float, default=S, help="gradient smoothing sigma in pixels (default 0 = off)")
    p.add_argument("--normalize", choices=["mean", "std"], default=S, help="gradient normalization (default mean)")
    p.add_argument("--tile", type=int, default=S, help="tile size in pixels for large images (default 512)")
    p.add_argument("--size", type=int, default=S, help="working size, long side in pixels (default: keep)")
    p.add_argument("--seed", type=int, default=S, help="default 0")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=S, help="default auto")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default=S, dest="channels_last")
    p.add_argument("--gif", metavar="OUT.gif", help="animated GIF of the octave-by-octave progression (or the zoom)")
    p.add_argument("--zoom-frames", type=int, default=0, dest="zoom_frames",
                   help="dream-zoom: dream, zoom in and crop, N frames (written to --gif)")
    p.add_argument("--zoom", type=float, default=0.05, help="zoom per frame as a fraction (default 0.05)")
    _common_options(p)


def _saliency_options(p: argparse.ArgumentParser) -> None:
    from .attribution import METHODS

    S = argparse.SUPPRESS
    p.add_argument("style", help="style image: a path or sample:NAME")
    p.add_argument("-o", "--output", help="heatmap overlay PNG (default saliency.png)")
    p.add_argument("--npy", metavar="HEAT.npy", help="also write the raw heatmap (H x W float32) here")
    p.add_argument("--method", choices=list(METHODS), default=S, help="default saliency")
    p.add_argument("--objective", default=S,
                   help="style (default), layer:NAME, channel:NAME:K or class (top ImageNet class)")
    p.add_argument("--style-layers", default=S, dest="style_layers",
                   help="layers of the style objective (default: the network's style layers, "
                        "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1 on VGG)")
    _occlusion_options(p, S)
    p.add_argument("--perturbations-per-eval", type=int, default=S, dest="perturbations_per_eval",
                   help="occluded images per forward pass (default 16)")
    p.add_argument("--ig-steps", type=int, default=S, dest="ig_steps", help="integrated-gradients steps (default 32)")
    p.add_argument("--smoothgrad", type=int, default=S, help="SmoothGrad samples over integrated gradients (default 0)")
    p.add_argument("--gradcam-layer", default=S, dest="gradcam_layer",
                   help="Grad-CAM layer (default: the deepest layer of the objective)")
    p.add_argument("--size", type=int, default=S, help="working size, long side in pixels (default 256)")
    p.add_argument("--model", choices=["vgg19", "vgg16", "mobilenet_v2", "resnet50"], default="vgg19",
                   help="default vgg19")
    p.add_argument("--opacity", type=float, default=0.5, help="heatmap opacity in the PNG, 0 to 1 (default 0.5)")
    _common_options(p)


def _augment_options(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset flags stay absent so a recipe's values are not overridden
    p.add_argument("input_dir", metavar="INPUT_DIR", help="dataset in the ImageFolder layout (one subfolder per class)")
    p.add_argument("styles_dir", metavar="STYLES_DIR", help="folder of style images")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="output folder: the same class layout, manifest.csv and skipped.csv")
    p.add_argument("--variants", type=int, default=S, metavar="N", help="stylized outputs per input image")
    p.add_argument("--batch-size", type=int, default=S, dest="batch_size", metavar="B",
                   help="images optimized together (same working shape; default 4)")
    p.add_argument("--steps", default=S, metavar="N|LO,HI", help="Adam steps, or a range sampled per output (default 50)")
    p.add_argument("--size", default=S, metavar="N|LO,HI",
                   help="working size, long side in px, or a range sampled per output in steps of 32 (default 128)")
    p.add_argument("--ratio-range", default=S, dest="ratio_range", metavar="LO,HI",
                   help="style/content weight ratio beta/alpha, sampled log-uniformly (default 30,200)")
    p.add_argument("--blend", type=int, default=S, metavar="K",
                   help="style images blended per output (default 1: one style chosen per output)")
    p.add_argument("--weight-range", default=S, dest="weight_range", metavar="LO,HI",
                   help="range of each blend weight before normalization (default 0.2,1)")
    p.add_argument("--traditional", default=S, metavar="OPS",
                   help="traditional augmentation: any of flip,crop,jitter (default none)")
    p.add_argument("--traditional-at", choices=["before", "after"], default=S, dest="traditional_at",
                   help="apply it before or after stylization (default before)")
    p.add_argument("--seed", type=int, default=S, help="default 0; every output's draws derive from it")
    p.add_argument("--lr", type=float, default=S, help="Adam learning rate (default 0.02)")
    p.add_argument("--init", choices=["content", "noise"], default=S, help="default content")
    p.add_argument("--model", choices=[n for n in models.MODELS if models.MODELS[n].family == "vgg"], default=S,
                   help="default vgg19")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=S, help="default auto")
    p.add_argument("--shard", metavar="I/N",
                   help="do shard I of N (inputs whose index mod N == I); default: RANK/WORLD_SIZE if set "
                        "(torchrun), else all")
    _common_options(p)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m explorer``."""
    parser = _Parser(prog="python -m explorer",
                                     description="Deep Dream and style-visualization explorer: command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    st = sub.add_parser("stylize", help="Gatys style transfer of CONTENT in the style of STYLE",
                        description="Gatys et al. (2016) style transfer on VGG features.")
    _stylize_options(st)
    dr = sub.add_parser("dream", help="Deep Dream: gradient ascent on a layer's activations",
                        description="Deep Dream with octaves, jitter and tiles (Mordvintsev et al. 2015).")
    _dream_options(dr)
    ac = sub.add_parser("activations", help="what a layer computes for an image: channel grid and statistics",
                        description="Top channels of one layer as an image grid, plus statistics as JSON.")
    ac.add_argument("image", help="a path or sample:NAME")
    ac.add_argument("--model", choices=list(models.MODELS), default="vgg19", help="default vgg19")
    ac.add_argument("--layer", default="relu3_1", help="canonical layer name (default relu3_1)")
    ac.add_argument("--top", type=int, default=16, help="how many channels in the grid (default 16)")
    ac.add_argument("--by", choices=["mean", "max"], default="mean", help="rank channels by (default mean)")
    ac.add_argument("--size", type=int, default=256, help="working size, long side in pixels (default 256)")
    ac.add_argument("-o", "--output", "--out", dest="output", metavar="GRID.png",
                    help="write the channel grid here (default activations.png)")
    ac.add_argument("--json", metavar="STATS.json", help="write layer info and statistics here")
    ac.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    aw = ac.add_mutually_exclusive_group()
    aw.add_argument("--weights", metavar="FILE", help="a state_dict file to use instead of ImageNet weights")
    aw.add_argument("--untrained", action="store_true", help="use untrained weights (seed 0), labelled as such")
    sa = sub.add_parser("saliency", help="which regions of a style image drive the network: heatmap PNG and .npy",
                        description="Captum saliency, guided backprop, integrated gradients, occlusion or "
                                    "Grad-CAM heatmaps of a style objective of STYLE.")
    _saliency_options(sa)
    au = sub.add_parser("augment", help="N stylized variants of every image of an ImageFolder dataset",
                        description="Dataset augmentation with Gatys style transfer: the same class layout, "
                                    "manifest.csv and skipped.csv; resumable; --shard I/N or torchrun for "
                                    "several machines or GPUs.")
    _augment_options(au)
    wt = sub.add_parser("weights", help="download or inspect pretrained weights")
    wsub = wt.add_subparsers(dest="weights_command", metavar="ACTION", parser_class=_Parser)
    wsub.required = True
    dl = wsub.add_parser("download", help="download ImageNet weights into torch's cache (needs internet)")
    dl.add_argument("--models", default="vgg19,googlenet",
                    help=f"comma-separated, from {', '.join(models.MODELS)} or 'all' (default vgg19,googlenet)")
    dl.add_argument("--dir", help="also copy the files here (use it as EXPLORER_WEIGHTS_DIR on an offline machine)")
    wsub.add_parser("status", help="where each model's weights are, and their sizes")
    return parser


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
    return guided.prepare_guidance(model, style_t, settings, guide, heatmap=heat)


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


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--weight-range -1,1`` -> ``--weight-range=-1,1``: argparse reads a value that starts
    with ``-`` but is not a plain number (``-1,1``, ``-1/2``) as another option. Values that
    start with a minus and a digit are joined to the long option before them, so they reach
    the checks that explain what is allowed."""
    out: list[str] = []
    for tok in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and len(tok) > 1 and tok[0] == "-" \
                and (tok[1].isdigit() or tok[1] == "."):
            out[-1] = f"{out[-1]}={tok}"
        else:
            out.append(tok)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the exit status (0 ok, 2 error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
