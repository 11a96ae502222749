"""Time to a good picture on the real VGG19 (issue 17, first measurement): the PyTorch tutorial's
loop against the project's own means, scored by one plain Gatys loss. Prints figures; asserts nothing.

* ``reference``: the tutorial's loop as the issue states it: VGG19 up to conv5_1, fp32,
  one ``torch.optim.LBFGS([img], max_iter=100)`` step (torch's defaults otherwise: lr 1, no line
  search), no clamping, content conv4_2, style conv1_1 .. conv5_1 with w_l = 1/5, starting from
  the content image. The network is the project's :class:`~explorer.models.FeatureNet` on the
  real weights file (the same convolutions and input normalization); the loop and the losses are
  written out here, the tutorial's way.
* ``project``: :class:`explorer.style.StyleTransfer` minimizing the same objective
  (``loss_normalization="paper"``, the same layers, alpha 1, beta 1e2, fp32, L-BFGS with its
  strong-Wolfe line search and channels_last), single scale; and ``project c2f``:
  :class:`explorer.control.ControlledTransfer` coarse-to-fine from ``--start-size``.

Every picture (clamped to [0, 1]) is scored by :func:`score`: alpha L_content + beta L_style,
Gatys et al. 2016 eq. (1) and (5) with eq. (4), alpha = 1, beta = 1e2, on the conv layers above.
The table gives, for each run, its final score and the seconds it took, and for the project the
first second at which its score was at or below the reference's final score, and the ratio.

Usage: ``python bench/bench_speed.py [--sizes 256,512] [--pairs tubingen:shipwreck,golden_gate:starry_night]``
(about 2 minutes per pair at 256 px and 8 at 512 px on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from explorer import control, devices, images, losses, models, style  # noqa: E402
from explorer.gatys import prepare_images  # noqa: E402
from explorer.style_settings import StyleSettings  # noqa: E402

SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights" / "vgg19-caffe-features-q8.pth"
CONTENT_LAYER = "conv4_2"
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
ALPHA, BETA = 1.0, 1e2


def picture(stem: str):
    path = next(p for p in (SHARED / "images").iterdir() if p.stem.startswith(stem))
    return images.load_image(str(path)).image


def plain_terms(net, x, content_t, style_t):
    """(L_content eq. (1), L_style eq. (5)) of images x (1, 3, H, W) against the targets."""
    feats = net.features(x, [CONTENT_LAYER, *STYLE_LAYERS])
    c = losses.content_loss(feats[CONTENT_LAYER], content_t)
    s = losses.style_loss({l: losses.style_layer_loss(feats[l], style_t[l]) for l in STYLE_LAYERS},
                          {l: 1.0 / len(STYLE_LAYERS) for l in STYLE_LAYERS})
    return c, s


def targets(net, content, style_img):
    with torch.no_grad():
        content_t = net.features(content, [CONTENT_LAYER])[CONTENT_LAYER]
        fs = net.features(style_img, list(STYLE_LAYERS))
        style_t = {l: losses.gram_matrix(fs[l], normalize=True)[0] for l in STYLE_LAYERS}
    return content_t, style_t


def score(net, x, content_t, style_t) -> float:
    """alpha L_content + beta L_style of clamp(x, 0, 1), in fp32 without gradients."""
    with torch.no_grad():
        c, s = plain_terms(net, x.clamp(0, 1), content_t, style_t)
    return float(ALPHA * c + BETA * s)


def reference(net, content, content_t, style_t, evals: int = 100):
    """The tutorial's loop; returns [(seconds, score of the image the closure saw)] and the image."""
    img = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([img], max_iter=evals)
    curve, start = [], time.perf_counter()

    def closure():
        opt.zero_grad()
        c, s = plain_terms(net, img, content_t, style_t)
        loss = ALPHA * c.sum() + BETA * s.sum()
        loss.backward()
        curve.append((time.perf_counter() - start, float(loss.detach())))
        return loss

    opt.step(closure)
    return curve, img.detach()


