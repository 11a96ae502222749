"""The shared model layer: canonical layer names and hook-free feature extraction, and
:func:`load_model`, which builds a registered network with its weights.

The registry of networks is :mod:`explorer.nets.registry`, weights files and downloads are
:mod:`explorer.nets.weights`, devices and precision are :mod:`explorer.core.devices`.

Every page and CLI command gets its network from :func:`load_model`, which returns a
:class:`FeatureNet`: the torchvision network cut into a flat list of named layers (VGG
``conv1_1, relu1_1, ..., pool5``; GoogLeNet ``conv1 ... inception5b``; Inception v3
``Conv2d_1a_3x3 ... Mixed_7c``; MobileNetV2 ``conv1, block1 ... block17, conv_last``; ResNet-50
``conv1, maxpool, layer1_0 ... layer4_2``). :meth:`FeatureNet.features` walks that list explicitly and
returns the activations asked for by name. It registers no hooks and mutates nothing, so one
cached instance can serve every browser session (every Streamlit session runs in its own
thread) at once.

Weights policy (see README "Weights and offline use"):

* ``"imagenet"``: torchvision's ImageNet weights. Looked up first in ``EXPLORER_WEIGHTS_DIR``
  (a folder holding torchvision's ``.pth`` files under their usual names), then in torch's
  cache (``$TORCH_HOME/hub/checkpoints``), then downloaded through torchvision's weights API
  (unless ``EXPLORER_OFFLINE=1``). When none of that works, :class:`~explorer.nets.weights.WeightsError` says which
  file is needed, how large it is, where to put it and how to pre-download it.
* a path: any compatible ``state_dict`` file, loaded with ``torch.load(weights_only=True)``.
* ``"untrained"``: torchvision's default initialization under ``torch.manual_seed(0)``.
  Only when asked for; every report labels it.
* ``"auto"``: ``"imagenet"``, or ``"untrained"`` if and only if ``EXPLORER_ALLOW_UNTRAINED=1``
  and no ImageNet weights file can be found or downloaded. The result is still labelled
  "untrained weights". A file that is found but cannot be used (unreadable, damaged, of the
  wrong kind) is an error naming it, never replaced by untrained weights.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import winograd
from ..core.devices import resolve_device
from .registry import ModelSpec, get_spec
from .download import imagenet_state_dict
from .weights import (WeightsInfo, WeightsMissingError, file_digest, load_state_dict_into, read_weights_file,
                      untrained_allowed, weights_status)

__all__ = [
    "FeatureNet",
    "UnknownLayerError",
    "NoClassifierError",
    "list_layers",
    "check_layer_names",
    "network_with_weights",
    "spatial_layers",
    "last_feature_layer",
    "meta_net",
    "load_model",
    "UNTRAINED_SEED",
]

#: Seed used before constructing a network with untrained weights, so runs are reproducible.
UNTRAINED_SEED = 0


class UnknownLayerError(ValueError):
    """A layer name that the network does not have; the message lists the valid names."""


class NoClassifierError(ValueError):
    """The network's weights have no classifier (a conv-only VGG file), and something asked for
    ImageNet class scores (a class objective, top-5 predictions, Grad-CAM on a class)."""


# ----------------------------------------------------------------------------- construction

def _build_torchvision(spec: ModelSpec, untrained: bool) -> nn.Module:
    """Construct the torchvision network without weights (aux classifiers removed)."""
    kwargs: dict = {"weights": None}
    if spec.family in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, transform_input=False, init_weights=untrained)
    if not untrained:
        return spec.builder(**kwargs)
    # torchvision's initializers draw from the global generator: seed it for this build only, and
    # give every other user of the generator (another session's run) its state back afterwards
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        return spec.builder(**kwargs)


def _vgg_layers(model: nn.Module, classifier: bool = True) -> list[tuple[str, nn.Module]]:
    layers: list[tuple[str, nn.Module]] = []
    block, idx = 1, 0
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            idx += 1
            layers.append((f"conv{block}_{idx}", m))
        elif isinstance(m, nn.ReLU):
            layers.append((f"relu{block}_{idx}", nn.ReLU(inplace=False)))
        elif isinstance(m, nn.MaxPool2d):
            layers.append((f"pool{block}", m))
            block, idx = block + 1, 0
        else:  # pragma: no cover - torchvision's VGG has nothing else
            raise TypeError(f"unexpected module in VGG features: {m}")
    if not classifier:  # conv-only weights: the network ends at pool5
        return layers
    layers.append(("avgpool", nn.Sequential(model.avgpool, nn.Flatten(1))))
    c = model.classifier  # Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear
    layers += [("fc6", c[0]), ("relu6", nn.ReLU(inplace=False)), ("fc7", c[3]),
               ("relu7", nn.ReLU(inplace=False)), ("fc8", c[6])]
    return layers


_GOOGLENET_ORDER = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
                    "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
                    "maxpool4", "inception5a", "inception5b"]
_INCEPTION3_ORDER = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]


def _mobilenet_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """MobileNetV2: ``conv1`` (3x3 stem, 32 channels, stride 2), ``block1`` ... ``block17``
    (inverted residual blocks; their outputs are linear, not rectified), ``conv_last`` (1x1,
    1280 channels), then ``avgpool`` and ``fc`` (the 1000 logits)."""
    f = model.features
    layers: list[tuple[str, nn.Module]] = [("conv1", f[0])]
    layers += [(f"block{i}", f[i]) for i in range(1, len(f) - 1)]
    layers.append(("conv_last", f[len(f) - 1]))
    layers.append(("avgpool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))))
    layers.append(("fc", model.classifier))  # dropout is the identity in eval mode
    return layers


def _resnet_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """ResNet: ``conv1`` (7x7 conv, batch norm and ReLU), ``maxpool``, one layer per bottleneck
    block ``layer1_0`` ... ``layer4_2`` (each ends in a ReLU after the residual sum), then
    ``avgpool`` and ``fc`` (the 1000 logits)."""
    layers: list[tuple[str, nn.Module]] = [("conv1", nn.Sequential(model.conv1, model.bn1, nn.ReLU(inplace=False))),
                                           ("maxpool", model.maxpool)]
    for stage in range(1, 5):
        for i, block in enumerate(getattr(model, f"layer{stage}")):
            layers.append((f"layer{stage}_{i}", block))
    layers.append(("avgpool", nn.Sequential(model.avgpool, nn.Flatten(1))))
    layers.append(("fc", model.fc))
    return layers


def _named_children_layers(model: nn.Module, order: Sequence[str]) -> list[tuple[str, nn.Module]]:
    layers = [(n, getattr(model, n)) for n in order]
    layers.append(("avgpool", nn.Sequential(model.avgpool, nn.Flatten(1))))
    layers.append(("fc", model.fc))  # dropout is the identity in eval mode
    return layers


class FeatureNet(nn.Module):
    """A torchvision network as a flat, ordered list of canonically named layers.

    Inputs are images in [0, 1], shape (N, 3, H, W); the network's own input normalization is
    applied inside :meth:`features`. Parameters are frozen and the module is in eval mode.
    Nothing here registers hooks or changes state during a forward pass, so one instance can be
    shared by many threads.

    Attributes:
        spec: the :class:`ModelSpec`.
        weights: the :class:`WeightsInfo` (say "untrained weights" wherever results are shown).
        layer_names: canonical names in forward order.
    """

    def __init__(self, spec: ModelSpec, layers: list[tuple[str, nn.Module]], weights: WeightsInfo):
        super().__init__()
        self.spec = spec
        self.weights = weights
        self.layer_names: list[str] = [n for n, _ in layers]
        self.body = nn.ModuleDict(layers)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()
        self.winograd_weights = winograd.FlippedWeights()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def train(self, mode: bool = True) -> "FeatureNet":  # noqa: D401 - keep eval forever
        """Always stays in eval mode (batch norm statistics and dropout are fixed)."""
        return super().train(False)

    def check_layers(self, layers: Iterable[str]) -> list[str]:
        """Return ``layers`` as a list after checking each name.

        Raises:
            UnknownLayerError: a name is not a layer of this network (message lists valid names).
        """
        layers = list(layers)
        for n in layers:
            if n not in self.body:
                raise UnknownLayerError(
                    f"{self.name} has no layer {n!r}; valid layers: {', '.join(self.layer_names)}")
        return layers

    def depth(self, layer: str) -> int:
        """Index of ``layer`` in forward order."""
        self.check_layers([layer])
        return self.layer_names.index(layer)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map images in [0, 1] to the network's input scale (ImageNet mean/std for VGG,
        MobileNetV2 and ResNet, [-1, 1] for GoogLeNet and Inception v3)."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def features(self, x: torch.Tensor, layers: Iterable[str], *, pooling: str = "max",
                 conv: str = "direct") -> dict[str, torch.Tensor]:
        """Activations of the requested layers, by name.

        The walk stops after the deepest requested layer (the network is truncated there).

        Args:
            x: images, shape (N, 3, H, W), values in [0, 1], at least ``spec.min_size`` px a side.
            layers: canonical layer names, e.g. ``["relu1_1", "relu4_2"]``.
            pooling: ``"max"`` (as trained) or ``"avg"``: VGG max pooling replaced by average
                pooling of the same window, as Gatys et al. (2016, sec. 2) recommend for synthesis.
            conv: how float32 3x3 convolutions run on the CPU (:mod:`explorer.nets.winograd`):
                ``"direct"`` (torch's own), ``"auto"`` (Winograd on large feature maps,
                :func:`explorer.nets.winograd.prefers`) or ``"winograd"`` (wherever it can). Elsewhere
                (GPU, bf16/fp16 autocast, other kernels) torch's own always runs. The Winograd
                path gives gradients with respect to ``x`` only (the weights are frozen).

        Returns:
            dict name -> activation tensor (N, C, H_l, W_l) (or (N, K) after ``avgpool``), in the
            dtype the layers ran in (bf16/fp16 under autocast).

        Raises:
            UnknownLayerError: unknown layer name.
            ValueError: wrong input shape, an image smaller than the network accepts, or an
                unknown pooling or conv setting.
        """
        wanted = set(self.check_layers(layers))
        if not wanted:
            return {}
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.spec.min_size:
            raise ValueError(f"{self.name} needs images of at least {self.spec.min_size} px a side, "
                             f"got {x.shape[-1]} x {x.shape[-2]}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        if conv not in winograd.CONV_ALGORITHMS:
            raise ValueError(f"conv must be one of {', '.join(winograd.CONV_ALGORITHMS)}; got {conv!r}")
        out: dict[str, torch.Tensor] = {}
        h = self.normalize(x)
        for name in self.layer_names:
            module = self.body[name]
            if pooling == "avg" and isinstance(module, nn.MaxPool2d):
                h = F.avg_pool2d(h, module.kernel_size, module.stride, module.padding,
                                 ceil_mode=module.ceil_mode)
            elif conv != "direct" and winograd.eligible(module, h):
                h = self._conv(name, module, h, conv)
            else:
                h = module(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out

    def _conv(self, name: str, module: nn.Conv2d, h: torch.Tensor, conv: str) -> torch.Tensor:
        """One eligible convolution under ``conv`` = ``"auto"`` or ``"winograd"``."""
        if conv == "winograd" or winograd.prefers(module, h):
            return winograd.winograd_conv3x3(h, module.weight, module.bias,
                                             self.winograd_weights.get(name, module.weight))
        return module(h)

    @property
    def has_classifier(self) -> bool:
        """True when the network ends in the ImageNet classifier (False for conv-only weights)."""
        return self.spec.logits_layer in self.body

    def logits_layer(self, what: str = "this") -> str:
        """The name of the layer giving the 1000 ImageNet logits.

        Args:
            what: what needs the logits, for the message (e.g. ``"the class objective"``).

        Raises:
            NoClassifierError: the weights have no classifier (conv-only VGG file); one line.
        """
        if not self.has_classifier:
            raise NoClassifierError(f"{what} needs ImageNet class scores, but {self.weights.label} has no "
                                    f"classifier; use weights with one (e.g. torchvision's {self.spec.file_name})")
        return self.spec.logits_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # the logits, for Captum and class objectives
        """ImageNet logits, shape (N, 1000), for images (N, 3, H, W) in [0, 1].

        Raises:
            NoClassifierError: conv-only weights.
        """
        layer = self.logits_layer("the forward pass")
        return self.features(x, [layer])[layer]

    def truncated(self, last_layer: str) -> "FeatureNet":
        """A network that ends at ``last_layer``, sharing this one's parameters (no copy)."""
        k = self.depth(last_layer)
        return FeatureNet(self.spec, [(n, self.body[n]) for n in self.layer_names[: k + 1]],
                          self.weights).to(self.device)


