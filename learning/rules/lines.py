"""Which voltage the controller puts into the local update when the crossbar's lines are resistive.

With wires (:mod:`eqspice.circuits.wires`) the voltage across the memristor at
cell (i, j) is the row line's voltage at that cell minus the column line's,
smaller than the difference between the row's driver and the column's node by
the IR drop along both lines.  ``training.device_voltage`` chooses:

* ``"device"``: the exact voltage across every device at its cell (an
  idealised sensor in every cell).  The co-content of the wired circuit is
  ``E = sum_devices G_e dv_e^2 / 2 + sum_wires g_w dv_w^2 / 2 + diodes``, so
  ``dE/dG_e = dv_e^2 / 2`` with ``dv_e`` the device's own voltage, and EP built
  on it is the exact gradient of the wired circuit's loss.
* ``"terminals"``: the difference between the voltages the controller holds or
  reads at the array's edge, the input or bias source driving the row and the
  column's node (hidden node or output) - ``v[edges[:, 0]] - v[edges[:, 1]]``,
  what the ideal-wire update reads.  Biased by the IR drop, not by much when
  the lines' resistance is small beside the devices'.

With ideal wires both are the same numbers.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from eqspice.circuits.network import Circuit, EdgeGroup
from eqspice.learning.rules.equilibrium import Phases
from eqspice.simulator.wired import WireElimination


def devices_on_lines(circuit: Circuit, lines: WireElimination) -> Circuit:
    """``circuit`` with every device's ends moved to its line nodes (indices into ``v_ext``).

    The update rules read ``edges`` and ``groups`` only; with this circuit they
    read the voltages of :meth:`WireElimination.line_voltages`.
    """
    n = circuit.n_edges
    return replace(circuit, edges=lines.network.device_ends, groups=(EdgeGroup("devices", 0, n, (n,)),))


def at_devices(lines: WireElimination, g_s: np.ndarray, phases: Phases) -> Phases:
    """Every phase's voltages extended by the line nodes' (``v_ext[batch, node + line node]``, volts),
    the phases' line voltages found by one solve."""
    given = [v for v in (phases.free, phases.plus, phases.minus) if v is not None]
    ext = np.split(lines.line_voltages(g_s, np.vstack(given)), np.cumsum([len(v) for v in given])[:-1])
    found = iter(ext)
    return Phases(*(None if v is None else next(found) for v in (phases.free, phases.plus, phases.minus)))
