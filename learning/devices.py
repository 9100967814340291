"""Device models: what a memristor does with a requested conductance change.

A device model turns the controller's request ``dG`` into the conductance the
device ends up with.  Every model here keeps ``G`` within ``[g_min, g_max]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class DeviceModel(Protocol):
    def init(self, n: int, rng: np.random.Generator, low_s: float, high_s: float) -> np.ndarray: ...

    def update(self, g_s: np.ndarray, dg_s: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


@dataclass(frozen=True)
class IdealDevice:
    """A device that takes any requested change, clipped to its bounds.

    Parameters
    ----------
    g_min_s, g_max_s : conductance bounds, siemens.
    levels : number of evenly spaced programmable levels in
        ``[g_min_s, g_max_s]``; 0 for a continuous device.  With levels, a
        requested value between two levels is rounded stochastically (up with
        probability equal to its fractional position), so small updates are
        kept in expectation instead of being rounded away.
    """

    g_min_s: float
    g_max_s: float
    levels: int = 0

    @property
    def step_s(self) -> float:
        return (self.g_max_s - self.g_min_s) / (self.levels - 1) if self.levels else 0.0

    def quantise(self, g_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        position = (g_s - self.g_min_s) / self.step_s
        lower = np.floor(position)
        up = rng.random(g_s.shape) < position - lower
        return self.g_min_s + (lower + up) * self.step_s

    def init(self, n: int, rng: np.random.Generator, low_s: float, high_s: float) -> np.ndarray:
        g = rng.uniform(low_s, high_s, n)
        return self.quantise(g, rng) if self.levels else g

    def update(self, g_s: np.ndarray, dg_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = np.clip(g_s + dg_s, self.g_min_s, self.g_max_s)
        return np.clip(self.quantise(g, rng), self.g_min_s, self.g_max_s) if self.levels else g
