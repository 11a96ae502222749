"""Same results before and after a refactor: run a fixed list of commands and fingerprint what
they write.

Every command of ``python -m explorer`` runs at a small size, on untrained weights and (where
``../shared/weights`` is present) on the real VGG19 and MobileNetV2 files, in a fresh
interpreter. Each output is reduced to a fingerprint of its *values*, so that metadata which a
refactor may legitimately change (a report's layout, the recipe in a PNG's text chunks) does
not count, while any change of a number does:

* a PNG: SHA-256 of its decoded RGB pixels;
* a ``.npy``: SHA-256 of its array bytes, dtype and shape;
* a JSON report: SHA-256 of every number under its ``history`` (and ``final_losses``,
  ``values``, ``channels``) keys, in order, written with ``repr`` (exact floats), timings
  (``seconds``, ...) and the recipe (``run``, ``settings``: what was asked, not what was
  computed) left out;
* an augmentation folder: each PNG's pixel fingerprint.

It also prints each command's wall-clock seconds (one run each: a rough check that nothing got
slower; use the other benchmarks for speed).

Usage (from the repository root)::

    python bench/bench_identity.py --json bench/out/identity-before.json
    ... change the code ...
    python bench/bench_identity.py --json bench/out/identity-after.json
    python bench/bench_identity.py --compare bench/out/identity-before.json bench/out/identity-after.json

``--compare`` prints one line per case (``same`` or ``DIFFERENT``) and exits 1 when any
fingerprint differs. It never asserts on time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXPLORER_SHARED") or ROOT.parent / "shared")
VGG = SHARED / "weights" / "vgg19-caffe-features-q8.pth"
MOBILENET = SHARED / "weights" / "mobilenet_v2-coral-int8.pth"
PAINTING = SHARED / "images" / "starry_night.jpg"
PHOTO = SHARED / "images" / "tubingen.jpg"

_NUMERIC_KEYS = ("history", "final_losses", "values", "channels", "top", "channel_means", "mean", "objective")
#: Keys that hold what a result was asked for (the run-info block and the settings), not what it
#: computed: a report that gains them (``activations --json``) keeps its fingerprint.
_RECIPE_KEYS = ("run", "settings")
#: Keys that hold timings (different at every run), left out wherever they appear.
_TIME_KEYS = ("seconds", "elapsed", "time", "images_per_minute", "seconds_per_step")


def cases(out: Path) -> list[tuple[str, list[str], list[Path]]]:
    """(name, arguments of ``python -m explorer``, output paths) for every case."""
    u = ["--untrained", "--quiet"]
    c: list[tuple[str, list[str], list[Path]]] = []

    def add(name, args, *outs):
        c.append((name, [str(a) for a in args], [out / o for o in outs]))

    st = ["stylize", "sample:chelsea", "sample:brick", "--size", "64", "--steps", "4"]
    add("stylize lbfgs", [*st, "-o", out / "s1.png", "--report", out / "s1.json", *u], "s1.png", "s1.json")
    add("stylize adam pixel", [*st, "--optimizer", "adam", "--init", "content", "-o", out / "s2.png",
                               "--report", out / "s2.json", *u], "s2.png", "s2.json")
    add("stylize luminance 2 scales", [*st, "--preserve-color", "luminance", "--scales", "2", "--start-size", "48",
                                       "-o", out / "s3.png", "--report", out / "s3.json", *u], "s3.png", "s3.json")
    add("stylize photo + auto masks", [*st, "--photo-lambda", "1e5", "--auto-masks", "2", "-o", out / "s4.png",
                                       "--report", out / "s4.json", *u], "s4.png", "s4.json")
    add("stylize guided saliency", [*st, "--guide", "saliency", "--keep", "0.3", "-o", out / "s5.png",
                                    "--report", out / "s5.json", *u], "s5.png", "s5.json")
    add("stylize blend", ["stylize", "sample:chelsea", "--style", "sample:brick:0.7,sample:gravel:0.3", "--size", "64",
                          "--steps", "3", "-o", out / "s6.png", "--report", out / "s6.json", *u], "s6.png", "s6.json")
    add("stylize vgg16 avg paper", [*st, "--model", "vgg16", "--pooling", "avg", "--loss-normalization", "paper",
                                    "--style-weight", "1e3", "-o", out / "s7.png", "--report", out / "s7.json", *u],
        "s7.png", "s7.json")
    for model, layer in (("googlenet", "inception4c"), ("mobilenet_v2", "block10")):
        add(f"dream {model}", ["dream", "sample:chelsea", "--model", model, "--layers", layer, "--size", "96",
                               "--octaves", "2", "--steps", "2", "-o", out / f"d-{model}.png",
                               "--report", out / f"d-{model}.json", *u], f"d-{model}.png", f"d-{model}.json")
    add("dream zoom gif", ["dream", "noise", "--model", "vgg19", "--layers", "relu3_1", "--size", "64", "--octaves", "1",
                           "--steps", "2", "--zoom-frames", "3", "--gif", out / "z.gif", "-o", out / "z.png", *u],
        "z.png")
    for method in ("saliency", "guided_backprop", "integrated_gradients", "occlusion", "gradcam"):
        extra = ["--ig-steps", "4"] if method == "integrated_gradients" else []
        add(f"saliency {method}", ["saliency", "sample:gravel", "--method", method, "--size", "64", *extra,
                                   "-o", out / f"h-{method}.png", "--npy", out / f"h-{method}.npy", *u],
            f"h-{method}.png", f"h-{method}.npy")
    add("saliency mobilenet", ["saliency", "sample:gravel", "--model", "mobilenet_v2", "--objective", "layer:block6",
                               "--size", "64", "-o", out / "h-mb.png", "--npy", out / "h-mb.npy", *u],
        "h-mb.png", "h-mb.npy")
    add("activations vgg19", ["activations", "sample:chelsea", "--layer", "relu3_1", "--size", "64",
                              "-o", out / "a.png", "--json", out / "a.json", "--untrained"], "a.png", "a.json")
    add("activations resnet50", ["activations", "sample:chelsea", "--model", "resnet50", "--layer", "layer2_1",
                                 "--size", "64", "-o", out / "a2.png", "--json", out / "a2.json", "--untrained"],
        "a2.png", "a2.json")
    add("featurevis", ["featurevis", "--layer", "relu3_1", "--channels", "0-1", "--steps", "3", "--size", "64",
                       "-o", out / "f.png", "--report", out / "f.json", *u], "f.png", "f.json")
    add("reconstruct", ["reconstruct", "sample:chelsea", "sample:brick", "--size", "48", "--steps", "2",
                        "--layers", "relu1_2,relu3_2", "--style-sets", "relu1_1;relu1_1,relu2_1", "-o", out / "rc.png",
                        "--report", out / "rc.json", *u], "rc.png", "rc.json")
    add("augment", ["augment", out / "data", out / "styles", "-o", out / "aug", "--variants", "2", "--steps", "2",
                    "--size", "48", "--batch-size", "2", *u], "aug")

    if VGG.is_file() and MOBILENET.is_file() and PAINTING.is_file():
        r = ["--weights", VGG, "--quiet"]
        add("real stylize", ["stylize", PHOTO, PAINTING, "--size", "96", "--steps", "6", "-o", out / "r1.png",
                             "--report", out / "r1.json", *r], "r1.png", "r1.json")
        add("real dream vgg19", ["dream", "sample:chelsea", "--model", "vgg19", "--layers", "relu4_2", "--size", "96",
                                 "--octaves", "2", "--steps", "3", "-o", out / "r2.png", "--report", out / "r2.json", *r],
            "r2.png", "r2.json")
        add("real saliency occlusion", ["saliency", PAINTING, "--method", "occlusion", "--size", "96",
                                        "-o", out / "r3.png", "--npy", out / "r3.npy", *r], "r3.png", "r3.npy")
        m = ["--weights", MOBILENET, "--quiet"]
        add("real dream mobilenet", ["dream", "sample:chelsea", "--model", "mobilenet_v2", "--layers", "block10",
                                     "--size", "96", "--octaves", "2", "--steps", "3", "-o", out / "r4.png",
                                     "--report", out / "r4.json", *m], "r4.png", "r4.json")
        add("real saliency mobilenet class", ["saliency", "sample:chelsea", "--model", "mobilenet_v2", "--objective",
                                              "class", "--size", "96", "-o", out / "r5.png", "--npy", out / "r5.npy",
                                              *m], "r5.png", "r5.npy")
        add("real activations mobilenet", ["activations", "sample:chelsea", "--model", "mobilenet_v2", "--layer",
                                           "block6", "--size", "96", "-o", out / "r6.png", "--json", out / "r6.json",
                                           "--weights", MOBILENET], "r6.png", "r6.json")
    return c


def _dataset(out: Path) -> None:
    """A tiny ImageFolder dataset and a styles folder, made from the bundled samples."""
    sys.path.insert(0, str(ROOT))
    from explorer.io import images, samples  # noqa: E402  (the project's own decoder and samples)

    for k, (cls, name) in enumerate((("cats", "chelsea"), ("cats", "coffee"), ("people", "astronaut"))):
        im = images.resize_long_side(samples.load_sample(name).image, 64)
        (out / "data" / cls).mkdir(parents=True, exist_ok=True)
        im.save(out / "data" / cls / f"{name}.png")
    (out / "styles").mkdir(exist_ok=True)
    for name in ("brick", "gravel"):
        images.resize_long_side(samples.load_sample(name).image, 64).save(out / "styles" / f"{name}.png")


def _numbers(obj, found: list) -> None:
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        found.append(repr(obj))
    elif isinstance(obj, dict):
        for k in sorted(obj):
            if k not in _TIME_KEYS:
                _numbers(obj[k], found)
    elif isinstance(obj, list):
        for v in obj:
            _numbers(v, found)


def _json_numbers(obj, found: list) -> None:
    if isinstance(obj, dict):
        for k in sorted(obj):
            if k in _RECIPE_KEYS:
                continue
            if k in _NUMERIC_KEYS:
                _numbers(obj[k], found)
            else:
                _json_numbers(obj[k], found)
    elif isinstance(obj, list):
        for v in obj:
            _json_numbers(v, found)


def fingerprint(path: Path) -> str:
    """A SHA-256 of the values a file holds (see the module docstring)."""
    import numpy as np
    from PIL import Image

    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*.png")):
            h.update(str(p.relative_to(path)).encode())
            h.update(fingerprint(p).encode())
    elif path.suffix == ".png":
        with Image.open(path) as im:
            h.update(np.asarray(im.convert("RGB")).tobytes())
    elif path.suffix == ".npy":
        a = np.load(path, allow_pickle=False)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    elif path.suffix == ".json":
        found: list = []
        _json_numbers(json.loads(path.read_text()), found)
        h.update("\n".join(found).encode())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def run(only: str | None) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="identity-") as tmp:
        out = Path(tmp)
        _dataset(out)
        env = {**os.environ, "EXPLORER_OFFLINE": "1", "PYTHONHASHSEED": "0"}
        for name, args, outs in cases(out):
            if only and only not in name:
                continue
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "explorer", *args], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                results[name] = {"error": (proc.stderr.strip().splitlines() or ["?"])[-1], "seconds": seconds}
            else:
                results[name] = {"files": {p.name: fingerprint(p) for p in outs}, "seconds": round(seconds, 2)}
            shown = results[name].get("error") or " ".join(f"{k}={v}" for k, v in results[name]["files"].items())
            print(f"{name:34s} {seconds:6.1f} s  {shown}", flush=True)
    return results


def compare(a: dict, b: dict) -> int:
    different = 0
    for name in sorted(set(a["cases"]) | set(b["cases"])):
        ra, rb = a["cases"].get(name), b["cases"].get(name)
        if ra is None or rb is None:
            print(f"{name:34s} only in {'the second' if ra is None else 'the first'}")
            continue
        same = ra.get("files") == rb.get("files") and "error" not in ra and "error" not in rb
        different += not same
        print(f"{name:34s} {'same' if same else 'DIFFERENT'}   {ra.get('seconds', 0):6.1f} s -> {rb.get('seconds', 0):6.1f} s"
              + ("" if same else f"   {ra.get('files') or ra.get('error')} vs {rb.get('files') or rb.get('error')}"))
    print(f"{different} case(s) differ")
    return 1 if different else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="write the fingerprints here")
    p.add_argument("--only", help="run only the cases whose name contains this")
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two --json files")
    args = p.parse_args(argv)
    if args.compare:
        return compare(*(json.loads(Path(f).read_text()) for f in args.compare))
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
               "avx512": "avx512f" in flags, "bf16": "avx512_bf16" in flags or "amx_bf16" in flags}
    print(f"machine: {machine}")
    data = {"machine": machine, "cases": run(args.only)}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
