"""Layer activation explorer benchmark: prints figures, never asserts on time.

For each network, a 512 px image: the time to compute the activations of the deepest spatial
layer (the network runs only up to it, float32), then the time of each view computed from
those cached activations (what switching views on the page costs): statistics, top-16
channels, the channel grid, the Gram matrix clustered, a comparison with a second image, and
one channel map as a coloured image. Median of ``--repeat`` runs after one warm-up.

Targets (issue): deepest layer of any network at 512 px in at most 1 s; a view switch under 0.1 s.

Usage: ``python bench/bench_activations.py [--size 512] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import harness  # noqa: E402


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls after one warm-up call."""
    return harness.median_time(fn, n=repeat, warmup=1)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import torch

    from explorer.activations import views

    from explorer.nets.layers import layer_activations
    from explorer.nets.models import load_model

    deepest = {"vgg19": "pool5", "vgg16": "pool5", "googlenet": "inception5b", "inception_v3": "Mixed_7c"}
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    x2 = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    print(f"{harness.machine_line()}; untrained weights, {args.size} px")
    print(f"{'network':13s} {'layer':12s} {'shape':>16s} {'acts s':>7s} | view s: {'stats':>6s} {'top16':>6s} "
          f"{'grid':>6s} {'gram':>6s} {'compare':>7s} {'map':>6s}")
    for name, layer in deepest.items():
        model = load_model(name, weights="untrained", device="cpu")
        t_acts = timed(lambda: layer_activations(model, x, layer), args.repeat)
        a = layer_activations(model, x, layer)
        b = layer_activations(model, x2, layer)
        top = views.top_channels(a, 16)
        view_fns = {
            "stats": lambda: views.channel_stats(a),
            "top16": lambda: views.top_channels(a, 16),
            "grid": lambda: views.channel_grid(a, top),
            "gram": lambda: views.gram_view(a, "cluster"),
            "compare": lambda: views.compare_images(a, b),
            "map": lambda: views.channel_map_rgb(a[top[0]]),
        }
        vt = {k: timed(f, args.repeat) for k, f in view_fns.items()}
        shape = "x".join(map(str, a.shape))
        print(f"{name:13s} {layer:12s} {shape:>16s} {t_acts:7.3f} |         " +
              " ".join(f"{vt[k]:6.3f}" if k != "compare" else f"{vt[k]:7.3f}" for k in view_fns))
        # a shallow, wide layer is the worst case for views (largest maps)
    model = load_model("vgg19", weights="untrained", device="cpu")
    a = layer_activations(model, x, "relu1_1")
    top = views.top_channels(a, 16)
    t = {k: timed(f, args.repeat) for k, f in {
        "stats": lambda: views.channel_stats(a), "top16": lambda: views.top_channels(a, 16),
        "grid": lambda: views.channel_grid(a, top), "gram": lambda: views.gram_view(a, "cluster"),
        "map": lambda: views.channel_map_rgb(a[top[0]])}.items()}
    print(f"vgg19 relu1_1 {'x'.join(map(str, a.shape))} views: " + ", ".join(f"{k} {v:.3f} s" for k, v in t.items()))


if __name__ == "__main__":
    main()
