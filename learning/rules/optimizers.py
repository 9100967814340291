"""How the controller turns a gradient estimate into a requested conductance change.

Both work on the normalised weight ``w = G / g_max`` and are elementwise, so
every device's update still depends only on its own history: what a chip's
controller can keep per device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Devices per chunk of the Adam update (about 128 KiB per array: the working set stays in cache).
ADAM_CHUNK = 16384


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

    def step(self, dl_dw: np.ndarray, state: dict[str, np.ndarray], lr_scale: float = 1.0) -> np.ndarray:
        return -self.lr * lr_scale * dl_dw


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

    def __post_init__(self) -> None:
        check_learning_rate(self.lr)
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"Adam.{name} = {value!r}: must lie in [0, 1)")

    def init_state(self, n: int) -> dict[str, np.ndarray]:
        return {"m": np.zeros(n), "s": np.zeros(n), "t": np.zeros(1)}

    def step(self, dl_dw: np.ndarray, state: dict[str, np.ndarray], lr_scale: float = 1.0) -> np.ndarray:
        state["t"] += 1
        t = state["t"][0]
        m, s = state["m"], state["s"]  # updated in place
        step = np.empty_like(m)
        b1, b2 = self.beta1, self.beta2
        bias2, factor = 1 - b2**t, -self.lr * lr_scale / (1 - b1**t)
        scratch = np.empty(min(ADAM_CHUNK, len(m)))
        # the same elementwise arithmetic as on whole arrays, a cache-sized chunk at a time:
        # a million devices stream through memory once instead of once per operation
        for start in range(0, len(m), ADAM_CHUNK):
            part = slice(start, start + ADAM_CHUNK)
            g, m_, s_, out = dl_dw[part], m[part], s[part], step[part]
            tmp = scratch[: len(g)]
            np.multiply(g, 1 - b1, out=tmp)
            m_ *= b1
            m_ += tmp
            np.square(g, out=tmp)
            tmp *= 1 - b2
            s_ *= b2
            s_ += tmp
            np.divide(s_, bias2, out=tmp)
            np.sqrt(tmp, out=tmp)
            tmp += self.eps
            np.multiply(m_, factor, out=out)
            out /= tmp
        return step