def project_settings(size: int, steps: int, **kw) -> StyleSettings:
    return StyleSettings(size=size, steps=steps, precision="fp32", loss_normalization="paper",
                         content_layer=CONTENT_LAYER, style_layers=STYLE_LAYERS, content_weight=ALPHA,
                         style_weight=BETA, tv_weight=0.0, init="content", preview_every=10_000, **kw)


def curve_of(history: list[dict]) -> list[tuple[float, float]]:
    """(seconds, total) per step; for a coarse-to-fine run only the final scale's rows (a smaller
    scale's total is of a smaller picture, not comparable with the full-size score)."""
    full = max((h.get("size", 0) for h in history), default=0)
    return [(h["seconds"], h["total"]) for h in history if h.get("size", 0) == full]


def first_at_or_below(curve, target: float):
    return next((t for t, v in curve if v <= target), None)


def bench_pair(net, content_img, style_img, size: int, args) -> None:
    c, s = prepare_images(content_img, style_img, size)
    content_t, style_t = targets(net, c, s)
    ref_curve, ref_img = reference(net, c, content_t, style_t, args.evals)
    ref_t, ref_score = ref_curve[-1][0], score(net, ref_img, content_t, style_t)
    print(f"  reference          {len(ref_curve)} evaluations, {ref_t:6.1f} s, final score {ref_score:.4g} "
          f"(closure's last {ref_curve[-1][1]:.4g})")
    runs = [("project", lambda: style.StyleTransfer(net, c, s, project_settings(size, args.steps)))]
    if size > args.start_size:
        runs.append(("project c2f", lambda: control.ControlledTransfer(
            net, images.resize_long_side(content_img, size), [(images.resize_long_side(style_img, size), 1.0)],
            project_settings(size, args.c2f_steps, scales=0, start_size=args.start_size))))
    for name, make in runs:
        start = time.perf_counter()
        run = make()
        for _ in run:
            pass
        took = time.perf_counter() - start
        res = run.result()
        final = score(net, res.image.to(net.device), content_t, style_t)
        hist = getattr(run, "history", None) or res.history
        curve = curve_of(hist)
        reach = first_at_or_below(curve, ref_score)
        ratio = f"{ref_t / reach:.2f}x sooner" if reach else "never reached the reference's score"
        print(f"  {name:18s} {len(hist)} rows, {took:6.1f} s, final score {final:.4g}; reached the reference's "
              f"score at {reach if reach is None else round(reach, 1)} s: {ratio}")
        if args.curves:
            print("    loss vs seconds: " + ", ".join(f"{t:.1f}:{v:.3g}" for t, v in curve[:: max(1, len(curve) // 12)]))
    if args.curves:
        print("    reference loss vs seconds: " + ", ".join(
            f"{t:.1f}:{v:.3g}" for t, v in ref_curve[:: max(1, len(ref_curve) // 12)]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--pairs", default="tubingen:shipwreck,golden_gate:starry_night")
    p.add_argument("--evals", type=int, default=100, help="the reference's max_iter (default 100)")
    p.add_argument("--steps", type=int, default=100, help="the project's single-scale steps (default 100)")
    p.add_argument("--c2f-steps", type=int, default=40, help="steps of the coarse-to-fine first scale (default 40)")
    p.add_argument("--start-size", type=int, default=128, help="coarse-to-fine first scale in px (default 128)")
    p.add_argument("--curves", action="store_true", help="print loss-versus-seconds curves")
    args = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    net = models.load_model("vgg19", weights=str(WEIGHTS), device="cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"bf16 {devices.cpu_has_bf16()} (not used: fp32), load {os.getloadavg()[0]:.2f}; {net.weights.label}")
    for size in (int(v) for v in args.sizes.split(",")):
        for pair in args.pairs.split(","):
            cs, ss = pair.split(":")
            print(f"{cs} + {ss}, {size} px")
            bench_pair(net, picture(cs), picture(ss), size, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
