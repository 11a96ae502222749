"""Deep Dream benchmark: prints figures, never asserts on time.

Each configuration runs in a fresh interpreter (``--one JSON``) so its peak RSS is its own.

Rows:
* ``reference``: a plain single-scale, untiled loop the way the original notebook's
  ``make_step`` reads (fp32, contiguous, no octaves, no jitter), GoogLeNet to inception4c.
* ``step <model>``: seconds per step of :func:`explorer.dream.deepdream.dream_step` at 512 px for each
  network's default layer (fp32 and the project's ``auto`` precision).
* ``dream``: the whole default dream (GoogLeNet, inception4c, 4 octaves, scale 1.4, 10 steps
  per octave) at 512 px: wall-clock seconds (target: at most 4 s on the 2-core CPU).
* ``tiles``: one step at 1024 and 2048 px, tiled (tile 512) vs untiled: seconds and peak RSS
  (target: a tiled 2048 px dream within 2 GB).

Weights: untrained, seeded (``load_model(..., weights="untrained")``) unless ``--weights-dir``
points at torchvision's files (then set as EXPLORER_WEIGHTS_DIR); timings do not depend on
the values of the weights.

Usage: ``python bench/bench_dream.py [--quick] [--json out.json]``
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
from harness import ROOT


def one(cfg: dict) -> dict:
    sys.path.insert(0, str(ROOT))
    import random

    import torch

    from explorer.dream import deepdream as dream
    from explorer.dream import settings as dream_settings
    from explorer.nets.models import load_model
    from explorer.core.devices import resolve_precision

    torch.manual_seed(0)
    weights = "imagenet" if cfg.get("pretrained") else "untrained"
    model = load_model(cfg["model"], weights=weights, device="cpu")
    size = cfg["size"]
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    out: dict = {"config": cfg, "weights": model.weights.label}
    if cfg["kind"] == "reference":
        layer = dream_settings.DEFAULT_LAYERS[cfg["model"]]
        img = x.clone()

        def step(img):
            img = img.detach().requires_grad_(True)
            a = model.features(img, [layer])[layer]
            a.pow(2).mean().backward()
            g = img.grad
            return (img + 0.01 * g / g.abs().mean()).clamp(0, 1).detach()

        img = step(img)  # warm-up
        t = time.perf_counter()
        for _ in range(cfg["steps"]):
            img = step(img)
        out["s_per_step"] = (time.perf_counter() - t) / cfg["steps"]
    elif cfg["kind"] == "step":
        s = dream_settings.DreamSettings(model=cfg["model"], precision=cfg["precision"], octaves=1, tile=cfg.get("tile", 4096))
        obj = dream.build_objective(model, s)
        dtype = resolve_precision(s.precision, model.device)
        rng = random.Random(0)
        cl = s.channels_last == "auto"
        x1, _ = dream.dream_step(model, obj, x, s, rng, dtype, cl)  # warm-up
        t = time.perf_counter()
        for _ in range(cfg["steps"]):
            x1, _ = dream.dream_step(model, obj, x1, s, rng, dtype, cl)
        out["s_per_step"] = (time.perf_counter() - t) / cfg["steps"]
    elif cfg["kind"] == "dream":
        s = dream_settings.DreamSettings(model=cfg["model"], precision=cfg["precision"], steps=cfg.get("steps", 10))
        warm = dream.DreamRun(model, x[..., :128, :128], dream_settings.DreamSettings(model=cfg["model"], steps=1,
                                                                              precision=cfg["precision"]))
        for _ in warm:
            pass
        t = time.perf_counter()
        run = dream.DreamRun(model, x, s)
        for _ in run:
            pass
        out["seconds"] = time.perf_counter() - t
        out["octave_sizes"] = run.result().octave_sizes
    out["peak_rss_mb"] = harness.PeakRSS.process_peak_mb()  # the whole child: loading included
    return out


def child(cfg: dict) -> dict:
    env = dict(os.environ)
    r = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True, text=True,
                       env=env, cwd=ROOT)
    if r.returncode != 0:
        return {"config": cfg, "error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="small sizes and few steps (smoke test)")
    ap.add_argument("--json", help="write all figures to this file")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return
    q = args.quick
    size, steps = (128, 2) if q else (512, 5)
    rows = []
    rows.append(child({"kind": "reference", "model": "googlenet", "size": size, "steps": steps}))
    for m in ("googlenet", "inception_v3", "vgg19"):
        for p in ("fp32", "auto"):
            rows.append(child({"kind": "step", "model": m, "precision": p, "size": size, "steps": steps}))
    rows.append(child({"kind": "dream", "model": "googlenet", "precision": "auto", "size": size}))
    rows.append(child({"kind": "dream", "model": "googlenet", "precision": "fp32", "size": size}))
    for big in ((256, 512) if q else (1024, 2048)):
        for tile in (4096, 512 if not q else 128):
            rows.append(child({"kind": "step", "model": "googlenet", "precision": "auto", "size": big,
                               "steps": 1 if q else 2, "tile": tile}))
    # a whole tiled dream on a large image (4 octaves, 2 steps each): its peak memory
    rows.append(child({"kind": "dream", "model": "googlenet", "precision": "auto", "size": 256 if q else 2048,
                       "steps": 2}))
    print(f"{harness.machine_line()}; weights: "
          f"{rows[0].get('weights', '?')}")
    print(f"{'config':58s} {'s/step':>8s} {'seconds':>8s} {'peak MB':>8s}")
    for r in rows:
        c = r["config"]
        name = f"{c['kind']} {c['model']} {c['size']}px {c.get('precision', 'fp32')}" + \
            (f" {c['steps']} steps/octave" if c["kind"] == "dream" and "steps" in c else "") + \
            (f" tile {c['tile']}" if c.get("tile", 4096) < 4096 else (" untiled" if c.get("tile") else ""))
        if "error" in r:
            print(f"{name:58s} error: {r['error']}")
            continue
        sps = f"{r['s_per_step']:.3f}" if "s_per_step" in r else ""
        sec = f"{r['seconds']:.2f}" if "seconds" in r else ""
        print(f"{name:58s} {sps:>8s} {sec:>8s} {r['peak_rss_mb']:8.0f}")
    ref = rows[0].get("s_per_step")
    g = next((r for r in rows if r["config"]["kind"] == "step" and r["config"]["model"] == "googlenet"
              and r["config"]["precision"] == "auto" and r["config"]["size"] == size), None)
    if ref and g and "s_per_step" in g:
        print(f"GoogLeNet step, project auto precision vs plain fp32 reference: {ref / g['s_per_step']:.2f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
