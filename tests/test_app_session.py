"""AppTest of what a browser session keeps while the user moves around the app: each result's
downloads, which are encoded once per result rather than on every rerun. Untrained weights,
64-96 px, 2 steps."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import outputs
from tests.helpers import app_env

ROOT = Path(__file__).resolve().parents[1]
DREAM = "pages/deep_dream.py"
SALIENCY = "pages/style_saliency.py"


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(page).run()
    assert not at.exception
    return at


def tiny_dream(at: AppTest) -> None:
    at.slider(key="dream_size").set_value(96)
    at.slider(key="dream_steps").set_value(2)
    at.slider(key="dream_octaves").set_value(2)
    at.run()


def count_calls(monkeypatch, module, *names: str) -> Counter:
    """Count the calls of ``module.NAME`` (which still does its work) for each name."""
    calls: Counter = Counter()
    for name in names:
        def counted(*args, _real=getattr(module, name), _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(module, name, counted)
    return calls


# --------------------------------------------------------------------------- downloads


def test_dream_downloads_are_encoded_once_per_result(monkeypatch):
    calls = count_calls(monkeypatch, outputs, "gif_bytes", "png_bytes")
    at = open_page(DREAM)
    tiny_dream(at)
    at.button(key="dream_run").click().run()
    assert not at.exception and {"dream_download_png", "dream_download_gif"} <= {d.key for d in at.download_button}
    assert calls == {"gif_bytes": 1, "png_bytes": 1}
    for seed in (1, 2, 3):  # each change reruns the page, which shows the same result
        at.number_input(key="dream_seed").set_value(seed).run()
    at.run()
    assert {"dream_download_png", "dream_download_gif"} <= {d.key for d in at.download_button}
    assert calls == {"gif_bytes": 1, "png_bytes": 1}
    at.button(key="dream_run").click().run()  # a new result: encoded once more
    at.run()
    assert calls == {"gif_bytes": 2, "png_bytes": 2}


def test_saliency_overlay_is_encoded_again_only_for_another_opacity(monkeypatch):
    calls = count_calls(monkeypatch, outputs, "png_bytes", "npy_bytes")
    at = open_page(SALIENCY)
    at.slider(key="sal_size").set_value(64).run()
    at.button(key="sal_run").click().run()
    assert not at.exception and {"sal_download_png", "sal_download_npy"} <= {d.key for d in at.download_button}
    assert calls == {"png_bytes": 1, "npy_bytes": 1}
    at.slider(key="sal_keep").set_value(50).run()
    at.run()
    assert calls == {"png_bytes": 1, "npy_bytes": 1}
    at.slider(key="sal_opacity").set_value(0.3).run()  # the overlay PNG shows the opacity
    assert calls == {"png_bytes": 2, "npy_bytes": 1}
