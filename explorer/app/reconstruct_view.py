"""What the "What each layer keeps" page needs besides widgets: the default figure of the current
weights, read from and written to the disk cache (:mod:`explorer.style.reconstruct_cache`), the
sample pickers started on the default pair, how long a figure takes, and the result fields shared
by a run and a cached figure.

No Streamlit here: the page draws; this module computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..io.images import to_pil
from ..io.samples import SAMPLE_CONTENT, SAMPLE_STYLE
from ..nets.models import FeatureNet
from ..style import reconstruct as R
from ..style import reconstruct_cache as RC

__all__ = ["SECONDS_PER_STEP", "default_inputs", "default_settings", "is_default", "default_path",
           "load_default", "save_default", "picker_samples", "estimate_seconds", "time_text", "result_fields",
           "cached_fields", "errors_text"]

#: Seconds one L-BFGS step of one picture takes at 128 px on the long side, averaged over the ten
#: pictures of the default figure (the shallow ones are cheaper, the deep ones dearer), on an idle
#: 2-core CPU in fp32: the real VGG19 (Caffe conv layers) on a 2-core AMD EPYC (Zen 3, AVX2), default
#: pair, took 1.3 CPU seconds per step (4 steps of each picture, so the per-picture setup weighs a
#: little more than in a full run); the machine was shared, so this is its CPU time over 2 cores,
#: not a wall-clock time. Scaled with the number of pixels; the last run on this machine, when
#: there is one, is used instead (:func:`estimate_seconds`).
SECONDS_PER_STEP = 0.65
_REF_PIXELS = 128 * 128


def default_inputs() -> dict[str, str]:
    """The default pair of the figure: ``{"content": ref, "style": ref}`` (the engine's)."""
    return {"content": R.DEFAULT_CONTENT, "style": R.DEFAULT_STYLE}


def default_settings(model_name: str) -> R.ReconstructSettings:
    """The settings of the default figure of network ``model_name`` (the engine's defaults)."""
    return R.ReconstructSettings(model=model_name)


def is_default(settings: R.ReconstructSettings, inputs: Mapping[str, str]) -> bool:
    """Whether ``settings`` and ``inputs`` make the default figure (the one that is cached)."""
    return dict(inputs) == default_inputs() and settings.to_dict() == default_settings(settings.model).to_dict()


def default_path(model: FeatureNet, root: str | Path | None = None) -> Path:
    """The cache folder of the default figure of ``model``'s network and weights file."""
    return RC.cache_path(model.name, model.weights, default_settings(model.name), default_inputs(), root=root)


def load_default(model: FeatureNet) -> RC.CachedFigure | None:
    """The cached default figure of ``model``'s network and weights, or None when there is none yet."""
    return RC.load_cached(default_path(model))


def save_default(result: R.ReconstructResult, model: FeatureNet) -> str | None:
    """Keep a whole default figure in the cache; returns None, or one line saying why it was not kept."""
    try:
        RC.save_cached(result, default_path(model), default_inputs())
    except (OSError, ValueError) as exc:  # DiskFullError is an OSError
        return f"The figure was not kept for next time: {' '.join(str(exc).split()) or type(exc).__name__}"
    return None


def picker_samples(samples: Mapping[str, str], ref: str) -> tuple[dict[str, str], int]:
    """The samples of a picker (display name -> sample name) with the default ``ref``
    (``"sample:NAME"``) among them, and its index: the picker opens on the default pair."""
    name = ref.split(":", 1)[1] if ref.lower().startswith("sample:") else ref
    out = dict(samples)
    if name not in out.values():
        out.update({d: n for d, n in {**SAMPLE_CONTENT, **SAMPLE_STYLE}.items() if n == name})
    values = list(out.values())
    return out, values.index(name) if name in values else 0


def _pixels(settings: Mapping) -> int:
    return int(settings.get("size", 128)) ** 2


def estimate_seconds(settings: R.ReconstructSettings, report: Mapping | None = None) -> float:
    """About how many seconds a figure of ``settings`` takes here: pictures x steps x the seconds
    per step of the last run (``report``, a figure's report or recipe, when it has its seconds)
    or :data:`SECONDS_PER_STEP`, scaled by the square of the size over the reference's."""
    rate, ref = SECONDS_PER_STEP, _REF_PIXELS
    if report and report.get("seconds") and isinstance(report.get("settings"), Mapping):
        s = report["settings"]
        steps = sum(int(p.get("steps") or 0) for p in report.get("pictures") or [])
        if steps > 0:
            rate, ref = float(report["seconds"]) / steps, _pixels(s)
    return len(settings.plan()) * settings.steps * rate * settings.size ** 2 / ref


def time_text(seconds: float) -> str:
    """``"about 40 s"`` or ``"about 2 min"``."""
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.1f} min".replace(".0 min", " min")


def result_fields(run: R.Reconstruction) -> dict:
    """The page's result fields of a finished or stopped run: the figure (``image``), each
    picture (``pictures``: kind, label, PIL image, relative error, file stem), the report and why
    it stopped."""
    result = run.result()
    return {"image": result.figure(), "report": result.report(), "stopped": result.stopped,
            "pictures": [(p.kind, p.label, to_pil(p.image), p.relative_error, p.file_stem) for p in result.pictures]}


def cached_fields(cached: RC.CachedFigure) -> dict:
    """The same fields as :func:`result_fields` for a figure read from the cache (its recipe is the report)."""
    numbers = {p.get("label"): p.get("relative_error") for p in cached.recipe.get("pictures") or []
               if isinstance(p, dict)}
    files = [str(f.get("file", "")) for f in cached.recipe.get("files") or []]
    stems = [f[:-4] if f.endswith(".png") else f for f in files]
    pictures = [(kind, label, image, numbers.get(label), stem)
                for (kind, label, image), stem in zip(cached.pictures, stems)]
    return {"image": cached.figure, "report": cached.recipe, "stopped": None, "pictures": pictures,
            "weights_label": cached.recipe.get("weights_label") or cached.recipe.get("weights"),
            "settings": cached.recipe.get("settings"), "inputs": cached.recipe.get("inputs")}


def errors_text(pictures) -> str:
    """One line of every picture's relative error: ``"content relu1_2 0.012, ... style relu1_1 0.05, ..."``."""
    parts = []
    for kind in ("content", "style"):
        row = [f"{label} {err:.3g}" for k, label, _, err, _ in pictures if k == kind and err is not None]
        if row:
            parts.append(f"{kind}: " + ", ".join(row))
    return "; ".join(parts)