@functools.lru_cache(maxsize=8)
def meta_net(name: str) -> "FeatureNet":
    """The network's architecture on the ``meta`` device: no memory, no weights, built once.
    For layer names, shape propagation and receptive-field arithmetic; its ``features`` return
    meta tensors that carry shapes only.

    Raises:
        ValueError: unknown model.
    """
    spec = get_spec(name)
    with torch.device("meta"):
        return FeatureNet(spec, _layers_for(spec, _build_torchvision(spec, untrained=False)),
                          WeightsInfo("untrained", "meta device: shapes only", "no weights (shapes only)"))


def list_layers(name: str) -> list[str]:
    """Canonical layer names of a registered network, in forward order (from :func:`meta_net`)."""
    return list(meta_net(name).layer_names)


def check_layer_names(name: str, layers: Iterable[str]) -> list[str]:
    """``layers`` as a list, each checked against network ``name``'s layer list on the meta
    device (:func:`meta_net`): a bad name costs no weights file and no download.

    Raises:
        ValueError: unknown model; UnknownLayerError: a layer the network does not have (the
            message lists the valid names).
    """
    return meta_net(name).check_layers(layers)


def network_with_weights(default: str, allowed: Sequence[str]) -> tuple[str, str | None]:
    """The network a page or command starts on when the user has not chosen one: ``default``,
    unless no file of its ImageNet weights is on this machine (:func:`weights_status`) and one
    of ``allowed`` has one; then the first such network, with a note saying which, why, and how
    to get ``default``'s weights. A file that is there but cannot be used is not "no weights":
    ``default`` stays, and loading it names the file.

    Returns:
        (network name, note or ``None`` when ``default`` is kept).

    Raises:
        ValueError: unknown model.
    """
    get_spec(default)
    if weights_status([default])[0]["found"]:
        return default, None
    for row in weights_status([n for n in allowed if n != default]):
        if row["found"] and not row["problem"]:
            spec, pick = get_spec(default), get_spec(row["model"])
            return pick.name, (f"the default network, {spec.title}, has no weights on this machine, so this "
                               f"starts on {pick.title}, which has them; to use {spec.title}, get its weights "
                               f"with `explorer weights download --models {default}`")
    return default, None


