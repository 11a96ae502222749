"""Benchmark: the memory estimate of ``explorer.memory`` against measured peak memory.

For each working size (default 128, 256 and 512 px) and precision (fp32, and bf16 where the CPU
has native bf16), a fresh child process loads untrained VGG19, warms up with a 64 px run, frees
what it can (``gc.collect`` and glibc's ``malloc_trim``), resets the peak resident set size
(``/proc/self/clear_refs``) and records the resident set size as the baseline, then runs one
style-transfer step (``StyleTransfer`` with ``steps=1``: one L-BFGS evaluation and update, then
the final forward pass, default layers, channels_last as the app uses it). The measured figure
is the peak resident set size during the run minus the baseline, i.e. what the run itself
needed on top of the loaded model; the estimate is ``explorer.memory.estimate`` for the same
run. Prints one row per run and the ratio estimate / measured; asserts nothing.

Usage (from the repository root)::

    .venv/bin/python bench/bench_memory.py                      # 128, 256, 512 px; fp32 and bf16
    .venv/bin/python bench/bench_memory.py --sizes 128,256 --precisions fp32 --json out.json

The last stdout line starts with ``JSON `` and holds every figure (the tests read it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _trim() -> None:
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def one(sizes: list[int], precision: str) -> list[dict]:
    """Run in a child: measure one style-transfer step at each size (ascending) and estimate it."""
    sys.path.insert(0, str(ROOT))
    import torch

    from explorer import models, style
    from explorer import style_settings

    model = models.load_model("vgg19", weights="untrained", device="cpu")
    warm = style_settings.StyleSettings(size=64, steps=1, precision=precision)
    for _ in style.StyleTransfer(model, torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), warm):
        pass
    return [_measure(model, size, precision) for size in sorted(sizes)]


def _measure(model, size: int, precision: str) -> dict:
    import torch

    from explorer import devices, memory, style, style_settings

    g = torch.Generator().manual_seed(0)
    content, style_img = torch.rand(1, 3, size, size, generator=g), torch.rand(1, 3, size, size, generator=g)
    settings = style_settings.StyleSettings(size=size, steps=1, precision=precision)
    _trim()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")  # reset the peak (VmHWM) to the current resident set size
    except OSError as exc:
        raise SystemExit(f"cannot reset the peak RSS here ({exc}); Linux only") from None
    base = _status("VmRSS")
    run = style.StyleTransfer(model, content, style_img, settings)
    for _ in run:
        pass
    peak = _status("VmHWM")
    dtype = devices.resolve_precision(precision, torch.device("cpu"))
    est = memory.estimate("vgg19", size, size, kind="style", dtype=dtype, optimizer="lbfgs", steps=1,
                          layers=[settings.content_layer, *settings.style_layers])
    return {"size": size, "precision": precision, "baseline_mb": base / 2**20, "measured_mb": (peak - base) / 2**20,
            "estimate_mb": est.total / 2**20, "ratio": est.total / max(1, peak - base),
            "parts_mb": {k: v / 2**20 for k, v in est.__dict__.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="128,256,512")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--one-process", action="store_true",
                    help="all sizes of a precision in one child, smallest first (faster; the tests use it)")
    ap.add_argument("--one", nargs=2, metavar=("SIZES", "PRECISION"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print("JSON " + json.dumps(one([int(v) for v in args.one[0].split(",")], args.one[1])))
        return 0
    sys.path.insert(0, str(ROOT))
    from explorer.devices import cpu_has_bf16

    precisions = [p for p in args.precisions.split(",") if p and (p != "bf16" or cpu_has_bf16())]
    rows = []
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    sizes = [v for v in args.sizes.split(",") if v]
    for p in precisions:
        for group in ([",".join(sizes)] if args.one_process else sizes):
            out = subprocess.run([sys.executable, __file__, "--one", group, p], capture_output=True, text=True,
                                 env=env, cwd=ROOT, timeout=600)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return out.returncode
            for r in json.loads(out.stdout.strip().splitlines()[-1][5:]):
                rows.append(r)
                print(f"{r['precision']:5s} {r['size']:5d} px  measured {r['measured_mb']:8.1f} MB  "
                      f"estimate {r['estimate_mb']:8.1f} MB  estimate/measured {r['ratio']:.2f}  "
                      f"(baseline after loading the model {r['baseline_mb']:.0f} MB)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    print("JSON " + json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
