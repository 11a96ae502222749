"""The shared model layer: a registry of networks, canonical layer names, weights loading and
hook-free feature extraction.

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
  (unless ``EXPLORER_OFFLINE=1``). When none of that works, :class:`WeightsError` says which
  file is needed, how large it is, where to put it and how to pre-download it.
* a path: any compatible ``state_dict`` file, loaded with ``torch.load(weights_only=True)``.
* ``"untrained"``: torchvision's default initialization under ``torch.manual_seed(0)``.
  Only when asked for; every report labels it.
* ``"auto"``: ``"imagenet"``, or ``"untrained"`` if and only if ``EXPLORER_ALLOW_UNTRAINED=1``
  and no ImageNet weights can be had. The result is still labelled "untrained weights".
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

from . import choices

__all__ = [
    "MODELS",
    "ModelSpec",
    "WeightsError",
    "WeightsInfo",
    "FeatureNet",
    "UnknownLayerError",
    "NoClassifierError",
    "list_models",
    "list_layers",
    "spatial_layers",
    "last_feature_layer",
    "meta_net",
    "load_model",
    "resolve_device",
    "resolve_precision",
    "autocast",
    "weights_file_name",
    "weights_status",
    "download_weights",
    "untrained_allowed",
    "UNTRAINED_SEED",
    "cache_dir",
    "weights_dir",
    "offline",
    "read_state_dict",
    "load_state_dict_into",
    "download_file",
    "fetch_weights",
    "DOWNLOAD_TIMEOUT",
]

#: Seed used before constructing a network with untrained weights, so runs are reproducible.
UNTRAINED_SEED = 0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's GoogLeNet and Inception v3 weights were ported from TensorFlow and expect
# inputs in [-1, 1]; `transform_input=True` maps ImageNet-normalized input to exactly
# (x - 0.5) / 0.5, which is what we apply directly since we walk the layers ourselves.
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)


class WeightsError(RuntimeError):
    """Pretrained weights could not be found or loaded. The message is one line that says
    which file is needed, its size, where to put it and how to pre-download it.

    Attributes:
        app_message: the same advice worded for the Streamlit app, what to do first.
        app_detail: where the app looked (paths), shown below it; may be empty.
    """

    def __init__(self, message: str, app_message: str | None = None, app_detail: str = ""):
        super().__init__(message)
        self.app_message = app_message or message
        self.app_detail = app_detail


class UnknownLayerError(ValueError):
    """A layer name that the network does not have; the message lists the valid names."""


class NoClassifierError(ValueError):
    """The network's weights have no classifier (a conv-only VGG file), and something asked for
    ImageNet class scores (a class objective, top-5 predictions, Grad-CAM on a class)."""


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
            layers of the style-energy heatmaps.
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

    @property
    def file_name(self) -> str:
        return weights_file_name(self.name)

    @property
    def file_size_mb(self) -> float:
        return float(self.weights_enum.meta.get("_file_size", 0.0))


_VGG_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

MODELS: dict[str, ModelSpec] = {
    "vgg19": ModelSpec(
        "vgg19", "VGG19", tvm.VGG19_Weights.IMAGENET1K_V1, tvm.vgg19,
        IMAGENET_MEAN, IMAGENET_STD, 32, "fc8", "vgg",
        "Simonyan & Zisserman 2014; the network of Gatys et al.'s style transfer.", _VGG_STYLE,
    ),
    "vgg16": ModelSpec(
        "vgg16", "VGG16", tvm.VGG16_Weights.IMAGENET1K_V1, tvm.vgg16,
        IMAGENET_MEAN, IMAGENET_STD, 32, "fc8", "vgg",
        "Simonyan & Zisserman 2014, 16 weight layers.", _VGG_STYLE,
    ),
    "googlenet": ModelSpec(
        "googlenet", "GoogLeNet (Inception v1)", tvm.GoogLeNet_Weights.IMAGENET1K_V1, tvm.googlenet,
        TF_MEAN, TF_STD, 15, "fc", "googlenet",
        "Szegedy et al. 2014; the network of the original DeepDream.",
        ("conv1", "conv3", "inception3b", "inception4e", "inception5b"),
    ),
    "inception_v3": ModelSpec(
        "inception_v3", "Inception v3", tvm.Inception_V3_Weights.IMAGENET1K_V1, tvm.inception_v3,
        TF_MEAN, TF_STD, 75, "fc", "inception_v3",
        "Szegedy et al. 2015.", ("Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c"),
    ),
    "mobilenet_v2": ModelSpec(
        "mobilenet_v2", "MobileNetV2", tvm.MobileNet_V2_Weights.IMAGENET1K_V1, tvm.mobilenet_v2,
        IMAGENET_MEAN, IMAGENET_STD, 32, "fc", "mobilenet_v2",
        "Sandler et al. 2018: inverted residual blocks with depthwise convolutions; small and fast.",
        ("conv1", "block3", "block6", "block13", "block16"),
    ),
    "resnet50": ModelSpec(
        "resnet50", "ResNet-50", tvm.ResNet50_Weights.IMAGENET1K_V1, tvm.resnet50,
        IMAGENET_MEAN, IMAGENET_STD, 32, "fc", "resnet",
        "He et al. 2016: residual bottleneck blocks, 50 layers.",
        ("conv1", "layer1_2", "layer2_3", "layer3_5", "layer4_2"),
    ),
}

if {n: s.family for n, s in MODELS.items()} != choices.MODEL_FAMILIES:  # pragma: no cover - a developer's slip
    raise ImportError("explorer.choices.MODEL_FAMILIES must list the registry's networks and families in order")


def list_models() -> list[str]:
    """Names of the registered networks, default style network first."""
    return list(MODELS)


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


# ----------------------------------------------------------------------------- devices

def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Pick the compute device.

    Args:
        name: ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``
            or ``"mps"``.

    Raises:
        ValueError: the device is unknown or not available on this machine.
    """
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use --device auto or cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for but Apple MPS is not available; use --device auto or cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}; use auto, cpu, cuda or mps")
    return dev


