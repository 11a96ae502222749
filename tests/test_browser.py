"""Real-browser end-to-end tests: every page of the app in headless Chromium, driven by Playwright.

One Streamlit server for the module (``streamlit run app.py`` on a free localhost port, untrained
weights allowed, no downloads, a private empty torch cache), one Chromium for the module, a fresh
browser context per test. Each test opens a page, checks that it renders without an exception,
uploads small images through the file chooser, sets the smallest sensible settings with the
page's widgets (64 px, 1-2 steps), runs, waits for the result, downloads it and decodes the file,
and saves a full-page screenshot to ``test-artifacts/browser/``.

Needs Debian's Chromium (``apt-get install chromium``) and the ``playwright`` Python package;
no Playwright browser download. Without them the tests are skipped locally, but they fail when
the ``CI`` environment variable is set, so CI cannot skip them silently. Run them alone with
``python -m pytest -m browser``.

Nothing here sleeps for a fixed time: every step waits for the Streamlit script run it caused
(:func:`tests.browser_support.settle`) or for an element.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import pytest
from PIL import Image

from tests import browser_support as bs

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = expect = None

pytestmark = pytest.mark.browser

ARTIFACTS = bs.ROOT / "test-artifacts" / "browser"
LOAD_MS = 180_000  # first visit of a page: the network is built (untrained VGG19 is 548 MB of floats)
RUN_MS = 300_000  # a tiny run, with room for a slow shared CI machine
STEP_MS = 60_000  # one widget change and its rerun

CONTENT_SIZE = (128, 96)  # uploads are scaled so that the long side is the working size:
WORK = 64  # 64 px -> results of 64 x 48
RESULT_SIZE = (64, 48)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing() -> str | None:
    if sync_playwright is None:
        return "the playwright Python package is not installed (pip install -r requirements-dev.txt)"
    if bs.find_chromium() is None:
        return "no Chromium found (Debian: apt-get install chromium; or set EXPLORER_CHROMIUM)"
    return None


def _require_browser() -> None:
    reason = _missing()
    if reason:
        if _in_ci():
            pytest.fail(f"browser tests cannot run on CI: {reason}", pytrace=False)
        pytest.skip(reason)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def app_cache(tmp_path_factory) -> Path:
    """The server's cache folder (``EXPLORER_CACHE_DIR``), empty at the start."""
    return tmp_path_factory.mktemp("app_cache")


@pytest.fixture(scope="module")
def server(tmp_path_factory, app_cache):
    """Base URL of a Streamlit server running app.py with the AppTests' environment
    (tests.helpers.app_env): untrained weights allowed, offline, an empty private torch cache."""
    _require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("FAILED-*.png"):
        old.unlink()
    log = ARTIFACTS / "server.log"
    log.write_bytes(b"")
    env = {"EXPLORER_ALLOW_UNTRAINED": "1", "EXPLORER_OFFLINE": "1",
           "TORCH_HOME": str(tmp_path_factory.mktemp("torch_home")), "EXPLORER_WEIGHTS_DIR": None,
           "EXPLORER_CACHE_DIR": str(app_cache), "PYTHONUNBUFFERED": "1"}
    with bs.app_server(env, log=log, timeout=60) as base:
        yield base


@pytest.fixture(scope="module")
def browser(server):
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=bs.find_chromium(), args=bs.CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context and page (its own Streamlit session). If the test fails, the page
    as it was is saved as ``test-artifacts/browser/FAILED-<test>.png``."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    bs.track_script_runs(pg)
    pg.set_default_timeout(STEP_MS)
    failed_before = request.session.testsfailed
    try:
        yield pg
    finally:
        if request.session.testsfailed > failed_before:
            try:
                bs.save_png(pg.screenshot(full_page=True), ARTIFACTS / f"FAILED-{request.node.name}.png")
            except Exception:  # noqa: BLE001 - the failure itself is what matters
                pass
        ctx.close()


