"""Dataset augmentation with Gatys style transfer: N stylized variants of every image of an
ImageFolder dataset, with a manifest, resumable, shardable over machines and GPUs.

Layout
------
The input is a folder in torchvision's ImageFolder layout (``ROOT/CLASS/.../NAME.EXT``); the
output folder gets the same relative layout with ``NAME__v0.png``, ``NAME__v1.png``, ... per
input (the source's extension is added, ``NAME_jpg__v0.png``, only when two inputs of one folder
share a stem). Files directly in ROOT are kept too (class ``""``). Hidden files and folders
(``.name``) are ignored; every other file counts as an input: files whose extension is not one
of :data:`IMAGE_EXTENSIONS` (torchvision's ImageFolder list) and files that do not decode, are
truncated, or are smaller than :data:`explorer.images.MIN_SIDE` px a side are listed in
``skipped.csv`` with the reason and the run goes on.

What each output gets (the planner, :func:`plan_jobs`)
------------------------------------------------------
Every (input, variant k) pair is one :class:`Job`. Its random choices are drawn from Python
``random.Random`` generators seeded with SHA-256 of ``(seed, relative source path, k, what)``,
one generator per ``what`` (style choice, blend weights, ratio, steps, size, each traditional
op), and only ``Random.random()`` is used (the one method whose sequence Python guarantees).
So a job does not depend on which other files exist, on the order of processing, on the
shard, or on resuming, and switching one option on (e.g. jitter) does not change the others'
draws:

* styles: ``blend`` distinct style images chosen uniformly (``blend = 1``: one style per output);
* blend weights: each uniform in ``weight_range``, rounded to 3 decimals; the Gram targets are
  the weighted mean with the weights normalized to sum to 1 (as :func:`explorer.style.style_targets`);
* ratio beta/alpha: log-uniform in ``ratio_range`` (4 significant digits); alpha = 1, beta = ratio;
* steps, size: uniform over a grid from LO to HI (steps every 10, sizes every 32 px, HI
  included); a single number means that value. Only images with equal working shape and steps
  share a batch, so ranges make batches smaller;
* traditional augmentation (``flip``, ``crop``, ``jitter``), applied with
  ``torchvision.transforms.v2.functional`` either ``before`` stylization (to the content image at
  its working size, so the shape is kept) or ``after`` it (to the result): horizontal flip with
  probability 1/2; a crop of 60-100 % of the area with aspect ratio 3/4-4/3 resized back to the
  working shape (RandomResizedCrop's ranges); brightness, contrast and saturation factors in
  0.7-1.3 and hue shift in +-0.05 (ColorJitter(0.3, 0.3, 0.3, 0.05), applied in that fixed
  order). The parameters come from the job's own generators (not torch's global RNG, which
  Streamlit's threads share) and are written to the manifest as applied.

Optimization
------------
Several content images go through VGG in one batch (``batch_size``), always with Adam: every
loss is per image and Adam is element-wise, so each image follows the run it would get alone
(:class:`explorer.style.StyleTransfer`; see tests/test_style.py). The batched convolutions
round differently from single ones, so outputs agree with single runs to float rounding (a few
pixels off by 1 of 255), and they are bit-identical between two runs with the same inputs,
settings, batch size, device and thread count (a resumed or sharded run may batch the remaining
images differently; torchrun sets OMP_NUM_THREADS=1). Each batch has per-image targets
(the (N, N) Gram targets of every image's style set stacked to (B, N, N)), per-image loss
weights (alpha = 1, beta = ratio) and per-image seeds. Each style image's Gram matrices are
computed once per working size and cached; a blend is their weighted mean.

Outputs, manifest, resuming
---------------------------
Images are written atomically (temporary file, then rename), so an interrupted run leaves no
half-written PNG. Each finished image appends one row to ``manifest.shard-I-of-N.csv`` (flushed
and fsynced), so several shards can write into one output folder at once without sharing a
file; ``manifest.csv`` is rebuilt (atomically) from all shard manifests whenever a run ends,
also when it is interrupted; a run that ends while another shard is still appending rebuilds it
again, so the shard that finishes last leaves a complete one. ``skipped.csv`` is built the same
way from ``skipped.shard-I-of-N.csv``. Columns: :data:`MANIFEST_COLUMNS`.

Re-running skips every output that exists *and* is listed in a manifest with the same job hash
(the ``job`` column: a digest of everything that determines the output, i.e. the job's draws, the
style images' pixels and the optimization settings, not the batch size, device or precision);
an output listed with a different hash means the folder was made with other settings, which is an
error (:class:`AugmentError`) rather than a silent mix.

Sharding
--------
Inputs (all files, sorted by relative path, so every machine sees the same order) are split by
index: shard ``i`` of ``n`` takes the inputs whose index mod n == i; the shards partition the
inputs exactly. Under ``torchrun`` (or anything that sets ``RANK`` and ``WORLD_SIZE``) the shard
is taken from those variables and a CUDA device from ``LOCAL_RANK`` (:func:`shard_from_env`,
:func:`device_from_env`); no process group is needed, the shards never talk to each other.

No Streamlit here: the CLI (``python -m explorer augment``) and the page share this module.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import random
import re
import stat
import time
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Mapping, Sequence

import torch

from . import images, outputs
from .models import FeatureNet
from .progress import ProgressEvent
from .settings import RecipeSettings, check_float, check_int
from .style import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, StyleSettings, StyleTransfer, style_targets

__all__ = [
    "IMAGE_EXTENSIONS",
    "TRADITIONAL_OPS",
    "MANIFEST_COLUMNS",
    "SKIPPED_COLUMNS",
    "AugmentError",
    "AugmentSettings",
    "Shard",
    "shard_from_env",
    "device_from_env",
    "StyleImage",
    "load_styles",
    "list_inputs",
    "check_folders",
    "output_stems",
    "Job",
    "plan_jobs",
    "apply_traditional",
    "read_manifest",
    "rebuild_manifests",
    "Augmentation",
    "ShardLock",
    "MAX_ZIP_BYTES",
    "MAX_ZIP_FILES",
    "extract_dataset_zip",
    "zip_folder",
]

#: Extensions read as images (torchvision's ImageFolder list), compared case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: Traditional augmentation operations, in the order they are applied.
TRADITIONAL_OPS = ("flip", "crop", "jitter")
#: Columns of manifest.csv, one row per output image. ``output`` and ``source`` are relative
#: to the output and input folder (POSIX separators); ``styles`` and ``style_weights`` are
#: ``;``-separated (style file names relative to the style folder; weights normalized to sum
#: to 1); ``seed`` is the run's seed and ``job_seed`` the one derived for this output (it seeds
#: the noise start, ``init="noise"``); losses are the final, unweighted content (eq. 1) and
#: style (eq. 5) losses and the weighted total; ``seconds`` is this image's share of its batch's
#: optimization time (batch time / ``batch``); ``stopped`` is empty unless the loss became
#: non-finite (then the reason; the image is the last finite one); ``job`` is the job hash.
MANIFEST_COLUMNS = ("output", "source", "class", "variant", "styles", "style_weights", "ratio", "steps", "size",
                    "width", "height", "seed", "job_seed", "traditional", "traditional_at", "content_loss",
                    "style_loss", "tv_loss", "total_loss", "seconds", "batch", "stopped", "weights", "job")
#: Columns of skipped.csv: the input path (relative to the input folder) and a one-line reason.
SKIPPED_COLUMNS = ("path", "reason")

_SIZE_GRID = 32
_STEPS_GRID = 10
_CROP_SCALE = (0.6, 1.0)
_CROP_RATIO = (3 / 4, 4 / 3)
_JITTER = (0.3, 0.3, 0.3, 0.05)  # brightness, contrast, saturation, hue (as ColorJitter's arguments)
_MAX_STYLES = 6
_STYLE_CACHE = 64  # (style image, working size) Gram sets kept


class AugmentError(ValueError):
    """A problem with the folders or their contents, in one line (the CLI prints it as
    ``error: ...`` and exits with status 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# ----------------------------------------------------------------------------- settings

def _pair(key: str, value, cast):
    """``N``, ``"N"``, ``"LO,HI"``, ``(LO, HI)`` or ``[LO, HI]`` -> (lo, hi) of ``cast``."""
    raw = value
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    try:
        items = list(value)
        if not 1 <= len(items) <= 2 or any(isinstance(v, bool) for v in items):
            raise ValueError
        if cast is int:
            nums = []
            for v in items:
                f = float(v)
                if not f.is_integer():
                    raise ValueError
                nums.append(int(f))
        else:
            nums = [float(v) for v in items]
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number or a range LO,HI; got {raw!r}") from None
    lo, hi = nums[0], nums[-1]
    if lo > hi:
        raise ValueError(f"{key}: LO must not be above HI; got {raw!r}")
    return lo, hi


@dataclass
class AugmentSettings(RecipeSettings):
    """Every option of an augmentation run (what a recipe's ``settings`` holds).

    Ranges are (LO, HI) pairs; a single number or ``"LO,HI"`` text is accepted too.

    Attributes:
        variants: stylized outputs per input image.
        batch_size: content images optimized together in one batch (same working shape and steps).
        steps: Adam steps, or a range sampled per output (grid of 10 from LO, HI included).
        size: working size (long side, px), or a range sampled per output (grid of 32 from LO).
        ratio_range: beta/alpha, sampled log-uniformly per output (alpha = 1; relative losses,
            see :mod:`explorer.style`). The default (30, 200) brackets StyleSettings' beta of 80,
            for any VGG19 file.
        blend: style images per output (1 = one style chosen per output; K > 1 = a blend of K
            distinct styles).
        weight_range: range of each blend weight before normalization (ignored for blend 1).
        traditional: ops from :data:`TRADITIONAL_OPS` (``"flip,crop"`` or a tuple); empty = none.
        traditional_at: ``"before"`` or ``"after"`` stylization.
        seed: the run's seed; every output's draws derive from it, its source path and variant.
        lr: Adam learning rate (None = 0.02, pixels in [0, 1]).
        init: ``"content"`` or ``"noise"`` (seeded per output).
        tv_weight, content_layer, style_layers, model, pooling, precision, channels_last: as in
            :class:`explorer.style.StyleSettings`.
    """

    variants: int = 1
    batch_size: int = 4
    steps: tuple[int, int] = (50, 50)
    size: tuple[int, int] = (128, 128)
    ratio_range: tuple[float, float] = (30.0, 200.0)
    blend: int = 1
    weight_range: tuple[float, float] = (0.2, 1.0)
    traditional: tuple[str, ...] = ()
    traditional_at: str = "before"
    seed: int = 0
    lr: float | None = None
    init: str = "content"
    tv_weight: float = 0.0
    content_layer: str = DEFAULT_CONTENT_LAYER
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    model: str = "vgg19"
    pooling: str = "max"
    precision: str = "auto"
    channels_last: str = "auto"

    def validate(self) -> "AugmentSettings":
        """Normalize and check every option.

        Raises:
            ValueError: one line naming the bad option and what is allowed.
        """
        self.steps = _pair("steps", self.steps, int)
        self.size = _pair("size", self.size, int)
        self.ratio_range = _pair("ratio range", self.ratio_range, float)
        self.weight_range = _pair("weight range", self.weight_range, float)
        if isinstance(self.style_layers, str):
            self.style_layers = tuple(v.strip() for v in self.style_layers.split(",") if v.strip())
        self.style_layers = tuple(self.style_layers)
        if isinstance(self.traditional, str):
            raw = [t.strip().lower() for t in self.traditional.split(",") if t.strip()]
            self.traditional = () if raw in (["none"], []) else tuple(raw)
        bad = [t for t in self.traditional if t not in TRADITIONAL_OPS]
        if bad:
            raise ValueError(f"traditional augmentation must be among {', '.join(TRADITIONAL_OPS)}; got {bad[0]!r}")
        self.traditional = tuple(t for t in TRADITIONAL_OPS if t in self.traditional)
        if self.traditional_at not in ("before", "after"):
            raise ValueError(f"traditional_at must be before or after; got {self.traditional_at!r}")
        if self.init not in ("content", "noise"):
            raise ValueError(f"init must be content or noise for augmentation; got {self.init!r}")
        check_int("variants", self.variants, 1, 10_000)
        check_int("batch_size", self.batch_size, 1, 1024)
        check_int("blend", self.blend, 1, _MAX_STYLES)
        for v in self.steps:
            check_int("steps", v, 1, 100_000)
        for v in self.size:
            check_int("size", v, 32, 4096)
        for v in self.ratio_range:
            check_float("ratio", v, 0.0, 1e30, exclusive_min=True)  # beta is a float32
        for v in self.weight_range:
            check_float("blend weight", v, 0.0)
        if self.weight_range[1] < 0.001:
            raise ValueError(f"the blend weight range must reach at least 0.001; got {self.weight_range}")
        self.style_settings(self.steps[0], self.size[0])  # checks the style options
        return self

    def style_settings(self, steps: int, size: int) -> StyleSettings:
        """The :class:`StyleSettings` of one batch (Adam; alpha and beta are set per image)."""
        return StyleSettings(size=size, steps=steps, optimizer="adam", lr=self.lr, content_weight=1.0,
                             style_weight=1.0, tv_weight=self.tv_weight, content_layer=self.content_layer,
                             style_layers=tuple(self.style_layers), init=self.init, seed=0, model=self.model,
                             pooling=self.pooling, precision=self.precision, channels_last=self.channels_last,
                             preview_every=max(1, steps))

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        for k in ("steps", "size", "ratio_range", "weight_range", "traditional", "style_layers"):
            d[k] = list(d[k])
        return d


# ----------------------------------------------------------------------------- shards, devices

@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the inputs whose index (in sorted order) mod count == index."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"the shard count must be a whole number >= 1; got {self.count!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int) or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: the index must be between 0 and "
                             f"{self.count - 1} (shards are numbered from 0)")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"i/n"`` (0 <= i < n) -> Shard.

        Raises:
            ValueError: anything else, e.g. ``"3/2"`` or ``"1"``.
        """
        head, sep, tail = str(text).strip().partition("/")
        try:
            if not sep:
                raise ValueError
            i, n = int(head), int(tail)
        except ValueError:
            raise ValueError(f"shard must be I/N with whole numbers, e.g. 0/4; got {text!r}") from None
        return cls(i, n)

    def takes(self, k: int) -> bool:
        return k % self.count == self.index

    @property
    def tag(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard given by ``RANK`` and ``WORLD_SIZE`` (set by torchrun, or by hand for a
    scheduler's array jobs), or None when they are not both set.

    Raises:
        ValueError: the variables are not whole numbers or RANK >= WORLD_SIZE.
    """
    env = os.environ if env is None else env
    rank, world = env.get("RANK", "").strip(), env.get("WORLD_SIZE", "").strip()
    if not rank or not world:
        return None
    try:
        return Shard(int(rank), int(world))
    except ValueError as exc:
        raise ValueError(f"RANK={rank!r} WORLD_SIZE={world!r}: {exc}") from None


