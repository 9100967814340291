"""What an exported subcircuit holds, independent of any simulator's syntax.

A :class:`Design` is the trained network as ports and blocks of like elements
(resistors, diodes, voltage-controlled current sources), each block a few
parallel lists, so that a dialect writer turns a block into text with one
format per element and a million devices take a second.  A dialect that
cannot write a block's ``kind`` refuses it (or, with ``lossy``, writes it as a
comment): the kinds are the extension point for new elements (wire segments
are more ``resistor`` blocks; amplifiers would be new kinds such as ``vcvs``).

Port order, the same in every dialect: input lines, output nodes, then the
rails (bias lines and diode-bias sources), each named as in the run's circuit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eqspice.circuits.netlist import antisymmetric_gains, antisymmetric_names, edge_names
from eqspice.circuits.network import GROUND, NODE_NAME, Circuit, check_node_names
from eqspice.circuits.wires import wire_network


class ExportError(ValueError):
    """The circuit cannot be written in the asked dialect; the message names what and the way out."""


@dataclass(frozen=True)
class Block:
    """Elements of one kind, as parallel lists.

    kind : ``"resistor"`` (values in ohms), ``"diode"`` (values: area factors),
        ``"vccs"`` (nodes out+, out-, ctrl+, ctrl-; values: transconductance, siemens),
        ``"amplifier"`` / ``"saturating_amplifier"`` (see :func:`amplifier_block`).
    names : element names (a dialect adds its own prefix letter if it needs one).
    nodes : one list per terminal, each as long as ``names``.
    """

    kind: str
    comment: str
    names: list[str]
    nodes: tuple[list[str], ...]
    values: list[float]


@dataclass(frozen=True)
class Design:
    """A trained network ready to be written: name, ports with meanings, model, blocks."""

    name: str
    title: str
    comments: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    rails: tuple[str, ...]
    rail_volts: tuple[float, ...]
    probes: tuple[str, ...]
    diode_is_a: float
    diode_n: float
    diode_model: str
    blocks: tuple[Block, ...]
    n_devices: int

    @property
    def ports(self) -> tuple[str, ...]:
        return self.inputs + self.outputs + self.rails + self.probes


def design(circuit: Circuit, g_s: np.ndarray, name: str, probe_hidden: bool = False) -> Design:
    """The :class:`Design` of ``circuit`` with conductances ``g_s`` (siemens) as subcircuit ``name``.

    Only what settles the free phase is exported: the memristors (``R = 1/G``),
    the resistive lines of a wired crossbar (:mod:`eqspice.circuits.wires`, the
    memristors then sit on the line nodes), the diodes with their areas, the antisymmetric VCCS pairs of a non-reciprocal
    circuit and the output loads.  The nudge and the controller's current sources
    are the trainer's, not the network's, and are 0 in the free phase.

    ``probe_hidden`` adds every hidden node as a port after the rails, so a
    simulator that cannot probe inside a subcircuit (gnucap) can print it.
    """
    if not NODE_NAME.match(name) or not name[0].isalpha():
        raise ExportError(f"--subckt {name!r}: give a name of letters, digits and _, starting with a letter")
    g_s = np.asarray(g_s, dtype=float)
    if g_s.shape != (circuit.n_edges,) or not np.all(np.isfinite(g_s)) or np.any(g_s <= 0):
        raise ExportError(f"conductances: need {circuit.n_edges} finite positive values (siemens)")
    try:
        check_node_names(circuit.node_names)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    lines = wire_network(circuit)  # resistive row and column lines: the memristors sit on their nodes
    node = np.array(list(circuit.node_names) + list(lines.internal_nodes) + [GROUND], dtype=object)  # -1: ground
    a, b = lines.device_ends.T
    blocks = []
    resistance = (1.0 / g_s).tolist()
    element = edge_names(circuit)
    for group in circuit.groups:
        s = group.slice
        blocks.append(
            Block(
                "resistor",
                f"crossbar {group.name}: {' x '.join(map(str, group.shape))} memristors, R = 1/G (ohm)",
                element[s],
                (node[a[s]].tolist(), node[b[s]].tolist()),
                resistance[s],
            )
        )
    if lines.resistor_names:
        u, w = lines.resistor_ends.T
        blocks.append(
            Block(
                "resistor",
                "resistive lines: row/column-line segments and driver resistors (ohm), "
                "row drivers at column 0, column terminals past the last row",
                list(lines.resistor_names),
                (node[u].tolist(), node[w].tolist()),
                (1.0 / lines.resistor_s).tolist(),
            )
        )
    if len(circuit.diodes):
        da, dc = circuit.diodes.T
        area = np.ones(len(da)) if circuit.diode_area is None else np.asarray(circuit.diode_area, float)
        anodes, cathodes = node[da].tolist(), node[dc].tolist()
        blocks.append(
            Block(
                "diode",
                "hidden nonlinearity: diodes (anode cathode), area factor scales IS",
                [f"D{k}_{p}_{q}" for k, (p, q) in enumerate(zip(anodes, cathodes))],
                (anodes, cathodes),
                area.tolist(),
            )
        )
    if circuit.nonreciprocal is not None:
        gain = antisymmetric_gains(circuit, g_s)
        keep = np.flatnonzero(gain)
        pairs = antisymmetric_names(circuit)
        p, q = node[a[keep]].tolist(), node[b[keep]].tolist()
        ground = [GROUND] * len(keep)
        blocks.append(
            Block(
                "vccs",
                "non-reciprocal couplings: +a V(q) into p and -a V(p) into q (grounded VCCS, siemens)",
                [pairs[e][0] for e in keep] + [pairs[e][1] for e in keep],
                (ground + q, p + ground, q + p, ground + ground),
                gain[keep].tolist() * 2,
            )
        )
    if circuit.amplifiers is not None:
        blocks.append(amplifier_block(circuit))
    if circuit.output_load_s > 0:
        outs = list(circuit.output_nodes)
        blocks.append(
            Block(
                "resistor",
                f"output loads: {circuit.output_load_s:g} S to ground",
                [f"Rload_{n}" for n in outs],
                (outs, [GROUND] * len(outs)),
                [1.0 / circuit.output_load_s] * len(outs),
            )
        )
    hidden = tuple(n for n in circuit.free_nodes if n not in set(circuit.output_nodes))
    return Design(
        name=name,
        title=circuit.title,
        comments=circuit.comments,
        inputs=circuit.input_nodes,
        outputs=circuit.output_nodes,
        rails=circuit.fixed_nodes,
        rail_volts=tuple(float(v) for v in circuit.fixed_volts),
        probes=hidden if probe_hidden else (),
        diode_is_a=circuit.diode_model.is_a,
        diode_n=circuit.diode_model.n,
        diode_model=circuit.diode_model.name,
        blocks=tuple(blocks),
        n_devices=sum(len(b.names) for b in blocks),
    )


def amplifier_block(circuit: Circuit) -> Block:
    """The bidirectional amplifiers: nodes (hidden, forward source output, amplifier output); values
    ``(A, B)``, or ``(A, B, low, high)`` with rails (kind ``saturating_amplifier``)."""
    amplifiers = circuit.amplifiers
    hidden = [circuit.node_names[h] for h in amplifiers.source.tolist()]
    gains = list(zip(amplifiers.forward_gain.tolist(), amplifiers.backward_gain.tolist()))
    if amplifiers.rails_v is None:
        kind, values = "amplifier", gains
        what = "forward VCVS E (gain A), 0 V sense source V, backward CCCS F (gain B out of the hidden node)"
    else:
        kind, values = "saturating_amplifier", [(*g, *amplifiers.rails_v) for g in gains]
        what = "forward behavioural source B saturating at the rails, 0 V sense source V, backward CCCS F"
    return Block(
        kind,
        f"bidirectional amplifiers: {what}",
        [f"amp_{h}" for h in hidden],
        (hidden, [f"amp_src_{h}" for h in hidden], list(amplifiers.nodes)),
        values,
    )


def sample_copy(design: Design, k: int) -> Design:
    """``design`` with its nodes renamed ``s{k}_<node>`` (rails and ground kept) and its elements
    ``<name>_s{k}``: copy k of a flat N-sample testbench."""
    keep = {GROUND, *design.rails}
    rename = lambda nodes: [n if n in keep else f"s{k}_{n}" for n in nodes]  # noqa: E731
    blocks = tuple(
        Block(b.kind, b.comment, [f"{n}_s{k}" for n in b.names], tuple(rename(col) for col in b.nodes), b.values)
        for b in design.blocks
    )
    return Design(**{**design.__dict__, "blocks": blocks})
