"""Benchmark: seconds per heatmap method at 256 and 512 px, and the per-step cost of
saliency-guided (masked Gram, channel selection) against full-Gram style transfer.

Prints figures; never asserts on time. Untrained VGG19 (seed 0): timings do not depend on the
weights' values. Occlusion figures (Captum with and without batching, and the exact fast
engine) come from ``bench/bench_occlusion.py``; here occlusion runs through the same
``AttributionRun`` the page and the CLI use.

    python bench/bench_saliency.py                 # 256 and 512 px
    python bench/bench_saliency.py --sizes 256 --repeats 3 --steps 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402

import torch  # noqa: E402

from explorer.saliency import attribution as A  # noqa: E402
from explorer.saliency import guided as G  # noqa: E402
from explorer.io import images, samples
from explorer.nets import models  # noqa: E402
from explorer.style.transfer import StyleTransfer  # noqa: E402
from explorer.style.settings import StyleSettings

METHODS = {
    "saliency": {},
    "guided_backprop": {},
    "gradcam": {},
    "integrated_gradients (16 steps)": {"method": "integrated_gradients", "ig_steps": 16},
    "occlusion (32/16, fast engine)": {"method": "occlusion", "window": 32, "stride": 16},
}


def image(name: str, size: int) -> torch.Tensor:
    return images.to_tensor(images.resize_long_side(samples.load_sample(name).image, size))


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_methods(model, sizes, repeats) -> None:
    print("\n## Seconds per heatmap (style energy over relu1_1..relu5_1; best of", repeats, ")")
    print(f"| method | " + " | ".join(f"{s} px" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for label, kw in METHODS.items():
        row = []
        for size in sizes:
            x = image("gravel", size)
            s = A.AttributionSettings(**{"method": label, **kw, "size": size})
            A.attribute(model, image("gravel", 64), A.AttributionSettings(**{**s.to_dict(), "size": 64,
                                                                              "window": min(s.window, 32)}))
            row.append(best_of(lambda: A.attribute(model, x, s), repeats))
        print(f"| {label} | " + " | ".join(f"{t:.2f} s" for t in row) + " |", flush=True)


def bench_guided_step(model, sizes, steps, repeats) -> None:
    print(f"\n## Style transfer per step: full Gram vs guided ({steps} L-BFGS steps, fp32, best of {repeats})")
    print("| size | full Gram | masked Gram (keep 30%) | channels (keep 30%) | masked / full | channels / full |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        settings = StyleSettings(size=size, steps=steps, precision="fp32", preview_every=10_000)
        c, s = image("astronaut", size), image("gravel", size)
        heat = A.attribute(model, s, A.AttributionSettings(method="saliency", size=size))
        masked = G.prepare_guidance(model, s, settings, G.GuideSettings(keep=0.3), heatmap=heat)
        channels = G.prepare_guidance(model, s, settings, G.GuideSettings(keep=0.3, variant="channels"))

        def run(guidance):
            t = StyleTransfer(model, c, s, settings,
                              objective=guidance.objective(model, c, settings) if guidance else None)
            for _ in t:
                pass

        per = [best_of(lambda g=g: run(g), repeats) / steps for g in (None, masked, channels)]
        print(f"| {size} px | {per[0]:.3f} s | {per[1]:.3f} s | {per[2]:.3f} s | {per[1] / per[0]:.3f} | "
              f"{per[2] / per[0]:.3f} |", flush=True)

        def setup(kind):
            if kind == "masked":
                return lambda: G.prepare_guidance(model, s, settings, G.GuideSettings(keep=0.3), heatmap=heat)
            return lambda: G.prepare_guidance(model, s, settings, G.GuideSettings(keep=0.3, variant="channels"))

        print(f"|  one-off target setup | | {best_of(setup('masked'), repeats):.2f} s | "
              f"{best_of(setup('channels'), repeats):.2f} s | | |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="style steps per run in the guided-step table")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = default)")
    ap.add_argument("--skip-methods", action="store_true")
    ap.add_argument("--skip-guided", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    model = models.load_model("vgg19", weights="untrained", device="cpu")
    print(f"# bench_saliency: {model.weights.label}; {harness.machine_line()}")
    if not args.skip_methods:
        bench_methods(model, sizes, args.repeats)
    if not args.skip_guided:
        bench_guided_step(model, sizes, args.steps, args.repeats)


if __name__ == "__main__":
    main()
