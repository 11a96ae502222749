"""What each layer keeps: content and style reconstructions from white noise, the whole figure in
one run (Gatys, Ecker & Bethge, CVPR 2016, Fig. 1; texture synthesis: Gatys, Ecker & Bethge,
NeurIPS 2015; inverting one layer: Mahendran & Vedaldi, CVPR 2015).

* A **content reconstruction** from layer l starts from white noise and minimizes only the
  content loss of l (the relative L_c of :mod:`explorer.style.gatys`): the picture whose
  features at l are the photo's. Early layers give the photo back almost exactly; deep ones
  keep the arrangement of objects and lose the exact pixels.
* A **style reconstruction** from a set of layers starts from white noise and minimizes only the
  style loss (Gram matrices) of those layers: texture synthesis. Growing sets (relu1_1;
  + relu2_1; ...) give textures from colours and fine grain to the painting's larger strokes,
  with no trace of its arrangement.

Every picture is one :class:`~explorer.style.transfer.StyleTransfer` (L-BFGS, the clamp-free
parameterization, ``init="noise"``) with ``style_weight=0`` or ``content_weight=0``: the loop is
that one. A style reconstruction has the style image's size (its "content" image, weighted 0,
is the style image). Layer names: Caffe's ``conv1_2`` is rectified in place, so the papers'
conv layers are this project's ``relu*`` layers (see :mod:`explorer.style.transfer`).

The defaults come from the registry (``ModelSpec.reconstruction_content_layers`` and
``reconstruction_style_sets``). :mod:`explorer.style.reconstruct_cache` keeps the default
figure on disk.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from ..core import choices
from ..core.devices import precision_name, resolve_precision
from ..core.progress import ProgressEvent
from ..core.recipes import run_info
from ..core.runs import Run
from ..core.settings import RecipeSettings, check_name, setting
from ..io.grids import image_grid, wrap_label
from ..io.images import resize_long_side, to_pil, to_tensor
from ..io.outputs import save_png_atomic
from ..nets.models import FeatureNet, list_layers
from ..nets.registry import MODELS
from ..nets.weights import WeightsInfo
from .settings import StyleSettings
from .transfer import StyleTransfer, check_style_memory

__all__ = ["ReconstructSettings", "Picture", "ReconstructResult", "Reconstruction", "DEFAULT_STEPS",
           "DEFAULT_CONTENT", "DEFAULT_STYLE", "parse_style_sets", "format_style_sets", "save_pictures"]

#: L-BFGS steps per picture by default (one step = one forward + backward pass, plus what the
#: line search adds). Measured with bench/bench_reconstruct.py on the real VGG19 (fp32, 128 px,
#: the default pair, the faint-noise start; a 2-core AVX2 CPU, load average about 1-5): the 10
#: pictures take 93.5 s of wall time (1.3-33 s each: the deep layers cost most), within the 2
#: minutes a class can wait. By step 40 every picture has lost 94 % (content relu5_2) to 99.95 %
#: (style relu1_1) of its starting loss and the last 10 steps change it by a third at most: more
#: steps sharpen the deep pictures a little but do not change what each layer keeps.
DEFAULT_STEPS = 40
#: The default pair of the figure (bundled samples: no files needed).
DEFAULT_CONTENT, DEFAULT_STYLE = "sample:astronaut", "sample:immunohistochemistry"


def _vgg_models() -> list[str]:
    return [n for n, spec in MODELS.items() if spec.supports_style]


def parse_style_sets(value) -> tuple[tuple[str, ...], ...]:
    """Style sets as a tuple of layer tuples, from ``"relu1_1;relu1_1,relu2_1"`` (sets split by
    ``;``, layers by ``,`` or ``+``), a list of such strings, or a list of lists; ``"none"``
    or empty gives ``()``.

    Raises:
        ValueError: one line naming the bad entry.
    """
    if isinstance(value, str):
        raw = [] if value.strip().lower() == "none" else [p for p in value.split(";") if p.strip()]
    elif isinstance(value, (list, tuple)):
        raw = list(value)
    else:
        raise ValueError(f"style_sets must be layer sets like relu1_1;relu1_1,relu2_1 or a list of lists; got {value!r}")
    sets = []
    for item in raw:
        names = item.replace("+", ",").split(",") if isinstance(item, str) else item
        if not isinstance(names, (list, tuple)):
            raise ValueError(f"each style set must be a list of layer names; got {item!r}")
        layers = tuple(check_name("each layer of style_sets", n) for n in names if not isinstance(n, str) or n.strip())
        if not layers:
            raise ValueError("style_sets has an empty set; name at least one layer in each")
        if len(set(layers)) != len(layers):
            raise ValueError(f"style set {'+'.join(layers)} names a layer twice")
        sets.append(layers)
    return tuple(sets)


def format_style_sets(sets: Sequence[Sequence[str]]) -> str:
    """The command-line spelling of style sets: ``"relu1_1;relu1_1,relu2_1"`` (``"none"`` for none)."""
    return ";".join(",".join(s) for s in sets) or "none"


@dataclass
class ReconstructSettings(RecipeSettings):
    """Every option of a reconstruction figure (what a recipe JSON holds).

    Attributes:
        size: working size, the long side in pixels of both images (and so of every picture).
        steps: L-BFGS steps per picture (:data:`DEFAULT_STEPS`).
        content_layers: one content reconstruction per layer; ``None``: the network's
            ``reconstruction_content_layers`` (relu1_2 ... relu5_2 on VGG); ``()``: none.
        style_sets: one style reconstruction per set of layers; ``None``: the network's
            ``reconstruction_style_sets`` (relu1_1; relu1_1 + relu2_1; ... on VGG); ``()``: none.
        tv_weight, tv_beta: total-variation regularizer (weight 0 = off; exponent p of R_V^p).
        noise_scale: amplitude of the white noise every picture starts from: uniform on
            0.5 +- noise_scale/2 (:attr:`StyleSettings.noise_scale`). The default 0.01 starts near
            mid-grey, as neural-style's random start does: on the real VGG19 at 128 px and 40
            steps, relu1_2's reconstruction of tubingen reaches SSIM 0.97 to the photo from it and
            0.22 from uniform [0, 1] noise, whose fine grain the optimizer has not removed by then.
        seed: seeds the white noise every picture starts from.
        model: the network (a VGG: the ones style transfer runs on).
        pooling: ``"max"`` or ``"avg"`` (Gatys et al. used average pooling for their figures).
        precision, channels_last, parameterization, conv_algorithm: as in :class:`StyleSettings`.
        preview_every: a preview every this many steps of each picture.
    """

    size: int = setting(128, lo=32, hi=4096)
    steps: int = setting(DEFAULT_STEPS, lo=1, hi=100_000)
    content_layers: tuple[str, ...] | None = setting(None, names=True, allow_empty=True, optional=True)
    style_sets: tuple[tuple[str, ...], ...] | None = None
    tv_weight: float = setting(0.0, lo=0.0)
    tv_beta: float = setting(2.0, lo=0.5, hi=10.0)
    noise_scale: float = setting(0.01, lo=0.0, hi=1.0, exclusive_min=True)
    seed: int = setting(0, lo=0, hi=2**63 - 1)
    model: str = setting("vgg19", choices=_vgg_models)
    pooling: str = setting("max", choices=choices.POOLINGS)
    precision: str = setting("auto", choices=choices.PRECISIONS)
    channels_last: str = setting("auto", choices=choices.CHANNELS_LAST)
    parameterization: str = setting("auto", choices=choices.STYLE_PARAMETERIZATIONS)
    conv_algorithm: str = setting("auto", choices=choices.CONV_ALGORITHMS)
    preview_every: int = setting(10, lo=1, hi=100_000)

    def canonicalize(self) -> None:
        """``None`` layers become the network's defaults, ``"none"`` none; style sets become tuples of tuples."""
        spec = MODELS.get(self.model)
        if self.content_layers is not None and tuple(n.lower() for n in self.content_layers) == ("none",):
            self.content_layers = ()
        if self.content_layers is None and spec is not None:
            self.content_layers = tuple(spec.reconstruction_content_layers)
        self.style_sets = (tuple(spec.reconstruction_style_sets) if spec is not None else ()) \
            if self.style_sets is None else parse_style_sets(self.style_sets)

    def validate(self) -> "ReconstructSettings":
        """Check every field's rule and that there is at least one picture to make (the layer
        names are checked against the network by the run).

        Raises:
            ValueError: one line naming the bad option and what is allowed.
        """
        super().validate()
        if not self.content_layers and not self.style_sets:
            raise ValueError("content_layers and style_sets are both empty; name at least one layer or set")
        return self

    def picture_settings(self, kind: str, layers: Sequence[str]) -> StyleSettings:
        """The :class:`StyleSettings` of one picture: ``kind`` ``"content"`` (one layer, style
        weight 0) or ``"style"`` (a set of layers, content weight 0; its content layer is the
        set's deepest, so no other layer is computed); L-BFGS from white noise, relative losses."""
        common = dict(size=self.size, steps=self.steps, optimizer="lbfgs", loss_normalization="relative",
                      tv_weight=self.tv_weight, tv_beta=self.tv_beta, init="noise", noise_scale=self.noise_scale,
                      seed=self.seed, model=self.model,
                      pooling=self.pooling, precision=self.precision, channels_last=self.channels_last,
                      parameterization=self.parameterization, conv_algorithm=self.conv_algorithm,
                      preview_every=self.preview_every)
        if kind == "content":
            return StyleSettings(content_weight=1.0, style_weight=0.0, content_layer=layers[0], style_layers=(),
                                 **common)
        order = {n: i for i, n in enumerate(list_layers(self.model))}
        deepest = max(layers, key=lambda n: order.get(n, -1))
        return StyleSettings(content_weight=0.0, style_weight=1.0, content_layer=deepest, style_layers=tuple(layers),
                             **common)

    def plan(self) -> list[tuple[str, tuple[str, ...]]]:
        """The pictures in the order they are made: ("content", (layer,)) each, then ("style", set) each."""
        return [("content", (l,)) for l in self.content_layers] + [("style", tuple(s)) for s in self.style_sets]

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["content_layers"] = list(self.content_layers)
        d["style_sets"] = [list(s) for s in self.style_sets]
        return d


