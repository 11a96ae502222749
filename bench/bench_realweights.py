"""Benchmark: the default style transfer on the real VGG19, every painting x photo pair.

Prints figures; asserts nothing. Uses the real trained weights and pictures of the workplace's
``shared/`` folder (``../shared`` next to the repository, or ``EXPLORER_SHARED``), never copied
into the repository:

* weights: ``shared/weights/vgg19-caffe-features-q8.pth`` (the original Caffe VGG19 conv layers),
  and a copy with every activation scaled by 1/58 (conv1_1's weight and every bias times 1/58,
  torchvision's ``vgg19-dcbb9e9d.pth``'s magnitude as estimated from the input scale, 255 x std;
  each layer's true ratio differs), written to ``bench/out/``;
* content photos: tubingen, golden_gate, hoovertowernight; style paintings: starry_night,
  shipwreck, the_scream, woman-with-hat-matisse.

Part 1 (``--sizes``, ``--precisions``, ``--scales``): for every pair, ``StyleSettings`` defaults
(L-BFGS with a strong-Wolfe line search, relative losses, alpha 1, the default beta, init content) with ``--steps`` steps: first and final
total, final content and style losses, the largest step-to-step rise of the total, loss
evaluations and seconds. The issue's bar: no step raises the total by more than 2x, and the
final total is at most a tenth of the first.

Part 2 (``--reference-size``, 0 = off): the balance against neural-style's published outputs
(``shared/images/reference-outputs``, Caffe VGG19, 1000 iterations at 512 px): an independent
Gatys loss (relative content error at relu4_2, mean relative Gram error at relu1_1..relu5_1,
written here, not taken from ``explorer.style.transfer``) of the reference and of the default run at the
same size.

Usage::

    .venv/bin/python bench/bench_realweights.py                                # everything (about 20 minutes on 2 cores)
    .venv/bin/python bench/bench_realweights.py --sizes 128 --precisions fp32 --scales 1 --steps 20   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import harness  # noqa: E402

from explorer.io import images
from explorer.nets import models
from explorer.style import transfer as style  # noqa: E402
from explorer.style import gatys
from explorer.style import settings as style_settings

SHARED = Path(os.environ.get("EXPLORER_SHARED", ROOT.parent / "shared"))
PHOTOS = ("tubingen", "golden_gate", "hoovertowernight")
PAINTINGS = ("starry_night", "shipwreck", "the_scream", "woman-with-hat-matisse")
REFERENCES = {"tubingen_starry": ("tubingen", "starry_night"), "tubingen_shipwreck": ("tubingen", "shipwreck"),
              "tubingen_scream": ("tubingen", "the_scream"), "golden_gate_starry": ("golden_gate", "starry_night"),
              "golden_gate_matisse": ("golden_gate", "woman-with-hat-matisse"),
              "golden_gate_scream": ("golden_gate", "the_scream")}
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def scaled_copy(src: Path, factor: float, out: Path) -> Path:
    """A copy of a conv-only VGG19 state dict whose every activation is ``factor`` times the
    original's (conv1_1's weight and all biases times ``factor``: ReLU and max pooling commute
    with positive scaling)."""
    sd = torch.load(src, map_location="cpu", weights_only=True)
    first = min((k for k in sd if k.endswith(".weight")), key=lambda k: int(k.split(".")[1]))
    scaled = {k: (v.float() * factor if k == first or k.endswith(".bias") else v) for k, v in sd.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(scaled, out)
    return out


def picture(name: str):
    return images.load_image(SHARED / "images" / f"{name}.jpg", role=name).image


@torch.no_grad()
def gatys_balance(net, image: torch.Tensor, content: torch.Tensor, style_img: torch.Tensor) -> tuple[float, float]:
    """Independent Gatys loss: relative content error at relu4_2 and the mean relative error of
    the position-normalized Gram matrices at relu1_1..relu5_1 (fp32)."""
    def gram(f):
        b, n, h, w = f.shape
        m = f.reshape(b, n, h * w)
        return m @ m.transpose(1, 2) / (h * w)

    f = net.features(image, [*STYLE_LAYERS, "relu4_2"])
    p = net.features(content, ["relu4_2"])["relu4_2"]
    fs = net.features(style_img, STYLE_LAYERS)
    c = float((f["relu4_2"] - p).pow(2).sum() / p.pow(2).sum())
    s = sum(float((gram(f[l]) - gram(fs[l])).pow(2).sum() / gram(fs[l]).pow(2).sum()) for l in STYLE_LAYERS)
    return c, s / len(STYLE_LAYERS)


def run_pair(net, photo: str, painting: str, size: int, steps: int, precision: str, beta: float | None = None) -> dict:
    c, s = gatys.prepare_images(picture(photo), picture(painting), size)
    settings = style_settings.StyleSettings(size=size, steps=steps, precision=precision,
                                   **({} if beta is None else {"style_weight": beta}))
    run = style.StyleTransfer(net, c, s, settings)
    for _ in run:
        pass
    r = run.result()
    tot = [h["total"] for h in r.history]
    rise = max(b / a for a, b in zip(tot, tot[1:])) if len(tot) > 1 else 1.0
    return {"pair": f"{photo}+{painting}", "size": size, "precision": precision, "first": tot[0],
            "final": tot[-1], "content": r.history[-1]["content"], "style": r.history[-1]["style"],
            "max_rise": rise, "rose": rise > 1.0, "evaluations": run.evaluations, "seconds": r.seconds,
            "image": r.image}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--scales", default="1,0.01724", help="activation scales of the weights file (1/58 = 0.01724)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--beta", type=float, help="style weight (default: StyleSettings' default)")
    ap.add_argument("--reference-size", type=int, default=256)
    ap.add_argument("--json", help="write every figure here")
    a = ap.parse_args()
    src = harness.shared_weights()
    if src is None:
        return harness.no_shared_weights()
    print(f"machine: {harness.machine_line()}")
    rows, out = [], ROOT / "bench" / "out"
    for scale in [float(v) for v in a.scales.split(",")]:
        path = src if scale == 1.0 else scaled_copy(src, scale, out / f"vgg19-caffe-x{scale:g}.pth")
        net = models.load_model("vgg19", weights=str(path), device="cpu")
        for size in [int(v) for v in a.sizes.split(",")]:
            for precision in a.precisions.split(","):
                print(f"\n## activations x{scale:g}, {size} px, {precision}, {a.steps} steps")
                print(f"{'pair':38s} {'first':>9s} {'final':>9s} {'final/first':>11s} {'max rise':>8s} "
                      f"{'content':>8s} {'style':>8s} {'evals':>5s} {'s':>6s}")
                for photo in PHOTOS:
                    for painting in PAINTINGS:
                        r = run_pair(net, photo, painting, size, a.steps, precision, a.beta)
                        r.pop("image")
                        r["scale"] = scale
                        rows.append(r)
                        print(f"{r['pair']:38s} {r['first']:9.4g} {r['final']:9.4g} {r['final'] / r['first']:11.3g} "
                              f"{r['max_rise']:8.3f} {r['content']:8.3g} {r['style']:8.3g} {r['evaluations']:5d} "
                              f"{r['seconds']:6.1f}", flush=True)
    ok = all(r["max_rise"] <= 2.0 and r["final"] <= 0.1 * r["first"] for r in rows)
    print(f"\nall runs: no step raised the total more than 2x and every final total <= first / 10: {ok}"
          f" (largest rise {max(r['max_rise'] for r in rows):.3f}, largest final/first "
          f"{max(r['final'] / r['first'] for r in rows):.3g})")
    refs = []
    if a.reference_size:
        net = models.load_model("vgg19", weights=str(src), device="cpu")
        size = a.reference_size
        print(f"\n## balance against neural-style's outputs at {size} px (independent Gatys loss; defaults, "
              f"{a.steps} steps)")
        print(f"{'pair':22s} {'ref content':>11s} {'ours':>8s} {'ref style':>10s} {'ours':>8s}")
        for ref_name, (photo, painting) in REFERENCES.items():
            c, s = gatys.prepare_images(picture(photo), picture(painting), size)
            ref = images.load_image(SHARED / "images" / "reference-outputs" / f"{ref_name}.png").image
            ref_t = images.to_tensor(ref.resize((c.shape[-1], c.shape[-2]), images.Image.Resampling.LANCZOS))
            r = run_pair(net, photo, painting, size, a.steps, "auto", a.beta)
            rc, rs = gatys_balance(net, ref_t, c, s)
            oc, os_ = gatys_balance(net, r["image"], c, s)
            refs.append({"pair": ref_name, "ref_content": rc, "ref_style": rs, "content": oc, "style": os_})
            print(f"{ref_name:22s} {rc:11.3g} {oc:8.3g} {rs:10.3g} {os_:8.3g}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"runs": rows, "references": refs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
