"""The installation: where the Streamlit app's files are (a checkout or the installed wheel),
which torch and torchvision are installed, and whether they pair.

Imports nothing of torch at import time: :mod:`explorer.cli.parser` uses it before any command runs
(so ``--help`` stays instant), :mod:`explorer.app.ui` before it imports torch, and ``explorer
doctor`` to report a broken pair instead of failing on it.

torchvision is built against one torch release: torchvision 0.(N+15) goes with torch 2.N, and
both must come from the same place (PyPI's builds, or the CPU-only index). A torchvision that
does not pair fails at import, e.g. ``RuntimeError: operator torchvision::nms does not exist``;
:func:`torch_problem` turns that into one line naming both versions and the fix.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
from pathlib import Path

__all__ = ["app_script", "app_cache_dir", "installed_version", "torchvision_for", "pair_mismatch", "torch_problem", "CPU_INDEX"]

#: PyTorch's index of CPU-only builds (the README's install line for machines without an NVIDIA GPU).
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

_PACKAGE = Path(__file__).resolve().parents[1]  # explorer/, above core/


def app_script(package_dir: str | Path | None = None) -> Path:
    """The Streamlit app's entry script, ``app.py`` with ``pages/`` beside it: the checkout's
    when the ``explorer`` package lives in a checkout (or an editable install of one), else the
    copy the wheel ships in ``explorer/streamlit_app/``.

    Args:
        package_dir: the ``explorer`` package's folder (default: this package's).

    Raises:
        FileNotFoundError: neither is there (an installation without the app); one line.
    """
    pkg = Path(package_dir).resolve() if package_dir is not None else _PACKAGE
    for folder in (pkg.parent, pkg / "streamlit_app"):
        if (folder / "app.py").is_file() and (folder / "pages" / "style_transfer.py").is_file():
            return folder / "app.py"
    raise FileNotFoundError(f"the Streamlit app (app.py and pages/) is neither beside {pkg} nor in "
                            f"{pkg / 'streamlit_app'}; reinstall with pip install . from a checkout")


def app_cache_dir() -> Path:
    """The folder where the app keeps what it computed once and shows again (e.g. the default
    figure of the reconstructions page): ``EXPLORER_CACHE_DIR`` when set, else
    ``$XDG_CACHE_HOME/dream-style-explorer`` (``~/.cache/dream-style-explorer`` when
    ``XDG_CACHE_HOME`` is not set). Not created here."""
    own = os.environ.get("EXPLORER_CACHE_DIR", "").strip()
    if own:
        return Path(own).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "dream-style-explorer"


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (e.g. ``"2.14.1+cpu"``) from its package
    metadata, without importing it; None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str | None) -> tuple[int, int] | None:
    """(major, minor) of a version string such as ``2.14.1+cpu`` or ``0.30.0.dev20260101``."""
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _build(version: str) -> str:
    """The local build tag of a version (``cpu``, ``cu121``, ``rocm6.2``; ``""`` for PyPI's builds)."""
    return version.partition("+")[2]


def torchvision_for(torch_version: str) -> str | None:
    """The torchvision release (``"0.29"``) built for torch ``torch_version`` (``"2.14.1"``):
    torchvision 0.(N+15) goes with torch 2.N. None for a version this rule does not cover."""
    rel = _release(torch_version)
    if rel is None or rel[0] != 2:
        return None
    return f"0.{rel[1] + 15}"


def pair_mismatch(torch_version: str, torchvision_version: str) -> str | None:
    """Why torchvision ``torchvision_version`` does not go with torch ``torch_version`` (one
    phrase), or None when their releases pair and both are the same kind of build.

    Examples: ``"torchvision 0.28 is built for torch 2.13, not 2.14"``; ``"torch is a +cpu build
    and torchvision a +cu121 build"``.
    """
    want, tv = torchvision_for(torch_version), _release(torchvision_version)
    if want is not None and tv is not None and f"{tv[0]}.{tv[1]}" != want:
        built_for = f"2.{tv[1] - 15}" if tv[0] == 0 and tv[1] >= 15 else "another torch"
        t = _release(torch_version)
        return f"torchvision {tv[0]}.{tv[1]} is built for torch {built_for}, not {t[0]}.{t[1]}"
    tb, vb = _build(torch_version), _build(torchvision_version)
    if tb != vb:
        def kind(b: str) -> str:
            return f"a +{b} build" if b else "a default (PyPI) build"

        return f"torch is {kind(tb)} and torchvision {kind(vb)}"
    return None


def _fix(torch_version: str | None) -> str:
    """The install line that gives a pair, for the installed torch's release when known."""
    rel, want = _release(torch_version), torchvision_for(torch_version or "")
    if rel is None or want is None:
        pair = "torch torchvision"
    else:
        pair = f'"torch=={rel[0]}.{rel[1]}.*" "torchvision=={want}.*"'
    return (f"install torch and torchvision as a pair from one place (torchvision 0.(N+15) goes with torch 2.N), "
            f"e.g. pip install --force-reinstall {pair}, or for the CPU-only build "
            f"pip install --force-reinstall {pair} --index-url {CPU_INDEX}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def torch_problem() -> str | None:
    """Import torch and torchvision; None when both import, else one line that names the
    installed versions, what failed and the fix (which torchvision goes with which torch, and
    the install command). Never raises for a broken installation.

    Returns:
        None, or the message (no ``error:`` prefix, no newline).
    """
    tv_version = installed_version("torchvision")
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any failure to load torch is the installation's
        t_version = installed_version("torch")
        return (f"torch {t_version or '(not installed)'} cannot be imported ({_one_line(exc)}): "
                + _fix(t_version))
    # both from the package metadata: torch.__version__ carries a build tag (+cu130) that PyPI's
    # metadata of the same wheel, like torchvision's, does not
    t_version = installed_version("torch") or str(getattr(torch, "__version__", "unknown"))
    try:
        importlib.import_module("torchvision")
    except Exception as exc:  # noqa: BLE001 - e.g. RuntimeError: operator torchvision::nms does not exist
        if tv_version is None:
            return f"torchvision is not installed (torch {t_version} is): " + _fix(t_version)
        why = pair_mismatch(t_version, tv_version)
        return (f"torchvision {tv_version} cannot be loaded with torch {t_version} ({_one_line(exc)})"
                + (f"; {why}" if why else "") + ": " + _fix(t_version))
    return None
