"""The queue that lets heavy runs of many browser sessions take turns."""

import threading

import pytest

from explorer.core.runqueue import RunQueue, default_slots


def test_one_slot_admits_in_arrival_order_and_reports_positions():
    q = RunQueue(1)
    order, positions = [], {}
    first_in = threading.Event()
    release_first = threading.Event()
    queued = {i: threading.Event() for i in (1, 2)}

    def first():
        with q.slot():
            first_in.set()
            order.append(0)
            release_first.wait(10)

    def later(i):
        def on_wait(pos):
            positions.setdefault(i, pos)
            queued[i].set()

        with q.slot(on_wait=on_wait, poll=0.01):
            order.append(i)

    t0 = threading.Thread(target=first)
    t0.start()
    assert first_in.wait(10)
    t1 = threading.Thread(target=later, args=(1,))
    t1.start()
    assert queued[1].wait(10)  # 1 is waiting before 2 arrives
    t2 = threading.Thread(target=later, args=(2,))
    t2.start()
    assert queued[2].wait(10)
    assert q.running == 1 and q.waiting == 2
    release_first.set()
    for t in (t0, t1, t2):
        t.join(10)
    assert order == [0, 1, 2]
    assert positions == {1: 1, 2: 2}
    assert q.running == 0 and q.waiting == 0


def test_two_slots_run_two_at_once():
    q = RunQueue(2)
    inside = threading.Barrier(2, timeout=10)  # both must be inside at the same time

    def work():
        with q.slot(poll=0.01):
            inside.wait()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not inside.broken


def test_an_error_or_a_stop_while_waiting_gives_the_place_back():
    q = RunQueue(1)
    with pytest.raises(RuntimeError):
        with q.slot():
            raise RuntimeError("the run failed")
    assert q.running == 0

    class Stopped(Exception):
        pass

    def stop_at_once(pos):
        raise Stopped  # what Streamlit does when the user presses Stop while queued

    with q.slot():  # someone holds the only slot
        with pytest.raises(Stopped):
            with q.slot(on_wait=stop_at_once):
                pass
        assert q.waiting == 0
    with q.slot():  # and the queue still works
        assert q.running == 1


def test_slots_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("EXPLORER_MAX_RUNS", raising=False)
    assert default_slots() == 1
    monkeypatch.setenv("EXPLORER_MAX_RUNS", "3")
    assert default_slots() == 3
    monkeypatch.setenv("EXPLORER_MAX_RUNS", "lots")
    with pytest.raises(ValueError, match="EXPLORER_MAX_RUNS"):
        default_slots()
    with pytest.raises(ValueError):
        RunQueue(0)


def test_a_page_run_waits_its_turn_and_then_runs(monkeypatch, tmp_path):
    """A style run started while another session holds the only slot waits (its position is
    reported through the queue) and completes once the slot is free."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from explorer.app import ui
    from tests.helpers import app_env

    app_env(monkeypatch, tmp_path)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/style_transfer.py").run()
    at.slider(key="size").set_value(64)
    at.number_input(key="steps").set_value(2)
    at.run()
    queue = ui.heavy_runs()
    holding, saw_waiter, done = threading.Event(), threading.Event(), threading.Event()

    def other_session():
        with queue.slot():
            holding.set()
            while not done.is_set():  # give the slot back once the page's run is queued
                if queue.waiting:
                    saw_waiter.set()
                    break
                done.wait(0.01)

    t = threading.Thread(target=other_session)
    t.start()
    assert holding.wait(10)
    try:
        at.button(key="run").click().run()
    finally:
        done.set()
        t.join(10)
    assert saw_waiter.is_set()  # the page's run really queued behind the other one
    assert not at.exception
    assert "Result" in [s.value for s in at.subheader]
    assert queue.running == 0 and queue.waiting == 0
