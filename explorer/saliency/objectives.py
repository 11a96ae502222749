"""What a saliency map explains: the objectives of the style image that the heatmaps attribute
(style energy, a layer's or a channel's mean activation, the top class's logit), parsed from the
text users type (``style``, ``layer:NAME``, ``channel:NAME:K``, ``class``) into an
:class:`ObjectiveSpec` and built from the shared :mod:`explorer.optim.objectives` (the style
energy is :func:`explorer.optim.objectives.style_energy`, defined once in
:func:`explorer.optim.losses.style_energy`). :func:`objective_function` is the plain forward pass
that Captum runs and :func:`explorer.saliency.occlusion.occlusion_fast` reproduces window by
window, both from the same :class:`ObjectiveSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from ..optim import objectives
from ..nets.layers import output_shape
from ..nets.models import FeatureNet
from ..optim.objectives import Objective
from ..style.settings import DEFAULT_STYLE_LAYERS

__all__ = ["ObjectiveSpec", "parse_objective", "as_spec", "objective_function", "spec_objective", "check_spatial",
           "class_target"]


@dataclass(frozen=True)
class ObjectiveSpec:
    """A parsed objective: ``kind`` is ``style``, ``layer``, ``channel`` or ``class``; ``layer``
    and ``channel`` are set for the layer and channel kinds."""

    kind: str
    layer: str | None = None
    channel: int | None = None

    def __str__(self) -> str:
        if self.kind == "layer":
            return f"layer:{self.layer}"
        if self.kind == "channel":
            return f"channel:{self.layer}:{self.channel}"
        return self.kind

    def describe(self) -> str:
        """Plain words for pages and reports."""
        return {"style": "style energy sum_l w_l ||G_l||^2 / (4 N_l^2 M_l^2)",
                "layer": f"mean activation of {self.layer}",
                "channel": f"mean activation of channel {self.channel} of {self.layer}",
                "class": "logit of the top ImageNet class"}[self.kind]


def parse_objective(text: str) -> ObjectiveSpec:
    """Parse ``style``, ``layer:NAME``, ``channel:NAME:K`` or ``class``.

    Raises:
        ValueError: anything else (one line saying what is allowed).
    """
    t = (text if isinstance(text, str) else "").strip()
    parts = t.split(":")
    if t in ("style", "class"):
        return ObjectiveSpec(t)
    if parts[0] == "layer" and len(parts) == 2 and parts[1]:
        return ObjectiveSpec("layer", parts[1])
    if parts[0] == "channel" and len(parts) == 3 and parts[1]:
        try:
            k = int(parts[2])
        except ValueError:
            k = -1
        if k >= 0:
            return ObjectiveSpec("channel", parts[1], k)
    raise ValueError(f"objective must be style, layer:NAME, channel:NAME:K or class; got {str(text)[:60]!r}")


def as_spec(objective: "ObjectiveSpec | str") -> ObjectiveSpec:
    """An :class:`ObjectiveSpec` as it is, or the text of one parsed by :func:`parse_objective`.

    Raises:
        ValueError: text that is not an objective (one line).
    """
    return objective if isinstance(objective, ObjectiveSpec) else parse_objective(objective)


def check_spatial(model: FeatureNet, layer: str, channel: int | None = None) -> None:
    """Check that ``layer`` has spatial maps (and ``channel``, if given, exists there).

    Raises:
        UnknownLayerError; ValueError naming the layer or the channel count.
    """
    model.check_layers([layer])
    shape = output_shape(model.name, layer, 224, 224)
    if len(shape) != 3:
        raise ValueError(f"{layer} has no spatial maps (shape {shape}); pick a convolutional layer")
    if channel is not None and not 0 <= channel < shape[0]:
        raise ValueError(f"{layer} has {shape[0]} channels; channel {channel} does not exist")


def objective_function(model: FeatureNet, spec: "ObjectiveSpec | str", *,
                       layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
                       weights: Sequence[float] | Mapping[str, float] | None = None,
                       image: torch.Tensor | None = None,
                       pooling: str = "max") -> Callable[[torch.Tensor], torch.Tensor]:
    """The objective as Captum's forward function: images (N, 3, H, W) in [0, 1] -> (N,) float32
    on the model's device (unitless, as activations are). What the fast occlusion engine
    (:func:`explorer.saliency.occlusion.occlusion_fast`) reproduces window by window.

    Args:
        model: the network that evaluates it (pass a
            :func:`explorer.saliency.methods.private_copy` for hook-using methods).
        spec: an :class:`ObjectiveSpec` or its text (:func:`as_spec`).
        layers, weights: the ``style`` objective's layers and w_l (a sequence aligned with
            ``layers`` or a dict by name; default 1/L each).
        pooling: ``"max"`` or ``"avg"`` (see :meth:`FeatureNet.features`).
        image: for ``class``, the image whose top class is explained (fixed once, so the
            occluded or noisy copies are scored on the same class).

    Raises:
        UnknownLayerError: unknown layer; ValueError: a layer without spatial maps, a channel
        out of range, or ``class`` without ``image``.
    """
    obj = spec_objective(model, spec, layers=layers, weights=weights, image=image)
    return lambda x: obj(model.features(x, obj.layers, pooling=pooling))


def spec_objective(model: FeatureNet, spec: "ObjectiveSpec | str", *, layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
                   weights: Sequence[float] | Mapping[str, float] | None = None,
                   image: torch.Tensor | None = None) -> Objective:
    """The :class:`~explorer.optim.objectives.Objective` an :class:`ObjectiveSpec` names, checked
    against ``model`` (the same objectives Deep Dream and feature visualization optimize):
    :func:`~explorer.optim.objectives.style_energy`, :func:`~explorer.optim.objectives.layer_mean`,
    :func:`~explorer.optim.objectives.channel` or :func:`~explorer.optim.objectives.class_logit` of the
    image's top class. Arguments and errors as :func:`objective_function`."""
    spec = as_spec(spec)
    if spec.kind == "style":
        model.check_layers(layers)
        return objectives.style_energy(layers, weights)
    if spec.kind in ("layer", "channel"):
        check_spatial(model, spec.layer, spec.channel)
        if spec.kind == "layer":
            return objectives.layer_mean(spec.layer)
        return objectives.channel(spec.layer, [spec.channel])
    logits = model.logits_layer("the class objective")  # NoClassifierError for conv-only weights
    if image is None:
        raise ValueError("the class objective needs the image whose top class it explains")
    with torch.no_grad():
        idx = int(model(image.to(model.device, torch.float32)).argmax(1)[0])
    return objectives.class_logit(logits, idx)


def class_target(model: FeatureNet, image: torch.Tensor) -> str:
    """What the class objective explains on ``image`` (1, 3, H, W) in [0, 1]: "class 281
    'tabby cat', the network's top class for this image" (ImageNet index and torchvision's name).

    Raises:
        NoClassifierError (a ValueError): weights without a classifier (conv-only VGG files).
    """
    model.logits_layer("the class objective")
    with torch.no_grad():
        idx = int(model(image.to(model.device, torch.float32)).argmax(1)[0])
    cats = model.spec.weights_enum.meta["categories"]
    return f"class {idx} '{cats[idx]}', the network's top class for this image"
