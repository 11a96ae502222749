"""What the Feature visualization page and ``python -m explorer featurevis`` share, on top of
:mod:`explorer.featurevis.render` and :mod:`explorer.featurevis.examples`:

* :class:`GridRun`: a feature visualization followed by the dataset examples of each of its
  channels (one pass over the images, then :meth:`DatasetExamplesResult.for_channel`), as one
  :class:`~explorer.core.runs.Run` whose events count the steps, then the images;
* :func:`examples_sheet`: each channel's picture next to its best dataset crops, as one image
  (Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017, "Dataset Examples");
* :class:`ComparisonRun`: the four runs of :func:`explorer.featurevis.render.comparison_settings`
  (pixels or Fourier + decorrelated, with or without transformation robustness) in turn, each
  with its :func:`~explorer.featurevis.render.high_frequency_share`;
* :class:`UploadedSource` and :func:`upload_sources`: uploaded images and zips as a dataset
  (kept in memory; a zip is unpacked with :func:`explorer.batch.archives.extract_dataset_zip`);
* :func:`estimate_seconds`: how long a run will take, scaled from one that ran;
  :func:`estimate_range`: the same, or a range from a stated reference before any run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from PIL import Image

from ..io import archives
from .examples import DatasetExamples, DatasetExamplesResult, ImageSource
from .render import FeatureVisResult, FeatureVisSettings, FeatureVisualization, comparison_settings, high_frequency_share
from ..io.grids import image_grid
from ..io.images import LoadedImage, load_image, to_tensor
from ..nets.models import FeatureNet
from ..core.progress import ProgressEvent
from ..core.runs import Run

__all__ = ["EXAMPLES_SIZE", "MAX_UPLOAD_IMAGES", "UploadedSource", "upload_sources", "GridResult", "GridRun",
           "examples_sheet", "ComparisonResult", "ComparisonRun", "estimate_seconds", "example_objectives",
           "REFERENCE_STEP_SECONDS", "work_units", "estimate_range",
           "parse_channels", "MAX_GRID_CHANNELS"]

#: The side in pixels each dataset image is prepared at before its crops are taken.
EXAMPLES_SIZE = 224
#: Most images an upload may hold (one pass over them is a forward pass each).
MAX_UPLOAD_IMAGES = 500
#: The objectives whose units have dataset examples (a direction or a class is not one channel).
example_objectives = ("channel", "neuron")
#: Most channels in one grid (one image each, optimized together as one batch).
MAX_GRID_CHANNELS = 64


def parse_channels(text: str, most: int = MAX_GRID_CHANNELS) -> tuple[int, ...]:
    """``"0-3,7"`` -> (0, 1, 2, 3, 7): indices and ranges (both ends included) separated by
    commas, in the order given.

    Raises:
        ValueError: empty, not whole numbers, a range that runs backwards, an index twice, or
            more than ``most`` channels (one line).
    """
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise ValueError(f"channels must be whole numbers or ranges such as 0-7, separated by commas; "
                             f"got {part[:20]!r}") from None
        if b < a:
            raise ValueError(f"the range {part} runs backwards; write {b}-{a}")
        if b - a >= most:
            raise ValueError(f"at most {most} channels at once; {part} names {b - a + 1}")
        out.extend(range(a, b + 1))
    if not out:
        raise ValueError("name at least one channel, e.g. 0,1,2,3 or 0-7")
    if len(out) > most:
        raise ValueError(f"at most {most} channels at once; got {len(out)}")
    if len(set(out)) != len(out):
        raise ValueError("a channel is named twice")
    return tuple(out)


# ----------------------------------------------------------------------------- uploads

@dataclass(frozen=True)
class UploadedSource(ImageSource):
    """An uploaded image held in memory: decoded on demand, identified by its content."""

    data: bytes = b""

    def load(self, max_side: int | None = None) -> LoadedImage:
        """Decode it (long side at most ``max_side`` px). Raises
        :class:`~explorer.io.images.ImageError` (one line) for a broken file."""
        return load_image(self.data, name=self.name, role="dataset image", max_side=max_side)

    def key(self) -> tuple:
        return ("upload", self.name, hashlib.sha1(self.data).hexdigest())


def _is_zip(name: str, data: bytes) -> bool:
    return name.lower().endswith(".zip") or data[:4] == b"PK\x03\x04"


def upload_sources(files: Sequence[tuple[str, bytes]]) -> tuple[list[UploadedSource], list[str]]:
    """Uploaded files (name, bytes) as a dataset: each image file as it is, each zip's files
    (unpacked safely; sub-folders kept in the names). Which files are images is found when they
    are decoded (:class:`~explorer.featurevis.examples.DatasetExamples` skips and reports the others).

    Returns:
        (sources, notes): a zip that cannot be unpacked is left out with a one-line note.

    Raises:
        ValueError: nothing left, or more than :data:`MAX_UPLOAD_IMAGES` files.
    """
    sources: list[UploadedSource] = []
    notes: list[str] = []
    for name, data in files:
        if not _is_zip(name, data):
            sources.append(UploadedSource(name, data=bytes(data)))
            continue
        with tempfile.TemporaryDirectory(prefix="explorer-featurevis-") as tmp:
            try:
                archives.extract_dataset_zip(data, tmp, max_files=MAX_UPLOAD_IMAGES)
            except ValueError as exc:
                notes.append(f"skipped {name}: {' '.join(str(exc).split())}")
                continue
            root = Path(tmp)
            for p in sorted(f for f in root.rglob("*") if f.is_file()):
                sources.append(UploadedSource(f"{name}/{p.relative_to(root).as_posix()}", data=p.read_bytes()))
        if len(sources) > MAX_UPLOAD_IMAGES:
            break
    if len(sources) > MAX_UPLOAD_IMAGES:
        raise ValueError(f"the upload holds more than {MAX_UPLOAD_IMAGES} files; use the command line "
                         "(--images-dir) for larger datasets")
    if not sources:
        raise ValueError("the upload holds no files" + (f" ({notes[0]})" if notes else ""))
    return sources, notes


# ----------------------------------------------------------------------------- the grid with its examples

@dataclass
class GridResult:
    """A feature visualization and the dataset examples of its channels.

    Attributes:
        vis: the :class:`~explorer.featurevis.render.FeatureVisResult`.
        examples: channel -> its :class:`~explorer.featurevis.examples.DatasetExamplesResult`
            (empty when none were asked for, or the pass did not finish).
    """

    vis: FeatureVisResult
    examples: dict[int, DatasetExamplesResult]
    k: int
    notes: list[str]
    stopped: str | None = None

    def grid(self) -> Image.Image:
        """The visualizations alone (what ``-o`` writes)."""
        return self.vis.grid()

    def sheet(self, cell: int = 128) -> Image.Image:
        """:func:`examples_sheet` of the images and their examples."""
        return examples_sheet(self.vis, self.examples, cell=cell)

    def report(self) -> dict:
        """The visualization's report with ``examples`` (per channel) and ``examples_k``."""
        rep = self.vis.report()
        rep["notes"] = list(self.notes)
        rep["examples_k"] = self.k
        rep["examples"] = {str(c): ex.report() for c, ex in self.examples.items()}
        rep["stopped"] = self.stopped
        rep["partial"] = self.stopped is not None
        return rep