@dataclass
class Picture:
    """One finished reconstruction.

    Attributes:
        kind: ``"content"`` or ``"style"``.
        layers: the layer (content) or set of layers (style) it was made from.
        image: (1, 3, H, W) in [0, 1], CPU float32.
        loss: the final relative loss it minimized: L_c = ||F - P||^2 / ||P||^2 (content), or
            sum_l E_l / L with E_l = ||G_l - A_l||_F^2 / ||A_l||_F^2 (style).
        relative_error: sqrt(loss): the features' (content) or Gram matrices' (style, root mean
            square over the set) distance from the target, relative to the target's norm.
        layer_errors: per layer, sqrt(E_l) (style) or the content error (content).
        steps: steps done; seconds: its wall-clock time; losses: the loss after each step (k = 0..steps).
        stopped: ``None``, or why it ended before its steps (a non-finite loss).
    """

    kind: str
    layers: tuple[str, ...]
    image: torch.Tensor
    loss: float
    relative_error: float
    layer_errors: dict[str, float]
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    stopped: str | None = None

    @property
    def label(self) -> str:
        """The layers it shows, e.g. ``"relu4_2"`` or ``"relu1_1 + relu2_1"``."""
        return " + ".join(self.layers)

    @property
    def file_stem(self) -> str:
        """A file name without suffix, e.g. ``"content-relu4_2"`` or ``"style-relu1_1-relu2_1"``."""
        return f"{self.kind}-{'-'.join(self.layers)}"

    def report(self) -> dict:
        return {"kind": self.kind, "layers": list(self.layers), "label": self.label, "loss": self.loss,
                "relative_error": self.relative_error, "layer_errors": self.layer_errors, "steps": self.steps,
                "seconds": round(self.seconds, 3), "stopped": self.stopped, "history": self.losses}


