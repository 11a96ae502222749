"""Benchmark: calibrate the default style weight beta against neural-style's published outputs.

Prints figures; asserts nothing. Uses the workplace's ``shared/`` folder (``../shared`` next to
the repository, or ``EXPLORER_SHARED``), never copied into the repository: the original Caffe
VGG19 conv layers (``weights/vgg19-caffe-features-q8.pth``), the photos golden_gate and tubingen,
the paintings woman-with-hat-matisse, the_scream, starry_night and shipwreck, and neural-style's
six outputs of those pairs (``images/reference-outputs``: Caffe VGG19, L-BFGS, 1000 iterations
at 512 px, content weight 5, style weight 100, TV 1e-3, random start).

For every candidate beta (``--betas``) and every pair: our default style transfer
(:class:`explorer.style.settings.StyleSettings` with only ``size``, ``steps`` and
``style_weight`` set) and neural-style's output resized to the same size (Lanczos) are scored by
:func:`explorer.style.gatys.balance_errors`, the plain Gatys loss with relative terms: content
error ||F - P||^2 / ||P||^2 at relu4_2, style error sum_l w_l ||G_l - A_l||^2 / ||A_l||^2 with
position-normalized Gram matrices at relu1_1 ... relu5_1, w_l = 1/5. The table gives both
errors and our/neural-style's ratio per pair, then the medians of the ratios over the pairs.
The bar: median content ratio <= 1.2 while the median style ratio stays <= 1.

Bisect by hand: the content ratio falls and the style ratio rises as beta falls, so run two
betas, then one between them (CPU time: one run is about 50 s at 256 px on 2 idle cores).

Usage::

    .venv/bin/python bench/bench_calibration.py --betas 80,40 [--size 256] [--steps 100] [--save bench/out/calibration]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import harness  # noqa: E402

from explorer.io import images  # noqa: E402
from explorer.nets import models  # noqa: E402
from explorer.style import gatys  # noqa: E402
from explorer.style import settings as style_settings  # noqa: E402
from explorer.style import transfer as style  # noqa: E402

SHARED = Path(os.environ.get("EXPLORER_SHARED", ROOT.parent / "shared"))
#: neural-style's output name -> (content photo, style painting), as in shared/images/SOURCE.md
PAIRS = {"golden_gate_matisse": ("golden_gate", "woman-with-hat-matisse"),
         "golden_gate_scream": ("golden_gate", "the_scream"), "golden_gate_starry": ("golden_gate", "starry_night"),
         "tubingen_scream": ("tubingen", "the_scream"), "tubingen_shipwreck": ("tubingen", "shipwreck"),
         "tubingen_starry": ("tubingen", "starry_night")}
CONTENT_BAR, STYLE_BAR = 1.2, 1.0


def picture(name: str):
    return images.load_image(SHARED / "images" / f"{name}.jpg", role=name).image


def reference(name: str, like: torch.Tensor) -> torch.Tensor:
    """neural-style's output resized (Lanczos) to the content tensor's size, (1, 3, H, W) in [0, 1]."""
    ref = images.load_image(SHARED / "images" / "reference-outputs" / f"{name}.png").image
    return images.to_tensor(ref.resize((like.shape[-1], like.shape[-2]), images.Image.Resampling.LANCZOS))


def score(net, image: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> tuple[float, float]:
    ce, se = gatys.balance_errors(net, image, c, s)
    return float(ce[0]), float(se[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="working size, long side in pixels (default 256)")
    ap.add_argument("--steps", type=int, default=100, help="L-BFGS steps of our run (default 100, the default)")
    ap.add_argument("--betas", default=f"{style_settings.DEFAULT_STYLE_WEIGHT:g}",
                    help="comma-separated candidate style weights (default: the current default)")
    ap.add_argument("--pairs", default=",".join(PAIRS), help="comma-separated subset of: " + ", ".join(PAIRS))
    ap.add_argument("--save", help="folder for our pictures (PNG, one per pair and beta)")
    ap.add_argument("--json", help="write every figure here")
    a = ap.parse_args()
    src = harness.shared_weights()
    if src is None:
        return harness.no_shared_weights()
    names = [p.strip() for p in a.pairs.split(",") if p.strip()]
    unknown = [p for p in names if p not in PAIRS]
    if unknown:
        print(f"error: unknown pair {unknown[0]!r}; choose from {', '.join(PAIRS)}", file=sys.stderr)
        return 2
    betas = [float(b) for b in a.betas.split(",")]
    print(f"machine: {harness.machine_line()}")
    net = models.load_model("vgg19", weights=str(src), device="cpu")
    inputs, refs = {}, {}
    for name in names:
        c, s = gatys.prepare_images(picture(PAIRS[name][0]), picture(PAIRS[name][1]), a.size)
        inputs[name] = (c, s)
        refs[name] = score(net, reference(name, c), c, s)
    rows = []
    for beta in betas:
        print(f"\n## beta {beta:g}, {a.size} px, {a.steps} steps (other settings: StyleSettings defaults)")
        print(f"{'pair':22s} {'content: ns':>11s} {'ours':>7s} {'ratio':>6s}   {'style: ns':>9s} {'ours':>8s} "
              f"{'ratio':>6s} {'s':>6s}")
        ratios = []
        for name in names:
            c, s = inputs[name]
            settings = style_settings.StyleSettings(size=a.size, steps=a.steps, style_weight=beta)
            t0 = time.perf_counter()
            run = style.StyleTransfer(net, c, s, settings)
            for _ in run:
                pass
            img = run.result().image
            secs = time.perf_counter() - t0
            oc, os_ = score(net, img, c, s)
            rc, rs = refs[name]
            ratios.append((oc / rc, os_ / rs))
            rows.append({"beta": beta, "pair": name, "ref_content": rc, "ref_style": rs, "content": oc,
                         "style": os_, "seconds": secs})
            print(f"{name:22s} {rc:11.3g} {oc:7.3g} {oc / rc:6.2f}   {rs:9.3g} {os_:8.3g} {os_ / rs:6.2f} "
                  f"{secs:6.1f}", flush=True)
            if a.save:
                out = Path(a.save)
                out.mkdir(parents=True, exist_ok=True)
                images.to_pil(img).save(out / f"{name}_beta{beta:g}_{a.size}px.png")
        mc, ms = statistics.median(r[0] for r in ratios), statistics.median(r[1] for r in ratios)
        ok = mc <= CONTENT_BAR and ms <= STYLE_BAR
        print(f"medians over {len(ratios)} pairs, ours/neural-style: content {mc:.3f} (bar {CONTENT_BAR}), "
              f"style {ms:.3f} (bar {STYLE_BAR}): {'meets' if ok else 'misses'} the bar", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
