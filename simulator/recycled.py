"""Large arrays handed back by the code that replaced them and reused once nothing refers to them."""

from __future__ import annotations

import sys

import numpy as np


class Recycled:
    """Arrays that code replaced or lent out, written again once nothing else holds them.

    A training step writes new moment and conductance arrays instead of overwriting the old ones,
    so a copy of the run's state taken before the step (the loop's last consistent state) stays
    whole without copying 1.6 million devices; a settle hands its caller a new node-voltage array;
    a sweep needs scratch space of the batch's shape.  Allocating such arrays afresh costs more
    than the arithmetic that fills them (the pages are faulted in anew), so they come back here
    (:meth:`give`, or :meth:`lend` for an array handed out) and are reused once no one else
    refers to them; an array still held elsewhere (a saved state, a caller's variable, a view)
    is never handed out.  At most ``keep`` arrays are kept, none above ``largest_bytes``.
    """

    def __init__(self, keep: int = 8, largest_bytes: int | None = None) -> None:
        self.keep, self.largest_bytes = keep, largest_bytes  # arrays kept (older ones are let go), and the largest
        self._arrays: list[np.ndarray] = []

    def give(self, *arrays: np.ndarray) -> None:
        self._arrays.extend(
            a for a in arrays
            if isinstance(a, np.ndarray) and a.base is None and (self.largest_bytes is None or a.nbytes <= self.largest_bytes)
        )  # fmt: skip
        del self._arrays[: -self.keep]

    def take(self, shape: int | tuple[int, ...], dtype=np.float64) -> np.ndarray:
        """An array of ``shape`` and ``dtype``, contents undefined."""
        dtype, shape = np.dtype(dtype), (shape,) if isinstance(shape, int) else tuple(shape)
        for k in range(len(self._arrays)):
            a = self._arrays[k]
            # referenced by the list, by a and by the call only: no one else can see it change
            if a.shape == shape and a.dtype == dtype and sys.getrefcount(a) <= 3:
                del a
                return self._arrays.pop(k)
        return np.empty(shape, dtype)

    def lend(self, shape: int | tuple[int, ...], dtype=np.float64) -> np.ndarray:
        """:meth:`take`, kept here too: the array comes back for reuse once its borrower lets it go."""
        a = self.take(shape, dtype)
        self.give(a)
        return a