@dataclass
class ReconstructResult:
    """What a :class:`Reconstruction` made (so far).

    Attributes:
        content, style: the source images at the working size, (1, 3, H, W) in [0, 1].
        pictures: the finished pictures in the order of :meth:`ReconstructSettings.plan`.
        settings: the settings; weights_info: the network's weights; device, precision.
        seconds: wall-clock time of all pictures; stopped: ``None`` or why the run ended early.
        notes: the run's one-line notes.
    """

    content: torch.Tensor
    style: torch.Tensor
    pictures: list[Picture]
    settings: ReconstructSettings
    weights_info: WeightsInfo
    device: str
    precision: str
    seconds: float
    stopped: str | None = None
    notes: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Picture]:
        """The finished ``"content"`` or ``"style"`` pictures, in order."""
        return [p for p in self.pictures if p.kind == kind]

    def figure(self, cell: int | None = None) -> Image.Image:
        """The figure as one RGB picture: a title line (network, weights, steps), a row with the
        content image and the content reconstructions, a row with the style image and the style
        reconstructions, each labelled with its layers beneath ("content image" / "style image"
        under the sources); a row whose layers the settings leave empty is left out, a row
        stopped before its first picture shows its source only.

        Args:
            cell: width of every picture in px (default: the working size's width of each row).
        """
        rows = []
        for kind, source, title in (("content", self.content, "content image"), ("style", self.style, "style image")):
            pics = self.of_kind(kind)
            if not (self.settings.content_layers if kind == "content" else self.settings.style_sets):
                continue
            images = torch.cat([source.float().cpu(), *[p.image for p in pics]])
            labels = [title, *[p.label for p in pics]]
            rows.append(image_grid(images, labels, cols=len(labels), cell=cell or int(source.shape[-1])))
        return _stack(rows, f"What each layer keeps ({self.settings.model}, {self.weights_info.label}; "
                            f"{self.settings.steps} L-BFGS steps from white noise)")

    def report(self) -> dict:
        """JSON-ready report: the run-info block (command ``reconstruct``), then every picture's
        layers, final loss, relative error and loss per step."""
        return {
            **run_info("reconstruct", self.settings.to_dict(), self.weights_info, self.device, self.precision),
            "weights_label": self.weights_info.label,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "notes": [str(n) for n in self.notes],
            "pictures": [p.report() for p in self.pictures],
            "final_losses": {p.file_stem: p.loss for p in self.pictures},
        }


