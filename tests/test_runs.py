"""The one run contract (explorer/core/runs.py): every run iterates progress events and has
``result()``, ``report()``, ``notes`` and ``stopped``, so that the pages and the CLI treat them alike."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil

import pytest

import explorer
from explorer.core.progress import ProgressEvent
from explorer.core.runs import Run, run_to_end


def _classes():
    for info in pkgutil.walk_packages(explorer.__path__, prefix="explorer."):
        top = info.name.split(".")[1]
        if info.ispkg or info.name == "explorer.__main__" or top in ("app", "cli"):
            continue  # Streamlit widgets and CLI entry points hold no runs
        mod = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__:
                yield cls


def test_every_class_that_iterates_and_has_a_result_is_a_run():
    runs = [c for c in _classes() if "__iter__" in vars(c) and hasattr(c, "result")]
    assert len(runs) >= 8  # style, controlled, dream, zoom, saliency, compare, keep sweep, sweep, augmentation
    assert [c.__qualname__ for c in runs if not issubclass(c, Run)] == []


class _Count(Run):
    def __init__(self, n):
        super().__init__()
        self.n, self.done = n, 0

    def __iter__(self):
        for k in range(1, self.n + 1):
            self.done = k
            yield ProgressEvent(k, self.n, 0.0, {"k": float(k)}, done=k == self.n)

    def result(self):
        return self.done


def test_run_to_end_iterates_and_returns_the_result():
    assert run_to_end(_Count(3)) == 3


def test_stop_keeps_the_first_reason_and_notes_are_per_instance():
    a, b = _Count(1), _Count(1)
    a.notes.append("only a")
    assert b.notes == [] and a.stopped is None
    a.stop("out of memory at scale 2")
    a.stop("a later reason")
    assert a.stopped == "out of memory at scale 2"


def test_the_default_report_is_the_results_report():
    class WithReport(_Count):
        def result(self):
            return type("R", (), {"report": lambda self: {"steps": 2}})()

    assert WithReport(2).report() == {"steps": 2}


def test_a_stopped_style_transfer_reports_itself_as_partial(vgg19):
    from explorer.style.transfer import StyleTransfer
    from explorer.style.settings import StyleSettings
    from tests.helpers import picture, stripes

    run = StyleTransfer(vgg19, picture(48, 48), stripes(48, 48), StyleSettings(size=48, steps=3, precision="fp32"))
    for ev in run:
        if ev.step == 1:
            run.stop("the machine ran out of memory")
            break
    report = run.report()
    assert report["stopped"] == "the machine ran out of memory" and report["steps_done"] == 1
    json.dumps(report)  # JSON-ready


def test_run_is_abstract():
    with pytest.raises(TypeError):
        Run()