def device_from_env(device: str = "auto", env: Mapping[str, str] | None = None) -> str:
    """``cuda:LOCAL_RANK`` when ``LOCAL_RANK`` is set (torchrun), CUDA is available and the
    device asked for is ``auto`` or ``cuda``; otherwise ``device`` unchanged. With one process per
    GPU each shard then runs on its own GPU."""
    env = os.environ if env is None else env
    local = env.get("LOCAL_RANK", "").strip()
    if local.isdigit() and (device or "auto").strip().lower() in ("auto", "cuda") and torch.cuda.is_available():
        if int(local) >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} CUDA device(s)")
        return f"cuda:{int(local)}"
    return device


# ----------------------------------------------------------------------------- inputs

@dataclass
class StyleImage:
    """A style image: its name (path relative to the style folder, or an upload's or sample's
    name), the decoded RGB image and a digest of its pixels (part of every job's hash)."""

    name: str
    image: object  # PIL.Image.Image, RGB
    digest: str = ""

    def __post_init__(self):
        if not self.digest:
            h = hashlib.sha256(f"{self.image.size}".encode())
            h.update(self.image.tobytes())
            self.digest = h.hexdigest()[:16]


def _walk_files(root: Path) -> list[str]:
    """Relative POSIX paths of the non-hidden regular files under ``root``, sorted by code point
    (locale-independent), not following symlinked folders."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.startswith(".") or not (Path(dirpath) / name).is_file():
                continue
            out.append((rel / name).as_posix())
    return sorted(out)


def _is_image_name(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in IMAGE_EXTENSIONS


def _is_utf8(path: str) -> bool:
    """False for a name that is not valid UTF-8 on disk (Python holds its bytes as surrogates):
    it cannot go into the UTF-8 manifest, so such an input is skipped, not stylized."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _shown(path: str) -> str:
    """A path as UTF-8 text for the CSV files: invalid bytes written as ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _usable(path: str) -> bool:
    return _is_image_name(path) and _is_utf8(path)


def list_inputs(input_dir: str | os.PathLike) -> list[str]:
    """Every input file of a dataset folder (non-hidden regular files, any extension), as
    paths relative to it with ``/`` separators, sorted: the order every shard agrees on.

    Raises:
        AugmentError: the folder does not exist or is not a folder.
    """
    root = Path(input_dir)
    if not root.exists():
        raise AugmentError(f"input folder not found: {input_dir}")
    if not root.is_dir():
        raise AugmentError(f"input must be a folder (ImageFolder layout, one subfolder per class): {input_dir}")
    return _walk_files(root)


def check_folders(input_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  styles_dir: str | os.PathLike | None = None) -> list[str]:
    """Check the input and output folders and return the inputs (:func:`list_inputs`).

    Raises:
        AugmentError: no input folder, or an output folder that is a file or lies inside the
            input folder or the styles folder (its images would become inputs, or styles, of the
            next run or shard).
    """
    inputs = list_inputs(input_dir)
    out = Path(out_dir)
    if _inside(out, Path(input_dir)):
        raise AugmentError(f"the output folder {out_dir} must not be inside the input folder {input_dir}")
    if styles_dir is not None and _inside(out, Path(styles_dir)):
        raise AugmentError(f"the output folder {out_dir} must not be the styles folder {styles_dir} or inside it "
                           "(its images would become styles of later runs)")
    if out.exists() and not out.is_dir():
        raise AugmentError(f"output must be a folder: {out_dir}")
    return inputs


def load_styles(styles_dir: str | os.PathLike, notes: list[str] | None = None) -> list[StyleImage]:
    """The style images of a folder (files with an image extension, recursively, sorted).
    Files that do not decode (or whose names are not UTF-8) are left out, each with a one-line
    note appended to ``notes``.

    Raises:
        AugmentError: no such folder, or no usable image in it (the message gives the first
            reason when there were image files).
    """
    root = Path(styles_dir)
    if not root.is_dir():
        raise AugmentError(f"style folder not found: {styles_dir}" if not root.exists()
                           else f"styles must be a folder of images: {styles_dir}")
    names = [p for p in _walk_files(root) if _is_image_name(p)]
    if not names:
        raise AugmentError(f"no style images in {styles_dir} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    styles, skipped = [], []
    for n in names:
        if not _is_utf8(n):
            skipped.append(f"style image '{_shown(n)}': the file name is not valid UTF-8; left out")
            continue
        try:
            styles.append(StyleImage(n, images.load_image(root / n, name=n, role="style image").image))
        except images.ImageError as exc:
            skipped.append(f"{exc}; left out")
    if notes is not None:
        notes.extend(skipped)
    if not styles:
        raise AugmentError(f"no usable style images in {styles_dir}: {skipped[0]}")
    return styles


#: Longest output file name stem, in UTF-8 bytes: with ``__v9999.png`` and the atomic writer's
#: hidden temporary name (``.NAME.`` + 8 random characters + ``.tmp``) it stays within the
#: 255 bytes most file systems allow.
MAX_STEM_BYTES = 200


def _digest(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def output_stems(inputs: Sequence[str]) -> dict[str, str]:
    """Source path -> output path without the ``__v{k}.png`` ending: the source's folder and
    stem, plus ``_EXT`` when two inputs of one folder share a stem. The *final* names are then
    checked (case-insensitively, as on macOS and Windows file systems): when two inputs would
    still get one name (``b.png`` and ``b.jpg`` become ``b_png`` and ``b_jpg``, and ``b_png.jpg`` is
    ``b_png`` too), each of them gets ``_`` and 8 hex digits of its path's SHA-256 appended. A stem
    longer than :data:`MAX_STEM_BYTES` is cut and given the same digest. The result depends only
    on the full input list, never on the shard."""
    seen: dict[tuple[str, str], int] = {}
    for p in inputs:
        pp = PurePosixPath(p)
        key = (str(pp.parent), pp.stem.casefold())
        seen[key] = seen.get(key, 0) + 1
    stems = {}
    for p in inputs:
        pp = PurePosixPath(p)
        stem = pp.stem if seen[(str(pp.parent), pp.stem.casefold())] == 1 else f"{pp.stem}_{pp.suffix[1:]}"
        if len(stem.encode("utf-8", "surrogateescape")) > MAX_STEM_BYTES:
            cut = stem.encode("utf-8", "surrogateescape")[:MAX_STEM_BYTES - 9].decode("utf-8", "ignore")
            stem = f"{cut}_{_digest(p)}"
        stems[p] = (str(pp.parent), stem)
    names: dict[tuple[str, str], list[str]] = {}
    for p, (parent, stem) in stems.items():
        names.setdefault((parent, stem.casefold()), []).append(p)
    for group in names.values():
        if len(group) > 1:
            for p in group:
                stems[p] = (stems[p][0], f"{stems[p][1]}_{_digest(p)}")
    return {p: str(PurePosixPath(parent) / stem) if parent != "." else stem for p, (parent, stem) in stems.items()}


def _label_of(path: str) -> str:
    parts = PurePosixPath(path).parts
    return parts[0] if len(parts) > 1 else ""


# ----------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class Job:
    """One output image: what to stylize and every random choice made for it.

    Attributes:
        source, label, variant, output: input path, its class (first folder; ``""`` at the
            top level), k, and output path (relative, POSIX).
        styles: indices into the style list; weights: their raw blend weights (normalized when
            blended).
        ratio: beta/alpha; steps, size: the optimization's steps and working size.
        seed: the job's own seed (noise start).
        flip, crop, jitter: traditional parameters drawn for the job (None when the op is off):
            flip True/False; crop (area scale, aspect ratio, x fraction, y fraction); jitter
            (brightness, contrast, saturation factors, hue shift).
    """

    source: str
    label: str
    variant: int
    output: str
    styles: tuple[int, ...]
    weights: tuple[float, ...]
    ratio: float
    steps: int
    size: int
    seed: int
    flip: bool | None = None
    crop: tuple[float, float, float, float] | None = None
    jitter: tuple[float, float, float, float] | None = None


def _rng(seed: int, source: str, variant: int, what: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{source}\x00{variant}\x00{what}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _uniform(rng: random.Random, lo: float, hi: float) -> float:
    return lo + (hi - lo) * rng.random()


def _pick(rng: random.Random, values: Sequence):
    return values[min(int(rng.random() * len(values)), len(values) - 1)]


def _grid(lo: int, hi: int, step: int) -> list[int]:
    return sorted(set(range(lo, hi + 1, step)) | {hi})


def _round_sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def plan_jobs(inputs: Sequence[str], n_styles: int, settings: AugmentSettings, shard: Shard = Shard()) -> list[Job]:
    """The jobs of one shard, in input order then variant order.

    Args:
        inputs: every input of the dataset (:func:`list_inputs`): the full list, so output names
            and shard membership do not depend on the shard.
        n_styles: how many style images there are (jobs hold indices into that list).
        settings: the run's settings.
        shard: which inputs to plan for. Inputs without an image extension, or whose name is not
            valid UTF-8, get no jobs (the run lists them in skipped.csv).

    Raises:
        ValueError: more styles per blend than style images.
    """
    s = settings
    if n_styles < 1:
        raise ValueError("no style images")
    if s.blend > n_styles:
        raise ValueError(f"blend {s.blend} needs at least {s.blend} style images; there are {n_styles}")
    stems = output_stems(inputs)
    steps_grid, size_grid = _grid(*s.steps, _STEPS_GRID), _grid(*s.size, _SIZE_GRID)
    log_lo, log_hi = math.log(s.ratio_range[0]), math.log(s.ratio_range[1])
    jobs = []
    for k, src in enumerate(inputs):
        if not shard.takes(k) or not _usable(src):
            continue
        for v in range(s.variants):
            def r(what: str) -> random.Random:
                return _rng(s.seed, src, v, what)

            sr = r("styles")
            keys = [sr.random() for _ in range(n_styles)]
            chosen = tuple(sorted(sorted(range(n_styles), key=keys.__getitem__)[:s.blend]))
            wr = r("weights")
            weights = tuple(round(_uniform(wr, *s.weight_range), 3) for _ in chosen) if s.blend > 1 else (1.0,)
            if not sum(weights) > 0:
                weights = (1.0,) * len(chosen)
            ratio = min(max(_round_sig(math.exp(_uniform(r("ratio"), log_lo, log_hi))), s.ratio_range[0]),
                        s.ratio_range[1])
            seed = int.from_bytes(hashlib.sha256(f"{s.seed}\x00{src}\x00{v}\x00seed".encode()).digest()[:8], "big") >> 1
            flip = crop = jitter = None
            if "flip" in s.traditional:
                flip = r("flip").random() < 0.5
            if "crop" in s.traditional:
                cr = r("crop")
                crop = (_uniform(cr, *_CROP_SCALE), math.exp(_uniform(cr, *map(math.log, _CROP_RATIO))),
                        cr.random(), cr.random())
            if "jitter" in s.traditional:
                jr = r("jitter")
                b, c, sat, hue = _JITTER
                jitter = (_uniform(jr, 1 - b, 1 + b), _uniform(jr, 1 - c, 1 + c), _uniform(jr, 1 - sat, 1 + sat),
                          _uniform(jr, -hue, hue))
            jobs.append(Job(source=src, label=_label_of(src), variant=v, output=f"{stems[src]}__v{v}.png",
                            styles=chosen, weights=weights, ratio=ratio, steps=_pick(r("steps"), steps_grid),
                            size=_pick(r("size"), size_grid), seed=seed, flip=flip, crop=crop, jitter=jitter))
    return jobs


def apply_traditional(x: torch.Tensor, job: Job) -> tuple[torch.Tensor, str]:
    """Apply a job's flip, crop and colour jitter (those drawn, in that order) to images
    (1, 3, H, W) in [0, 1] with ``torchvision.transforms.v2.functional``; the shape is kept
    (the crop is resized back to H x W, antialiased).

    Returns:
        (image, description of what was applied, e.g. ``"flip=yes;crop=4,0,52,60;jitter=1.1,0.93,1.2,+0.012"``:
        crop as top,left,height,width in px of the working image; jitter as brightness,
        contrast, saturation factors and hue shift).
    """
    import torchvision.transforms.v2.functional as TF

    parts = []
    h, w = x.shape[-2:]
    if job.flip is not None:
        if job.flip:
            x = TF.horizontal_flip(x)
        parts.append(f"flip={'yes' if job.flip else 'no'}")
    if job.crop is not None:
        scale, ratio, fx, fy = job.crop
        area = scale * h * w
        cw = max(1, min(w, round(math.sqrt(area * ratio))))
        ch = max(1, min(h, round(math.sqrt(area / ratio))))
        left, top = round(fx * (w - cw)), round(fy * (h - ch))
        x = TF.resized_crop(x, top, left, ch, cw, [h, w], antialias=True).clamp(0, 1)
        parts.append(f"crop={top},{left},{ch},{cw}")
    if job.jitter is not None:
        b, c, s, hue = job.jitter
        x = TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x, b), c), s), hue)
        parts.append(f"jitter={b:.3g},{c:.3g},{s:.3g},{hue:+.3g}")
    return x.clamp(0, 1), ";".join(parts)


def _job_hash(job: Job, styles: Sequence[StyleImage], settings: AugmentSettings, weights_kind: str) -> str:
    """What determines an output (not the batch size, device or precision), as 12 hex digits."""
    s = settings
    what = {
        "job": {k: v for k, v in asdict(job).items() if k not in ("styles",)},
        "styles": [styles[i].digest for i in job.styles],
        "settings": {"lr": s.lr, "init": s.init, "tv_weight": s.tv_weight, "content_layer": s.content_layer,
                     "style_layers": list(s.style_layers), "model": s.model, "pooling": s.pooling,
                     "traditional_at": s.traditional_at if s.traditional else ""},
        "weights": weights_kind,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=list).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- manifests

#: A spreadsheet reads a cell that starts with one of these as a formula (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Our CSV files end rows with CRLF (RFC 4180), so that Python's writer quotes every field that
#: holds a carriage return or a line feed (with "\n" alone it left a bare "\r" unquoted).
_CRLF = "\r\n"


def _cell_out(value) -> str:
    """A CSV cell as written: a text that a spreadsheet would run as a formula (or that starts
    with the escaping quote itself) gets a leading ``'``, so ``=HYPERLINK(...)`` in a file name
    shows as text. :func:`_cell_in` undoes it exactly."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START + ("'",)) else text


