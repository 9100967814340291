"""Retention drift: how a programmed conductance relaxes with time."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from eqspice.circuits.schema import SpecError, spec

#: Name of the device-state array holding each device's last programming time, seconds.
PROGRAMMED_AT = "programmed_at_sec"

#: Its name in checkpoints written before the seconds suffix was ``_sec``.
_PROGRAMMED_AT_OLD = "programmed_at_s"


class DriftSpecError(SpecError):
    """A drift model that cannot be built; the message is one line naming the parameter."""


@spec(error=DriftSpecError)
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
    nu_mean : float
        Mean drift exponent, dimensionless; zero or more (0 with ``nu_std = 0``: no drift).
    nu_std : float
        Device-to-device standard deviation of the exponent; zero or more.
    t0_sec : float
        Reference time of the first read after programming, seconds; positive.

    Raises
    ------
    DriftSpecError
        A field of the wrong type, out of range or not finite (one line naming it).

    References
    ----------
    S. R. Nandakumar et al., "Phase-change memory models for deep learning
    training and inference", ICECS 2019 (aihwkit: nu ~ 0.05-0.1, t0 = 20 s).
    """

    nu_mean: Annotated[float, Field(ge=0)] = 0.0
    nu_std: Annotated[float, Field(ge=0)] = 0.0
    t0_sec: Annotated[float, Field(gt=0)] = 20.0

    def init_state(self, n: int, rng: np.random.Generator, stuck: np.ndarray | None = None) -> dict[str, np.ndarray]:
        nu = np.abs(self.nu_mean + self.nu_std * rng.standard_normal(n))
        if stuck is not None:
            nu[stuck != 0] = 0.0
        return {"drift_nu": nu, PROGRAMMED_AT: np.zeros(n)}

    def conductances(self, g_prog_s: np.ndarray, state: dict, t_sec: float) -> np.ndarray:
        """``G(t)`` of every device at run time ``t_sec`` (seconds), siemens."""
        age = np.maximum(t_sec - programmed_at(state), 0.0)
        return g_prog_s * ((age + self.t0_sec) / self.t0_sec) ** (-state["drift_nu"])

    def reprogram(
        self, g_prog_s: np.ndarray, g_new_s: np.ndarray, programmed: np.ndarray, state: dict, t_sec: float
    ) -> np.ndarray:
        """Programmed values after an update at ``t_sec`` (seconds): devices that took pulses restart their clock."""
        state[PROGRAMMED_AT] = np.where(programmed, t_sec, programmed_at(state))
        return np.where(programmed, g_new_s, g_prog_s)


def programmed_at(state: dict) -> np.ndarray:
    """Each device's last programming time, seconds; renames the array of an older checkpoint in place."""
    if _PROGRAMMED_AT_OLD in state:
        state[PROGRAMMED_AT] = state.pop(_PROGRAMMED_AT_OLD)
    return state[PROGRAMMED_AT]
