"""Benchmark: the memory estimate of ``explorer.nets.memory`` against measured peak memory, for every
kind of heavy run.

Each case (a kind of run at one size) runs in a fresh child process: it loads the untrained
network(s) the case needs (untrained weights need the same memory as trained ones: only the
values differ), runs the same case once at a small size (so that lazily loaded code, thread pools
and kernels are there), frees what it can (``gc.collect`` and glibc's ``malloc_trim``), resets
the peak resident set size (``/proc/self/clear_refs``) and records the resident set size as the
baseline, then runs the case the way the app or the command line runs it. The measured figure
is the peak resident set size during the run (``VmHWM``) minus the baseline: what the run itself
needed on top of the loaded model. The estimate is what the run asked ``explorer.nets.memory`` for:
every ``check_fits`` the run calls is recorded (the largest counts), so the table shows the very
figure that approves or refuses the run. Prints one row per case (kind, size, estimate,
measured, ratio = estimate / measured) and asserts nothing.

The cases (``--list``): style transfer with L-BFGS (128-1024 px) and Adam, augmentation batches
(4 images with Adam), Deep Dream (GoogLeNet, tiles of 512 px, 4 octaves), a dream-zoom sequence
written as a GIF by the command line, saliency, guided backprop, Grad-CAM and integrated
gradients (8 images per pass) on VGG19, occlusion through Captum (ResNet-50 and VGG19, up to 128
occluded images per pass) and through the fast VGG engine (up to 256, the page's largest), the
``activations`` command (VGG19 to relu5_1, GoogLeNet) and feature visualization. The command-line
cases reuse the loaded network (``load_model`` is replaced), so loading it is not measured. Runs are cut short where that does not change the
peak: 2 optimizer or dream steps, occlusion stopped after its second batch. All in float32 (the
development CPU has no native bf16). 7-15 minutes on the 2-core development machine.

Usage (from the repository root)::

    .venv/bin/python bench/bench_memory.py                     # every case (7-15 minutes on 2 cores)
    .venv/bin/python bench/bench_memory.py --only style,dream  # the cases whose kind starts so
    .venv/bin/python bench/bench_memory.py --quick --json out.json

The last stdout line starts with ``JSON `` and holds every figure (the tests read it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
from harness import ROOT

#: (kind, size in px, options). ``kind`` picks the runner below; options go to it.
CASES: list[tuple[str, int, dict]] = [
    *[("style-lbfgs", s, {}) for s in (128, 256, 512, 1024)],
    *[("style-adam", s, {}) for s in (256, 512)],
    *[("augment-batch", s, {"batch": 4}) for s in (128, 256)],
    *[("dream", s, {}) for s in (256, 512, 1024)],
    ("dream-zoom", 256, {"frames": 24}),
    ("dream-zoom", 1024, {"frames": 6}),
    *[("saliency", s, {}) for s in (256, 1024)],
    ("guided-backprop", 512, {}),
    ("gradcam", 512, {}),
    *[("integrated-gradients", s, {}) for s in (256, 512)],
    ("occlusion-captum", 64, {"model": "resnet50", "per_eval": 128, "window": 8, "stride": 4}),
    ("occlusion-captum", 128, {"model": "resnet50", "per_eval": 32}),
    ("occlusion-captum", 256, {"model": "vgg19", "per_eval": 16}),
    ("occlusion-fast", 256, {"per_eval": 16}),
    ("occlusion-fast", 512, {"per_eval": 256}),
    *[("activations", s, {"layer": "relu5_1"}) for s in (512, 1024, 2048)],
    ("activations", 1024, {"model": "googlenet", "layer": "inception5b"}),
    *[("featurevis", s, {}) for s in (128, 256)],
]
#: ``--quick``: one small case per family (about 2 minutes).
QUICK = [("style-lbfgs", 128, {}), ("style-lbfgs", 256, {}), ("dream", 256, {}),
         ("occlusion-captum", 64, {"model": "resnet50", "per_eval": 64, "window": 8, "stride": 4}),
         ("activations", 512, {"layer": "relu5_1"})]


def _reset_peak() -> harness.PeakRSS:
    """harness.PeakRSS started (collects, trims, resets the peak to the resident set); exits
    where the peak cannot be reset."""
    mem = harness.PeakRSS().start()
    if not mem.reset_ok:
        raise SystemExit("cannot reset the peak RSS here (/proc/self/clear_refs); Linux only")
    return mem


# ----------------------------------------------------------------------------- the child


class _Recorder:
    """Stands in for ``check_fits`` in every explorer module: records the estimate the run asks
    for (the largest of its calls) and approves."""

    def __init__(self):
        from explorer.nets import memory

        self.memory = memory
        self.calls: list[dict] = []

    def __call__(self, model, height, width, *, kind="style", device="cpu", **options):
        est = self.memory.estimate(model, height, width, kind=kind, **options)
        args = {k: (str(v) if k == "dtype" else list(v) if isinstance(v, (tuple, list)) else v)
                for k, v in options.items()}  # what was asked, to recompute the estimate later
        self.calls.append({"kind": kind, "size": [int(height), int(width)], "total": est.total,
                           "parts": {k: v for k, v in est.__dict__.items()}, "model": model.name, "args": args})
        return est.total

    def install(self) -> None:
        original = self.memory.check_fits
        for name, mod in list(sys.modules.items()):
            if name.startswith("explorer") and getattr(mod, "check_fits", None) is original:
                mod.check_fits = self


def _rand(*shape):
    import torch

    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


def _drain(run, stop_after: int | None = None) -> None:
    it = iter(run)
    for i, _ in enumerate(it):
        if stop_after is not None and i + 1 >= stop_after:
            break
    close = getattr(it, "close", None)
    if close is not None:
        close()


def _cli(argv: list[str]) -> None:
    from explorer.cli import parser as cli

    rc = cli.main([str(a) for a in argv])
    if rc != 0:
        raise SystemExit(f"the command {' '.join(map(str, argv))} failed with status {rc}")


_loaded: dict = {}


def _runner(kind: str, size: int, opts: dict, tmp: Path):
    """A function that runs the case once (the networks already loaded)."""
    from explorer.saliency import attribution
    from explorer.dream import deepdream as dream, settings as dream_settings
    from explorer.featurevis import render as featurevis
    from explorer.nets import models
    from explorer.style import transfer as style, settings as style_settings

    model_name = opts.get("model", {"dream": "googlenet", "dream-zoom": "googlenet"}.get(kind, "vgg19"))
    model = _loaded.get(model_name) or _loaded.setdefault(model_name, models.load_model(model_name, weights="untrained",
                                                                                       device="auto"))
    models.load_model = lambda name, **kw: _loaded[name]  # the command line reuses it: not measured

    if kind in ("style-lbfgs", "style-adam", "augment-batch"):
        opt = "lbfgs" if kind == "style-lbfgs" else "adam"
        b = int(opts.get("batch", 1))
        settings = style_settings.StyleSettings(size=size, steps=2, optimizer=opt, precision="fp32")
        return lambda: _drain(style.StyleTransfer(model, _rand(b, 3, size, size), _rand(1, 3, size, size), settings))
    if kind == "dream":
        settings = dream_settings.DreamSettings(size=size, steps=2, precision="fp32")
        return lambda: _drain(dream.DreamRun(model, _rand(1, 3, size, size), settings))
    if kind == "dream-zoom":  # the command line: frames kept, then PNG and GIF written
        frames = int(opts["frames"])
        return lambda: _cli(["dream", "noise", "-o", tmp / "z.png", "--gif", tmp / "z.gif", "--zoom-frames", frames,
                             "--size", size, "--steps", 1, "--octaves", 1, "--untrained", "--quiet"])
    if kind == "activations":
        return lambda: _cli(["activations", "sample:astronaut", "--model", model_name, "--layer", opts["layer"],
                             "--size", size, "-o", tmp / "a.png", "--json", tmp / "a.json", "--untrained"])
    if kind == "featurevis":
        settings = featurevis.FeatureVisSettings(size=size, steps=2, precision="fp32")
        return lambda: _drain(featurevis.FeatureVisualization(model, settings))
    method = {"saliency": "saliency", "guided-backprop": "guided_backprop", "gradcam": "gradcam",
              "integrated-gradients": "integrated_gradients"}.get(kind, "occlusion")
    settings = attribution.AttributionSettings(method=method, size=size, ig_steps=8,
                                               perturbations_per_eval=int(opts.get("per_eval", 16)),
                                               window=int(opts.get("window", 32)), stride=int(opts.get("stride", 16)),
                                               fast_occlusion=kind == "occlusion-fast")
    stop = 2 if method == "occlusion" else None  # two batches of windows (after the image itself)
    return lambda: _drain(attribution.AttributionRun(model, _rand(1, 3, size, size), settings), stop)


def one(kind: str, size: int, opts: dict) -> dict:
    """Run in a child: warm up at a small size, then measure one case."""
    sys.path.insert(0, str(ROOT))
    import torch

    from explorer.core import devices

    recorder = _Recorder()
    with tempfile.TemporaryDirectory() as tmp:
        _runner(kind, 64, {**opts, **({"frames": 2} if kind == "dream-zoom" else {})}, Path(tmp))()
        recorder.install()
        run = _runner(kind, size, opts, Path(tmp))
        mem = _reset_peak()
        t0 = time.perf_counter()
        run()
        seconds = time.perf_counter() - t0
        figures = mem.stop()
    if not recorder.calls:
        raise SystemExit(f"{kind} at {size} px never asked for a memory estimate")
    call = max(recorder.calls, key=lambda c: c["total"])
    measured, base = figures["run_growth_mb"] * 2**20, figures["rss_before_run_mb"] * 2**20
    return {"kind": kind, "size": size, "options": opts, "estimate_mb": call["total"] / 2**20,
            "measured_mb": measured / 2**20, "ratio": call["total"] / max(1, measured),
            "baseline_mb": base / 2**20, "seconds": round(seconds, 1),
            "precision": devices.precision_name(devices.resolve_precision("fp32", torch.device("cpu"))),
            "parts_mb": {k: v / 2**20 for k, v in call["parts"].items()},
            "asked": {"model": call["model"], "kind": call["kind"], "size": call["size"], **call["args"]}}


# ----------------------------------------------------------------------------- the parent


def _describe(opts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in opts.items())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated kinds (prefixes), e.g. style,occlusion")
    ap.add_argument("--sizes", default="", help="only these sizes, e.g. 128,256")
    ap.add_argument("--quick", action="store_true", help="one small case per family")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--one", metavar="CASE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        kind, size, opts = json.loads(args.one)
        print("JSON " + json.dumps(one(kind, int(size), opts)))
        return 0
    cases = QUICK if args.quick else CASES
    if args.only:
        cases = [c for c in cases if c[0].startswith(tuple(args.only.split(",")))]
    if args.sizes:
        cases = [c for c in cases if str(c[1]) in args.sizes.split(",")]
    if args.list:
        for kind, size, opts in cases:
            print(f"{kind:22s} {size:5d} px  {_describe(opts)}")
        return 0
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    rows, failed = [], 0
    print(harness.machine_line(), flush=True)
    print(f"{'kind':22s} {'size':>6s} {'estimate':>10s} {'measured':>10s} {'ratio':>6s}  details", flush=True)
    for kind, size, opts in cases:
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps([kind, size, opts])], capture_output=True,
                             text=True, env=env, cwd=ROOT, timeout=900)
        if out.returncode != 0:
            print(f"{kind:22s} {size:4d}px  failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
            failed += 1
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1][5:])
        rows.append(r)
        print(f"{kind:22s} {size:4d}px {r['estimate_mb']:8.0f}MB {r['measured_mb']:8.0f}MB {r['ratio']:6.2f}  "
              f"{_describe(opts)}{'; ' if opts else ''}{r['seconds']} s, baseline {r['baseline_mb']:.0f} MB",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    print("JSON " + json.dumps(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
