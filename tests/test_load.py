"""Many sessions sharing one model; stopping runs; where uploads and weights are read.

Sessions are threads that call what the pages call (``ui.cached_model``,
``ui.cached_style_targets``, ``style.StyleTransfer``, ``attribution.AttributionRun``, all
through the shared run queue ``runs._queued``), because each Streamlit session runs its script in
its own thread of one process. AppTest instances cannot run side by side in threads: every
``AppTest.run`` installs a mock ``Runtime._instance`` (and resets ``PagesManager`` state) for
the whole process and sets it back to None when it ends, so concurrent AppTests would tear down
each other's runtime. An AppTest of the home page is rendered in the main thread while runs are
in progress. Bounded: 8 sessions, 64 px, 2 steps, a 300 s overall timeout; no timing asserts
(render times are printed by bench/bench_load.py).
"""

from __future__ import annotations

import gc
import re
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer.saliency import attribution
from explorer.io import images, samples
from explorer.nets import models
from explorer.style import transfer as style
from explorer.app import runs, ui
from explorer.nets import weights
from explorer.style import settings as style_settings
from explorer.style.blend import prepare_blend
from tests.corpus import good_png
from tests.helpers import app_env

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = 8
DEADLINE = 300.0


class Bar:
    """Stands in for the page's progress bar (the queue reports waiting positions to it)."""

    def __init__(self):
        self.positions: list[int] = []

    def progress(self, value, text=""):
        if text.startswith("Waiting for the machine"):
            ahead = re.search(r"and (\d+) queued before yours", text)
            self.positions.append(int(ahead.group(1)) + 1 if ahead else 1)


def rss_peak_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def session_work(i: int, tracker: dict | None = None) -> dict:
    """One session: a style transfer with its own seed, then a heatmap of its result
    (session 0: guided backprop, which hooks a private copy; the others: plain saliency)."""
    model = ui.cached_model("vgg19", "untrained", "cpu")
    content, style_img = samples.load_sample("astronaut").image, samples.load_sample("gravel").image
    settings = style_settings.StyleSettings(size=64, steps=2, seed=100 + i, init="noise", optimizer="adam", lr=0.05)
    c, blend = prepare_blend(content, [(style_img, 1.0)], settings.size)
    targets = ui.cached_style_targets(model, blend[0][0], settings)
    run = style.StyleTransfer(model, c, targets, settings)
    bar = Bar()
    for _ in runs._queued(_tracked(run, tracker), bar):
        pass
    result = run.result()
    method = "guided_backprop" if i == 0 else "saliency"
    heat_run = attribution.AttributionRun(model, result.image, attribution.AttributionSettings(method=method, size=64))
    for _ in runs._queued(_tracked(heat_run, tracker), bar):
        pass
    return {"image": result.image, "heat": heat_run.result().values, "waited": bar.positions, "model": model}


def _tracked(events, tracker):
    if tracker is None:
        yield from events
        return
    with tracker["lock"]:
        tracker["now"] += 1
        tracker["max"] = max(tracker["max"], tracker["now"])
    try:
        yield from events
    finally:
        with tracker["lock"]:
            tracker["now"] -= 1


@pytest.fixture
def fresh_caches(monkeypatch):
    """Cold model cache and run queue (4 slots), and a count of model loads."""
    monkeypatch.setenv("EXPLORER_MAX_RUNS", "4")
    ui.cached_model.clear()
    ui.heavy_runs.clear()
    loads = []
    original = models.load_model

    def counting(*args, **kwargs):
        loads.append(args[0] if args else kwargs.get("name"))
        time.sleep(0)  # let the other sessions pile up on the cache's lock
        return original(*args, **kwargs)

    monkeypatch.setattr(models, "load_model", counting)
    yield loads
    ui.cached_model.clear()
    ui.heavy_runs.clear()


def run_threads(target, n: int) -> list:
    results, errors = [None] * n, []

    def wrap(k):
        try:
            results[k] = target(k)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append((k, exc))

    threads = [threading.Thread(target=wrap, args=(k,), name=f"session-{k}") for k in range(n)]
    for t in threads:
        t.start()
    end = time.monotonic() + DEADLINE
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "sessions did not finish in time"
    assert not errors, errors
    return results


