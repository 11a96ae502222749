"""``python -m explorer weights``: ``status`` lists every network's weights file and where it
was found (or that the file found there cannot be read, and why); ``download`` fetches them
(:mod:`explorer.nets.weights`, :mod:`explorer.nets.download`).
"""

from __future__ import annotations

import argparse

from ..nets import download, registry, weights
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
    names = list(registry.MODELS) if args.models.strip() == "all" else [n.strip() for n in args.models.split(",") if n.strip()]
    for n in names:
        if n not in registry.MODELS:
            raise common.CliError(f"unknown model {n!r}; choose from {', '.join(registry.MODELS)} or 'all'")
    for p in download.download_weights(names, dest=args.dir):
        print(f"ok {p}")
    return 0
