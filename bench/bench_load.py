"""Benchmark: many sessions sharing one model, and how fast a page renders under load.

Prints, on this machine (CPU, untrained VGG19):

* the time to render the home page (``AppTest`` of app.py, the script run a browser triggers)
  when the machine is idle, and while 4 style transfers (128 px, Adam) are in progress, with
  the default queue (``EXPLORER_MAX_RUNS=1``: one computes, three wait) and with 2 slots;
* 8 concurrent sessions (threads calling what the pages call, as in tests/test_load.py), each a
  64 px style transfer with its own seed and a saliency map (one of them guided backprop):
  seconds, model loads, the most runs computing at once, peak RSS growth, and whether every
  result equals the same session run alone.

Asserts nothing. Usage (from the repository root)::

    .venv/bin/python bench/bench_load.py [--renders 5] [--sessions 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import harness
from harness import ROOT

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("EXPLORER_ALLOW_UNTRAINED", "1")
os.environ.setdefault("EXPLORER_OFFLINE", "1")


def render_home(n: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    times = []
    for _ in range(n):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
        assert not at.exception
    return times


def under_load(n: int, slots: int, model) -> tuple[list[float], list[int]]:
    from explorer.io import samples
    from explorer.style import transfer as style
    from explorer.app import runs, ui
    from explorer.style import settings as style_settings
    from explorer.style.blend import prepare_blend
    from tests.test_load import Bar

    os.environ["EXPLORER_MAX_RUNS"] = str(slots)
    ui.heavy_runs.clear()
    stop, started = threading.Event(), threading.Semaphore(0)
    steps = [0] * 4
    content, style_img = samples.load_sample("astronaut").image, samples.load_sample("gravel").image

    def run(k):
        settings = style_settings.StyleSettings(size=128, steps=100_000, seed=k, optimizer="adam")
        c, blend = prepare_blend(content, [(style_img, 1.0)], settings.size)
        gen = runs._queued(style.StyleTransfer(model, c, blend, settings), Bar())
        try:
            for ev in gen:
                steps[k] = ev.step
                if ev.step == 1:
                    started.release()
                if stop.is_set():
                    break
        finally:
            gen.close()

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    started.acquire()
    try:
        times = render_home(n)
    finally:
        stop.set()
        for t in threads:
            t.join()
    ui.heavy_runs.clear()
    return times, steps


def sessions(n: int) -> dict:
    import numpy as np
    import torch

    from explorer.nets import models
    from explorer.app import ui
    from tests import test_load as tl

    os.environ["EXPLORER_MAX_RUNS"] = "4"
    ui.cached_model.clear()
    ui.heavy_runs.clear()
    loads = []
    original = models.load_model
    models.load_model = lambda *a, **k: loads.append(a[0]) or original(*a, **k)
    tracker = {"lock": threading.Lock(), "now": 0, "max": 0}
    try:
        mem = harness.PeakRSS().start()
        t = time.perf_counter()
        together = tl.run_threads(lambda k: tl.session_work(k, tracker), n)
        seconds = time.perf_counter() - t
        peak = mem.stop()["run_growth_mb"]
        t = time.perf_counter()
        alone = [tl.session_work(k) for k in range(n)]
        seconds_alone = time.perf_counter() - t
    finally:
        models.load_model = original
    same = all(torch.equal(a["image"], b["image"]) and np.array_equal(a["heat"], b["heat"])
               for a, b in zip(together, alone))
    ui.heavy_runs.clear()
    return {"sessions": n, "seconds": seconds, "seconds_alone_one_after_another": seconds_alone,
            "loads": len(loads), "max_running": tracker["max"], "peak_rss_growth_mb": peak,
            "identical_to_alone": same, "waited": sum(1 for r in together if r["waited"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--renders", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=8)
    args = ap.parse_args(argv)
    from explorer.nets import models

    print(harness.machine_line())
    s = sessions(args.sessions)
    print(f"{s['sessions']} sessions (4 slots): {s['seconds']:.1f} s together, {s['seconds_alone_one_after_another']:.1f} s "
          f"one after another; model loads {s['loads']}; at most {s['max_running']} computing at once; "
          f"{s['waited']} session(s) queued; peak RSS growth {s['peak_rss_growth_mb']:.0f} MB (model included); "
          f"identical to alone: {s['identical_to_alone']}")
    model = models.load_model("vgg19", weights="untrained", device="cpu")
    render_home(1)  # warm-up: imports, the first script run
    idle = render_home(args.renders)
    print(f"home page render, idle:                 median {statistics.median(idle):.3f} s, max {max(idle):.3f} s")
    for slots in (1, 2):
        busy, steps = under_load(args.renders, slots, model)
        print(f"home page render, 4 runs, {slots} slot(s):    median {statistics.median(busy):.3f} s, "
              f"max {max(busy):.3f} s (steps the runs made meanwhile: {steps})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