@pytest.mark.slow  # over 5 s on a 2-core CPU; -m "not slow" leaves it out
def test_eight_sessions_share_one_model_and_match_their_runs_alone(fresh_caches):
    tracker = {"lock": threading.Lock(), "now": 0, "max": 0}
    reset = rss_peak_reset()
    base = status("VmRSS")
    together = run_threads(lambda k: session_work(k, tracker), SESSIONS)
    peak = status("VmHWM") - base
    # the model was built once and every session got the same object
    assert fresh_caches == ["vgg19"]
    assert len({id(r["model"]) for r in together}) == 1
    # the queue let at most 4 heavy runs compute at once, and some sessions waited their turn
    queue = ui.heavy_runs()
    assert queue.slots == 4 and tracker["max"] <= 4
    assert queue.running == 0 and queue.waiting == 0
    assert any(r["waited"] for r in together)
    # no hook is left on the shared model (guided backprop hooked a private copy)
    model = together[0]["model"]
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
               for m in model.modules())
    # each result is bit-identical to the same run done alone
    alone = [session_work(k) for k in range(SESSIONS)]
    for k in range(SESSIONS):
        assert torch.equal(together[k]["image"], alone[k]["image"]), k
        assert np.array_equal(together[k]["heat"], alone[k]["heat"]), k
    # sessions differ (own seeds), and guided backprop differs from saliency
    assert not torch.equal(together[1]["image"], together[2]["image"])
    # memory: the model (about 550 MB of float32 parameters, built during the test) plus
    # 8 small runs stays below 2 GB of growth
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    if reset:
        print(f"\npeak RSS growth with {SESSIONS} sessions: {peak / 2**20:.0f} MB "
              f"(model parameters {params / 2**20:.0f} MB)", file=sys.stderr)
        assert peak < 2 * 2**30


