"""Retention drift: how a programmed conductance relaxes with time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RetentionDrift:
    """Power-law conductance drift after programming (phase-change memory).

    A device programmed to ``G_prog`` at time ``t_prog`` conducts

        G(t) = G_prog ((t - t_prog + t0) / t0) ** (-nu)

    at time ``t`` (seconds on the run's clock), so ``G = G_prog`` right after
    programming and it falls by ``(1 + dt / t0)^-nu`` as it ages.  ``nu`` is
    drawn once per device, ``|N(nu_mean, nu_std)|``, as IBM aihwkit's
    PCMLikeNoiseModel does.  Stuck devices do not drift.

    Parameters
    ----------
    nu_mean : mean drift exponent, dimensionless.
    nu_std : device-to-device standard deviation of the exponent.
    t0_s : reference time of the first read after programming, seconds.

    References
    ----------
    S. R. Nandakumar et al., "Phase-change memory models for deep learning
    training and inference", ICECS 2019 (aihwkit: nu ~ 0.05-0.1, t0 = 20 s).
    """

    nu_mean: float
    nu_std: float
    t0_s: float

    def init_state(self, n: int, rng: np.random.Generator, stuck: np.ndarray | None = None) -> dict[str, np.ndarray]:
        nu = np.abs(self.nu_mean + self.nu_std * rng.standard_normal(n))
        if stuck is not None:
            nu[stuck != 0] = 0.0
        return {"drift_nu": nu, "programmed_at_s": np.zeros(n)}

    def conductances(self, g_prog_s: np.ndarray, state: dict, t_s: float) -> np.ndarray:
        """``G(t)`` of every device, siemens."""
        age = np.maximum(t_s - state["programmed_at_s"], 0.0)
        return g_prog_s * ((age + self.t0_s) / self.t0_s) ** (-state["drift_nu"])

    def reprogram(
        self, g_prog_s: np.ndarray, g_new_s: np.ndarray, programmed: np.ndarray, state: dict, t_s: float
    ) -> np.ndarray:
        """Programmed values after an update at ``t_s``: devices that took pulses restart their clock."""
        state["programmed_at_s"] = np.where(programmed, t_s, state["programmed_at_s"])
        return np.where(programmed, g_new_s, g_prog_s)
