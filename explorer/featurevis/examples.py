"""Dataset examples: the images of a folder that excite a unit most (Olah, Mordvintsev &
Schubert, "Feature Visualization", Distill 2017, "Dataset Examples"), beside the optimized
pictures of :mod:`explorer.featurevis.render`.

One pass over the images (the central square of each scaled to ``size`` x ``size`` px; images
whose long side is more than :data:`MAX_ASPECT` times the short one are skipped) records, for
every channel of the layer, each image's largest activation and where it is (:class:`LayerIndex`). A unit's top-k examples are then the k
images with the largest values, each cropped to the layer's receptive field
(:func:`explorer.nets.layers.receptive_field`) centred on the argmax position mapped to input
pixels (:func:`position_box`). The index is cached per (model and weights, layer, size, folder
contents), so choosing another channel of the same layer costs nothing.

:class:`DatasetExamples` is a :class:`~explorer.core.runs.Run`: one
:class:`~explorer.core.progress.ProgressEvent` per batch of images; files that cannot be read
and images too thin (:class:`explorer.io.images.ImageError`) are skipped and reported in ``notes``
and the result, never ending the run. Without a folder the bundled scikit-image samples are used.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
from PIL import Image

from ..nets.layers import receptive_field
from ..io.images import ImageError, LoadedImage, load_image, to_pil, to_tensor
from ..io.samples import SAMPLE_CONTENT, SAMPLE_STYLE, load_sample
from ..nets.models import FeatureNet
from ..core.devices import autocast, precision_name, resolve_precision
from ..io.grids import image_grid
from ..core.progress import ProgressEvent
from ..core.runs import Run

__all__ = [
    "MAX_ASPECT",
    "ImageSource",
    "sample_sources",
    "folder_sources",
    "prepare",
    "prepared",
    "position_box",
    "LayerIndex",
    "Example",
    "DatasetExamplesResult",
    "DatasetExamples",
    "crop_value",
    "clear_cache",
]


#: Most a dataset image's long side may exceed its short side (times). A thinner image would give
#: a sliver of itself (its central square) scaled up; such images are skipped and listed.
MAX_ASPECT = 8


# ----------------------------------------------------------------------------- where the images come from

@dataclass(frozen=True)
class ImageSource:
    """One image of a dataset: a file (``path``) or a bundled sample (``sample``), named ``name``."""

    name: str
    path: Path | None = None
    sample: str | None = None

    def load(self, max_side: int | None = None) -> LoadedImage:
        """Decode it (a file scaled down so its long side is at most ``max_side`` px, see
        :func:`~explorer.io.images.load_image`). Raises :class:`~explorer.io.images.ImageError` (one
        line) for a broken file."""
        if self.sample is not None:
            return load_sample(self.sample, role="dataset image")
        return load_image(self.path, role="dataset image", max_side=max_side)

    def key(self) -> tuple:
        """What identifies its contents for the cache: the sample's name, or the file's name,
        size in bytes and modification time in ns (a missing file: its name)."""
        if self.sample is not None:
            return ("sample", self.sample)
        try:
            st = os.stat(self.path)
            return ("file", str(self.path), st.st_size, st.st_mtime_ns)
        except OSError:
            return ("file", str(self.path), None, None)


def sample_sources() -> list[ImageSource]:
    """The bundled scikit-image samples (:data:`explorer.io.samples.SAMPLE_CONTENT` and
    ``SAMPLE_STYLE``), the default dataset."""
    return [ImageSource(name, sample=func) for name, func in {**SAMPLE_CONTENT, **SAMPLE_STYLE}.items()]


def folder_sources(folder: str | os.PathLike) -> list[ImageSource]:
    """Every regular file directly in ``folder`` (sorted by name, hidden files left out); which
    ones are images is found when they are decoded (the others are skipped and reported).

    Raises:
        ValueError: not a folder, or a folder without files.
    """
    p = Path(os.fspath(folder)).expanduser()
    if not p.is_dir():
        raise ValueError(f"dataset folder {str(p)!r} is not a folder")
    files = sorted(f for f in p.iterdir() if not f.name.startswith(".") and f.is_file())
    if not files:
        raise ValueError(f"dataset folder {str(p)!r} has no files")
    return [ImageSource(f.name, path=f) for f in files]


def prepare(img: Image.Image, size: int) -> torch.Tensor:
    """A PIL RGB image's central square scaled (Lanczos) to ``size`` x ``size``, as if it were
    resized so that its short side is ``size`` px and centre-cropped, but without making the
    resized image (a 32 x 200,000 px strip would become 224 x 1.4 million px): (1, 3, size, size)
    float32 in [0, 1].

    Raises:
        ValueError: size < 1.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1 px; got {size}")
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return to_tensor(img.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side)))


