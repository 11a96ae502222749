"""Driving the app in a real browser: shared by tests/test_browser.py and docs/take_screenshot.py.

Starts ``streamlit run app.py`` as a server on a free localhost port, finds Debian's Chromium
(no Playwright browser download) and offers small Playwright helpers that wait for Streamlit's
script runs instead of sleeping. Playwright itself is imported only by the callers, so this
module imports without it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import weakref
from pathlib import Path
from typing import Callable, Iterator, Mapping

ROOT = Path(__file__).resolve().parents[1]

# Headless Chromium on a machine without internet: without the background-networking flags
# Chromium keeps trying to reach Google's services and its connections are refused.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")


def find_chromium() -> str | None:
    """The Chromium executable: ``$EXPLORER_CHROMIUM`` if set, else Debian's ``/usr/bin/chromium``
    or a ``chromium``/``chromium-browser`` on the PATH; None when there is none."""
    explicit = os.environ.get("EXPLORER_CHROMIUM")
    for cand in ([explicit] if explicit else CHROMIUM_CANDIDATES):
        found = shutil.which(cand)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Poll Streamlit's health endpoint until it answers ``ok`` (or the server exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.25)  # polling interval, not a wait for something to happen
    raise TimeoutError(f"{url} did not answer 'ok' within {timeout:.0f} s")


def launch_server(env: Mapping[str, str | None] | None = None, *, port: int = 0,
                  log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``streamlit run app.py`` headless on 127.0.0.1 in its own process group; return the
    process and its base URL without waiting (see :func:`wait_healthy`, :func:`stop_server`).

    Args:
        env: changes to this process's environment (a value of None removes the variable).
        port: 0 picks a free port.
        log: file for the server's stdout and stderr (tracebacks); None discards stdout.
    """
    full_env = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    p = port or free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(p), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           # other edits of the tree must not rerun or disturb a running server
           "--server.fileWatcherType", "none"]
    out = open(log, "ab") if log else None
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, start_new_session=True,
                                stdout=out or subprocess.DEVNULL, stderr=out or None)
    finally:
        if out:
            out.close()
    return proc, f"http://127.0.0.1:{p}"


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it has not ended within 10 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def app_server(env: Mapping[str, str | None] | None = None, *, port: int = 0, log: Path | None = None,
               timeout: float = 60, attempts: int = 3) -> Iterator[str]:
    """Run ``streamlit run app.py`` headless on 127.0.0.1 and yield its base URL.

    Args:
        env: changes to this process's environment (a value of None removes the variable).
        port: 0 picks a free port (retried on a clash, up to ``attempts`` times).
        log: file for the server's stdout and stderr (tracebacks); None discards stdout.
        timeout: seconds to wait for the health endpoint.

    The server runs in its own process group, which is terminated (then killed) at the end.
    """
    for attempt in range(attempts):
        proc, base = launch_server(env, port=port, log=log)
        try:
            try:
                wait_healthy(f"{base}/_stcore/health", proc, timeout)
            except RuntimeError:
                if port or attempt == attempts - 1:
                    raise
                continue  # most likely the port was taken between free_port() and the bind
            yield base
            return
        finally:
            stop_server(proc)


# --------------------------------------------------------------------------- Playwright helpers

# Counts finished Streamlit script runs from the app's own messages. Each run ends with a
# ForwardMsg ``script_finished`` on the page's websocket; Playwright sees every frame, and the
# frames are decoded with Streamlit's own protobuf classes. (Watching the DOM's
# ``data-test-script-state`` instead misses fast reruns: when the start and the end of a run
# arrive before React renders, the attribute never leaves "notRunning".)
_RUNS: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()

_IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.getAttribute('data-test-script-state') === 'notRunning';
}"""


def track_script_runs(page) -> None:
    """Count the script runs of ``page`` that finish (call before the page opens the app).
    Runs cut short by a newer rerun (``FINISHED_EARLY_FOR_RERUN``) do not count."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    state = _RUNS.setdefault(page, {"finished": 0})
    early = ForwardMsg.ScriptFinishedStatus.Value("FINISHED_EARLY_FOR_RERUN")

    def on_frame(payload) -> None:
        if isinstance(payload, str):
            return
        try:
            msg = ForwardMsg.FromString(payload)
        except Exception:  # noqa: BLE001 - not a ForwardMsg: not ours to count
            return
        if msg.WhichOneof("type") == "script_finished" and msg.script_finished != early:
            state["finished"] += 1

    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))