@pytest.fixture
def pictures(tmp_path):
    """A content picture (128 x 96, a gradient with a disc) and a style picture (96 x 96 stripes)."""
    w, h = CONTENT_SIZE
    y, x = np.mgrid[0:h, 0:w]
    disc = ((x / w - 0.4) ** 2 + (y / h - 0.5) ** 2) < 0.08
    content = np.stack([255 * x / w, 255 * y / h, 255 * disc], -1).astype(np.uint8)
    _, xx = np.mgrid[0:96, 0:96]
    s = (np.sin(xx / 2.5) > 0).astype(np.uint8)
    style = np.stack([255 * s, 255 * (1 - s), np.full_like(s, 128)], -1).astype(np.uint8)
    paths = {"content": tmp_path / "content.png", "style": tmp_path / "style.png"}
    Image.fromarray(content).save(paths["content"])
    Image.fromarray(style).save(paths["style"])
    return paths


# ----------------------------------------------------------------------------- helpers

key = bs.key


def button_of(page, k: str):
    """The button of the button or download button with key ``k``. (A button with a help text
    is rendered twice, once hidden, hence the visibility filter.)"""
    return page.locator(f'{key(k)} button[data-testid^="stBaseButton"]').filter(visible=True)


def visit(page, base: str, path: str, title: str) -> None:
    bs.open_page(page, f"{base}/{path}", timeout_ms=LOAD_MS)
    assert_clean(page)
    assert not bs.dismiss_page_not_found(page), f"opening /{path} directly showed 'Page not found'"
    expect(page.get_by_role("heading", name=title, exact=True).first).to_be_visible()


def assert_clean(page) -> None:
    """No exception block and no error box on the page (once every element is drawn: the
    script run ends before the browser has drawn lazily loaded elements)."""
    bs.wait_drawn(page)
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, exc.first.inner_text()
    err = page.locator('[data-testid="stAlertContentError"]')
    assert err.count() == 0, err.first.inner_text()


def untrained_label(page) -> None:
    warn = page.locator('[data-testid="stAlertContentWarning"]').filter(has_text="untrained weights")
    expect(warn.first).to_be_visible()


def upload_image(page, picker: str, path: Path) -> None:
    """Switch pickers.image_picker ``picker`` to "Upload" and choose ``path`` in its file chooser."""
    radio = page.locator(key(f"{picker}_source"))
    bs.settle(page, lambda: radio.get_by_text("Upload", exact=True).click())
    chooser = page.locator(f'{key(f"{picker}_upload")} [data-testid="stFileUploaderDropzoneInput"]')
    bs.settle(page, lambda: chooser.set_input_files(path))
    expect(page.locator(key(f"{picker}_upload")).get_by_text(path.name)).to_be_visible()


def open_expander(page, title: str) -> None:
    """Open the expander ``title`` (expanders are client-side: no rerun)."""
    details = page.locator('[data-testid="stExpander"] details').filter(
        has=page.locator("summary", has_text=title))
    expect(details).to_have_count(1)
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    expect(details).to_have_attribute("open", "")


def set_slider(page, k: str, value: float, thumb: int = 0) -> None:
    """Move a slider's thumb to ``value`` with the keyboard (Home, or one arrow key at a time),
    waiting for the rerun of every key press (each one commits a value)."""
    box = page.locator(f'{key(k)} input[type="range"]').nth(thumb)
    expect(box).to_be_attached()
    for _ in range(100):
        cur, lo = float(box.input_value()), float(box.get_attribute("min"))
        if cur == value:
            return
        press = "Home" if value == lo else "ArrowLeft" if value < cur else "ArrowRight"
        bs.settle(page, lambda: box.press(press))
    raise AssertionError(f"slider {k} did not reach {value} (at {box.input_value()})")


def set_number(page, k: str, value) -> None:
    box = page.locator(f"{key(k)} input")
    assert box.input_value() != str(value), f"{k} is already {value}: no rerun would follow"

    def type_it():
        box.fill(str(value))
        box.press("Enter")

    bs.settle(page, type_it)
    expect(box).to_have_value(str(value))


