"""The style-transfer loop: :class:`StyleTransfer` minimizes one objective over the image with
L-BFGS or Adam and yields a progress event per step (the page and the CLI draw the same events).

The objective by default is :func:`explorer.style.gatys.gatys_objective` (Gatys et al. 2016 eq. (7)
plus total variation, relative losses); the losses are in :mod:`explorer.optim.losses`.

**The image stays in [0, 1] without corrupting L-BFGS.** The optimizer's variable x is
unconstrained and the network sees (and the user gets) clamp(x, 0, 1). The loss is thus one
fixed function of x, so every curvature pair L-BFGS stores is true; clamping x in place after
each step, as before, changed the image behind L-BFGS's back and its memory no longer
described the function. L-BFGS runs with a strong-Wolfe line search, so every accepted step
lowers the loss, whatever the loss's scale: without it, torch's L-BFGS takes a plain gradient
step of length 1 whenever its first curvature pair is rejected, which on losses of 1e16 moved
pixels by 1e14 (see README "Why L-BFGS no longer diverges").

Naming trap: in the original Caffe VGG the blob called ``conv1_1`` is rectified in place, so
the papers' "conv1_1" features are post-ReLU. The defaults here are therefore ``relu1_1 ...
relu5_1`` for style and ``relu4_2`` for content; the pre-ReLU ``conv*`` outputs can be chosen too.

All losses are computed in float32, also when the network runs in bf16/fp16 (autocast).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

import torch

from .color import histogram_start
from ..core.devices import autocast, precision_name, resolve_precision, to_memory_format, use_channels_last
from .gatys import gatys_objective, style_targets
from ..nets.memory import check_fits
from ..nets.models import FeatureNet
from ..nets.weights import WeightsInfo
from ..optim.objectives import INPUT, Objective
from ..optim.parameterizations import OffsetImage
from ..core.progress import ProgressEvent
from ..core.recipes import run_info
from ..core.runs import Run, run_to_end
from .settings import StyleSettings

__all__ = ["StyleTransfer", "StyleResult", "run_style_transfer", "check_style_memory", "LBFGS_HISTORY"]

#: L-BFGS's memory m: how many recent curvature pairs (s_k, y_k) it keeps to approximate the inverse
#: Hessian (torch.optim.LBFGS's ``history_size``; Liu & Nocedal 1989).
LBFGS_HISTORY = 100

#: Most loss evaluations the strong-Wolfe line search may spend on one L-BFGS step.
MAX_LINE_SEARCH_EVALS = 20
#: How far L-BFGS's first step moves the image at most, in [0, 1] units (before its line search).
FIRST_STEP_MOVE = 0.05
#: Past loss evaluations L-BFGS can reuse (the point its line search accepted is the next
#: step's starting point).
_EVAL_CACHE = 3


@dataclass
class StyleResult:
    """What a style transfer run returns.

    Attributes:
        image: the result, (1, 3, H, W), values in [0, 1], CPU float32: the last image whose
            losses were finite (the final image unless the run stopped early).
        history: one dict per step k = 0..steps, the losses of the image after k updates
            (k = 0 is the starting image; the last entry belongs to ``image``): ``step``,
            ``content``, ``style``, ``tv``, ``total`` (unweighted eq. (1), (5), R_V^p and the
            weighted total of eq. (7) + TV), ``style_layers`` (E_l per layer) and ``seconds``
            (elapsed wall clock).
        snapshots: (step, image) pairs taken every ``preview_every`` steps (and at the
            ``snapshot_steps`` asked for), in step order.
        settings: the settings used.
        weights: ``"imagenet"``, ``"file"`` or ``"untrained"``; ``weights_label`` is the text to show.
        device, precision: where and how the network ran.
        seconds: wall-clock time of the optimization.
        stopped: ``None`` when all steps ran, else a one-line reason (non-finite loss).
        weights_info: the network's :class:`~explorer.nets.weights.WeightsInfo` (file and
            digest, for the report's run-info block).
    """

    image: torch.Tensor
    history: list[dict]
    snapshots: list[tuple[int, torch.Tensor]]
    settings: StyleSettings
    weights: str
    weights_label: str
    device: str
    precision: str
    channels_last: bool
    seconds: float
    stopped: str | None = None
    weights_info: WeightsInfo | None = None

    @property
    def final_losses(self) -> dict[str, float]:
        """The last finite losses (``content``, ``style``, ``tv``, any regularizer such as
        ``photo``, and ``total``)."""
        if not self.history:
            return {}
        return _main_losses(self.history[-1])

    def report(self) -> dict:
        """JSON-ready run report (the CLI's ``--report`` and the page's settings download): the
        run-info block (:func:`explorer.core.recipes.run_info`), then the run's results."""
        return {
            **run_info("stylize", self.settings.to_dict(), self.weights_info, self.device, self.precision),
            "weights": self.weights,
            "weights_label": self.weights_label,
            "device": self.device,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "seconds": round(self.seconds, 3),
            "steps_done": self.history[-1]["step"] if self.history else 0,
            "stopped": self.stopped,
            "final_losses": self.final_losses,
            "history": self.history,
        }


