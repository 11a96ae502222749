"""The Streamlit pickers the pages put their inputs together with: an image picker (bundled
sample or upload), content and style pickers, a style blend picker (1 to
:data:`explorer.style.blend.MAX_STYLES` images with weights), a sweep axis picker
(:mod:`explorer.batch.sweep_axes`), and :func:`mask_image`, which draws a weight map or mask.

Uploads are decoded by :func:`decode_upload`: one at a time, refused in one line when decoding
would need more memory than is free, and kept at :data:`UPLOAD_MAX_SIDE` px at most.

The app shell, the cached model and computations and the run widget are in :mod:`explorer.app.ui`;
this module uses only its :func:`~explorer.app.ui.one_line`.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
from typing import Mapping, Sequence

import numpy as np
import streamlit as st
import torch
from PIL import Image, ImageOps

from ..style import blend
from ..core import choices
from ..io import decoding, images
from ..io.samples import SAMPLE_CONTENT, SAMPLE_STYLE, load_sample
from ..nets import memory
from ..batch import sweep_axes
from .ui import one_line

__all__ = [
    "UPLOAD_MAX_SIDE",
    "decode_upload",
    "image_picker",
    "content_style_pickers",
    "style_blend_picker",
    "content_blend_pickers",
    "sweep_axis_picker",
    "mask_image",
]


#: Long side, in pixels, an uploaded image is kept at: the largest working size a page offers
#: (Deep Dream's). A 9400 x 9400 scan is kept as 2048 x 2048 (16 MB), not 9400 x 9400 (350 MB
#: per session, held while Streamlit keeps a closed tab's session for reconnecting).
UPLOAD_MAX_SIDE = 2048

_decode_lock = threading.Lock()


def _return_freed_memory() -> None:
    """Hand the memory a decode freed back to the system (glibc's ``malloc_trim``; elsewhere
    nothing). Each session's script runs in its own thread, and glibc keeps what a thread freed in
    that thread's arena: without this, every large upload left about 150 MB of freed memory
    held by the server after its tab was closed."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def decode_upload(data: bytes, name: str | None, role: str, max_side: int | None = None) -> images.LoadedImage:
    """Decode an uploaded image for a page (:func:`explorer.io.images.load_image`), one upload at a
    time in the whole server: the memory free now (:func:`explorer.nets.memory.available_bytes`,
    at most :data:`explorer.nets.memory.SAFETY` of it, as for a run) is read and decoding is refused
    in one line before it starts when its peak would not fit; the image is scaled down so its
    long side is at most ``max_side`` px (with a note).

    Args:
        data: the uploaded file's bytes. name: its name, for messages. role: what it is for
            (``"content image"``), starts messages.
        max_side: long side kept, pixels (default :data:`UPLOAD_MAX_SIDE`).

    Returns:
        the 8-bit RGB :class:`~explorer.io.images.LoadedImage`.

    Raises:
        ImageError: anything :func:`~explorer.io.images.load_image` refuses, or not enough free
            memory. ValueError: a malformed ``EXPLORER_MEMORY_LIMIT``.
    """
    with _decode_lock:
        free = memory.available_bytes("cpu")
        budget = None if free is None else int(memory.SAFETY * free)
        try:
            return images.load_image(data, name=name, role=role, max_side=max_side or UPLOAD_MAX_SIDE,
                                     memory_budget=budget)
        finally:
            _return_freed_memory()


def _sample_index(samples: Mapping[str, str], default: int | str) -> int:
    """The position in ``samples`` of ``default``: an index (wrapped around), or a sample's display
    name or ``skimage.data`` name (``"chelsea (cat)"`` or ``"chelsea"``). Raises ValueError for a
    name that is not among ``samples``."""
    names = list(samples)
    if isinstance(default, int):
        return default % len(names)
    for i, (display, func) in enumerate(samples.items()):
        if default in (display, func):
            return i
    raise ValueError(f"no sample named {default!r}; the samples are {', '.join(samples.values())}")


