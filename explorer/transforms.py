"""Image transforms that runs compose around an objective (Lucent's ``transform`` idea): a random
shift before each gradient step, undone on the gradient, so that the picture does not fit the
network's fixed pixel grid. Ground floor: only torch and Python's ``random`` (README, "Layout").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

__all__ = ["Jitter", "roll", "unroll"]


@dataclass(frozen=True)
class Jitter:
    """A random roll by (dy, dx), each drawn uniformly from the integers in [-shift, shift]
    pixels (Mordvintsev et al.'s DeepDream notebook, ``make_step``'s ``jitter``).

    Attributes:
        shift: the largest shift in pixels (0: no shift, and no random numbers are drawn).
    """

    shift: int

    def draw(self, rng: random.Random) -> tuple[int, int]:
        """(dy, dx) in pixels from ``rng`` (``randint`` for dy, then dx), or (0, 0)."""
        if not self.shift:
            return 0, 0
        return rng.randint(-self.shift, self.shift), rng.randint(-self.shift, self.shift)

    def __add__(self, other: "Jitter") -> "Jitters":
        return Jitters((self, other))


@dataclass(frozen=True)
class Jitters:
    """Several jitters applied in turn: their shifts add up to one roll."""

    parts: tuple[Jitter, ...]

    def draw(self, rng: random.Random) -> tuple[int, int]:
        dy = dx = 0
        for j in self.parts:
            a, b = j.draw(rng)
            dy, dx = dy + a, dx + b
        return dy, dx


def roll(x: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """``x`` (..., H, W) rolled by ``offset`` = (dy, dx) pixels (wrapping around the edges)."""
    return torch.roll(x, shifts=offset, dims=(-2, -1)) if any(offset) else x


def unroll(x: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`roll` with the same ``offset``."""
    return torch.roll(x, shifts=(-offset[0], -offset[1]), dims=(-2, -1)) if any(offset) else x
