"""Take a full-page screenshot of each page of the app, on real weights, at 1280 px.

Starts the app with the trained weights of a folder (``--weights-dir``, given to the app as
EXPLORER_WEIGHTS_DIR: the Caffe VGG19 conv layers and MobileNetV2), EXPLORER_OFFLINE=1 and a cache
folder of its own (``--cache-dir``, default a temporary one, as EXPLORER_CACHE_DIR), opens each
page in headless Chromium at a 1280 x 900 viewport, waits for the page's first script run and
saves a PNG of the whole page as ``OUT/<page>.png``. No page is run: each shows what it shows when
it opens, with these exceptions:

* style_transfer: the expander with the equations (and the TV term) is opened;
* activations: the "Gram matrix" tab is selected;
* what_each_layer_keeps: before the app starts, the page's default figure (the engine's default
  settings and pair, see :mod:`explorer.app.reconstruct_view`) is made once and written to the
  cache folder with :func:`explorer.style.reconstruct_cache.save_cached`, where the page looks for
  it, so the page opens with its default figure. About 10 pictures x 40 L-BFGS steps at 128 px:
  several minutes on 2 CPU cores; skipped when that cache folder already holds the figure.

    python docs/take_page_screenshots.py --weights-dir /work/shared/weights
    python docs/take_page_screenshots.py --pages home activations   # only some pages

Needs the ``playwright`` Python package and a Chromium binary (Debian: ``apt-get install
chromium``; see --chromium). Each PNG is saved in full colour (optimize=True) and, when that is
larger than ``--max-kb``, as a 256-colour palette PNG instead; nothing is downscaled.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the server, the Chromium flags and the waits are shared with the browser tests
from tests import browser_support as bs  # noqa: E402

WIDTH, HEIGHT = 1280, 900
#: Tallest screenshot, px (Chromium's own limit for one capture is 16384).
MAX_HEIGHT = 16000
#: page name -> (URL path, the page's title heading)
PAGES = {
    "home": ("", "Deep Dream and style-visualization explorer"),
    "style_transfer": ("style_transfer", "Style transfer"),
    "compare": ("compare", "Full vs guided Gram"),
    "style_saliency": ("style_saliency", "Style saliency"),
    "activations": ("activations", "Layer activations"),
    "feature_vis": ("feature_vis", "Feature visualization"),
    "what_each_layer_keeps": ("what_each_layer_keeps", "What each layer keeps"),
}
EQUATIONS_EXPANDER = "What do alpha, beta, the layers and TV do?"
GRAM_TAB = "Gram matrix"


def make_default_figure(cache_dir: Path) -> Path:
    """Make the reconstructions page's default figure for the VGG19 found in EXPLORER_WEIGHTS_DIR
    and keep it where the page reads it (``cache_dir/reconstruct/<key>``); returns that folder.
    Loads the network as the page does (ImageNet weights, device auto)."""
    os.environ["EXPLORER_CACHE_DIR"] = str(cache_dir)
    from explorer.app import reconstruct_view as RV
    from explorer.io.samples import parse_image_ref
    from explorer.nets import models
    from explorer.style import reconstruct as R
    from explorer.style import reconstruct_cache as RC

    settings = RV.default_settings(R.ReconstructSettings.model)
    model = models.load_model(settings.model, weights="imagenet", device="auto")
    folder = RV.default_path(model)
    if RC.load_cached(folder) is not None:
        print(f"default figure already in {folder}", file=sys.stderr)
        return folder
    inputs = RV.default_inputs()
    run = R.Reconstruction(model, parse_image_ref(inputs["content"]).image, parse_image_ref(inputs["style"]).image,
                           settings)
    n, start = len(settings.plan()), time.perf_counter()
    print(f"making the default figure ({n} pictures x {settings.steps} steps, {model.weights.label})",
          file=sys.stderr)
    stage = None
    for ev in run:
        if ev.stage != stage:
            stage = ev.stage
            print(f"  {stage} from {time.perf_counter() - start:.0f} s", file=sys.stderr)
    RC.save_cached(run.result(), folder, inputs)
    return folder


def problems(page) -> list[str]:
    """The texts of exception blocks and error boxes on the page (empty when there are none)."""
    found = []
    for sel in ('[data-testid="stException"]', '[data-testid="stAlertContentError"]'):
        loc = page.locator(sel)
        found += [loc.nth(i).inner_text().strip().splitlines()[0] for i in range(loc.count())]
    return found


def prepare(page, name: str) -> None:
    """The one change a page gets before its screenshot (client-side: no script run)."""
    from playwright.sync_api import expect

    if name == "style_transfer":
        details = page.locator('[data-testid="stExpander"] details').filter(
            has=page.locator("summary", has_text=EQUATIONS_EXPANDER))
        if details.get_attribute("open") is None:
            details.locator("summary").click()
        expect(details).to_have_attribute("open", "")
        details.locator(".katex-html").first.wait_for()  # the equations are typeset
    elif name == "activations":
        tab = page.get_by_role("tab", name=GRAM_TAB)
        tab.click()
        expect(tab).to_have_attribute("aria-selected", "true")
        page.locator('.st-key-act_gram [data-testid="stPlotlyChart"], .st-key-act_gram .main-svg').first.wait_for()
    elif name == "what_each_layer_keeps":
        expect(page.get_by_role("heading", name="The default figure")).to_be_visible()


def wait_height_settled(page, timeout_ms: float = 10_000) -> None:
    """Wait until the page's content height has stayed the same for 0.6 s: an expander that was
    just opened grows in an animation, and :func:`tests.browser_support.page_png` sizes the
    screenshot by that height (measured mid-animation, the page's end would be cut off)."""
    main = page.locator('[data-testid="stMain"]')
    last, same, deadline = -1, 0, time.monotonic() + timeout_ms / 1000
    while same < 3 and time.monotonic() < deadline:
        height = main.evaluate("e => e.scrollHeight")
        same = same + 1 if height == last else 0
        last = height
        page.wait_for_timeout(200)


def shoot(base: str, names: list[str], chromium: str, timeout_s: float) -> dict[str, tuple[bytes, list[str]]]:
    """Open each page in a fresh browser session and return its PNG and the problems seen on it."""
    from playwright.sync_api import sync_playwright

    shots = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=bs.CHROMIUM_ARGS, headless=True)
        try:
            for name in names:
                path, title = PAGES[name]
                ctx = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
                try:
                    page = ctx.new_page()
                    bs.track_script_runs(page)
                    page.set_default_timeout(60_000)
                    start = time.perf_counter()
                    bs.open_page(page, f"{base}/{path}", timeout_ms=timeout_s * 1000)
                    if bs.dismiss_page_not_found(page):
                        print(f"note: {name}: dismissed Streamlit's 'Page not found' modal", file=sys.stderr)
                    bs.wait_drawn(page)
                    page.get_by_role("heading", name=title, exact=True).first.wait_for()
                    prepare(page, name)
                    wait_height_settled(page)
                    png = bs.page_png(page, width=WIDTH, max_height=MAX_HEIGHT)
                    seen = problems(page)
                    shots[name] = (png, seen)
                    print(f"{name}: {time.perf_counter() - start:.0f} s" + (f"; PROBLEMS: {seen}" if seen else ""),
                          file=sys.stderr)
                finally:
                    ctx.close()
        finally:
            browser.close()
    return shots


