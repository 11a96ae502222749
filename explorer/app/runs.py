"""How a page runs a computation and shows its result: the Run and Stop buttons
(:func:`run_buttons`), the progress widget (:func:`run_events`: progress bar, live preview, loss
chart; heavy runs take turns in :func:`heavy_runs`), a page's run state (:class:`PageRun`: the
result, the run in progress, and the result kept when the user stops it), the result's heading
and its download buttons (:func:`downloads`: a PNG and a recipe, encoded once per result), and
the process-wide store of finished heatmaps (:func:`heatmap_cache`).

:mod:`explorer.app.ui` imports this module and re-exports its public names, so pages call them
as ``ui.PageRun``, ``ui.run_buttons``, ``ui.downloads``...
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Iterator, Mapping, Sequence

import streamlit as st

from ..core.progress import ProgressEvent
from ..core.runqueue import RunQueue, default_slots
from ..core.runs import Run
from ..io import images, outputs
from ..nets import memory
from . import plots
from .page_state import result_bytes

__all__ = [
    "one_line",
    "run_events",
    "progress_text",
    "heavy_runs",
    "queue_message",
    "result_heading",
    "run_buttons",
    "PageRun",
    "Download",
    "png_download",
    "recipe_download",
    "downloads",
    "heatmap_cache",
]


def one_line(exc: BaseException) -> str:
    """An exception as one readable line (no traceback)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def run_events(events: Iterable[ProgressEvent], *, state_key: str, scale: Mapping[str, float] | None = None,
               preview_caption: str = "Current image", normalization: str = "relative") -> ProgressEvent | None:
    """Render a computation's progress events: a progress bar with step count and elapsed
    time, a live preview and Plotly loss curves. The latest preview and losses are kept in
    ``st.session_state[state_key]`` so they survive a Stop (which reruns the script).

    The computation waits its turn in :func:`heavy_runs` (the page shows its place in the
    queue) and gives its slot back when it ends or the user stops it. A part of the run that
    is refused for memory (:class:`~explorer.nets.memory.MemoryEstimateError`) or that runs out of
    memory anyway (CUDA's OutOfMemoryError: the cache is emptied) ends the run with one
    ``st.error`` line; the run keeps what it had: an :class:`explorer.core.runs.Run` is marked with
    :meth:`~explorer.core.runs.Run.stop` (its ``stopped`` says why and its result reports itself as
    partial); a plain iterable of events has no result to mark.

    Pages call it through :meth:`PageRun.events`, which passes the page's ``state_key``.
    ``scale`` and ``normalization`` (the run's loss scale) go to :func:`explorer.app.plots.loss_figure`.

    Returns:
        the last event seen.
    """
    area = st.empty()  # cleared at the end: the page then shows the result section instead
    view = _EventView(area.container(), state_key, scale, preview_caption, normalization)
    last = None
    queued = _queued(events, view.bar)
    failed = None
    try:
        for ev in queued:
            view.show(ev)
            last = ev
    except memory.MemoryEstimateError as exc:  # a part of the run (a larger scale, a batch) cannot fit
        failed = one_line(exc)
    except (RuntimeError, MemoryError) as exc:  # out of (GPU) memory although the estimate fitted
        if not memory.is_out_of_memory(exc):
            raise
        failed = memory.out_of_memory_message(exc)
    finally:
        queued.close()  # gives the slot back at once, also when the user stopped the page
    if failed is not None:  # the exception (and the frames holding the run's tensors) is gone now
        memory.free_cached_memory()
        if isinstance(events, Run):
            events.stop(failed)  # the run's result() then reports itself as partial
        st.error(failed)
        return last
    area.empty()
    return last


def progress_text(ev: ProgressEvent) -> str:
    """The progress bar's line: ``"Step 12 of 100 · scale 1 of 2 (181x136 px) · 3.1 s · 0.26 s/step"``
    (the stage only for multi-stage runs; seconds per step, averaged since Run, from step 1 on)."""
    stage = f" · {ev.stage}" if ev.stage else ""
    pace = f" · {ev.elapsed / ev.step:.2f} s/step" if ev.step > 0 else ""
    return f"Step {ev.step} of {ev.total}{stage} · {ev.elapsed:.1f} s{pace}"


