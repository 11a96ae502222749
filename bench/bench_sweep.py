"""Benchmark: seconds per cell of a 3 x 3 parameter sweep (explorer.batch.sweep.Sweep).

Prints figures; asserts nothing about time. On the same images (scikit-image's "astronaut" as
content, "gravel" as style, scaled to --size px) and the same untrained VGG19 (torchvision init
under torch.manual_seed(0)), it times, for Adam and L-BFGS:

* ``ratio x seed``: 3 content/style ratios alpha/beta (log_alpha_beta(1e-9, 1e-5, 3)) x 3 seeds, init noise.
  Adam: ONE batched run of 9 images; L-BFGS: 9 runs one after another.
* ``steps x seed``: iterations (10, 25, 50 for 50 steps) x 3 seeds, init noise. The iterations
  are snapshots of one run per seed group. Adam: ONE batched run of 3 images; L-BFGS: 3 runs.
* with ``--sequential`` (default on): the Adam sweeps again with ``max_batch=1`` (every image
  its own run), the reference the batching is compared with.

Every sweep starts after a short warm-up run in the same process (oneDNN primitives are built
on first use). Seconds per cell = the sweep's wall clock / 9. Also printed: the runs and batch
sizes of the plan, seconds per optimizer step and per image-step, CPU seconds (process time:
with 2 threads about 2x the wall clock on a quiet machine), ``other``: how many CPUs other
processes kept busy meanwhile (from /proc/stat; above about 0.25 the figures are unreliable,
since with 2 threads on 2 cores every busy neighbour stalls the convolutions), and the load
average before and after each sweep.

Usage (from the repository root)::

    python bench/bench_sweep.py                       # 128 px, 50 steps (a few minutes on 2 cores)
    python bench/bench_sweep.py --size 64 --steps 6   # smoke test
    python bench/bench_sweep.py --json bench/out/sweep.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: no busy-waiting threads

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import harness  # noqa: E402

import torch  # noqa: E402

from explorer.batch import sweep as batch, sweep_axes  # noqa: E402
from explorer.io.samples import load_sample  # noqa: E402
from explorer.nets.models import load_model  # noqa: E402
from explorer.core.devices import precision_name, resolve_precision
from explorer.style.transfer import run_style_transfer  # noqa: E402
from explorer.style.gatys import prepare_images
from explorer.style.settings import StyleSettings


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes of the machine have used (from /proc/stat), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(v) - v[3] - (v[4] if len(v) > 4 else 0)) / os.sysconf("SC_CLK_TCK")


def time_sweep(model, content, style_img, settings, axis1, axis2, max_batch) -> dict:
    sweep = batch.Sweep(model, content, style_img, settings, axis1, axis2, max_batch=max_batch)
    load_before = loadavg()
    b0 = busy_cpu_seconds()
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in sweep:
        pass
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    b1 = busy_cpu_seconds()
    other = None if b0 is None or b1 is None else max(0.0, (b1 - b0 - cpu) / wall)
    cells = sweep.cells
    assert sweep.complete and len(cells) == 9
    image_steps = sum(r.batch * r.settings.steps for r in sweep.plan)
    opt_steps = sum(r.settings.steps for r in sweep.plan)
    return {
        "runs": len(sweep.plan),
        "batches": [r.batch for r in sweep.plan],
        "seconds": wall,
        "cpu_seconds": cpu,
        "s_per_cell": wall / len(cells),
        "s_per_step": wall / opt_steps,
        "s_per_image_step": wall / image_steps,
        "final_total_mean": sum(c.losses["total"] for c in cells) / len(cells),
        "other_cpus_busy": other,
        "load_before": load_before,
        "load_after": loadavg(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128, help="working size in px (default 128)")
    p.add_argument("--steps", type=int, default=50, help="optimizer steps per run (default 50)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="network precision (default auto)")
    p.add_argument("--no-sequential", action="store_true", help="skip the unbatched Adam reference sweeps")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model("vgg19", weights="untrained", device="cpu")
    content, style_img = prepare_images(load_sample("astronaut").image, load_sample("gravel").image, args.size)
    steps = args.steps
    snaps = sorted({max(1, round(steps / 5)), max(1, round(steps / 2)), steps})
    if len(snaps) < 3:
        snaps = [1, 2, 3] if steps >= 3 else snaps
    seeds = sweep_axes.SweepAxis("seed", (0, 1, 2))
    sweeps = {
        "ratio x seed": (sweep_axes.SweepAxis("alpha_beta", sweep_axes.log_alpha_beta(1e-9, 1e-5, 3)), seeds),
        "steps x seed": (sweep_axes.SweepAxis("steps", tuple(snaps)), seeds),
    }
    prec = precision_name(resolve_precision(args.precision, model.device))
    print(f"bench_sweep: 3 x 3 sweeps at {args.size} px ({tuple(content.shape[-2:])}), {steps} steps, untrained "
          f"VGG19, precision {prec}; {harness.machine_line()}")
    print(f"load average at start: {loadavg()}")

    warm = StyleSettings(size=args.size, steps=2, optimizer="adam", init="noise", precision=args.precision)
    run_style_transfer(model, content, style_img, warm)

    results = []
    configs = []
    for opt in ("adam", "lbfgs"):
        for name in sweeps:
            configs.append((opt, name, 9))
            if opt == "adam" and not args.no_sequential:
                configs.append((opt, name, 1))
    for opt, name, max_batch in configs:
        axis1, axis2 = sweeps[name]
        settings = StyleSettings(size=args.size, steps=steps, optimizer=opt, init="noise", precision=args.precision,
                                 preview_every=10_000)
        label = f"{opt:5s} {name}" + ("  (unbatched)" if max_batch == 1 else "")
        print(f"running {label} ...", file=sys.stderr, flush=True)
        r = time_sweep(model, content, style_img, settings, axis1, axis2, max_batch)
        r.update(optimizer=opt, sweep=name, max_batch=max_batch, label=label)
        results.append(r)

    hdr = f"{'sweep':<32}{'runs':>5}{'batches':>14}{'total s':>9}{'s/cell':>8}{'s/step':>8}{'s/img-step':>11}" \
          f"{'cpu s':>8}{'other':>7}  load before -> after"
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        b = ",".join(map(str, r["batches"])) if len(set(r["batches"])) > 1 else f"{len(r['batches'])}x{r['batches'][0]}"
        print(f"{r['label']:<32}{r['runs']:>5}{b:>14}{r['seconds']:>9.1f}{r['s_per_cell']:>8.2f}{r['s_per_step']:>8.3f}"
              f"{r['s_per_image_step']:>11.3f}{r['cpu_seconds']:>8.1f}"
              f"{r['other_cpus_busy'] if r['other_cpus_busy'] is not None else float('nan'):>7.2f}"
              f"  {r['load_before']} -> {r['load_after']}")
    by = {(r["optimizer"], r["sweep"], r["max_batch"]): r for r in results}
    for name in sweeps:
        a, s = by.get(("adam", name, 9)), by.get(("adam", name, 1))
        if a and s:
            print(f"Adam {name}: batched {a['s_per_cell']:.2f} s/cell vs unbatched {s['s_per_cell']:.2f} s/cell "
                  f"({s['seconds'] / a['seconds']:.2f}x)")
    print(f"load average at end: {loadavg()}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"size": args.size, "steps": steps, "precision": prec,
                                               "results": results}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
