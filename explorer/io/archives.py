"""Folders in and out of zip files, safely: unpacking an uploaded dataset zip (ImageFolder
layout) without trusting its member names or sizes, zipping an output folder with stable bytes,
and listing a folder's files the same way everywhere (hidden files left out, sorted by code
point). The augmentation page and feature visualization's uploaded datasets share it.
"""

from __future__ import annotations

import io
import os
import re
import stat
import zipfile
import zlib
from pathlib import Path

__all__ = ["ArchiveError", "MAX_ZIP_BYTES", "MAX_ZIP_FILES", "walk_files", "extract_dataset_zip", "zip_folder"]


class ArchiveError(ValueError):
    """A zip that cannot be unpacked safely, in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def walk_files(root: Path) -> list[str]:
    """Relative POSIX paths of the non-hidden regular files under ``root``, sorted by code point
    (locale-independent), not following symlinked folders."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.startswith(".") or not (Path(dirpath) / name).is_file():
                continue
            out.append((rel / name).as_posix())
    return sorted(out)



#: Most bytes a dataset zip may unpack to, and most files it may hold (the page's limits).
MAX_ZIP_BYTES = 256 * 2**20
MAX_ZIP_FILES = 10_000


def extract_dataset_zip(data: bytes, dest: str | os.PathLike, *, max_bytes: int = MAX_ZIP_BYTES,
                        max_files: int = MAX_ZIP_FILES) -> int:
    """Unpack an uploaded dataset zip (ImageFolder layout) into ``dest``, safely.

    Member names are never trusted: a name that is absolute (``/x``, ``C:x``) or climbs out with
    ``..`` rejects the whole zip; folders, symbolic links, hidden files and ``__MACOSX/`` are
    skipped; backslashes count as separators. The declared sizes are checked against
    ``max_bytes`` before anything is written and the bytes actually read are counted while
    writing (a zip cannot unpack to more than it declares, Python's reader stops there, but the
    count guards that too). If every file lies at least two folders deep under one top folder
    (``dataset/CLASS/x.png``), that top folder is dropped, so zipping the dataset folder itself
    and zipping its class folders give the same layout.

    Returns:
        the number of files written.

    Raises:
        ArchiveError: not a zip, a damaged or encrypted member, an unsafe name, no files, or
            over the limits (one line).
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ArchiveError("the upload is not a zip file") from None
    members = []
    with zf:
        for info in zf.infolist():
            name = info.filename.replace("\\", "/")
            if info.is_dir() or name.endswith("/") or stat.S_ISLNK(info.external_attr >> 16):
                continue
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
                raise ArchiveError(f"the zip holds an absolute path ({name!r}); refusing it")
            parts = [q for q in name.split("/") if q not in ("", ".")]
            if ".." in parts:
                raise ArchiveError(f"the zip holds a path that leaves its folder ({name!r}); refusing it")
            if not parts or parts[0] == "__MACOSX" or any(q.startswith(".") for q in parts):
                continue
            members.append((info, parts))
        if not members:
            raise ArchiveError("the zip holds no files")
        if len(members) > max_files:
            raise ArchiveError(f"the zip holds {len(members)} files; the limit here is {max_files}")
        declared = sum(info.file_size for info, _ in members)
        if declared > max_bytes:
            raise ArchiveError(f"the zip unpacks to {declared / 2**20:.0f} MB; the limit here is "
                               f"{max_bytes / 2**20:.0f} MB (use the command line for large datasets)")
        if len({parts[0] for _, parts in members}) == 1 and all(len(parts) >= 3 for _, parts in members):
            members = [(info, parts[1:]) for info, parts in members]
        root, written = Path(dest), 0
        for info, parts in members:
            target = root.joinpath(*parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as fh:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ArchiveError(f"the zip unpacks to more than {max_bytes / 2**20:.0f} MB")
                        fh.write(chunk)
            except ArchiveError:
                raise
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, zlib.error) as exc:
                raise ArchiveError(f"could not unpack {'/'.join(parts)!r} from the zip ({exc})") from None
    return len(members)


def zip_folder(folder: str | os.PathLike) -> bytes:
    """An output folder as zip bytes: the images (stored; PNG is compressed already),
    ``manifest.csv`` and ``skipped.csv`` (deflated); the per-shard logs and hidden files are
    left out. Entries are sorted and dated 1980-01-01, so equal folders give equal bytes."""
    root = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel in walk_files(root):
            if re.fullmatch(r"(manifest|skipped)\.shard-\d+-of-\d+\.csv", rel):
                continue
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if rel.lower().endswith(".png") else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, (root / rel).read_bytes())
    return buf.getvalue()
