"""A VGG normalized as in Gatys et al.: every convolution's filters and biases rescaled, layer by
layer in forward order, so that each channel's mean ReLU activation over a set of images (every
position of every image) is 1.

Gatys, Ecker & Bethge (2016, *Image Style Transfer Using Convolutional Neural Networks*, sec. 2,
and 2015, *Texture Synthesis Using Convolutional Neural Networks*, sec. 3) used VGG19 normalized
this way; their alpha/beta ratios (1e-3, 1e-4 ...) refer to that network. Because ReLU, max and
average pooling commute with a positive per-channel factor (relu(c x) = c relu(x) for c > 0), the
rescaled network computes the same features up to one positive factor per channel: the strongest
channel at every position, the patterns a channel responds to and every relative loss are
unchanged; only the layers' sizes, and so the paper-scale losses, change.

The rule for conv layer l with mean ReLU activations m_l (one per output channel, measured on the
already rescaled network below it): ``W_l[o, i] <- W_l[o, i] * m_{l-1}[i] / m_l[o]`` and
``b_l[o] <- b_l[o] / m_l[o]`` (m_0 = 1: the input is not rescaled), and a classifier's first
linear layer gets ``m`` of the last convolution on its inputs, so class scores do not change. A
channel that is never active on the images (mean 0) is left unscaled (factor 1) and reported.

Writing: :func:`write_normalized` stores the rescaled ``state_dict`` (float32, the same keys as
the source file) together with a record of how it was made (source file and digest, images,
size) under the ``state_dict`` / ``derivation`` keys of one ``torch.save`` file, which
:func:`explorer.nets.weights.read_state_dict` and ``--weights`` read like any weights file; the
record reaches every run's recipe through :attr:`explorer.nets.weights.WeightsInfo.derivation`.
:func:`load_normalized` derives the file once per source file (keyed by its SHA-256) into
:func:`derived_dir` and loads it.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.installation import app_cache_dir
from ..core.progress import ProgressEvent
from ..io import images as imgs
from ..io.outputs import write_bytes_atomic
from ..io.samples import SAMPLE_CONTENT, SAMPLE_STYLE, load_sample
from .download import imagenet_state_dict
from .models import FeatureNet, load_model
from .registry import get_spec
from .weights import WeightsError, file_digest, find_local_weights

__all__ = [
    "METHOD",
    "DEFAULT_SIZE",
    "IMAGE_SUFFIXES",
    "NormalizedWeights",
    "normalization_images",
    "normalize_vgg",
    "channel_means",
    "write_normalized",
    "derived_dir",
    "normalized_file_for",
    "source_file",
    "load_normalized",
    "title",
]

#: What the ``method`` entry of a normalized file's record says.
METHOD = ("each convolution rescaled so that every channel's mean ReLU activation over the images is 1 "
          "(Gatys, Ecker & Bethge 2016, sec. 2; Gatys, Ecker & Bethge 2015)")
#: Default long side, in pixels, of the images the means are measured on.
DEFAULT_SIZE = 256
#: File name endings taken from a folder of images (others are passed over).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

Progress = Callable[[ProgressEvent], None]


def title(name: str = "vgg19") -> str:
    """What pages and reports call the normalized network, e.g. "VGG19, normalized as in Gatys et al."."""
    return f"{get_spec(name).title}, normalized as in Gatys et al."


@dataclass
class NormalizedWeights:
    """The result of :func:`normalize_vgg`.

    Attributes:
        state_dict: the rescaled weights, float32, the same keys as the network's own state dict
            (``features.N.*`` only for a conv-only network).
        means: per ReLU layer name (``relu1_1`` ...), the mean activation of each channel measured
            before that layer was rescaled (1-D float64 tensors, as many as the layer's channels).
        inactive: per ReLU layer, the channels whose mean was 0 on every image (left unscaled).
        images: the names of the images measured, in order.
        size: their long side in pixels.
    """

    state_dict: dict[str, torch.Tensor]
    means: dict[str, torch.Tensor]
    inactive: dict[str, list[int]] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    size: int = DEFAULT_SIZE

    @property
    def inactive_count(self) -> int:
        return sum(len(v) for v in self.inactive.values())


def _folder_images(folder: Path) -> list[Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise imgs.ImageError(f"image folder {folder}: not a folder")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise imgs.ImageError(f"image folder {folder}: holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return found


def normalization_images(paths: Iterable[str | os.PathLike] = (), folder: str | os.PathLike | None = None, *,
                         size: int = DEFAULT_SIZE, samples: bool = True) -> list[tuple[str, torch.Tensor]]:
    """The images the channel means are measured on: the bundled samples (unless ``samples`` is
    False), then every image file in ``folder`` (sorted by name), then ``paths``; each scaled so
    that its long side is ``size`` px (aspect ratio kept).

    Returns:
        (name, tensor of shape (1, 3, H, W), values in [0, 1]) pairs.

    Raises:
        ImageError: an image that cannot be read, a folder that is not one or holds no images,
            no image at all, or a size below 32 (one line naming the file).
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 4096:
        raise imgs.ImageError(f"normalization image size must be a whole number from 32 to 4096 px, got {size!r}")
    loaded: list[imgs.LoadedImage] = []
    if samples:
        loaded += [load_sample(func) for func in (*SAMPLE_CONTENT.values(), *SAMPLE_STYLE.values())]
    files = (_folder_images(Path(folder)) if folder is not None else []) + [Path(p) for p in paths]
    loaded += [imgs.load_image(p, role="normalization image", max_side=max(size, 64)) for p in files]
    if not loaded:
        raise imgs.ImageError("no images to normalize on: give a folder or image files, or keep the samples")
    return [(li.name, imgs.to_tensor(imgs.resize_long_side(li.image, size))) for li in loaded]


def _relu_after(net: FeatureNet) -> list[tuple[str, str]]:
    """(conv name, relu name) pairs of a VGG, in forward order."""
    names = net.layer_names
    return [(n, names[i + 1]) for i, n in enumerate(names) if isinstance(net.body[n], nn.Conv2d)]


def channel_means(net: FeatureNet, batch: Sequence[torch.Tensor], layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each channel's mean activation at ``layers`` over every position of every image of ``batch``
    (images (1, 3, H, W) in [0, 1], sizes may differ), max pooling, float64 sums.

    Returns:
        layer name -> 1-D float64 tensor, one mean per channel.
    """
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    with torch.no_grad():
        for x in batch:
            feats = net.features(x.to(net.device, torch.float32), layers)
            for n, a in feats.items():
                s = a.double().sum(dim=(0, 2, 3)).cpu()
                sums[n] = sums[n] + s if n in sums else s
                counts[n] = counts.get(n, 0) + a.shape[0] * a.shape[2] * a.shape[3]
    return {n: sums[n] / counts[n] for n in layers}


def normalize_vgg(net: FeatureNet, batch: Sequence[tuple[str, torch.Tensor]], *, size: int = DEFAULT_SIZE,
                  progress: Progress | None = None) -> NormalizedWeights:
    """Rescale a VGG's convolutions layer by layer so that each channel's mean ReLU activation
    over ``batch`` is 1 (see the module docstring for the rule). ``net`` is not changed.

    Args:
        net: a VGG :class:`FeatureNet` (max pooling is used to measure).
        batch: (name, image (1, 3, H, W) in [0, 1]) pairs, e.g. from :func:`normalization_images`.
        size: the images' long side, for the record only.
        progress: called with a :class:`ProgressEvent` after each layer (``step`` = layers done).

    Raises:
        ValueError: not a VGG, or an empty batch.
    """
    if net.spec.family != "vgg":
        raise ValueError(f"only VGG networks can be normalized as in Gatys et al.; {net.name} is not one")
    if not batch:
        raise ValueError("no images to normalize on")
    pairs = _relu_after(net)
    start = time.perf_counter()
    xs = [x.to(net.device, torch.float32) for _, x in batch]
    convs = {c: (net.body[c].weight.detach().double().clone(), net.body[c].bias.detach().double().clone())
             for c, _ in pairs}
    means: dict[str, torch.Tensor] = {}
    inactive: dict[str, list[int]] = {}
    with torch.no_grad():
        hs = [net.normalize(x) for x in xs]  # the activations entering the next layer, already rescaled
        prev = torch.ones(3, dtype=torch.float64)
        k = 0
        for name in net.layer_names:
            module = net.body[name]
            if isinstance(module, nn.Conv2d):
                w, b = convs[name]
                w *= prev.to(w.device).view(1, -1, 1, 1)  # undo the input channels' scale
                out = [F.relu(F.conv2d(h, w.float(), b.float(), module.stride, module.padding)) for h in hs]
                total = sum(o.double().sum(dim=(0, 2, 3)) for o in out)
                count = sum(o.shape[0] * o.shape[2] * o.shape[3] for o in out)
                m = (total / count).cpu()
                relu = dict(pairs)[name]
                means[relu] = m.clone()
                dead = torch.nonzero(m <= 0).flatten().tolist()
                if dead:
                    inactive[relu] = dead
                scale = torch.where(m > 0, m, torch.ones_like(m))
                w /= scale.to(w.device).view(-1, 1, 1, 1)
                b /= scale.to(b.device)
                # the next layer sees what the written network computes: this layer run again with
                # its rescaled float32 weights (dividing ``out`` instead lets rounding drift apart)
                hs = [F.relu(F.conv2d(h, w.float(), b.float(), module.stride, module.padding)) for h in hs]
                prev = scale
                k += 1
                if progress is not None:
                    progress(ProgressEvent(k, len(pairs), time.perf_counter() - start,
                                           stage=f"normalizing {name}: {len(dead)} channels never active"))
            elif isinstance(module, nn.ReLU):
                continue  # applied with the convolution above
            elif isinstance(module, nn.MaxPool2d):
                hs = [module(h) for h in hs]
            else:  # the classifier: nothing left to measure
                break
    sd = {}
    features = {id(m): i for i, m in enumerate(_features_modules(net))}
    for conv, (w, b) in convs.items():
        i = features[id(net.body[conv])]
        sd[f"features.{i}.weight"], sd[f"features.{i}.bias"] = w.float(), b.float()
    if net.has_classifier:
        fc6 = net.body["fc6"]
        w = fc6.weight.detach()  # 102 million values: scaled in float32, in place on a copy
        cells = w.shape[1] // prev.numel()  # pool5 is flattened channel-major: 49 cells per channel
        sd["fc6.weight"] = w.clone().mul_(prev.float().repeat_interleave(cells).view(1, -1))
        sd["fc6.bias"] = fc6.bias.detach().float().clone()
        for n, key in (("fc7", "classifier.3"), ("fc8", "classifier.6")):
            sd[f"{key}.weight"] = net.body[n].weight.detach().float().clone()
            sd[f"{key}.bias"] = net.body[n].bias.detach().float().clone()
        sd["classifier.0.weight"], sd["classifier.0.bias"] = sd.pop("fc6.weight"), sd.pop("fc6.bias")
    return NormalizedWeights(sd, means, inactive, [n for n, _ in batch], size)


def _features_modules(net: FeatureNet) -> list[nn.Module]:
    """The modules of torchvision's ``features`` Sequential, in its order (conv, ReLU, pool ...),
    rebuilt from the flat layer list (a ReLU stands for torchvision's own)."""
    out = []
    for n in net.layer_names:
        if n.startswith(("conv", "relu", "pool")):
            out.append(net.body[n])
    return out


def _record(net: FeatureNet, result: NormalizedWeights) -> dict:
    return {"method": METHOD, "title": title(net.name), "network": net.name,
            "source": ({"file": None, "digest": None, "label": net.weights.label} if net.weights.untrained else
                       {"file": Path(net.weights.source).name, "digest": net.weights.digest or None,
                        "label": net.weights.label}),
            "images": list(result.images), "size": result.size, "pooling": "max",
            "inactive_channels": {k: list(v) for k, v in result.inactive.items()}}


def write_normalized(net: FeatureNet, result: NormalizedWeights, out: str | os.PathLike) -> Path:
    """Write ``result`` atomically (temp file, then rename) as ``{"state_dict": ..., "derivation":
    record}``; the record names the source file and digest (``net.weights``), the images and size.

    Raises:
        explorer.io.outputs.OutputPathError / DiskFullError / OSError: as the atomic writer.
    """
    buf = io.BytesIO()
    torch.save({"state_dict": result.state_dict, "derivation": _record(net, result)}, buf)
    return write_bytes_atomic(buf.getvalue(), out)


def derived_dir() -> Path:
    """Where derived weights are kept: ``weights/`` in the app's cache folder
    (:func:`explorer.core.installation.app_cache_dir`: ``$EXPLORER_CACHE_DIR``, by default
    ``~/.cache/dream-style-explorer``)."""
    return app_cache_dir() / "weights"


def normalized_file_for(name: str, digest: str, size: int = DEFAULT_SIZE) -> Path:
    """The cached normalized file of network ``name`` made from the file of SHA-256 ``digest``
    (``"sha256:..."``) on the bundled samples at ``size`` px."""
    return derived_dir() / f"{name}-gatys-normalized-{digest.removeprefix('sha256:')[:16]}-{size}px.pth"


def source_file(name: str) -> Path:
    """The weights file of network ``name`` a normalization starts from: the one found on this machine
    (:func:`explorer.nets.weights.find_local_weights`), else torchvision's, downloaded.

    Raises:
        WeightsError: none found and none could be downloaded.
    """
    found = find_local_weights(name)
    if found is not None:
        return found
    _, source = imagenet_state_dict(name, progress=True)  # downloads, or WeightsMissingError
    return Path(source)


def load_normalized(name: str = "vgg19", *, device: str | torch.device = "auto",
                    progress: Progress | None = None) -> FeatureNet:
    """Network ``name`` (a VGG) with its ImageNet weights normalized as in Gatys et al. on the
    bundled samples at :data:`DEFAULT_SIZE` px: derived on first use from the weights file found
    (:func:`explorer.nets.weights.find_local_weights`, else a download), written atomically to
    :func:`normalized_file_for` and read from there afterwards.

    Raises:
        ValueError: not a VGG; WeightsError: no source weights, or a damaged source or cached file.
    """
    if get_spec(name).family != "vgg":
        raise ValueError(f"only VGG networks can be normalized as in Gatys et al.; {name} is not one")
    source = source_file(name)
    try:
        digest = file_digest(source)
    except OSError as exc:
        raise WeightsError(f"weights file {source}: cannot be read ({exc.strerror or exc})") from None
    target = normalized_file_for(name, digest, DEFAULT_SIZE)
    if not target.is_file():
        base = load_model(name, weights=source, device="cpu")
        result = normalize_vgg(base, normalization_images(size=DEFAULT_SIZE), progress=progress)
        write_normalized(base, result, target)
    return load_model(name, weights=target, device=device)