#: Layers after the global pooling: no spatial maps.
_FLAT_LAYERS = ("avgpool", "fc", "fc6", "relu6", "fc7", "relu7", "fc8")


def spatial_layers(name: str) -> list[str]:
    """The layers of a registered network with spatial maps (N, C, H, W), in forward order:
    everything before the global average pooling."""
    return [n for n in list_layers(name) if n not in _FLAT_LAYERS]


def last_feature_layer(name: str) -> str:
    """The deepest spatial layer that is not a pooling layer (VGG19 ``relu5_4``, VGG16
    ``relu5_3``, MobileNetV2 ``conv_last``, ResNet-50 ``layer4_2``): Grad-CAM's usual layer."""
    return [n for n in spatial_layers(name) if not n.startswith(("pool", "maxpool"))][-1]


def _layers_for(spec: ModelSpec, model: nn.Module, classifier: bool = True) -> list[tuple[str, nn.Module]]:
    if spec.family == "vgg":
        return _vgg_layers(model, classifier)
    if spec.family == "googlenet":
        return _named_children_layers(model, _GOOGLENET_ORDER)
    if spec.family == "mobilenet_v2":
        return _mobilenet_layers(model)
    if spec.family == "resnet":
        return _resnet_layers(model)
    return _named_children_layers(model, _INCEPTION3_ORDER)