class _EventView:
    """The progress bar, preview and loss chart of one run."""

    def __init__(self, box, state_key: str, scale, preview_caption: str, normalization: str = "relative"):
        self.box, self.state_key, self.scale, self.caption = box, state_key, scale, preview_caption
        self.normalization = normalization
        self.bar = box.progress(0.0, text="Starting…")
        left, right = box.columns([1, 1])
        self.preview_slot, self.chart_slot = left.empty(), right.empty()
        self.rows: list[dict] = []
        self.last_chart = 0.0
        self.charts = 0  # chart keys count renders: a step number repeats at each coarse-to-fine scale

    def show(self, ev: ProgressEvent) -> None:
        if ev.losses:
            self.rows.append({"step": ev.step, **ev.losses})
        self.bar.progress(ev.fraction, text=progress_text(ev))
        partial = st.session_state.setdefault(self.state_key, {})
        partial.update(rows=self.rows, step=ev.step, total=ev.total)
        if ev.preview is not None:
            pil = images.to_pil(ev.preview)
            partial["preview"] = pil
            # as wide as the chart beside it: a 256 px preview at its own size looked tiny
            self.preview_slot.image(pil, caption=f"{self.caption}, step {ev.step}", width="stretch")
            now = time.monotonic()
            if self.rows and (now - self.last_chart > 0.5 or ev.done):
                self.charts += 1
                self.chart_slot.plotly_chart(plots.live_figure(self.rows, scale=self.scale,
                                                               normalization=self.normalization),
                                             key=f"{self.state_key}_chart_{self.charts}")
                self.last_chart = now
        if ev.message:
            self.box.info(ev.message)


@st.cache_resource(show_spinner=False)
def heavy_runs() -> RunQueue:
    """The process-wide queue of heavy runs (``EXPLORER_MAX_RUNS`` at a time, default 1),
    shared by every browser session."""
    return RunQueue(default_slots())


def queue_message(position: int, running: int, slots: int) -> str:
    """What a waiting run's progress bar says: what it waits for, and that it starts by itself.

    Args:
        position: 1 for the next run to start, 2 for the one after it, ...
        running: heavy runs in progress now (in any browser), ``slots``: how many may run at once.
    """
    others = f"{running} run{'s' if running != 1 else ''} from other browsers or tabs"
    ahead = "" if position <= 1 else f", and {position - 1} queued before yours"
    return (f"Waiting for the machine: {others} in progress{ahead}. It runs {slots} at a time, so that each "
            "finishes sooner; yours starts by itself as soon as one ends.")


def _queued(events: Iterable[ProgressEvent], bar) -> Iterator[ProgressEvent]:
    queue = heavy_runs()

    def waiting(position: int) -> None:
        bar.progress(0.0, text=queue_message(position, queue.running, queue.slots))

    with queue.slot(on_wait=waiting):
        yield from events


def result_heading(result: dict) -> None:
    """The "Result" heading of a page, with a warning when the result is partial (stopped)."""
    st.subheader("Result")
    if result.get("stopped"):
        st.warning(f"Partial result: {result['stopped']}.")