def script_runs(page) -> int:
    """How many script runs of the page have finished so far (needs :func:`track_script_runs`)."""
    return _RUNS[page]["finished"]


def wait_script_run(page, after: int, timeout_ms: float) -> None:
    """Wait until a script run later than number ``after`` has finished and the page shows the
    app idle (polling every 50 ms: Playwright delivers the websocket frames while it waits)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not (script_runs(page) > after and page.evaluate(_IDLE_JS)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no script run finished within {timeout_ms / 1000:.0f} s "
                               f"({script_runs(page)} finished so far, waiting for more than {after})")
        page.wait_for_timeout(50)


def settle(page, action: Callable[[], object], timeout_ms: float = 60_000):
    """Do ``action`` (a widget change, a click that reruns the script) and wait until the rerun
    it causes has finished. The action must change something, or no rerun comes."""
    before = script_runs(page)
    value = action()
    wait_script_run(page, before, timeout_ms)
    return value


def wait_drawn(page, timeout_ms: float = 30_000) -> None:
    """Wait until no element is a placeholder any more: Streamlit draws a skeleton for an element
    whose code is still loading, and its script run can end before that."""
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')",
                           timeout=timeout_ms, polling=100)


def open_page(page, url: str, timeout_ms: float = 120_000) -> None:
    """Go to ``url`` and wait for its first script run to finish (models load on first use)."""
    before = script_runs(page)
    page.goto(url)
    wait_script_run(page, before, timeout_ms)


def dismiss_page_not_found(page) -> bool:
    """Close Streamlit's "Page not found" modal if it is open (returns whether it was). It used to
    appear when a page URL was opened directly, because Streamlit also treats the pages/ folder
    as a legacy multipage folder; the page renders underneath, but the modal makes it inert."""
    dialog = page.get_by_role("dialog").filter(has_text="Page not found")
    if dialog.count():
        dialog.get_by_role("button", name="Close").click()
        dialog.wait_for(state="detached")
        return True
    return False


def wait_images_loaded(page, timeout_ms: float = 30_000) -> None:
    page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)",
                           timeout=timeout_ms, polling=100)


def page_png(page, width: int = 1400, max_height: int = 8000) -> bytes:
    """A PNG of the whole page. Streamlit scrolls inside its own container, so a "full page"
    screenshot would only be the viewport: the viewport grows to the content height instead."""
    page.mouse.move(0, 0)  # no hover tooltip in the picture
    height = page.locator('[data-testid="stMain"]').evaluate("e => e.scrollHeight")
    page.set_viewport_size({"width": width, "height": min(max(height, 900), max_height)})
    wait_drawn(page)
    wait_images_loaded(page)
    # Plotly draws after the element is there; a hover tooltip fades out
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
                                .every(c => c.querySelector('.main-svg'))
                              && !document.querySelector('[data-testid="stTooltipContent"]')""",
                           timeout=30_000, polling=100)
    return page.screenshot(full_page=True, animations="disabled")


def save_png(png: bytes, out: Path, colors: int = 0) -> None:
    """Save a screenshot, optionally reduced to a palette of ``colors`` (0 = full colour)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    if colors:
        img = img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)


def key(k: str) -> str:
    """CSS selector of the element container of the widget with key ``k`` (Streamlit gives it
    the class ``st-key-<key>``)."""
    return f".st-key-{k}"


def choose(page, k: str, option: str) -> None:
    """Pick ``option`` (its shown text) in the selectbox with key ``k``."""
    from playwright.sync_api import expect

    box = page.locator(f'{key(k)} input[role="combobox"]')
    box.click()
    item = page.get_by_role("option").filter(has_text=option).first
    settle(page, item.click)
    expect(box).to_have_value(re.compile("^" + re.escape(option)))
