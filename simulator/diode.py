"""The junction-diode DC current exactly as ngspice computes it.

References
----------
ngspice manual, section "Junction Diodes"; the DC branch of ngspice's diode
load function (forward and mild reverse bias: Shockley; deeper reverse bias:
the cubic approximation of SPICE3, valid when no breakdown voltage is given).
"""

from __future__ import annotations

import numpy as np

from eqspice.circuits.constants import (  # noqa: F401  (re-exported: the diode law's constants)
    BOLTZMANN_J_PER_K,
    CELSIUS_TO_KELVIN,
    ELECTRON_CHARGE_C,
    NOMINAL_TEMPERATURE_C,
    thermal_voltage,
)
from eqspice.circuits.network import DiodeModel


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
    is_a = model.is_a * np.asarray(area, dtype=float)
    v = np.asarray(v, dtype=float)
    forward = v >= -3.0 * vte
    ev = np.exp(np.maximum(v, -3.0 * vte) / vte)  # the forward branch, evaluated where it holds
    vr = np.minimum(v, -3.0 * vte)  # the reverse branch, evaluated where it holds (never at 0)
    ratio = 3.0 * vte / (vr * np.e)
    arg = ratio * ratio * ratio  # (3 N Vt / (e v))^3, by products: a float power is slow
    current = np.where(forward, is_a * (ev - 1.0), -is_a * (1.0 + arg)) + gmin_s * v
    conductance = np.where(forward, is_a * ev / vte, is_a * 3.0 * arg / vr) + gmin_s
    return current, conductance


def diode_co_content(
    v: np.ndarray, model: DiodeModel, gmin_s: float = 1e-12, area: np.ndarray | float = 1.0
) -> np.ndarray:
    """Co-content ``D(v) = integral_0^v I(u) du`` of :func:`diode_current`, watts (V A).

    With ``Vte = N Vt`` and ``a = 3 Vte / e``, piecewise like the current:

    * ``v >= -3 Vte`` (Shockley): ``D = IS (Vte (exp(v / Vte) - 1) - v) + GMIN v^2 / 2``;
    * ``v < -3 Vte`` (SPICE3's cubic reverse branch, ``I = -IS (1 + a^3 / v^3) + GMIN v``):
      ``D = D_shockley(-3 Vte) - IS ((v + 3 Vte) - (a^3 / 2) (1 / v^2 - 1 / (3 Vte)^2)) + GMIN v^2 / 2``,
      ``D_shockley`` the Shockley part, so D is continuous with a continuous derivative.

    ``D`` is convex (``D'' = dI/dv > 0``) and 0 at 0: the diode's share of the
    circuit's co-content ``E`` (docs/physics.md, "Energy").
    """
    vte = model.n * thermal_voltage()
    is_a = model.is_a * np.asarray(area, dtype=float)
    v = np.asarray(v, dtype=float)
    knee = -3.0 * vte
    forward = v >= knee
    vf = np.maximum(v, knee)  # each branch evaluated where it holds
    shockley = is_a * (vte * np.expm1(vf / vte) - vf)
    at_knee = is_a * (vte * np.expm1(-3.0) - knee)
    vr = np.minimum(v, knee)
    a3 = (3.0 * vte / np.e) ** 3
    reverse = at_knee - is_a * ((vr - knee) - 0.5 * a3 * (1.0 / (vr * vr) - 1.0 / knee**2))
    return np.where(forward, shockley, reverse) + 0.5 * gmin_s * v * v
