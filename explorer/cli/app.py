"""``explorer app [STREAMLIT OPTIONS ...]``: ``streamlit run`` on the app, from any folder:
the checkout's ``app.py`` when the explorer runs from a checkout, else the copy the wheel ships
(:func:`explorer.core.installation.app_script`). Options such as ``--server.port 8502`` go to
Streamlit unchanged.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from ..core import installation

__all__ = ["run", "streamlit_command"]


def streamlit_command(script: str | Path, streamlit_args: Sequence[str] = ()) -> list[str]:
    """The command line that serves the app ``script`` with this Python's Streamlit:
    ``[python, -m, streamlit, run, script, *streamlit_args]``."""
    return [sys.executable, "-m", "streamlit", "run", str(script), *map(str, streamlit_args)]


def run(args: argparse.Namespace) -> int:
    """Serve the app until Streamlit stops (Ctrl-C): on POSIX Streamlit replaces this process.

    Args:
        args: parsed arguments with ``streamlit_args``, the options for ``streamlit run``.

    Returns:
        2 (after one ``error: ...`` line) when the app's files are missing; otherwise Streamlit's
        exit status where it runs as a child process (Windows), and nothing on POSIX, where
        Streamlit replaces this process.
    """
    try:
        script = installation.app_script()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cmd = streamlit_command(script, getattr(args, "streamlit_args", ()))
    if os.name != "posix":  # no exec on Windows: a child process, Ctrl-C reaches it too
        try:
            return subprocess.call(cmd)
        except KeyboardInterrupt:
            return 130
    # Streamlit takes this process's place: Ctrl-C, kill and the exit status are its own, and no
    # server is left behind when this process is stopped
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
    return 0  # not reached
