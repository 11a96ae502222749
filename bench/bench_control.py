"""Benchmark: coarse-to-fine against single-scale style transfer, and Deep Photo Style Transfer.

Prints figures; asserts nothing about time. Every configuration runs in a fresh child process
(this script re-invoked with ``--one NAME``), so its peak RSS is its own; all use the same
images (content ``sample:astronaut``, style ``sample:coffee`` for the photographic runs,
``sample:gravel`` for the plain ones) and the same weights (untrained, seed 0, unless
``--weights FILE``), the same optimizer (L-BFGS, the default) and precision ("auto": bf16 on
CPUs with AVX512-BF16 or AMX).

Part 1, ``--sizes 512,1024`` (time to a given loss):

* ``single S``: one scale at S px, ``--single-steps`` steps.
* ``multi S``: ``scales=0`` (sqrt(2) steps from ``--start-size``, default 128) with
  ``--multi-steps`` steps at the first scale and half as many at each next one.

Both record eq. (7) at S px after every step of their last scale, with seconds since the run
began (set-up of every scale included). The table gives, for the single-scale run's losses
after 25 %, 50 % and 100 % of its steps, the time each run first reached that loss.

Part 2, ``--photo 512`` (Deep Photo Style Transfer, Luan et al. 2017):

* ``step costs``: seconds per L-BFGS step at 512 px for the plain loss, + photorealism
  regularizer (lambda 1e4), + semantic regions (auto masks, k=3), and both.
* ``dpst``: the whole algorithm (photorealism + semantic regions) coarse-to-fine from
  ``--photo-start`` px with ``--photo-steps`` steps at the first scale: wall time including the
  Matting Laplacians and masks, its final loss, and the single-scale steps that 5 minutes buy.

Usage::

    .venv/bin/python bench/bench_control.py                      # both parts (about 25 minutes)
    .venv/bin/python bench/bench_control.py --sizes 128 --single-steps 6 --multi-steps 6 --photo 0   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import harness
from harness import ROOT, log

TAG = "BENCH_RESULT "


def _model(weights: str):
    from explorer.nets.models import load_model

    return load_model("vgg19", weights=weights, device="cpu")


def _images(style_name: str):
    from explorer.io import samples

    return samples.load_sample("astronaut").image, samples.load_sample(style_name).image


def _settings(**kw):
    from explorer.style.settings import StyleSettings

    return StyleSettings(**kw)


def run_transfer(cfg: dict) -> dict:
    """One ControlledTransfer; returns the history of the last scale (seconds, total)."""
    from explorer.style import control

    model = _model(cfg["weights"])
    content, style = _images(cfg["style"])
    settings = _settings(**cfg["settings"])
    t0 = time.perf_counter()
    run = control.ControlledTransfer(model, content, [(style, 1.0)], settings)
    for _ in run:
        pass
    wall = time.perf_counter() - t0
    res = run.result()
    last = max(h.get("scale", 1) for h in res.history)
    curve = [(h["seconds"], h["total"]) for h in res.history if h.get("scale", 1) == last]
    return {"wall": wall, "curve": curve, "final": res.history[-1]["total"], "plan": settings.scale_plan(),
            "precision": res.precision, "regions": len(run.regions.names) if run.regions is not None else 0,
            "final_losses": res.final_losses}


def step_costs(cfg: dict) -> dict:
    """Seconds per step at one size for the plain loss and the DPST terms (after 2 warm-up steps)."""
    from explorer.style import control

    model = _model(cfg["weights"])
    content, style = _images(cfg["style"])
    out = {}
    variants = {"plain": {}, "photo": {"photo_lambda": 1e4}, "regions": {"masks": "auto"},
                "photo+regions": {"photo_lambda": 1e4, "masks": "auto"}}
    for name, extra in variants.items():
        settings = _settings(size=cfg["size"], steps=cfg["steps"] + 2, **extra)
        t0 = time.perf_counter()
        run = control.ControlledTransfer(model, content, [(style, 1.0)], settings)
        it = iter(run)
        next(it)
        setup = time.perf_counter() - t0  # masks, targets, Laplacian, first evaluation
        next(it)
        next(it)
        t1 = time.perf_counter()
        for _ in range(cfg["steps"]):
            next(it)
        out[name] = {"s_per_step": (time.perf_counter() - t1) / cfg["steps"], "setup_s": setup}
        it.close()
    from explorer.io import images
    from explorer.style import matting

    c = images.to_tensor(images.resize_long_side(content, cfg["size"]))
    t0 = time.perf_counter()
    matting.MattingLaplacian(c[0])
    out["laplacian_build_s"] = time.perf_counter() - t0
    return out


def child(name: str, cfg: dict) -> None:
    import torch

    torch.manual_seed(0)
    fn = {"transfer": run_transfer, "costs": step_costs}[cfg["kind"]]
    res = fn(cfg)
    res["peak_rss_mb"] = harness.PeakRSS.process_peak_mb()  # the whole child: loading included
    print(TAG + json.dumps(res), flush=True)


def spawn(name: str, cfg: dict) -> dict:
    log(f"-- {name}")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, "--one", name, "--cfg", json.dumps(cfg)], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode != 0:
        log(p.stderr[-3000:])
        raise SystemExit(f"{name} failed")
    line = [l for l in p.stdout.splitlines() if l.startswith(TAG)][-1]
    res = json.loads(line[len(TAG):])
    log(f"   {time.perf_counter() - t0:.1f} s")
    return res


def first_time(curve, target):
    for t, loss in curve:
        if loss <= target:
            return t
    return None


def fmt_t(t):
    return "not reached" if t is None else f"{t:.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one")
    ap.add_argument("--cfg")
    ap.add_argument("--sizes", default="512,1024", help="part 1 sizes (empty: skip)")
    ap.add_argument("--single-steps", type=int, default=40)
    ap.add_argument("--multi-steps", type=int, default=100)
    ap.add_argument("--start-size", type=int, default=128)
    ap.add_argument("--photo", type=int, default=512, help="part 2 size (0: skip)")
    ap.add_argument("--photo-start", type=int, default=256)
    ap.add_argument("--photo-steps", type=int, default=200)
    ap.add_argument("--cost-steps", type=int, default=3)
    ap.add_argument("--weights", default="untrained")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.one:
        child(args.one, json.loads(args.cfg))
        return
    log(f"{harness.machine_line()}; weights {args.weights}")
    out: dict = {"weights": args.weights}
    for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
        single = spawn(f"single {size}", {"kind": "transfer", "weights": args.weights, "style": "gravel",
                                          "settings": {"size": size, "steps": args.single_steps}})
        multi = spawn(f"multi {size}", {"kind": "transfer", "weights": args.weights, "style": "gravel",
                                        "settings": {"size": size, "steps": args.multi_steps, "scales": 0,
                                                     "start_size": args.start_size}})
        rows = []
        for frac in (0.25, 0.5, 1.0):
            k = max(1, round(frac * args.single_steps))
            target = single["curve"][k][1]
            rows.append({"what": f"single scale after {k} steps", "loss": target,
                         "single_s": first_time(single["curve"], target),
                         "multi_s": first_time(multi["curve"], target)})
        rows.append({"what": "coarse-to-fine's final", "loss": multi["final"],
                     "single_s": first_time(single["curve"], multi["final"]), "multi_s": multi["curve"][-1][0]})
        out[f"size_{size}"] = {"single": {k: single[k] for k in ("wall", "final", "peak_rss_mb", "precision")},
                               "multi": {k: multi[k] for k in ("wall", "final", "peak_rss_mb", "plan")},
                               "time_to_loss": rows}
        print(f"\n## {size} px: single scale ({args.single_steps} steps) vs coarse-to-fine "
              f"{' -> '.join(f'{s}x{n}' for s, n in multi['plan'])} ({single['precision']})")
        print("| loss at the final size (eq. 7) | single scale reaches it at | coarse-to-fine reaches it at |\n|---|---|---|")
        for r in rows:
            print(f"| {r['loss']:.4g} ({r['what']}) | {fmt_t(r['single_s'])} | {fmt_t(r['multi_s'])} |")
        at = multi["curve"][-1][0]
        same_time = min((loss for t, loss in single["curve"] if t <= at), default=None)
        if same_time is not None:
            print(f"at {at:.1f} s (when coarse-to-fine ends) the single-scale run's loss is {same_time:.4g}")
        print(f"whole runs: single {single['wall']:.1f} s (final {single['final']:.4g}, peak {single['peak_rss_mb']:.0f} MB); "
              f"coarse-to-fine {multi['wall']:.1f} s (final {multi['final']:.4g}, peak {multi['peak_rss_mb']:.0f} MB)")
    if args.photo:
        costs = spawn("step costs", {"kind": "costs", "weights": args.weights, "style": "coffee",
                                     "size": args.photo, "steps": args.cost_steps})
        dpst = spawn("dpst", {"kind": "transfer", "weights": args.weights, "style": "coffee",
                              "settings": {"size": args.photo, "steps": args.photo_steps, "scales": 0,
                                           "start_size": args.photo_start, "photo_lambda": 1e4,
                                           "masks": "auto"}})
        out["photo"] = {"costs": costs, "dpst": {k: dpst[k] for k in ("wall", "final", "peak_rss_mb", "plan",
                                                                      "regions", "final_losses", "precision")}}
        print(f"\n## Deep Photo Style Transfer at {args.photo} px ({dpst['precision']})")
        print("| loss terms | s/step | set-up s |\n|---|---|---|")
        for k in ("plain", "photo", "regions", "photo+regions"):
            print(f"| {k} | {costs[k]['s_per_step']:.2f} | {costs[k]['setup_s']:.2f} |")
        print(f"Matting Laplacian build: {costs['laplacian_build_s']:.2f} s")
        full = costs["photo+regions"]["s_per_step"]
        print(f"whole DPST, coarse-to-fine {' -> '.join(f'{s}x{n}' for s, n in dpst['plan'])}: "
              f"{dpst['wall']:.1f} s, {dpst['regions']} regions, final losses {dpst['final_losses']}, "
              f"peak {dpst['peak_rss_mb']:.0f} MB")
        print(f"single scale at {args.photo} px: 1000 steps would take about {1000 * full / 60:.0f} min; "
              f"5 minutes buy {300 / full:.0f} steps")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
