"""Benchmark: dataset augmentation throughput (images per minute) by working size and batch size.

Prints figures; asserts nothing about time. For each working size S and batch size B it runs
``explorer.batch.augment.Augmentation`` end to end (decode, resize, style targets, Adam, PNG writes,
manifest rows) over a synthetic ImageFolder dataset written to a temporary folder (two classes
of square smooth pictures, N images, one variant each, so every batch is full), untrained VGG19
(``torch.manual_seed(0)``), 50 Adam steps, fp32 unless ``--precision`` says otherwise, two bundled
style images (scikit-image's gravel and brick). Next to it, ``network`` is the floor: VGG19
``features`` up to relu5_1 alone, forward + backward to the input (weights frozen), the same
batch and memory format, averaged over a few iterations after a warm-up; ``share`` is how much of
the augmentation's time that floor explains. ``GFLOP/s`` counts the convolutions only (forward
2*C_in*C_out*9*H*W per layer up to conv5_1, backward to the input about as much again).

All configurations run in this one process, one after the other, with the network built once;
the load average (``os.getloadavg``) is printed before and after, since a busy machine (another
job on the 2 cores) slows everything down.

Usage (from the repository root)::

    .venv/bin/python bench/bench_augment.py                          # 128 and 256 px, B = 1, 4, 8
    .venv/bin/python bench/bench_augment.py --sizes 128 --images 8   # the 128 px rows only
    .venv/bin/python bench/bench_augment.py --sizes 64 --steps 5 --images 4   # smoke test
    .venv/bin/python bench/bench_augment.py --real                   # real weights: speed and quality

``--real`` runs on the real VGG19 file of ``../shared/weights`` instead: a dataset of
real photos (the shared ones and scikit-image's) with the shared paintings as styles, at 128 px
with the page's defaults (batch 4, beta 30-200), once with the settings of before (content start,
pixels, 50 Adam steps) and then with today's start and parameterization at several step counts.
For each it prints images per minute and two quality measures of the pictures written, averaged
over the outputs: ``style left``, the output's relative style loss (mean over relu1_1 .. relu5_1
of ||G - A||^2 / ||A||^2 against its style's Gram matrices) as a fraction of the content
image's, lower = more of the style; and ``SSIM``, the structural similarity of the output's and
the content's luminance (scikit-image), higher = more of the content's structure kept.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: no busy-waiting threads

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import harness  # noqa: E402

import torch  # noqa: E402

from explorer.batch import augment, augment_io, augment_settings
from explorer.io import images, samples
from explorer.nets import models  # noqa: E402
from explorer.core import devices

VGG19_CONVS = [(3, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 2), (128, 256, 4), (256, 256, 4), (256, 256, 4),
               (256, 256, 4), (256, 512, 8), (512, 512, 8), (512, 512, 8), (512, 512, 8), (512, 512, 16)]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def conv_gflop(size: int) -> float:
    """Forward GFLOP of VGG19's convolutions up to conv5_1 for one size x size image."""
    return sum(2 * ci * co * 9 * (size // d) ** 2 for ci, co, d in VGG19_CONVS) / 1e9


def write_dataset(root: Path, n: int, size: int) -> None:
    """n square pictures (smooth gradients with a disc, each shifted) in two class folders."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    for i in range(n):
        cx, cy = 0.3 + 0.4 * (i % 3) / 2, 0.3 + 0.4 * (i % 2)
        disc = (((x - cx) ** 2 + (y - cy) ** 2) < 0.05).float()
        t = torch.stack([x.roll(i * 7, 1), y, 0.2 + 0.6 * disc]).unsqueeze(0)
        p = root / ("a" if i % 2 else "b") / f"img{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        images.to_pil(t).save(p)


def network_floor(model, size: int, batch: int, precision: str, iters: int = 3) -> float:
    """Seconds per forward+backward of VGG19 up to relu5_1 for a batch (channels_last, as the runs)."""
    dtype = devices.resolve_precision(precision, model.device)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last).requires_grad_(True)

    def once():
        with devices.autocast(model.device, dtype):
            f = model.features(x, ["relu5_1"])["relu5_1"]
        f.float().pow(2).sum().backward()
        x.grad = None

    once()
    start = time.perf_counter()
    for _ in range(iters):
        once()
    return (time.perf_counter() - start) / iters


SHARED = Path(os.environ.get("EXPLORER_SHARED", ROOT.parent / "shared"))
#: (init, parameterization, steps) of each --real configuration; the first is the settings of before.
REAL_CONFIGS = [("content", "pixel", 50), ("histogram", "fourier", 50), ("histogram", "fourier", 30),
                ("histogram", "fourier", 20), ("histogram", "fourier", 10)]


def real_dataset(root: Path) -> list[augment_io.StyleImage]:
    """The shared photos and a few scikit-image samples as an ImageFolder under ``root``; the
    shared paintings as style images."""
    from PIL import Image

    photos = [p for p in sorted((SHARED / "images").glob("*.jpg"))
              if p.stem in ("tubingen", "golden_gate", "hoovertowernight")]
    for i, p in enumerate(photos):
        (root / "photos").mkdir(parents=True, exist_ok=True)
        Image.open(p).convert("RGB").save(root / "photos" / f"{p.stem}.png")
    for name in ("astronaut", "coffee", "chelsea", "hubble_deep_field", "immunohistochemistry"):
        (root / "samples").mkdir(parents=True, exist_ok=True)
        samples.load_sample(name).image.save(root / "samples" / f"{name}.png")
    return [augment_io.StyleImage(p.stem, Image.open(p).convert("RGB")) for p in sorted((SHARED / "images").glob("*.jpg"))
            if p.stem in ("shipwreck", "starry_night", "the_scream", "woman-with-hat-matisse")]


def quality(model, data: Path, out: Path, run, styles) -> tuple[float, float]:
    """(style left, SSIM) averaged over the outputs of ``run`` (see the module docstring)."""
    import numpy as np
    from skimage.metrics import structural_similarity

    from explorer.style import color
    from explorer.optim import losses

    layers = list(run.settings.style_layers)
    left, ssim = [], []
    for row in run.written:
        result = images.to_tensor(images.load_image(str(out / row["output"])).image)
        content = images.to_tensor(images.resize_long_side(images.load_image(str(data / row["source"])).image,
                                                           int(row["size"])))
        index = [s.name for s in styles].index(row["styles"])
        style = images.to_tensor(images.resize_long_side(styles[index].image, int(row["size"])))
        with torch.no_grad():
            fs = model.features(style, layers)
            targets = {l: losses.gram_matrix(fs[l], normalize=True)[0] for l in layers}

            def rel(x):
                f = model.features(x, layers)
                return sum(float((losses.gram_matrix(f[l], normalize=True)[0] - a).pow(2).sum() / a.pow(2).sum())
                           for l, a in targets.items()) / len(layers)

            left.append(rel(result) / rel(content))
        y = [color.luminance(t)[0, 0].numpy() for t in (result, content)]
        ssim.append(float(structural_similarity(y[0], y[1], data_range=1.0)))
    return float(np.mean(left)), float(np.mean(ssim))


def main_real(args) -> int:
    weights = SHARED / "weights" / "vgg19-caffe-features-q8.pth"
    if not weights.exists():
        log(f"--real needs {weights} (set EXPLORER_SHARED)")
        return 2
    model = models.load_model("vgg19", weights=str(weights), device="cpu")
    configs = REAL_CONFIGS if not args.configs else [
        (i, p, int(n)) for i, p, n in (c.split(":") for c in args.configs.split(","))]
    log(f"{harness.machine_line()}; precision {args.precision}; {model.weights.label}; "
        f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'start':>9} {'optimize':>8} {'steps':>5} {'images':>6} {'seconds':>8} {'img/min':>8} {'style left':>10} "
          f"{'SSIM':>6}", flush=True)
    rows, sheet = [], []
    with tempfile.TemporaryDirectory(prefix="bench-augment-real-") as tmp:
        data = Path(tmp) / "in"
        styles = real_dataset(data)
        warm = augment_settings.AugmentSettings(steps=2, precision=args.precision, variants=1)
        for _ in augment.Augmentation(model, data, styles, Path(tmp) / "warm", warm):
            pass
        for k, (init, par, steps) in enumerate(configs):
            s = augment_settings.AugmentSettings(variants=1, steps=steps, init=init, parameterization=par,
                                             precision=args.precision, seed=0)
            out = Path(tmp) / f"out{k}"
            run = augment.Augmentation(model, data, styles, out, s)
            start = time.perf_counter()
            for _ in run:
                pass
            seconds = time.perf_counter() - start
            n = len(run.written)
            left, ssim = quality(model, data, out, run, styles)
            written = sorted(run.written, key=lambda r: r["output"])
            sheet.append([images.load_image(str(out / r["output"])).image for r in written])
            rows.append({"init": init, "parameterization": par, "steps": steps, "images": n, "seconds": seconds,
                         "images_per_minute": n / seconds * 60, "style_left": left, "ssim": ssim})
            print(f"{init:>9} {par:>8} {steps:>5} {n:>6} {seconds:>8.1f} {n / seconds * 60:>8.2f} {left:>10.3f} "
                  f"{ssim:>6.3f}", flush=True)
    log(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    from explorer.io import grids

    path = ROOT / "bench" / "out" / "augment-real.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = [images.to_tensor(im.resize((128, 96))) for row in sheet for im in row]
    labels = [f"{i}, {p}, {n} steps" if j == 0 else "" for (i, p, n), row in zip(configs, sheet)
              for j in range(len(row))]
    grids.image_grid(torch.cat(cells), labels, cols=len(sheet[0])).save(path)
    log(f"the outputs, one row per configuration: {path}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "precision": args.precision}, indent=2))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="128,256", help="working sizes, comma-separated (default 128,256)")
    ap.add_argument("--batch-sizes", default="1,4,8", help="default 1,4,8")
    ap.add_argument("--steps", type=int, default=50, help="Adam steps per image (default 50)")
    ap.add_argument("--images", type=int, default=8, help="images per configuration (default 8)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"], help="default fp32")
    ap.add_argument("--json", metavar="OUT.json", help="also write the rows as JSON")
    ap.add_argument("--real", action="store_true", help="real weights and pictures: speed and quality")
    ap.add_argument("--configs", metavar="INIT:PARAM:STEPS,...",
                    help="--real's configurations instead of its own, e.g. histogram:pixel:30,content:pixel:50")
    args = ap.parse_args()
    if args.real:
        return main_real(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batch_sizes.split(",")]

    model = models.load_model("vgg19", weights="untrained", device="cpu")
    styles = [augment_io.StyleImage(f"sample:{k}", samples.load_sample(k).image) for k in ("gravel", "brick")]
    load0 = os.getloadavg()
    log(f"{harness.machine_line()}; precision {args.precision}, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}; load average before: {' '.join(f'{v:.2f}' for v in load0)}")
    rows = []
    header = (f"{'size':>5} {'batch':>5} {'images':>6} {'seconds':>8} {'img/min':>8} {'s/step/img':>10} "
              f"{'network':>8} {'share':>6} {'GFLOP/s':>8}")
    print(header, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-augment-") as tmp:
        for size in sizes:
            data = Path(tmp) / f"in{size}"
            write_dataset(data, args.images, size)
            # warm-up: oneDNN picks its kernels for this shape on the first passes
            warm = augment_settings.AugmentSettings(variants=1, batch_size=1, steps=2, size=size, precision=args.precision)
            for _ in augment.Augmentation(model, data, styles, Path(tmp) / f"warm{size}", warm):
                pass
            for b in batches:
                s = augment_settings.AugmentSettings(variants=1, batch_size=b, steps=args.steps, size=size,
                                            beta_range=(1e5, 1e6), precision=args.precision, seed=0)
                run = augment.Augmentation(model, data, styles, Path(tmp) / f"out{size}-{b}", s)
                start = time.perf_counter()
                for _ in run:
                    pass
                seconds = time.perf_counter() - start
                n = len(run.written)
                floor = network_floor(model, size, b, args.precision)
                step_img = seconds / n / (args.steps + 1)  # + the final forward pass, no backward
                row = {"size": size, "batch": b, "images": n, "seconds": round(seconds, 2),
                       "images_per_minute": round(n / seconds * 60, 2), "seconds_per_step_per_image": round(step_img, 4),
                       "network_seconds_per_step_per_image": round(floor / b, 4),
                       "network_share": round(floor / b / step_img, 3),
                       "gflop_per_s": round(2 * conv_gflop(size) * args.steps * n / seconds, 1)}
                rows.append(row)
                print(f"{size:>5} {b:>5} {n:>6} {seconds:>8.1f} {row['images_per_minute']:>8.2f} {step_img:>10.4f} "
                      f"{floor / b:>8.4f} {row['network_share']:>6.0%} {row['gflop_per_s']:>8.1f}", flush=True)
    load1 = os.getloadavg()
    need = 30 / 60 * 2 * conv_gflop(128) * args.steps
    log(f"load average after: {' '.join(f'{v:.2f}' for v in load1)}")
    log(f"30 images/min at 128 px and {args.steps} steps needs {need:.0f} GFLOP/s of VGG19 convolutions "
        f"({2 * conv_gflop(128):.1f} GFLOP per image and step, forward + backward).")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"load_before": load0, "load_after": load1, "steps": args.steps,
                                               "precision": args.precision, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