def save(png: bytes, out: Path, max_kb: int) -> str:
    """Save in full colour, or as a 256-colour palette PNG when full colour exceeds ``max_kb``."""
    from PIL import Image

    bs.save_png(png, out)
    if out.stat().st_size > max_kb * 1024:
        bs.save_png(png, out, colors=256)
        kind = "256 colours"
    else:
        kind = "full colour"
    w, h = Image.open(io.BytesIO(png)).size
    return f"{out} {w}x{h}, {kind}, {out.stat().st_size // 1024} KB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES))
    ap.add_argument("--weights-dir", type=Path, default=ROOT.parent / "shared" / "weights",
                    help="folder of weights files for EXPLORER_WEIGHTS_DIR (default ../shared/weights)")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="EXPLORER_CACHE_DIR of the app (default: a temporary folder, removed at the end)")
    ap.add_argument("--chromium", default=None,
                    help="Chromium executable (default: $EXPLORER_CHROMIUM, /usr/bin/chromium or chromium on the PATH)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for a page's first script run")
    ap.add_argument("--max-kb", type=int, default=400, help="above this a PNG is saved with a 256-colour palette")
    ap.add_argument("--log", type=Path, default=None, help="file for the server's output (tracebacks)")
    args = ap.parse_args()

    chromium = bs.find_chromium() if args.chromium is None else args.chromium
    if not chromium:
        sys.exit("error: no Chromium found; install it (Debian: apt-get install chromium) or pass --chromium")
    if not args.weights_dir.is_dir():
        sys.exit(f"error: {args.weights_dir} is not a folder; pass --weights-dir")
    with tempfile.TemporaryDirectory(prefix="explorer-shots-") as tmp:
        cache = args.cache_dir or Path(tmp)
        env = {"EXPLORER_WEIGHTS_DIR": str(args.weights_dir.resolve()), "EXPLORER_OFFLINE": "1",
               "EXPLORER_CACHE_DIR": str(cache.resolve()), "EXPLORER_ALLOW_UNTRAINED": None}
        for k, v in env.items():  # the prep step loads the network as the app will
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if "what_each_layer_keeps" in args.pages:
            make_default_figure(cache.resolve())
        with bs.app_server(env, timeout=60, log=args.log) as base:
            shots = shoot(base, args.pages, chromium, args.timeout)
    bad = 0
    for name, (png, seen) in shots.items():
        print(save(png, args.out_dir / f"{name}.png", args.max_kb))
        for s in seen:
            print(f"  problem on {name}: {s}")
        bad += bool(seen)
    if bad:
        sys.exit(f"error: {bad} page(s) showed an error box or exception (see above)")


if __name__ == "__main__":
    main()
