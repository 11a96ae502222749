"""What a page keeps in the browser session besides Streamlit's own widget state (pages reach
both helpers through :mod:`explorer.app.ui`):

* :func:`keep_settings`: every page's settings for the whole session. Streamlit drops a widget's
  value at the end of a script run that does not draw the widget, so without this a page's
  settings went back to their defaults when the user came back from another page, also after
  leaving it during a run. :func:`explorer.app.ui.run_app` calls it before each page runs.
* :func:`result_bytes`: the bytes of a result's download, encoded once per result instead of on
  every rerun (a 20-frame 512 px GIF takes 15-30 s to encode, a 2048 px PNG about 2 s).
"""

from __future__ import annotations

import datetime
from typing import Callable, Hashable

import streamlit as st

__all__ = ["keep_settings", "result_bytes", "KEPT_KEY", "SHARED_SUFFIXES"]

#: Session key of the kept settings: {page: {widget key: value}}.
KEPT_KEY = "_kept_settings"
_PAGE_KEY = "_kept_settings_page"  # the page the previous script run drew
#: Widget keys ending so start from a preference every page shares (the sidebar's device and
#: "Use untrained weights", :func:`explorer.app.ui.sidebar_model`): a page's own old value must not
#: override a choice made since on another page, so they are not kept.
SHARED_SUFFIXES = ("_device", "_untrained")
# Widgets whose value the Session State API may not set (buttons, uploads, chat input).
_NOT_SETTABLE = frozenset({"trigger_value", "string_trigger_value", "json_trigger_value",
                           "file_uploader_state_value", "chat_input_value"})
_PLAIN = (bool, int, float, str, type(None), datetime.date, datetime.time, datetime.timedelta)


def _plain(value) -> bool:
    """A value a settings widget holds (numbers, text, dates, lists of them), not a selection
    state or an edited table (dicts), which cannot be set back."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN)


def _widget_values() -> dict[str, object]:
    """{key: value} of the session's keyed widgets that Streamlit still knows (those the last
    complete script run drew, and those of a run stopped since) and whose value
    ``st.session_state`` may set. Streamlit has no public listing of widgets, so this reads its
    session state's key-to-widget map and widget metadata (present from 1.40 on); where they
    are missing nothing is kept."""
    from streamlit.runtime.state import get_session_state

    inner = getattr(get_session_state(), "_state", None)
    try:
        ids = dict(inner._key_id_mapper.id_key_mapping)
        metadata = inner._new_widget_state.widget_metadata
    except AttributeError:
        return {}
    values = {}
    for widget_id, key in ids.items():
        meta = metadata.get(widget_id)
        if meta is None or meta.value_type in _NOT_SETTABLE or key.endswith(SHARED_SUFFIXES):
            continue
        try:
            value = st.session_state[key]
        except KeyError:
            continue
        if _plain(value):
            values[key] = value
    return values


def keep_settings(page: str) -> None:
    """Keep every page's settings for the session. Call at the top of each script run, before
    ``page`` (the page this run draws, e.g. its url path) runs.

    A run of the same page as the run before stores the page's settings (its widgets' values
    as they are at the top of the run: the last run's, with the change that caused this one)
    under ``st.session_state[KEPT_KEY]``. Streamlit may drop them as soon as the user opens
    another page, even in the middle of a run, so they are taken on every run rather than on
    the way out. A run that comes to ``page`` from another page sets the settings kept for it
    back through ``st.session_state``, so its widgets show them instead of their defaults. A
    widget the page did not draw last time (hidden by another setting) starts from its default,
    as it would without leaving the page. Buttons, uploads and the keys ending in
    :data:`SHARED_SUFFIXES` are not kept.
    """
    state = st.session_state
    kept = state.setdefault(KEPT_KEY, {})
    if state.get(_PAGE_KEY) == page:
        kept[page] = _widget_values()
    else:
        for key, value in kept.get(page, {}).items():
            state[key] = value
    state[_PAGE_KEY] = page


def result_bytes(result: dict, name: str, make: Callable[[], bytes | str], *,
                 depends: Hashable = None) -> bytes | str:
    """The data of one of a result's downloads, made by ``make()`` once per result and kept in
    the result dict (under ``"_downloads"``), so reruns of the page (every widget change) do not
    encode it again. A new result (a new dict) makes it again.

    Args:
        result: the page's result dict (e.g. :attr:`explorer.app.ui.PageRun.result`).
        name: which download of the result (``"png"``, ``"gif"``, ...).
        make: encodes the data (e.g. ``lambda: outputs.gif_bytes(frames)``).
        depends: what else the data depends on (e.g. an opacity slider's value): made again when
            it changes; only the latest is kept.

    Returns:
        what ``make()`` returned. Raises what ``make()`` raises (nothing is kept then).
    """
    made = result.setdefault("_downloads", {})
    if name in made and made[name][0] == depends:
        return made[name][1]
    data = make()
    made[name] = (depends, data)
    return data
