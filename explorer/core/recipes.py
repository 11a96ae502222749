"""Recipes: the JSON every result is described by (the CLI's ``--report``, the pages' recipe
downloads) and every replay reads (``--recipe``), in one format.

A recipe is a JSON object. Its run-info block, the same for every command (:func:`run_info`):

- ``recipe_version``: :data:`RECIPE_VERSION`, the shape of the object;
- ``command``: the command that made it (``stylize``, ``saliency``, ``dream``, ``featurevis``,
  ``augment``, ``activations``, ``reconstruct``);
- ``run``: the network (``model``), its weights (``kind``, ``label``, ``file``: the file's name,
  ``digest``: ``"sha256:..."`` of its bytes, as :attr:`explorer.nets.weights.WeightsInfo.digest`
  computed when the weights were loaded; for derived weights such as a VGG normalized as in Gatys
  et al. also ``derivation``: the source file and its digest, the images and size they were made
  from), ``device``, ``precision`` and the ``torch`` and
  ``torchvision`` versions;
- ``settings``: the command's full settings (``model`` among them).

Beside it each command keeps its own results (losses, timings, the heatmap's range...) and
``inputs`` (:func:`recipe`). Every reader passes what it read through :func:`migrate`, the one
place that turns a recipe of any shape this project has written into the current one.

Versions:

1. (no ``recipe_version``) the reports written before this module: no run-info block; a style
   recipe from before relative losses has ``style_weight`` but no ``loss_normalization`` (it ran
   the paper's losses); style and augmentation settings from before ``parameterization`` (and
   ``conv_algorithm``) have ``channels_last`` but not them (they ran on pixels with torch's own
   convolutions); augmentation recipes from before the rename hold ``ratio_range`` (the same
   numbers as ``beta_range``) and count their input files in ``inputs`` (now ``input_files``:
   ``inputs`` holds the input folders); saliency settings have no ``model`` (the run's network is found
   from the layers they name, else it is VGG19, the command's default then).
2. the run-info block and ``model`` in every command's settings.
3. occlusion sees the picture continued by its mirror image (``context`` px beyond each border):
   saliency settings and a stylize recipe's ``guide`` from version 2 and before have no
   ``context``; they ran with none (``context`` 0).

This module imports no torch.
"""

from __future__ import annotations

import json

import copy
import re
from pathlib import Path
from typing import Callable, Collection, Mapping

from . import choices
from .installation import installed_version

__all__ = ["RECIPE_VERSION", "COMMANDS", "run_info", "recipe", "migrate"]

#: The shape of the recipes this version writes.
RECIPE_VERSION = 3
#: The commands a recipe can belong to.
COMMANDS: tuple[str, ...] = ("stylize", "saliency", "dream", "featurevis", "augment", "activations", "reconstruct")


def run_info(command: str, settings: Mapping, weights, device, precision: str) -> dict:
    """The run-info block every result starts with (see the module docstring).

    Args:
        command: one of :data:`COMMANDS`.
        settings: the run's full settings as JSON-ready values (``to_dict()`` of a settings
            class), ``model`` among them.
        weights: the network's :class:`explorer.nets.weights.WeightsInfo` (``kind``, ``label``,
            ``source``, ``digest``); its digest was computed once, when the weights were loaded.
        device: where the network ran (``"cpu"``, ``"cuda:0"``...).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Returns:
        ``{"recipe_version", "command", "run": {...}, "settings"}``, JSON-ready.
    """
    untrained = getattr(weights, "kind", "untrained") == "untrained"
    block = {"kind": getattr(weights, "kind", None), "label": getattr(weights, "label", None),
             "file": None if untrained else Path(str(weights.source)).name,
             "digest": (getattr(weights, "digest", "") or None) if not untrained else None}
    if getattr(weights, "derivation", ""):  # derived weights: how they were made (source file, images, size)
        block["derivation"] = json.loads(weights.derivation)
    return {
        "recipe_version": RECIPE_VERSION,
        "command": command,
        "run": {
            "model": settings.get("model"),
            "weights": block,
            "device": str(device),
            "precision": precision,
            "torch": installed_version("torch"),
            "torchvision": installed_version("torchvision"),
        },
        "settings": dict(settings),
    }


def recipe(command: str, report: Mapping, inputs: Mapping | None = None, **extra) -> dict:
    """The recipe of a result, the one JSON object the CLI's ``--report`` writes and the pages
    offer for download: ``report`` (a result's ``report()``, which starts with :func:`run_info`;
    a page's unfinished result may hold ``settings`` only), with ``inputs`` (image references:
    paths, ``sample:NAME`` or ``upload:NAME``) and ``extra`` keys added.

    Returns:
        a new dict with ``recipe_version`` and ``command`` set.
    """
    out = {"recipe_version": RECIPE_VERSION, "command": command, **report}
    if inputs is not None:
        out["inputs"] = dict(inputs)
    out.update(extra)
    return out