def test_home_page_renders_while_four_runs_are_in_progress(monkeypatch, tmp_path, vgg19):
    """Four 128 px runs hold or wait for the 2 slots; the home page still renders (no timing
    asserted), then the runs are stopped the way Streamlit stops a script (the generator is
    closed) and every slot is given back."""
    app_env(monkeypatch, tmp_path)
    monkeypatch.setenv("EXPLORER_MAX_RUNS", "2")
    ui.heavy_runs.clear()
    started, stop = threading.Semaphore(0), threading.Event()
    steps_done = [0] * 4
    content, style_img = samples.load_sample("astronaut").image, samples.load_sample("gravel").image

    def long_run(k):
        settings = style_settings.StyleSettings(size=128, steps=500, seed=k, optimizer="adam")
        c, blend = prepare_blend(content, [(style_img, 1.0)], settings.size)
        run = style.StyleTransfer(vgg19, c, blend, settings)
        gen = runs._queued(run, Bar())
        try:
            for ev in gen:
                if ev.step == 1:
                    started.release()
                steps_done[k] = ev.step
                if stop.is_set():
                    break
        finally:
            gen.close()  # what Streamlit's StopException does in ui.run_events
        return steps_done[k]

    threads = [threading.Thread(target=long_run, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    try:
        assert started.acquire(timeout=120)  # a run is computing
        queue = ui.heavy_runs()
        assert queue.running == 2 and queue.waiting == 2
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        assert not at.exception
        assert [t.value for t in at.title] == ["Deep Dream and style-visualization explorer"]
        assert queue.running == 2  # the runs went on meanwhile
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert ui.heavy_runs().running == 0 and ui.heavy_runs().waiting == 0
    assert max(steps_done) < 500  # stopped, not finished
    ui.heavy_runs.clear()


# --------------------------------------------------------------------------- stopping


def test_stopping_a_run_frees_its_slot_and_its_tensors(vgg19, images64):
    content, style_img = images64
    ui.heavy_runs.clear()
    settings = style_settings.StyleSettings(size=64, steps=50, optimizer="lbfgs")
    run = style.StyleTransfer(vgg19, content, style_img, settings)
    x, last_good = weakref.ref(run.x), weakref.ref(run.last_good)
    gen = runs._queued(run, Bar())
    for ev in gen:
        if ev.step == 3:
            break
    assert ui.heavy_runs().running == 1
    gen.close()  # Stop, a widget change or a closed tab: GeneratorExit through the queue
    assert ui.heavy_runs().running == 0
    del run, gen, ev
    gc.collect()
    assert x() is None and last_good() is None  # the image, its optimizer state and history are gone
    # the app stays usable: the next run takes the slot and finishes
    nxt = style.StyleTransfer(vgg19, content, style_img, style_settings.StyleSettings(size=64, steps=2))
    assert [ev.step for ev in runs._queued(nxt, Bar())] == [0, 1, 2]
    assert ui.heavy_runs().running == 0
    ui.heavy_runs.clear()


def test_streamlit_stop_in_the_progress_view_ends_the_run(monkeypatch, vgg19, images64):
    """Streamlit stops a script (Stop button, rerun, closed tab: AppSession.shutdown and
    disconnect_session call request_script_stop) by raising StopException at the script's
    next st call; ui.run_events calls st for every progress event, so the run ends there."""
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    content, style_img = images64
    ui.heavy_runs.clear()
    shown = []

    def show(self, ev):
        shown.append(ev.step)
        if ev.step == 2:
            raise StopException()

    monkeypatch.setattr(runs._EventView, "show", show)
    run = style.StyleTransfer(vgg19, content, style_img, style_settings.StyleSettings(size=64, steps=100))
    ref = weakref.ref(run.x)
    with pytest.raises(StopException):
        ui.run_events(run, state_key="stop_test")
    assert shown == [0, 1, 2] and len(run.history) == 3  # nothing computed after the stop
    assert ui.heavy_runs().running == 0
    del run
    gc.collect()
    assert ref() is None
    ui.heavy_runs.clear()


def test_stopping_a_heatmap_stops_its_worker_thread(vgg19):
    """Attribution runs compute in a worker thread; closing the run's events cancels it at its
    next progress report and joins it, so nothing keeps computing for a page that is gone."""
    x = images.to_tensor(images.resize_long_side(samples.load_sample("gravel").image, 96))
    s = attribution.AttributionSettings(method="occlusion", size=96, window=16, stride=8, perturbations_per_eval=1,
                                        fast_occlusion=False)
    run = attribution.AttributionRun(vgg19, x, s)
    events = iter(run)
    first = [next(events) for _ in range(3)]
    assert first[-1].total > 50
    events.close()
    assert not [t for t in threading.enumerate() if t.name == "explorer-attribution"]
    with pytest.raises(RuntimeError):
        run.result()


# --------------------------------------------------------------------------- uploads and weights


def test_uploads_are_read_in_memory_and_their_names_never_touch_the_disk(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)
    opened, watching = [], [True]

    def audit(event, args):
        if watching[0] and event in ("open", "os.remove", "os.rename", "shutil.copyfile") and args:
            if "evil" in str(args[0]):
                opened.append((event, str(args[0])))

    sys.addaudithook(audit)
    sources = []
    original = images.load_image

    def spy(source, **kw):
        sources.append(type(source))
        return original(source, **kw)

    monkeypatch.setattr(images, "load_image", spy)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        at.switch_page("pages/style_transfer.py").run()
        at.radio(key="content_source").set_value("Upload").run()
        for name in ("../../evil.png", "/tmp/evil.png", "C:\\evil.png"):
            at.file_uploader(key="content_upload").set_value((name, good_png(), "image/png")).run()
            assert not at.exception and not at.error
    finally:
        watching[0] = False
    assert sources and set(sources) == {bytes}  # the upload's bytes, decoded in memory
    assert not opened, opened
    assert not Path("/tmp/evil.png").exists()


def test_augment_page_works_in_a_temporary_folder_that_is_removed(monkeypatch, tmp_path):
    import io
    import tempfile
    import zipfile

    app_env(monkeypatch, tmp_path)
    made = []
    original = tempfile.TemporaryDirectory

    class Recording(original):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(Path(self.name))

    monkeypatch.setattr(tempfile, "TemporaryDirectory", Recording)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data/cls/a.png", good_png(48, 48))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/augment.py").run()
    at.file_uploader(key="aug_zip").set_value(("data.zip", buf.getvalue(), "application/zip")).run()
    at.slider(key="aug_size").set_value((48, 48))
    at.slider(key="aug_steps").set_value((1, 1))
    at.number_input(key="aug_variants").set_value(1)
    at.run()
    at.button(key="aug_run").click().run()
    assert not at.exception and not at.error
    assert made and all(p.name.startswith("explorer-augment-") for p in made)
    assert not any(p.exists() for p in made)


def test_weights_are_only_loaded_with_weights_only(monkeypatch, tmp_path):
    import ast

    import torchvision

    calls = []
    original = torch.load

    def spy(*a, **kw):
        calls.append(kw.get("weights_only"))
        return original(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    path = tmp_path / "w.pth"
    with torch.device("meta"):
        shapes = torchvision.models.vgg16().state_dict()
    torch.save({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shapes.items()}, path)
    models.load_model("vgg16", weights=str(path), device="cpu")  # --weights FILE
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / weights.weights_file_name("vgg16")).write_bytes(path.read_bytes())
    models.load_model("vgg16", weights="imagenet", device="cpu")  # an offline weights folder
    assert calls == [True, True]
    # every call that reads weights passes weights_only=True; downloads are plain files
    # (download.download_file, with a timeout) read by the same torch.load, so torchvision's own
    # loaders (torch.hub.load_state_dict_from_url defaults to weights_only=False) are not used
    checked = 0
    for source in sorted(ROOT.glob("explorer/**/*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("load", "get_state_dict", "load_state_dict_from_url"):
                if node.func.attr == "load" and ast.unparse(node.func.value) != "torch":
                    continue
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, \
                    (source.name, node.lineno, ast.unparse(node))
                checked += 1
    assert checked >= 1


def test_the_queue_message_says_what_a_run_waits_for():
    """A second browser read "Queued: 0 other run(s) before yours" while it waited."""
    first = ui.queue_message(1, running=1, slots=1)
    assert first.startswith("Waiting for the machine: 1 run from other browsers or tabs in progress.")
    assert "0 " not in first and "starts by itself" in first
    later = ui.queue_message(3, running=2, slots=2)
    assert "2 runs from other browsers or tabs in progress, and 2 queued before yours" in later
