"""What each output of a dataset augmentation gets: the shard of the inputs a run does
(:class:`Shard`, :func:`shard_from_env`, :func:`device_from_env`), which input names are images and
what output names they get (:func:`output_stems`), and one :class:`Job` per output with every
random choice drawn for it (:func:`plan_jobs`), including the traditional augmentation applied to
it (:func:`apply_traditional`). The run's settings are
:class:`explorer.batch.augment_settings.AugmentSettings`; the run itself is
:mod:`explorer.batch.augment`; folders, manifests and zips are :mod:`explorer.batch.augment_io`.

What each output gets (the planner, :func:`plan_jobs`)
------------------------------------------------------
Every (input, variant k) pair is one :class:`Job`. Its random choices are drawn from Python
``random.Random`` generators seeded with SHA-256 of ``(seed, relative source path, k, what)``,
one generator per ``what`` (style choice, blend weights, style weight, steps, size, each
traditional op), and only ``Random.random()`` is used (the one method whose sequence Python
guarantees). So a job does not depend on which other files exist, on the order of processing, on
the shard, or on resuming, and switching one option on (e.g. jitter) does not change the others'
draws:

* styles: ``blend`` distinct style images chosen uniformly (``blend = 1``: one style per output);
* blend weights: each uniform in ``weight_range``, rounded to 3 decimals; the Gram targets are
  the weighted mean with the weights normalized to sum to 1 (as :func:`explorer.style.gatys.style_targets`);
* style weight beta (alpha = 1): log-uniform in ``beta_range`` (4 significant digits); the
  losses are relative (Gatys et al. 2016, eq. (7): L_total = alpha L_content + beta L_style;
  see :mod:`explorer.style.transfer`);
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

Sharding
--------
Inputs (all files, sorted by relative path, so every machine sees the same order) are split by
index: shard ``i`` of ``n`` takes the inputs whose index mod n == i; the shards partition the
inputs exactly. Under ``torchrun`` (or anything that sets ``RANK`` and ``WORLD_SIZE``) the shard
is taken from those variables and a CUDA device from ``LOCAL_RANK`` (:func:`shard_from_env`,
:func:`device_from_env`); no process group is needed, the shards never talk to each other.

This module imports nothing of the explorer but :mod:`explorer.batch.augment_settings`.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Mapping, Sequence

import torch

from .augment_settings import AugmentSettings

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_STEM_BYTES",
    "Shard",
    "shard_from_env",
    "device_from_env",
    "is_image_name",
    "is_utf8_name",
    "shown_name",
    "is_usable_input",
    "output_stems",
    "Job",
    "plan_jobs",
    "apply_traditional",
]

#: Extensions read as images (torchvision's ImageFolder list), compared case-insensitively.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

_SIZE_GRID = 32
_STEPS_GRID = 10
_CROP_SCALE = (0.6, 1.0)
_CROP_RATIO = (3 / 4, 4 / 3)
_JITTER = (0.3, 0.3, 0.3, 0.05)  # brightness, contrast, saturation, hue (as ColorJitter's arguments)


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




def is_image_name(path: str) -> bool:
    """True when ``path`` ends in one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return PurePosixPath(path).suffix.lower() in IMAGE_EXTENSIONS


def is_utf8_name(path: str) -> bool:
    """False for a name that is not valid UTF-8 on disk (Python holds its bytes as surrogates):
    it cannot go into the UTF-8 manifest, so such an input is skipped, not stylized."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def shown_name(path: str) -> str:
    """A path as UTF-8 text for the CSV files: invalid bytes written as ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_usable_input(path: str) -> bool:
    """True for an input that gets jobs: an image file name (:func:`is_image_name`) that is
    valid UTF-8 (:func:`is_utf8_name`)."""
    return is_image_name(path) and is_utf8_name(path)



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
        beta: the style weight beta (alpha = 1); steps, size: the optimization's steps and working size.
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
    beta: float
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
        inputs: every input of the dataset (:func:`explorer.batch.augment_io.list_inputs`): the full
            list, so output names and shard membership do not depend on the shard.
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
    log_lo, log_hi = math.log(s.beta_range[0]), math.log(s.beta_range[1])
    jobs = []
    for k, src in enumerate(inputs):
        if not shard.takes(k) or not is_usable_input(src):
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
            # the generator keeps its old name "ratio", so beta's draws (and outputs) are unchanged
            beta = min(max(_round_sig(math.exp(_uniform(r("ratio"), log_lo, log_hi))), s.beta_range[0]),
                       s.beta_range[1])
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
                            styles=chosen, weights=weights, beta=beta, steps=_pick(r("steps"), steps_grid),
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