def migrate(data: Mapping, command: str | None = None, *,
            layers_of: Callable[[str], Collection[str]] | None = None) -> dict:
    """Any recipe this project has written, in the current shape (:data:`RECIPE_VERSION`).

    Args:
        data: the recipe's JSON object; not modified.
        command: the command replaying it (checked against the recipe's own ``command``; needed
            for version 1 recipes, which do not name theirs, unless their settings tell).
        layers_of: a network's layer names (e.g. :func:`explorer.nets.models.list_layers`),
            used to find the network of a version 1 saliency recipe from the layers it names.

    Returns:
        a deep copy, migrated, with ``recipe_version`` and (when known) ``command`` set.

    Raises:
        ValueError: not an object, a ``recipe_version`` that is not a whole number from 1 to
            :data:`RECIPE_VERSION` (a newer one names the version to update to), or a recipe
            whose ``command`` is another; one line. (A version 1 recipe of another command is
            refused by the settings class, naming the keys it does not know.)
    """
    if not isinstance(data, Mapping):
        raise ValueError("a recipe must be a JSON object")
    version = data.get("recipe_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"recipe_version must be a whole number from 1 to {RECIPE_VERSION}; got {version!r}")
    if version > RECIPE_VERSION:
        raise ValueError(f"this recipe has recipe_version {version}, written by a newer explorer; this one reads "
                         f"versions 1 to {RECIPE_VERSION}: update explorer to replay it")
    own = data.get("command")
    if own is not None and own not in COMMANDS:
        raise ValueError(f"the recipe's command must be one of {', '.join(COMMANDS)}; got {own!r}")
    if own is not None and command is not None and own != command:
        raise ValueError(f"this is a recipe of `explorer {own}`, not of `explorer {command}`")
    out = copy.deepcopy(dict(data))
    cmd = own or command or _guess_command(out)
    settings = out.get("settings")
    if version < 2 and isinstance(settings, dict):
        _settings_v1_to_v2(cmd, settings, layers_of)
    if version < 2 and cmd == "augment" and not isinstance(out.get("inputs", {}), dict):
        out["input_files"] = out.pop("inputs")  # a count of files, not the inputs
    if version < 3:
        _occlusion_context_v2_to_v3(cmd, out)
    out["recipe_version"] = RECIPE_VERSION
    if cmd is not None:
        out["command"] = cmd
    return out


def _settings_v1_to_v2(command: str | None, s: dict, layers_of) -> None:
    """Version 1 settings, in place, as they ran then (see the module docstring)."""
    if command == "stylize":
        if "style_weight" in s and "loss_normalization" not in s:
            s["loss_normalization"] = "paper"  # written before relative losses: its beta is the paper's
        if "channels_last" in s:  # a whole settings dict from before parameterization and conv_algorithm
            s.setdefault("parameterization", "pixel")
            s.setdefault("conv_algorithm", "direct")
    elif command == "augment":
        if "ratio_range" in s:
            ratio = s.pop("ratio_range")
            s.setdefault("beta_range", ratio)  # the same numbers: beta with alpha = 1
        if "channels_last" in s:
            s.setdefault("parameterization", "pixel")
    elif command == "saliency" and "model" not in s:
        s["model"] = _saliency_model(s, layers_of)


def _occlusion_context_v2_to_v3(command: str | None, recipe: dict) -> None:
    """Occlusion settings written before the mirrored context, in place, as they ran then (no context)."""
    if command == "saliency" and isinstance(recipe.get("settings"), dict):
        recipe["settings"].setdefault("context", 0)
    if command == "stylize" and isinstance(recipe.get("guide"), dict):
        recipe["guide"].setdefault("context", 0)


def _saliency_model(s: Mapping, layers_of) -> str:
    """The network of a version 1 saliency recipe: the first offered network (VGG19 first) that
    has every layer the settings name; VGG19 (the command's default then) when none or no layer
    is named."""
    raw = s.get("style_layers") or ()
    names = [n.strip() for n in (raw.split(",") if isinstance(raw, str) else raw) if isinstance(n, str) and n.strip()]
    for key in ("gradcam_layer",):
        if isinstance(s.get(key), str) and s[key]:
            names.append(s[key])
    m = re.match(r"(?:layer|channel):([^:]+)", str(s.get("objective") or ""))
    if m:
        names.append(m.group(1))
    if names and layers_of is not None:
        for model in choices.SALIENCY_MODELS:
            try:
                known = set(layers_of(model))
            except (ValueError, KeyError):
                continue
            if all(n in known for n in names):
                return model
    return "vgg19"


def _guess_command(r: Mapping) -> str | None:
    """The command a version 1 recipe belongs to, from the keys only its settings have."""
    s = r.get("settings") if isinstance(r.get("settings"), Mapping) else {}
    for command, keys in (("augment", ("variants", "beta_range", "ratio_range")), ("dream", ("octaves",)),
                          ("featurevis", ("decorrelate",)), ("saliency", ("ig_steps", "method")),
                          ("stylize", ("style_weight", "content_layer", "optimizer"))):
        if any(k in s for k in keys):
            return command
    return None
