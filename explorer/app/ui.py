"""The few Streamlit helpers every page shares: the app shell (entry point, page guard, the
weights/device sidebar), the cached model, style targets, activations and heatmaps. Pages stay
thin: widgets in, explorer calls, results out. How a page runs a computation (Run/Stop buttons,
progress, :class:`~explorer.app.runs.PageRun`, downloads) is in :mod:`explorer.app.runs`, whose
public names this module re-exports (pages call them through ``ui``); the input pickers are in
:mod:`explorer.app.pickers`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Sequence

import streamlit as st

from ..core import installation

# Every page and app.py import this module first: a torch and torchvision that do not import
# together (e.g. "operator torchvision::nms does not exist") show one error box, naming both
# versions and the fix, instead of a traceback (the check runs before the imports below).
if (_torch_problem := installation.torch_problem()) is not None:
    st.error(_torch_problem)
    st.stop()
    raise ImportError(_torch_problem)  # outside a Streamlit script run, st.stop() returns

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..activations import views
from ..nets import models, normalize, registry
from ..nets.layers import layer_activations
from ..core import devices
from .page_state import keep_settings, result_bytes  # noqa: E402
from .runs import (Download, PageRun, downloads, heatmap_cache, heavy_runs, one_line, png_download,  # noqa: E402
                   progress_text, queue_message, recipe_download, result_heading, run_buttons, run_events)
from ..nets.weights import WeightsError, WeightsMissingError, found_text, untrained_allowed, weights_status  # noqa: E402

__all__ = [
    "run_app",
    "page_guard",
    "cached_model",
    "cached_style_targets",
    "cached_activations",
    "cached_walk",
    "cached_predictions",
    "cached_heatmap",
    "heatmap_cache",
    "sidebar_model",
    "untrained_switch",
    "weights_notice",
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
    "one_line",
    "device_summary",
    "result_bytes",
]

UNTRAINED_KEY = "use_untrained_weights"

_entry = threading.local()


def run_app(pages) -> None:
    """Run ``st.navigation(pages)`` from app.py, marking this script run as started by the entry
    point (see :func:`page_guard`); every page's settings are kept for the session
    (:func:`explorer.app.page_state.keep_settings`)."""
    _entry.active = True
    try:
        page = st.navigation(pages)
        keep_settings(page.url_path)
        page.run()
    finally:
        _entry.active = False


def page_guard() -> None:
    """First line of every page. Streamlit treats a ``pages/`` folder next to app.py as a
    legacy multipage app until app.py's ``st.navigation`` has run once in the server process;
    so the very first request of a fresh server for a page URL runs the page file alone,
    without app.py's navigation and page config. In that case run app.py instead (which
    runs this page through its navigation) and stop."""
    if getattr(_entry, "active", False):
        return
    import runpy

    runpy.run_path(str(installation.app_script()), run_name="__main__")
    st.stop()


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_model(name: str, weights: str, device: str) -> models.FeatureNet:
    """One :class:`~explorer.nets.models.FeatureNet` per (name, weights, device), shared by every
    browser session. Feature extraction registers no hooks, so sharing is safe. Failures
    (missing weights) are not cached, so the next rerun tries again. ``weights="normalized"``: the
    VGG normalized as in Gatys et al. (:func:`explorer.nets.normalize.load_normalized`)."""
    if weights == "normalized":
        return normalize.load_normalized(name, device=device)
    return models.load_model(name, weights=weights, device=device)


def _tensor_key(model: models.FeatureNet, image: torch.Tensor) -> tuple:
    """What identifies a forward pass: the image's content and shape, and the model (name,
    weights kind and source, device)."""
    t = image.detach().to("cpu").contiguous()
    digest = hashlib.sha1(t.numpy().tobytes()).hexdigest() + str(tuple(t.shape))
    return (digest, model.name, model.weights.kind, model.weights.source, str(model.device))


@st.cache_data(max_entries=32, show_spinner=False)
def _style_targets(_model: models.FeatureNet, _style, key: tuple, layers: tuple, pooling: str) -> dict:
    from ..style.gatys import style_targets

    return {k: v.cpu() for k, v in style_targets(_model, _style, layers, pooling=pooling).items()}


def cached_style_targets(model: models.FeatureNet, style, settings, layers: Sequence[str] | None = None) -> dict:
    """Style Gram targets (float32) of a style image already at the run's working size
    ((1, 3, H, W) in [0, 1], as :func:`explorer.style.gatys.prepare_images` returns it), or of a blend:
    a list of (image, weight) pairs (:func:`explorer.style.gatys.style_targets` normalizes the weights
    to sum to 1). Cached per image content and weight of every image, model, layers and pooling
    (``st.cache_data``), so re-running with other alpha/beta or step counts does not recompute
    them. ``layers`` defaults to ``settings.style_layers``.

    Returns:
        dict layer -> (N_l, N_l) float32 CPU tensor.

    Raises:
        ValueError: no image, or weights that do not sum to a positive number.
    """
    layers = tuple(settings.style_layers if layers is None else layers)
    if isinstance(style, torch.Tensor):
        return _style_targets(model, style, _tensor_key(model, style), layers, settings.pooling)
    pairs = [(t, float(w)) for t, w in style]
    total = sum(w for _, w in pairs)
    if not pairs or not total > 0:
        raise ValueError("the style weights must sum to a positive number")
    key = tuple((_tensor_key(model, t), w / total) for t, w in pairs)
    return _style_targets(model, pairs, key, layers, settings.pooling)


# st.cache_resource, not st.cache_data: the arrays are large (64 MB for relu1_1 at 512 px) and
# must not be pickled on every read. They are shared by all sessions: read them, never modify them.
@st.cache_resource(show_spinner=False, max_entries=16)
def _activations(_model: models.FeatureNet, _image: torch.Tensor, key: tuple, layer: str) -> np.ndarray:
    return layer_activations(_model, _image, layer)


@st.cache_resource(show_spinner=False, max_entries=16)
def _walk(_model: models.FeatureNet, _image: torch.Tensor, key: tuple) -> list:
    return views.walk_network(_model, _image)


@st.cache_resource(show_spinner=False, max_entries=16)
def _predictions(_model: models.FeatureNet, _image: torch.Tensor, key: tuple) -> list | None:
    return views.top_predictions(_model, _image)


def cached_activations(model: models.FeatureNet, image_tensor: torch.Tensor, layer: str) -> np.ndarray:
    """``layer_activations(model, image_tensor, layer)``, computed once per (image
    content, model, weights, device, layer) and reused by every view and rerun. The array is
    shared: do not modify it. Errors (unknown layer, image too small) are raised, not cached."""
    return _activations(model, image_tensor, _tensor_key(model, image_tensor), layer)


def cached_walk(model: models.FeatureNet, image_tensor: torch.Tensor) -> list:
    """``views.walk_network(model, image_tensor)``, cached like :func:`cached_activations`."""
    return _walk(model, image_tensor, _tensor_key(model, image_tensor))


def cached_predictions(model: models.FeatureNet, image_tensor: torch.Tensor) -> list | None:
    """``views.top_predictions(model, image_tensor)`` (None for untrained weights), cached
    like :func:`cached_activations` (a full forward pass is too slow to repeat on every rerun)."""
    return _predictions(model, image_tensor, _tensor_key(model, image_tensor))


def device_summary() -> str:
    """One line on the compute device, e.g. ``CPU (2 threads), bf16 mixed precision``."""
    dev = devices.resolve_device("auto")
    prec = devices.precision_name(devices.resolve_precision("auto", dev))
    if dev.type == "cuda":
        what = f"GPU {torch.cuda.get_device_name(0)}"
    elif dev.type == "mps":
        what = "Apple GPU (MPS)"
    else:
        what = f"CPU ({torch.get_num_threads()} threads)"
    return f"{what}, {prec} {'mixed precision' if prec != 'fp32' else 'precision'}"


def size_text(width: int, height: int, unit: str = "") -> str:
    """``"256×223"`` (or ``"256×223 px"`` with ``unit="px"``) that a browser never wraps inside: word
    joiners (U+2060) on both sides of the ×, a no-break space (U+00A0) before the unit. For
    captions under narrow images, where a line may still break at the spaces around it."""
    return f"{width}\u2060×\u2060{height}" + (f"\u00a0{unit}" if unit else "")


def weights_row(row: dict) -> dict:
    """One row of the home page's weights table for a row of :func:`weights_status`.

    The name and size are those of the file found on this machine (which may be another file
    than torchvision's, e.g. the Caffe VGG19 conv layers); for a network without one, those of
    torchvision's download. Size in MiB (2**20 bytes), one decimal.
    """
    found = row["found"]
    size = os.path.getsize(found) / 2**20 if found and os.path.isfile(found) else row["size_mb"]
    return {"network": registry.MODELS[row["model"]].title,
            "weights file": os.path.basename(found) if found else row["file"],
            "size (MiB)": round(size, 1),
            "found at": found_text(row, "not downloaded yet")}


def _default_untrained(name: str) -> bool:
    return untrained_allowed() and not any(r["found"] for r in weights_status([name]))


def untrained_switch(key: str, name: str = "vgg19") -> bool:
    """The sidebar's “Use untrained weights” box (Home's and every page's: one choice that
    follows the user from page to page). Ticked by default only when ``EXPLORER_ALLOW_UNTRAINED``
    is set and network ``name`` has no weights on this machine. Returns whether it is ticked."""
    state = st.session_state
    pref = state.setdefault(UNTRAINED_KEY, _default_untrained(name))
    untrained = st.sidebar.checkbox(
        "Use untrained weights", value=pref, key=f"{key}_untrained",
        help="Random weights (torch.manual_seed(0)) to try the app without downloading anything. "
             "Results are labelled: they show what an untrained network computes.")
    state[UNTRAINED_KEY] = untrained
    return untrained


def sidebar_model(choices: Sequence[str], default: str | None = None,
                  key: str = "model") -> models.FeatureNet | None:
    """Sidebar controls for network, device and weights; returns the cached model, or ``None``
    after showing a one-line error (e.g. no pretrained weights and untrained not chosen, or a
    weights file that is there but unreadable or damaged: never replaced by untrained weights).

    The network picker (widget key ``{key}_name``, which holds the chosen name even when the
    model cannot load) starts on ``default`` (``choices[0]`` when None), or, when that network
    has no weights on this machine and another of ``choices`` has, on that one, saying which
    and why with the download command (:func:`explorer.nets.models.network_with_weights`)."""
    sb = st.sidebar
    state = st.session_state
    default = default or choices[0]
    if f"{key}_name" not in state and f"{key}_start" not in state:  # the page's first run in this session
        state[f"{key}_start"] = (default, None) if state.get(UNTRAINED_KEY) else \
            models.network_with_weights(default, choices)
    start, note = state.get(f"{key}_start", (default, None))
    name = sb.selectbox("Network", list(choices), index=list(choices).index(start), key=f"{key}_name",
                        format_func=lambda n: registry.MODELS[n].title)
    if note and name == start:
        st.info(note[0].upper() + note[1:] + ".")
    options = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else []) + \
        (["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])
    # Choices that should follow the user from page to page live in plain session-state keys
    # (widget state is per page); each page's widget starts from them and writes them back.
    dev_pref = state.setdefault("pref_device", "auto")
    device = sb.selectbox("Device", options, index=options.index(dev_pref) if dev_pref in options else 0,
                          key=f"{key}_device", help="auto picks a CUDA GPU, then Apple MPS, then the CPU")
    state["pref_device"] = device
    untrained = untrained_switch(key, name)
    spec = registry.MODELS[name]
    normalized = spec.family == "vgg" and not untrained and sb.checkbox(
        "Normalized as in Gatys et al.", value=state.get("pref_normalized", False), key=f"{key}_normalized",
        help="The weights rescaled so that each channel's mean activation over the bundled samples is 1 (Gatys, "
             "Ecker & Bethge 2016, sec. 2): the same features up to one factor per channel, and the network the "
             "paper's alpha/beta (1e-3 with the Paper loss scale) is meant for. Derived once from the weights "
             "file found, then read from the cache.")
    if spec.family == "vgg" and not untrained:
        state["pref_normalized"] = normalized
    weights = "untrained" if untrained else "normalized" if normalized else "imagenet"
    try:
        label = f"Loading {spec.title}" if untrained or weights_status([name])[0]["found"] else \
            f"Downloading {spec.title} ImageNet weights ({spec.file_name}, {spec.file_size_mb:.0f} MB; first run only)"
        if normalized:
            label = (f"Loading {normalize.title(name)} (the first time: deriving it from the weights file, 16 "
                     f"layers measured on the 7 samples at {normalize.DEFAULT_SIZE} px)")
        with st.spinner(label):
            model = cached_model(name, weights, device)
    except WeightsError as exc:
        st.error(" ".join(exc.app_message.split()))
        if exc.app_detail:
            st.caption(exc.app_detail)
        have = [registry.MODELS[r["model"]].title for r in weights_status([n for n in choices if n != name])
                if r["found"] and not r["problem"]]
        if isinstance(exc, WeightsMissingError) and have:
            st.caption(f"Networks with weights on this machine: {', '.join(have)} (pick one under Network "
                       "in the sidebar).")
        elif not untrained and not isinstance(exc, WeightsMissingError):  # a file found but unusable
            st.caption("Replace or remove that file (`python -m explorer weights status` lists what is found "
                       "where), or tick “Use untrained weights” to go on with untrained weights.")
        return None
    except ValueError as exc:
        st.error(one_line(exc))
        return None
    sb.caption(f"Device: {model.device} · {device_summary()}")
    sb.caption(f"Weights: {model.weights.label}")
    weights_notice(model)
    return model


def weights_notice(model: models.FeatureNet) -> None:
    """A visible warning on the page when the model has untrained weights."""
    if model.weights.untrained:
        st.warning(f"**{model.weights.label}**: results show what an untrained network computes, "
                   "not what a trained one sees. Untick “Use untrained weights” in the sidebar once the "
                   "ImageNet weights are available.", icon="⚠️")


def cached_heatmap(model: models.FeatureNet, image_tensor: torch.Tensor, settings, *, page_run: PageRun):
    """The :class:`~explorer.saliency.attribution.Heatmap` of ``image_tensor`` ((1, 3, H, W) in [0, 1])
    for ``settings`` (:class:`~explorer.saliency.attribution.AttributionSettings`).

    Computed once per (image content, model, weights, device, settings) and shared by every
    page and session (in :func:`~explorer.app.runs.heatmap_cache`): a heatmap computed on the Style saliency page is reused by the Full vs
    guided page. When it is not cached yet, the :class:`~explorer.saliency.attribution.AttributionRun`
    is rendered with ``page_run.events`` (:meth:`PageRun.events`: progress bar; it takes its
    turn in :func:`heavy_runs`).
    The heatmap is shared: do not modify it.

    Returns:
        the heatmap, or None when the run ended without one.

    Raises:
        ValueError (UnknownLayerError, bad objective or settings) before any work starts.
    """
    import json

    from ..saliency import attribution

    key = _tensor_key(model, image_tensor) + (json.dumps(settings.to_dict(), sort_keys=True),)
    cache = heatmap_cache()
    heatmap = cache.get(key)
    if heatmap is not None:
        return heatmap
    run = attribution.AttributionRun(model, image_tensor, settings)
    page_run.events(run)
    try:
        heatmap = run.result()
    except RuntimeError:
        return None
    cache.put(key, heatmap)
    return heatmap
