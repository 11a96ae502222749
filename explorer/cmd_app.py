"""``explorer app [STREAMLIT OPTIONS ...]``: ``streamlit run`` on the app, from any folder:
the checkout's ``app.py`` when the explorer runs from a checkout, else the copy the wheel ships
(:func:`explorer.installation.app_script`). Options such as ``--server.port 8502`` go to
Streamlit unchanged.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from . import installation

__all__ = ["run", "streamlit_command"]


def streamlit_command(script: str | Path, streamlit_args: Sequence[str] = ()) -> list[str]:
    """The command line that serves the app ``script`` with this Python's Streamlit:
    ``[python, -m, streamlit, run, script, *streamlit_args]``."""
    return [sys.executable, "-m", "streamlit", "run", str(script), *map(str, streamlit_args)]


def run(args: argparse.Namespace) -> int:
    """Serve the app until Streamlit stops (Ctrl-C stops it; Streamlit gets the signal too).

    Args:
        args: parsed arguments with ``streamlit_args``, the options for ``streamlit run``.

    Returns:
        Streamlit's exit status; 2 (after one ``error: ...`` line) when the app's files are missing.
    """
    try:
        script = installation.app_script()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    proc = subprocess.Popen(streamlit_command(script, getattr(args, "streamlit_args", ())))
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Streamlit got the Ctrl-C as well and is shutting down: wait for it
            continue
