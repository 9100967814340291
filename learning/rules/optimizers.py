"""How the controller turns a gradient estimate into a requested conductance change.

Both work on the normalised weight ``w = G / g_max`` and are elementwise, so
every device's update still depends only on its own history: what a chip's
controller can keep per device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from eqspice.simulator.recycled import Recycled


def check_learning_rate(lr: float) -> None:
    """Refuse a learning rate that is not a positive finite number, in one line."""
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning rate {lr!r}: give a positive finite number")


@dataclass(frozen=True)
class SGD:
    """Plain gradient descent per device: ``dw = -lr * dL/dw``.

    Parameters
    ----------
    lr : float
        Learning rate, in units of ``w`` per unit of ``dL/dw`` (positive, finite).

    Examples
    --------
    >>> import numpy as np
    >>> SGD(0.1).step(np.array([1.0, -2.0]), {})
    array([-0.1,  0.2])
    """

    lr: float

    def __post_init__(self) -> None:
        check_learning_rate(self.lr)

    def init_state(self, n: int) -> dict[str, np.ndarray]:
        return {}

    def step(self, dl_dw, state, lr_scale: float = 1.0, *, grad_divisor=1.0, grad_factor=1.0, step_factor=1.0) -> np.ndarray:
        """The step of ``w`` for the gradient ``dl_dw / grad_divisor * grad_factor``, times ``step_factor``."""
        step = (-self.lr * lr_scale) * (np.asarray(dl_dw, dtype=float) / grad_divisor * grad_factor)
        step *= step_factor
        return step


@dataclass(frozen=True)
class Adam:
    """Adam: steps of about ``lr`` in w per update whatever the gradient's scale.

    Parameters
    ----------
    lr : float
        Typical step of ``w = G / g_max`` per update (positive, finite).
    beta1, beta2 : float
        Decay rates of the first and second moment estimates, in [0, 1).
    eps : float
        Added to the root of the second moment, so a device with no gradient yet takes no step.

    References
    ----------
    Kingma and Ba, "Adam: A Method for Stochastic Optimization", 2015.
    """

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    _recycled: Recycled = field(default_factory=Recycled, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_learning_rate(self.lr)
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"Adam.{name} = {value!r}: must lie in [0, 1)")

    def init_state(self, n: int) -> dict[str, np.ndarray]:
        return {"m": np.zeros(n), "s": np.zeros(n), "t": np.zeros(1)}

    def step(self, dl_dw, state, lr_scale: float = 1.0, *, grad_divisor=1.0, grad_factor=1.0, step_factor=1.0) -> np.ndarray:
        """The step of ``w`` for the gradient ``dl_dw / grad_divisor * grad_factor``, times ``step_factor``.

        The factors let the training loop's mean over a mini-batch and its change of units
        (``w = G / g_max``) ride along in the same pass over the devices, with the same
        arithmetic as separate array operations.  ``state`` gets new moment arrays (the
        old ones are not written, so a copy of the state taken before the step stays
        whole without copying them).
        """
        t, constants = self._constants(state, lr_scale, grad_divisor, grad_factor, step_factor)
        n, take = len(state["m"]), self._recycled.take
        m, s, step = take(n), take(n), np.empty(n)
        _adam(np.ascontiguousarray(dl_dw, dtype=float), state["m"], state["s"], *constants, m, s, step)
        self._recycled.give(state["m"], state["s"])
        state["m"], state["s"], state["t"] = m, s, np.array([t])
        return step

    def step_written(self, dl_dw, state, lr_scale, *, grad_divisor, grad_factor, step_factor, g_s, low_s, high_s):
        """:meth:`step` added to the conductances ``g_s`` and clipped to ``[low_s, high_s]`` in the same
        pass: an ideal device's write (:meth:`IdealDevice.update <eqspice.learning.devices.models.IdealDevice.update>`
        without levels), the same bits as the two separately.  Returns the new conductances and the sign
        of each device's change (int8, the equivalent pulses of :func:`~eqspice.learning.devices.programming.programming_pulses`).
        """
        t, constants = self._constants(state, lr_scale, grad_divisor, grad_factor, step_factor)
        dl_dw, g_s = np.ascontiguousarray(dl_dw, dtype=float), np.ascontiguousarray(g_s, dtype=float)
        n, take = len(g_s), self._recycled.take
        m, s, g, sign = take(n), take(n), take(n), take(n, np.int8)
        _adam_written(dl_dw, state["m"], state["s"], *constants, g_s, low_s, high_s, m, s, g, sign)
        self._recycled.give(state["m"], state["s"], g_s)  # g_s comes back only once the caller lets it go
        state["m"], state["s"], state["t"] = m, s, np.array([t])
        return g, sign

    def _constants(self, state, lr_scale, grad_divisor, grad_factor, step_factor) -> tuple[float, tuple]:
        """The step number and the kernels' scalars ``(b1, b2, bias2, factor, eps, divisor, g_factor, step_factor)``."""
        t = state["t"][0] + 1
        b1, b2 = self.beta1, self.beta2
        bias2, factor = 1 - b2**t, -self.lr * lr_scale / (1 - b1**t)
        return t, (b1, b2, bias2, factor, self.eps, float(grad_divisor), float(grad_factor), float(step_factor))


@numba.njit(cache=True, error_model="numpy")
def _adam_device(grad, m, s, b1, b2, bias2, factor, eps, divisor, g_factor, step_factor):
    """One device's Adam: the whole-array formulas ``g' = g / divisor * g_factor``,
    ``m' = b1 m + (1 - b1) g'``, ``s' = b2 s + (1 - b2) g'^2``,
    ``(factor m' / (sqrt(s' / bias2) + eps)) * step_factor``, operation for operation
    (no reassociation: the same bits).  Returns ``(m', s', step)``."""
    gi = grad / divisor * g_factor
    mi = m * b1 + gi * (1.0 - b1)
    si = s * b2 + (gi * gi) * (1.0 - b2)
    return mi, si, (mi * factor) / (np.sqrt(si / bias2) + eps) * step_factor


@numba.njit(cache=True, error_model="numpy")
def _adam(g, m, s, b1, b2, bias2, factor, eps, divisor, g_factor, step_factor, m_new, s_new, step):
    """:func:`_adam_device` over all devices, in one pass, into ``m_new, s_new, step``."""
    for i in range(len(g)):
        m_new[i], s_new[i], step[i] = _adam_device(g[i], m[i], s[i], b1, b2, bias2, factor, eps, divisor, g_factor, step_factor)


@numba.njit(cache=True, error_model="numpy")
def _adam_written(grad, m, s, b1, b2, bias2, factor, eps, divisor, g_factor, step_factor, g, low, high, m_new, s_new, g_new, sign):
    """:func:`_adam_device`, then ``min(max(g + step, low), high)`` and the sign of the change, per
    device, into ``m_new, s_new, g_new, sign``."""
    for i in range(len(grad)):
        m_new[i], s_new[i], step = _adam_device(grad[i], m[i], s[i], b1, b2, bias2, factor, eps, divisor, g_factor, step_factor)
        after = min(max(g[i] + step, low), high)
        g_new[i] = after
        sign[i] = (after > g[i]) - (after < g[i])
