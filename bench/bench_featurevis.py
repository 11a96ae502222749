"""Feature visualization benchmark: prints figures, never asserts on time.

Rows:
* ``featurevis``: one channel visualization on VGG19 (``--layer`` relu4_1, channel 50), Fourier
  + decorrelated + Lucent's standard transforms, ``--size`` 224 px, ``--steps`` 256 Adam
  steps, ``--precision`` fp32: wall-clock seconds and seconds per step (target: under 60 s
  on the 2-core CPU).
* ``dataset examples``: one pass of :class:`explorer.featurevis.examples.DatasetExamples` over
  ``--images`` 100 pictures at 224 px (the scikit-image samples and ``../shared/images``, with
  resized, cropped and mirrored variants written to a temporary folder until there are enough):
  seconds (target: under 60 s), then the same request again (served by the cache) and another
  channel of the same layer.

Weights: ``../shared/weights/vgg19-caffe-features-q8.pth`` where present (else untrained,
seeded: timings do not depend on the values), or ``--weights PATH|untrained``.

Usage: ``python bench/bench_featurevis.py [--steps 256] [--images 100] [--size 224]``; a quick
check that it runs: ``--steps 4 --images 4 --size 64``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import harness  # noqa: E402

from PIL import Image, ImageOps  # noqa: E402

from explorer.featurevis import examples as D  # noqa: E402
from explorer.featurevis import render as FV  # noqa: E402
from explorer.io.images import ImageError, load_image  # noqa: E402
from explorer.nets.models import load_model  # noqa: E402
from explorer.core.runs import run_to_end  # noqa: E402

SHARED = Path(os.environ.get("EXPLORER_SHARED") or ROOT.parent / "shared")


def base_pictures() -> list[tuple[str, Image.Image]]:
    """The scikit-image samples and the shared pictures, as (name, RGB image)."""
    out = [(s.name, s.load().image) for s in D.sample_sources()]
    folder = SHARED / "images"
    if folder.is_dir():
        for p in sorted(folder.glob("*.jpg")):
            try:
                out.append((p.stem, load_image(p).image))
            except ImageError:
                pass
    return out


def write_dataset(folder: Path, n: int) -> int:
    """``n`` JPEG files in ``folder``: the base pictures, then variants of them (a centre crop
    of 60-90 %, a corner crop, a mirror image, a half-size copy) in turn."""
    bases = base_pictures()
    made = 0
    variant = 0
    while made < n:
        for name, im in bases:
            if made >= n:
                break
            w, h = im.size
            k = variant % 4
            if variant == 0:
                out = im
            elif k == 1:
                f = 0.6 + 0.1 * (variant // 4 % 4)
                cw, ch = int(w * f), int(h * f)
                out = im.crop(((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2))
            elif k == 2:
                out = im.crop((0, 0, max(64, w * 2 // 3), max(64, h * 2 // 3)))
            elif k == 3:
                out = ImageOps.mirror(im)
            else:
                out = im.resize((max(64, w // 2), max(64, h // 2)), Image.Resampling.LANCZOS)
            out.convert("RGB").save(folder / f"{made:03d}-{name.replace(' ', '_')}-v{variant}.jpg", quality=90)
            made += 1
        variant += 1
    return made


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--layer", default="relu4_1")
    ap.add_argument("--channel", type=int, default=50)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--weights", default=None, help="a VGG19 state_dict file or 'untrained'")
    args = ap.parse_args(argv)

    weights = args.weights
    if weights is None:
        shared = SHARED / "weights" / "vgg19-caffe-features-q8.pth"
        weights = str(shared) if shared.exists() else "untrained"
    model = load_model("vgg19", weights=weights, device="cpu")
    print(f"{harness.machine_line()}; {model.weights.label}")

    s = FV.FeatureVisSettings(layer=args.layer, channels=(args.channel,), size=args.size, steps=args.steps,
                              precision=args.precision)
    run = FV.FeatureVisualization(model, s)
    t = time.perf_counter()
    res = run_to_end(run)
    sec = time.perf_counter() - t
    print(f"featurevis       {args.layer} channel {args.channel}, {args.size} px, {args.steps} steps, {res.precision}, "
          f"fourier + decorrelated + {len(s.transforms)} transforms: {sec:.2f} s "
          f"({sec / max(1, args.steps):.3f} s/step; target < 60 s for 256 steps at 224 px); "
          f"objective {res.history[0]['objective'] if res.history else 0:.4g} -> "
          f"{res.history[-1]['objective'] if res.history else 0:.4g}")

    with tempfile.TemporaryDirectory() as tmp:
        n = write_dataset(Path(tmp), args.images)
        D.clear_cache()
        run = D.DatasetExamples(model, args.layer, args.channel, tmp, k=9, size=args.size, precision=args.precision)
        t = time.perf_counter()
        out = run_to_end(run)
        sec = time.perf_counter() - t
        print(f"dataset examples {args.layer}, {n} images at {args.size} px, {args.precision}: {sec:.2f} s "
              f"({sec / max(1, n):.3f} s/image; target < 60 s for 100 images at 224 px); "
              f"{len(out.skipped)} skipped; top {out.examples[0].name if out.examples else '-'} "
              f"({out.examples[0].value if out.examples else 0:.4g})")
        t = time.perf_counter()
        again = run_to_end(D.DatasetExamples(model, args.layer, args.channel, tmp, k=9, size=args.size,
                                             precision=args.precision))
        t2 = time.perf_counter()
        other = out.for_channel((args.channel + 1) % out.index.values.shape[1])
        t3 = time.perf_counter()
        print(f"dataset examples again (cache {'hit' if again.cached else 'miss'}): {t2 - t:.3f} s; "
              f"another channel from the same pass: {t3 - t2:.3f} s ({len(other.examples)} crops)")


if __name__ == "__main__":
    main()
