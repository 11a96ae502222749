"""Take the README screenshot of the style transfer page.

Starts the app with the real trained weights of a folder (``--weights-dir``, default the
workplace's ``../shared/weights``, given to the app as EXPLORER_WEIGHTS_DIR; ``--untrained``
for untrained weights), runs a short style transfer on the bundled samples in headless
Chromium and saves a PNG of the result.

    pip install playwright          # the Python package only; the browser comes from the system
    python docs/take_screenshot.py --out docs/screenshot.png

Needs a Chromium binary (Debian: ``apt-get install chromium``); see --chromium.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the server, the Chromium flags and the waits are shared with the browser tests
from tests import browser_support as bs  # noqa: E402


def take(base: str, steps: int, chromium: str, timeout_s: float, label: str, content: str, style: str) -> bytes:
    """Run the style transfer page once and return a PNG of the whole page."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=bs.CHROMIUM_ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 900})
            page = ctx.new_page()
            bs.track_script_runs(page)
            page.set_default_timeout(60_000)
            bs.open_page(page, f"{base}/style_transfer", timeout_ms=180_000)  # model built, samples shown
            if bs.dismiss_page_not_found(page):
                print("note: dismissed Streamlit's 'Page not found' modal", file=sys.stderr)
            run = page.locator('.st-key-run button[data-testid^="stBaseButton"]')
            expect(run).to_be_enabled()
            expect(page.get_by_text(label, exact=False).first).to_be_visible()  # the weights in use
            bs.choose(page, "content_sample", content)
            bs.choose(page, "style_sample", style)

            settings = page.locator('[data-testid="stExpander"] summary').filter(has_text="Settings")
            settings.click()
            box = page.locator(".st-key-steps input")
            if box.input_value() != str(steps):
                def set_steps():
                    box.fill(str(steps))
                    box.press("Enter")

                bs.settle(page, set_steps)
            settings.click()  # collapse again: keeps the screenshot short

            bs.settle(page, run.click, timeout_ms=timeout_s * 1000)
            result = page.get_by_role("heading", name="Result")
            expect(result).to_be_visible()
            page.locator('[data-testid="stPlotlyChart"]').last.wait_for()
            bs.wait_drawn(page)
            png = bs.page_png(page)
        finally:
            browser.close()
    return png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--chromium", default=None,
                    help="Chromium executable (default: $EXPLORER_CHROMIUM, /usr/bin/chromium or chromium on the PATH)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for the result")
    ap.add_argument("--colors", type=int, default=256, help="PNG palette size; 0 = full colour (larger file)")
    ap.add_argument("--weights-dir", type=Path, default=ROOT.parent / "shared" / "weights",
                    help="folder of weights files for EXPLORER_WEIGHTS_DIR (default ../shared/weights)")
    ap.add_argument("--untrained", action="store_true", help="use untrained weights instead")
    ap.add_argument("--content", default="chelsea (cat)", help="content sample as the page lists it")
    ap.add_argument("--style", default="immunohistochemistry", help="style sample as the page lists it")
    args = ap.parse_args()

    chromium = bs.find_chromium() if args.chromium is None else args.chromium
    if not chromium:
        sys.exit("error: no Chromium found; install it (Debian: apt-get install chromium) or pass --chromium")
    if args.untrained:
        env, label = {"EXPLORER_ALLOW_UNTRAINED": "1", "EXPLORER_WEIGHTS_DIR": None}, "untrained"
    else:
        if not args.weights_dir.is_dir():
            sys.exit(f"error: {args.weights_dir} is not a folder; pass --weights-dir or --untrained")
        env, label = {"EXPLORER_WEIGHTS_DIR": str(args.weights_dir), "EXPLORER_ALLOW_UNTRAINED": None}, "Weights: "
    with bs.app_server(env, port=args.port, timeout=60) as base:
        png = take(base, args.steps, chromium, args.timeout, label, args.content, args.style)
    bs.save_png(png, args.out, args.colors)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