class GridRun(Run):
    """:class:`~explorer.featurevis.render.FeatureVisualization` of ``settings``, then (with ``k`` > 0
    and a channel or neuron objective) the top-``k`` dataset examples of each of its channels.

    Events: the visualization's steps, then one per batch of images, numbered on after them
    (``total`` = steps + images), with the stage named; while the visualization runs, the stage
    counts its own steps and says what the extra ones are (``"visualization step 9 of 64, then 7
    dataset images"``), so a total above the Steps setting is explained.

    Raises:
        the errors of :class:`FeatureVisualization` and :class:`DatasetExamples` (bad layer,
        channel, folder), before any work.
    """

    def __init__(self, model: FeatureNet, settings: FeatureVisSettings, sources=None, k: int = 0):
        super().__init__()
        self.vis = FeatureVisualization(model, settings)
        self.settings, self.k = settings, int(k)
        self.examples: DatasetExamples | None = None
        if self.k and settings.objective in example_objectives:
            self.examples = DatasetExamples(model, settings.layer, settings.channels[0], sources, k=self.k,
                                            size=EXAMPLES_SIZE, precision=settings.precision)
        elif self.k:
            self.note("no_examples", f"dataset examples are shown for channel and neuron objectives; a "
                      f"{settings.objective} objective is not one channel")
        self.notes[:0] = self.vis.notes

    def stop(self, reason: str) -> None:
        super().stop(reason)
        self.vis.stop(reason)

    def __iter__(self) -> Iterator[ProgressEvent]:
        steps = self.settings.steps
        n = len(self.examples.sources) if self.examples is not None else 0
        total = steps + n
        for ev in self.vis:
            stage = f"visualization step {ev.step} of {steps}, then {n} dataset images" if n else "visualization"
            yield dataclasses.replace(ev, total=total, done=ev.done and not n, stage=stage)
        if self.vis.stopped:
            self.stop(self.vis.stopped)
            return
        if self.examples is None:
            return
        for ev in self.examples:
            yield dataclasses.replace(ev, step=steps + ev.step, total=total, elapsed=self.vis.seconds + ev.elapsed,
                                      stage=f"dataset examples: {ev.stage}" if ev.stage else "dataset examples")
        for note in self.examples.notes:
            if note not in self.notes:
                self.notes.append(note)
        if self.examples.stopped:
            self.note("no_examples", f"no dataset examples: {self.examples.stopped}")

    def result(self) -> GridResult:
        examples: dict[int, DatasetExamplesResult] = {}
        if self.examples is not None and self.examples.index is not None and self.examples.index.names:
            first = self.examples.result()
            examples = {c: first if c == first.channel else first.for_channel(c) for c in self.settings.channels}
        return GridResult(self.vis.result(), examples, self.k, list(self.notes), self.stopped or self.vis.stopped)


