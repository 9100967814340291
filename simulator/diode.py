"""The junction-diode DC current exactly as ngspice computes it.

References
----------
ngspice manual, section "Junction Diodes"; the DC branch of ngspice's diode
load function (forward and mild reverse bias: Shockley; deeper reverse bias:
the cubic approximation of SPICE3, valid when no breakdown voltage is given).
"""

from __future__ import annotations

import numpy as np

from circuits.network import DiodeModel

#: ngspice's physical constants (src/include/ngspice/const.h).
BOLTZMANN_J_PER_K = 1.38064852e-23
ELECTRON_CHARGE_C = 1.6021766208e-19
CELSIUS_TO_KELVIN = 273.15
NOMINAL_TEMPERATURE_C = 27.0


def thermal_voltage(temperature_c: float = NOMINAL_TEMPERATURE_C) -> float:
    """``Vt = k T / q`` in volts (25.86 mV at 27 degC)."""
    return BOLTZMANN_J_PER_K * (temperature_c + CELSIUS_TO_KELVIN) / ELECTRON_CHARGE_C


def diode_current(
    v: np.ndarray, model: DiodeModel, gmin_s: float = 1e-12, area: np.ndarray | float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Current ``I(v)`` (amperes, anode to cathode) and its derivative ``dI/dv`` (siemens).

    ``I = IS (exp(v / (N Vt)) - 1) + GMIN v`` for ``v >= -3 N Vt``; below that
    ``I = -IS (1 + (3 N Vt / (e v))^3) + GMIN v``.  ``IS`` is the model's times
    the instance ``area`` (one value per diode, the last axis of ``v``); GMIN
    is not scaled, as in ngspice.
    """
    vte = model.n * thermal_voltage()
    i_s = model.is_a * np.asarray(area, dtype=float)
    forward = v >= -3.0 * vte
    vf = np.where(forward, v, 0.0)
    ev = np.exp(vf / vte)
    vr = np.where(forward, -1.0, v)
    arg = (3.0 * vte / (vr * np.e)) ** 3
    current = np.where(forward, i_s * (ev - 1.0), -i_s * (1.0 + arg)) + gmin_s * v
    conductance = np.where(forward, i_s * ev / vte, i_s * 3.0 * arg / vr) + gmin_s
    return current, conductance
