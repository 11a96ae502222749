"""The settings an augmentation output folder was made with, kept in it as
``.augment-settings.json`` (:data:`SETTINGS_FILE`), so that a resumed run cannot fill one folder
with pictures of two settings (v0 from one network, v1 from another).

What is recorded (:func:`folder_settings`) is every setting that changes the pictures: the
network and its weights (kind, file name and the file's SHA-256,
:attr:`explorer.nets.weights.WeightsInfo.digest`), the ranges the draws come from (size, steps, beta,
blend and its weight range, the traditional operations and when they apply), the seed, the
optimization (start, learning rate, parameterization, TV weight, layers, pooling) and the style
images (names and pixel digests, in order: jobs pick styles by index). Settings that give the
same pictures are recorded in one form (``auto`` and ``pixel`` parameterization as ``pixel``, the
blend weight range only when blending, the traditional operations' place only with operations);
the learning rate as given (``None``: the default), as the job hashes have it. Not
recorded: what changes only the speed or how the work is split (batch size, device, precision,
channels_last, shard) and the number of variants (more variants add outputs beside the first).

A run compares its settings with the folder's (:func:`differences`) and refuses a difference in
one line that names the setting, its value in the folder and now (:func:`check_folder`), or the
command line writes into a new folder instead (:func:`pick_folder`). The first run into a folder
records its settings (:func:`claim_folder`, called under the folder's lock,
:class:`explorer.batch.augment_io.ShardLock`, so two runs starting at once cannot both record theirs).

Folders made before the file existed resume as they did: their job hashes check the settings
(:mod:`explorer.batch.augment`) except the weights file itself, which their manifest's ``weights``
column names (the weights label), so a run with a weights file of another name is refused; the
first run that resumes such a folder records its settings.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Sequence

from ..io import outputs
from .augment_io import AugmentError, StyleImage, read_manifest
from .augment_settings import AugmentSettings

__all__ = ["SETTINGS_FILE", "folder_settings", "differences", "check_folder", "claim_folder", "pick_folder"]

#: The folder's settings, hidden (left out of the page's zip), written atomically.
SETTINGS_FILE = ".augment-settings.json"

_FORMAT = 1
#: Recorded settings as a message names them, in the order they are compared.
_NAMES = {"model": "model", "weights": "weights", "styles": "style images", "seed": "seed", "size": "size",
          "steps": "steps", "beta_range": "beta range", "blend": "blend", "weight_range": "blend weight range",
          "traditional": "traditional augmentation", "traditional_at": "traditional augmentation at",
          "init": "init", "lr": "lr", "parameterization": "parameterization", "tv_weight": "TV weight",
          "content_layer": "content layer", "style_layers": "style layers", "pooling": "pooling"}


def folder_settings(settings: AugmentSettings, styles: Sequence[StyleImage], weights) -> dict:
    """What the pictures of a run depend on, JSON-ready (see the module docstring).

    Args:
        settings: the run's settings (validated).
        styles: its style images, in the run's order.
        weights: the network's :class:`~explorer.nets.weights.WeightsInfo` (``kind``, ``source``,
            ``label``, ``digest``).
    """
    s = settings
    untrained = weights.kind == "untrained"
    record = {
        "format": _FORMAT, "model": s.model,
        "weights": {"kind": weights.kind, "file": "" if untrained else Path(weights.source).name,
                    "digest": weights.digest, "label": weights.label},
        "styles": [{"name": st.name, "digest": st.digest} for st in styles],
        "seed": s.seed, "size": list(s.size), "steps": list(s.steps), "beta_range": list(s.beta_range),
        "blend": s.blend, "weight_range": list(s.weight_range) if s.blend > 1 else None,
        "traditional": list(s.traditional), "traditional_at": s.traditional_at if s.traditional else None,
        "init": s.init, "lr": s.lr,
        "parameterization": "fourier" if s.parameterization == "fourier" else "pixel",
        "tv_weight": s.tv_weight, "content_layer": s.content_layer, "style_layers": list(s.style_layers),
        "pooling": s.pooling,
    }
    return json.loads(json.dumps(record))  # as it reads back


def _read(out_dir: Path) -> dict | None:
    path = out_dir / SETTINGS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AugmentError(f"cannot read {path}: {exc}") from None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise AugmentError(f"{path} is not the settings file an augment run writes; move it away to resume")
    return record


def _same_weights(a, b) -> bool:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return a == b
    if a.get("digest") and b.get("digest"):
        return a["digest"] == b["digest"]  # the same bytes under another name are the same weights
    return (a.get("kind"), a.get("digest")) == (b.get("kind"), b.get("digest"))


def _show(key: str, value) -> str:
    if key == "weights" and isinstance(value, dict):
        digest = value.get("digest") or ""
        return f"{value.get('label', '?')}" + (f" ({digest[:15]}…)" if digest else "")
    if key == "styles" and isinstance(value, list):
        names = [str(v.get("name", "?")) if isinstance(v, dict) else str(v) for v in value]
        return f"{len(names)} ({', '.join(names[:4])}{', …' if len(names) > 4 else ''})"
    if isinstance(value, list) and len(value) == 2 and key not in ("traditional", "style_layers"):
        return f"{value[0]}" if value[0] == value[1] else f"{value[0]},{value[1]}"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return ("default" if key == "lr" else "none") if value is None else str(value)


def differences(out_dir: str | os.PathLike, wanted: dict) -> list[str]:
    """Each recorded setting where an output folder differs from ``wanted``
    (:func:`folder_settings`), as ``"seed: 7 in the folder, 8 now"``; empty for a folder that
    does not exist, holds no augmentation yet, or was made with these settings. A folder made
    before the settings file existed is checked by its manifest's ``weights`` column.

    Raises:
        AugmentError: an unreadable settings file (one line).
    """
    out = Path(out_dir)
    if not out.is_dir():
        return []
    old = _read(out)
    if old is None:
        file = (wanted.get("weights") or {}).get("file")
        labels = {r.get("weights", "") for rows in read_manifest(out).values() for r in rows} - {""}
        named = re.compile(rf"(?<![\w.-]){re.escape(file or '')}(?![\w.-])")
        other = sorted(label for label in labels if file and not named.search(label))
        return [f"weights: {other[0]} in the folder's manifest, {_show('weights', wanted['weights'])} now"] if other else []
    found = []
    for key, name in _NAMES.items():
        if key not in old or key not in wanted:
            continue  # recorded by another version: nothing to compare
        a, b = old[key], wanted[key]
        if key == "weights" and _same_weights(a, b):
            continue
        if key == "styles" and isinstance(a, list) and [v.get("name") for v in a if isinstance(v, dict)] == \
                [v["name"] for v in b] and a != b:
            changed = next(v["name"] for v, w in zip(a, b) if v != w)
            found.append(f"style image {changed}: its pixels differ from the folder's")
            continue
        if a != b:
            found.append(f"{name}: {_show(key, a)} in the folder, {_show(key, b)} now")
    return found


def check_folder(out_dir: str | os.PathLike, wanted: dict) -> None:
    """Refuse an output folder made with other settings than ``wanted`` (:func:`differences`).

    Raises:
        AugmentError: one line naming each setting that differs (at most three), with its value
            in the folder and now.
    """
    found = differences(out_dir, wanted)
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise AugmentError(f"{out_dir} was made with other settings: {'; '.join(found[:3])}{more}. Resume it with "
                           "its settings, or use another output folder (the command line picks one with "
                           "--new-folder-if-different)")


def claim_folder(out_dir: str | os.PathLike, wanted: dict) -> None:
    """:func:`check_folder`, then record ``wanted`` in a folder that has no settings file yet
    (atomically). Call it holding the folder's lock.

    Raises:
        AugmentError: as :func:`check_folder`; OSError: the file cannot be written.
    """
    check_folder(out_dir, wanted)
    out = Path(out_dir)
    if _read(out) is None:
        outputs.write_text_atomic(json.dumps(wanted, indent=1, ensure_ascii=False) + "\n", out / SETTINGS_FILE)


def pick_folder(out_dir: str | os.PathLike, wanted: dict, tries: int = 1000) -> Path:
    """``out_dir`` when it may take a run of ``wanted`` (:func:`differences` is empty), else the
    first of ``OUT-2``, ``OUT-3``, ... beside it that is new or was made with these settings
    (so running the same command again resumes there).

    Raises:
        AugmentError: none of ``tries`` names is free (one line).
    """
    base = Path(out_dir)
    if not base.name:
        base = base.resolve()
    for k in range(1, tries + 1):
        folder = base if k == 1 else base.with_name(f"{base.name}-{k}")
        if (folder.is_dir() or not folder.exists()) and not differences(folder, wanted):
            return folder if k > 1 else Path(out_dir)
    raise AugmentError(f"{out_dir}: {tries} folders beside it hold augmentations of other settings; "
                       "use another output folder")