def prepared(source: ImageSource, size: int) -> torch.Tensor:
    """``source`` decoded (its long side at most :data:`MAX_ASPECT` x ``size`` px, which keeps
    the short side at least ``size``) and :func:`prepare` d: (1, 3, size, size) in [0, 1].

    Raises:
        ImageError: a file that cannot be read, or an image whose long side is more than
            :data:`MAX_ASPECT` times its short side (one line, naming the file).
    """
    img = source.load(max_side=MAX_ASPECT * size).image
    w, h = img.size
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageError(f"dataset image '{source.name}': too thin for a dataset example: its long side is "
                         f"{max(w, h) / min(w, h):.0f} times its short side (at most {MAX_ASPECT} times)")
    return prepare(img, size)


def position_box(field_px: int, position: tuple[int, int], map_shape: tuple[int, int],
                 image_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The input pixels a layer position sees: a square of side ``field_px`` (the receptive
    field, at most the image side), centred on the position mapped to input pixels,
    c = (i + 1/2) H / H_l - 1/2 per axis (exact for "same"-padded convolutions and stride-s pooling,
    where it is i s + (s - 1) / 2), shifted to lie inside the image.

    Args:
        field_px: receptive field side in pixels.
        position: (row, column) in the layer's map (H_l, W_l) = ``map_shape``.
        image_shape: (H, W) of the input in pixels.

    Returns:
        (left, top, right, bottom) in pixels, right and bottom exclusive (PIL's crop box).

    Raises:
        ValueError: a position outside the map or a field < 1 px.
    """
    (r, c), (hl, wl), (h, w) = position, map_shape, image_shape
    if field_px < 1 or not (0 <= r < hl and 0 <= c < wl):
        raise ValueError(f"position {position} is outside the {hl} x {wl} map (or the field is < 1 px)")

    def span(i: int, n_map: int, n_img: int) -> tuple[int, int]:
        side = min(int(field_px), n_img)
        centre = (i + 0.5) * n_img / n_map - 0.5
        lo = int(round(centre - (side - 1) / 2))
        lo = min(max(lo, 0), n_img - side)
        return lo, lo + side

    top, bottom = span(r, hl, h)
    left, right = span(c, wl, w)
    return left, top, right, bottom


# ----------------------------------------------------------------------------- the index and its cache

@dataclass
class LayerIndex:
    """One pass over a dataset at one layer.

    Attributes:
        names: the images that were read, in order (N).
        values: (N, C) float32, each image's largest activation per channel.
        positions: (N, C, 2) int64, (row, column) of that activation in the layer's map.
        map_shape: (H_l, W_l) of the layer at ``size`` px.
        sources: the sources of ``names``. skipped: (name, one-line reason) per unread file.
    """

    model: str
    layer: str
    size: int
    names: list[str]
    values: torch.Tensor
    positions: torch.Tensor
    map_shape: tuple[int, int]
    sources: list[ImageSource]
    skipped: list[tuple[str, str]] = field(default_factory=list)


_CACHE: "OrderedDict[tuple, LayerIndex]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
#: Layer indexes kept (least recently used dropped first).
CACHE_SIZE = 16


def clear_cache() -> None:
    """Forget every cached :class:`LayerIndex`."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _cache_key(model: FeatureNet, layer: str, size: int, sources: Sequence[ImageSource]) -> tuple:
    digest = hashlib.sha256(repr([s.key() for s in sources]).encode()).hexdigest()
    return model.name, model.weights.source, layer, int(size), digest


# ----------------------------------------------------------------------------- results

@dataclass(frozen=True)
class Example:
    """One dataset example of a unit.

    Attributes:
        name: the image's name. value: the unit's largest activation on it.
        position: (row, column) in the layer's map. box: (left, top, right, bottom) crop box in
            pixels of the prepared ``size`` x ``size`` image. crop: that crop (PIL RGB).
    """

    name: str
    value: float
    position: tuple[int, int]
    box: tuple[int, int, int, int]
    crop: Image.Image


@dataclass
class DatasetExamplesResult:
    """What :class:`DatasetExamples` returns.

    Attributes:
        examples: the top ``k`` :class:`Example` s of ``channel``, largest value first.
        values: (N,) the channel's largest activation on every image read (for medians and plots).
        index: the :class:`LayerIndex` (every channel; :meth:`for_channel` uses it).
        cached: the index came from the cache (no pass over the images).
    """

    layer: str
    channel: int
    k: int
    examples: list[Example]
    values: torch.Tensor
    index: LayerIndex | None
    field_px: int
    weights: str
    weights_label: str
    precision: str
    seconds: float
    notes: list[str]
    skipped: list[tuple[str, str]]
    cached: bool = False
    stopped: str | None = None

    def for_channel(self, channel: int, k: int | None = None) -> "DatasetExamplesResult":
        """The same pass's examples for another channel of the layer (no network call).

        Raises:
            ValueError: a channel the layer does not have.
        """
        if self.index is None:
            raise ValueError("no images were read")
        return _result_for(self.index, int(channel), int(k or self.k), self.field_px, self)

    def grid(self, cell: int = 96, cols: int | None = None) -> Image.Image:
        """The crops side by side (each ``cell`` px, labelled with name and value) as a PIL image;
        a 1 x 1 white image when there is none."""
        if not self.examples:
            return Image.new("RGB", (1, 1), "white")
        crops = torch.cat([to_tensor(e.crop.resize((cell, cell), Image.Resampling.LANCZOS)) for e in self.examples])
        labels = [f"{e.value:.3g} {e.name}" for e in self.examples]
        return image_grid(crops, labels, cols=cols or len(self.examples), cell=cell)

    def report(self) -> dict:
        """JSON-ready report."""
        return {"layer": self.layer, "channel": self.channel, "k": self.k, "receptive_field_px": self.field_px,
                "examples": [{"name": e.name, "value": e.value, "position": list(e.position), "box": list(e.box)}
                             for e in self.examples],
                "images": int(self.values.numel()), "skipped": [list(s) for s in self.skipped],
                "weights": self.weights, "weights_label": self.weights_label, "precision": self.precision,
                "seconds": round(self.seconds, 3), "cached": self.cached, "notes": self.notes,
                "stopped": self.stopped, "partial": self.stopped is not None}


def _result_for(index: LayerIndex, channel: int, k: int, field_px: int, like) -> DatasetExamplesResult:
    n_ch = index.values.shape[1] if index.values.dim() == 2 else 0
    if not 0 <= channel < n_ch:
        raise ValueError(f"{index.layer} has {n_ch} channels (0-{n_ch - 1}); channel {channel} does not exist")
    values = index.values[:, channel].clone()
    order = torch.argsort(values, descending=True, stable=True)[:k].tolist()
    size = index.size
    examples = []
    for i in order:
        pos = (int(index.positions[i, channel, 0]), int(index.positions[i, channel, 1]))
        box = position_box(field_px, pos, index.map_shape, (size, size))
        img = to_pil(prepared(index.sources[i], size))
        examples.append(Example(index.names[i], float(values[i]), pos, box, img.crop(box)))
    return DatasetExamplesResult(index.layer, channel, k, examples, values, index, field_px, like.weights,
                                 like.weights_label, like.precision, like.seconds, list(like.notes),
                                 list(index.skipped), like.cached, like.stopped)


# ----------------------------------------------------------------------------- the run

class DatasetExamples(Run):
    """The top-``k`` dataset examples of channel ``channel`` of ``layer``.

    Args:
        model: the shared :class:`FeatureNet`.
        layer: a layer with spatial maps.
        channel: the channel (0-based).
        sources: a folder (path), a list of :class:`ImageSource`, or ``None`` for the bundled
            scikit-image samples.
        k: how many examples (>= 1).
        size: the side in pixels each image is prepared at (:func:`prepare`).
        batch: images per forward pass (one progress event each).
        precision: ``auto``, ``fp32``, ``bf16`` (the network's compute dtype; values in float32).
        use_cache: take the index from, and put it in, the cache.

    Raises:
        UnknownLayerError: unknown layer. ValueError: a layer without spatial maps, a channel
            the layer lacks, k, size or batch out of range, a folder that is not one.
    """

    def __init__(self, model: FeatureNet, layer: str, channel: int, sources=None, *, k: int = 9, size: int = 224,
                 batch: int = 8, precision: str = "auto", use_cache: bool = True):
        super().__init__()
        model.check_layers([layer])
        for key, v, lo, hi in (("k", k, 1, 10_000), ("size", size, max(32, model.spec.min_size), 4096),
                               ("batch", batch, 1, 1024), ("channel", channel, 0, 1 << 20)):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{key} must be a whole number between {lo} and {hi}; got {v!r}")
        rf = receptive_field(model.name, layer)
        if rf is None:
            raise ValueError(f"{layer} has no spatial map (it follows the global pooling); pick a convolutional layer")
        if sources is None:
            sources = sample_sources()
        elif isinstance(sources, (str, os.PathLike)):
            sources = folder_sources(sources)
        self.sources = list(sources)
        if not self.sources:
            raise ValueError("the dataset has no images")
        self.model, self.layer, self.channel, self.k = model, layer, channel, k
        self.size, self.batch, self.use_cache = size, batch, use_cache
        self.field_px = rf[0]
        self.dtype = resolve_precision(precision, model.device)
        self.key = _cache_key(model, layer, size, self.sources)
        self.index: LayerIndex | None = None
        self.cached = False
        self.seconds = 0.0
        if model.weights.untrained:
            self.note("untrained", f"{model.weights.label}: the examples show what random filters respond to")

    def __iter__(self) -> Iterator[ProgressEvent]:
        n = len(self.sources)
        start = time.perf_counter()
        if self.use_cache:
            with _CACHE_LOCK:
                hit = _CACHE.get(self.key)
                if hit is not None:
                    _CACHE.move_to_end(self.key)
            if hit is not None:
                self.index, self.cached = hit, True
                self._check_channel()
                self._note_skipped()
                yield ProgressEvent(n, n, 0.0, {}, message="from the cache: these images were read before",
                                    done=True, stage=f"{len(hit.names)} images")
                return
        names, sources, values, positions, skipped = [], [], [], [], []
        map_shape = None
        done = 0
        yield ProgressEvent(0, n, 0.0, {}, message="; ".join(self.notes) or None)
        for b0 in range(0, n, self.batch):
            group = self.sources[b0:b0 + self.batch]
            tensors, before = [], len(skipped)
            for src in group:
                try:
                    tensors.append(prepared(src, self.size))
                    names.append(src.name)
                    sources.append(src)
                except ImageError as exc:
                    skipped.append((src.name, str(exc)))
            if tensors:
                with torch.no_grad(), autocast(self.model.device, self.dtype):
                    x = torch.cat(tensors).to(self.model.device)
                    a = self.model.features(x, [self.layer])[self.layer].float()
                map_shape = tuple(a.shape[-2:])
                flat = a.flatten(2)  # (B, C, P)
                v, arg = flat.max(dim=2)
                values.append(v.cpu())
                positions.append(torch.stack([arg // a.shape[-1], arg % a.shape[-1]], dim=-1).cpu())
                if b0 == 0 and not 0 <= self.channel < a.shape[1]:
                    raise ValueError(f"{self.layer} has {a.shape[1]} channels (0-{a.shape[1] - 1}); "
                                     f"channel {self.channel} does not exist")
            done += len(group)
            self.seconds = time.perf_counter() - start
            message = "; ".join(f"skipped {why}" for _, why in skipped[before:]) or None
            yield ProgressEvent(done, n, self.seconds, {}, message=message, done=False,
                                stage=f"{done} of {n} images")
        if values:
            self.index = LayerIndex(self.model.name, self.layer, self.size, names, torch.cat(values),
                                    torch.cat(positions), map_shape, sources, skipped)
        else:
            self.index = LayerIndex(self.model.name, self.layer, self.size, [], torch.zeros(0, 0),
                                    torch.zeros(0, 0, 2, dtype=torch.long), (0, 0), [], skipped)
            self.stop("none of the files could be read as an image")
        self._note_skipped()
        if self.use_cache and values:
            with _CACHE_LOCK:
                _CACHE[self.key] = self.index
                while len(_CACHE) > CACHE_SIZE:
                    _CACHE.popitem(last=False)
        self.seconds = time.perf_counter() - start
        yield ProgressEvent(n, n, self.seconds, {}, message=self.stopped, done=True, stage=f"{len(names)} images")

    def _check_channel(self) -> None:
        c = self.index.values.shape[1]
        if not 0 <= self.channel < c:
            raise ValueError(f"{self.layer} has {c} channels (0-{c - 1}); channel {self.channel} does not exist")

    def _note_skipped(self) -> None:
        skipped = self.index.skipped
        if skipped:
            shown = ", ".join(name for name, _ in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
            self.note("files_skipped", f"skipped {len(skipped)} file{'s' if len(skipped) > 1 else ''} that could "
                      f"not be read as images or are too thin: {shown}")

    def result(self) -> DatasetExamplesResult:
        """The top-k examples of the images read so far (none before the pass ends)."""
        empty = DatasetExamplesResult(self.layer, self.channel, self.k, [], torch.zeros(0), None, self.field_px,
                                      self.model.weights.kind, self.model.weights.label, precision_name(self.dtype),
                                      self.seconds, list(self.notes), [], self.cached, self.stopped)
        if self.index is None or not self.index.names:
            if self.index is not None:
                empty.skipped = list(self.index.skipped)
            return empty
        return _result_for(self.index, self.channel, self.k, self.field_px, empty)


@torch.no_grad()
def crop_value(model: FeatureNet, layer: str, channel: int, crop: Image.Image, min_side: int = 32) -> float:
    """The largest activation of ``channel`` of ``layer`` on a crop alone (PIL RGB, upscaled
    with Lanczos so its short side is at least ``min_side`` px), in float32: how strongly the
    crop by itself excites the unit.

    Raises:
        UnknownLayerError, ValueError: unknown layer, a channel the layer lacks.
    """
    w, h = crop.size
    if min(w, h) < min_side:
        k = min_side / min(w, h)
        crop = crop.resize((round(w * k), round(h * k)), Image.Resampling.LANCZOS)
    a = model.features(to_tensor(crop).to(model.device), [layer])[layer].float()
    if not 0 <= channel < a.shape[1]:
        raise ValueError(f"{layer} has {a.shape[1]} channels (0-{a.shape[1] - 1}); channel {channel} does not exist")
    return float(a[0, channel].max())