class PageRun:
    """The run state of one page's run, kept in the session under ``name``: its result, the
    inputs of the run in progress, whether one is in progress, and the partial state
    :func:`run_events` keeps (its last preview and loss rows) so that a Stop keeps something.

    On a page: ``page_run = ui.PageRun("style")``, ``page_run.recover()`` near the top; on Run
    ``start(pending)``, ``events(run, fields=fields)``, then ``finish(**fields(run))`` (or
    ``cancel()``), where ``fields(run)`` builds the result fields from the run: a run the user
    stops gets the same fields (:meth:`events`); then draw ``page_run.result``, its downloads
    with :func:`downloads` (encoded once per result). The session keys are ``{name}_result``, ``{name}_pending``,
    ``{name}_running`` and ``{name}_partial`` (:attr:`state_key`); pages use this class instead.

    Args:
        name: the page's run name (``"style"``, ``"dream"``, ``"saliency"``, ...), unique per run
            kind of the app.
    """

    def __init__(self, name: str):
        self.name = name

    @property
    def state_key(self) -> str:
        """The session key of the partial state :func:`run_events` keeps for this run."""
        return f"{self.name}_partial"

    @property
    def result(self) -> dict | None:
        """The stored result (the pending fields merged with the finished or partial run's
        fields and ``stopped``), or None when there is none yet."""
        return st.session_state.get(f"{self.name}_result")

    @property
    def pending(self) -> dict:
        """The fields of the run in progress (or of the last one started), ``{}`` when none."""
        return st.session_state.get(f"{self.name}_pending", {})

    @property
    def running(self) -> bool:
        """True from :meth:`start` until :meth:`finish`, :meth:`cancel` or :meth:`recover`."""
        return bool(st.session_state.get(f"{self.name}_running"))

    def start(self, pending: dict) -> None:
        """Mark a run as in progress; ``pending`` (inputs, settings, labels) is merged into the
        result when it finishes or is stopped."""
        st.session_state[f"{self.name}_pending"] = pending
        st.session_state[self.state_key] = {}
        st.session_state[f"{self.name}_running"] = True

    def events(self, run: Iterable[ProgressEvent], *, scale: Mapping[str, float] | None = None,
               preview_caption: str = "Current image", normalization: str = "relative",
               fields: Callable[[Run], dict | None] | None = None) -> ProgressEvent | None:
        """:func:`run_events` for this page's run (progress bar, preview, loss chart; the
        partial state under :attr:`state_key`). Returns the last event seen.

        ``fields`` builds the result fields from the run, the same function the page passes
        to :meth:`finish` (``page_run.finish(**fields(run))``). When the script run is cut
        short during the run (Stop, or any widget change, reruns the script; another page
        stops it), the run is marked with :meth:`~explorer.core.runs.Run.stop` ("stopped at
        step k of n") and ``fields(run)`` is kept for :meth:`recover`: a stopped result has
        the same fields as a finished one, with ``stopped`` set. ``fields`` returning None
        keeps no result (the previous one stays)."""
        try:
            return run_events(run, state_key=self.state_key, scale=scale, preview_caption=preview_caption,
                              normalization=normalization)
        except BaseException:  # Streamlit's rerun/stop exceptions, and any error of the run
            if fields is not None and self.running:
                self._keep_fields(run, fields)
            raise

    def _keep_fields(self, run, fields: Callable[[Run], dict | None]) -> None:
        """The result fields of a run cut short, kept in the partial state for :meth:`recover`."""
        partial = st.session_state.setdefault(self.state_key, {})
        reason = _stop_reason(partial)
        if isinstance(run, Run):
            run.stop(reason)
            reason = run.stopped
        try:
            kept = fields(run)
        except Exception:  # noqa: BLE001  nothing usable: recover() keeps the previous result
            kept = None
        partial["fields"] = None if kept is None else {**kept, "stopped": kept.get("stopped") or reason}

    def cancel(self) -> None:
        """Forget a run that ended before its first step (refused for memory, say:
        :func:`run_events` has shown why in one line); the previous result stays on the page."""
        st.session_state[f"{self.name}_running"] = False
        st.session_state.pop(f"{self.name}_pending", None)

    def finish(self, **fields) -> None:
        """Store the finished run's result: the pending fields, ``stopped=None`` and ``fields``
        (``image`` and anything else; a ``stopped`` among them wins)."""
        st.session_state[f"{self.name}_running"] = False
        st.session_state[f"{self.name}_result"] = {**self.pending, "stopped": None, **fields}

    def clear(self) -> None:
        """Forget the stored result (the page shows none until the next one)."""
        st.session_state.pop(f"{self.name}_result", None)

    def recover(self, partial_result: Callable[[dict], dict | None] | None = None) -> None:
        """Call near the top of a page: if the previous script run was interrupted mid-run
        (Stop, or any widget change, reruns the script), keep what the run had done.

        A run drawn with :meth:`events` ``(fields=...)`` left its result fields, built like a
        finished run's with ``stopped`` ("stopped at step k of n"): they become the result.
        Otherwise ``partial_result``, when given, builds the result fields from the partial
        state (the dict :func:`run_events` kept: ``preview``, ``rows``, ``step``, ``total``);
        returning None keeps no result (the previous one stays). Without either, the last
        preview is kept (``image``, ``history``, ``report=None`` and ``stopped``)."""
        state = st.session_state
        if not state.get(f"{self.name}_running"):
            return
        state[f"{self.name}_running"] = False
        partial = state.get(self.state_key) or {}
        if "fields" in partial:
            if partial["fields"] is not None:
                state[f"{self.name}_result"] = {**self.pending, **partial["fields"]}
            return
        stopped = _stop_reason(partial)
        if partial_result is not None:
            fields = partial_result(partial)
            if fields:
                state[f"{self.name}_result"] = {**self.pending, **fields, "stopped": stopped}
            return
        if partial.get("preview") is not None:
            state[f"{self.name}_result"] = {**self.pending, "image": partial["preview"],
                                            "history": partial.get("rows", []), "report": None, "stopped": stopped}


def _stop_reason(partial: dict) -> str:
    """Why a run cut short ended, from the partial state :func:`run_events` keeps."""
    if partial.get("step") is None:
        return "stopped before the first step"
    return f"stopped at step {partial['step']} of {partial.get('total')}"


