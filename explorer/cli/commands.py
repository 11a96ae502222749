"""The commands of ``python -m explorer`` (see :mod:`explorer.cli.parser` for the parser): one module
per command (:mod:`explorer.cli.stylize`, :mod:`explorer.cli.saliency`, :mod:`explorer.cli.dream`, :mod:`explorer.cli.featurevis`,
:mod:`explorer.cli.activations`, :mod:`explorer.cli.reconstruct`, :mod:`explorer.cli.augment`, :mod:`explorer.cli.weights`), each
with ``run(args)`` returning the exit status, on the helpers of :mod:`explorer.cli.common`.
:func:`run` dispatches and turns every user error into one ``error: ...`` line (exit status 2).

This module imports torch and the networks; :mod:`explorer.cli.parser` imports it only once a
command runs, so ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from . import activations as cmd_activations, augment as cmd_augment, dream as cmd_dream, featurevis as cmd_featurevis, reconstruct as cmd_reconstruct, saliency as cmd_saliency, stylize as cmd_stylize, weights as cmd_weights
from ..io import images
from ..nets import weights
from .common import CliError, check_outputs
from ..nets.memory import free_cached_memory, is_out_of_memory, out_of_memory_message

__all__ = ["run", "COMMANDS"]

#: Each command's ``run(args) -> exit status``, by the name it has on the command line.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "stylize": cmd_stylize.run,
    "saliency": cmd_saliency.run,
    "dream": cmd_dream.run,
    "featurevis": cmd_featurevis.run,
    "activations": cmd_activations.run,
    "reconstruct": cmd_reconstruct.run,
    "augment": cmd_augment.run,
    "weights": cmd_weights.run,
}


def run(args: argparse.Namespace) -> int:
    """Run the parsed command. Returns the exit status (0 ok, 2 error, 130 interrupted)."""
    try:
        if args.command != "weights":
            check_outputs(args)
        return COMMANDS[args.command](args)
    except (CliError, images.ImageError, weights.WeightsError, ValueError, OSError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except (RuntimeError, MemoryError) as exc:  # out of (GPU) memory anyway: cache freed, one line
        if not is_out_of_memory(exc):
            raise
        msg = out_of_memory_message(exc, f"the {args.command} run")
        del exc
        free_cached_memory()
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
