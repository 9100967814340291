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

Programming a chip with given target conductances (off-chip deployment,
:func:`program_conductances`) goes through the same ``device.update`` a training
update uses: each write cycle requests ``dG = G_target - G`` of every device not
yet within tolerance, and the device model turns that into what it does (pulses
of its own step, cycle-to-cycle noise, levels, its own bounds; stuck devices do
not move).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numba
import numpy as np
from pydantic import Field

from eqspice.circuits.network import Circuit
from eqspice.circuits.schema import SpecError, spec

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
    if g_before_s.shape == g_after_s.shape and g_before_s.ndim == 1:
        return _sign_of_change(np.ascontiguousarray(g_before_s, dtype=float), np.ascontiguousarray(g_after_s, dtype=float))
    return (g_after_s > g_before_s).view(np.int8) - (g_after_s < g_before_s).view(np.int8)


@numba.njit(cache=True)
def _sign_of_change(before, after):
    """``sign(after - before)`` as int8, one pass."""
    out = np.empty(len(before), dtype=np.int8)
    for i in range(len(before)):
        out[i] = (after[i] > before[i]) - (after[i] < before[i])
    return out


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


#: Ways of writing target conductances into a chip (``deploy.scheme``).
PROGRAMMING_SCHEMES = ("write_verify", "one_shot")


class ProgrammingSpecError(SpecError):
    """A programming scheme that cannot be built; the message is one line naming the parameter."""


@spec(error=ProgrammingSpecError)
class Programming:
    """How trained conductances are written into a chip: ``[deploy]`` of a deployed run.

    ``one_shot`` makes one write: every device is asked for ``G_target - G`` once.
    ``write_verify`` reads every device after each write (an exact read) and writes
    again, with the remaining error as the request, those farther than the
    tolerance from their target, up to ``cycles`` writes in all.  The tolerance
    is ``tolerance_s``, or if larger half a level spacing on a device with
    ``levels`` (no level is nearer to the target) and half the mid-range step
    ``dw_min_s`` of a pulsed device (one more pulse would overshoot on average).

    Parameters
    ----------
    scheme : {"write_verify", "one_shot"}
        How the devices are written.
    cycles : int
        write_verify: most writes per device; at least 1.  Each write is one
        ``device.update``, up to the device's ``max_pulses`` pulses.
    tolerance_s : float
        write_verify: a device within this of its target is done, siemens; zero or more.

    Raises
    ------
    ProgrammingSpecError
        A field of the wrong type, out of range or not one of its choices.
    """

    scheme: Literal["write_verify", "one_shot"] = "write_verify"
    cycles: Annotated[int, Field(ge=1)] = 20
    tolerance_s: Annotated[float, Field(ge=0)] = 0.0

    def tolerance(self, device) -> float:
        """The distance from its target at which a device is done, siemens."""
        spacing = (device.g_max_s - device.g_min_s) / (device.levels - 1) if device.levels else 0.0
        step = getattr(device, "dw_min_s", 0.0) if device.model == "pulsed" else 0.0
        return max(self.tolerance_s, 0.5 * max(spacing, step) * (1 + 1e-9))


def program_conductances(
    device, g_start_s: np.ndarray, g_target_s: np.ndarray, state: dict, rng: np.random.Generator, programming: Programming
) -> tuple[np.ndarray, np.ndarray, int]:
    """Write ``g_target_s`` into devices that hold ``g_start_s``, through ``device.update``.

    Parameters
    ----------
    device : IdealDevice or PulsedDevice
        The chip's device model.
    g_start_s, g_target_s : numpy.ndarray
        Conductances before programming and wanted, ``[edge]`` siemens.
    state : dict
        The chip's per-device fabrication state (bounds, step scale, stuck devices).
    rng : numpy.random.Generator
        Draws of the writes (stochastic rounding, cycle-to-cycle noise).
    programming : Programming
        One shot or write-verify.

    Returns
    -------
    g_s : numpy.ndarray
        The programmed conductances, siemens.
    pulses : numpy.ndarray
        Programming pulses each device took over all writes, ``sum |n|``
        (equivalent pulses for an ideal device, :func:`programming_pulses`).
    writes : int
        Writes made (1 for one shot).
    """
    g = np.array(g_start_s, dtype=float, copy=True)
    target = np.asarray(g_target_s, dtype=float)
    pulses = np.zeros(g.shape, dtype=np.int64)
    tolerance = programming.tolerance(device)
    writes = 0
    for _ in range(1 if programming.scheme == "one_shot" else programming.cycles):
        todo = np.ones(g.shape, dtype=bool) if programming.scheme == "one_shot" else np.abs(g - target) > tolerance
        if not todo.any():
            break
        sub = {key: value[todo] for key, value in state.items()}
        before = g[todo]
        after, n = device.update(before, target[todo] - before, sub, rng)
        pulses[todo] += np.abs(programming_pulses(device, before, after, n))
        g[todo] = after
        writes += 1
    return g, pulses, writes
