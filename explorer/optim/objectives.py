"""Composable objectives: what every run of the explorer optimizes or explains.

An :class:`Objective` is a linear combination ``sum_i c_i t_i`` of named terms ``t_i``, each a
function of the activations a network computed (the dict :meth:`FeatureNet.features` returns,
plus the image itself under :data:`INPUT`). Objectives compose with ``+``, ``-``, ``*`` by a
number (or a (B,) tensor of per-image weights), unary ``-`` and :func:`total`, as Lucent's
objectives do:

* Deep Dream maximizes e.g. ``layer_l2("inception4c") + 0.5 * channel("inception4d", [97])``;
* style transfer minimizes ``alpha * content(...) + beta * style(...) + tv_weight * tv()``
  (Gatys et al. 2016 eq. (7) plus total variation), to which a photorealism regularizer or any
  other :func:`image_term` can be added;
* feature visualization (:mod:`explorer.featurevis.render`) maximizes :func:`channel`, :func:`neuron`,
  :func:`direction` or :func:`class_logit`, plus ``w * diversity(layer)`` across a batch;
* the saliency maps explain :func:`style_energy`, :func:`layer_mean`, :func:`channel` or
  :func:`class_logit` of the style image.

:meth:`Objective.evaluate` returns the weighted total and, per term name, its unweighted value
(what a run records in its history: ``content``, ``style``, ``tv``, ``photo`` ...). This module
imports only :mod:`explorer.optim.losses` (README, "Layout"); the runs that own a network build their
objectives from these factories (:func:`explorer.style.gatys.gatys_objective`,
:func:`explorer.dream.deepdream.build_objective`, :func:`explorer.saliency.objectives.objective_function`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence, Union

import torch

from . import losses

__all__ = [
    "INPUT",
    "Acts",
    "Term",
    "Objective",
    "total",
    "layer_l2",
    "layer_mean",
    "channel",
    "neuron",
    "direction",
    "diversity",
    "guide",
    "class_logit",
    "style_energy",
    "content",
    "LayerGuide",
    "style",
    "tv",
    "image_term",
]

#: The key under which a run puts the image the network saw, (B, 3, H, W) in [0, 1], into the
#: activations it passes to an objective (terms on pixels, such as total variation, read it).
INPUT = "input"

Acts = Mapping[str, torch.Tensor]
Weight = Union[float, torch.Tensor]
#: What a term's function returns: a (B,) float32 tensor, or that and a dict of details (the
#: style term's E_l per layer), which :meth:`Objective.evaluate` reports under the term's name.
TermValue = Union[torch.Tensor, "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


@dataclass(frozen=True)
class Term:
    """One named, unweighted part of an objective.

    Attributes:
        name: what a run records it as (``"content"``, ``"style"``, ``"objective"`` ...).
        fn: activations -> (B,) float32 (or that and a dict of details).
        layers: the network layers it reads (:data:`INPUT` is always available and not listed).
        description: human-readable, e.g. ``"L2(inception4c)"``.
    """

    name: str
    fn: Callable[[Acts], TermValue]
    layers: tuple[str, ...]
    description: str


def _scaled(k: Weight, what: str) -> str:
    if isinstance(k, torch.Tensor):
        return f"w * {what}" if k.numel() != 1 else f"{float(k):g} * {what}"
    return what if k == 1.0 else f"{k:g} * {what}"


class Objective:
    """A weighted sum of :class:`Term` s; call it on activations to get (B,) float32.

    ``Objective(fn, layers, description)`` makes a one-term objective (the term is named
    ``name``, default ``"objective"``); combine objectives with ``+``, ``-``, ``*``.

    Raises (when evaluated): whatever its terms raise, e.g. ValueError for a layer without
    spatial maps or a channel that does not exist.
    """

    def __init__(self, fn: Callable[[Acts], TermValue] | None = None, layers: Iterable[str] = (),
                 description: str = "", *, name: str = "objective",
                 terms: Sequence[tuple[Weight, Term]] | None = None):
        if terms is None:
            if fn is None:
                raise ValueError("an objective needs a function or terms")
            terms = ((1.0, Term(name, fn, tuple(dict.fromkeys(layers)), description)),)
        self.terms: tuple[tuple[Weight, Term], ...] = tuple(terms)

    @property
    def layers(self) -> tuple[str, ...]:
        """The network layers any term reads, in first-use order (without :data:`INPUT`)."""
        return tuple(dict.fromkeys(l for _, t in self.terms for l in t.layers if l != INPUT))

    @property
    def description(self) -> str:
        parts = [_scaled(k, t.description) for k, t in self.terms]
        return " + ".join(parts).replace("+ -1 * ", "- ") if parts else "0"

    @property
    def names(self) -> tuple[str, ...]:
        """The term names, in order, each once."""
        return tuple(dict.fromkeys(t.name for _, t in self.terms))

    def evaluate(self, acts: Acts) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, dict]]:
        """Evaluate every term once.

        Returns:
            (weighted total (B,), unweighted value per term name (B,) (terms sharing a name are
            added), details per term name (e.g. ``{"style": {"relu1_1": E_1, ...}}``)).
        """
        out = None
        values: dict[str, torch.Tensor] = {}
        details: dict[str, dict] = {}
        for k, t in self.terms:
            v = t.fn(acts)
            if isinstance(v, tuple):
                v, d = v
                details.setdefault(t.name, {}).update(d)
            values[t.name] = values[t.name] + v if t.name in values else v
            weighted = k * v
            out = weighted if out is None else out + weighted
        if out is None:
            raise ValueError("the objective has no terms")
        return out, values, details

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.evaluate(acts)[0]

    def __add__(self, other: "Objective") -> "Objective":
        return Objective(terms=self.terms + other.terms)

    def __sub__(self, other: "Objective") -> "Objective":
        return self + (-1.0) * other

    def __mul__(self, k: Weight) -> "Objective":
        if not isinstance(k, torch.Tensor):
            k = float(k)
        return Objective(terms=tuple((k * c, t) for c, t in self.terms))

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return (-1.0) * self

    def __repr__(self) -> str:
        return f"Objective({self.description})"


def total(objectives: Iterable[Objective]) -> Objective:
    """The sum of some objectives (Python's ``sum`` needs a start value; this does not).

    Raises:
        ValueError: no objectives.
    """
    objectives = list(objectives)
    if not objectives:
        raise ValueError("name at least one objective")
    return Objective(terms=tuple(t for o in objectives for t in o.terms))


# ----------------------------------------------------------------------------- activation objectives

def _spatial(acts: Acts, layer: str) -> torch.Tensor:
    a = acts[layer].float()
    if a.dim() != 4:
        raise ValueError(f"{layer} has no spatial activations (shape {tuple(a.shape)}); pick a convolutional layer")
    return a


def layer_l2(layer: str) -> Objective:
    """Mean of squared activations of ``layer`` over channels and positions (the original
    DeepDream L2 objective, whose gradient is the activation itself). Shape (B,)."""
    return Objective(lambda a: _spatial(a, layer).pow(2).mean(dim=(1, 2, 3)), [layer], f"L2({layer})")


def layer_mean(layer: str) -> Objective:
    """Mean activation of ``layer`` over channels and positions. Shape (B,)."""
    return Objective(lambda a: _spatial(a, layer).mean(dim=(1, 2, 3)), [layer], f"mean({layer})")


def channel(layer: str, channels: Sequence[int], center: bool = False) -> Objective:
    """Mean activation of some channels of ``layer`` ("what does channel 139 of inception4d
    see"), over all positions or, with ``center=True``, at the centre position only. Shape (B,).

    Raises (when evaluated):
        ValueError: a channel index outside the layer's channel count.
    """
    chans = [int(c) for c in channels]
    if not chans:
        raise ValueError("name at least one channel")

    def fn(acts: Acts) -> torch.Tensor:
        a = _spatial(acts, layer)
        bad = [c for c in chans if not 0 <= c < a.shape[1]]
        if bad:
            raise ValueError(f"{layer} has {a.shape[1]} channels (0-{a.shape[1] - 1}); channel {bad[0]} does not exist")
        sel = a[:, chans]
        if center:
            return sel[:, :, sel.shape[2] // 2, sel.shape[3] // 2].mean(dim=1)
        return sel.mean(dim=(1, 2, 3))

    where = "centre of " if center else ""
    return Objective(fn, [layer], f"{where}{layer} channel{'s' if len(chans) > 1 else ''} {','.join(map(str, chans))}")


def neuron(layer: str, channel_index: int, y: int | None = None, x: int | None = None) -> Objective:
    """One neuron: the activation of channel ``channel_index`` of ``layer`` at one position,
    by default the centre (row H // 2, column W // 2 of the layer's map; Olah et al.,
    "Feature Visualization", Distill 2017, fig. "Different optimization objectives": neuron
    ``layer_n[x, y, z]``; Lucent's ``neuron``). Shape (B,).

    Raises:
        ValueError: a negative index (at once); a channel or position outside the layer (when
            evaluated).
    """
    c = int(channel_index)
    if c < 0 or (y is not None and y < 0) or (x is not None and x < 0):
        raise ValueError("neuron channel and position must be >= 0")

    def fn(acts: Acts) -> torch.Tensor:
        a = _spatial(acts, layer)
        if c >= a.shape[1]:
            raise ValueError(f"{layer} has {a.shape[1]} channels (0-{a.shape[1] - 1}); channel {c} does not exist")
        row = a.shape[2] // 2 if y is None else y
        col = a.shape[3] // 2 if x is None else x
        if row >= a.shape[2] or col >= a.shape[3]:
            raise ValueError(f"{layer}'s map is {a.shape[3]} x {a.shape[2]}; position ({row}, {col}) is outside it")
        return a[:, c, row, col]

    where = "centre" if y is None and x is None else f"({y if y is not None else 'centre'}, {x if x is not None else 'centre'})"
    return Objective(fn, [layer], f"{layer} neuron {c} at {where}")


def direction(layer: str, vector: Sequence[float] | torch.Tensor) -> Objective:
    """A direction in ``layer``'s activation space: the mean over positions p of <a_p, v>, with
    a_p the (C,) activation vector at p and v the (C,) ``vector`` (Olah et al., Distill 2017,
    "direction"; Lucent's ``direction`` uses the cosine instead). Shape (B,).

    Raises:
        ValueError: an empty or non-finite vector (at once); one whose length is not the
            layer's channel count (when evaluated).
    """
    v = torch.as_tensor(vector, dtype=torch.float32).flatten().detach().clone()
    if v.numel() == 0 or not bool(torch.isfinite(v).all()):
        raise ValueError("a direction needs a non-empty vector of finite numbers")

    def fn(acts: Acts) -> torch.Tensor:
        a = _spatial(acts, layer)
        if a.shape[1] != v.numel():
            raise ValueError(f"{layer} has {a.shape[1]} channels; the direction has {v.numel()} entries")
        return torch.einsum("bchw,c->bhw", a, v.to(a.device)).mean(dim=(1, 2))

    return Objective(fn, [layer], f"direction({layer}, {v.numel()} channels)")


def diversity(layer: str) -> Objective:
    """Diversity across a batch (Olah et al., Distill 2017, "Diversity"; Lucent's ``diversity``):
    for image i, minus the mean over the other images j of the cosine similarity of their Gram
    matrices G = F F^T at ``layer`` (F: (C, H W)), so the batch mean is minus the mean pairwise
    similarity; maximizing it pushes the images' styles apart. Term name ``"diversity"``;
    shape (B,), values in [-1, 0] for non-negative activations; 0 for a batch of one.
    """
    def fn(acts: Acts) -> torch.Tensor:
        f = _spatial(acts, layer).flatten(2)  # (B, C, P)
        b = f.shape[0]
        if b < 2:
            return f.new_zeros(b)
        g = torch.nn.functional.normalize(torch.bmm(f, f.transpose(1, 2)).flatten(1), dim=1)  # (B, C*C)
        sim = g @ g.T
        return -(sim.sum(dim=1) - sim.diagonal()) / (b - 1)

    return Objective(fn, [layer], f"diversity({layer})", name="diversity")


def guide(layer: str, guide_acts: torch.Tensor) -> Objective:
    """Guided dream (the DeepDream notebook's ``objective_guide``): each position i of the
    dreamed image's features x_i is pulled towards the guide feature y_j it already matches
    best, i.e. maximize ``mean_i max_j <x_i, y_j>``; its gradient at x_i is y_argmax.

    Args:
        layer: layer name.
        guide_acts: the guide image's activations at ``layer``, shape (1, C, h, w).
    """
    y = guide_acts.detach().float().flatten(2)[0]  # (C, Pg)

    def fn(acts: Acts) -> torch.Tensor:
        x = _spatial(acts, layer).flatten(2)  # (B, C, P)
        dots = torch.einsum("bcp,cq->bpq", x, y.to(x.device))
        return dots.max(dim=2).values.mean(dim=1)

    return Objective(fn, [layer], f"guide({layer})")


def class_logit(logits_layer: str, index: int, name: str = "") -> Objective:
    """The ImageNet logit of class ``index`` (towards that class). Shape (B,)."""
    return Objective(lambda a: a[logits_layer].float()[:, index], [logits_layer],
                     f"logit {index}{f' ({name})' if name else ''}")


def style_energy(layers: Sequence[str], weights: Sequence[float] | Mapping[str, float] | None = None) -> Objective:
    """The style energy the saliency maps explain, as an objective (its one entry point):
    :func:`explorer.optim.losses.style_energy`, sum_l w_l ||G_l||^2 / (4 N_l^2 M_l^2)
    (Gatys et al. 2016 eq. (5) against an all-zero target; w_l by
    :func:`explorer.optim.losses.style_layer_weights`, default 1/L). Term name
    ``"style_energy"``; shape (B,).

    Raises:
        ValueError: no layers, or weights of another length or without some layer (at once).
    """
    layers = list(layers)
    w = losses.style_layer_weights(layers, weights)
    return Objective(lambda a: losses.style_energy(a, layers, w), layers,
                     f"style energy({', '.join(layers)})", name="style_energy")


# ----------------------------------------------------------------------------- style-transfer terms

def content(layer: str, target: torch.Tensor, scale: Weight = 1.0) -> Objective:
    """Content loss at ``layer`` against ``target`` (1 or B, N, H, W): Gatys et al. 2016 eq. (1)
    times ``scale`` (2 / ||P||^2 per image makes it the relative loss ||F - P||^2 / ||P||^2).
    Term name ``"content"``; shape (B,)."""
    return Objective(lambda a: losses.content_loss(a[layer], target) * scale, [layer],
                     f"L_content({layer})", name="content")


@dataclass(frozen=True)
class LayerGuide:
    """What one style layer's term looks at besides its target (see
    :func:`explorer.optim.losses.guided_style_layer_loss`): a channel subset, or the content image's
    region masks at this layer with the regions' validity and :class:`~explorer.optim.losses.RegionPlan`."""

    channels: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    plan: losses.RegionPlan | None = None


def style(targets: Mapping[str, torch.Tensor], layer_weights: Mapping[str, float],
          scales: Mapping[str, float] | None = None,
          guides: Mapping[str, LayerGuide] | None = None) -> Objective:
    """Style loss, Gatys et al. 2016 eq. (5): sum_l w_l s_l E_l, with each E_l the guided
    layer term of :func:`explorer.optim.losses.guided_style_layer_loss` (plain eq. (4), a channel
    subset, or Luan et al. 2017 eq. (3a)-(3b) per region) and s_l a scale (the relative loss's
    4 N^2 / ||A||^2; default 1). Term name ``"style"``; its details are s_l E_l per layer.

    Args:
        targets: per style layer, the target Gram (N, N), (B, N, N), or (R, N, N) for regions.
        layer_weights: w_l per layer (layers without one are skipped).
    """
    layers = [l for l in targets if l in layer_weights]
    scales = dict(scales or {})
    guides = dict(guides or {})

    def fn(acts: Acts):
        per_layer = {}
        for l in layers:
            g = guides.get(l) or LayerGuide()
            e = losses.guided_style_layer_loss(acts[l], targets[l], channels=g.channels, masks=g.masks,
                                               valid=g.valid, plan=g.plan)
            per_layer[l] = e * scales.get(l, 1.0)
        value = losses.style_loss(per_layer, dict(layer_weights))
        return value, per_layer

    return Objective(fn, layers, f"L_style({', '.join(layers)})", name="style")


def tv(beta: float = 2.0) -> Objective:
    """Total variation R_{V^beta} of the image (Mahendran & Vedaldi 2015 eq. (5);
    :func:`explorer.optim.losses.total_variation`). Term name ``"tv"``; shape (B,)."""
    return Objective(lambda a: losses.total_variation(a[INPUT], beta), [], f"TV^{beta:g}", name="tv")


def image_term(name: str, fn: Callable[[torch.Tensor], torch.Tensor], description: str = "") -> Objective:
    """A term on the image itself: ``fn`` maps (B, 3, H, W) in [0, 1] to (B,) (e.g. the
    photorealism regularizer of Luan et al. 2017 eq. (2), recorded as ``"photo"``)."""
    return Objective(lambda a: fn(a[INPUT]).float(), [], description or name, name=name)