def set_text(page, k: str, value: str) -> None:
    set_number(page, k, value)


choose = bs.choose


def run(page, button_key: str) -> None:
    """Click the page's run button and wait until the run (one script run) has finished."""
    button = button_of(page, button_key)
    expect(button).to_be_enabled()
    bs.settle(page, button.click, timeout_ms=RUN_MS)
    assert_clean(page)
    expect(page.get_by_role("heading", name="Result", exact=True)).to_be_visible()


def download(page, button_key: str, name: str, tmp_path: Path) -> Path:
    """Click a download button; return the saved file (checks the suggested file name). The click
    also reruns the script (``on_click="rerun"``, the default): waits for that too."""
    button = button_of(page, button_key)

    def click():
        with page.expect_download() as info:
            button.click()
        return info.value

    dl = bs.settle(page, click)
    assert dl.suggested_filename == name
    out = tmp_path / "downloads" / name
    out.parent.mkdir(exist_ok=True)
    dl.save_as(out)
    return out


def png_size(path_or_bytes, fmt: str = "PNG") -> tuple[int, int]:
    """Decode an image file completely; check its format and return its size."""
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(src) as im:
        assert im.format == fmt
        im.load()
        return im.size


def shown_image(page, caption: str) -> bytes:
    """The bytes of the st.image whose caption starts with ``caption``, fetched like the browser
    fetched them (Streamlit serves RGB pictures as JPEG)."""
    img = page.locator('[data-testid="stImage"]').filter(has_text=caption).locator("img").first
    expect(img).to_be_visible()
    resp = page.request.get(urljoin(page.url, img.get_attribute("src")))
    assert resp.ok, resp.status
    return resp.body()


#: Window widths every page is checked and photographed at: a projector or laptop, a desktop.
WIDTHS = (1280, 1920)

# Streamlit cuts long labels and selected values with "text-overflow: ellipsis" on some wrapper:
# every visible element that ellipsizes and whose text does not fit is a cut label.
_CUT_LABELS_JS = """() => [...document.querySelectorAll('[data-testid="stMain"] *, [data-testid="stSidebar"] *')]
  .filter(e => e.offsetParent !== null && getComputedStyle(e).textOverflow === 'ellipsis'
               && e.scrollWidth > e.clientWidth + 1 && e.innerText.trim())
  .map(e => e.innerText.trim().slice(0, 80))"""


def screenshot(page, name: str) -> None:
    """Check the page at each of :data:`WIDTHS` (no exception or error, no label cut off with an
    ellipsis) and save a full-page screenshot per width, ``NAME-1280.png`` and ``NAME-1920.png``."""
    assert_clean(page)
    for width in WIDTHS:
        png = bs.page_png(page, width=width)
        cut = page.evaluate(_CUT_LABELS_JS)
        assert not cut, f"labels cut off at {width} px: {cut}"
        bs.save_png(png, ARTIFACTS / f"{name}-{width}.png")


# ----------------------------------------------------------------------------- tests

def test_home(page, server):
    visit(page, server, "", "Deep Dream and style-visualization explorer")
    expect(page.get_by_text("This machine", exact=True)).to_be_visible()
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
    # every page is in the navigation
    nav = page.locator('[data-testid="stSidebarNav"]')
    for title in ("Style transfer", "Deep Dream", "Layer activations", "Feature visualization", "Style saliency",
                  "Full vs guided Gram", "Parameter sweep", "Dataset augmentation", "What each layer keeps"):
        expect(nav.get_by_text(title, exact=True)).to_be_visible()
    screenshot(page, "01-home")


