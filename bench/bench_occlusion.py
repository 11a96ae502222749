"""Benchmark: exact fast occlusion (explorer.saliency.occlusion) against a plain Captum Occlusion call.

Prints figures; asserts nothing about time. Per image size (default 256 px, long side):

* ``captum ppe=P``: ``captum.attr.Occlusion(f).attribute(image, sliding_window_shapes=(3, W, W),
  strides=(3, S, S), baselines=baseline, perturbations_per_eval=P)`` for P = 1 and 16, with
  ``f = explorer.saliency.objectives.objective_function(model, "style", layers=...)`` (a full VGG19
  forward pass per occluded image).
  Above 256 px only P = 16 runs, and only when one timed batch extrapolates to less than
  ``--captum-limit`` seconds (default 300); otherwise the estimate is printed.
* ``fast bs=B``: ``explorer.saliency.occlusion.occlusion_fast`` with batch_size B, channels_last (the
  default) and, for one batch size, contiguous NCHW crops.

Setup: untrained VGG19 (``load_model("vgg19", weights="untrained")``: the timings do not depend on
the weights' values), the style objective E = sum_l w_l ||G_l||^2 / (4 N_l^2 M_l^2) over
conv1_1 .. conv5_1 with w_l = 1/5, window 32 px, stride 16 px, baseline ``zero`` (black; see
``--baseline``), the sample image "gravel" scaled with ``resize_long_side`` to the size. Also
printed: the largest |fast - Captum| and the largest |Captum attribution|, and the machine load
(``os.getloadavg``) before and after each row, since other processes may share the CPU.

Usage (from the repository root)::

    .venv/bin/python bench/bench_occlusion.py                       # 256 px, Captum included (~3 min)
    .venv/bin/python bench/bench_occlusion.py --sizes 256,512 --skip-captum
    .venv/bin/python bench/bench_occlusion.py --batch-sizes 8,16,32,64
"""

from __future__ import annotations

import os

# With 2 cores, torch's OpenMP threads busy-wait on each other when anything else runs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import harness  # noqa: E402

from explorer.saliency.methods import baseline_image  # noqa: E402
from explorer.saliency.objectives import objective_function  # noqa: E402
from explorer.io.images import resize_long_side, to_tensor  # noqa: E402
from explorer.io.samples import load_sample  # noqa: E402
from explorer.nets.models import load_model  # noqa: E402
from explorer.saliency.occlusion import occlusion_fast, occlusion_windows  # noqa: E402

LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def captum(model, image, baseline, window, stride, per_eval):
    from captum.attr import Occlusion

    forward = objective_function(model, "style", layers=LAYERS)

    with torch.no_grad():
        return Occlusion(forward).attribute(image, sliding_window_shapes=(3, window, window),
                                            strides=(3, stride, stride), baselines=baseline,
                                            perturbations_per_eval=per_eval)[0, 0]


def captum_estimate(model, image, baseline, window, stride, per_eval) -> float:
    """Seconds a Captum run would take: one timed forward batch of ``per_eval`` images."""
    x = torch.cat([image] * per_eval)
    forward = objective_function(model, "style", layers=LAYERS)
    with torch.no_grad():
        forward(x[:1])  # warm-up
        t0 = time.perf_counter()
        forward(x)
        per_image = (time.perf_counter() - t0) / per_eval
    return per_image * (len(occlusion_windows(*image.shape[-2:], window, stride)) + 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256", help="long sides in px, comma-separated (default 256)")
    ap.add_argument("--batch-sizes", default="8,16,32", help="occlusion_fast batch sizes (default 8,16,32)")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--baseline", default="zero", choices=("zero", "mean", "blur"))
    ap.add_argument("--skip-captum", action="store_true", help="time occlusion_fast only")
    ap.add_argument("--captum-limit", type=float, default=300.0,
                    help="above 256 px, run Captum (16 per eval) only when estimated under this many seconds")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each occlusion_fast row; the best is shown")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    batch_sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]

    print(f"# occlusion benchmark: {harness.machine_line()}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    model = load_model("vgg19", weights="untrained", device="cpu")
    print(f"# vgg19, {model.weights.label}; style objective over {','.join(LAYERS)}; window {args.window} px, "
          f"stride {args.stride} px, baseline {args.baseline}; {load()}")
    for size in sizes:
        image = to_tensor(resize_long_side(load_sample("gravel").image, size))
        baseline = baseline_image(image, args.baseline, args.window)
        h, w = image.shape[-2:]
        n = len(occlusion_windows(h, w, args.window, args.stride))
        print(f"\n## {w} x {h} px, {n} windows")
        ref = None
        if not args.skip_captum:
            for per_eval in (1, 16):
                if size > 256:
                    if per_eval == 1:
                        continue
                    est = captum_estimate(model, image, baseline, args.window, args.stride, per_eval)
                    if est > args.captum_limit:
                        print(f"captum ppe={per_eval:<3d} skipped: estimated {est:.0f} s "
                              f"(> --captum-limit {args.captum_limit:.0f} s)")
                        continue
                before = load()
                t0 = time.perf_counter()
                a = captum(model, image, baseline, args.window, args.stride, per_eval)
                dt = time.perf_counter() - t0
                print(f"captum ppe={per_eval:<3d} {dt:8.2f} s   ({before} -> {load()})", flush=True)
                ref = a if ref is None else ref
        rows = [(bs, True) for bs in batch_sizes] + [(16 if 16 in batch_sizes else batch_sizes[0], False)]
        for bs, cl in rows:
            best, out = float("inf"), None
            before = load()
            for _ in range(max(1, args.repeat)):
                t0 = time.perf_counter()
                out = occlusion_fast(model, image, baseline, objective="style", layers=LAYERS,
                                     window=args.window, stride=args.stride, batch_size=bs, channels_last=cl)
                best = min(best, time.perf_counter() - t0)
            line = f"fast bs={bs:<3d} {'channels_last' if cl else 'nchw':13s} {best:8.2f} s"
            if ref is not None:
                err, scale = (out - ref).abs().max().item(), ref.abs().max().item()
                line += f"   max|fast - captum| {err:.3g} (largest |attribution| {scale:.3g}, ratio {err / scale:.1e})"
            print(f"{line}   ({before} -> {load()})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
