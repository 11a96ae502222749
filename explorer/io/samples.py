"""The bundled sample pictures and ``sample:NAME`` references.

The samples are scikit-image's (:data:`SAMPLE_CONTENT`, :data:`SAMPLE_STYLE`); they ship inside its
wheel, so they load with no network. :func:`load_sample` returns them as :func:`explorer.io.images.load_image`
returns a file (an 8-bit ``"RGB"`` :class:`~explorer.io.images.LoadedImage` with notes, errors as one-line
:class:`~explorer.io.images.ImageError`), and :func:`parse_image_ref` reads what the command line names:
``sample:NAME`` or a path.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from . import images
from .decoding import clear_info, to_rgb
from .files import short_reason

__all__ = [
    "SAMPLE_CONTENT",
    "SAMPLE_STYLE",
    "load_sample",
    "parse_image_ref",
]

#: Bundled scikit-image samples (display name -> ``skimage.data`` function name).
#: All of these ship inside the scikit-image wheel, so they load with no network.
SAMPLE_CONTENT: dict[str, str] = {
    "astronaut": "astronaut",
    "chelsea (cat)": "chelsea",
    "coffee": "coffee",
}
SAMPLE_STYLE: dict[str, str] = {
    "hubble deep field": "hubble_deep_field",
    "immunohistochemistry": "immunohistochemistry",
    "gravel": "gravel",
    "brick": "brick",
}

_SAMPLE_PREFIX = "sample:"


def _all_samples() -> dict[str, str]:
    return {**SAMPLE_CONTENT, **SAMPLE_STYLE}


def _resolve_sample(key: str) -> tuple[str, str] | None:
    wanted = " ".join(str(key).split()).lower()
    for display, func in _all_samples().items():
        if wanted in (display.lower(), func.lower()):
            return display, func
    return None


@functools.lru_cache(maxsize=None)
def _decode_sample(func_name: str) -> tuple[Image.Image, tuple[str, ...]]:
    import skimage.data  # lazy: importing scikit-image takes a moment

    array = np.asarray(getattr(skimage.data, func_name)())
    if array.dtype != np.uint8:
        array = np.clip(np.round(array.astype(np.float64) * (255.0 if array.max() <= 1 else 1.0)), 0, 255)
        array = array.astype(np.uint8)
    notes: list[str] = []
    rgb = clear_info(to_rgb(Image.fromarray(np.ascontiguousarray(array)), notes))
    return rgb, tuple(images.unique_notes(notes))


def load_sample(key: str, *, role: str = "sample image", spelling: str = "") -> images.LoadedImage:
    """Load one of the bundled scikit-image samples as 8-bit RGB (no network).

    Args:
        key: a display name from :data:`SAMPLE_CONTENT` / :data:`SAMPLE_STYLE`
            (``"chelsea (cat)"``) or its ``skimage.data`` function name
            (``"chelsea"``); case and surrounding spaces are ignored.
        role: prefixes error messages.
        spelling: put before each name in the list of valid names of the error message
            (``"sample:"`` on the command line, where that is how a sample is named).

    Returns:
        :class:`~explorer.io.images.LoadedImage` with a fresh copy of the cached ``"RGB"`` image
        (values 0..255; grayscale samples converted to RGB, with a note), the
        display name as ``name``.

    Raises:
        ImageError: unknown key (the message lists the valid names), or the
            sample could not be loaded.
    """
    resolved = _resolve_sample(key)
    if resolved is None:
        valid = ", ".join(f"{spelling}{func}" for func in _all_samples().values())
        raise images.ImageError(f"{role}: unknown sample '{key}'; the samples are {valid}")
    display, func = resolved
    try:
        image, notes = _decode_sample(func)
    except Exception as exc:
        raise images.ImageError(f"{images.source_label(role, display)}: could not load the sample "
                                f"({short_reason(exc)})") from exc
    return images.LoadedImage(image=image.copy(), name=display, notes=list(notes))


def parse_image_ref(ref: str, *, role: str = "image") -> images.LoadedImage:
    """Load an image named on the command line.

    Args:
        ref: ``"sample:NAME"`` (NAME as accepted by :func:`load_sample`) or a path.
        role: prefixes error messages.

    Returns:
        :class:`~explorer.io.images.LoadedImage`, as from :func:`load_sample` or
        :func:`explorer.io.images.load_image`.

    Raises:
        ImageError: as :func:`load_sample` / :func:`explorer.io.images.load_image`.
    """
    text = str(ref)
    if text.lower().startswith(_SAMPLE_PREFIX):
        return load_sample(text[len(_SAMPLE_PREFIX):], role=role, spelling=_SAMPLE_PREFIX)
    return images.load_image(Path(text), role=role)