_load_lock = threading.Lock()


def load_model(name: str = "vgg19", *, weights: str | os.PathLike = "auto", device: str | torch.device = "auto",
               progress: bool = True) -> FeatureNet:
    """Build a registered network with its weights, frozen, in eval mode, on ``device``.

    Args:
        name: a key of :data:`MODELS`.
        weights: ``"auto"``, ``"imagenet"``, ``"untrained"`` or a path to a state_dict file
            (see the module docstring for what each does).
        device: see :func:`resolve_device`.
        progress: show torchvision's download progress on stderr.

    Returns:
        a :class:`FeatureNet`; ``.weights`` tells where the parameters came from.

    Raises:
        ValueError: unknown model or device.
        WeightsError: no usable weights (one-line message with instructions), or a weights file
            that cannot be used (unreadable, not a regular file, keys, shapes or dtypes that do
            not fit, NaN or infinite values; one line naming the file).
    """
    spec = get_spec(name)
    dev = resolve_device(device)
    w = str(weights) if weights is not None else "auto"
    record = None
    with _load_lock:  # torch.manual_seed is process-global: build one model at a time
        if w in ("auto", "imagenet"):
            try:
                sd, source = imagenet_state_dict(name, progress=progress)
                kind = "imagenet" if Path(source).name == spec.file_name else "file"
            except WeightsMissingError:  # only a missing file: a broken one is never replaced
                if w == "imagenet" or not untrained_allowed():
                    raise
                sd = None
        elif w == "untrained":
            sd = None
        else:
            path = Path(w).expanduser()
            (sd, record), source, kind = read_weights_file(path), str(path), "file"
        if sd is None:
            info = WeightsInfo("untrained", f"torchvision default initialization, torch.manual_seed({UNTRAINED_SEED})",
                               f"untrained weights (seed {UNTRAINED_SEED})")
            model = _build_torchvision(spec, untrained=True)
        else:
            with torch.device("meta"):  # no random initialization: the state_dict replaces it all
                model = _build_torchvision(spec, untrained=False)
            conv_only = load_state_dict_into(model, sd, name, source)
            what = "ImageNet weights" if kind == "imagenet" else "weights"
            label = f"{what} from {Path(source).name}" + (" (conv layers only)" if conv_only else "")
            if record is not None:  # a derived file: say what it is and what it was made from
                made_from = (record.get("source") or {}).get("file") if isinstance(record.get("source"), dict) else None
                label = f"{record.get('title') or 'derived weights'} ({Path(source).name}" + \
                    (f", from {made_from}" if made_from else "") + (", conv layers only)" if conv_only else ")")
            info = WeightsInfo(kind, source, label, conv_only=conv_only, digest=file_digest(source),
                               derivation=json.dumps(record, sort_keys=True) if record is not None else "")
            if conv_only:
                model.classifier = nn.Identity()  # its parameters are still on the meta device
    net = FeatureNet(spec, _layers_for(spec, model, classifier=not info.conv_only), info)
    return net.to(dev)
