"""Take the README screenshot of the style transfer page.

Starts the app with untrained weights (EXPLORER_ALLOW_UNTRAINED=1), runs a short style
transfer on the bundled samples in headless Chromium and saves a PNG of the result.

    pip install playwright          # the Python package only; the browser comes from the system
    python docs/take_screenshot.py --out docs/screenshot.png

Needs a Chromium binary (Debian: ``apt-get install chromium``); see --chromium.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
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
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer 'ok' within {timeout:.0f} s")


def wait_idle(page, timeout_ms: float) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_timeout(300)  # let a just-triggered rerun start
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=timeout_ms)


def dismiss_page_not_found(page) -> None:
    """Close Streamlit's "Page not found" modal. It appears when /style is opened directly,
    because Streamlit also treats the pages/ folder as a legacy multipage folder; the right page
    still renders underneath, but the modal makes it inert."""
    dialog = page.get_by_role("dialog").filter(has_text="Page not found")
    if dialog.count():
        print("note: dismissing Streamlit's 'Page not found' modal", file=sys.stderr)
        dialog.get_by_role("button", name="Close").click()
        dialog.wait_for(state="detached")


def take(base: str, steps: int, chromium: str, timeout_s: float) -> bytes:
    """Run the style transfer page once and return a PNG of the whole page."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/style_transfer")
            run = page.get_by_role("button", name="Run", exact=True)
            expect(run).to_be_enabled(timeout=120_000)  # model loaded, sample images shown
            dismiss_page_not_found(page)
            expect(page.get_by_text("untrained", exact=False).first).to_be_visible()

            settings = page.get_by_text("Settings", exact=True)
            settings.click()
            box = page.get_by_label("Steps", exact=True)
            box.fill(str(steps))
            box.press("Enter")
            wait_idle(page, 60_000)
            settings.click()  # collapse again: keeps the screenshot short

            run.click()
            result = page.get_by_role("heading", name="Result")
            result.wait_for(timeout=timeout_s * 1000)
            wait_idle(page, timeout_s * 1000)
            page.locator('[data-testid="stPlotlyChart"]').last.wait_for()
            page.wait_for_function("() => [...document.images].every(i => i.complete)")
            page.wait_for_timeout(500)  # plotly draws asynchronously

            # Streamlit scrolls inside its own container, so a "full page" shot would only be the
            # viewport: grow the viewport to the content height instead.
            height = page.locator('[data-testid="stMain"]').evaluate("e => e.scrollHeight")
            page.set_viewport_size({"width": 1400, "height": min(max(height, 900), 6000)})
            result.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            png = page.screenshot(full_page=True)
        finally:
            browser.close()
    return png


def save(png: bytes, out: Path, colors: int) -> None:
    """Save the screenshot, reduced to a palette of `colors` (0 = full colour) to keep it small."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    if colors:
        img = img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for the result")
    ap.add_argument("--colors", type=int, default=256, help="PNG palette size; 0 = full colour (larger file)")
    args = ap.parse_args()

    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EXPLORER_ALLOW_UNTRAINED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL)  # stderr kept: tracebacks
    try:
        wait_healthy(f"{base}/_stcore/health", proc, timeout=60)
        save(take(base, args.steps, args.chromium, args.timeout), args.out, args.colors)
        print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


if __name__ == "__main__":
    main()