def content_style_page(page, server, pictures, path: str, title: str, prefix: str = "",
                       settings: str = "Settings") -> None:
    """Open a page with a content and a style picker (keys ``{prefix}content``/``{prefix}style``),
    upload both pictures, and set the working size to 64 px and 2 steps in its settings."""
    visit(page, server, path, title)
    untrained_label(page)
    upload_image(page, f"{prefix}content", pictures["content"])
    upload_image(page, f"{prefix}style", pictures["style"])
    open_expander(page, settings)
    set_slider(page, f"{prefix}size", WORK)
    set_number(page, f"{prefix}steps", 2)


def test_style_transfer(page, server, pictures, tmp_path):
    content_style_page(page, server, pictures, "style_transfer", "Style transfer")
    run(page, "run")
    expect(page.locator('[data-testid="stImage"]').filter(has_text="Result (untrained")).to_be_visible()
    out = download(page, "download_png", "stylized.png", tmp_path)
    assert png_size(out) == RESULT_SIZE
    with Image.open(out) as im:
        assert "untrained" in im.text["weights"]
    screenshot(page, "02-style_transfer")


def test_style_transfer_photorealistic(page, server, pictures, tmp_path):
    """The "Colours, scales and photorealism" controls: luminance-only colours, the
    photorealism term and automatic regions; the region maps are shown beside the result."""
    content_style_page(page, server, pictures, "style_transfer", "Style transfer")
    open_expander(page, "Colours, scales and photorealism")
    bs.settle(page, lambda: page.locator(key("preserve_color")).get_by_text("Luminance-only transfer").click())
    bs.settle(page, lambda: page.locator(f'{key("photo")} label').click())
    choose(page, "masks", "Automatic: colour clusters")
    run(page, "run")
    for caption in ("Result (untrained", "Content regions", "Style regions"):
        expect(page.locator('[data-testid="stImage"]').filter(has_text=caption)).to_be_visible()
    expect(page.get_by_text("photo", exact=False).last).to_be_visible()
    assert png_size(download(page, "download_png", "stylized.png", tmp_path)) == RESULT_SIZE
    screenshot(page, "09-style_photorealistic")


def test_deep_dream(page, server, pictures, tmp_path):
    visit(page, server, "deep_dream", "Deep Dream")
    untrained_label(page)
    upload_image(page, "dream_input", pictures["content"])
    open_expander(page, "Settings")
    set_slider(page, "dream_size", WORK)
    set_slider(page, "dream_octaves", 1)
    set_slider(page, "dream_steps", 1)
    run(page, "dream_run")
    expect(page.locator('[data-testid="stImage"]').filter(has_text="Dream (untrained")).to_be_visible()
    assert png_size(download(page, "dream_download_png", "dream.png", tmp_path)) == RESULT_SIZE
    screenshot(page, "03-deep_dream")


def test_settings_are_kept_after_a_visit_to_another_page(page, server):
    """Settings changed on the Deep Dream page are still there after the user went to the style
    transfer page and came back through the sidebar (one session, as a student clicks around)."""
    visit(page, server, "deep_dream", "Deep Dream")
    open_expander(page, "Settings")
    set_slider(page, "dream_octaves", 2)
    set_number(page, "dream_seed", 7)
    nav = page.locator('[data-testid="stSidebarNav"]')
    bs.settle(page, nav.get_by_text("Style transfer", exact=True).click, timeout_ms=LOAD_MS)
    expect(page.get_by_role("heading", name="Style transfer", exact=True).first).to_be_visible()
    bs.settle(page, nav.get_by_text("Deep Dream", exact=True).click, timeout_ms=LOAD_MS)
    assert_clean(page)
    open_expander(page, "Settings")
    expect(page.locator(f'{key("dream_octaves")} input[type="range"]')).to_have_value("2")
    expect(page.locator(f'{key("dream_seed")} input')).to_have_value("7")


