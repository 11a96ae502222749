"""The names a user chooses from, in one place and without torch: networks, heatmap methods,
optimizers, precisions, colour modes and the other choice lists, plus the two defaults the
command line's help states. The settings classes check against these lists, the command line
offers them as ``choices`` (so ``python -m explorer --help`` answers without importing torch),
and the pages show them. ``explorer.nets.registry`` checks at import that its registry matches
:data:`MODEL_FAMILIES` and :data:`STYLE_MODELS`; each network's default layers live on its registry
entry (:class:`explorer.nets.registry.ModelSpec`), not here.
"""

from __future__ import annotations

__all__ = [
    "MODEL_FAMILIES", "MODEL_NAMES", "STYLE_MODELS", "SALIENCY_MODELS",
    "METHODS", "GUIDES", "GUIDE_VARIANTS", "BASELINES",
    "OPTIMIZERS", "LOSS_NORMALIZATIONS", "INITS", "AUGMENT_INITS", "POOLINGS", "PRECISIONS", "CHANNELS_LAST",
    "PRESERVE_COLORS", "MASK_SOURCES", "DREAM_OBJECTIVES", "DREAM_NORMALIZE",
    "FEATUREVIS_OBJECTIVES", "PARAMETERIZATIONS", "STYLE_PARAMETERIZATIONS", "CONV_ALGORITHMS",
    "DEFAULT_STYLE_WEIGHT", "DEFAULT_PHOTO_LAMBDA",
]

#: Registered networks (name -> family), in the registry's order.
MODEL_FAMILIES: dict[str, str] = {
    "vgg19": "vgg", "vgg16": "vgg", "googlenet": "googlenet", "inception_v3": "inception_v3",
    "mobilenet_v2": "mobilenet_v2", "resnet50": "resnet",
}
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_FAMILIES)
#: Style transfer, sweeps and augmentation run on the VGGs (Gatys et al.'s relu*_1 layers).
STYLE_MODELS: tuple[str, ...] = tuple(n for n, f in MODEL_FAMILIES.items() if f == "vgg")
#: Networks the saliency heatmaps are offered for (the Inceptions' auxiliary heads are left out).
SALIENCY_MODELS: tuple[str, ...] = ("vgg19", "vgg16", "mobilenet_v2", "resnet50")

#: Heatmap methods (Captum), and the guides of saliency-guided Gram (the same methods).
METHODS: tuple[str, ...] = ("saliency", "guided_backprop", "integrated_gradients", "occlusion", "gradcam")
GUIDES: tuple[str, ...] = METHODS
GUIDE_VARIANTS: tuple[str, ...] = ("positions", "channels")
#: What an occluded window shows: a blurred copy, the image's mean colour, or black.
BASELINES: tuple[str, ...] = ("blur", "mean", "zero")

OPTIMIZERS: tuple[str, ...] = ("lbfgs", "adam")
LOSS_NORMALIZATIONS: tuple[str, ...] = ("relative", "paper")
#: Starting images of a style transfer: the content image with the style's colour histograms
#: (the default), the content image itself, white noise, or the style image.
INITS: tuple[str, ...] = ("histogram", "content", "noise", "style")
#: ... and those dataset augmentation offers (each output has its own style: no "style" start).
AUGMENT_INITS: tuple[str, ...] = ("histogram", "content", "noise")
POOLINGS: tuple[str, ...] = ("max", "avg")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
CHANNELS_LAST: tuple[str, ...] = ("auto", "on", "off")
#: Keeping the content's colours (Gatys et al. 2017, sec. 5): none, luminance-only transfer, or the
#: style image recoloured with the content's per-channel histograms or RGB mean and covariance.
PRESERVE_COLORS: tuple[str, ...] = ("none", "luminance", "histogram", "linear")
MASK_SOURCES: tuple[str, ...] = ("none", "files", "auto", "segmentation")
DREAM_OBJECTIVES: tuple[str, ...] = ("l2", "mean", "guide", "class")
DREAM_NORMALIZE: tuple[str, ...] = ("mean", "std")
#: Feature visualization's objectives and image parameterizations (the command line's choices;
#: tests/test_cli_featurevis.py checks that they are explorer.featurevis.render's own lists).
FEATUREVIS_OBJECTIVES: tuple[str, ...] = ("channel", "neuron", "direction", "class")
PARAMETERIZATIONS: tuple[str, ...] = ("pixel", "fourier")
#: What style transfer optimizes: auto = the Fourier offset with L-BFGS, the pixels with Adam.
STYLE_PARAMETERIZATIONS: tuple[str, ...] = ("auto", "fourier", "pixel")
#: How float32 3x3 convolutions run on the CPU (explorer.nets.winograd's list, checked by its tests).
CONV_ALGORITHMS: tuple[str, ...] = ("auto", "direct", "winograd")

#: Default style weight beta with relative losses, calibrated on the real Caffe VGG19 against
#: neural-style's six published outputs (``bench/bench_calibration.py``; README, "Defaults on real
#: weights"): at 256 px and 100 steps the median content error is at most 1.2x neural-style's
#: while the median style error stays below neural-style's.
DEFAULT_STYLE_WEIGHT = 40.0
#: Default photorealism weight lambda (Luan et al. 2017, eq. 4) with relative losses (per pixel).
DEFAULT_PHOTO_LAMBDA = 1e5
