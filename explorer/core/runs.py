"""The one contract every run of the explorer keeps (style transfer, Deep Dream, saliency maps,
comparisons, sweeps, augmentation), so that the page helper and the CLI treat them alike.

A run is an iterable of :class:`~explorer.core.progress.ProgressEvent`; iterating it does the work.
Besides that, every run has

* ``result()``: what it produced so far, valid after the loop and after stopping it early;
* ``report()``: a JSON-ready dict of settings, weights, timings and results (the CLI's
  ``--report`` and the page's settings download);
* ``notes``: one-line remarks to show beside the result (an untrained network, a tile size
  that was raised, an objective that is 0 on the start image), in the order they arose; each a
  :class:`Note`: its text, and a ``code`` that front ends test instead of the words;
* ``stopped``: ``None`` while the run is whole, else a one-line reason why it ended early
  (a non-finite loss, or memory: a front end that catches a
  :class:`~explorer.nets.memory.MemoryEstimateError` sets it with :meth:`Run.stop`).

This module imports nothing else of the explorer except :mod:`explorer.core.progress`: it is on the
ground floor (README, "Layout").
"""

from __future__ import annotations

import abc
from typing import Any, Iterator

from .progress import ProgressEvent

__all__ = ["Note", "Run", "note_codes", "run_to_end"]


class Note(str):
    """A one-line note of a run: its text (the note is that ``str``, so it prints, joins and
    goes into JSON reports as text) and a ``code``, a short name of what kind of note it is
    (``"dead_start"``, ``"tile_raised"``, ...) that pages and the CLI test instead of matching
    the text's first words.

    Args:
        code: the kind of note (lower case, underscores); text: the one line shown to the user.
    """

    code: str

    def __new__(cls, code: str, text: str) -> "Note":
        note = super().__new__(cls, text)
        note.code = str(code)
        return note

    @property
    def text(self) -> str:
        """The note as a plain ``str``."""
        return str.__str__(self)

    def __reduce__(self):  # pickling and copying keep the code
        return (Note, (self.code, self.text))

    def __repr__(self) -> str:
        return f"Note({self.code!r}, {self.text!r})"


def note_codes(notes) -> list[str]:
    """The codes of ``notes`` (a plain ``str`` among them, from older code, has the code ``""``)."""
    return [getattr(n, "code", "") for n in notes]


class Run(abc.ABC):
    """Base class of every run (Captum's pattern: one base class, one verb).

    Subclasses implement :meth:`__iter__` and :meth:`result`; they may override :meth:`report`
    (the default asks the result for its ``report()``; an override takes no arguments either)
    and add notes with :meth:`note`.

    Attributes:
        notes: one-line remarks (:class:`Note`), in the order they arose (empty by default; a
            subclass that appends must first give the instance its own list, which
            :meth:`__init__` does).
        stopped: ``None``, or why the run ended early (one line).
    """

    notes: list[Note]
    stopped: str | None

    def __init__(self) -> None:
        self.notes = []
        self.stopped = None

    @abc.abstractmethod
    def __iter__(self) -> Iterator[ProgressEvent]:
        """Do the work, one :class:`~explorer.core.progress.ProgressEvent` per step."""

    @abc.abstractmethod
    def result(self) -> Any:
        """What the run produced so far (also after stopping early)."""

    def report(self) -> dict:
        """JSON-ready report of the run; by default the result's own ``report()``."""
        return self.result().report()

    def note(self, code: str, text: str) -> Note:
        """Add the note ``text`` of kind ``code`` (:class:`Note`) to :attr:`notes`; returns it."""
        note = Note(code, text)
        self.notes.append(note)
        return note

    def stop(self, reason: str) -> None:
        """Mark the run as ended early for ``reason`` (one line); its result then reports
        itself as partial. A later reason does not replace the first one."""
        if self.stopped is None:
            self.stopped = str(reason)


def run_to_end(run: Run) -> Any:
    """Iterate ``run`` to its end without a front end and return ``run.result()``."""
    for _ in run:
        pass
    return run.result()