def _stack(rows: list[Image.Image], title: str) -> Image.Image:
    """``rows`` one above the other on white under a one-line ``title``, 8 px apart."""
    font = ImageFont.load_default(size=12)  # at Pillow's default 10 px its spaces are 2 px: words run together
    width = max([r.width for r in rows] + [1])
    lines = wrap_label(ImageDraw.Draw(Image.new("RGB", (1, 1))), title, width - 4, font)
    title_h = 16 * len(lines) + 4
    out = Image.new("RGB", (width, title_h + sum(r.height + 8 for r in rows)), "white")
    draw = ImageDraw.Draw(out)
    for j, line in enumerate(lines):
        draw.text((2, 2 + 16 * j), line, fill="black", font=font)
    y = title_h
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + 8
    return out


def _as_tensor(image, size: int) -> torch.Tensor:
    """A PIL image or a (1, 3, H, W) tensor in [0, 1], scaled to long side ``size``: (1, 3, h, w)."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"images must be PIL images or tensors of shape (1, 3, H, W); got {tuple(image.shape)}")
        image = to_pil(image)
    return to_tensor(resize_long_side(image.convert("RGB"), size))


class Reconstruction(Run):
    """The whole figure in one run: a content reconstruction per layer, then a style
    reconstruction per set, each a :class:`StyleTransfer` from white noise.

    Usage::

        run = Reconstruction(model, content_pil, style_pil, ReconstructSettings())
        for event in run:     # one event per step of every picture; previews of the current one
            ...
        run.result().figure() # also after Stop: the finished pictures

    Events: ``step`` counts the steps of all pictures (``total`` = pictures x steps), ``stage``
    names the picture (``"content relu4_2 (1 of 10)"``), ``losses`` holds ``total`` (its relative
    loss) and ``relative_error``; ``preview`` is that picture's image every ``preview_every``
    steps and at its end.

    Args:
        model: the shared feature network (a VGG).
        content, style: PIL images or (1, 3, H, W) tensors in [0, 1]; scaled to ``settings.size``.
        settings: :class:`ReconstructSettings`.

    Raises:
        UnknownLayerError: a layer the network does not have; MemoryEstimateError: the largest
            picture would not fit in memory (before any work); ValueError: bad images, or an
            image whose short side at ``settings.size`` is below the network's smallest input.
    """

    def __init__(self, model: FeatureNet, content, style, settings: ReconstructSettings):
        super().__init__()
        settings.validate()
        self.model, self.settings = model, settings
        model.check_layers([*settings.content_layers, *[l for s in settings.style_sets for l in s]])
        self.content = _as_tensor(content, settings.size)
        self.style = _as_tensor(style, settings.size)
        for what, image in (("content image", self.content), ("style image", self.style)):
            if min(image.shape[-2:]) < model.spec.min_size:
                raise ValueError(f"the {what} is {image.shape[-1]}x{image.shape[-2]} px at size {settings.size}; "
                                 f"{model.name} needs at least {model.spec.min_size} px a side: choose a larger size")
        self.dtype = resolve_precision(settings.precision, model.device)
        for kind, layers in settings.plan():  # every picture's memory, before any work
            check_style_memory(model, self.content if kind == "content" else self.style,
                               settings.picture_settings(kind, layers), self.dtype)
        self.pictures: list[Picture] = []
        self.seconds = 0.0
        self.current: StyleTransfer | None = None
        if model.weights.untrained:
            self.note("untrained", f"{model.weights.label}: the pictures show what random filters keep")

    def __iter__(self) -> Iterator[ProgressEvent]:
        s = self.settings
        plan = s.plan()
        total = len(plan) * s.steps
        start = time.perf_counter()
        for i, (kind, layers) in enumerate(plan):
            if self.stopped:
                return
            source = self.content if kind == "content" else self.style
            target = None if kind == "content" else self.style
            self.current = StyleTransfer(self.model, source, target, s.picture_settings(kind, layers))
            stage = f"{kind} {' + '.join(layers)} ({i + 1} of {len(plan)})"
            last = None
            for ev in self.current:
                self.seconds = time.perf_counter() - start
                last = ev
                loss = ev.losses.get("content" if kind == "content" else "style", float("nan"))
                yield ProgressEvent(i * s.steps + ev.step, total, self.seconds,
                                    {"total": loss, "relative_error": math.sqrt(max(loss, 0.0))},
                                    preview=ev.preview, message=ev.message, stage=stage,
                                    done=ev.done and i == len(plan) - 1)
                if self.stopped:
                    return  # the unfinished picture is not kept
            if last is not None:
                self._finish(kind, layers)
        self.current = None

    def _finish(self, kind: str, layers: tuple[str, ...]) -> None:
        r = self.current.result()
        h = r.history[-1] if r.history else {}
        if kind == "content":
            loss = float(h.get("content", float("nan")))
            per = {layers[0]: math.sqrt(max(loss, 0.0))}
        else:
            loss = float(h.get("style", float("nan")))
            per = {k: math.sqrt(max(v, 0.0)) for k, v in h.get("style_layers", {}).items()}
        key = "content" if kind == "content" else "style"
        if r.stopped:
            self.note("picture_stopped", f"{kind} {' + '.join(layers)}: {r.stopped}")
        self.pictures.append(Picture(kind, tuple(layers), r.image, loss, math.sqrt(max(loss, 0.0)), per,
                                     int(h.get("step", 0)), r.seconds, [float(x[key]) for x in r.history], r.stopped))

    def result(self) -> ReconstructResult:
        """The finished pictures so far (all of them after the loop)."""
        return ReconstructResult(self.content, self.style, list(self.pictures), self.settings, self.model.weights,
                                 str(self.model.device), precision_name(self.dtype), self.seconds, self.stopped,
                                 list(self.notes))

    def report(self) -> dict:
        return self.result().report()


def save_pictures(result: ReconstructResult, folder: str | Path) -> list[Path]:
    """Write every picture of ``result`` as ``FOLDER/<kind>-<layers>.png`` (atomic; the folder is
    made). Returns the paths written."""
    folder = Path(folder)
    return [save_png_atomic(to_pil(p.image), folder / f"{p.file_stem}.png", pnginfo={"layers": p.label})
            for p in result.pictures]
