"""What a page keeps in the browser session besides Streamlit's own widget state (pages reach
it through :mod:`explorer.ui`):

* :func:`result_bytes`: the bytes of a result's download, encoded once per result instead of on
  every rerun (a 20-frame 512 px GIF takes 15-30 s to encode, a 2048 px PNG about 2 s).
"""

from __future__ import annotations

from typing import Callable, Hashable

__all__ = ["result_bytes"]


def result_bytes(result: dict, name: str, make: Callable[[], bytes | str], *,
                 depends: Hashable = None) -> bytes | str:
    """The data of one of a result's downloads, made by ``make()`` once per result and kept in
    the result dict (under ``"_downloads"``), so reruns of the page (every widget change) do not
    encode it again. A new result (a new dict) makes it again.

    Args:
        result: the page's result dict (e.g. :attr:`explorer.ui.PageRun.result`).
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
