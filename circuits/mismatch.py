"""Fabrication mismatch of a circuit's fixed parts, as plain values written into the circuit.

Nothing here is random: :mod:`eqspice.learning.run.build` draws the values from the
run's seed and these functions put them into a :class:`Circuit`, so the netlist
writer and both engines read the same mismatched hardware.

* **Diodes.** Diode ``k`` gets a SPICE instance area factor ``area[k]``.  In
  ngspice the junction's saturation current is ``IS * area`` (the load routine
  uses ``csat = IS * area``; the series resistance would scale as 1/area, our
  model has none); GMIN is *not* scaled.  So the DC current is
  ``I = IS area (exp(v / (N Vt)) - 1) + GMIN v``.
* **Sources.** Every fixed source (bias lines, diode bias) holds its own
  voltage; :func:`split_diode_bias` first gives every diode its own bias
  source, so that each hidden node's clip levels can differ.
* **Input drivers.** Input line ``i`` has gain ``scale[i]`` times nominal:
  the row ``i`` of ``input_gain`` is scaled, so the source volts of every
  sample (and of an exported netlist) carry it.
* **Amplifiers.** Amplifier ``j`` has forward gain ``scale[j]`` times nominal
  (its backward gain stays nominal).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from eqspice.circuits.network import Circuit


def split_diode_bias(circuit: Circuit) -> Circuit:
    """The same circuit with one bias source per diode instead of shared ones.

    A fixed node that carries no programmable edge (the diode bias lines
    ``vd_up``, ``vd_dn``) is replaced by one source per diode touching it,
    named ``<node>_<other end>`` (e.g. ``vd_up_h1_3``), at the same voltage.
    """
    k_in = len(circuit.input_nodes)
    on_edges = set(circuit.edges.ravel().tolist())
    names = circuit.node_names
    fixed_index = range(k_in, k_in + len(circuit.fixed_nodes))
    shared = {i for i in fixed_index if i not in on_edges and np.any(circuit.diodes == i)}
    if not shared:
        return circuit
    kept = [i for i in fixed_index if i not in shared]
    new_fixed = [names[i] for i in kept]
    new_volts = [circuit.fixed_volts[i - k_in] for i in kept]
    diode_ends: list[tuple[str, str]] = []
    for anode, cathode in circuit.diodes.tolist():
        ends = []
        for end, other in ((anode, cathode), (cathode, anode)):
            if end in shared:
                name = f"{names[end]}_{names[other] if other >= 0 else 'gnd'}"
                new_fixed.append(name)
                new_volts.append(circuit.fixed_volts[end - k_in])
                ends.append(name)
            else:
                ends.append("0" if end < 0 else names[end])
        diode_ends.append((ends[0], ends[1]))
    amplified = circuit.amplifiers.nodes if circuit.amplifiers is not None else ()
    new_names = circuit.input_nodes + tuple(new_fixed) + circuit.free_nodes + amplified
    index = {name: i for i, name in enumerate(new_names)}
    index["0"] = -1
    remap = np.array([index.get(n, -9) for n in names])  # removed sources carry no edge
    return dataclasses.replace(
        circuit,
        fixed_nodes=tuple(new_fixed),
        fixed_volts=tuple(float(v) for v in new_volts),
        edges=remap[circuit.edges],
        groups=tuple(
            dataclasses.replace(
                g,
                rows=None if g.rows is None else tuple(remap[list(g.rows)].tolist()),
                cols=None if g.cols is None else tuple(remap[list(g.cols)].tolist()),
            )
            for g in circuit.groups
        ),
        diodes=np.array([(index[a], index[c]) for a, c in diode_ends], dtype=int).reshape(-1, 2),
        amplifiers=None
        if circuit.amplifiers is None
        else dataclasses.replace(circuit.amplifiers, source=remap[circuit.amplifiers.source]),
    )


def with_mismatch(
    circuit: Circuit,
    *,
    diode_area: np.ndarray | None = None,
    fixed_volts: np.ndarray | None = None,
    input_gain_scale: np.ndarray | None = None,
    amplifier_gain_scale: np.ndarray | None = None,
) -> Circuit:
    """``circuit`` with per-diode area factors, per-source volts, per-line input gains and
    per-amplifier forward gains.

    Parameters
    ----------
    diode_area : (n_diodes,) SPICE area factor of each diode (IS scales with it), > 0.
    fixed_volts : (n_fixed,) volts of every fixed source.
    input_gain_scale : (n_inputs,) gain of each input line's driver relative to nominal.
    amplifier_gain_scale : (n_amplifiers,) forward gain of each amplifier relative to nominal, > 0;
        the backward gains stay nominal, so the ratios B/A differ from node to node and the
        circuit is non-conservative (docs/physics.md, "Amplifiers").
    """
    changes: dict = {}
    notes = []
    if amplifier_gain_scale is not None:
        amplifiers = circuit.amplifiers
        scale = np.asarray(amplifier_gain_scale, dtype=float)
        if amplifiers is None or scale.shape != (len(amplifiers.nodes),) or np.any(scale <= 0):
            n = 0 if amplifiers is None else len(amplifiers.nodes)
            raise ValueError(f"amplifier_gain_scale needs {n} positive values (one per amplifier)")
        changes["amplifiers"] = dataclasses.replace(amplifiers, forward_gain=amplifiers.forward_gain * scale)
        notes.append(f"mismatch: amplifier forward gains x {scale.min():.4g} .. {scale.max():.4g} of nominal")
    if diode_area is not None:
        diode_area = np.asarray(diode_area, dtype=float)
        if not len(circuit.diodes):
            raise ValueError("diode_area given for a circuit without diodes; leave it out")
        if diode_area.shape != (len(circuit.diodes),) or np.any(diode_area <= 0):
            raise ValueError(f"diode_area needs {len(circuit.diodes)} positive values")
        changes["diode_area"] = diode_area
        notes.append(f"mismatch: diode areas (IS x area) from {diode_area.min():.4g} to {diode_area.max():.4g}")
    if fixed_volts is not None:
        fixed_volts = np.asarray(fixed_volts, dtype=float)
        if fixed_volts.shape != (len(circuit.fixed_nodes),):
            raise ValueError(f"fixed_volts needs {len(circuit.fixed_nodes)} values")
        changes["fixed_volts"] = tuple(fixed_volts.tolist())
        notes.append("mismatch: every fixed source at its own drawn voltage (see the sources)")
    if input_gain_scale is not None:
        scale = np.asarray(input_gain_scale, dtype=float)
        if scale.shape != (len(circuit.input_nodes),):
            raise ValueError(f"input_gain_scale needs {len(circuit.input_nodes)} values")
        changes["input_gain"] = circuit.input_gain * scale[:, None]
        gains = [f"{n} {s:.6g}" for n, s in zip(circuit.input_nodes, scale.tolist())]
        notes.append("mismatch: input driver gains (relative, already in the source volts):")
        notes += ["  " + ", ".join(gains[i : i + 6]) for i in range(0, len(gains), 6)]
    if not changes:
        return circuit
    return dataclasses.replace(circuit, comments=circuit.comments + tuple(notes), **changes)