def _cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Choose the autocast dtype for the network's forward pass.

    Gram matrices and losses always stay float32; this only affects the convolutions.

    Args:
        precision: ``"auto"`` (bf16 on CUDA GPUs that support it and on CPUs with native bf16
            instructions, fp16 on other CUDA GPUs, else fp32), ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: the device the network runs on.

    Returns:
        ``None`` for plain float32, else the autocast dtype.

    Raises:
        ValueError: unknown precision, or fp16 asked for on a CPU.
    """
    p = (precision or "auto").lower()
    if p in ("fp32", "float32", "32"):
        return None
    if p in ("bf16", "bfloat16"):
        return torch.bfloat16
    if p in ("fp16", "float16", "half"):
        if device.type == "cpu":
            raise ValueError("fp16 is not supported on the CPU; use bf16 or fp32")
        return torch.float16
    if p != "auto":
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if _cpu_has_bf16() else None
    return None  # MPS: autocast support varies between releases; stay in float32


def precision_name(dtype: torch.dtype | None) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for a value of :func:`resolve_precision`."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Context manager running the network in ``dtype`` (mixed precision), or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ----------------------------------------------------------------------------- weights

@dataclass(frozen=True)
class WeightsInfo:
    """Where a network's parameters came from.

    Attributes:
        kind: ``"imagenet"``, ``"file"`` or ``"untrained"``.
        source: the file the weights were read from, or a note for untrained weights.
        label: short text shown on every page and report, naming the file, e.g.
            ``"weights from vgg19-caffe-features-q8.pth (conv layers only)"`` or
            ``"untrained weights (seed 0)"``.
        conv_only: the file held a VGG's convolutional layers only: the network ends at
            ``pool5`` and has no classifier (no class logits, top-5 or class objectives).
    """

    kind: str
    source: str
    label: str
    conv_only: bool = False

    @property
    def untrained(self) -> bool:
        return self.kind == "untrained"


def weights_file_name(name: str) -> str:
    """File name torchvision uses for a model's ImageNet weights, e.g. ``vgg19-dcbb9e9d.pth``."""
    return Path(urlparse(_spec(name).weights_enum.url).path).name


