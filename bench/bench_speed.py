"""Time to a good picture on the real VGG19: the PyTorch tutorial's loop against the
project, scored by one plain Gatys loss; the per-step overhead over the bare network; the first
preview with the page's defaults; and VGG19's convolutions, direct against Winograd, layer by
layer. Prints figures; asserts nothing.

Sections (all by default; pick some with ``--only target,overhead,first,layers``):

* ``target``: per size and pair, ``reference`` is the tutorial's loop, ``harness.tutorial_reference``
  (one ``torch.optim.LBFGS([img], max_iter=100)`` step, torch's defaults otherwise: lr 1, no
  line search; no clamping; from the content image) on the real Caffe VGG19 file up to conv5_1,
  fp32, content conv4_2, style conv1_1 .. conv5_1 with w_l = 1/5 (the network is the project's
  :class:`~explorer.nets.models.FeatureNet` on the same file, with
  torch's own convolutions). ``project`` is :class:`explorer.style.transfer.StyleTransfer` on the same
  objective (``loss_normalization="paper"``, alpha 1, beta 1e2, fp32) with its defaults: the
  histogram start, the Fourier offset, Winograd convolutions, the scaled first L-BFGS step and
  the strong-Wolfe line search. With ``--ablation`` the project also runs with each of the
  first three switched back (content start, pixels, direct convolutions), and with all three.
  Every clock starts before the style targets are computed. The project stops once it reaches
  the reference's final score (or after ``--max-steps``); its final picture is scored again
  here. Score: alpha L_content + beta L_style of clamp(x, 0, 1), Gatys et al. 2016 eq. (1), (4),
  (5), alpha 1, beta 1e2.
* ``overhead``: seconds per evaluation of a project step (fp32, 256 and 512 px, conv direct
  and auto) against the bare network's forward + backward with the same convolutions and memory
  format (features up to conv5_1, ``sum of squares`` backward), alternating, medians.
* ``first``: the style page's defaults at 256 px (``StyleSettings()``, a preview every 5 steps as
  the page has it), precision auto and fp32: seconds from Run to each of the first previews,
  and the relative style loss there against the start and the 100th step; the previews are
  saved in bench/out/first-*.png to look at.
* ``layers``: each of VGG19's 3x3 convolutions at the working size: forward and input
  gradient, oneDNN (NCHW and channels_last) against NNPACK's Winograd (what
  :data:`explorer.nets.winograd.MIN_POSITIONS` rests on).

Usage: ``python bench/bench_speed.py [--sizes 256,512] [--pairs tubingen:shipwreck,golden_gate:starry_night]
[--only ...] [--ablation] [--quick] [--json FILE]``. Run it on a quiet machine: the 512 px reference alone
takes about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import harness
from harness import ROOT, SHARED

import explorer  # noqa: E402,F401  (before torch: sets GOMP_SPINCOUNT, see explorer/__init__.py)
import torch  # noqa: E402

from explorer.style import control, transfer as style
from explorer.core import devices
from explorer.io import images
from explorer.optim import losses
from explorer.nets import models, winograd  # noqa: E402
from explorer.style.gatys import prepare_images  # noqa: E402
from explorer.style.settings import StyleSettings  # noqa: E402

WEIGHTS = SHARED / "weights" / "vgg19-caffe-features-q8.pth"
OUT = ROOT / "bench" / "out"
CONTENT_LAYER = "conv4_2"
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
ALPHA, BETA = 1.0, 1e2
#: The project's means, and the settings that switch each back (``--ablation``).
ABLATIONS = {"project": {}, "content start": {"init": "content"}, "pixels": {"parameterization": "pixel"},
             "direct convs": {"conv_algorithm": "direct"},
             "none of the three": {"init": "content", "parameterization": "pixel", "conv_algorithm": "direct"}}


picture = harness.shared_picture


def plain_terms(net, x, content_t, style_t):
    """(L_content eq. (1), L_style eq. (5)) of images x (1, 3, H, W) against the targets."""
    feats = net.features(x, [CONTENT_LAYER, *STYLE_LAYERS])
    c = losses.content_loss(feats[CONTENT_LAYER], content_t)
    s = losses.style_loss({l: losses.style_layer_loss(feats[l], style_t[l]) for l in STYLE_LAYERS},
                          {l: 1.0 / len(STYLE_LAYERS) for l in STYLE_LAYERS})
    return c, s


def score(net, x, content_t, style_t) -> float:
    """alpha L_content + beta L_style of clamp(x, 0, 1), in fp32 without gradients."""
    with torch.no_grad():
        c, s = plain_terms(net, x.clamp(0, 1), content_t, style_t)
    return float(ALPHA * c + BETA * s)


def reference(net, content, style_img, evals: int = 100) -> harness.ReferenceRun:
    """The tutorial loop (``harness.tutorial_reference``) on this network with torch's own
    convolutions, on the objective above."""
    return harness.tutorial_reference(lambda x: net.features(x, [CONTENT_LAYER, *STYLE_LAYERS]), content, style_img,
                                      content_layer=CONTENT_LAYER, style_layers=STYLE_LAYERS,
                                      layer_weights={l: 1.0 / len(STYLE_LAYERS) for l in STYLE_LAYERS},
                                      alpha=ALPHA, beta=BETA, evals=evals)


def project_settings(size: int, steps: int, **kw) -> StyleSettings:
    """The project's defaults on the reference's objective (paper losses, its layers and weights, fp32)."""
    return StyleSettings(size=size, steps=steps, precision="fp32", loss_normalization="paper",
                         content_layer=CONTENT_LAYER, style_layers=STYLE_LAYERS, content_weight=ALPHA,
                         style_weight=BETA, tv_weight=0.0, preview_every=10_000, **kw)


def project(net, content, style_img, settings: StyleSettings, goal: float):
    """Runs until the total is at or below ``goal`` (or the steps end); returns [(seconds since
    before construction, step, total)], the run and the seconds to the goal (None if missed)."""
    start = time.perf_counter()
    run = style.StyleTransfer(net, content, style_img, settings)
    curve, reached = [], None
    for ev in run:
        curve.append((time.perf_counter() - start, ev.step, ev.losses["total"]))
        if ev.losses["total"] <= goal:
            reached = curve[-1][0]
            run.stop("reached the reference's score")
            break
    return curve, run, reached


def sampled(curve, n: int = 10) -> str:
    """About n points of a [(seconds, ..., loss)] curve, its last point included."""
    pts = curve[:: max(1, len(curve) // n)]
    if pts[-1] is not curve[-1]:
        pts.append(curve[-1])
    return ", ".join(f"{p[0]:.1f}s:{p[-1]:.3g}" for p in pts)


def bench_target(net, size: int, pair: str, args, out: dict) -> None:
    cs, ss = pair.split(":")
    c, s = prepare_images(picture(cs), picture(ss), size)
    ref = reference(net, c, s, args.evals)
    ref_curve, ref_img, content_t, style_t = ref.curve, ref.image, ref.content_target, ref.style_targets
    ref_t, ref_score = ref_curve[-1][0], score(net, ref_img, content_t, style_t)
    row = {"size": size, "pair": pair, "shape": list(c.shape[-2:]), "reference_seconds": ref_t,
           "reference_score": ref_score, "reference_evaluations": len(ref_curve), "runs": {}}
    print(f"\n{cs} + {ss}, {size} px ({c.shape[-1]}x{c.shape[-2]}): reference {len(ref_curve)} evaluations in "
          f"{ref_t:.1f} s ({ref_t / len(ref_curve):.3f} s each), score of its clamped picture {ref_score:.4g} "
          f"(closure's last {ref_curve[-1][1]:.4g})")
    print(f"  reference loss vs seconds: {sampled(ref_curve)}")
    names = list(ABLATIONS) if args.ablation else ["project"]
    for name in names:
        curve, run, reached = project(net, c, s, project_settings(size, args.max_steps, **ABLATIONS[name]), ref_score)
        final = score(net, run.result().image, content_t, style_t)
        steps = curve[-1][1]
        ratio = ref_t / reached if reached else None
        what = (f"reached the reference's score after {steps} steps ({run.evaluations} evaluations), {reached:.1f} s: "
                f"{ratio:.2f}x sooner" if reached else f"did not reach it in {steps} steps ({curve[-1][0]:.1f} s)")
        print(f"  {name:18s} {what}; its picture scores {final:.4g}")
        print(f"  {'':18s} loss vs seconds: {sampled([(t, v) for t, _, v in curve])}")
        row["runs"][name] = {"seconds_to_score": reached, "ratio": ratio, "steps": steps,
                             "evaluations": run.evaluations, "final_score": final,
                             "curve": [(round(t, 2), v) for t, _, v in curve]}
    row["reference_curve"] = [(round(t, 2), v) for t, v in ref_curve]
    out.setdefault("target", []).append(row)


def bare_step(net, x: torch.Tensor, conv: str) -> float:
    """Seconds for the bare network's forward + backward (conv5_1 and every layer below)."""
    x = x.detach().clone().requires_grad_(True)
    t = time.perf_counter()
    feats = net.features(devices.to_memory_format(x, True), [CONTENT_LAYER, *STYLE_LAYERS], conv=conv)
    sum(f.pow(2).sum() for f in feats.values()).backward()
    return time.perf_counter() - t


