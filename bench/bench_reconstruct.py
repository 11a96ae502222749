"""The reconstruction figure (explorer.style.reconstruct) on the real VGG19: wall and process-CPU
seconds per picture and in total, and the relative loss each picture reached after 0, 5, 10, 20,
... steps, so that the default steps per picture can be judged (converged enough, within the
time asked).

With no arguments it makes the default figure: the default pair (``DEFAULT_CONTENT`` and
``DEFAULT_STYLE``, bundled samples), 128 px, ``DEFAULT_STEPS`` L-BFGS steps per picture, fp32,
the network's default layers. ``--steps 160`` shows the loss curve past the default.

Usage (from the repository root; needs ../shared or EXPLORER_SHARED for the weights)::

    python bench/bench_reconstruct.py [--steps N] [--size 128] [--content REF --style REF] [--json out.json]

REF is a path or ``sample:NAME``. Prints the machine line, one line per picture and the total;
never asserts on time. Process-CPU seconds (``time.process_time``: all threads of this process)
are the figure to compare on a loaded machine; wall seconds only mean something on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import SHARED, machine, machine_line  # noqa: E402

MARKS = (0, 5, 10, 20, 30, 40, 60, 80, 120, 160, 240, 320)


def main() -> int:
    from explorer.style import reconstruct as rc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=rc.DEFAULT_STEPS)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--weights", default=str(SHARED / "weights" / "vgg19-caffe-features-q8.pth"))
    ap.add_argument("--content", default=rc.DEFAULT_CONTENT, help="path or sample:NAME")
    ap.add_argument("--style", default=rc.DEFAULT_STYLE, help="path or sample:NAME")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    import torch

    from explorer.io.samples import parse_image_ref
    from explorer.nets.models import load_model

    model = load_model("vgg19", weights=args.weights, device="cpu")
    run = rc.Reconstruction(model, parse_image_ref(args.content).image, parse_image_ref(args.style).image,
                            rc.ReconstructSettings(size=args.size, steps=args.steps, precision="fp32"))
    marks = [k for k in MARKS if k <= args.steps]
    shape = tuple(run.content.shape[-2:]), tuple(run.style.shape[-2:])
    print(machine_line(machine()))
    print(f"fp32; {args.size} px on the long side (content {shape[0][1]}x{shape[0][0]}, style {shape[1][1]}x{shape[1][0]}); "
          f"{args.steps} L-BFGS steps per picture; {model.weights.label}; {args.content} + {args.style}")
    print("picture".ljust(40) + " wall s   cpu s  rel.err  " + "  ".join(f"loss@{k:<4}" for k in marks), flush=True)
    rows: list[dict] = []

    def report_picture(cpu_s: float) -> None:  # a line as soon as a picture is finished
        p = run.pictures[len(rows)]
        at = {k: p.losses[k] for k in marks if k < len(p.losses)}
        print(f"{p.kind} {p.label}".ljust(40) + f"{p.seconds:7.1f} {cpu_s:7.1f}  {p.relative_error:7.4f}  "
              + "  ".join(f"{v:<9.3g}" for v in at.values()), flush=True)
        rows.append({"kind": p.kind, "layers": list(p.layers), "wall_seconds": p.seconds, "cpu_seconds": cpu_s,
                     "loss_at": at, "relative_error": p.relative_error, "layer_errors": p.layer_errors})

    t_cpu = time.process_time()
    wall0, cpu0 = time.perf_counter(), t_cpu
    for _ in run:
        if len(run.pictures) > len(rows):
            now = time.process_time()
            report_picture(now - t_cpu)
            t_cpu = now
    if len(run.pictures) > len(rows):
        report_picture(time.process_time() - t_cpu)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"total {wall:.1f} s wall, {cpu:.1f} s process CPU for {len(rows)} pictures "
          f"({wall / max(len(rows), 1):.1f} s wall, {cpu / max(len(rows), 1):.1f} s CPU per picture)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "size": args.size, "steps": args.steps,
                                               "content": args.content, "style": args.style, "wall_seconds": wall,
                                               "cpu_seconds": cpu, "pictures": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
