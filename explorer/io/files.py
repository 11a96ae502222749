"""Reading a user's file safely: only a regular file of bounded size is read, checked with
``fstat`` before anything is read, so that a named pipe (which would wait for a writer forever),
a device such as ``/dev/zero`` (endless), a socket or a folder is refused at once with one line.
Images, masks, recipes and weights files are all read through here. No torch, no Streamlit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

__all__ = ["MAX_FILE_BYTES", "short_reason", "open_regular_file", "read_regular_file"]

#: Largest file read as an image or mask, in bytes (checked before reading: a huge or endless
#: file is refused at once instead of filling the memory).
MAX_FILE_BYTES = 256 * 2**20




def short_reason(exc: BaseException, limit: int = 120) -> str:
    """One-line, length-limited text of an exception, for parenthesised details."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_regular_file(path: str | os.PathLike, label: str, limit: int | None = MAX_FILE_BYTES,
                      error: type[Exception] = ValueError) -> BinaryIO:
    """A regular file of at most ``limit`` bytes, opened for reading (binary, buffered).

    The file is opened without blocking and checked with ``fstat`` before anything is read, so
    a named pipe (which would wait for a writer forever), a device such as ``/dev/zero``
    (endless) or a socket is refused at once, and so is a file larger than ``limit``.

    Args:
        path: the file.
        label: how messages name it, e.g. ``"content image 'x.png'"``.
        limit: the largest size accepted, bytes; None for any size.
        error: the exception class raised (one-line message).

    Returns:
        the open file (the caller closes it, e.g. ``with open_regular_file(...) as fh``).

    Raises:
        ``error``: not found, a folder, not a regular file, too large, or unreadable.
    """
    p = Path(os.fspath(path)).expanduser()
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise error(f"{label}: file not found") from None
    except IsADirectoryError:
        raise error(f"{label}: this is a folder, not a file") from None
    except PermissionError:
        raise error(f"{label}: could not read the file (permission denied)") from None
    except OSError as exc:
        if p.is_dir():
            raise error(f"{label}: this is a folder, not a file") from None
        raise error(f"{label}: could not read the file ({short_reason(exc)})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{label}: this is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            kind = "a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device" if (
                stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "a socket or other special file"
            raise error(f"{label}: this is {kind}, not a regular file")
        if limit is not None and st.st_size > limit:
            raise error(f"{label}: the file is {st.st_size / 2**20:.0f} MB; files up to {limit / 2**20:.0f} MB "
                        "are accepted")
        return os.fdopen(fd, "rb", closefd=True)
    except OSError as exc:
        os.close(fd)
        raise error(f"{label}: could not read the file ({short_reason(exc)})") from None
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike, label: str, limit: int = MAX_FILE_BYTES,
                      error: type[Exception] = ValueError) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (:func:`open_regular_file`'s
    checks first: no pipe, device, socket or folder, nothing larger than ``limit``).

    Args:
        path: the file.
        label: how messages name it, e.g. ``"content image 'x.png'"``.
        limit: the largest size accepted, bytes.
        error: the exception class raised (one-line message).

    Raises:
        ``error``: not found, a folder, not a regular file, too large, or unreadable.
    """
    with open_regular_file(path, label, limit, error) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise error(f"{label}: could not read the file ({short_reason(exc)})") from None
    if len(data) > limit:  # it grew while being read
        raise error(f"{label}: the file is larger than {limit / 2**20:.0f} MB")
    return data