def test_layer_activations(page, server, pictures):
    """The page has no run button (activations are computed as soon as there is an image) and no
    download: the top-channel grid is fetched the way the browser shows it."""
    visit(page, server, "activations", "Layer activations")
    untrained_label(page)
    upload_image(page, "act_input", pictures["content"])
    set_slider(page, "act_size", WORK)
    expect(page.locator('[data-testid="stImage"]').filter(has_text="content.png, 64×48 px")).to_be_visible()
    grid = shown_image(page, "Top 16 of 256 channels of relu3_1")
    assert png_size(grid, "JPEG") == (8 * 128, 2 * (128 + 16))  # explorer.nets.layers.channel_grid, 8 columns
    screenshot(page, "04-activations")


def test_feature_visualization(page, server, tmp_path):
    """One channel of the default layer (relu4_1) at the default 128 px and 64 steps, beside its
    crops from the bundled samples; the grid downloads."""
    visit(page, server, "feature_vis", "Feature visualization")
    untrained_label(page)
    set_text(page, "fv_grid_channels", "0")
    run(page, "fv_grid_run")
    expect(page.locator('[data-testid="stImage"]').filter(has_text="top dataset crops")).to_be_visible()
    assert png_size(download(page, "fv_grid_download_png", "featurevis-grid.png", tmp_path))[0] == 128
    screenshot(page, "10-feature_vis")


def test_what_each_layer_keeps(page, server, app_cache):
    """The page with an empty cache: the one line that there is no figure yet and the button that
    makes it; then with a (small) default figure in the cache: the figure and its numbers. No label
    cut off in either (the settings open)."""
    from explorer.app import reconstruct_view as RV
    from explorer.nets import models
    from explorer.style import reconstruct as R
    from explorer.style import reconstruct_cache as RC
    from tests.helpers import picture, stripes

    visit(page, server, "what_each_layer_keeps", "What each layer keeps")
    untrained_label(page)
    expect(page.get_by_text("No figure for", exact=False).first).to_be_visible()
    expect(page.locator(key("rec_make_default"))).to_be_visible()
    open_expander(page, "Settings")
    screenshot(page, "11-what_each_layer_keeps-empty")
    model = models.load_model("vgg19", weights="untrained", device="cpu")
    run = R.Reconstruction(model, picture(48, 48), stripes(48, 48), R.ReconstructSettings(size=48, steps=2))
    for _ in run:
        pass
    RC.save_cached(run.result(), RV.default_path(model, root=app_cache / "reconstruct"), RV.default_inputs())
    visit(page, server, "what_each_layer_keeps", "What each layer keeps")
    expect(page.get_by_role("heading", name="The default figure").first).to_be_visible()
    expect(page.locator('[data-testid="stImage"]').filter(has_text="What each layer keeps (untrained")).to_be_visible()
    expect(page.get_by_text("Relative error of each picture", exact=False).first).to_be_visible()
    open_expander(page, "Each picture on its own")
    screenshot(page, "11-what_each_layer_keeps")


def test_style_saliency(page, server, pictures, tmp_path):
    visit(page, server, "style_saliency", "Style saliency")
    untrained_label(page)
    upload_image(page, "sal_style", pictures["style"])
    set_slider(page, "sal_size", WORK)
    run(page, "sal_run")
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
    assert png_size(download(page, "sal_download_png", "saliency_overlay.png", tmp_path)) == (WORK, WORK)
    heat = np.load(download(page, "sal_download_npy", "saliency_heatmap.npy", tmp_path))
    assert heat.shape == (WORK, WORK) and heat.dtype == np.float32 and np.isfinite(heat).all()
    recipe = json.loads(download(page, "sal_download_json", "saliency-recipe.json", tmp_path).read_text())
    assert recipe["command"] == "saliency" and recipe["settings"]["size"] == WORK
    screenshot(page, "05-style_saliency")


def test_full_vs_guided_gram(page, server, pictures, tmp_path):
    content_style_page(page, server, pictures, "compare", "Full vs guided Gram", "cmp_", "Style transfer settings")
    run(page, "cmp_run")
    expect(page.locator('[data-testid="stImage"]').filter(has_text="Saliency-guided Gram (untrained")).to_be_visible()
    assert png_size(download(page, "cmp_download_full", "full_gram.png", tmp_path)) == RESULT_SIZE
    assert png_size(download(page, "cmp_download_guided", "guided_gram.png", tmp_path)) == RESULT_SIZE
    screenshot(page, "06-compare")