def _fit(img: Image.Image, cell: int) -> torch.Tensor:
    return to_tensor(img.convert("RGB").resize((cell, cell), Image.Resampling.LANCZOS))


def examples_sheet(vis: FeatureVisResult, examples: dict[int, DatasetExamplesResult], cell: int = 128) -> Image.Image:
    """One row per image of ``vis``: the picture, then the dataset crops of the channel it shows
    (largest activation first, each labelled with its value and image name), ``cell`` px each;
    rows with fewer crops are padded with white. Without examples: :meth:`FeatureVisResult.grid`.
    """
    if not examples:
        return vis.grid(cell=cell)
    s = vis.settings
    k = max(len(ex.examples) for ex in examples.values())
    tiles, labels = [], []
    white = torch.ones(1, 3, cell, cell)
    for i in range(vis.image.shape[0]):
        c = s.channels[i % len(s.channels)] if s.separate else s.channels[0]
        tiles.append(torch.nn.functional.interpolate(vis.image[i:i + 1], size=(cell, cell), mode="bilinear",
                                                     align_corners=False, antialias=True).clamp(0, 1))
        labels.append(vis.labels[i])
        found = examples.get(c).examples if c in examples else []
        for j in range(k):
            if j < len(found):
                tiles.append(_fit(found[j].crop, cell))
                labels.append(f"{found[j].value:.3g} {found[j].name}")
            else:
                tiles.append(white)
                labels.append("")
    return image_grid(torch.cat(tiles), labels, cols=k + 1, cell=cell)


# ----------------------------------------------------------------------------- the comparison

@dataclass
class ComparisonResult:
    """The four runs of the comparison: (label, result, high-frequency share) each."""

    rows: list[tuple[str, FeatureVisResult, float]]
    stopped: str | None = None

    def grid(self, cell: int | None = None) -> Image.Image:
        """The four pictures side by side, labelled."""
        imgs = torch.cat([r.image[:1] for _, r, _ in self.rows])
        return image_grid(imgs, [label for label, _, _ in self.rows], cols=len(self.rows), cell=cell)

    def report(self) -> dict:
        return {"runs": [{"label": label, "high_frequency_share": round(share, 4), **r.report()}
                         for label, r, share in self.rows],
                "stopped": self.stopped, "partial": self.stopped is not None}


