"""Large arrays handed back by the code that replaced them and reused once nothing refers to them."""

from __future__ import annotations

import sys

import numpy as np


class Recycled:
    """Device-sized arrays a step replaced, written again by a later step once nothing else holds them.

    A training step writes new moment and conductance arrays instead of overwriting the old ones,
    so a copy of the run's state taken before the step (the loop's last consistent state) stays
    whole without copying 1.6 million devices.  Allocating those arrays afresh costs more than
    the arithmetic that fills them (the pages are faulted in anew), so the arrays that steps
    replace come back here and are reused once no one else refers to them; an array still held
    elsewhere (a saved state, a caller's variable, a view) is never handed out.
    """

    KEEP = 8  # arrays kept for reuse; older ones are let go

    def __init__(self) -> None:
        self._arrays: list[np.ndarray] = []

    def give(self, *arrays: np.ndarray) -> None:
        self._arrays.extend(a for a in arrays if isinstance(a, np.ndarray) and a.base is None)
        del self._arrays[: -self.KEEP]

    def take(self, n: int, dtype=np.float64) -> np.ndarray:
        """An array of ``n`` elements of ``dtype``, contents undefined."""
        dtype = np.dtype(dtype)
        for k in range(len(self._arrays)):
            a = self._arrays[k]
            # referenced by the list, by a and by the call only: no one else can see it change
            if a.shape == (n,) and a.dtype == dtype and sys.getrefcount(a) <= 3:
                del a
                return self._arrays.pop(k)
        return np.empty(n, dtype)
