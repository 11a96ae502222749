"""How a page and the CLI end a run the user stops: the stopped result has the same fields as a
finished one (so the result section, its notes and its downloads work alike), notes carry codes,
and every result's downloads give a PNG and a recipe (explorer/app/runs.py)."""

from __future__ import annotations

import io
import json

import pytest
import streamlit as st
from PIL import Image

from explorer.core.runs import Note, note_codes
from explorer.dream import deepdream as dream
from explorer.dream import settings as dream_settings
from tests.helpers import app_env, run_cli
from tests.test_app import downloads  # noqa: F401  (fixture re-exported)
from tests.test_app_session import DREAM, STYLE, open_page, tiny_dream


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)


class _StopAfterFirstStep(dream.DreamRun):
    """A dream whose user leaves the page after its first step (as a Stop or another page does:
    the script run ends at the next Streamlit call)."""

    def __iter__(self):
        for ev in super().__iter__():
            yield ev
            if ev.step >= 1:
                st.switch_page(STYLE)


def _finished_and_stopped(monkeypatch) -> tuple[dict, dict, object]:
    at = open_page(DREAM)
    tiny_dream(at)
    at.button(key="dream_run").click().run()
    assert not at.exception
    finished = dict(at.session_state["dream_result"])
    monkeypatch.setattr(dream, "DreamRun", _StopAfterFirstStep)
    at.button(key="dream_run").click().run()
    assert [t.value for t in at.title] == ["Style transfer"]  # cut short after step 1
    at.switch_page(DREAM).run()
    assert not at.exception
    return finished, dict(at.session_state["dream_result"]), at


def test_a_stopped_dream_keeps_a_result_of_the_same_shape_as_a_finished_one(monkeypatch, downloads):  # noqa: F811
    finished, stopped, at = _finished_and_stopped(monkeypatch)
    own = lambda r: {k for k in r if not k.startswith("_")}  # noqa: E731  (downloads kept per result)
    assert own(stopped) == own(finished)
    assert finished["stopped"] is None and stopped["stopped"] == "stopped at step 1 of 4"
    assert stopped["report"]["stopped"] == stopped["stopped"] and len(stopped["report"]["history"]) == 1
    assert set(stopped["report"]) == set(finished["report"])
    assert any(w.value.startswith("Partial result: stopped at step 1 of 4") for w in at.warning)
    # its downloads: the PNG at the working size and a recipe that says it is partial
    keys = {d.key for d in at.download_button}
    assert {"dream_download_png", "dream_download_json"} <= keys
    with Image.open(io.BytesIO(downloads["dream.png"])) as im:
        assert im.size == stopped["image"].size
    recipe = json.loads(downloads["dream-recipe.json"])
    assert recipe["stopped"] == "stopped at step 1 of 4" and recipe["settings"]["steps"] == 2


def test_the_cli_stops_a_dream_with_run_stop_and_its_report_keeps_the_finished_shape(tmp_path, capsys, monkeypatch):
    common = ["--model", "vgg19", "--layers", "relu2_1", "--octaves", "2", "--steps", "2", "--size", "64",
              "--untrained", "--quiet"]
    rc, _, _ = run_cli(capsys, "dream", "noise", "-o", tmp_path / "a.png", "--report", tmp_path / "a.json", *common)
    assert rc == 0
    finished = json.loads((tmp_path / "a.json").read_text())

    class Interrupted(dream.DreamRun):
        def __iter__(self):
            for ev in super().__iter__():
                yield ev
                if ev.step == 1:
                    raise KeyboardInterrupt

    monkeypatch.setattr(dream, "DreamRun", Interrupted)
    rc, _, err = run_cli(capsys, "dream", "noise", "-o", tmp_path / "b.png", "--report", tmp_path / "b.json", *common)
    assert rc == 130 and "interrupted" in err
    stopped = json.loads((tmp_path / "b.json").read_text())
    assert set(stopped) == set(finished)
    assert finished["stopped"] is None and stopped["stopped"] == "interrupted at step 1 of 4"
    assert len(stopped["history"]) == 1


def test_dream_notes_carry_codes(vgg19):
    start = dream.start_image("noise", 64, 0)
    settings = dream_settings.DreamSettings(model="vgg19", layers="relu3_1", octaves=8, steps=1, size=64)
    run = dream.DreamRun(vgg19, start, settings)  # 64 px has room for fewer octaves: a note says so
    for _ in run:
        pass
    notes = run.result().notes
    assert note_codes(notes) == ["octaves_reduced"] and notes[0].startswith("octaves reduced from 8")
    assert isinstance(notes[0], Note) and not run.dead_start
    # the report's JSON keeps the text
    assert json.loads(json.dumps(run.result().report()))["notes"] == [str(n) for n in notes]


def test_a_dead_start_is_found_by_its_code_not_its_words(vgg19):
    run = dream.DreamRun(vgg19, dream.start_image("noise", 64, 0), dream_settings.DreamSettings(
        model="vgg19", layers="relu3_1", octaves=1, steps=1, size=64))
    run.note(dream.DEAD_START_CODE, "reworded: nothing can grow from this start")
    assert run.dead_start
    run.notes[:] = [dream.DEAD_START + " (but filed as another kind of note)"]
    assert not run.dead_start