def test_parameter_sweep(page, server, pictures, tmp_path):
    visit(page, server, "sweep", "Parameter sweep")
    untrained_label(page)
    upload_image(page, "sweep_content", pictures["content"])
    upload_image(page, "sweep_style", pictures["style"])
    set_slider(page, "sweep_rows_alpha_beta_count", 1)
    set_text(page, "sweep_cols_steps_values", "1, 2")
    open_expander(page, "Base settings")
    set_slider(page, "sweep_size", WORK)
    expect(page.get_by_text("Plan: 2 cells from 1 optimization run(s) of 2 steps")).to_be_visible()
    run(page, "sweep_run")
    grid = page.locator('[data-testid="stImage"]').filter(has_text="Sweep (untrained")
    expect(grid).to_be_visible()
    shown = shown_image(page, "Sweep (untrained")
    out = download(page, "sweep_download_png", "sweep.png", tmp_path)
    size = png_size(out)
    assert size == png_size(shown, "JPEG")  # the download is the grid on the page
    assert size[0] > 2 * 160 and size[1] > 160  # 1 x 2 cells of at least 160 px (readable on a projector)
    rows = list(csv.DictReader(io.StringIO(download(page, "sweep_download_csv", "sweep.csv", tmp_path)
                                           .read_text("utf-8"))))
    assert [r["step"] for r in rows] == ["1", "2"]
    screenshot(page, "07-sweep")


def dataset_zip(path: Path) -> Path:
    """An ImageFolder zip: dataset/cats/{a,b}.png, dataset/dogs/c.png and a broken file."""
    def png(w: int, h: int, seed: int) -> bytes:
        rng = np.random.default_rng(seed)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("dataset/cats/a.png", png(48, 48, 0))
        zf.writestr("dataset/cats/b.png", png(48, 40, 1))
        zf.writestr("dataset/dogs/c.png", png(40, 48, 2))
        zf.writestr("dataset/dogs/bad.png", b"not an image")
    return path


def test_dataset_augmentation(page, server, tmp_path):
    visit(page, server, "augment", "Dataset augmentation")
    untrained_label(page)
    data = dataset_zip(tmp_path / "dataset.zip")
    chooser = page.locator(f'{key("aug_zip")} [data-testid="stFileUploaderDropzoneInput"]')
    bs.settle(page, lambda: chooser.set_input_files(data))
    expect(page.locator(key("aug_zip")).get_by_text("dataset.zip")).to_be_visible()
    open_expander(page, "Settings")
    set_number(page, "aug_variants", 1)
    set_slider(page, "aug_size", 48, thumb=0)  # 128..128 -> 48..128
    set_slider(page, "aug_size", 48, thumb=1)  # -> 48..48
    set_slider(page, "aug_steps", 1, thumb=0)
    set_slider(page, "aug_steps", 1, thumb=1)
    run(page, "aug_run")
    expect(page.get_by_text("3 image(s) written from 4 input file(s)")).to_be_visible()
    out = download(page, "aug_download", "augmented.zip", tmp_path)
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert names == {"cats/a__v0.png", "cats/b__v0.png", "dogs/c__v0.png", "manifest.csv", "skipped.csv"}
        expected = {"cats/a__v0.png": (48, 48), "cats/b__v0.png": (48, 40), "dogs/c__v0.png": (40, 48)}
        for name, size in expected.items():
            assert png_size(zf.read(name)) == size, name
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
        assert sorted(r["output"] for r in rows) == sorted(expected)
        skipped = list(csv.DictReader(io.StringIO(zf.read("skipped.csv").decode())))
        assert [r["path"] for r in skipped] == ["dogs/bad.png"]
    screenshot(page, "08-augment")