def run_buttons(ready: bool, *, run_key: str, stop_key: str, label: str = "Run", toast: str | None = None,
                widths: Sequence[float] = (1, 1, 6),
                also: tuple[str, str, bool, str | None] | None = None) -> bool | tuple[bool, bool]:
    """A page's Run and Stop buttons, side by side at any width (the columns ``widths``, the
    last one empty). Stop needs no handler: its click reruns the script, which stops the run
    in progress, and :meth:`PageRun.recover` keeps its result.

    Args:
        ready: whether the inputs and settings allow a run (else Run is greyed out).
        run_key, stop_key: the buttons' widget keys (tests and the browser find them by these).
        label: the Run button's text.
        toast: shown briefly when Stop is clicked (what is kept), or nothing.
        widths: relative column widths: Run, [also,] Stop, then the empty rest.
        also: a second run button between Run and Stop: (label, key, ready, help).

    Returns:
        whether Run was clicked (and ``ready``); with ``also``, the pair (Run clicked, also clicked).
    """
    cols = st.columns(list(widths))
    clicked = cols[0].button(label, type="primary", disabled=not ready, key=run_key, width="stretch") and ready
    second = None
    if also is not None:
        a_label, a_key, a_ready, a_help = also
        second = cols[1].button(a_label, disabled=not a_ready, key=a_key, width="stretch", help=a_help) and a_ready
    if cols[2 if also is not None else 1].button("Stop", key=stop_key, width="stretch") and toast:
        st.toast(toast)
    return clicked if also is None else (clicked, second)


# ----------------------------------------------------------------------------- downloads

@dataclass(frozen=True)
class Download:
    """One download button of a result.

    Attributes:
        label: the button's text; file_name, mime: what the browser saves; key: the widget key.
        make: makes the data (bytes or text).
        slot: the name it is kept under in the result (:func:`explorer.app.page_state.result_bytes`:
            made once per result); None makes it on every rerun (small data such as a recipe,
            which a page may still complete).
        depends: what else the data depends on (made again when it changes; with ``slot``).
        help: the button's tooltip.
    """

    label: str
    file_name: str
    mime: str
    key: str
    make: Callable[[], bytes | str]
    slot: str | None = None
    depends: Hashable = None
    help: str | None = None


def png_download(result: dict, *, key: str, file_name: str, label: str = "Download PNG", image: str = "image",
                 pnginfo: Mapping[str, str] | None = None, slot: str | None = None,
                 help: str | None = None) -> Download:
    """The PNG of ``result[image]`` (a PIL image), with ``pnginfo`` as text chunks
    (:func:`explorer.io.outputs.png_bytes`), encoded once per result (under ``slot``, default
    ``"png"`` for ``image="image"``, else ``image``'s name)."""
    info = dict(pnginfo or {})
    return Download(label, file_name, "image/png", key, lambda: outputs.png_bytes(result[image], pnginfo=info),
                    slot=slot or ("png" if image == "image" else image), help=help)


def recipe_download(report: dict, *, key: str, file_name: str, label: str = "Download recipe (JSON)",
                    help: str | None = None) -> Download:
    """The result's recipe or report ``report`` (a JSON-ready dict, as given: the page builds
    it) as strict JSON text (:func:`explorer.io.outputs.json_text`)."""
    return Download(label, file_name, "application/json", key, lambda: outputs.json_text(report), help=help)


def downloads(result: dict, items: Sequence[Download | None], widths: Sequence[float] | None = None,
              stretch: bool = False) -> None:
    """A row of download buttons for a page's result (``items``, left to right; None leaves its
    column empty). Each button's data is made by its :class:`Download` ``make``, once per result
    when it has a ``slot`` (:func:`explorer.app.page_state.result_bytes`).

    Args:
        result: the page's result dict (:attr:`PageRun.result`), where the data is kept.
        items: the buttons, e.g. ``[png_download(res, ...), recipe_download(report, ...)]``.
        widths: relative column widths (default: equal, one column per item and one empty).
        stretch: buttons as wide as their column.
    """
    cols = st.columns(list(widths) if widths is not None else len(items) + 1)
    for col, item in zip(cols, items):
        if item is None:
            continue
        data = result_bytes(result, item.slot, item.make, depends=item.depends) if item.slot else item.make()
        col.download_button(item.label, data, file_name=item.file_name, mime=item.mime, key=item.key,
                            help=item.help, **({"width": "stretch"} if stretch else {}))


# ----------------------------------------------------------------------------- heatmaps

class _HeatmapCache:
    """A small least-recently-used store of finished heatmaps, shared by every session."""

    def __init__(self, size: int = 16):
        self.size, self.items, self.lock = size, {}, threading.Lock()

    def get(self, key):
        with self.lock:
            value = self.items.pop(key, None)
            if value is not None:
                self.items[key] = value  # most recently used last
            return value

    def put(self, key, value) -> None:
        with self.lock:
            self.items.pop(key, None)
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.pop(next(iter(self.items)))

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


@st.cache_resource(show_spinner=False)
def heatmap_cache() -> _HeatmapCache:
    """The process-wide store behind :func:`cached_heatmap` (``.clear()`` empties it)."""
    return _HeatmapCache()
