"""``python -m explorer weights``: ``status`` lists every network's weights file and where it
was found (or that the file found there cannot be read, and why); ``download`` fetches them
(:mod:`explorer.nets.weights`, :mod:`explorer.nets.download`); ``normalize`` writes a VGG's
weights normalized as in Gatys et al. (:mod:`explorer.nets.normalize`).
"""

from __future__ import annotations

import argparse

from ..io import outputs
from ..nets import download, models, normalize, registry, weights
from . import common

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Weights: ``status`` prints a table on stdout, one line per network (``missing``, the path,
    or ``PATH: found but unreadable: REASON``), ``download`` one ``ok PATH`` line per file.

    Returns:
        the exit status.

    Raises:
        explorer.cli.common.CliError and the errors :func:`explorer.cli.commands.run` turns into one line.
    """
    if args.weights_command == "status":
        rows = weights.weights_status()
        for row in rows:
            where = weights.found_text(row)
            print(f"{row['model']:13s} {row['file']:34s} {row['size_mb']:7.1f} MB  {where}")
        print(f"torch cache: {rows[0]['cache_dir']}")
        print(f"EXPLORER_WEIGHTS_DIR: {rows[0]['weights_dir'] or '(not set)'}")
        return 0
    if args.weights_command == "normalize":
        return _normalize(args)
    names = list(registry.MODELS) if args.models.strip() == "all" else [n.strip() for n in args.models.split(",") if n.strip()]
    for n in names:
        if n not in registry.MODELS:
            raise common.CliError(f"unknown model {n!r}; choose from {', '.join(registry.MODELS)} or 'all'")
    for p in download.download_weights(names, dest=args.dir):
        print(f"ok {p}")
    return 0


def _normalize(args: argparse.Namespace) -> int:
    """``weights normalize``: every input and the output checked first (one line each), then the
    source weights loaded, the images measured layer by layer with a progress line per layer on
    stderr, and the file written atomically; prints ``ok PATH`` and the inactive channels."""
    out = outputs.check_output_path(args.output, "output")
    if not 32 <= args.size <= 4096:
        raise common.CliError(f"--size must be from 32 to 4096 px, got {args.size}")
    source = args.weights or normalize.source_file(args.model)
    outputs.check_apart([("output", out)], [("weights file", source), *[("image", p) for p in args.images]],
                        [("--images", args.images_dir)] if args.images_dir else [])
    batch = normalize.normalization_images(args.images, args.images_dir, size=args.size, samples=not args.no_samples)
    net = models.load_model(args.model, weights=source, device=args.device)
    if net.weights.derivation:
        raise common.CliError(f"{source} is already normalized ({net.weights.label}); give the original weights")
    report = None if args.quiet else (lambda e: common.say(f"layer {e.step}/{e.total}, {e.stage}"))
    result = normalize.normalize_vgg(net, batch, size=args.size, progress=report)
    path = normalize.write_normalized(net, result, out)
    for layer, chans in result.inactive.items():
        common.say(f"note: {layer}: {len(chans)} channels never active on these {len(batch)} images, left unscaled "
                   f"({', '.join(map(str, chans[:8]))}{' ...' if len(chans) > 8 else ''})")
    print(f"ok {path}")
    return 0
