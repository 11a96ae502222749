"""``python -m explorer augment``: stylize a folder of images into a dataset, resumable and
sharded (:mod:`explorer.batch.augment`); finished images and manifest rows survive an interruption.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..batch import augment
from ..core import choices, recipes
from ..io import outputs
from ..batch import augment_folder
from ..batch import augment_io
from ..batch import augment_plan, augment_settings
from . import common
from ..core.progress import tqdm_events

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Augment: the shard's outputs, ``manifest.csv`` and ``skipped.csv`` in the output folder; 130 when interrupted.

    Returns:
        the exit status.

    Raises:
        explorer.cli.common.CliError and the errors :func:`explorer.cli.commands.run` turns into one line.
    """
    recipe = common.read_recipe(args.recipe, args.command) if args.recipe else {}
    if not hasattr(args, "variants") and "variants" not in (recipe.get("settings") or {}):
        raise common.CliError("--variants N is required (stylized outputs per input image)")
    settings = common.settings_from(augment_settings.AugmentSettings, args, recipe, networks=choices.STYLE_MODELS)
    common.check_layers(settings.model, [settings.content_layer, *settings.style_layers])
    shard = augment_plan.Shard.parse(args.shard) if args.shard else augment_plan.shard_from_env() or augment_plan.Shard()
    inputs = augment_io.check_folders(args.input_dir, args.output, args.styles_dir)
    if args.report and outputs.is_inside(args.report, args.output) and Path(args.report).suffix.lower() != ".json":
        raise common.CliError(f"--report {args.report}: inside the output folder a report must be a .json file "
                              "(the run's images and CSV files live there)")
    common.check_apart(args, None, folders=[("input folder", args.input_dir), ("styles folder", args.styles_dir)])
    args.device = augment_plan.device_from_env(args.device)
    jobs = sum(shard.takes(k) and augment_plan.is_usable_input(p) for k, p in enumerate(inputs)) * settings.variants
    augment.check_augment_memory(settings, args.device, jobs)  # before any image is decoded or model loaded
    notes: list[str] = []
    styles = augment_io.load_styles(args.styles_dir, notes)
    for note in notes:
        common.say(f"note: {note}")
    if settings.blend > len(styles):
        raise common.CliError(f"--blend {settings.blend} needs at least {settings.blend} style images; "
                       f"{args.styles_dir} has {len(styles)}")
    out, new_folder = Path(args.output), getattr(args, "new_folder_if_different", False)
    if not new_folder:  # a second writer, or another shard plan: one line, before the model
        augment_io.ShardLock(out, shard).acquire().release()
    model = common.load_net(args, settings.model, recipe)
    if new_folder:
        wanted = augment_folder.folder_settings(settings, styles, model.weights)
        chosen = augment_folder.pick_folder(out, wanted)
        if chosen != out:
            augment_io.check_folders(args.input_dir, chosen, args.styles_dir)
            common.say(f"note: {out} was made with other settings "
                       f"({'; '.join(augment_folder.differences(out, wanted)[:3])}); writing into {chosen}")
            out = chosen
    run = augment.Augmentation(model, args.input_dir, styles, out, settings, shard=shard)
    common.say(f"augmenting shard {shard} into {out}: {len(run.mine)} of {len(inputs)} inputs, {len(run.jobs)} outputs "
         f"({run.already_done} already done) with {len(styles)} style image(s) on {model.device}, "
         f"{model.weights.label}")
    interrupted, events = False, iter(run)
    try:
        try:  # not common.drive: there is no "last image" to write, finished images are already on disk
            for _ in tqdm_events(events, desc="augment", disable=True if args.quiet else None):
                pass
        except KeyboardInterrupt:
            interrupted = True
        finally:
            events.close()  # closes this shard's logs
        rows, skipped = run.finish()
    except OSError as exc:  # an image, a log or a manifest the disk would not take
        if exc.errno not in outputs.DISK_FULL_ERRNOS:
            raise
        first, seen = exc, exc.__context__
        while seen is not None:  # the first file refused: rebuilding the manifests on the way out fails too
            first = seen if isinstance(seen, outputs.DiskFullError) else first
            seen = seen.__context__
        exc = first
        raise common.disk_full_error(exc, "run the same command again: it resumes, keeping the images "
                                          "already written", where=out) from None
    summary = run.summary()
    if args.report:
        report = recipes.recipe("augment", summary, {"input_dir": str(args.input_dir),
                                                     "styles_dir": str(args.styles_dir)}, interrupted=interrupted)
        common.write_results(args, [(args.report, lambda: outputs.write_json_atomic(report, args.report))])
    common.say(f"wrote {summary['written']} image(s) in {summary['seconds']:.1f} s ({summary['images_per_minute']:.1f} "
         f"images/min); {out / 'manifest.csv'} lists {rows} output(s)")
    if skipped:
        common.say(f"warning: {skipped} input(s) skipped, reasons in {out / 'skipped.csv'}")
    if interrupted:
        common.say("interrupted: the finished images and their manifest rows are kept; run the same command to resume")
    return 130 if interrupted else 0