def image_picker(label: str, samples: Mapping[str, str], key: str,
                 default: int | str = 0) -> tuple[images.LoadedImage | None, str | None]:
    """Pick a bundled sample or upload an image.

    ``default`` is the sample the selectbox starts on: its position in ``samples`` or its name
    (display or ``skimage.data`` name, e.g. ``"chelsea"``).

    Returns:
        (image, ref): the decoded image (RGB; an upload through :func:`decode_upload`, at most
        :data:`UPLOAD_MAX_SIDE` px) and a reference a recipe can store (``sample:NAME`` or
        ``upload:FILENAME``), or (None, None) when nothing usable is chosen. A bad upload shows
        a one-line error and keeps the last good image of this picker. The session keeps only
        that image (not the upload's full-size pixels), under ``{key}_last_good``.
    """
    source = st.radio(label, ["Sample", "Upload"], horizontal=True, key=f"{key}_source")
    good_key = f"{key}_last_good"
    if source == "Sample":
        names = list(samples)
        choice = st.selectbox(f"{label}: sample", names, index=_sample_index(samples, default), key=f"{key}_sample",
                              label_visibility="collapsed")
        st.session_state.pop(good_key, None)  # the upload's image is not kept once a sample is chosen
        try:
            img = load_sample(samples[choice])
        except images.ImageError as exc:  # pragma: no cover - samples ship with scikit-image
            st.error(one_line(exc))
            return None, None
        return img, f"sample:{samples[choice]}"
    up = st.file_uploader(f"{label}: upload", key=f"{key}_upload", label_visibility="collapsed",
                          type=None, help=f"{decoding.accepted_formats_text()}; images larger than "
                                          f"{UPLOAD_MAX_SIDE} px are scaled down")
    if up is None:
        st.session_state.pop(good_key, None)
        st.info("Choose an image file.")
        return None, None
    data = up.getvalue()
    digest = hashlib.sha1(data).hexdigest()
    last = st.session_state.get(good_key)
    if last is not None and last[0] == digest:
        img = last[1]
    else:
        try:
            img = decode_upload(data, up.name, label.lower())
        except ValueError as exc:  # ImageError, or a malformed EXPLORER_MEMORY_LIMIT
            st.error(one_line(exc))
            if last is not None:
                st.caption(f"Still using the previous image, {last[1].name}.")
                return last[1], f"upload:{last[1].name}"
            return None, None
        st.session_state[good_key] = (digest, img)
    for note in img.notes:
        st.caption(f"Note: {note}")
    return img, f"upload:{img.name}"


def _content_picker(key: str, width: int, default: int | str = 0):
    content, ref = image_picker("Content image", SAMPLE_CONTENT, key=key, default=default)
    if content is not None:
        st.image(content.image, caption=f"Content: {content.name}", width=width)
    return content, ref


def content_style_pickers(content_key: str = "content", style_key: str = "style", width: int = 320, *,
                          content: int | str = 0, style: int | str = 0):
    """Two columns: a content picker and a style picker (:func:`image_picker` over the bundled
    samples), each showing its image ``width`` px wide and starting on the samples ``content``
    and ``style`` (position or name, as :func:`image_picker`'s ``default``).

    Returns:
        (content, content_ref, style, style_ref) as :func:`image_picker` returns them.
    """
    left, right = st.columns(2)
    with left:
        content_img, content_ref = _content_picker(content_key, width, content)
    with right:
        style_img, style_ref = image_picker("Style image", SAMPLE_STYLE, key=style_key, default=style)
        if style_img is not None:
            st.image(style_img.image, caption=f"Style: {style_img.name}", width=width)
    return content_img, content_ref, style_img, style_ref


def _add_style_slot(slots_key: str) -> None:
    slots = st.session_state[slots_key]
    st.session_state[slots_key] = [*slots, max(slots) + 1]


def _remove_style_slot(slots_key: str, slot: int) -> None:
    st.session_state[slots_key] = [s for s in st.session_state[slots_key] if s != slot]


