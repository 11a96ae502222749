"""Command line: ``explorer ...`` (the console script ``pip install .`` installs) or ``python -m explorer ...``.

Commands:
    stylize CONTENT STYLE -o OUT.png [options]   Gatys style transfer (see ``--help``)
    dream IMAGE -o OUT.png [options]             Deep Dream with octaves, jitter and tiles
    featurevis -o GRID.png [--layer L --channels 0-3] [--examples N]   what channels look for, from scratch
    activations IMAGE --layer L [--out GRID.png] [--json STATS.json]   what a layer computes
    saliency STYLE -o HEAT.png [--method ...] [--npy HEAT.npy]   which regions drive the style
    reconstruct CONTENT STYLE -o FIGURE.png [options]   what each layer keeps: content and style
                                                 reconstructions from white noise (Gatys et al. 2016 Fig. 1)
    augment INPUT_DIR STYLES_DIR -o OUT_DIR --variants N [options]   stylized copies of a dataset
    weights download [--models ...] [--dir DIR]  fetch ImageNet weights for offline use
    weights status                               where each model's weights are
    weights normalize -o FILE                    a VGG's weights normalized as in Gatys et al.
    app [STREAMLIT OPTIONS ...]                  serve the Streamlit app (streamlit run on app.py)
    doctor [--json]                              versions, devices, CPU, precision and weights on this machine

Exit codes: 0 success; 2 bad input, missing weights, or a torch and torchvision that do not
import together (one line ``error: ...`` on stderr, no traceback); 130 interrupted (the partial
result is still written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core import choices

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage dump) and exit status 2."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _stylize_options(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset flags stay absent so a recipe's values are not overridden
    p.add_argument("content", nargs="?", help="content image: a path or sample:NAME (e.g. sample:astronaut)")
    p.add_argument("style", nargs="?",
                   help="style image: a path or sample:NAME (e.g. sample:gravel), or a blend a.jpg:0.7,b.jpg:0.3; "
                        "a path that exists is one image whatever its characters (commas included)")
    p.add_argument("--style", dest="style_spec", metavar="FILE[:WEIGHT]", action="append",
                   help="one style image of a blend, with its weight (default 1); give it once per image, up to 6 "
                        "(names with commas welcome), instead of STYLE")
    p.add_argument("-o", "--output", help="output PNG path (default: stylized.png)")
    p.add_argument("--size", type=int, default=S, help="working size: long side in pixels (default 256)")
    p.add_argument("--steps", type=int, default=S, help="optimizer steps (default 100)")
    p.add_argument("--optimizer", choices=list(choices.OPTIMIZERS), default=S, help="default lbfgs")
    p.add_argument("--lr", type=float, default=S, help="learning rate (default 1.0 for L-BFGS, 0.02 for Adam)")
    p.add_argument("--content-weight", type=float, default=S, dest="content_weight", help="alpha of eq. (7) (default 1)")
    p.add_argument("--style-weight", type=float, default=S, dest="style_weight",
                   help=f"beta of eq. (7) (default {choices.DEFAULT_STYLE_WEIGHT:g} with relative losses)")
    p.add_argument("--loss-normalization", choices=list(choices.LOSS_NORMALIZATIONS), default=S, dest="loss_normalization",
                   help="relative (default): content and style terms divided by their targets' squared norms, so "
                        "alpha/beta mean the same for any VGG19 file; paper: eq. (4) and (1) as written")
    p.add_argument("--tv-weight", type=float, default=S, dest="tv_weight", help="total-variation weight (default 0)")
    p.add_argument("--tv-beta", type=float, default=S, dest="tv_beta", help="total-variation exponent p of R_{V^p} (Mahendran & Vedaldi's beta; default 2)")
    p.add_argument("--content-layer", default=S, dest="content_layer", help="default: the network's, relu4_2")
    p.add_argument("--style-layers", default=S, dest="style_layers",
                   help="comma-separated, default: the network's, relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")
    p.add_argument("--style-layer-weights", default=S, dest="style_layer_weights",
                   help="comma-separated w_l, one per style layer (default equal)")
    p.add_argument("--init", choices=list(choices.INITS), default=S,
                   help="starting image (default histogram: the content image in the style's colours)")
    p.add_argument("--parameterization", choices=list(choices.STYLE_PARAMETERIZATIONS), default=S,
                   help="what the optimizer changes: fourier (an offset whose spectrum is scaled by 1/f^0.5, "
                        "this project's tuned exponent; Olah et al. 2017 use 1/f: L-BFGS needs fewer steps), pixel (the pixels, as Gatys et al.) or auto (default: fourier "
                        "with L-BFGS, pixel with Adam)")
    p.add_argument("--seed", type=int, default=S, help="default 0")
    p.add_argument("--model", choices=list(choices.STYLE_MODELS), default=S,
                   help="default vgg19 (or, when its weights are not on this machine, a network whose are)")
    p.add_argument("--pooling", choices=list(choices.POOLINGS), default=S, help="default max")
    p.add_argument("--precision", choices=list(choices.PRECISIONS), default=S, help="default auto")
    p.add_argument("--channels-last", choices=list(choices.CHANNELS_LAST), default=S, dest="channels_last")
    p.add_argument("--conv-algorithm", choices=list(choices.CONV_ALGORITHMS), default=S, dest="conv_algorithm",
                   help="float32 3x3 convolutions on the CPU: auto (default: Winograd on large feature maps), "
                        "direct (torch's own) or winograd")
    p.add_argument("--preview-every", type=int, default=S, dest="preview_every",
                   help="keep a snapshot every N steps (default 10)")
    c = p.add_argument_group("control over the result (colours, scales, photorealism, semantic masks)")
    c.add_argument("--preserve-color", choices=list(choices.PRESERVE_COLORS), default=S, dest="preserve_color",
                   help="keep the content's colours (Gatys et al. 2017): luminance = transfer luminance only; "
                        "histogram = recolour the style with the content's per-channel histograms first; "
                        "linear = recolour the style with the content's RGB mean and covariance first "
                        "(the paper's linear transform, symmetric square roots)")
    c.add_argument("--scales", type=int, default=S,
                   help="coarse-to-fine: optimize at N sizes from --start-size up to --size (default 1)")
    c.add_argument("--start-size", type=int, default=S, dest="start_size",
                   help="long side of the first scale in px (default 128); alone it picks sqrt(2) steps")
    c.add_argument("--scale-steps-ratio", type=float, default=S, dest="scale_steps_ratio",
                   help="each larger scale runs this fraction of the previous one's steps (default 0.5)")
    c.add_argument("--photo-lambda", type=float, default=S, dest="photo_lambda",
                   help="weight of the Matting Laplacian photorealism regularizer (Luan et al. 2017; default 0 = off; "
                        f"try {choices.DEFAULT_PHOTO_LAMBDA:g} with relative losses)")
    c.add_argument("--content-mask", metavar="FILE", dest="content_mask",
                   help="colour-coded regions of the content image (same colour = same region as in --style-mask)")
    c.add_argument("--style-mask", metavar="FILE", dest="style_mask", help="colour-coded regions of the style image")
    c.add_argument("--auto-masks", type=int, metavar="K", dest="auto_masks",
                   help="regions from k-means colour clusters of both images (no weights needed)")
    c.add_argument("--segmentation-masks", action="store_true", dest="segmentation_masks",
                   help="regions from DeepLabV3 semantic segmentation (needs its pretrained weights)")
    g = p.add_argument_group("saliency-guided Gram (style targets from the style image's most important regions)")
    g.add_argument("--guide", choices=list(choices.GUIDES), default=S,
                   help="heatmap method that selects the style image's important positions")
    g.add_argument("--keep", type=float, default=S, help="fraction of positions (or channels) kept (default 0.3)")
    g.add_argument("--soft", action="store_true", default=S,
                   help="weights graded by the normalized heatmap instead of a 0/1 mask")
    g.add_argument("--power", type=float, default=S, help="exponent of the --soft map (default 1)")
    g.add_argument("--smooth", type=float, default=S, metavar="SIGMA",
                   help="smooth the heatmap with a Gaussian of SIGMA px before keeping its top positions: "
                        "regions instead of single pixels (default 0 = off)")
    g.add_argument("--guide-variant", choices=list(choices.GUIDE_VARIANTS), default=S, dest="variant",
                   help="positions: masked Gram (default); channels: keep the top channels per style layer")
    g.add_argument("--mask", metavar="FILE", help="a grayscale mask painted over the style image (white = keep)")
    _occlusion_options(g, S)
    _common_options(p)


def _occlusion_options(p, default) -> None:
    p.add_argument("--window", type=int, default=default, help="occlusion window side in pixels (default 32)")
    p.add_argument("--stride", type=int, default=default, help="occlusion stride in pixels (default 16)")
    p.add_argument("--baseline", choices=list(choices.BASELINES), default=default,
                   help="what an occluded window shows: a blur (keeps colours, removes texture; the default), "
                        "the mean colour, or black")
    p.add_argument("--context", type=int, default=default, metavar="PX",
                   help="occlusion sees the picture continued by its mirror image PX px beyond each border, so the "
                        "convolutions' zero padding lies outside it (default 32; 0 = none)")


def _common_options(p: argparse.ArgumentParser) -> None:
    """Options every long-running command shares."""
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--weights", metavar="FILE", help="a state_dict file to use instead of ImageNet weights")
    w.add_argument("--untrained", action="store_true",
                   help="use untrained weights (seed 0); results are labelled 'untrained weights'")
    w.add_argument("--normalized", action="store_true",
                   help="VGG only: the ImageNet weights normalized as in Gatys et al. (each channel's mean activation "
                        "1 on the bundled samples), derived once and cached; the network the paper's alpha/beta are for")
    p.add_argument("--report", metavar="REPORT.json", help="write settings, weights, timing and history as JSON")
    p.add_argument("--recipe", metavar="RECIPE.json",
                   help="replay the settings of a report or of the page's settings download; flags override it")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (notes, warnings and errors still show, on stderr like every message)")


def _dream_options(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS
    p.add_argument("image", nargs="?",
                   help="a path, sample:NAME, or 'gray' / 'noise' to visualize features from scratch")
    p.add_argument("-o", "--output", help="output PNG path (default: dream.png)")
    p.add_argument("--model", choices=list(choices.MODEL_NAMES), default=S,
                   help="default googlenet (or, when its weights are not on this machine, a network whose are)")
    p.add_argument("--layers", default=S, help="LAYER[:WEIGHT],... (default: the network's classic layer, "
                                               "inception4c on GoogLeNet, relu4_3 on VGG)")
    p.add_argument("--channels", default=S, help="channel indices, e.g. 12,97: dream those channels only")
    p.add_argument("--center", action="store_true", default=S, help="channel objective at the centre position only")
    p.add_argument("--objective", choices=list(choices.DREAM_OBJECTIVES), default=S, help="default l2")
    p.add_argument("--guide", metavar="IMAGE", help="guide image for --objective guide")
    p.add_argument("--class", dest="class_name", default=S, metavar="NAME", help="ImageNet class for --objective class")
    p.add_argument("--octaves", type=int, default=S, help="default 4")
    p.add_argument("--octave-scale", type=float, dest="octave_scale", default=S, help="default 1.4")
    p.add_argument("--steps", type=int, default=S, help="steps per octave (default 10)")
    p.add_argument("--step-size", type=float, dest="step_size", default=S,
                   help="mean pixel change per step, pixels in [0, 1] (default 0.01)")
    p.add_argument("--jitter", type=int, default=S, help="largest random roll in pixels (default 32)")
    p.add_argument("--smooth", type=float, default=S, help="gradient smoothing sigma in pixels (default 0 = off)")
    p.add_argument("--normalize", choices=list(choices.DREAM_NORMALIZE), default=S, help="gradient normalization (default mean)")
    p.add_argument("--tile", type=int, default=S, help="tile size in pixels for large images (default 512)")
    p.add_argument("--size", type=int, default=S, help="working size, long side in pixels (default: keep)")
    p.add_argument("--seed", type=int, default=S, help="default 0")
    p.add_argument("--precision", choices=list(choices.PRECISIONS), default=S, help="default auto")
    p.add_argument("--channels-last", choices=list(choices.CHANNELS_LAST), default=S, dest="channels_last")
    p.add_argument("--gif", metavar="OUT.gif", help="animated GIF of the octave-by-octave progression (or the zoom)")
    p.add_argument("--zoom-frames", type=int, default=0, dest="zoom_frames",
                   help="dream-zoom: dream, zoom in and crop, N frames (written to --gif)")
    p.add_argument("--zoom", type=float, default=0.05, help="zoom per frame as a fraction (default 0.05)")
    _common_options(p)


def _featurevis_options(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset flags stay absent so a recipe's values are not overridden
    p.add_argument("-o", "--output", help="the grid of pictures, a PNG (default: featurevis.png)")
    p.add_argument("--model", choices=list(choices.MODEL_NAMES), default=S,
                   help="default vgg19 (or, when its weights are not on this machine, a network whose are)")
    p.add_argument("--layer", default=S, help="canonical layer name (default: the network's own, relu4_1 on VGG)")
    p.add_argument("--objective", choices=list(choices.FEATUREVIS_OBJECTIVES), default=S,
                   help="channel: mean over positions (default); neuron: the centre position; direction: "
                        "--channels weighted by --direction-weights; class: ImageNet class indices")
    p.add_argument("--channels", default=S, metavar="0,1,2,3",
                   help="channel (or class) indices, default 0; each gets its own picture unless --together")
    p.add_argument("--direction-weights", default=S, dest="direction_weights", metavar="W,W",
                   help="the direction's entry per channel (default all 1)")
    p.add_argument("--together", action="store_true", help="one picture for all channels (their mean)")
    p.add_argument("--diversity", type=float, default=S,
                   help="weight of the diversity term across the batch (default 0; Lucent's example uses 100)")
    p.add_argument("--parameterization", choices=list(choices.PARAMETERIZATIONS), default=S,
                   help="fourier (default): a scaled spectrum; pixel: the pixels themselves")
    p.add_argument("--decorrelate", action=argparse.BooleanOptionalAction, default=S,
                   help="optimize in ImageNet's decorrelated colour space (default on)")
    p.add_argument("--transforms", default=S, metavar="SPECS",
                   help="transformation robustness: standard (default: pad:12,jitter:8,scale:0.1,rotate:10,"
                        "jitter:4), none, or specs such as pad:12,jitter:8")
    p.add_argument("--steps", type=int, default=S, help="Adam steps (default 256)")
    p.add_argument("--lr", type=float, default=S, help="Adam learning rate (default 0.05)")
    p.add_argument("--size", type=int, default=S, help="image side in pixels (default 128)")
    p.add_argument("--batch", type=int, default=S, help="images optimized together (default one per channel)")
    p.add_argument("--seed", type=int, default=S, help="default 0")
    p.add_argument("--precision", choices=list(choices.PRECISIONS), default=S, help="default auto")
    p.add_argument("--examples", type=int, metavar="N",
                   help="also write OUT-examples.png: each picture beside its channel's top-N dataset crops")
    p.add_argument("--images-dir", dest="images_dir", metavar="DIR",
                   help="the images the examples are drawn from (default: the bundled samples)")
    _common_options(p)


def _saliency_options(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS
    p.add_argument("style", nargs="?", help="style image: a path or sample:NAME (default: the recipe's)")
    p.add_argument("-o", "--output", help="heatmap overlay PNG (default saliency.png)")
    p.add_argument("--npy", metavar="HEAT.npy", help="also write the raw heatmap (H x W float32) here")
    p.add_argument("--method", choices=list(choices.METHODS), default=S, help="default saliency")
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
    p.add_argument("--model", choices=list(choices.SALIENCY_MODELS), default=S,
                   help="default vgg19 (or, when its weights are not on this machine, a network whose are)")
    p.add_argument("--opacity", type=float, default=0.5, help="heatmap opacity in the PNG, 0 to 1 (default 0.5)")
    _common_options(p)


def _reconstruct_options(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset flags stay absent so a recipe's values are not overridden
    p.add_argument("content", nargs="?", help="content image: a path or sample:NAME (default sample:astronaut)")
    p.add_argument("style", nargs="?", help="style image: a path or sample:NAME (default sample:immunohistochemistry)")
    p.add_argument("-o", "--output", help="the figure, a PNG (default: reconstruct.png)")
    p.add_argument("--layers", dest="content_layers", default=S, metavar="L,L",
                   help="one content reconstruction per layer (default: the network's, relu1_2,relu2_2,relu3_2,"
                        "relu4_2,relu5_2 on VGG: Gatys et al.'s conv*_2, rectified in Caffe); none for no row")
    p.add_argument("--style-sets", dest="style_sets", default=S, metavar="L;L,L",
                   help="one style reconstruction per set, sets split by ';', layers by ',' (default: relu1_1; "
                        "relu1_1,relu2_1; ... up to relu5_1); none for no row")
    p.add_argument("--steps", type=int, default=S, help="L-BFGS steps per picture (default 40)")
    p.add_argument("--size", type=int, default=S, help="working size: long side in pixels (default 128)")
    p.add_argument("--tv-weight", type=float, default=S, dest="tv_weight", help="total-variation weight (default 0)")
    p.add_argument("--tv-beta", type=float, default=S, dest="tv_beta", help="total-variation exponent (default 2)")
    p.add_argument("--seed", type=int, default=S, help="seeds the white noise (default 0)")
    p.add_argument("--noise-scale", type=float, default=S, dest="noise_scale",
                   help="amplitude of the starting white noise around mid-grey, in (0, 1] (default 0.01)")
    p.add_argument("--model", choices=list(choices.STYLE_MODELS), default=S,
                   help="default vgg19 (or, when its weights are not on this machine, a network whose are)")
    p.add_argument("--pooling", choices=list(choices.POOLINGS), default=S,
                   help="default max (Gatys et al.'s figures used avg)")
    p.add_argument("--precision", choices=list(choices.PRECISIONS), default=S, help="default auto")
    p.add_argument("--channels-last", choices=list(choices.CHANNELS_LAST), default=S, dest="channels_last")
    p.add_argument("--parameterization", choices=list(choices.STYLE_PARAMETERIZATIONS), default=S,
                   help="what L-BFGS changes: auto (default: fourier), fourier or pixel")
    p.add_argument("--conv-algorithm", choices=list(choices.CONV_ALGORITHMS), default=S, dest="conv_algorithm")
    p.add_argument("--preview-every", type=int, default=S, dest="preview_every", help=S)
    p.add_argument("--save-each", dest="save_each", metavar="DIR",
                   help="also write every picture as DIR/content-LAYER.png and DIR/style-LAYERS.png")
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
    p.add_argument("--steps", default=S, metavar="N|LO,HI", help="Adam steps, or a range sampled per output (default 20)")
    p.add_argument("--size", default=S, metavar="N|LO,HI",
                   help="working size, long side in px, or a range sampled per output in steps of 32 (default 128)")
    p.add_argument("--beta-range", default=S, dest="beta_range", metavar="LO,HI",
                   help="style weight beta (alpha = 1), sampled log-uniformly per output (default 30,200)")
    p.add_argument("--ratio-range", default=S, dest="beta_range", help=S)  # the flag's old name, hidden
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
    p.add_argument("--init", choices=list(choices.AUGMENT_INITS), default=S,
                   help="starting image (default histogram: the content image in its style's colours)")
    p.add_argument("--parameterization", choices=list(choices.STYLE_PARAMETERIZATIONS), default=S,
                   help="what Adam changes: auto (default: the pixels), pixel or fourier")
    p.add_argument("--model", choices=list(choices.STYLE_MODELS), default=S,
                   help="default vgg19 (or, when its weights are not on this machine, a network whose are)")
    p.add_argument("--precision", choices=list(choices.PRECISIONS), default=S, help="default auto")
    p.add_argument("--shard", metavar="I/N",
                   help="do shard I of N (inputs whose index mod N == I); default: RANK/WORLD_SIZE if set "
                        "(torchrun), else all")
    p.add_argument("--new-folder-if-different", action="store_true", dest="new_folder_if_different",
                   help="when OUT_DIR was made with other settings (weights, sizes, styles, seed, ...), write into "
                        "OUT_DIR-2 (or -3, ...: the first that is new or holds these settings) instead of refusing")
    _common_options(p)


def build_parser(prog: str = "python -m explorer") -> argparse.ArgumentParser:
    """The argument parser of ``python -m explorer`` (``prog``: how help and errors name it)."""
    parser = _Parser(prog=prog,
                                     description="Deep Dream and style-visualization explorer: command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    st = sub.add_parser("stylize", help="Gatys style transfer of CONTENT in the style of STYLE",
                        description="Gatys et al. (2016) style transfer on VGG features.")
    _stylize_options(st)
    dr = sub.add_parser("dream", help="Deep Dream: gradient ascent on a layer's activations",
                        description="Deep Dream with octaves, jitter and tiles (Mordvintsev et al. 2015).")
    _dream_options(dr)
    fv = sub.add_parser("featurevis", help="feature visualization: what channels look for, optimized from scratch",
                        description="Feature visualization by optimization (Olah, Mordvintsev & Schubert, "
                                    "Distill 2017; Lucent): Fourier + decorrelated parameterization, "
                                    "transformation robustness, diversity, and dataset examples.")
    _featurevis_options(fv)
    ac = sub.add_parser("activations", help="what a layer computes for an image: channel grid and statistics",
                        description="Top channels of one layer as an image grid, plus statistics as JSON.")
    ac.add_argument("image", help="a path or sample:NAME")
    ac.add_argument("--model", choices=list(choices.MODEL_NAMES),
                    help="default vgg19 (or, when its weights are not on this machine, a network whose are)")
    ac.add_argument("--layer", help="canonical layer name (default: the network's own, relu3_1 on VGG, "
                                    "inception4c on GoogLeNet, block10 on MobileNetV2)")
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
    aw.add_argument("--normalized", action="store_true",
                    help="VGG only: the ImageNet weights normalized as in Gatys et al., derived once and cached")
    ac.add_argument("--quiet", action="store_true",
                    help="accepted like the other commands' (this one has no progress bar)")
    sa = sub.add_parser("saliency", help="which regions of a style image drive the network: heatmap PNG and .npy",
                        description="Captum saliency, guided backprop, integrated gradients, occlusion or "
                                    "Grad-CAM heatmaps of a style objective of STYLE.")
    _saliency_options(sa)
    rc = sub.add_parser("reconstruct", help="what each layer keeps: content and style reconstructions from white noise",
                        description="Content reconstructions from one layer each and style reconstructions "
                                    "(texture synthesis) from growing sets of layers, all from white noise, as "
                                    "one figure (Gatys, Ecker & Bethge 2016, Fig. 1).")
    _reconstruct_options(rc)
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
                    help=f"comma-separated, from {', '.join(choices.MODEL_NAMES)} or 'all' (default vgg19,googlenet)")
    dl.add_argument("--dir", help="also copy the files here (use it as EXPLORER_WEIGHTS_DIR on an offline machine)")
    wsub.add_parser("status", help="where each model's weights are, and their sizes")
    nz = wsub.add_parser("normalize", help="write a VGG's weights normalized as in Gatys et al. (mean activation 1)",
                         description="Rescales each convolution, layer by layer, so that every channel's mean ReLU "
                                     "activation over the images is 1 (Gatys, Ecker & Bethge 2016, sec. 2). The images: "
                                     "the bundled samples, the files in --images and any IMAGE given.")
    nz.add_argument("images", nargs="*", metavar="IMAGE", help="more images to measure on")
    nz.add_argument("--images", dest="images_dir", metavar="FOLDER", help="a folder of images to measure on too")
    nz.add_argument("--no-samples", action="store_true", help="leave the bundled samples out")
    nz.add_argument("--size", type=int, default=256, help="long side of the images in pixels (default 256)")
    nz.add_argument("--model", choices=list(choices.STYLE_MODELS), default="vgg19", help="default vgg19")
    nz.add_argument("--weights", metavar="FILE", help="the weights to normalize (default: the network's file found)")
    nz.add_argument("-o", "--output", required=True, metavar="FILE", help="the normalized weights file (.pth)")
    nz.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    nz.add_argument("--quiet", action="store_true", help="no progress lines")
    sub.add_parser("app", help="serve the Streamlit app in the browser (streamlit run app.py), from any folder",
                   usage="%(prog)s [STREAMLIT OPTIONS ...]",
                   description="Runs streamlit run on the app: the checkout's app.py, or the copy installed "
                               "with the package. Options such as --server.port 8502 go to Streamlit.")
    dc = sub.add_parser("doctor", help="what this machine runs on: versions, devices, CPU, precision, weights",
                        description="Python, torch and torchvision (and whether they pair), the compute devices, "
                                    "the CPU's model and AVX2 / AVX-512 / native bf16, what --precision auto "
                                    "resolves to, and the weights found for each network.")
    dc.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    return parser


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
    """Entry point (``python -m explorer`` and the ``explorer`` console script). Returns the
    exit status (0 ok, 2 error, 130 interrupted). Every command but ``doctor`` first checks that
    torch and torchvision import together (:func:`explorer.core.installation.torch_problem`)."""
    parser = build_parser("explorer" if Path(sys.argv[0]).stem == "explorer" else "python -m explorer")
    args, extra = parser.parse_known_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    if args.command == "app":  # what app does not know goes to Streamlit
        args.streamlit_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "doctor":  # reports a broken torch/torchvision instead of stopping at it
        from . import doctor as cmd_doctor

        return cmd_doctor.run(args)
    from ..core import installation

    problem = installation.torch_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.command == "app":
        from . import app as cmd_app

        return cmd_app.run(args)
    from . import commands  # torch and the networks, only once a command runs

    return commands.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
