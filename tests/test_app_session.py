"""AppTest of what a browser session keeps while the user moves around the app: every page's
settings after a visit to another page (also a visit that stopped a run half way, which then
shows its partial result), the sidebar's shared choices, and each result's downloads, which are
encoded once per result rather than on every rerun. Untrained weights, 64-96 px, 2 steps."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from explorer.dream import deepdream as dream
from explorer.io import outputs
from tests.helpers import app_env, open_app_page
from tests.test_app import errors, untrained_box

ROOT = Path(__file__).resolve().parents[1]
DREAM = "pages/deep_dream.py"
STYLE = "pages/style_transfer.py"
SWEEP = "pages/sweep.py"
SALIENCY = "pages/style_saliency.py"


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    app_env(monkeypatch, tmp_path)


def open_page(page: str) -> AppTest:
    return open_app_page(page)


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


# --------------------------------------------------------------------------- settings across pages


def test_settings_of_two_pages_are_kept_after_visiting_another_page():
    at = open_page(DREAM)
    at.radio(key="dream_start").set_value("noise")
    at.slider(key="dream_octaves").set_value(2)
    at.selectbox(key="dream_objective").set_value("mean")
    at.text_input(key="dream_channels").set_value("3")
    at.checkbox(key="dream_zoom_mode").check().run()
    at.slider(key="dream_zoom_frames").set_value(5)  # enabled by the box above
    at.multiselect(key="dream_layers_googlenet").select("inception3a").run()
    at.number_input(key="dream_w_inception3a").set_value(2.5).run()  # shown for two layers
    assert not at.exception and not errors(at)

    at.switch_page(STYLE).run()
    at.slider(key="size").set_value(128)
    at.number_input(key="steps").set_value(7)
    at.selectbox(key="optimizer").set_value("adam")
    at.number_input(key="seed").set_value(42)
    at.selectbox(key="style_sample").set_value(at.selectbox(key="style_sample").options[2]).run()
    assert not at.exception and not errors(at)
    style_sample = at.selectbox(key="style_sample").value

    at.switch_page(SWEEP).run()
    assert not at.exception

    at.switch_page(DREAM).run()
    assert not at.exception and not errors(at)
    assert at.radio(key="dream_start").value == "noise"
    assert at.slider(key="dream_octaves").value == 2
    assert at.selectbox(key="dream_objective").value == "mean"
    assert at.text_input(key="dream_channels").value == "3"
    assert at.checkbox(key="dream_zoom_mode").value is True
    assert at.slider(key="dream_zoom_frames").value == 5
    assert at.multiselect(key="dream_layers_googlenet").value == ["inception4c", "inception3a"]
    assert at.number_input(key="dream_w_inception3a").value == 2.5

    at.switch_page(STYLE).run()
    assert not at.exception and not errors(at)
    assert at.slider(key="size").value == 128
    assert at.number_input(key="steps").value == 7
    assert at.selectbox(key="optimizer").value == "adam"
    assert at.number_input(key="seed").value == 42
    assert at.selectbox(key="style_sample").value == style_sample

    # the sidebar's "Use untrained weights" is one choice for every page: a page does not get
    # its own old tick back when the user changed it elsewhere in the meantime
    untrained_box(at).uncheck().run()
    at.switch_page(DREAM).run()
    assert untrained_box(at).value is False
    assert at.slider(key="dream_octaves").value == 2
    untrained_box(at).check().run()
    assert not at.exception and not errors(at)


class _LeaveDuringRun(dream.DreamRun):
    """A dream whose user opens the style transfer page as soon as the first preview shows:
    ``st.switch_page`` stops the page's script at once and reruns the app on the other page, as a
    click on another page in the sidebar does."""

    def __iter__(self):
        for ev in super().__iter__():
            yield ev
            if ev.preview is not None:
                st.switch_page(STYLE)


def test_leaving_a_page_during_a_run_keeps_its_settings_and_partial_result(monkeypatch):
    monkeypatch.setattr(dream, "DreamRun", _LeaveDuringRun)
    at = open_page(DREAM)
    tiny_dream(at)
    at.slider(key="dream_jitter").set_value(5)
    at.number_input(key="dream_seed").set_value(3).run()
    at.button(key="dream_run").click().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Style transfer"]  # the run was left half way

    at.switch_page(DREAM).run()
    assert not at.exception and not errors(at)
    assert at.slider(key="dream_size").value == 96
    assert at.slider(key="dream_octaves").value == 2
    assert at.slider(key="dream_jitter").value == 5
    assert at.number_input(key="dream_seed").value == 3
    assert "Result" in [s.value for s in at.subheader]
    assert any(w.value.startswith("Partial result: stopped at step") for w in at.warning), [w.value for w in at.warning]


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