def style_blend_picker(key: str = "style", width: int = 320, max_styles: int = blend.MAX_STYLES, *,
                       default: int | str = 0):
    """One to ``max_styles`` style pickers (:func:`image_picker` over the bundled style samples),
    with "Add style image" and "Remove" buttons and, when there are two or more, a weight slider
    each (0 to 1) and the normalized weights (they are divided by their sum). The first picker
    starts on the sample ``default`` (position or name), each added one on the next sample.

    One style image is the default, and then the picker looks like a single image picker (its
    widget keys are those of ``image_picker(key=key)``). Further images use the keys
    ``{key}_2``, ``{key}_3``, ... (by the order they were added, not their position), weight
    sliders ``{key}_weight_N``, buttons ``{key}_add`` and ``{key}_remove_N``.

    Returns:
        list of (image, ref, weight) (weight 1.0 for a single image), or ``None`` when a picker
        has no usable image yet or the weights break :data:`explorer.style.blend.WEIGHTS_RULE` (all 0:
        one error line, :func:`explorer.style.blend.check_weights`).
    """
    state = st.session_state
    slots_key = f"{key}_slots"
    slots = state.setdefault(slots_key, [0])
    multi = len(slots) > 1
    first = _sample_index(SAMPLE_STYLE, default)
    picked = []
    for n, slot in enumerate(slots):
        pkey = key if slot == 0 else f"{key}_{slot + 1}"
        if multi:
            st.markdown(f"**Style image {n + 1}**")
        img, ref = image_picker("Style image", SAMPLE_STYLE, key=pkey, default=first + slot)
        weight = 1.0
        if multi:
            weight = st.slider("Weight", 0.0, 1.0, 1.0, 0.05, key=f"{key}_weight_{slot}",
                               help="Weights are divided by their sum: two images at 1.0 blend 50/50")
        if img is not None:
            st.image(img.image, caption=f"Style: {img.name}", width=width // 2 if multi else width)
        if multi:
            st.button("Remove", key=f"{key}_remove_{slot}", on_click=_remove_style_slot, args=(slots_key, slot),
                      help="Remove this style image from the blend")
        picked.append((img, ref, float(weight)))
    if len(slots) < max_styles:
        st.button("Add style image", key=f"{key}_add", on_click=_add_style_slot, args=(slots_key,),
                  help=f"Blend up to {max_styles} style images: the style target is the weighted mean of their "
                       "Gram matrices")
    if multi:
        try:  # the one rule of blend weights (finite, >= 0, a finite sum > 0), as the CLI says it
            blend.check_weights([w for _, _, w in picked])
        except ValueError as exc:
            st.error(one_line(exc))
            return None
        total = sum(w for _, _, w in picked)
        st.caption("Blend (normalized weights): " + ", ".join(
            f"{img.name if img is not None else '?'} {w / total:.0%}" for img, _, w in picked))
    if any(img is None for img, _, _ in picked):
        return None
    return picked


def content_blend_pickers(content_key: str = "content", style_key: str = "style", width: int = 320, *,
                          content: int | str = 0, style: int | str = 0):
    """Two columns: a content picker and a :func:`style_blend_picker` (1 to 6 style images with
    weights), starting on the samples ``content`` and ``style`` (position or name). With one
    style image it looks and behaves like :func:`content_style_pickers` (same widget keys).

    Returns:
        (content, content_ref, styles): content and ref as :func:`image_picker` returns them;
        styles as :func:`style_blend_picker` returns them (list of (image, ref, weight) or None).
    """
    left, right = st.columns(2)
    with left:
        content_img, content_ref = _content_picker(content_key, width, content)
    with right:
        styles = style_blend_picker(style_key, width=width, default=style)
    return content_img, content_ref, styles


#: How the pages name each starting image (``StyleSettings.init``).
INIT_TITLES = {"histogram": "content in the style's colours", "content": "content", "noise": "noise",
               "style": "style"}
_AXIS_DEFAULTS = {"steps": "10, 20, 40", "seed": "0, 1, 2"}
_AXIS_CHOICES = {
    "init": (list(choices.INITS), ["histogram", "content", "noise"]),
    "optimizer": (["adam", "lbfgs"], ["adam", "lbfgs"]),
    "style_layers": (list(sweep_axes.STYLE_LAYER_SETS), ["shallow", "middle", "deep"]),
}
_ALPHA_BETA_STOPS = [float(f"1e{k}") for k in range(-14, 4)]


def sweep_axis_picker(label: str, key: str, *, default: str = "alpha_beta", optional: bool = False,
                      exclude: Sequence[str] = ()) -> tuple[sweep_axes.SweepAxis | None, bool]:
    """Choose a sweep parameter and its values: a selectbox over
    :data:`explorer.batch.sweep_axes.AXIS_NAMES` (without ``exclude``; with a "none" entry when
    ``optional``), then the values: a log-scale range and a count for the content/style ratio
    alpha/beta (:func:`explorer.batch.sweep_axes.log_alpha_beta`; widget keys ``{key}_alpha_beta_range``
    and ``{key}_alpha_beta_count``), a comma-separated list for steps and seeds, a multiselect
    for initialization, layer sets and optimizer.

    Returns:
        (axis, ok): the axis, or None when "none" is chosen (ok True) or the values are bad
        (ok False; a one-line error is shown).
    """
    names = [n for n in sweep_axes.AXIS_NAMES if n not in exclude]
    options = (["none"] if optional else []) + names
    name = st.selectbox(label, options, index=options.index(default) if default in options else 0,
                        key=f"{key}_name",
                        format_func=lambda n: "nothing (one row)" if n == "none" else sweep_axes.AXIS_TITLES[n])
    if name == "none":
        return None, True
    try:
        if name == "alpha_beta":
            lo, hi = st.select_slider("Ratio α/β from … to (log scale)", _ALPHA_BETA_STOPS, value=(1e-3, 1.0),
                                      key=f"{key}_alpha_beta_range", format_func=lambda v: f"{v:.0e}")
            n = st.slider("How many ratios", 1, sweep_axes.MAX_AXIS_VALUES, 3, key=f"{key}_alpha_beta_count")
            axis = sweep_axes.SweepAxis("alpha_beta", sweep_axes.log_alpha_beta(lo, hi, n))
        elif name in _AXIS_DEFAULTS:
            text = st.text_input("Steps to show (one run, photographed at each)" if name == "steps" else "Seeds",
                                 _AXIS_DEFAULTS[name], key=f"{key}_{name}_values",
                                 help="Numbers separated by commas")
            axis = sweep_axes.parse_axis(name, text)
        else:
            offered, default_values = _AXIS_CHOICES[name]
            fmt = (lambda v: sweep_axes.SweepAxis(name, (v,)).labels[0]) if name != "init" else INIT_TITLES.get
            picked = st.multiselect("Values", offered, default=default_values, key=f"{key}_{name}_values",
                                    format_func=fmt)
            axis = sweep_axes.SweepAxis(name, tuple(picked))
    except ValueError as exc:
        st.error(one_line(exc))
        return None, False
    st.caption(f"{len(axis.values)} value(s): " + ", ".join(axis.labels))
    return axis, True


def mask_image(weight, cell: int = 160, border: int = 3):
    """A weight map or mask ((h, w) in [0, 1], NumPy or tensor) as an RGB PIL image (white = 1,
    black = 0), blown up with square pixels so its long side is about ``cell`` px (a 4x4 layer
    mask stays readable), framed by a ``border`` px mid-gray line so that kept (white) regions
    at the edge stay visible on a white page."""
    w = np.asarray(weight.detach().cpu() if isinstance(weight, torch.Tensor) else weight, dtype=np.float32)
    im = Image.fromarray((np.clip(w, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "L")
    k = max(1, cell // max(im.size))
    if k > 1:
        im = im.resize((im.width * k, im.height * k), Image.Resampling.NEAREST)
    return ImageOps.expand(im.convert("RGB"), border=border, fill=(128, 128, 128)) if border else im.convert("RGB")