def cache_dir() -> Path:
    """torch's cache of downloaded weights, ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_dir() -> Path | None:
    """The offline weights folder named by ``EXPLORER_WEIGHTS_DIR``, or None."""
    d = os.environ.get("EXPLORER_WEIGHTS_DIR", "").strip()
    return Path(d).expanduser() if d else None


def untrained_allowed() -> bool:
    """True when ``EXPLORER_ALLOW_UNTRAINED`` is set to 1/true/yes."""
    return os.environ.get("EXPLORER_ALLOW_UNTRAINED", "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    """True when ``EXPLORER_OFFLINE`` forbids downloads."""
    return os.environ.get("EXPLORER_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _find_local(name: str) -> Path | None:
    """torchvision's file for ``name`` in EXPLORER_WEIGHTS_DIR or torch's cache; failing that, in
    EXPLORER_WEIGHTS_DIR, another ``.pth``/``.pt`` file named ``<name>-*`` (e.g.
    ``vgg19-caffe-features-q8.pth``), the first in alphabetical order."""
    fname = weights_file_name(name)
    folders = [f for f in (weights_dir(), cache_dir()) if f is not None]
    for folder in folders:
        if (folder / fname).is_file():
            return folder / fname
    wd = weights_dir()
    if wd is not None and wd.is_dir():
        other = sorted(p for p in wd.glob(f"{name}-*") if p.suffix in (".pth", ".pt") and p.is_file())
        if other:
            return other[0]
    return None


def _missing_error(name: str, reason: str) -> WeightsError:
    spec = _spec(name)
    wd = weights_dir()
    where = f"EXPLORER_WEIGHTS_DIR ({wd})" if wd else "a folder named by EXPLORER_WEIGHTS_DIR"
    head = (f"no pretrained weights for {name}: {spec.file_name} ({spec.file_size_mb:.0f} MB) is not in "
            f"{where} nor in torch's cache ({cache_dir()}), and {reason}. "
            f"Pre-download it with `python -m explorer weights download --models {name}` on a machine with "
            f"internet and copy the file into one of those folders")
    # the page leads with what to do; the paths follow as detail
    app = (f"{spec.title} needs its ImageNet weights ({spec.file_name}, {spec.file_size_mb:.0f} MB), and "
           f"{reason}. To go on, tick “Use untrained weights” in the sidebar (results are labelled), or "
           f"pre-download the file with `python -m explorer weights download --models {name}` and put it in "
           "the folder named by EXPLORER_WEIGHTS_DIR or in torch's cache.")
    detail = (f"Looked in {where} and torch's cache ({cache_dir()}). Offline classrooms: see “Weights and "
              "offline use” in the README.")
    return WeightsError(head + ", pass --weights FILE, or try it with untrained weights "
                               "(--untrained or EXPLORER_ALLOW_UNTRAINED=1).", app_message=app, app_detail=detail)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (``torch.load(weights_only=True)``; a ``state_dict``,
    ``model`` or ``model_state_dict`` entry is unwrapped, ``module.`` prefixes dropped).

    Raises:
        WeightsError: missing, not a PyTorch file, or not a dict of tensors (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickle/zip errors, or objects that are not plain tensors
        raise WeightsError(f"could not read weights file {path}: it is not a PyTorch state_dict file (.pth/.pt) "
                           "holding only tensors") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} does not hold a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


#: Seconds a weights download may wait to connect, and then for each block of data: behind a
#: network that accepts connections and never answers, the download gives up with one line
#: instead of hanging (torchvision's own download has no timeout). ``EXPLORER_DOWNLOAD_TIMEOUT``
#: sets another value.
DOWNLOAD_TIMEOUT = 30.0


def _download_timeout() -> float:
    raw = os.environ.get("EXPLORER_DOWNLOAD_TIMEOUT", "").strip()
    try:
        value = float(raw) if raw else DOWNLOAD_TIMEOUT
    except ValueError:
        raise WeightsError(f"EXPLORER_DOWNLOAD_TIMEOUT must be a number of seconds; got {raw!r}") from None
    if not 0 < value < 1e6:
        raise WeightsError(f"EXPLORER_DOWNLOAD_TIMEOUT must be a positive number of seconds; got {raw!r}")
    return value


def download_file(url: str, folder: Path, progress: bool | Callable[[int, int], None] = True,
                  timeout: float | None = None) -> Path:
    """Download ``url`` into ``folder`` under its own file name, atomically (a hidden
    ``.part`` file renamed when complete), checking the SHA-256 prefix torchvision puts in its
    file names (``vgg19-dcbb9e9d.pth``: the digest starts with ``dcbb9e9d``).

    Args:
        url: an http(s) address.
        folder: where the file goes (created).
        progress: True for a tqdm bar on stderr, False for none, or a function called with
            (bytes so far, total bytes or 0) after each block.
        timeout: seconds to connect and for each block (default: ``EXPLORER_DOWNLOAD_TIMEOUT``
            or :data:`DOWNLOAD_TIMEOUT`).

    Returns:
        the file's path.

    Raises:
        OSError: the download failed or timed out, or the digest does not match (one line).
    """
    import hashlib
    import urllib.request

    timeout = _download_timeout() if timeout is None else timeout
    name = Path(urlparse(url).path).name
    folder.mkdir(parents=True, exist_ok=True)
    dest, part = folder / name, folder / f".{name}.part"
    match = torch.hub.HASH_REGEX.search(name)
    digest = hashlib.sha256()
    bar = None
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "dream-style-explorer"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(part, "wb") as fh:
            total, done = int(resp.headers.get("Content-Length") or 0), 0
            if progress is True:
                from tqdm.auto import tqdm

                bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=name)
            while block := resp.read(1 << 20):
                fh.write(block)
                digest.update(block)
                done += len(block)
                if bar is not None:
                    bar.update(len(block))
                elif callable(progress):
                    progress(done, total)
        if match and not digest.hexdigest().startswith(match.group(1)):
            raise OSError(f"{name} is damaged: its SHA-256 does not start with {match.group(1)}")
        os.replace(part, dest)
    except TimeoutError:
        raise OSError(f"no answer from {urlparse(url).netloc} within {timeout:g} s") from None
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise OSError(f"no answer from {urlparse(url).netloc} within {timeout:g} s") from None
        raise OSError(" ".join(str(reason).split()) or type(exc).__name__) from None
    finally:
        if bar is not None:
            bar.close()
        part.unlink(missing_ok=True)
    return dest


def fetch_weights(weights_enum, progress: bool | Callable[[int, int], None] = True) -> Path:
    """The file of a torchvision weights entry: from EXPLORER_WEIGHTS_DIR, torch's cache, or
    downloaded into torch's cache (:func:`download_file`, with a timeout) unless
    EXPLORER_OFFLINE=1.

    Raises:
        WeightsError: offline, or the download failed; the message says why in a few words and
            the caller adds the way forward.
    """
    fname = Path(urlparse(weights_enum.url).path).name
    for folder in (weights_dir(), cache_dir()):
        if folder is not None and (folder / fname).is_file():
            return folder / fname
    if offline():
        raise WeightsError("EXPLORER_OFFLINE=1 forbids downloading")
    try:
        return download_file(weights_enum.url, cache_dir(), progress)
    except OSError as exc:
        raise WeightsError(f"the download failed ({exc})") from None


def _imagenet_state_dict(name: str, progress: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    local = _find_local(name)
    if local is None:
        try:
            local = fetch_weights(_spec(name).weights_enum, progress)
        except WeightsError as exc:
            raise _missing_error(name, str(exc)) from None
    return read_state_dict(local), str(local)


def weights_status(names: Iterable[str] | None = None) -> list[dict]:
    """Where each model's ImageNet weights are on this machine.

    Returns:
        one dict per model: ``model``, ``file``, ``size_mb``, ``found`` (path or ``None``),
        ``weights_dir``, ``cache_dir``.
    """
    out = []
    for n in names or MODELS:
        spec = _spec(n)
        found = _find_local(n)
        out.append({
            "model": n, "file": spec.file_name, "size_mb": spec.file_size_mb,
            "found": str(found) if found else None,
            "weights_dir": str(weights_dir()) if weights_dir() else None,
            "cache_dir": str(cache_dir()),
        })
    return out


def download_weights(names: Iterable[str], dest: str | Path | None = None, progress: bool = True) -> list[Path]:
    """Download ImageNet weights (torchvision's files, with a timeout) into torch's cache and, when
    ``dest`` is given, copy them there too (to prepare an ``EXPLORER_WEIGHTS_DIR`` for an
    offline classroom machine). Returns the paths written.

    Raises:
        WeightsError: a download failed (the message names the file).
    """
    import shutil

    paths = []
    for n in names:
        spec = _spec(n)
        cached = cache_dir() / spec.file_name
        if not cached.is_file():
            try:
                download_file(spec.weights_enum.url, cache_dir(), progress)
            except OSError as exc:
                raise WeightsError(f"download of {spec.file_name} ({spec.file_size_mb:.0f} MB) for {n} failed: "
                                   f"{exc}") from None
        if dest is not None:
            d = Path(dest).expanduser()
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / (spec.file_name + ".part")
            shutil.copyfile(cached, tmp)
            os.replace(tmp, d / spec.file_name)
            paths.append(d / spec.file_name)
        else:
            paths.append(cached)
    return paths


# ----------------------------------------------------------------------------- construction

def _build_torchvision(spec: ModelSpec, untrained: bool) -> nn.Module:
    """Construct the torchvision network without weights (aux classifiers removed)."""
    kwargs: dict = {"weights": None}
    if spec.family in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, transform_input=False, init_weights=untrained)
    if untrained:
        torch.manual_seed(UNTRAINED_SEED)
    return spec.builder(**kwargs)


def _is_conv_only(spec: ModelSpec, sd: dict[str, torch.Tensor]) -> bool:
    """True for a VGG state dict holding only the ``features.N.*`` keys (no classifier), the form
    most style-transfer tools distribute (e.g. the original Caffe VGG19 conv layers)."""
    return spec.family == "vgg" and bool(sd) and all(k.startswith("features.") for k in sd)


def load_state_dict_into(model: nn.Module, sd: dict[str, torch.Tensor], name: str, source: str) -> bool:
    """Load ``sd`` into ``model`` (built on the meta device), strictly, casting any float dtype
    to float32. A VGG state dict with only ``features.*`` keys fills ``model.features``.

    Returns:
        True when the weights hold the convolutional layers only (no classifier).

    Raises:
        WeightsError: keys or shapes that do not fit (one line naming the first few).
    """
    sd = {k: v for k, v in sd.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}
    spec = MODELS.get(name)  # also loads networks outside the registry (DeepLabV3 for explorer.photo)
    conv_only = spec is not None and _is_conv_only(spec, sd)
    target = model.features if conv_only else model
    if conv_only:
        sd = {k.removeprefix("features."): v for k, v in sd.items()}
    own = target.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    prefix = "features." if conv_only else ""
    if missing or unexpected:
        detail = (f"missing {[prefix + k for k in missing[:3]]}" if missing
                  else f"unexpected {[prefix + k for k in unexpected[:3]]}")
        raise WeightsError(f"{source} is not a {name} state_dict ({detail})")
    bad = [k for k in own if own[k].shape != sd[k].shape]
    if bad:
        raise WeightsError(f"{source} does not fit {name}: shape of {prefix}{bad[0]} is {tuple(sd[bad[0]].shape)}, "
                           f"expected {tuple(own[bad[0]].shape)}")
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}  # fp16/bf16 files too
    target.load_state_dict(sd, strict=True, assign=True)
    return conv_only


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

    def features(self, x: torch.Tensor, layers: Iterable[str], *, pooling: str = "max") -> dict[str, torch.Tensor]:
        """Activations of the requested layers, by name.

        The walk stops after the deepest requested layer (the network is truncated there).

        Args:
            x: images, shape (N, 3, H, W), values in [0, 1], at least ``spec.min_size`` px a side.
            layers: canonical layer names, e.g. ``["relu1_1", "relu4_2"]``.
            pooling: ``"max"`` (as trained) or ``"avg"``: VGG max pooling replaced by average
                pooling of the same window, as Gatys et al. (2016, sec. 2) recommend for synthesis.

        Returns:
            dict name -> activation tensor (N, C, H_l, W_l) (or (N, K) after ``avgpool``), in the
            dtype the layers ran in (bf16/fp16 under autocast).

        Raises:
            UnknownLayerError: unknown layer name.
            ValueError: wrong input shape or an image smaller than the network accepts.
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
        out: dict[str, torch.Tensor] = {}
        h = self.normalize(x)
        for name in self.layer_names:
            module = self.body[name]
            if pooling == "avg" and isinstance(module, nn.MaxPool2d):
                h = F.avg_pool2d(h, module.kernel_size, module.stride, module.padding,
                                 ceil_mode=module.ceil_mode)
            else:
                h = module(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out

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
    spec = _spec(name)
    with torch.device("meta"):
        return FeatureNet(spec, _layers_for(spec, _build_torchvision(spec, untrained=False)),
                          WeightsInfo("untrained", "meta device: shapes only", "no weights (shapes only)"))


def list_layers(name: str) -> list[str]:
    """Canonical layer names of a registered network, in forward order (from :func:`meta_net`)."""
    return list(meta_net(name).layer_names)


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
        WeightsError: no usable weights (one-line message with instructions).
    """
    spec = _spec(name)
    dev = resolve_device(device)
    w = str(weights) if weights is not None else "auto"
    with _load_lock:  # torch.manual_seed is process-global: build one model at a time
        if w in ("auto", "imagenet"):
            try:
                sd, source = _imagenet_state_dict(name, progress=progress)
                kind = "imagenet" if Path(source).name == spec.file_name else "file"
            except WeightsError:
                if w == "imagenet" or not untrained_allowed():
                    raise
                sd = None
        elif w == "untrained":
            sd = None
        else:
            path = Path(w).expanduser()
            sd, source, kind = read_state_dict(path), str(path), "file"
        if sd is None:
            info = WeightsInfo("untrained", f"torchvision default initialization, torch.manual_seed({UNTRAINED_SEED})",
                               f"untrained weights (seed {UNTRAINED_SEED})")
            model = _build_torchvision(spec, untrained=True)
        else:
            with torch.device("meta"):  # no random initialization: the state_dict replaces it all
                model = _build_torchvision(spec, untrained=False)
            conv_only = load_state_dict_into(model, sd, name, source)
            what = "ImageNet weights" if kind == "imagenet" else "weights"
            info = WeightsInfo(kind, source, f"{what} from {Path(source).name}" + (" (conv layers only)" if conv_only else ""),
                               conv_only=conv_only)
            if conv_only:
                model.classifier = nn.Identity()  # its parameters are still on the meta device
    net = FeatureNet(spec, _layers_for(spec, model, classifier=not info.conv_only), info)
    return net.to(dev)