def _cell_in(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def _read_csv(path: Path, columns: Sequence[str]) -> list[dict]:
    """Complete rows of one of our CSV files, cells as they were before :func:`_cell_out`; a row
    cut short by an interruption is dropped. Read with ``newline=""``, so a carriage return or
    line feed inside a quoted name stays part of it."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(text, newline="")):
        if None in row or any(row.get(c) is None for c in columns):
            continue
        if "job" in columns and len(row["job"]) != 12:
            continue
        rows.append({c: _cell_in(row[c]) for c in columns})
    return rows


def _shard_files(out_dir: Path, stem: str) -> list[Path]:
    return sorted(out_dir.glob(f"{stem}.shard-*-of-*.csv"))


def read_manifest(out_dir: str | os.PathLike) -> dict[str, list[dict]]:
    """Every complete manifest row in an output folder (``manifest.csv`` first, then the shard
    manifests in name order), grouped by output path."""
    out = Path(out_dir)
    by_output: dict[str, list[dict]] = {}
    for path in [out / "manifest.csv", *_shard_files(out, "manifest")]:
        for row in _read_csv(path, MANIFEST_COLUMNS):
            by_output.setdefault(row["output"], []).append(row)
    return by_output


def _csv_text(columns: Sequence[str], rows: Sequence[Mapping]) -> str:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator=_CRLF)
    w.writeheader()
    for row in rows:
        w.writerow({c: _cell_out(row.get(c, "")) for c in columns})
    return buf.getvalue()


def _fingerprint(out: Path) -> list[tuple[str, int]]:
    files = _shard_files(out, "manifest") + _shard_files(out, "skipped")
    fp = []
    for f in files:
        try:
            fp.append((f.name, f.stat().st_size))
        except OSError:
            pass
    return fp


def rebuild_manifests(out_dir: str | os.PathLike, inputs: Sequence[str] | None = None) -> tuple[int, int]:
    """Rebuild ``manifest.csv`` and ``skipped.csv`` from the shard files (and the previous
    ``manifest.csv``/``skipped.csv``), atomically.

    manifest.csv: one row per output file that exists (the last complete row seen for it),
    sorted by output path. skipped.csv: one row per skipped input (last reason seen), sorted,
    leaving out inputs that now have outputs and, when ``inputs`` is given, paths that are no
    longer inputs. If a shard file grows while this runs (another shard appending), it is
    rebuilt again, so the shard that finishes last leaves complete files.

    Returns:
        (rows in manifest.csv, rows in skipped.csv).
    """
    out = Path(out_dir)
    keep = {_shown(p) for p in inputs} if inputs is not None else None
    for _ in range(20):
        before = _fingerprint(out)
        rows = {}
        for output, found in read_manifest(out).items():
            if (out / output).is_file():
                rows[output] = found[-1]
        done_sources = {r["source"] for r in rows.values()}
        skipped = {}
        for path in [out / "skipped.csv", *_shard_files(out, "skipped")]:
            for row in _read_csv(path, SKIPPED_COLUMNS):
                if row["path"] not in done_sources and (keep is None or row["path"] in keep):
                    skipped[row["path"]] = row
        outputs.write_text_atomic(_csv_text(MANIFEST_COLUMNS, [rows[k] for k in sorted(rows)]), out / "manifest.csv")
        outputs.write_text_atomic(_csv_text(SKIPPED_COLUMNS, [skipped[k] for k in sorted(skipped)]),
                                 out / "skipped.csv")
        if _fingerprint(out) == before:
            break
    return len(rows), len(skipped)


class _AppendLog:
    """One shard's CSV log, opened for appending: a header when new, one flushed and fsynced
    row per call. Only the holder of the shard's :class:`ShardLock` opens it."""

    def __init__(self, path: Path, columns: Sequence[str]):
        self.columns = list(columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "a", encoding="utf-8", newline="")
        if self.fh.tell() == 0:
            self.fh.write(_csv_text(columns, []))
        elif not path.read_bytes().endswith(b"\n"):
            self.fh.write("\n")  # an interrupted row stays alone on its (dropped) line
        self._sync()
        self.writer = csv.DictWriter(self.fh, fieldnames=self.columns, lineterminator=_CRLF)

    def _sync(self):
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def append(self, row: Mapping) -> None:
        self.writer.writerow({c: _cell_out(row.get(c, "")) for c in self.columns})
        self._sync()

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()


class ShardLock:
    """An exclusive lock of one shard of an output folder (``.lock.shard-I-of-N`` in it), held
    while a run writes there, so a second run of the same shard (two plain runs into one folder,
    or a shard restarted while its old process still runs) is refused instead of overwriting the
    first one's images and logs. The operating system releases it when the process ends, also
    when it is killed, so there is never a stale lock to remove by hand.

    Raises (on :meth:`acquire`):
        AugmentError: another process holds it (one line).
    """

    def __init__(self, out_dir: Path, shard: "Shard"):
        self.path = out_dir / f".lock.{shard.tag}"
        self.shard = shard
        self._fh = None

    def acquire(self) -> "ShardLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+b")
        try:
            _lock_file(fh)
        except OSError:
            fh.close()
            which = "" if self.shard.count == 1 else f" (shard {self.shard})"
            raise AugmentError(f"another augment run is writing into {self.path.parent}{which}; wait for it to "
                               "finish or stop it, or use another output folder") from None
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the lock
            self._fh = None


