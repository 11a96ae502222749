"""Dataset augmentation with Gatys style transfer: N stylized variants of every image of an
ImageFolder dataset, with a manifest, resumable, shardable over machines and GPUs. This module
holds the run itself (:class:`Augmentation`); the rest lives one floor down:

* :mod:`explorer.batch.augment_settings`: the settings (:class:`~explorer.batch.augment_settings.AugmentSettings`);
* :mod:`explorer.batch.augment_plan`: shards and devices, output names, and what each output gets (every random choice of a
  :class:`~explorer.batch.augment_plan.Job`, seeded per source and variant, and the traditional
  augmentation ops);
* :mod:`explorer.batch.augment_io`: the input and style folders, the manifests (columns, append logs,
  rebuilding ``manifest.csv``, resuming), the per-shard lock and the page's zip in and zip out.

Layout
------
The input is a folder in torchvision's ImageFolder layout (``ROOT/CLASS/.../NAME.EXT``); the
output folder gets the same relative layout with ``NAME__v0.png``, ``NAME__v1.png``, ... per
input (the source's extension is added, ``NAME_jpg__v0.png``, only when two inputs of one folder
share a stem). Inputs that are not images, do not decode or are too small are listed in
``skipped.csv`` with the reason and the run goes on (:mod:`explorer.batch.augment_io`).

Optimization
------------
Several content images go through VGG in one batch (``batch_size``), always with Adam: every
loss is per image and Adam is element-wise, so each image follows the run it would get alone
(:class:`explorer.style.transfer.StyleTransfer`; see tests/test_style.py). The batched convolutions
round differently from single ones, so outputs agree with single runs to float rounding (a few
pixels off by 1 of 255), and they are bit-identical between two runs with the same inputs,
settings, batch size, device and thread count (a resumed or sharded run may batch the remaining
images differently; torchrun sets OMP_NUM_THREADS=1). Each batch has per-image targets
(the (N, N) Gram targets of every image's style set stacked to (B, N, N)), per-image loss
weights (alpha = 1 and the job's style weight beta, eq. (7) of Gatys et al. 2016) and per-image
seeds. Each style image's Gram matrices are computed once per working size and cached; a blend
is their weighted mean.

Resuming
--------
Re-running skips every output that exists *and* is listed in a manifest with the same job hash
(the ``job`` column: a digest of everything that determines the output, i.e. the
job's draws, the style images' pixels and the optimization settings, not the batch size, device
or precision); an output listed with a different hash is an error
(:class:`~explorer.batch.augment_io.AugmentError`) rather than a silent mix. Before that, the folder's
recorded settings (``.augment-settings.json``, :mod:`explorer.batch.augment_folder`; the weights
file's digest included, which the hash leaves out) are compared with the run's, and a
difference is refused in one line that names the setting. One folder is written by one shard
plan at a time (:class:`~explorer.batch.augment_io.ShardLock`).

No Streamlit here: the CLI (``python -m explorer augment``) and the page share this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

import torch

from ..io import images
from ..io import outputs
from ..style.color import histogram_start
from .augment_folder import check_folder, claim_folder, folder_settings
from .augment_io import MANIFEST_COLUMNS, SKIPPED_COLUMNS, AppendLog, AugmentError, ShardLock, StyleImage, check_folders, read_manifest, rebuild_manifests
from .augment_plan import IMAGE_EXTENSIONS, Job, Shard, apply_traditional, is_image_name, is_utf8_name, plan_jobs, shown_name
from .augment_settings import AugmentSettings
from ..core.devices import precision_name, resolve_device, resolve_precision
from ..nets.memory import check_fits
from ..nets.models import FeatureNet
from ..core.progress import ProgressEvent
from ..core.recipes import run_info
from ..core.runs import Run
from ..style.gatys import gatys_objective, style_targets
from ..style.transfer import StyleTransfer

__all__ = ["Augmentation", "check_augment_memory"]

_STYLE_CACHE = 64  # (style image, working size) Gram sets kept


def _job_hash(job: Job, styles: Sequence[StyleImage], settings: AugmentSettings, weights_kind: str) -> str:
    """What determines an output (not the batch size, device or precision), as 12 hex digits."""
    s = settings
    fields = {k: v for k, v in asdict(job).items() if k not in ("styles",)}
    # hashed under the field's old name "ratio", so outputs made before the rename to beta stay
    # resumable (their manifests hold the same hash)
    fields["ratio"] = fields.pop("beta")
    what = {
        "job": fields,
        "styles": [styles[i].digest for i in job.styles],
        "settings": {"lr": s.lr, "init": s.init, "tv_weight": s.tv_weight, "content_layer": s.content_layer,
                     "style_layers": list(s.style_layers), "model": s.model, "pooling": s.pooling,
                     "traditional_at": s.traditional_at if s.traditional else ""},
        "weights": weights_kind,
    }
    if s.parameterization == "fourier":  # Adam runs on pixels otherwise: older folders keep their hashes
        what["settings"]["parameterization"] = "fourier"
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=list).encode()).hexdigest()[:12]


def check_augment_memory(settings: AugmentSettings, device: str | torch.device = "cpu",
                         jobs: int | None = None) -> int:
    """:func:`explorer.nets.memory.check_fits` for an augmentation about to start, before any image
    is decoded or any network runs: at the largest working size the settings can draw (HI of
    ``size``), square (aspect ratios are unknown before decoding, and square at the long side is
    the largest), in batches of ``batch_size`` (fewer when the run has fewer ``jobs``), with
    Adam, the settings' layers and pooling, and the precision the device would run in.

    Args:
        settings: the run's settings (validated).
        device: where it computes (``"auto"``, ``"cpu"``, ``"cuda:1"`` or a ``torch.device``).
        jobs: the outputs it has to make, when known.

    Returns:
        the estimated bytes (0 when there is nothing to make).

    Raises:
        MemoryEstimateError: one line, e.g. "a 1024 px style transfer (16 images at a time)
            needs about 39 GB of memory; this machine has 12 GB free; try 512 px or less".
        ValueError: an unknown or unavailable device, model, layer or precision.
    """
    s = settings
    batch = s.batch_size if jobs is None else min(s.batch_size, int(jobs))
    if batch < 1:
        return 0
    dev = resolve_device(device)
    side = s.size[1]
    return check_fits(s.model, side, side, kind="style", device=dev, batch=batch,
                      dtype=resolve_precision(s.precision, dev), layers=[s.content_layer, *s.style_layers],
                      pooling=s.pooling, optimizer="adam", steps=s.steps[1])


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




class Augmentation(Run):
    """One augmentation run (one shard), as an iterable of
    :class:`~explorer.core.progress.ProgressEvent` (a :class:`~explorer.core.runs.Run`).

    Usage::

        run = Augmentation(model, "data/train", load_styles("styles"), "data/train_styled", settings)
        for event in run:   # the page draws these; the CLI wraps them in tqdm
            ...
        run.summary()   # = run.report(); run.result() is the manifest rows written

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
        styles: the style images (:func:`explorer.batch.augment_io.load_styles`, or samples/uploads
            wrapped in :class:`~explorer.batch.augment_io.StyleImage`); their order is part of the
            plan, keep it stable.
        out_dir: where outputs go (created); must not be inside ``input_dir``.
        settings: :class:`~explorer.batch.augment_settings.AugmentSettings`.
        shard: the part of the inputs this run does.

    Raises:
        AugmentError: missing input folder, output inside the input, no style images, or an
            output folder made with other settings (:func:`explorer.batch.augment_folder.check_folder`:
            the message names the setting) or holding outputs of them.
        MemoryEstimateError: the largest batch would not fit in memory
            (:func:`check_augment_memory`), before any image is decoded.
        ValueError: bad settings (e.g. blend > number of styles), unknown layers.
    """

    def __init__(self, model: FeatureNet, input_dir: str | os.PathLike, styles: Sequence[StyleImage],
                 out_dir: str | os.PathLike, settings: AugmentSettings, shard: Shard = Shard()):
        super().__init__()
        settings.validate()
        self.model, self.settings, self.shard = model, settings, shard
        self.input_dir, self.out_dir = Path(input_dir), Path(out_dir)
        self.styles = list(styles)
        if not self.styles:
            raise AugmentError("no style images")
        model.check_layers([settings.content_layer, *settings.style_layers])
        self.inputs = check_folders(self.input_dir, self.out_dir)
        self.folder_settings = folder_settings(settings, self.styles, model.weights)
        check_folder(self.out_dir, self.folder_settings)  # names the setting; the hashes below cannot
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
        check_augment_memory(settings, model.device, jobs=self.total)
        self.done = 0
        self.written: list[dict] = []
        self.skipped: list[dict] = []
        self.seconds = 0.0
        self._style_cache: OrderedDict = OrderedDict()
        self._started = False

    # -------------------------------------------------------------- targets

    def _style_at(self, index: int, size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A style image at a working size, (1, 3, H, W) in [0, 1], and its Gram targets (cached)."""
        key = (index, size)
        if key in self._style_cache:
            self._style_cache.move_to_end(key)
            return self._style_cache[key]
        s = self.settings
        x = images.to_tensor(images.resize_long_side(self.styles[index].image, size))
        grams = style_targets(self.model, x, s.style_layers, pooling=s.pooling, precision="fp32")
        self._style_cache[key] = (x, grams)
        while len(self._style_cache) > _STYLE_CACHE:
            self._style_cache.popitem(last=False)
        return x, grams

    def targets(self, job: Job) -> dict[str, torch.Tensor]:
        """The (N, N) Gram targets of a job's style set: each style image's position-normalized
        Gram matrices (computed once per working size, cached), averaged with the job's weights
        normalized to sum to 1, in the same order and arithmetic as
        :func:`explorer.style.gatys.style_targets` of the blend."""
        total = float(sum(job.weights))
        out: dict[str, torch.Tensor] = {}
        for i, w in zip(job.styles, job.weights):
            for name, g in self._style_at(i, job.size)[1].items():
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
        # the settings are checked again and recorded holding the folder's lock: two runs starting
        # at once cannot both find the folder new
        lock = ShardLock(self.out_dir, self.shard).acquire(
            while_held=lambda: claim_folder(self.out_dir, self.folder_settings))
        try:
            self._manifest = AppendLog(self.out_dir / f"manifest.{self.shard.tag}.csv", MANIFEST_COLUMNS)
            self._skips = AppendLog(self.out_dir / f"skipped.{self.shard.tag}.csv", SKIPPED_COLUMNS)
        except BaseException:
            lock.release()
            raise
        try:
            yield self._event(start, "starting")
            for path in self.mine:
                if not is_utf8_name(path):
                    yield self._event(start, message=self._skip(
                        path, f"input '{shown_name(path)}': the file name is not valid UTF-8, so the manifest "
                              "cannot name it; rename the file", 0))
                elif not is_image_name(path):
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
        row = {"path": shown_name(path), "reason": reason}
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
        betas = torch.tensor([j.beta for j in jobs], dtype=torch.float32)
        content = torch.cat([it.x for it in items])
        objective = gatys_objective(self.model, content, st, targets, alpha=alphas, beta=betas)
        start_image = None
        if s.init == "histogram":  # each image in the colours of its own style set
            start_image = torch.cat([histogram_start(it.x, [(self._style_at(i, it.job.size)[0], w)
                                                            for i, w in zip(it.job.styles, it.job.weights)])
                                     for it in items])
        run = StyleTransfer(self.model, content, None, st, objective=objective, seeds=[j.seed for j in jobs],
                            init_image=start_image)
        what = f"batch of {b} ({w}x{h} px)"
        for ev in run:
            if not ev.done:
                yield self._event(start, f"{what}, step {ev.step}/{steps}", partial=b * ev.step / steps)
        results = run.results([{"content_weight": float(a), "style_weight": float(w)} for a, w in zip(alphas, betas)])
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
            "styles": names, "style_weights": weights, "beta": f"{job.beta:.4g}", "steps": job.steps,
            "size": job.size, "width": img.shape[-1], "height": img.shape[-2], "seed": s.seed,
            "job_seed": job.seed, "traditional": how, "traditional_at": s.traditional_at if s.traditional else "",
            **{f"{k}_loss": f"{losses.get(k, float('nan')):.6g}" for k in ("content", "style", "tv", "total")},
            "seconds": f"{seconds:.3f}", "batch": batch, "stopped": stopped, "weights": self.model.weights.label,
            "job": self.hashes[job.output],
        }
        info = {"weights": self.model.weights.label,
                "augment": json.dumps({k: row[k] for k in ("source", "class", "variant", "styles", "style_weights",
                                                            "beta", "steps", "size", "seed", "job_seed",
                                                            "traditional", "traditional_at", "job")})}
        outputs.save_png_atomic(images.to_pil(img), self.out_dir / job.output, pnginfo=info)
        self._manifest.append(row)  # after the image is in place: listed => complete
        self.written.append(row)
        self.done += 1

    def finish(self) -> tuple[int, int]:
        """Rebuild ``manifest.csv`` and ``skipped.csv`` (done automatically when the loop ends or
        is interrupted; calling it again is harmless). Returns their row counts."""
        return rebuild_manifests(self.out_dir, self.inputs) if self.out_dir.is_dir() else (0, 0)

    def result(self) -> list[dict]:
        """The manifest rows of the images this run wrote so far (columns
        :data:`~explorer.batch.augment_io.MANIFEST_COLUMNS`), in the order they were written; outputs
        already done before it started are not among them."""
        return list(self.written)

    def report(self) -> dict:
        """JSON-ready report of the run: :meth:`summary`."""
        return self.summary()

    def summary(self) -> dict:
        """JSON-ready summary: the run-info block (:func:`explorer.core.recipes.run_info`), then
        the shard, counts (``input_files``: this shard's input files), seconds, images per minute,
        skipped inputs and the style images."""
        return {
            **run_info("augment", self.settings.to_dict(), self.model.weights, self.model.device,
                       precision_name(resolve_precision(self.settings.precision, self.model.device))),
            "shard": str(self.shard),
            "weights_label": self.model.weights.label,
            "device": str(self.model.device),
            "input_files": len(self.mine),
            "outputs_planned": len(self.jobs),
            "already_done": self.already_done,
            "written": len(self.written),
            "skipped": list(self.skipped),
            "seconds": round(self.seconds, 3),
            "images_per_minute": round(len(self.written) / self.seconds * 60, 2) if self.seconds > 0 else 0.0,
            "styles": [{"name": st.name, "digest": st.digest} for st in self.styles],
        }