def check_style_memory(model: FeatureNet, content: torch.Tensor, settings: StyleSettings,
                       dtype: torch.dtype | None) -> int:
    """:func:`explorer.nets.memory.check_fits` for a :class:`StyleTransfer` about to start: content
    (B, 3, H, W) at the working size, its settings and compute dtype.

    Returns:
        the estimated bytes. Raises :class:`~explorer.nets.memory.MemoryEstimateError` when it does not fit.
    """
    layers = [settings.content_layer, *settings.style_layers]
    # float32 convolutions on the CPU may run on Winograd, whose workspace counts
    conv = settings.conv_algorithm if model.device.type == "cpu" else "direct"
    return check_fits(model, int(content.shape[-2]), int(content.shape[-1]), kind="style",
                      device=model.device, batch=int(content.shape[0]), dtype=dtype, layers=layers,
                      gram_layers=list(settings.style_layers), pooling=settings.pooling,
                      optimizer=settings.optimizer, steps=settings.steps, conv=conv)


class StyleTransfer(Run):
    """One Gatys style transfer run, as an iterable of :class:`ProgressEvent`: it minimizes one
    :class:`~explorer.optim.objectives.Objective` over the image.

    Usage::

        run = StyleTransfer(model, content, style, settings)
        for event in run:          # a page draws these; the CLI wraps them in tqdm
            ...
        result = run.result()      # also valid after stopping early

    Batches: ``content`` may hold B images of one size, optimized together in one batch through
    the network. Every loss is per image and summed, so with Adam (element-wise) each image
    follows exactly the path it would follow alone; L-BFGS keeps one curvature history for the
    whole batch, so use Adam when batched results must equal single runs.

    Args:
        model: the shared :class:`FeatureNet` (never modified; thread-safe).
        content: content images (B, 3, H, W) in [0, 1] at the working size (B = 1 usually).
        style: what to take the style from: a style image (1, 3, H', W') in [0, 1], a list of
            (image, weight) pairs for blending, or precomputed style targets (dict layer ->
            Gram, as :func:`style_targets` returns; the page caches them), or ``None``.
        settings: :class:`StyleSettings`.
        objective: what to minimize instead of the default :func:`gatys_objective` of
            ``content`` and ``style`` (compose it from :mod:`explorer.optim.objectives`: guided
            targets, per-image weights, region guides, a photorealism term ...). Its terms are
            recorded under their names (``content``, ``style``, ``tv``, ``photo`` ...).
        init_image: (B or 1, 3, H, W) in [0, 1], the starting image instead of ``settings.init``
            (coarse-to-fine runs start each scale from the previous scale's result, upsampled).
        seeds: one seed per image for the noise initialization (default ``settings.seed`` for
            all); image i starts from ``torch.rand`` under its own generator seeded
            ``seeds[i]``, as a single run with ``seed = seeds[i]`` does.
        snapshot_steps: steps k (0..steps) whose image is also kept in ``snapshots`` (and sent
            as a preview), besides every ``preview_every``-th step: e.g. the iteration columns of
            a parameter sweep, taken from one run. ``None``: only the regular ones.

    Raises:
        UnknownLayerError: a content/style layer the network does not have.
        ValueError: bad image shapes; no style where the default objective needs one.
        MemoryEstimateError: the run would not fit in memory (before any allocation).
    """

    def __init__(self, model: FeatureNet, content: torch.Tensor, style, settings: StyleSettings, *,
                 objective: Objective | None = None, init_image: torch.Tensor | None = None,
                 seeds: Sequence[int] | None = None, snapshot_steps: Iterable[int] | None = None):
        super().__init__()
        settings.validate()
        self.snapshot_steps = frozenset(int(k) for k in (snapshot_steps or ()))
        if any(not 0 <= k <= settings.steps for k in self.snapshot_steps):
            raise ValueError(f"snapshot steps must be between 0 and {settings.steps}; "
                             f"got {sorted(self.snapshot_steps)}")
        self.model = model
        self.settings = settings
        self.device = model.device
        self.dtype = resolve_precision(settings.precision, self.device)
        self.channels_last = use_channels_last(settings.channels_last, self.device)
        model.check_layers([settings.content_layer, *settings.style_layers])
        if content.dim() != 4 or content.shape[1] != 3 or content.shape[0] < 1:
            raise ValueError(f"content images must have shape (B, 3, H, W), got {tuple(content.shape)}")
        check_style_memory(model, content, settings, self.dtype)  # MemoryEstimateError before any allocation
        self.content = content.to(self.device, torch.float32)
        b = content.shape[0]
        self.seeds = [settings.seed] * b if seeds is None else [int(v) for v in seeds]
        if len(self.seeds) != b:
            raise ValueError(f"{len(self.seeds)} seeds for {b} content images")
        if isinstance(style, Mapping):
            style_list, targets = [], dict(style)
        else:
            style_list = [(style, 1.0)] if isinstance(style, torch.Tensor) else list(style or [])
            targets = None
        if objective is None:
            if targets is None:
                if not style_list:
                    if settings.style_weight > 0 and settings.style_layers:
                        raise ValueError("a style image is needed (or set the style weight to 0)")
                    targets = {}
                else:
                    # targets are computed once, in float32 whatever the run's precision (cheap, and
                    # the bf16 runs then end closer to the fp32 loss)
                    targets = style_targets(model, style_list, settings.style_layers,
                                            pooling=settings.pooling, precision="fp32")
            objective = gatys_objective(model, self.content, settings, targets)
        self.targets = {k: v.to(self.device) for k, v in (targets or {}).items()}
        self.objective = objective
        self.notes: list[str] = []
        if init_image is not None:
            if init_image.dim() != 4 or init_image.shape[1] != 3 or init_image.shape[-2:] != content.shape[-2:]:
                raise ValueError(f"the starting image must have shape (B, 3, {content.shape[-2]}, "
                                 f"{content.shape[-1]}); got {tuple(init_image.shape)}")
            start = init_image.to(self.device, torch.float32).expand_as(self.content).clone().clamp_(0, 1)
        else:
            start = self._initial_image(style_list)
        self.image_param = OffsetImage(start, settings.image_parameterization)
        self.last_good = start.detach().clone()
        self.history: list[dict] = []
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self.seconds = 0.0
        self._extra = [n for n in objective.names if n not in ("content", "style", "tv")]
        self.evaluations = 0

    @property
    def x(self) -> torch.Tensor:
        """The current images x (B, 3, H, W), not clamped (the network sees clamp(x, 0, 1)),
        differentiable in the optimizer's variable ``image_param.raw``."""
        return self.image_param()

    def _initial_image(self, style_list) -> torch.Tensor:
        s = self.settings
        if s.init == "histogram":
            if style_list:
                return histogram_start(self.content, list(style_list))  # matched on the CPU (scikit-image)
            # precomputed targets and no picture: nothing to take a palette from
            self.note("histogram_start_skipped", "the run started from the content image: a histogram start "
                      "needs a style picture, and this run was given precomputed style targets only")
            return self.content.clone()
        if s.init == "content":
            return self.content.clone()
        if s.init == "noise":
            one = (1, *self.content.shape[1:])
            x = torch.cat([torch.rand(one, generator=torch.Generator().manual_seed(seed)) for seed in self.seeds])
            if s.noise_scale != 1.0:  # 1: the plain uniform noise on [0, 1], bit for bit
                x = 0.5 + (x - 0.5) * s.noise_scale
            return x.to(self.device)
        if not style_list:
            raise ValueError("init 'style' needs a style image")
        x = torch.nn.functional.interpolate(style_list[0][0].to(self.device, torch.float32),
                                            size=self.content.shape[-2:], mode="bilinear",
                                            align_corners=False, antialias=True).clamp(0, 1)
        return x.expand_as(self.content).clone()

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All loss terms of the image clamp(x, 0, 1), for the optimizer's variable x
        (B, 3, H, W) (any values; see the module docstring). Float32 tensors of shape (B,)
        except ``style_layers`` (dict of E_l): ``content`` (L_c), ``style`` (sum_l w_l E_l),
        ``tv`` (R_V^p) (0 where the objective has no such term), every other term of the
        objective under its name (e.g. ``photo``), all unweighted and relative or as in the
        paper per ``loss_normalization``; ``total`` is the objective, e.g. alpha L_c +
        beta L_style + the weighted TV and regularizer terms (eq. (7) plus TV)."""
        s = self.settings
        img = x.clamp(0.0, 1.0)
        with autocast(self.device, self.dtype):
            feats = self.model.features(to_memory_format(img, self.channels_last), self.objective.layers,
                                        pooling=s.pooling, conv=s.conv_algorithm)
        # losses stay in float32: outside autocast, features cast up first
        total, values, details = self.objective.evaluate({**feats, INPUT: img})
        zero = torch.zeros(x.shape[0], device=total.device)
        return {"content": values.get("content", zero), "style": values.get("style", zero),
                "tv": values.get("tv", zero), **{n: values[n] for n in self._extra}, "total": total,
                "style_layers": details.get("style", {})}

    def _record(self, step: int, terms: dict, total: float) -> dict:
        h = {
            "step": step,
            "content": float(terms["content"].sum()),
            "style": float(terms["style"].sum()),
            "tv": float(terms["tv"].sum()),
            **{name: float(terms[name].sum()) for name in self._extra},
            "total": total,
            "style_layers": {k: float(v.sum()) for k, v in terms["style_layers"].items()},
            "seconds": round(self.seconds, 4),
        }
        if self.content.shape[0] > 1:  # the rows above are sums over the batch
            h["per_image"] = {k: [float(v) for v in terms[k]] for k in ("content", "style", "tv", *self._extra, "total")}
        self.history.append(h)
        return h

    def __iter__(self) -> Iterator[ProgressEvent]:
        """Yield one event per step k = 0..steps: the losses of the image after k updates (the
        image itself every ``preview_every`` steps). Each optimizer step evaluates the current
        image (forward + backward) and then updates it, so the losses of image k are known
        during step k + 1; the final image costs no extra pass when the line search already
        evaluated it (else one forward pass without gradients).

        L-BFGS (with the strong-Wolfe line search) may evaluate a few more points in a step;
        the point it accepts is remembered, so the next step does not evaluate it again. Its
        first step is scaled so that it moves the image by :data:`FIRST_STEP_MOVE` at most
        (see :meth:`_first_step_lr`). ``evaluations`` counts the forward + backward passes."""
        s = self.settings
        param = self.image_param
        raw = param.raw
        if s.optimizer == "lbfgs":
            opt = torch.optim.LBFGS([raw], lr=s.effective_lr, max_iter=1, max_eval=1 + MAX_LINE_SEARCH_EVALS,
                                    history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe")
        else:
            opt = torch.optim.Adam([raw], lr=s.effective_lr)
        start = time.perf_counter()
        record: dict = {}  # the first evaluation of the current step: image k's losses
        seen: list[tuple[torch.Tensor, float, torch.Tensor | None, dict, torch.Tensor]] = []  # (raw, loss, grad, terms, x)

        def detached(terms):
            return {k: (v.detach() if isinstance(v, torch.Tensor) else {n: t.detach() for n, t in v.items()})
                    for k, v in terms.items()}

        def keep(terms, value, image):
            if not record:
                record.update(terms=terms, loss=value, image=image)

        def closure(backward: bool = True):
            for praw, loss, grad, terms, image in seen:  # the point the line search accepted last step
                if torch.equal(praw, raw):
                    raw.grad = None if grad is None else grad.clone()
                    keep(terms, loss, image)
                    return torch.tensor(loss)
            opt.zero_grad(set_to_none=True)
            with torch.set_grad_enabled(backward):
                x = param()
                terms = self.losses(x)
            loss = terms["total"].sum()
            value = float(loss.detach())
            self.evaluations += 1
            if backward and math.isfinite(value):
                loss.backward()
            image = x.detach().clone()
            terms = detached(terms)
            keep(terms, value, image)
            seen.append((raw.detach().clone(), value, None if raw.grad is None else raw.grad.detach().clone(),
                         terms, image))
            del seen[:-_EVAL_CACHE]
            return loss

        def event(k: int) -> ProgressEvent | None:
            """Record image k's losses (just computed) or stop on a non-finite loss."""
            self.seconds = time.perf_counter() - start
            if not math.isfinite(record["loss"]):
                kind = "NaN" if math.isnan(record["loss"]) else "infinite"
                self.stopped = (f"the loss became {kind} at step {k}; stopped and kept the last finite image "
                                f"({f'step {k - 1}' if k else 'the starting image'}). Try a smaller learning rate or style weight.")
                return ProgressEvent(max(k - 1, 0), s.steps, self.seconds,
                                     _main_losses(self.history[-1]) if self.history else {},
                                     preview=self.last_good.cpu().clone(), message=self.stopped, done=True)
            with torch.no_grad():
                self.last_good.copy_(record["image"].clamp(0.0, 1.0))  # the image these losses belong to
            h = self._record(k, record["terms"], record["loss"])
            record.clear()
            preview = None
            wanted = k in self.snapshot_steps
            if k == 0 or k % s.preview_every == 0 or k == s.steps or wanted:
                preview = self.last_good.detach().cpu().clone()
                if k > 0 or wanted:
                    self.snapshots.append((k, preview))
            return ProgressEvent(k, s.steps, self.seconds, _main_losses(h), preview=preview, done=k == s.steps)

        for step in range(1, s.steps + 1):
            if s.optimizer == "lbfgs":
                if step == 1:
                    closure()  # image 0, remembered: the step below takes it from the cache
                    opt.param_groups[0]["lr"] = self._first_step_lr(raw.grad)
                opt.step(closure)  # max_iter=1: image step-1 (remembered or evaluated), line search, update
                opt.param_groups[0]["lr"] = s.effective_lr
            else:
                closure()
                if math.isfinite(record["loss"]):
                    opt.step()
                    if param.kind == "pixel":
                        with torch.no_grad():
                            raw.clamp_(0.0, 1.0)  # Adam keeps no curvature memory: a plain projection
            ev = event(step - 1)
            yield ev
            if self.stopped:
                return
        closure(backward=False)  # the losses of the final image (remembered when the line search ended there)
        yield event(s.steps)

    def _first_step_lr(self, grad: torch.Tensor | None) -> float:
        """The learning rate of L-BFGS's first step, which then moves the image by at most
        :data:`FIRST_STEP_MOVE` (in [0, 1] units) times the settings' learning rate.

        torch's L-BFGS takes its first step of length min(1, 1/||g||_1) along -g, before it
        has any curvature estimate. On the real VGG19 that moved no pixel by more than about
        1e-5, and the strong-Wolfe line search then spent 4-5 more evaluations growing it
        (and on a loss of 1e-3 the same rule would move pixels by far more than the image's
        range). This gives the first step a fixed size in image space instead."""
        lr = self.settings.effective_lr
        if grad is None or not bool(torch.isfinite(grad).all()):
            return lr
        with torch.no_grad():
            move = float(self.image_param.offset(grad).abs().max())
            t = min(1.0, 1.0 / max(float(grad.abs().sum()), 1e-30))
        return lr if move == 0.0 else lr * FIRST_STEP_MOVE / (t * move)

    def result(self) -> StyleResult:
        """The run's result so far (after the loop, or after stopping it early)."""
        return StyleResult(
            image=self.last_good.detach().clamp(0, 1).cpu().clone(),
            history=list(self.history),
            snapshots=list(self.snapshots),
            settings=self.settings,
            weights=self.model.weights.kind,
            weights_label=self.model.weights.label,
            device=str(self.device),
            precision=precision_name(self.dtype),
            channels_last=self.channels_last,
            seconds=self.seconds,
            stopped=self.stopped,
            weights_info=self.model.weights,
        )


    def results(self, overrides: Sequence[Mapping] | None = None) -> list[StyleResult]:
        """One :class:`StyleResult` per content image of the batch, as a single run of that image
        would report it (its own image, losses, snapshots and seed).

        Args:
            overrides: per image, settings that differ from the run's (e.g. the
                ``content_weight`` and ``style_weight`` of per-image weights), recorded in that
                result's settings.
        """
        whole = self.result()
        b = self.content.shape[0]
        if overrides is not None and len(overrides) != b:
            raise ValueError(f"{len(overrides)} settings overrides for {b} images")
        if b == 1 and not overrides:
            return [whole]
        out = []
        for i in range(b):
            if b == 1:
                history = whole.history
            else:
                history = [{**{k: v for k, v in h.items() if k not in ("per_image", "style_layers")},
                            **{k: h["per_image"][k][i] for k in ("content", "style", "tv", "total")}}
                           for h in whole.history]
            changes = {"seed": self.seeds[i], **(dict(overrides[i]) if overrides else {})}
            out.append(StyleResult(
                image=whole.image[i:i + 1].clone(), history=history,
                snapshots=[(k, im[i:i + 1].clone()) for k, im in whole.snapshots],
                settings=StyleSettings.from_dict({**self.settings.to_dict(), **changes}),
                weights=whole.weights, weights_label=whole.weights_label, device=whole.device,
                precision=whole.precision, channels_last=whole.channels_last, seconds=whole.seconds,
                stopped=whole.stopped, weights_info=whole.weights_info))
        return out


def _main_losses(h: dict) -> dict[str, float]:
    return {k: v for k, v in h.items() if k not in ("step", "style_layers", "seconds", "per_image", "scale", "size")}


def run_style_transfer(model: FeatureNet, content: torch.Tensor, style, settings: StyleSettings, *,
                       objective: Objective | None = None) -> StyleResult:
    """Run :class:`StyleTransfer` to the end without a front end and return its result."""
    return run_to_end(StyleTransfer(model, content, style, settings, objective=objective))
