"""The files of a dataset augmentation: the input folder (:func:`list_inputs`,
:func:`check_folders`), the style images (:func:`load_styles`), the manifests and their
append logs (:func:`read_manifest`, :func:`rebuild_manifests`, :class:`AppendLog`), the locks
that let one shard plan at a time write into an output folder (:class:`ShardLock`), and the
page's zip in and zip out (:func:`extract_dataset_zip`, :func:`zip_folder`). What each output gets is
:mod:`explorer.batch.augment_plan`; the run that writes them is :mod:`explorer.batch.augment`.

Inputs
------
The input is a folder in torchvision's ImageFolder layout (``ROOT/CLASS/.../NAME.EXT``); the
output folder gets the same relative layout (:func:`explorer.batch.augment_plan.output_stems`). Files
directly in ROOT are kept too (class ``""``). Hidden files and folders (``.name``) are ignored;
every other file counts as an input: files whose extension is not one of
:data:`~explorer.batch.augment_plan.IMAGE_EXTENSIONS` (torchvision's ImageFolder list) and files that
do not decode, are truncated, or are smaller than :data:`explorer.io.images.MIN_SIDE` px a side are
listed in ``skipped.csv`` with the reason and the run goes on.

Outputs, manifest, resuming
---------------------------
Images are written atomically (temporary file, then rename), so an interrupted run leaves no
half-written PNG. Each finished image appends one row to ``manifest.shard-I-of-N.csv`` (flushed
and fsynced, :class:`AppendLog`), so several shards can write into one output folder at once
without sharing a file; ``manifest.csv`` is rebuilt (atomically) from all shard manifests
whenever a run ends, also when it is interrupted; a run that ends while another shard is still
appending rebuilds it again, so the shard that finishes last leaves a complete one.
``skipped.csv`` is built the same way from ``skipped.shard-I-of-N.csv``. Columns:
:data:`MANIFEST_COLUMNS`. CSV cells that a spreadsheet would run as formulas are escaped
(:func:`cell_out`, :func:`cell_in`).

Re-running skips every output that exists *and* is listed in a manifest with the same job hash
(the ``job`` column: a digest of everything that determines the output, i.e. the job's draws, the
style images' pixels and the optimization settings, not the batch size, device or precision);
an output listed with a different hash means the folder was made with other settings, which is an
error (:class:`AugmentError`) rather than a silent mix (the folder's recorded settings are
checked first: :mod:`explorer.batch.augment_folder`).

No Streamlit and no network here; this module imports :mod:`explorer.io.images` and
:mod:`explorer.batch.augment_plan` only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..io import images, outputs
from ..io.archives import walk_files
from .augment_plan import IMAGE_EXTENSIONS, Shard, is_image_name, is_utf8_name, shown_name

__all__ = [
    "MANIFEST_COLUMNS",
    "SKIPPED_COLUMNS",
    "AugmentError",
    "StyleImage",
    "list_inputs",
    "check_folders",
    "load_styles",
    "cell_out",
    "cell_in",
    "read_csv",
    "csv_text",
    "read_manifest",
    "rebuild_manifests",
    "AppendLog",
    "ShardLock",
]

#: Columns of manifest.csv, one row per output image. ``output`` and ``source`` are relative
#: to the output and input folder (POSIX separators); ``styles`` and ``style_weights`` are
#: ``;``-separated (style file names relative to the style folder; weights normalized to sum
#: to 1); ``beta`` is the style weight (alpha = 1); ``seed`` is the run's seed and ``job_seed``
#: the one derived for this output (it seeds the noise start, ``init="noise"``); losses are the
#: final, unweighted content (eq. 1) and style (eq. 5) losses and the weighted total; ``seconds``
#: is this image's share of its batch's optimization time (batch time / ``batch``); ``stopped``
#: is empty unless the loss became non-finite (then the reason; the image is the last finite
#: one); ``job`` is the job hash.
MANIFEST_COLUMNS = ("output", "source", "class", "variant", "styles", "style_weights", "beta", "steps", "size",
                    "width", "height", "seed", "job_seed", "traditional", "traditional_at", "content_loss",
                    "style_loss", "tv_loss", "total_loss", "seconds", "batch", "stopped", "weights", "job")
#: Manifest columns as written before ``ratio`` was renamed ``beta`` (same place, same values):
#: :func:`read_manifest` reads such files (resuming into an older output folder) as ``beta``.
_OLD_MANIFEST_COLUMNS = tuple("ratio" if c == "beta" else c for c in MANIFEST_COLUMNS)
#: Columns of skipped.csv: the input path (relative to the input folder) and a one-line reason.
SKIPPED_COLUMNS = ("path", "reason")


class AugmentError(ValueError):
    """A problem with the folders or their contents, in one line (the CLI prints it as
    ``error: ...`` and exits with status 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# ----------------------------------------------------------------------------- inputs

@dataclass
class StyleImage:
    """A style image: its name (path relative to the style folder, or an upload's or sample's
    name), the decoded RGB image and a digest of its pixels (part of every job's hash)."""

    name: str
    image: object  # PIL.Image.Image, RGB
    digest: str = ""

    def __post_init__(self):
        if not self.digest:
            h = hashlib.sha256(f"{self.image.size}".encode())
            h.update(self.image.tobytes())
            self.digest = h.hexdigest()[:16]


def list_inputs(input_dir: str | os.PathLike) -> list[str]:
    """Every input file of a dataset folder (non-hidden regular files, any extension), as
    paths relative to it with ``/`` separators, sorted: the order every shard agrees on.

    Raises:
        AugmentError: the folder does not exist or is not a folder.
    """
    root = Path(input_dir)
    if not root.exists():
        raise AugmentError(f"input folder not found: {input_dir}")
    if not root.is_dir():
        raise AugmentError(f"input must be a folder (ImageFolder layout, one subfolder per class): {input_dir}")
    return walk_files(root)


def check_folders(input_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  styles_dir: str | os.PathLike | None = None) -> list[str]:
    """Check the input and output folders and return the inputs (:func:`list_inputs`).

    Raises:
        AugmentError: no input folder, or an output folder that is a file or lies inside the
            input folder or the styles folder (its images would become inputs, or styles, of the
            next run or shard).
    """
    inputs = list_inputs(input_dir)
    out = Path(out_dir)
    if _inside(out, Path(input_dir)):
        raise AugmentError(f"the output folder {out_dir} must not be inside the input folder {input_dir}")
    if styles_dir is not None and _inside(out, Path(styles_dir)):
        raise AugmentError(f"the output folder {out_dir} must not be the styles folder {styles_dir} or inside it "
                           "(its images would become styles of later runs)")
    if out.exists() and not out.is_dir():
        raise AugmentError(f"output must be a folder: {out_dir}")
    return inputs


def load_styles(styles_dir: str | os.PathLike, notes: list[str] | None = None) -> list[StyleImage]:
    """The style images of a folder (files with an image extension, recursively, sorted).
    Files that do not decode (or whose names are not UTF-8) are left out, each with a one-line
    note appended to ``notes``.

    Raises:
        AugmentError: no such folder, or no usable image in it (the message gives the first
            reason when there were image files).
    """
    root = Path(styles_dir)
    if not root.is_dir():
        raise AugmentError(f"style folder not found: {styles_dir}" if not root.exists()
                           else f"styles must be a folder of images: {styles_dir}")
    names = [p for p in walk_files(root) if is_image_name(p)]
    if not names:
        raise AugmentError(f"no style images in {styles_dir} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    styles, skipped = [], []
    for n in names:
        if not is_utf8_name(n):
            skipped.append(f"style image '{shown_name(n)}': the file name is not valid UTF-8; left out")
            continue
        try:
            styles.append(StyleImage(n, images.load_image(root / n, name=n, role="style image").image))
        except images.ImageError as exc:
            skipped.append(f"{exc}; left out")
    if notes is not None:
        notes.extend(skipped)
    if not styles:
        raise AugmentError(f"no usable style images in {styles_dir}: {skipped[0]}")
    return styles




def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- manifests

#: A spreadsheet reads a cell that starts with one of these as a formula (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Our CSV files end rows with CRLF (RFC 4180), so that Python's writer quotes every field that
#: holds a carriage return or a line feed (with "\n" alone it left a bare "\r" unquoted).
_CRLF = "\r\n"


def cell_out(value) -> str:
    """A CSV cell as written: a text that a spreadsheet would run as a formula (or that starts
    with the escaping quote itself) gets a leading ``'``, so ``=HYPERLINK(...)`` in a file name
    shows as text. :func:`cell_in` undoes it exactly."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START + ("'",)) else text


def cell_in(text: str) -> str:
    """A CSV cell as read back: the leading ``'`` of :func:`cell_out` removed."""
    return text[1:] if text.startswith("'") else text


def read_csv(path: Path, columns: Sequence[str]) -> list[dict]:
    """Complete rows of one of our CSV files, cells as they were before :func:`cell_out`; a row
    cut short by an interruption is dropped. Read with ``newline=""``, so a carriage return or
    line feed inside a quoted name stays part of it."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(text, newline="")):
        if None in row or any(row.get(c) is None for c in columns):
            continue
        if "job" in columns and len(row["job"]) != 12:
            continue
        rows.append({c: cell_in(row[c]) for c in columns})
    return rows


def _shard_files(out_dir: Path, stem: str) -> list[Path]:
    return sorted(out_dir.glob(f"{stem}.shard-*-of-*.csv"))


def read_manifest(out_dir: str | os.PathLike) -> dict[str, list[dict]]:
    """Every complete manifest row in an output folder (``manifest.csv`` first, then the shard
    manifests in name order), grouped by output path. Files written before the ``ratio``
    column was renamed ``beta`` are read too, their ``ratio`` given as ``beta``."""
    out = Path(out_dir)
    by_output: dict[str, list[dict]] = {}
    for path in [out / "manifest.csv", *_shard_files(out, "manifest")]:
        rows = read_csv(path, MANIFEST_COLUMNS)
        if not rows:  # a manifest from before the rename: its "ratio" column is beta (alpha = 1)
            rows = [{("beta" if c == "ratio" else c): v for c, v in row.items()}
                    for row in read_csv(path, _OLD_MANIFEST_COLUMNS)]
        for row in rows:
            by_output.setdefault(row["output"], []).append(row)
    return by_output


def csv_text(columns: Sequence[str], rows: Sequence[Mapping]) -> str:
    """One of our CSV files as text: a header of ``columns``, then ``rows`` (missing cells
    empty, every cell through :func:`cell_out`), CRLF row ends."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator=_CRLF)
    w.writeheader()
    for row in rows:
        w.writerow({c: cell_out(row.get(c, "")) for c in columns})
    return buf.getvalue()


def _fingerprint(out: Path) -> list[tuple[str, int]]:
    files = _shard_files(out, "manifest") + _shard_files(out, "skipped")
    fp = []
    for f in files:
        try:
            fp.append((f.name, f.stat().st_size))
        except OSError:
            pass
    return fp


def rebuild_manifests(out_dir: str | os.PathLike, inputs: Sequence[str] | None = None) -> tuple[int, int]:
    """Rebuild ``manifest.csv`` and ``skipped.csv`` from the shard files (and the previous
    ``manifest.csv``/``skipped.csv``), atomically.

    manifest.csv: one row per output file that exists (the last complete row seen for it),
    sorted by output path. skipped.csv: one row per skipped input (last reason seen), sorted,
    leaving out inputs that now have outputs and, when ``inputs`` is given, paths that are no
    longer inputs. If a shard file grows while this runs (another shard appending), it is
    rebuilt again, so the shard that finishes last leaves complete files.

    Returns:
        (rows in manifest.csv, rows in skipped.csv).
    """
    out = Path(out_dir)
    keep = {shown_name(p) for p in inputs} if inputs is not None else None
    for _ in range(20):
        before = _fingerprint(out)
        rows = {}
        for output, found in read_manifest(out).items():
            if (out / output).is_file():
                rows[output] = found[-1]
        done_sources = {r["source"] for r in rows.values()}
        skipped = {}
        for path in [out / "skipped.csv", *_shard_files(out, "skipped")]:
            for row in read_csv(path, SKIPPED_COLUMNS):
                if row["path"] not in done_sources and (keep is None or row["path"] in keep):
                    skipped[row["path"]] = row
        outputs.write_text_atomic(csv_text(MANIFEST_COLUMNS, [rows[k] for k in sorted(rows)]), out / "manifest.csv")
        outputs.write_text_atomic(csv_text(SKIPPED_COLUMNS, [skipped[k] for k in sorted(skipped)]),
                                 out / "skipped.csv")
        if _fingerprint(out) == before:
            break
    return len(rows), len(skipped)


class AppendLog:
    """One shard's CSV log, opened for appending: a header when new, one flushed and fsynced
    row per call. Only the holder of the shard's :class:`ShardLock` opens it."""

    def __init__(self, path: Path, columns: Sequence[str]):
        self.columns = list(columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "a", encoding="utf-8", newline="")
        if self.fh.tell() == 0:
            self.fh.write(csv_text(columns, []))
        elif not path.read_bytes().endswith(b"\n"):
            self.fh.write("\n")  # an interrupted row stays alone on its (dropped) line
        self._sync()
        self.writer = csv.DictWriter(self.fh, fieldnames=self.columns, lineterminator=_CRLF)

    def _sync(self):
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def append(self, row: Mapping) -> None:
        """Write one row (missing cells empty), flushed and fsynced."""
        self.writer.writerow({c: cell_out(row.get(c, "")) for c in self.columns})
        self._sync()

    def close(self) -> None:
        """Close the file (harmless when closed already)."""
        if not self.fh.closed:
            self.fh.close()


class ShardLock:
    """The locks of one shard of an output folder, held while a run writes there: one folder is
    written by one shard plan at a time (shards of that plan, ``I/N`` for one N, run side by
    side), and each shard by one run.

    * ``.lock.shard-I-of-N``: exclusive (``flock``), so a second run of the same shard (a shard
      restarted while its old process still runs) is refused instead of overwriting the first
      one's images and logs;
    * ``.lock.plan-of-N``: shared by every shard of the plan; a run of another plan (a plain run
      beside ``--shard 0/2``: each numbers the inputs its own way and would overwrite the other's
      images) tries to lock it exclusively and is refused when it cannot;
    * ``.lock.folder``: taken for the moment of these checks (and of ``while_held``), so two runs
      starting at once cannot both find the folder free.

    The operating system releases them when the process ends, also when it is killed, so there
    is never a stale lock to remove by hand; the files stay (removing one while another process
    opens it would let two writers lock two different files).

    Raises (on :meth:`acquire`):
        AugmentError: the shard is taken, or another plan writes there (one line naming it).
    """

    def __init__(self, out_dir: Path, shard: Shard):
        self.folder, self.shard = Path(out_dir), shard
        self.path = self.folder / f".lock.{shard.tag}"
        self._held: list = []

    def acquire(self, while_held: Callable[[], None] | None = None, wait: float = 60.0) -> "ShardLock":
        """Take the locks, then call ``while_held`` (e.g. a check of the folder's settings)
        before other runs may start; ``wait``: seconds to wait for another run's check."""
        self.folder.mkdir(parents=True, exist_ok=True)
        mutex = open(self.folder / ".lock.folder", "a+b")
        try:
            deadline = time.monotonic() + wait
            while not _try_lock(mutex):
                if time.monotonic() > deadline:
                    raise AugmentError(f"another augment run is starting in {self.folder} and does not finish "
                                       "its checks; try again")
                time.sleep(0.05)
            n = self.shard.count
            for path in self.folder.glob(".lock.plan-of-*"):
                other = re.fullmatch(r"\.lock\.plan-of-(\d+)", path.name)
                if other and int(other.group(1)) != n:
                    with open(path, "a+b") as fh:
                        if not _try_lock(fh, span=int(other.group(1))):
                            raise AugmentError(_plan_clash(self.folder, int(other.group(1)), self.shard))
            for path, shared in ((self.path, False), (self.folder / f".lock.plan-of-{n}", True)):
                self._held.append(open(path, "a+b"))
                if not _try_lock(self._held[-1], shared=shared, at=self.shard.index):
                    which = "" if n == 1 else f" (shard {self.shard})"
                    raise AugmentError(f"another augment run is writing into {self.folder}{which}; wait for it to "
                                       "finish or stop it, or use another output folder")
            if while_held is not None:
                while_held()
        except BaseException:
            self.release()
            raise
        finally:
            mutex.close()  # closing releases the lock
        return self

    def release(self) -> None:
        """Release the locks (harmless when released already)."""
        while self._held:
            self._held.pop().close()  # closing releases the lock


def _plan_clash(folder: Path, other: int, shard: Shard) -> str:
    them = "a plain run (no --shard)" if other == 1 else f"a run in {other} shards (--shard I/{other})"
    join = "run without --shard" if other == 1 else f"join it with --shard I/{other}"
    me = "this plain run" if shard.count == 1 else f"--shard {shard}"
    return (f"{them} is writing into {folder}; {me} would number the inputs another way and overwrite its images "
            f"(one output folder takes one shard plan at a time): wait for it to finish, {join}, or use another "
            "output folder")


def _try_lock(fh, shared: bool = False, at: int = 0, span: int = 1) -> bool:
    """Lock an open lock file without waiting: exclusively, or shared (``flock``'s LOCK_SH);
    False when another open file holds a conflicting lock. Windows has no shared locks: there a
    shared holder locks byte ``at`` alone and an exclusive one the bytes ``0 .. span - 1``."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        fh.seek(at if shared else 0)
        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1 if shared else span)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
