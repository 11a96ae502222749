"""Benchmark: the project's Gatys style transfer against the tutorial reference loop.

Prints figures; asserts nothing about time. One run measures, per image size, on the same
images (scikit-image's "astronaut" as content, "gravel" as style) and the same weights file:

* ``reference``: the PyTorch tutorial's L-BFGS loop, ``harness.tutorial_reference`` (one
  ``LBFGS(max_iter=N)`` step, no clamping, from the content image) on torchvision's VGG19
  ``features`` (fp32, contiguous), with the objective of ``StyleSettings()`` (its layers and w_l,
  content weight 1, its style weight) and the losses of ``explorer.optim.losses`` (or, with
  ``--ref-losses plain``, the same definitions written the tutorial's way in the harness).
* ``project``: ``explorer.style.transfer.StyleTransfer`` with ``StyleSettings(size=S, steps=N,
  optimizer="lbfgs", precision="fp32" | "bf16")``, channels_last "auto" (and "off" for fp32
  with ``--cl-off``).
* ``bare``: VGG19 ``features`` up to relu5_1 alone, forward + backward to an input that
  requires grad (weights frozen), fp32 and bf16 autocast, contiguous and channels_last input:
  the floor a style step is compared with.

Every configuration runs in a fresh child process (``style_children.py``, through a hidden
``--one CONFIG`` flag), so each one's peak memory (``harness.PeakRSS``) is its own. The final
image of every run is then scored in another child by one function: Gatys et al. 2016 eq. (7)
evaluated in fp32 with the project's fp32 loss code. The table is printed by ``style_report.py``.

Usage (from the repository root)::

    .venv/bin/python bench/bench_style.py                      # sizes 256,512, 100 steps
    .venv/bin/python bench/bench_style.py --quick              # smoke test: 64 px, 5 steps
    .venv/bin/python bench/bench_style.py --sizes 256 --json bench/out/style-256.json

See bench/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import harness
import style_report
from harness import OUT_DIR, ROOT, log
from style_children import RESULT_TAG

DEFAULT_WEIGHTS = OUT_DIR / "vgg19-untrained.pth"


def spawn(cfg: dict, threads: int | None) -> dict:
    """Run one configuration in a fresh interpreter; return its result dict (or an error), with
    ``other_cpu_load``: the CPUs other processes used meanwhile."""
    if threads:
        cfg = {**cfg, "threads": threads}
    other = harness.OtherCPU(children=True).start()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(cfg)],
                          stdout=subprocess.PIPE, stderr=None, text=True, cwd=str(ROOT))
    wall, load = time.perf_counter() - t0, other.stop()
    log(f"  ({cfg['kind']} child: {wall:.1f} s; other processes used {load} CPUs meanwhile)")
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            out = json.loads(line[len(RESULT_TAG):])
            out["other_cpu_load"] = load
            return out
    tail = proc.stdout.strip().splitlines()[-3:]
    return {"error": f"child {cfg['kind']} exited with {proc.returncode}: {' | '.join(tail)}"}


def spawn_measured(cfg: dict, args) -> dict:
    """spawn(), after waiting for a quiet machine (--wait-quiet), again up to --retries times
    while other processes used more than BUSY_LIMIT CPUs during the run. The last attempt is
    kept (its final image is the one on disk)."""
    r: dict = {}
    for attempt in range(1 + max(0, args.retries)):
        harness.wait_quiet(args.wait_quiet)
        r = spawn(cfg, args.threads)
        r["attempts"] = attempt + 1
        other = r.get("other_cpu_load")
        if "error" in r or other is None or other <= harness.BUSY_LIMIT:
            break
        if attempt < args.retries:
            log(f"  other processes used {other} CPUs during this run; running it again")
    return r


def bench_size(size: int, args, weights: str) -> dict:
    steps = args.steps
    tag = f"{size}px-{steps}steps"
    res: dict = {"size": size, "steps": steps}
    log(f"[{size}px] bare network forward+backward")
    bare = spawn_measured({"kind": "bare", "size": size, "weights": weights, "iters": args.bare_iters,
                           "warmup": args.bare_warmup}, args)
    res["bare"] = bare.get("bare")
    res["bare_meta"] = {k: v for k, v in bare.items() if k != "bare"}
    runs = {"reference": {"kind": "ref", "ref_losses": args.ref_losses},
            "project_fp32": {"kind": "proj", "precision": "fp32", "channels_last": "auto"},
            "project_bf16": {"kind": "proj", "precision": "bf16", "channels_last": "auto"}}
    if args.cl_off:
        runs["project_fp32_cl_off"] = {"kind": "proj", "precision": "fp32", "channels_last": "off"}
    images = {}
    res["runs"] = {}
    for name, cfg in runs.items():
        log(f"[{size}px] {name}: {steps} steps")
        save = str(OUT_DIR / f"final-{name}-{tag}.pt")
        r = spawn_measured({**cfg, "size": size, "steps": steps, "weights": weights, "save": save}, args)
        res["runs"][name] = r
        if "error" not in r:
            images[name] = save
            log(f"[{size}px] {name}: {r['seconds']:.2f} s, {r['evals']} evaluations")
        else:
            log(f"[{size}px] {name}: {r['error']}")
    log(f"[{size}px] scoring final images (fp32, project loss code)")
    scores = spawn({"kind": "score", "size": size, "weights": weights, "images": images}, args.threads)
    res["scores"] = scores.get("scores", {})
    if "error" in scores:
        res["score_error"] = scores["error"]

    style_report.derive(res)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256,512", help="comma-separated working sizes in px (default 256,512)")
    p.add_argument("--steps", type=int, default=100, help="closure evaluations / steps per run (default 100)")
    p.add_argument("--weights", default=None,
                   help="a VGG19 state_dict file used by every configuration (default: create "
                        f"{DEFAULT_WEIGHTS.relative_to(ROOT)} with untrained seeded weights)")
    p.add_argument("--ref-losses", choices=("project", "plain"), default="project",
                   help="losses of the reference loop: explorer.optim.losses (default) or the same "
                        "definitions written the tutorial's way in bench/harness.py (unaffected by changes to "
                        "explorer.optim.losses)")
    p.add_argument("--cl-off", action="store_true", help="also run the project fp32 with channels_last off")
    p.add_argument("--bare-iters", type=int, default=5, help="timed iterations of the bare network (default 5)")
    p.add_argument("--bare-warmup", type=int, default=2, help="warm-up iterations of the bare network (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in every child")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="before each timed configuration, wait up to this long for other processes to "
                        f"use under {harness.BUSY_LIMIT} CPUs (default 0: do not wait)")
    p.add_argument("--retries", type=int, default=0,
                   help="run a timed configuration again (up to this many times) when other processes "
                        f"used more than {harness.BUSY_LIMIT} CPUs while it ran (default 0)")
    p.add_argument("--json", default=None, help="also write all figures, per-step histories included, here")
    p.add_argument("--quick", action="store_true", help="smoke test: --sizes 64 --steps 5 --bare-iters 2 --bare-warmup 1")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one is not None:
        import style_children

        return style_children.run_child_main(args.one)

    if args.quick:
        args.sizes, args.steps, args.bare_iters, args.bare_warmup = "64", 5, 2, 1
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.steps < 1 or not sizes:
        p.error("need at least one size and --steps >= 1")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if args.weights:
        weights = str(Path(args.weights).expanduser().resolve())
        kind = "weights from file given with --weights"
    else:
        weights = str(DEFAULT_WEIGHTS)
        kind = "untrained: torchvision vgg19() default init under torch.manual_seed(0)"
    log("setup: weights and environment")
    env = spawn({"kind": "setup", "weights": weights, "make_weights": not args.weights, "weights_kind": kind},
                args.threads)
    if "error" in env:
        log(env["error"])
        return 1

    # the parent never imports torch (children report image sizes and settings), so nothing
    # of it can leak into the children's peak-RSS figures
    results = []
    t_all = time.perf_counter()
    for size in sizes:
        results.append(bench_size(size, args, weights))
    log(f"done in {time.perf_counter() - t_all:.0f} s")
    style_report.print_report(env, results, args)
    line = style_report.summary(env, results)
    print()
    print("JSON " + json.dumps(line, separators=(",", ":")))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"env": env, "sizes": results}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
