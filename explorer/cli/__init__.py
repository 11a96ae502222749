"""``python -m explorer ...`` / ``explorer ...``: the argument parser (:mod:`.parser`, no torch,
so ``--help`` answers at once), the dispatcher (:mod:`.commands`) and one module per command.
"""

from .parser import build_parser, main

__all__ = ["main", "build_parser"]
