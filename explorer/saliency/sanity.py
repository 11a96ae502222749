"""The model-parameter randomization test of Adebayo et al. 2018 ("Sanity Checks for Saliency
Maps", NeurIPS): compute one attribution map with the trained network and with the
same architecture's untrained weights, and measure how alike the two maps are with Spearman's rank
correlation (the paper's similarity measure, next to SSIM and HOG).

A method whose map barely changes when the weights are randomized cannot be explaining what the
network has learned: it mostly shows the image (its edges and contrast). Adebayo et al. found
guided backprop to be such a method (its maps stay edge-like with random weights), while the
plain gradient's maps change. Here the whole network is
re-initialized at once (torchvision's default initialization, seed
:data:`explorer.nets.models.UNTRAINED_SEED`): the last stage of the paper's cascading randomization,
which randomizes from the top layer down; the objective is the page's (the style energy by
default), not the paper's class logit.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable

import numpy as np
import torch

from ..nets.models import FeatureNet
from .attribution import AttributionSettings, Heatmap, attribute

__all__ = ["rank_correlation", "check_pair", "randomization_check"]

#: Computes one heatmap: ``(model, image, settings) -> Heatmap``, or None when it was stopped.
HeatmapFunction = Callable[[FeatureNet, torch.Tensor, AttributionSettings], "Heatmap | None"]


def rank_correlation(map_a: np.ndarray, map_b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps of the same shape, pixel by pixel
    (``scipy.stats.spearmanr`` on the flattened values; ties get their average rank).

    Args:
        map_a, map_b: (H, W) arrays, e.g. :attr:`Heatmap.values` (any units: only the ranks count).

    Returns:
        rho in [-1, 1]: 1 when the two maps order the pixels the same way, about 0 when their
        orders are unrelated; NaN when either map is constant (no ranking to compare).

    Raises:
        ValueError: the shapes differ or a map has no pixels.
    """
    from scipy.stats import spearmanr

    a, b = np.asarray(map_a, np.float64).ravel(), np.asarray(map_b, np.float64).ravel()
    if np.shape(map_a) != np.shape(map_b):
        raise ValueError(f"the two maps must have the same shape; got {np.shape(map_a)} and {np.shape(map_b)}")
    if a.size < 2:
        raise ValueError("a map needs at least 2 pixels to rank")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(a, b).statistic
    return float(rho)


def check_pair(model_trained: FeatureNet, model_untrained: FeatureNet) -> None:
    """Raises ValueError (one line) unless the two networks are one architecture with trained and
    untrained weights (:attr:`FeatureNet.weights` ``.untrained``)."""
    if model_trained.name != model_untrained.name:
        raise ValueError(f"the randomization check compares one network with itself; got {model_trained.name} "
                         f"and {model_untrained.name}")
    if model_trained.weights.untrained:
        raise ValueError("the randomization check needs trained weights: the network has "
                         f"{model_trained.weights.label}")
    if not model_untrained.weights.untrained:
        raise ValueError(f"the randomized twin must have untrained weights; it has {model_untrained.weights.label}")


def randomization_check(model_trained: FeatureNet, model_untrained: FeatureNet, image: torch.Tensor,
                        settings: AttributionSettings, *,
                        compute: HeatmapFunction | None = None) -> tuple[Heatmap, Heatmap, float] | None:
    """The same attribution (method, objective and options of ``settings``) on both networks, and
    the rank correlation of the two maps.

    Args:
        model_trained: the network with its trained weights.
        model_untrained: the same network with untrained weights
            (``explorer.nets.models.load_model(name, weights="untrained")``).
        image: (1, 3, H, W) in [0, 1] at the working size.
        settings: :class:`AttributionSettings` (its ``model`` is set to the network's name).
        compute: how one heatmap is computed; default :func:`explorer.saliency.attribution.attribute`
            (an :class:`AttributionRun` to the end). The app passes its cached, progress-drawing run.

    Returns:
        (trained map, untrained map, rho): two :class:`Heatmap` of shape (H, W) and
        :func:`rank_correlation` of their values (the maps as the page shows them: signed for
        integrated gradients and occlusion); None when a run was stopped.

    Raises:
        ValueError: not one network with trained and untrained weights (:func:`check_pair`), or
            bad settings (as :class:`AttributionRun`).
    """
    check_pair(model_trained, model_untrained)
    settings = dataclasses.replace(settings, model=model_trained.name)
    compute = compute or attribute
    maps = []
    for model in (model_trained, model_untrained):
        heatmap = compute(model, image, settings)
        if heatmap is None:
            return None
        maps.append(heatmap)
    return maps[0], maps[1], rank_correlation(maps[0].values, maps[1].values)
