"""First-come, first-served admission for heavy runs shared by every browser session.

A classroom points thirty browsers at one machine. Two style transfers at once on a 2-core CPU
do not finish sooner than one after the other: each gets half the cores, both take twice as
long, and memory doubles. So the app runs at most ``slots`` heavy computations at a time
(``EXPLORER_MAX_RUNS``, default 1) and queues the others in arrival order, telling each user
their position. Light work (page rendering, cached views) never waits.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["RunQueue", "default_slots"]


def default_slots() -> int:
    """``EXPLORER_MAX_RUNS`` if set (at least 1), else 1.

    Raises:
        ValueError: the variable is not a whole number.
    """
    raw = os.environ.get("EXPLORER_MAX_RUNS", "").strip()
    if not raw:
        return 1
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"EXPLORER_MAX_RUNS must be a whole number; got {raw!r}") from None


class RunQueue:
    """At most ``slots`` holders at once; waiters are admitted strictly in arrival order.

    Thread-safe. A holder that leaves (normally, by an exception, or because the user stopped
    the page while it waited) frees its place at once.
    """

    def __init__(self, slots: int = 1):
        if slots < 1:
            raise ValueError("a run queue needs at least one slot")
        self.slots = slots
        self._cond = threading.Condition()
        self._running = 0
        self._waiting: deque[int] = deque()
        self._tickets = itertools.count()

    @property
    def running(self) -> int:
        """How many holders run now."""
        with self._cond:
            return self._running

    @property
    def waiting(self) -> int:
        """How many wait."""
        with self._cond:
            return len(self._waiting)

    @contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None, poll: float = 0.5) -> Iterator[None]:
        """Hold a slot for the duration of the ``with`` block.

        Args:
            on_wait: called (without the queue's lock) with the caller's position in the queue
                (1 = next) whenever it has to wait, at least every ``poll`` seconds; it may
                raise (e.g. Streamlit stopping the script) and the place is given up.
            poll: seconds between ``on_wait`` calls while waiting.
        """
        ticket = next(self._tickets)
        admitted = False
        with self._cond:
            self._waiting.append(ticket)
        try:
            while True:
                with self._cond:
                    if self._waiting[0] == ticket and self._running < self.slots:
                        self._waiting.popleft()
                        self._running += 1
                        admitted = True
                        break
                    position = self._waiting.index(ticket) + 1
                if on_wait is not None:
                    on_wait(position)
                with self._cond:
                    if not (self._waiting[0] == ticket and self._running < self.slots):
                        self._cond.wait(poll)
            yield
        finally:
            with self._cond:
                if admitted:
                    self._running -= 1
                elif ticket in self._waiting:
                    self._waiting.remove(ticket)
                self._cond.notify_all()