def project_step(net, c, s, size: int, conv: str, steps: int) -> float:
    """Seconds per evaluation of a project run, after its first two steps."""
    run = style.StyleTransfer(net, c, s, project_settings(size, steps + 2, conv_algorithm=conv))
    it = iter(run)
    next(it), next(it)
    n0, t = run.evaluations, time.perf_counter()
    for _ in it:
        pass
    return (time.perf_counter() - t) / max(1, run.evaluations - n0)


def bench_overhead(net, size: int, args, out: dict) -> None:
    c, s = prepare_images(picture("tubingen"), picture("shipwreck"), size)
    steps = 8 if size <= 256 else 4
    for conv in ("direct", "auto"):
        bare, proj = [], []
        bare_step(net, c, conv)
        for _ in range(args.rounds):
            bare += [bare_step(net, c, conv) for _ in range(3)]
            proj.append(project_step(net, c, s, size, conv, steps))
        b, p = statistics.median(bare), statistics.median(proj)
        print(f"  {size} px, conv {conv:6s}: bare forward + backward {b:.3f} s, project step {p:.3f} s per evaluation: "
              f"overhead {100 * (p / b - 1):+.0f} % (bare {min(bare):.3f}-{max(bare):.3f}, step {min(proj):.3f}-{max(proj):.3f})")
        out.setdefault("overhead", []).append({"size": size, "conv": conv, "bare": b, "step": p,
                                               "bare_all": bare, "step_all": proj})


