"""What writing the conductances of a mini-batch costs: programming pulses, energy and time.

A device model (:mod:`eqspice.learning.devices.models`) reports the signed
number of pulses each device took.  An ideal device takes no pulses of its
own; it is counted in *equivalent pulses* (:func:`programming_pulses`): one
pulse per device whose conductance changed (an ideal device reaches any value
in one write), or with ``levels`` one pulse per level step moved.

The energy of a write is ``E = pulse_energy_j * sum_e |n_e|`` whatever the
scheme; half-selected devices on a driven line take no energy and do not move
(an assumption).  Its duration depends on how pulses are scheduled
(:data:`WRITE_SCHEMES`), with ``tau = pulse_duration_sec``:

* ``row_parallel``: one row of a crossbar at a time, every device of the row at
  once, up pulses then down pulses (opposite polarities on the row line):
  ``T = tau sum_rows [max_e n_e^+ + max_e n_e^-]`` over the rows of every layer,
  one layer after the other;
* ``device_by_device``: one device at a time, ``T = tau sum_e |n_e|``.

A circuit without crossbar rows (a graph) is written device by device in either scheme.
"""

from __future__ import annotations

import numpy as np

from eqspice.circuits.network import Circuit

#: Ways of scheduling a mini-batch's pulses (``energy.write_scheme`` in a run config).
WRITE_SCHEMES = ("row_parallel", "device_by_device")


def programming_pulses(device, g_before_s: np.ndarray, g_after_s: np.ndarray, pulses: np.ndarray) -> np.ndarray:
    """Signed programming pulses per device of one write, ``n[edge]``.

    Parameters
    ----------
    device : IdealDevice or PulsedDevice
        The device model that made the write.
    g_before_s, g_after_s : numpy.ndarray
        Conductances before and after, ``[edge]`` siemens.
    pulses : numpy.ndarray
        The signed pulses the device model reported (zeros for an ideal device).

    Returns
    -------
    numpy.ndarray
        ``pulses`` for a pulsed device; for an ideal one, ``sign(dG)`` (one
        equivalent pulse per changed device), or with ``levels`` the level steps
        moved, ``round(dG / step_s)``.
    """
    if device.model != "ideal":
        return np.asarray(pulses)
    g_before_s, g_after_s = np.asarray(g_before_s), np.asarray(g_after_s)
    if device.levels:
        return np.rint((g_after_s - g_before_s) / device.step_s).astype(np.int64)
    return (g_after_s > g_before_s).view(np.int8) - (g_after_s < g_before_s).view(np.int8)  # sign(dG), fast


def write_energy_j(pulses: np.ndarray, pulse_energy_j: float) -> float:
    """``pulse_energy_j * sum |n|``, joules."""
    return float(pulse_energy_j * np.abs(pulses).sum(dtype=np.int64))


def write_time_sec(circuit: Circuit, pulses: np.ndarray, pulse_duration_sec: float, scheme: str = "row_parallel") -> float:
    """Duration of one write under ``scheme`` (see the module docstring), seconds.

    Parameters
    ----------
    circuit : Circuit
        Its edge groups give the crossbar rows (``group.shape = (rows, cols)``, row-major).
    pulses : numpy.ndarray
        Signed pulses per device ``[edge]``.
    pulse_duration_sec : float
        Duration of one pulse, seconds.
    scheme : {"row_parallel", "device_by_device"}

    Raises
    ------
    ValueError
        An unknown scheme or pulses of the wrong shape.
    """
    if scheme not in WRITE_SCHEMES:
        raise ValueError(f"write scheme {scheme!r}: give one of {', '.join(WRITE_SCHEMES)}")
    pulses = np.asarray(pulses)
    if pulses.shape != (circuit.n_edges,):
        raise ValueError(f"pulses has shape {list(pulses.shape)}; the circuit has {circuit.n_edges} edges")
    if scheme == "device_by_device":
        return float(pulse_duration_sec * np.abs(pulses).sum(dtype=np.int64))
    steps = 0
    for group in circuit.groups:
        block = pulses[group.slice]
        if group.rows is None or len(group.shape) != 2:
            steps += int(np.abs(block).sum(dtype=np.int64))
            continue
        block = block.reshape(group.shape)
        steps += int(np.maximum(block.max(axis=1), 0).sum() + np.maximum(-block.min(axis=1), 0).sum())
    return float(pulse_duration_sec * steps)
