"""The registry of networks: a :class:`ModelSpec` per network (torchvision builder and weights
entry, input normalization, smallest input, logits layer, family, and the network's default layer
for every use: style layers, activation explorer, Deep Dream, saliency objective, Grad-CAM, feature
visualization, content layer), the :data:`MODELS` table and lookup by name. Every page, command and
settings class reads its default layers here; none keeps a table of its own.

:mod:`explorer.core.choices` lists the same names and families without importing torch; this module
checks at import that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torchvision.models as tvm
from torch import nn

from ..core import choices

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CAFFE_MEAN_BGR",
    "caffe_input_scale",
    "TF_MEAN",
    "TF_STD",
    "ModelSpec",
    "MODELS",
    "list_models",
    "get_spec",
    "USES",
    "default_layers",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The original Caffe VGG's input convention: BGR values in 0-255 minus these means (Simonyan &
#: Zisserman 2014's released model; the shared Caffe file has it folded into conv1_1).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def caffe_input_scale() -> tuple[float, float, float]:
    """How many times larger a picture enters the original Caffe VGG than a torchvision network,
    per RGB channel: Caffe takes 255 x - mean (0-255 units), torchvision (x - mean) / std, so the
    ratio of the centred inputs is 255 * std = (58.4, 57.1, 57.4), about 58 (255 x 0.226).

    This is measured from the two input conventions only. How much larger the Caffe VGG19's
    layer activations are than torchvision's is a different number for each layer (two
    separately trained networks), not measured here; "about 58 times" for activations is an
    estimate from the input scale.
    """
    return tuple(255.0 * s for s in IMAGENET_STD)
# torchvision's GoogLeNet and Inception v3 weights were ported from TensorFlow and expect
# inputs in [-1, 1]; `transform_input=True` maps ImageNet-normalized input to exactly
# (x - 0.5) / 0.5, which is what we apply directly since we walk the layers ourselves.
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelSpec:
    """Static description of a registered network.

    Attributes:
        name: registry key, e.g. ``"vgg19"``.
        title: human name for pages.
        weights_enum: the torchvision weights entry (``IMAGENET1K_V1``).
        mean, std: per-channel input normalization applied to images in [0, 1].
        min_size: smallest input side in pixels the network accepts (from the weights' meta).
        logits_layer: name of the layer that outputs the 1000 ImageNet logits.
        family: ``"vgg"``, ``"googlenet"``, ``"inception_v3"``, ``"mobilenet_v2"`` or ``"resnet"``.
        style_layers: layers whose Gram matrices describe "style" on this network, one per
            resolution, shallow to deep (Gatys et al.'s relu1_1 ... relu5_1 on VGG): the default
            layers of style transfer (where the network supports it) and of the style-energy heatmaps.
        activation_layer: the layer the activation explorer (page and ``activations`` command)
            opens on: a mid-depth layer whose maps are still readable (relu3_1 on VGG).
        dream_layer: the classic Deep Dream layer (inception4c on GoogLeNet, after Mordvintsev
            et al. 2015; relu4_3 on VGG).
        saliency_layer: the layer of the saliency page's ``layer`` and ``channel`` objectives
            (the third style layer, relu3_1 on VGG).
        gradcam_layer: the layer Grad-CAM explains for the class objective: the deepest spatial
            layer that is not a pooling (relu5_4 on VGG19; Selvaraju et al. 2017 use the last
            convolutional layer).
        featurevis_layer: the layer feature visualization opens on (the fourth style layer,
            relu4_1 on VGG).
        content_layer: the content layer of style transfer (Gatys et al.'s relu4_2 on VGG), or
            ``None`` where the network does not support style transfer.
        reconstruction_content_layers: the layers whose content representation alone is
            inverted from white noise, one picture each (Gatys et al. 2016 Fig. 1: conv1_2 ...
            conv5_2, which in Caffe's VGG are rectified in place, so relu1_2 ... relu5_2 here).
        reconstruction_style_sets: the growing sets of layers whose style representation
            alone is matched from white noise (texture synthesis; Gatys et al. 2016 Fig. 1:
            conv1_1; conv1_1 + conv2_1; ... up to conv5_1, here relu1_1 ...).
    """

    name: str
    title: str
    weights_enum: object
    builder: Callable[..., nn.Module]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    min_size: int
    logits_layer: str
    family: str
    description: str = ""
    style_layers: tuple[str, ...] = ()
    activation_layer: str = ""
    dream_layer: str = ""
    saliency_layer: str = ""
    gradcam_layer: str = ""
    featurevis_layer: str = ""
    content_layer: str | None = None
    reconstruction_content_layers: tuple[str, ...] = ()
    reconstruction_style_sets: tuple[tuple[str, ...], ...] = ()

    @property
    def supports_style(self) -> bool:
        """True when style transfer runs on this network (it has a content layer)."""
        return self.content_layer is not None

    @property
    def file_name(self) -> str:
        """File name torchvision uses for the ImageNet weights, e.g. ``vgg19-dcbb9e9d.pth``."""
        return Path(urlparse(self.weights_enum.url).path).name

    @property
    def file_size_mb(self) -> float:
        return float(self.weights_enum.meta.get("_file_size", 0.0))


_VGG_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: Gatys et al. 2016 Fig. 1's content layers (conv1_2 ... conv5_2 in Caffe, rectified in place).
_VGG_RECONSTRUCT = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")
#: ... and its style sets: relu1_1; relu1_1 + relu2_1; ...; all five.
_VGG_STYLE_SETS = tuple(_VGG_STYLE[:k] for k in range(1, len(_VGG_STYLE) + 1))

MODELS: dict[str, ModelSpec] = {
    "vgg19": ModelSpec(
        "vgg19", "VGG19", tvm.VGG19_Weights.IMAGENET1K_V1, tvm.vgg19,
        IMAGENET_MEAN, IMAGENET_STD, 32, "fc8", "vgg",
        "Simonyan & Zisserman 2014; the network of Gatys et al.'s style transfer.", _VGG_STYLE,
        activation_layer="relu3_1", dream_layer="relu4_3", saliency_layer="relu3_1", gradcam_layer="relu5_4",
        featurevis_layer="relu4_1", content_layer="relu4_2",
        reconstruction_content_layers=_VGG_RECONSTRUCT, reconstruction_style_sets=_VGG_STYLE_SETS,
    ),
    "vgg16": ModelSpec(
        "vgg16", "VGG16", tvm.VGG16_Weights.IMAGENET1K_V1, tvm.vgg16,
        IMAGENET_MEAN, IMAGENET_STD, 32, "fc8", "vgg",
        "Simonyan & Zisserman 2014, 16 weight layers.", _VGG_STYLE,
        activation_layer="relu3_1", dream_layer="relu4_3", saliency_layer="relu3_1", gradcam_layer="relu5_3",
        featurevis_layer="relu4_1", content_layer="relu4_2",
        reconstruction_content_layers=_VGG_RECONSTRUCT, reconstruction_style_sets=_VGG_STYLE_SETS,
    ),
    "googlenet": ModelSpec(
        "googlenet", "GoogLeNet (Inception v1)", tvm.GoogLeNet_Weights.IMAGENET1K_V1, tvm.googlenet,
        TF_MEAN, TF_STD, 15, "fc", "googlenet",
        "Szegedy et al. 2014; the network of the original DeepDream.",
        ("conv1", "conv3", "inception3b", "inception4e", "inception5b"),
        activation_layer="inception4c", dream_layer="inception4c", saliency_layer="inception3b",
        gradcam_layer="inception5b", featurevis_layer="inception4e",
    ),
    "inception_v3": ModelSpec(
        "inception_v3", "Inception v3", tvm.Inception_V3_Weights.IMAGENET1K_V1, tvm.inception_v3,
        TF_MEAN, TF_STD, 75, "fc", "inception_v3",
        "Szegedy et al. 2015.", ("Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c"),
        activation_layer="Mixed_5d", dream_layer="Mixed_6b", saliency_layer="Mixed_5d", gradcam_layer="Mixed_7c",
        featurevis_layer="Mixed_6e",
    ),
    "mobilenet_v2": ModelSpec(
        "mobilenet_v2", "MobileNetV2", tvm.MobileNet_V2_Weights.IMAGENET1K_V1, tvm.mobilenet_v2,
        IMAGENET_MEAN, IMAGENET_STD, 32, "fc", "mobilenet_v2",
        "Sandler et al. 2018: inverted residual blocks with depthwise convolutions; small and fast.",
        ("conv1", "block3", "block6", "block13", "block16"),
        activation_layer="block10", dream_layer="block10", saliency_layer="block6", gradcam_layer="conv_last",
        featurevis_layer="block13",
    ),
    "resnet50": ModelSpec(
        "resnet50", "ResNet-50", tvm.ResNet50_Weights.IMAGENET1K_V1, tvm.resnet50,
        IMAGENET_MEAN, IMAGENET_STD, 32, "fc", "resnet",
        "He et al. 2016: residual bottleneck blocks, 50 layers.",
        ("conv1", "layer1_2", "layer2_3", "layer3_5", "layer4_2"),
        activation_layer="layer3_3", dream_layer="layer3_3", saliency_layer="layer2_3", gradcam_layer="layer4_2",
        featurevis_layer="layer3_5",
    ),
}

if {n: s.family for n, s in MODELS.items()} != choices.MODEL_FAMILIES:  # pragma: no cover - a developer's slip
    raise ImportError("explorer.core.choices.MODEL_FAMILIES must list the registry's networks and families in order")
if tuple(n for n, s in MODELS.items() if s.supports_style) != choices.STYLE_MODELS:  # pragma: no cover
    raise ImportError("explorer.core.choices.STYLE_MODELS must list the registry's networks with a content layer")


def list_models() -> list[str]:
    """Names of the registered networks, default style network first."""
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered network.

    Raises:
        ValueError: unknown model (the message lists the registered names).
    """
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


#: The uses a network has default layers for, and the :class:`ModelSpec` field holding each.
USES: dict[str, str] = {"activations": "activation_layer", "dream": "dream_layer", "saliency": "saliency_layer",
                        "gradcam": "gradcam_layer", "featurevis": "featurevis_layer", "style": "style_layers",
                        "content": "content_layer"}


def default_layers(name: str, use: str) -> tuple[str, ...]:
    """The default layers of network ``name`` for ``use`` (a key of :data:`USES`), as a tuple:
    one name for every use but ``style`` (one per resolution); empty for ``content`` on a
    network without style transfer.

    Raises:
        ValueError: unknown model or use (the message lists the valid ones).
    """
    if use not in USES:
        raise ValueError(f"unknown use {use!r}; choose one of: {', '.join(USES)}")
    value = getattr(get_spec(name), USES[use])
    return tuple(value) if isinstance(value, tuple) else (value,) if value else ()
