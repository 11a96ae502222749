"""Benchmark: time and memory of decoding one large upload, the way the CLI and the pages do.

The image is generated at run time in a temporary folder (never committed): by default a 16-bit
grayscale 9400 x 9400 PNG of about 194 kB (a gradient: it compresses to almost nothing and
decodes to 177 MB), the file that once took a server from 1.3 to 3.5 GB. Each configuration runs
in a fresh child process: it imports the explorer, reads the file, frees what it can
(``gc.collect`` and glibc's ``malloc_trim``), resets the peak resident set size
(``/proc/self/clear_refs``), takes the resident set size as the baseline and decodes:

* ``cli``: ``explorer.io.images.load_image(data)``, the full-size image (the command line);
* ``page``: what a page keeps, ``load_image(data, max_side=2048, memory_budget=...)`` and then
  glibc's ``malloc_trim``, as ``explorer.app.pickers.decode_upload`` does (a checkout without
  ``max_side`` decodes the full image, as its pages did).

Printed per configuration: seconds, the peak resident set size above the baseline, what is
still held with the image kept, what is left after the image is dropped (all MB), and the
image's size. ``--tree PATH`` measures another checkout of the project (for a before/after
comparison in one run: ``git worktree add /tmp/before HEAD~1``). Asserts nothing.

Usage (from the repository root)::

    .venv/bin/python bench/bench_decode.py
    .venv/bin/python bench/bench_decode.py --side 4000 --tree /tmp/before

The last stdout line starts with ``JSON `` and holds every figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
from harness import ROOT

PAGE_SIDE = 2048  # explorer.app.pickers.UPLOAD_MAX_SIDE


def make_png(path: Path, side: int) -> None:
    """A 16-bit grayscale ``side`` x ``side`` PNG: a horizontal gradient (every row alike)."""
    import numpy as np
    from PIL import Image

    row = (np.arange(side, dtype=np.int64) * 7 % 65536).astype(np.uint16)
    Image.fromarray(np.broadcast_to(row, (side, side)).copy()).save(path, optimize=True)


def one(tree: str, config: str, path: str) -> dict:
    """In a child: decode ``path`` as ``config`` says with the explorer of ``tree``."""
    sys.path.insert(0, tree)
    from explorer.io import images

    data = Path(path).read_bytes()
    mem = harness.PeakRSS().start()  # collects, trims, resets the peak (VmHWM) to the resident set
    if not mem.reset_ok:
        raise SystemExit("cannot reset the peak RSS here (/proc/self/clear_refs); Linux only")
    base = mem.before_mb
    start = time.perf_counter()
    kwargs = {"max_side": PAGE_SIDE, "memory_budget": 1 << 40} if config == "page" else {}
    try:
        loaded = images.load_image(data, **kwargs)
    except TypeError:  # a checkout without max_side: its pages kept the full image
        loaded, kwargs = images.load_image(data), {}
    if kwargs:
        harness.malloc_trim()  # decode_upload hands what decoding freed back to the system
    seconds = time.perf_counter() - start
    peak, held = mem.stop()["run_growth_mb"], harness.proc_status_mb("VmRSS") - base
    size = loaded.image.size
    del loaded
    gc.collect()
    harness.malloc_trim()
    return {"config": config, "seconds": round(seconds, 2), "peak_mb": round(peak), "held_mb": round(held),
            "after_mb": round(harness.proc_status_mb("VmRSS") - base), "size": list(size)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=9400, help="width and height of the generated PNG, px")
    ap.add_argument("--tree", default=str(ROOT), help="checkout of the project to measure")
    ap.add_argument("--one", nargs=2, metavar=("CONFIG", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print("JSON " + json.dumps(one(args.tree, *args.one)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        path = Path(tmp) / f"gray16-{args.side}.png"
        make_png(path, args.side)
        print(harness.machine_line())
        print(f"{path.name}: {path.stat().st_size / 1e3:.0f} kB, 16-bit grayscale {args.side} x {args.side}; "
              f"tree {args.tree}")
        print(f"{'config':6} {'seconds':>8} {'peak MB':>8} {'held MB':>8} {'after MB':>9}  size")
        for config in ("cli", "page"):
            out = subprocess.run([sys.executable, __file__, "--tree", args.tree, "--one", config, str(path)],
                                 capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1][5:])
            rows.append(row)
            print(f"{config:6} {row['seconds']:8.1f} {row['peak_mb']:8d} {row['held_mb']:8d} {row['after_mb']:9d}  "
                  f"{row['size'][0]} x {row['size'][1]}")
    print("JSON " + json.dumps({"side": args.side, "tree": args.tree, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
