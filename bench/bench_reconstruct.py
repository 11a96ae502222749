"""The reconstruction figure (explorer.style.reconstruct) on the real VGG19: seconds per picture
and in total, and the relative loss each picture reached after 10, 20, 40, ... steps, so that
the default steps per picture can be judged (converged enough, within the time asked).

Usage (from the repository root; needs ../shared or EXPLORER_SHARED)::

    python bench/bench_reconstruct.py [--steps 80] [--size 128] [--json out.json]

Prints one line per picture and the total; never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("EXPLORER_SHARED") or ROOT.parent / "shared")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--weights", default=str(SHARED / "weights" / "vgg19-caffe-features-q8.pth"))
    ap.add_argument("--content", default=str(SHARED / "images" / "tubingen.jpg"))
    ap.add_argument("--style", default=str(SHARED / "images" / "starry_night.jpg"))
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    import torch

    from explorer.io.images import load_image
    from explorer.nets.models import load_model
    from explorer.style.reconstruct import ReconstructSettings, Reconstruction

    model = load_model("vgg19", weights=args.weights, device="cpu")
    run = Reconstruction(model, load_image(args.content).image, load_image(args.style).image,
                         ReconstructSettings(size=args.size, steps=args.steps, precision="fp32"))
    start = time.perf_counter()
    for _ in run:
        pass
    total = time.perf_counter() - start
    result = run.result()
    marks = [k for k in (0, 10, 20, 30, 40, 60, 80, 120, 160) if k <= args.steps]
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.size} px, {args.steps} steps per picture, {model.weights.label}")
    print("picture".ljust(46) + "seconds  " + "  ".join(f"loss@{k:<4}" for k in marks))
    rows = []
    for p in result.pictures:
        print(f"{p.kind} {p.label}".ljust(46) + f"{p.seconds:7.1f}  " + "  ".join(f"{p.losses[k]:<9.3g}" for k in marks))
        rows.append({"kind": p.kind, "layers": list(p.layers), "seconds": p.seconds,
                     "loss_at": {k: p.losses[k] for k in marks}, "relative_error": p.relative_error})
    print(f"total {total:.1f} s for {len(result.pictures)} pictures")
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "steps": args.steps, "total_seconds": total,
                                               "pictures": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
