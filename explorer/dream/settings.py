"""The settings of a Deep Dream (what a recipe JSON holds): :class:`DreamSettings` and the
``LAYER:WEIGHT`` lists of :func:`parse_layer_weights`. The dream itself is in :mod:`explorer.dream.deepdream`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from ..core import choices
from ..core.settings import RecipeSettings, check_choice, check_float, check_name, setting
from ..nets.registry import MODELS

__all__ = ["DreamSettings", "parse_layer_weights", "DEFAULT_LAYERS"]

#: Classic starting layer per network, read from the registry (``ModelSpec.dream_layer``).
DEFAULT_LAYERS: dict[str, str] = {name: spec.dream_layer for name, spec in MODELS.items()}


def parse_layer_weights(spec: str | Sequence) -> tuple[tuple[str, float], ...]:
    """``"inception4c:1,inception4d:0.5"`` -> (("inception4c", 1.0), ("inception4d", 0.5)); a
    list of ``[layer, weight]`` pairs (a recipe's form) is accepted too.

    Raises:
        ValueError: an empty list, a layer named twice, or a weight that is not a finite number
            (``nan`` or ``1e400`` would turn the dream into a black picture); one line.
    """
    out = []
    if isinstance(spec, str):
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            layer, _, w = part.partition(":")
            try:
                out.append((layer.strip(), float(w) if w.strip() else 1.0))
            except ValueError:
                raise ValueError(f"bad layer weight in {part!r}; write LAYER or LAYER:WEIGHT") from None
    elif isinstance(spec, (list, tuple)):
        for item in spec:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], (int, float)) and not isinstance(item[1], bool)):
                raise ValueError(f"layers must be LAYER:WEIGHT text or [layer, weight] pairs; got {str(item)[:40]}")
            out.append((item[0].strip(), float(item[1])))
    else:
        raise ValueError(f"layers must be LAYER:WEIGHT text or [layer, weight] pairs; got {str(spec)[:40]}")
    if not out:
        raise ValueError("name at least one layer")
    seen = set()
    for layer, w in out:
        check_name("layer", layer)
        check_float(f"the weight of {layer}", w, -1e6, 1e6)
        if layer in seen:
            raise ValueError(f"layer {layer} is named twice")
        seen.add(layer)
    return tuple(out)


# ----------------------------------------------------------------------------- settings

@dataclass
class DreamSettings(RecipeSettings):
    """Every option of a dream (what a recipe JSON holds).

    Attributes:
        model: a registered network, ``googlenet`` by default.
        layers: (layer, weight) pairs, or ``"inception4c:1,inception4d:0.5"``; their objectives
            are summed with the weights. ``None``: the network's classic layer
            (``ModelSpec.dream_layer``: inception4c on GoogLeNet).
        objective: ``"l2"`` (mean squared activation), ``"mean"``, ``"guide"`` (needs a guide
            image) or ``"class"`` (needs ``class_name``).
        channels: channel indices; when given, the objective is the mean of these channels of
            each layer instead of the whole layer.
        center: channel objective at the centre position only.
        class_name: ImageNet class (name or index) for ``objective="class"``.
        octaves: pyramid levels; reduced automatically (with a note) when the smallest would be
            too small for the network.
        octave_scale: size ratio between octaves (> 1).
        steps: gradient steps per octave.
        step_size: eta, the mean absolute pixel change per step (pixels in [0, 1]; 0.01 is about
            2.5 of 255 levels).
        jitter: largest random roll per step, in pixels.
        smooth: sigma in pixels of a Gaussian smoothing of the gradient (cascade of sigma/2,
            sigma, 2 sigma, averaged); 0 = off.
        normalize: divide the gradient by its mean absolute value (``"mean"``) or std.
        tile: tile size in pixels for the gradient of large images.
        size: working size (long side in pixels) or ``None`` to keep the input size.
        seed: seeds jitter, tile shifts and noise starts.
        precision, channels_last: as for style transfer.
        preview_every: emit a preview every this many steps (and at every octave's end).
    """

    model: str = setting("googlenet", choices=DEFAULT_LAYERS)
    layers: tuple | str | None = None
    objective: str = setting("l2", choices=choices.DREAM_OBJECTIVES)
    channels: tuple[int, ...] = setting((), numbers=int)
    center: bool = False
    class_name: str | None = None
    octaves: int = setting(4, lo=1, hi=12)
    octave_scale: float = setting(1.4, lo=1.01, hi=4.0)
    steps: int = setting(10, lo=0, hi=10_000)
    step_size: float = setting(0.01, lo=0.0, hi=1.0)
    jitter: int = setting(32, lo=0, hi=4096)
    smooth: float = setting(0.0, lo=0.0, hi=50.0)
    normalize: str = setting("mean", choices=choices.DREAM_NORMALIZE)
    tile: int = setting(512, lo=64, hi=8192)
    size: int | None = setting(None, lo=32, hi=8192, optional=True)
    seed: int = setting(0, lo=0, hi=2**63 - 1)
    precision: str = setting("auto", choices=choices.PRECISIONS)
    channels_last: str = setting("auto", choices=choices.CHANNELS_LAST)
    preview_every: int = setting(5, lo=1, hi=100_000)

    def canonicalize(self) -> None:
        """Layers to (name, weight) pairs (``None``: the network's classic layer; ``""`` is an
        error, not the default); channels are the base class's."""
        check_choice("model", self.model, DEFAULT_LAYERS)
        if self.layers is None:
            self.layers = ((MODELS[self.model].dream_layer, 1.0),)
        self.layers = parse_layer_weights(self.layers)

    def validate(self) -> "DreamSettings":
        """Check types and ranges (changes nothing).

        Raises:
            ValueError: one line naming the option and what is allowed.
        """
        super().validate()
        parse_layer_weights(self.layers)
        if any(c < 0 for c in self.channels):
            raise ValueError("channel indices must be >= 0")
        if self.objective == "class" and not self.class_name:
            raise ValueError("the class objective needs a class name (--class NAME)")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [[l, w] for l, w in self.layers]
        d["channels"] = list(self.channels)
        return d