class ComparisonRun(Run):
    """The runs of :func:`~explorer.featurevis.render.comparison_settings` (``base``, one image) in turn;
    events numbered on through all of them (``total`` = 4 x steps), each stage named with its own
    step (``"2 of 4: pixels, step 9 of 64"``).

    Raises:
        the errors of :class:`FeatureVisualization`, before any work.
    """

    def __init__(self, model: FeatureNet, base: FeatureVisSettings):
        super().__init__()
        base = dataclasses.replace(base, batch=1, separate=False, diversity=0.0)
        self.runs = [(label, FeatureVisualization(model, s)) for label, s in comparison_settings(base)]
        self.steps = base.steps
        self.notes = list(self.runs[0][1].notes)
        self.done: list[tuple[str, FeatureVisResult, float]] = []

    def stop(self, reason: str) -> None:
        super().stop(reason)
        for _, run in self.runs:
            run.stop(reason)

    def __iter__(self) -> Iterator[ProgressEvent]:
        total, elapsed = self.steps * len(self.runs), 0.0
        for i, (label, run) in enumerate(self.runs):
            last = i == len(self.runs) - 1
            for ev in run:
                yield dataclasses.replace(ev, step=i * self.steps + ev.step, total=total, elapsed=elapsed + ev.elapsed,
                                          done=ev.done and last, stage=f"{i + 1} of {len(self.runs)}: {label}, step {ev.step} of {self.steps}")
            elapsed += run.seconds
            res = run.result()
            self.done.append((label, res, high_frequency_share(res.image)))
            if run.stopped:
                self.stop(run.stopped)
                return

    def result(self) -> ComparisonResult:
        return ComparisonResult(list(self.done), self.stopped)


# ----------------------------------------------------------------------------- timing

#: Seconds per optimization step per 128 x 128 px image (VGG19, its default layer relu4_1, fp32)
#: on this project's CPU, an AMD EPYC (Zen 3, AVX2 only) with 2 cores shared with other work:
#: 0.2 is a run of 64 steps x 4 images that took 53 s on the busy machine, 1.0 a run of 16
#: steps x 4 images that took 60 s at a load average of 16. An idle machine is faster, a GPU far
#: faster; after one run the page scales that run's own time instead (:func:`estimate_range`).
REFERENCE_STEP_SECONDS = (0.2, 1.0)


def work_units(steps: int, batch: int, size: int) -> float:
    """A run's work in units of one step on one 128 x 128 px image: steps x images x (size/128)²
    (size in px; first order: a step's cost grows with the pixels, its fixed part is ignored)."""
    return max(1, int(steps)) * max(1, int(batch)) * (float(size) / 128.0) ** 2


def estimate_range(settings: FeatureVisSettings, measured: dict | None) -> tuple[float, float, str]:
    """Seconds ``settings`` will take: (low, high, basis).

    With a usable measured run (its report: ``settings`` and ``seconds``, same network),
    ``low == high`` = :func:`estimate_seconds` and basis ``"measured"``; otherwise
    :func:`work_units` times :data:`REFERENCE_STEP_SECONDS` and basis ``"reference"``.
    """
    est = estimate_seconds(settings, measured)
    if est is not None:
        return est, est, "measured"
    w = work_units(settings.steps, settings.batch, settings.size)
    return w * REFERENCE_STEP_SECONDS[0], w * REFERENCE_STEP_SECONDS[1], "reference"


def estimate_seconds(settings: FeatureVisSettings, measured: dict | None) -> float | None:
    """Seconds ``settings`` will take, scaled from a measured run's report (``settings`` and
    ``seconds``) by steps x batch x pixels (a first-order guess: same network and layer);
    ``None`` without a usable measurement."""
    try:
        m = measured["settings"]
        work = lambda s, b, z: max(1, s) * max(1, b) * z * z  # noqa: E731
        done = work(m["steps"], m["batch"], m["size"])
        if not measured["seconds"] > 0 or m["model"] != settings.model:
            return None
        return float(measured["seconds"]) * work(settings.steps, settings.batch, settings.size) / done
    except (KeyError, TypeError):
        return None
