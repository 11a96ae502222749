"""What the commands of ``python -m explorer`` share (one module per command, ``cmd_*.py``;
:mod:`explorer.cli.commands` dispatches): the one-line user error :class:`CliError`, reading and
checking a recipe, merging defaults < recipe < flags into settings, loading the network and the
images with their notes, the tqdm bar over a run's progress events, and the output files.

Every message goes to stderr (:func:`say`, and the tqdm bar with its notes); results go to
files, and nothing is printed on stdout. Output paths are checked before any work
(:func:`check_outputs`, :func:`check_apart`) and written through :func:`write_results`, which
turns a full disk into one line naming the file and the way to resume. This module imports torch
and the networks; :mod:`explorer.cli.parser` imports the commands only once one runs, so ``--help``
and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..io import images
from ..io import samples
from ..nets import models, normalize
from ..io import files
from ..io import outputs
from ..core import recipes
from ..core.progress import ProgressEvent, tqdm_events
from ..core.runs import Run

__all__ = ["CliError", "MAX_RECIPE_BYTES", "read_recipe", "image_ref", "settings_from", "say", "default_network",
           "check_layers", "load_net",
           "load_ref", "drive", "png_out", "write_outputs", "write_results", "disk_full_error", "check_outputs",
           "check_apart", "file_ref"]


class CliError(Exception):
    """A user-facing error: printed as one ``error: ...`` line, exit status 2."""

#: Largest recipe file read, bytes (a recipe is a few kilobytes).
MAX_RECIPE_BYTES = 2**20


def read_recipe(path: str, command: str | None = None) -> dict:
    """The recipe's JSON object in the current shape (:func:`explorer.core.recipes.migrate`:
    a recipe any earlier version wrote replays as it ran), its shape checked: ``settings`` (and
    ``guide``) objects, ``inputs`` an object of strings. A recipe is checked whole before any
    model is loaded. ``command``: the command replaying it.

    Raises:
        CliError: not a regular file of at most 1 MB, not JSON (or nested too deep), of the
            wrong shape, of another command or of a newer version; one line.
    """
    raw = files.read_regular_file(path, f"recipe {path}", MAX_RECIPE_BYTES, error=CliError)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"recipe {path} is not valid JSON: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise CliError(f"recipe {path} is nested too deeply to be a recipe") from None
    if not isinstance(data, dict):
        raise CliError(f"recipe {path} must hold a JSON object")
    try:
        data = recipes.migrate(data, command, layers_of=models.list_layers)
    except ValueError as exc:
        raise CliError(f"recipe {path}: {exc}") from None
    for key in ("settings", "guide", "inputs"):
        if key in data and not isinstance(data[key], dict):
            raise CliError(f"recipe {path}: '{key}' must be a JSON object, got {_json_kind(data[key])}")
    for key, value in (data.get("inputs") or {}).items():
        if not isinstance(value, str):
            raise CliError(f"recipe {path}: inputs.{key} must be a file path or sample:NAME, got {_json_kind(value)}")
    return data


def _json_kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")


def image_ref(arg: str | None, recipe: dict, key: str) -> str:
    """The image reference (a path or ``sample:NAME``) given on the command line, else the
    recipe's ``inputs[key]``.

    Raises:
        CliError: neither, or a recipe whose image was uploaded in the browser (no path).
    """
    if arg:
        return arg
    ref = recipe.get("inputs", {}).get(key) if isinstance(recipe.get("inputs"), dict) else None
    if isinstance(ref, str) and ref.startswith("upload:"):
        raise CliError(f"the recipe's {key} image was uploaded in the browser ({ref[7:]}); "
                       f"pass its path as {key.upper()}")
    if isinstance(ref, str) and ref:
        return ref  # sample:NAME or a path the CLI recorded
    raise CliError(f"missing {key.upper()} image (a path or sample:NAME)")


def settings_from(cls, args: argparse.Namespace, recipe: dict, networks: Sequence[str] = ()):
    """A settings dataclass ``cls`` (a :class:`~explorer.core.settings.RecipeSettings`) from
    defaults < the recipe's settings < flags given on the command line (flags not given are
    absent from ``args``). With ``networks`` (the ones the command offers), a ``model`` that
    neither the recipe nor a flag names is :func:`default_network`'s choice among them.

    Raises:
        CliError: a recipe without ``settings``, or a bad value (the settings' one-line message).
    """
    if recipe and "settings" not in recipe:
        raise CliError("recipe has no 'settings' object")
    merged = dict(recipe.get("settings", {})) if recipe else {}
    for f in cls.__dataclass_fields__:
        if hasattr(args, f):
            merged[f] = getattr(args, f)
    if networks and "model" not in merged:
        merged["model"] = default_network(args, cls.__dataclass_fields__["model"].default, networks)
    try:
        return cls.from_dict(merged)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _weights_arg(args) -> str:
    if args.untrained:
        return "untrained"
    if args.weights:
        return args.weights
    return "auto"


def say(msg: str) -> None:
    """Print one message line for the user on stderr."""
    print(msg, file=sys.stderr)


def default_network(args: argparse.Namespace, default: str, networks: Sequence[str]) -> str:
    """The network a command runs on when the user names none: ``default``, or, when ImageNet
    weights are wanted (neither ``--untrained`` nor ``--weights``) and none of ``default``'s are
    on this machine, the first of ``networks`` that has them, with a note on stderr saying which,
    why, and the download command for ``default``
    (:func:`explorer.nets.models.network_with_weights`).

    Raises:
        ValueError: unknown model.
    """
    if getattr(args, "untrained", False) or getattr(args, "weights", None) or getattr(args, "normalized", False):
        return default
    name, note = models.network_with_weights(default, networks)
    if note:
        say(f"note: {note}")
    return name


def check_layers(name: str, layers: Iterable[str]) -> None:
    """Check the layer names a command was given against network ``name``'s layers on the meta
    device, before any weights are loaded (empty names, meaning "the default", are skipped).

    Raises:
        explorer.nets.models.UnknownLayerError: one line listing the valid names.
    """
    models.check_layer_names(name, [n for n in layers if n])


def load_net(args: argparse.Namespace, name: str, recipe: dict | None = None) -> models.FeatureNet:
    """The network ``name`` with the weights the flags ask for (``--untrained``, ``--weights``,
    ``--normalized``: :func:`explorer.nets.normalize.load_normalized`, default auto) on ``--device``; warns on stderr when the weights are untrained, and when a
    replayed ``recipe`` was made with other weights (another digest or kind: the numbers will
    differ).

    Raises:
        explorer.nets.weights.WeightsError: no usable weights; ValueError: unknown model or device.
    """
    if getattr(args, "normalized", False):
        model = normalize.load_normalized(name, device=args.device, progress=None if getattr(args, "quiet", False)
                                          else lambda e: say(f"layer {e.step}/{e.total}, {e.stage}"))
    else:
        model = models.load_model(name, weights=_weights_arg(args), device=args.device)
    if model.weights.untrained:
        say(f"warning: using {model.weights.label}: the result shows what an untrained network "
            "computes, not what a trained one sees")
    made = ((recipe or {}).get("run") or {}).get("weights") if isinstance((recipe or {}).get("run"), dict) else None
    if isinstance(made, dict) and made.get("label") and (
            made.get("kind") != model.weights.kind or (made.get("digest") or "") != (model.weights.digest or "")):
        say(f"note: the recipe was made with {made['label']}"
            + (f" ({str(made.get('digest'))[:15]}...)" if made.get("digest") else "")
            + f"; this run uses {model.weights.label}, so its numbers may differ")
    return model


def load_ref(ref: str, role: str) -> images.LoadedImage:
    """The image a reference names (:func:`explorer.io.samples.parse_image_ref`), its notes (e.g.
    an EXIF rotation) printed on stderr.

    Raises:
        explorer.io.images.ImageError: an unreadable image (one line starting with ``role``).
    """
    li = samples.parse_image_ref(ref, role=role)
    for note in li.notes:
        say(f"note: {li.name}: {note}")
    return li


def drive(run: Iterable[ProgressEvent], desc: str, quiet: bool,
          keys: tuple[str, ...] = ("total", "content", "style"), *,
          events: Iterable[ProgressEvent] | None = None) -> bool:
    """Run an iterable of progress events under a tqdm bar on stderr (hidden with ``quiet`` or
    when stderr is not a terminal), its postfix showing the events' ``losses[k]`` for ``k`` in
    ``keys`` (a dream's events carry ``objective``).

    Ctrl-C stops the run: a :class:`~explorer.core.runs.Run` is marked with
    :meth:`~explorer.core.runs.Run.stop` ("interrupted at step k of n"), so that its result and
    report say so themselves (``stopped``), as a page's stopped run does.

    Args:
        run: the run (or a plain iterable of events).
        events: what to iterate instead of ``run`` itself (a wrapper of its events).

    Returns:
        True when Ctrl-C stopped it (after saying so), False when it ran to the end.
    """
    last = None
    try:
        for ev in tqdm_events(run if events is None else events, desc=desc,
                              disable=True if quiet else None, keys=keys):
            last = ev
    except KeyboardInterrupt:
        if isinstance(run, Run):
            run.stop("interrupted " + (f"at step {last.step} of {last.total}" if last is not None
                                       else "before the first step"))
        say("interrupted: writing the last image")
        return True
    return False


def png_out(args: argparse.Namespace, default: str) -> Path:
    """The ``-o/--output`` path, ``default`` when not given.

    Raises:
        CliError: a name that does not end in ``.png``.
    """
    out = Path(args.output or default)
    if out.suffix.lower() != ".png":
        raise CliError(f"output must be a .png file; got {out}")
    return out


def write_outputs(args, out: Path, image, report: dict,
                  extra: Sequence[tuple[str, Callable[[], object]]] = ()) -> list[str]:
    """Write the result ``image`` ((1, 3, H, W) in [0, 1]) as the PNG ``out`` (the weights and
    settings in its text chunks), with ``--report`` the JSON ``report`` (strict JSON, written
    first: it is small and replays the run), then ``extra`` (path, write) pairs; all atomic,
    through :func:`write_results`.

    Returns:
        the paths written, in order.

    Raises:
        CliError: a full, over-quota or read-only disk (one line naming the file and how to go on).
    """
    steps: list[tuple[str, Callable[[], object]]] = []
    if args.report:
        steps.append((args.report, lambda: outputs.write_json_atomic(report, args.report)))
    info = {"weights": report["weights_label"], "settings": outputs.json_text(report["settings"], indent=None)}
    steps.append((str(out), lambda: outputs.save_png_atomic(images.to_pil(image), out, pnginfo=info)))
    return write_results(args, [*steps, *extra])


def disk_full_error(exc: OSError, resume: str, where: str | None = None) -> CliError:
    """The one line for an output the disk would not take (``exc.errno`` in
    :data:`explorer.io.outputs.DISK_FULL_ERRNOS`): the file (``exc.filename``, else the folder
    ``where``), the reason, and what to do: free space (or quota, or pick a writable disk),
    then ``resume``."""
    first = "name an output on a writable disk" if exc.errno == errno.EROFS else \
        "free some of your disk quota" if exc.errno == getattr(errno, "EDQUOT", None) else "free some space"
    what = str(exc) if isinstance(exc, outputs.DiskFullError) else \
        f"cannot write {exc.filename or ('in ' + str(where) if where else 'the output')}: " \
        f"{(exc.strerror or str(exc)).lower()}"
    return CliError(f"{what}; {first}, then {resume}")


def write_results(args: argparse.Namespace, steps: Sequence[tuple[str, Callable[[], object]]]) -> list[str]:
    """Write a run's output files in order: ``steps`` are (path, function that writes it); put
    the report first. Every output goes through :mod:`explorer.io.outputs` (atomic, regular files
    only).

    Returns:
        the paths written, in order.

    Raises:
        CliError: a full, over-quota or read-only disk: one line naming the file, saying what
            was already written and how to go on (run the same command again; or, when the
            report is written, replay it with ``--recipe REPORT``). Other errors as raised.
    """
    written: list[str] = []
    report = getattr(args, "report", None)
    for path, write in steps:
        try:
            write()
        except outputs.DiskFullError as exc:
            resume = "run the same command again (the same flags and seed give the same result)"
            if report and str(report) in written:
                resume += f", or replay it from its report with --recipe {report}"
            if written:
                resume += f"; already written: {', '.join(written)}"
            raise disk_full_error(exc, resume) from None
        written.append(str(path))
    return written


def file_ref(ref: str | None) -> str | None:
    """The file an image reference names (``None`` for ``sample:NAME``, ``gray``, ``noise`` and
    None), for :func:`check_apart`."""
    if not ref or str(ref).lower().startswith("sample:") or ref in ("gray", "noise"):
        return None
    return str(ref)


#: Output options (attribute, how messages name it). Every command checks the ones it has
#: before any work, so a bad path costs nothing (augment's output is a folder).
_OUTPUTS = (("output", "output"), ("report", "--report"), ("npy", "--npy"), ("gif", "--gif"), ("json", "--json"))


def check_outputs(args: argparse.Namespace) -> None:
    """Check every output path the command has (:func:`explorer.io.outputs.check_output_path`:
    a regular file or a new path, never a device, pipe, socket or link) before any work.

    Raises:
        ValueError: from :func:`explorer.io.outputs.check_output_path` (one line naming the path).
    """
    for attr, label in _OUTPUTS:
        value = getattr(args, attr, None)
        if value:
            outputs.check_output_path(value, label, folder=args.command == "augment" and attr == "output")


def check_apart(args: argparse.Namespace, out: Path | None, *, inputs: Sequence[tuple[str, str | None]] = (),
                folders: Sequence[tuple[str, str | None]] = (), more: Sequence[tuple[str, Path]] = ()) -> None:
    """The one check, before any work, that a command's outputs each have their own file and
    that none is an input (:func:`explorer.io.outputs.check_apart`): the outputs are ``out`` (the
    PNG; None for augment's folder), the output options given (``--report``, ``--npy``,
    ``--gif``, ``--json``) and ``more`` (implicit ones such as featurevis's examples sheet);
    the inputs are ``inputs`` (images, masks...; see :func:`file_ref`), ``--recipe`` and
    ``--weights``; ``folders`` are folders whose files the run reads.

    Raises:
        ValueError: one line naming both paths.
    """
    outs = [("output", out)] if out is not None else []
    outs += [(label, getattr(args, attr)) for attr, label in _OUTPUTS[1:] if getattr(args, attr, None)]
    ins = [*inputs, ("recipe", getattr(args, "recipe", None)), ("weights file", getattr(args, "weights", None))]
    for label, path in more:
        outputs.check_output_path(path, label)
    outputs.check_apart([*outs, *more], ins, folders)