def bench_first(net, args, out: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for pair in args.pairs.split(","):
        cs, ss = pair.split(":")
        content, style_pil = picture(cs), picture(ss)
        for precision in ("auto", "fp32"):
            quick = {"size": 64, "steps": 10} if args.quick else {}
            settings = StyleSettings(preview_every=5, precision=precision, **quick)  # the page's defaults
            start = time.perf_counter()
            run = control.ControlledTransfer(net, content, [(style_pil, 1.0)], settings)
            previews = []
            for ev in run:
                if ev.preview is not None:
                    previews.append((ev.step, time.perf_counter() - start, ev.preview))
            # the run's own relative style loss of each previewed image (its history row)
            style_at = {h["step"]: h["style"] for h in run.history}
            values = [(k, t, style_at[k]) for k, t, _ in previews]
            first, last = values[0][2], values[-1][2]
            took = time.perf_counter() - start
            label = devices.precision_name(devices.resolve_precision(precision, net.device))
            print(f"  {cs} + {ss}, {settings.size} px, precision {precision} ({label}), {settings.steps} steps in {took:.1f} s "
                  f"({took / settings.steps:.3f} s/step): relative style loss at the start {first:.3f}, "
                  f"step 100 {last:.3f}")
            for k, t, v in values[1:5]:
                print(f"    preview of step {k:3d} at {t:5.1f} s after Run: style loss {v:.3f} "
                      f"({100 * (first - v) / max(first - last, 1e-12):.0f} % of the way to step 100)")
            for k, _, p in previews[:3] + previews[-1:]:
                images.to_pil(p).save(OUT / f"first-{cs}-{precision}-step{k:03d}.png")
            out.setdefault("first", []).append({"pair": pair, "precision": precision, "seconds": took,
                                                "previews": [(k, t, v) for k, t, v in values]})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--pairs", default="tubingen:shipwreck,golden_gate:starry_night")
    p.add_argument("--only", default="target,overhead,first,layers", help="sections to run, comma-separated")
    p.add_argument("--evals", type=int, default=100, help="the reference's max_iter (default 100)")
    p.add_argument("--max-steps", type=int, default=100, help="the project's most steps (default 100)")
    p.add_argument("--ablation", action="store_true", help="also run the project with each means switched back")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of the overhead section (default 3)")
    p.add_argument("--json", metavar="FILE", help="write every figure (curves included) here")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 64 px, the first pair, 5 evaluations and steps, 1 round, first previews of 10 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.pairs = "64", args.pairs.split(",")[0]
        args.evals, args.max_steps, args.rounds = 5, 5, 1
    if not WEIGHTS.exists():
        print(f"needs the real VGG19 file {WEIGHTS} (set EXPLORER_SHARED)")
        return 2
    torch.set_num_threads(os.cpu_count() or 1)
    net = models.load_model("vgg19", weights=str(WEIGHTS), device="cpu")
    machine = {**harness.machine(), "nnpack": winograd.available(), "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT")}
    print(f"{harness.machine_line(machine)}; fp32 everywhere except the first-picture section's 'auto' "
          f"(bf16 where native); NNPACK {machine['nnpack']}, GOMP_SPINCOUNT {machine['GOMP_SPINCOUNT']}; "
          f"{net.weights.label}")
    sections = set(args.only.split(","))
    out: dict = {"machine": machine}
    sizes = [int(v) for v in args.sizes.split(",")]
    if "layers" in sections:
        from speed_layers import bench_layers

        print("\n== VGG19's 3x3 convolutions: direct (oneDNN) against Winograd (NNPACK) ==")
        for size in sizes:
            bench_layers(net, size, out)
    if "overhead" in sections:
        print("\n== per-evaluation cost of a project step against the bare network (fp32) ==")
        for size in sizes:
            bench_overhead(net, size, args, out)
    if "first" in sections:
        print("\n== the first previews with the page's defaults (256 px) ==")
        bench_first(net, args, out)
    if "target" in sections:
        print("\n== time to the tutorial loop's score (fp32) ==")
        for size in sizes:
            for pair in args.pairs.split(","):
                bench_target(net, size, pair, args, out)
    out["machine"]["load_after"] = harness.loadavg()
    print(f"\nload average after: {out['machine']['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