def _lock_file(fh) -> None:
    """Take a non-blocking exclusive lock on an open file (OSError when it is held)."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


# ----------------------------------------------------------------------------- the run

@dataclass
class _Item:
    job: Job
    x: torch.Tensor
    traditional: str


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


class Augmentation:
    """One augmentation run (one shard), as an iterable of :class:`ProgressEvent`.

    Usage::

        run = Augmentation(model, "data/train", load_styles("styles"), "data/train_styled", settings)
        for event in run:   # the page draws these; the CLI wraps them in tqdm
            ...
        run.summary()

    Events: ``step`` is the number of this run's jobs finished (written, or given up because
    their input was bad), ``total`` the number of jobs this run has to do (outputs already
    done are not counted), ``stage`` reads e.g. ``"6/20 images · 14.2 images/min · ETA 1 min
    00 s · batch of 4 (128x96 px), step 20/50"``, ``preview`` is the first image of each
    finished batch, ``message`` says which input was skipped and why. Interrupting the loop
    (Ctrl-C, a page's Stop) loses only the batch in progress: finished images and their manifest
    rows are on disk, ``manifest.csv`` is rebuilt, and the same run again resumes.

    Args:
        model: the feature network (shared, never modified).
        input_dir: the dataset (ImageFolder layout).
        styles: the style images (:func:`load_styles`, or samples/uploads wrapped in
            :class:`StyleImage`); their order is part of the plan, keep it stable.
        out_dir: where outputs go (created); must not be inside ``input_dir``.
        settings: :class:`AugmentSettings`.
        shard: the part of the inputs this run does.

    Raises:
        AugmentError: missing input folder, output inside the input, no style images, or an
            output folder holding outputs of other settings.
        ValueError: bad settings (e.g. blend > number of styles), unknown layers.
    """

    def __init__(self, model: FeatureNet, input_dir: str | os.PathLike, styles: Sequence[StyleImage],
                 out_dir: str | os.PathLike, settings: AugmentSettings, shard: Shard = Shard()):
        settings.validate()
        self.model, self.settings, self.shard = model, settings, shard
        self.input_dir, self.out_dir = Path(input_dir), Path(out_dir)
        self.styles = list(styles)
        if not self.styles:
            raise AugmentError("no style images")
        model.check_layers([settings.content_layer, *settings.style_layers])
        self.inputs = check_folders(self.input_dir, self.out_dir)
        self.mine = [p for k, p in enumerate(self.inputs) if shard.takes(k)]
        self.jobs = plan_jobs(self.inputs, len(self.styles), settings, shard)
        self.hashes = {j.output: _job_hash(j, self.styles, settings, model.weights.kind) for j in self.jobs}
        listed = read_manifest(self.out_dir)
        done, clash = set(), []
        for j in self.jobs:
            rows = listed.get(j.output)
            if not rows or not (self.out_dir / j.output).is_file():
                continue
            if any(r["job"] == self.hashes[j.output] for r in rows):
                done.add(j.output)
            else:
                clash.append(j.output)
        if clash:
            raise AugmentError(f"{out_dir} already holds {len(clash)} output(s) made with other settings, styles or "
                               f"seed (e.g. {clash[0]}); use another output folder or delete them")
        self.already_done = len(done)
        self.pending = [j for j in self.jobs if j.output not in done]
        self.total = len(self.pending)
        self.done = 0
        self.written: list[dict] = []
        self.skipped: list[dict] = []
        self.seconds = 0.0
        self._grams: OrderedDict = OrderedDict()
        self._started = False

    # -------------------------------------------------------------- targets

    def _style_grams(self, index: int, size: int) -> dict[str, torch.Tensor]:
        key = (index, size)
        if key in self._grams:
            self._grams.move_to_end(key)
            return self._grams[key]
        s = self.settings
        x = images.to_tensor(images.resize_long_side(self.styles[index].image, size))
        grams = style_targets(self.model, x, s.style_layers, pooling=s.pooling, precision="fp32")
        self._grams[key] = grams
        while len(self._grams) > _STYLE_CACHE:
            self._grams.popitem(last=False)
        return grams

    def targets(self, job: Job) -> dict[str, torch.Tensor]:
        """The (N, N) Gram targets of a job's style set: each style image's position-normalized
        Gram matrices (computed once per working size, cached), averaged with the job's weights
        normalized to sum to 1, in the same order and arithmetic as
        :func:`explorer.style.style_targets` of the blend."""
        total = float(sum(job.weights))
        out: dict[str, torch.Tensor] = {}
        for i, w in zip(job.styles, job.weights):
            for name, g in self._style_grams(i, job.size).items():
                g = g * (w / total)
                out[name] = out[name] + g if name in out else g
        return out

    # -------------------------------------------------------------- the loop

    def _event(self, start: float, extra: str = "", preview=None, message=None, done=False,
               partial: float = 0.0) -> ProgressEvent:
        elapsed = time.perf_counter() - start
        made = len(self.written) + partial
        rate = made / elapsed * 60 if elapsed > 0 and made > 0 else 0.0
        remaining = self.total - self.done - partial
        eta = f"ETA {_duration(remaining / rate * 60)}" if rate > 0 else "ETA unknown"
        stage = f"{self.done}/{self.total} images · {rate:.1f} images/min · {eta}" + (f" · {extra}" if extra else "")
        return ProgressEvent(self.done, self.total, elapsed, {}, preview=preview, message=message, done=done,
                             stage=stage)

    def __iter__(self) -> Iterator[ProgressEvent]:
        if self._started:
            raise RuntimeError("an Augmentation runs once; make a new one to resume")
        self._started = True
        s = self.settings
        start = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        lock = ShardLock(self.out_dir, self.shard).acquire()
        try:
            self._manifest = _AppendLog(self.out_dir / f"manifest.{self.shard.tag}.csv", MANIFEST_COLUMNS)
            self._skips = _AppendLog(self.out_dir / f"skipped.{self.shard.tag}.csv", SKIPPED_COLUMNS)
        except BaseException:
            lock.release()
            raise
        try:
            yield self._event(start, "starting")
            for path in self.mine:
                if not _is_utf8(path):
                    yield self._event(start, message=self._skip(
                        path, f"input '{_shown(path)}': the file name is not valid UTF-8, so the manifest "
                              "cannot name it; rename the file", 0))
                elif not _is_image_name(path):
                    ext = PurePosixPath(path).suffix or "none"
                    yield self._event(start, message=self._skip(
                        path, f"input '{path}': not an image file name (extension {ext}; the image "
                              f"extensions are {' '.join(IMAGE_EXTENSIONS)})", 0))
            buffers: dict[tuple, list[_Item]] = {}
            by_source: dict[str, list[Job]] = {}
            for j in self.pending:
                by_source.setdefault(j.source, []).append(j)
            for src, jobs in by_source.items():
                try:
                    loaded = images.load_image(self.input_dir / src, name=src, role="input image")
                except images.ImageError as exc:
                    yield self._event(start, message=self._skip(src, str(exc), len(jobs)))
                    continue
                small = []
                for job in jobs:
                    x = images.to_tensor(images.resize_long_side(loaded.image, job.size))
                    if min(x.shape[-2:]) < self.model.spec.min_size:
                        small.append(job)
                        continue
                    how = ""
                    if s.traditional and s.traditional_at == "before":
                        x, how = apply_traditional(x, job)
                    buffers.setdefault((*x.shape[-2:], job.steps), []).append(_Item(job, x, how))
                if small:
                    j = small[0]
                    w, h = images.resize_long_side(loaded.image, j.size).size
                    yield self._event(start, message=self._skip(
                        src, f"input image '{src}': at the working size {j.size} px it is {w} x {h} px; "
                             f"{self.model.name} needs at least {self.model.spec.min_size} px a side", len(small)))
                for key in [k for k, items in buffers.items() if len(items) >= s.batch_size]:
                    while len(buffers.get(key, ())) >= s.batch_size:
                        batch, buffers[key] = buffers[key][:s.batch_size], buffers[key][s.batch_size:]
                        yield from self._run_batch(batch, start)
                # bound memory with many working shapes: run the fullest group early
                while sum(len(v) for v in buffers.values()) > 4 * s.batch_size:
                    key = max(buffers, key=lambda k: len(buffers[k]))
                    yield from self._run_batch(buffers.pop(key), start)
            for key in list(buffers):
                items = buffers.pop(key)
                for i in range(0, len(items), s.batch_size):
                    yield from self._run_batch(items[i:i + s.batch_size], start)
            self.seconds = time.perf_counter() - start
            yield self._event(start, "finished", done=True)
        finally:
            self.seconds = time.perf_counter() - start
            self._manifest.close()
            self._skips.close()
            try:
                self.finish()
            finally:
                lock.release()

    def _skip(self, path: str, reason: str, jobs: int) -> str:
        reason = " ".join(reason.split())
        row = {"path": _shown(path), "reason": reason}
        self.skipped.append(row)
        self._skips.append(row)
        self.done += jobs
        return f"skipped {reason}"

    def _run_batch(self, items: list[_Item], start: float) -> Iterator[ProgressEvent]:
        s = self.settings
        jobs = [it.job for it in items]
        b, (h, w), steps = len(items), items[0].x.shape[-2:], jobs[0].steps
        st = s.style_settings(steps, jobs[0].size)
        per_job = [self.targets(j) for j in jobs]
        targets = {layer: torch.stack([t[layer] for t in per_job]) for layer in per_job[0]}
        alphas = torch.ones(b)
        betas = torch.tensor([j.ratio for j in jobs], dtype=torch.float32)
        run = StyleTransfer(self.model, torch.cat([it.x for it in items]), None, st, targets=targets,
                            seeds=[j.seed for j in jobs], loss_weights=(alphas, betas))
        what = f"batch of {b} ({w}x{h} px)"
        for ev in run:
            if not ev.done:
                yield self._event(start, f"{what}, step {ev.step}/{steps}", partial=b * ev.step / steps)
        results = run.results()
        share = run.seconds / b
        first = None
        for it, res in zip(items, results):
            job, img, how = it.job, res.image, it.traditional
            if s.traditional and s.traditional_at == "after":
                img, how = apply_traditional(img, job)
            self._write(job, img, how, res.final_losses, share, b, run.stopped or "")
            first = img if first is None else first
        yield self._event(start, f"{what} written", preview=first,
                          message=f"{', '.join(j.output for j in jobs)}: {run.stopped}" if run.stopped else None)

    def _write(self, job: Job, img: torch.Tensor, how: str, losses: dict, seconds: float, batch: int,
               stopped: str) -> None:
        s = self.settings
        total_w = float(sum(job.weights))
        names = ";".join(self.styles[i].name for i in job.styles)
        weights = ";".join(f"{w / total_w:.4f}" for w in job.weights)
        row = {
            "output": job.output, "source": job.source, "class": job.label, "variant": job.variant,
            "styles": names, "style_weights": weights, "ratio": f"{job.ratio:.4g}", "steps": job.steps,
            "size": job.size, "width": img.shape[-1], "height": img.shape[-2], "seed": s.seed,
            "job_seed": job.seed, "traditional": how, "traditional_at": s.traditional_at if s.traditional else "",
            **{f"{k}_loss": f"{losses.get(k, float('nan')):.6g}" for k in ("content", "style", "tv", "total")},
            "seconds": f"{seconds:.3f}", "batch": batch, "stopped": stopped, "weights": self.model.weights.label,
            "job": self.hashes[job.output],
        }
        info = {"weights": self.model.weights.label,
                "augment": json.dumps({k: row[k] for k in ("source", "class", "variant", "styles", "style_weights",
                                                            "ratio", "steps", "size", "seed", "job_seed",
                                                            "traditional", "traditional_at", "job")})}
        outputs.save_png_atomic(images.to_pil(img), self.out_dir / job.output, pnginfo=info)
        self._manifest.append(row)  # after the image is in place: listed => complete
        self.written.append(row)
        self.done += 1

    def finish(self) -> tuple[int, int]:
        """Rebuild ``manifest.csv`` and ``skipped.csv`` (done automatically when the loop ends or
        is interrupted; calling it again is harmless). Returns their row counts."""
        return rebuild_manifests(self.out_dir, self.inputs) if self.out_dir.is_dir() else (0, 0)

    def summary(self) -> dict:
        """JSON-ready summary: settings, shard, counts, seconds, images per minute, skipped inputs."""
        return {
            "settings": self.settings.to_dict(),
            "shard": str(self.shard),
            "weights_label": self.model.weights.label,
            "device": str(self.model.device),
            "inputs": len(self.mine),
            "outputs_planned": len(self.jobs),
            "already_done": self.already_done,
            "written": len(self.written),
            "skipped": list(self.skipped),
            "seconds": round(self.seconds, 3),
            "images_per_minute": round(len(self.written) / self.seconds * 60, 2) if self.seconds > 0 else 0.0,
            "styles": [{"name": st.name, "digest": st.digest} for st in self.styles],
        }


# ----------------------------------------------------------------------------- zip in, zip out (the page)

#: Most bytes a dataset zip may unpack to, and most files it may hold (the page's limits).
MAX_ZIP_BYTES = 256 * 2**20
MAX_ZIP_FILES = 10_000


def extract_dataset_zip(data: bytes, dest: str | os.PathLike, *, max_bytes: int = MAX_ZIP_BYTES,
                        max_files: int = MAX_ZIP_FILES) -> int:
    """Unpack an uploaded dataset zip (ImageFolder layout) into ``dest``, safely.

    Member names are never trusted: a name that is absolute (``/x``, ``C:x``) or climbs out with
    ``..`` rejects the whole zip; folders, symbolic links, hidden files and ``__MACOSX/`` are
    skipped; backslashes count as separators. The declared sizes are checked against
    ``max_bytes`` before anything is written and the bytes actually read are counted while
    writing (a zip cannot unpack to more than it declares, Python's reader stops there, but the
    count guards that too). If every file lies at least two folders deep under one top folder
    (``dataset/CLASS/x.png``), that top folder is dropped, so zipping the dataset folder itself
    and zipping its class folders give the same layout.

    Returns:
        the number of files written.

    Raises:
        AugmentError: not a zip, a damaged or encrypted member, an unsafe name, no files, or
            over the limits (one line).
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise AugmentError("the upload is not a zip file") from None
    members = []
    with zf:
        for info in zf.infolist():
            name = info.filename.replace("\\", "/")
            if info.is_dir() or name.endswith("/") or stat.S_ISLNK(info.external_attr >> 16):
                continue
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
                raise AugmentError(f"the zip holds an absolute path ({name!r}); refusing it")
            parts = [q for q in name.split("/") if q not in ("", ".")]
            if ".." in parts:
                raise AugmentError(f"the zip holds a path that leaves its folder ({name!r}); refusing it")
            if not parts or parts[0] == "__MACOSX" or any(q.startswith(".") for q in parts):
                continue
            members.append((info, parts))
        if not members:
            raise AugmentError("the zip holds no files")
        if len(members) > max_files:
            raise AugmentError(f"the zip holds {len(members)} files; the limit here is {max_files}")
        declared = sum(info.file_size for info, _ in members)
        if declared > max_bytes:
            raise AugmentError(f"the zip unpacks to {declared / 2**20:.0f} MB; the limit here is "
                               f"{max_bytes / 2**20:.0f} MB (use the command line for large datasets)")
        if len({parts[0] for _, parts in members}) == 1 and all(len(parts) >= 3 for _, parts in members):
            members = [(info, parts[1:]) for info, parts in members]
        root, written = Path(dest), 0
        for info, parts in members:
            target = root.joinpath(*parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as fh:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise AugmentError(f"the zip unpacks to more than {max_bytes / 2**20:.0f} MB")
                        fh.write(chunk)
            except AugmentError:
                raise
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, zlib.error) as exc:
                raise AugmentError(f"could not unpack {'/'.join(parts)!r} from the zip ({exc})") from None
    return len(members)


def zip_folder(folder: str | os.PathLike) -> bytes:
    """An output folder as zip bytes: the images (stored; PNG is compressed already),
    ``manifest.csv`` and ``skipped.csv`` (deflated); the per-shard logs and hidden files are
    left out. Entries are sorted and dated 1980-01-01, so equal folders give equal bytes."""
    root = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel in _walk_files(root):
            if re.fullmatch(r"(manifest|skipped)\.shard-\d+-of-\d+\.csv", rel):
                continue
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if rel.lower().endswith(".png") else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, (root / rel).read_bytes())
    return buf.getvalue()
