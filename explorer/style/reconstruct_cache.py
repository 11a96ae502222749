"""The reconstruction figure kept on disk, so that a page opens with it already there: one folder
per network, weights file and settings (:func:`cache_path`), holding the figure, every picture
and the recipe that made them (:func:`save_cached`, :func:`load_cached`).

The folder is ``app_cache_dir()/reconstruct/<network>-<weights digest>-<settings digest>``
(:func:`explorer.core.installation.app_cache_dir`): other weights (another file, or the same
name with other bytes) or other settings or images give another folder. Every file is written
atomically (:mod:`explorer.io.outputs`), the recipe last: a folder without a readable recipe, or
whose recipe names another key or a missing picture, is not a cached figure.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from PIL import Image

from ..core import recipes
from ..core.installation import app_cache_dir
from ..io.images import ImageError, load_image, to_pil
from ..io.outputs import save_png_atomic, write_json_atomic
from ..nets.weights import WeightsInfo
from .reconstruct import ReconstructResult, ReconstructSettings

__all__ = ["CachedFigure", "cache_key", "cache_path", "save_cached", "load_cached", "FIGURE_FILE", "RECIPE_FILE"]

FIGURE_FILE, RECIPE_FILE = "figure.png", "recipe.json"
#: Largest recipe read back from the cache, bytes.
_MAX_RECIPE = 4 * 2**20


@dataclass
class CachedFigure:
    """A figure read back from the cache.

    Attributes:
        figure: the whole figure (:meth:`ReconstructResult.figure`), RGB.
        recipe: the recipe that made it (command ``reconstruct``: run-info block, settings,
            inputs, every picture's layers, loss and relative error).
        pictures: (kind, label, image) per picture, in the order they were made.
        path: the cache folder.
    """

    figure: Image.Image
    recipe: dict
    pictures: list[tuple[str, str, Image.Image]]
    path: Path


def _weights_part(weights: WeightsInfo | str) -> str:
    digest = weights if isinstance(weights, str) else (weights.digest or weights.kind)
    return digest.split(":", 1)[-1][:16] or "untrained"


def cache_key(model_name: str, weights: WeightsInfo | str, settings: ReconstructSettings,
              inputs: Mapping[str, str]) -> str:
    """``"<network>-<16 hex of the weights digest>-<16 hex of the settings digest>"``: the
    weights digest is ``WeightsInfo.digest`` (SHA-256 of the file's bytes; ``"untrained"`` for
    untrained weights), the settings digest the SHA-256 of the settings and the ``inputs``
    (``{"content": ref, "style": ref}``) as sorted JSON."""
    blob = json.dumps({"settings": settings.to_dict(), "inputs": dict(inputs)}, sort_keys=True)
    return f"{model_name}-{_weights_part(weights)}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def cache_path(model_name: str, weights: WeightsInfo | str, settings: ReconstructSettings,
               inputs: Mapping[str, str], root: str | Path | None = None) -> Path:
    """The cache folder of a figure (not created): ``root`` (default
    ``app_cache_dir()/reconstruct``) / :func:`cache_key`."""
    base = Path(root) if root is not None else app_cache_dir() / "reconstruct"
    return base / cache_key(model_name, weights, settings, inputs)


def save_cached(result: ReconstructResult, path: str | Path, inputs: Mapping[str, str]) -> Path:
    """Write ``result`` into the cache folder ``path``: every picture, the figure, then the
    recipe (atomic writes; the recipe last). Returns the recipe's path.

    Raises:
        ValueError: the result is partial (stopped early): only whole figures are cached.
        OSError (DiskFullError among them): the disk would not take it.
    """
    if result.stopped:
        raise ValueError(f"a stopped run is not cached ({result.stopped})")
    folder = Path(path)
    files = []
    for p in result.pictures:
        save_png_atomic(to_pil(p.image), folder / f"{p.file_stem}.png")
        files.append({"kind": p.kind, "label": p.label, "file": f"{p.file_stem}.png"})
    save_png_atomic(result.figure(), folder / FIGURE_FILE)
    recipe = recipes.recipe("reconstruct", result.report(), dict(inputs), cache_key=folder.name, files=files)
    return write_json_atomic(recipe, folder / RECIPE_FILE)


def load_cached(path: str | Path) -> CachedFigure | None:
    """The figure cached in folder ``path``, or ``None`` when there is none there (missing, half
    written, or damaged: every such case reads as "not cached", never raises)."""
    folder = Path(path)
    try:
        raw = (folder / RECIPE_FILE).read_bytes()[:_MAX_RECIPE + 1]
        if len(raw) > _MAX_RECIPE:
            return None
        recipe = json.loads(raw.decode("utf-8"))
        if not isinstance(recipe, dict) or recipe.get("cache_key") != folder.name or \
                recipe.get("command") != "reconstruct":
            return None
        figure = load_image(folder / FIGURE_FILE, role="cached figure").image
        pictures = []
        for f in recipe.get("files", []):
            if Path(str(f["file"])).name != f["file"]:
                return None  # only files of this folder
            pictures.append((str(f["kind"]), str(f["label"]), load_image(folder / f["file"], role="cached picture").image))
    except (OSError, ValueError, ImageError, KeyError, TypeError):
        return None
    return CachedFigure(figure, recipe, pictures, folder)