def test_a_hanging_download_ends_in_one_line_and_the_server_stops_on_sigterm(browser, tmp_path):
    """Behind a network that accepts connections and never answers, the weights download used to
    spin forever and the server then ignored SIGTERM. Here urllib's proxy (https_proxy) is a
    loopback server that never answers, so nothing leaves the machine. With a 3 s timeout the
    style page ends in one line that says what to do; with a long one, SIGTERM during the download
    still stops the server."""
    import signal
    import time

    from tests.helpers import silent_server

    def start(timeout_s: str, proxy: str, log: Path):
        proc, base = bs.launch_server(
            {"https_proxy": f"http://{proxy}", "HTTPS_PROXY": f"http://{proxy}", "no_proxy": "", "NO_PROXY": "",
             "EXPLORER_DOWNLOAD_TIMEOUT": timeout_s, "TORCH_HOME": str(tmp_path / "torch_home"),
             "PYTHONUNBUFFERED": "1", "EXPLORER_OFFLINE": None, "EXPLORER_ALLOW_UNTRAINED": None,
             "EXPLORER_WEIGHTS_DIR": None}, log=log)
        bs.wait_healthy(f"{base}/_stcore/health", proc, 60)
        return proc, base

    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        with silent_server() as proxy:
            proc, base = start("3", proxy, tmp_path / "short.log")
            try:
                pg = ctx.new_page()
                pg.goto(f"{base}/style_transfer")
                alert = pg.locator('[data-testid="stAlertContentError"]').filter(has_text="no answer")
                expect(alert).to_be_visible(timeout=LOAD_MS)
                text = alert.inner_text()
                assert "untrained" in text and "EXPLORER_WEIGHTS_DIR" in text, text
                assert not pg.locator('[data-testid="stException"]').count()
            finally:
                bs.stop_server(proc)
            proc, base = start("600", proxy, tmp_path / "long.log")
            try:
                pg = ctx.new_page()
                pg.goto(f"{base}/style_transfer")
                expect(pg.get_by_text("Downloading VGG19", exact=False)).to_be_visible(timeout=LOAD_MS)
                os.killpg(proc.pid, signal.SIGTERM)
                started = time.monotonic()
                proc.wait(timeout=60)  # raises TimeoutExpired (the test fails) if SIGTERM is ignored
                print(f"server stopped {time.monotonic() - started:.1f} s after SIGTERM, mid-download")
            finally:
                bs.stop_server(proc)
    finally:
        ctx.close()


# Every visible equation (KaTeX, st.latex) that does not fit: wider than its element's column
# (the browser cuts it at the column's right edge) or than its own box (a horizontal scroll bar).
_CUT_EQUATIONS_JS = """() => [...document.querySelectorAll('[data-testid="stMain"] .katex-display')]
  .filter(e => e.offsetParent !== null)
  .filter(e => { const k = (e.querySelector('.katex-html') || e).getBoundingClientRect();
                 const col = (e.closest('[data-testid="stElementContainer"]') || e).getBoundingClientRect();
                 return k.left < col.left - 1 || k.right > col.right + 1 || e.scrollWidth > e.clientWidth; })
  .map(e => (e.querySelector('annotation') || e).textContent.trim().slice(0, 60))"""


def test_style_page_equations_fit_at_1280_px(page, server):
    visit(page, server, "style_transfer", "Style transfer")
    open_expander(page, "What do alpha, beta, the layers and TV do?")
    open_expander(page, "Colours, scales and photorealism")
    page.set_viewport_size({"width": 1280, "height": 900})
    bs.wait_drawn(page)
    assert page.locator('[data-testid="stMain"] .katex-display').filter(visible=True).count() >= 10
    cut = page.evaluate(_CUT_EQUATIONS_JS)
    assert not cut, f"equations cut off at 1280 px: {cut}"
    bs.save_png(bs.page_png(page, width=1280), ARTIFACTS / "02-style_transfer-equations-1280.png")
