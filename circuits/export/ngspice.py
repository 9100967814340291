"""``--dialect ngspice``: the subcircuit in ngspice's syntax, and a testbench that sweeps a sample index.

The N samples are the points of one ``.dc`` sweep of ``Vsample_index`` over
0, 1, ..., N-1: each input line is a behavioural source
``pwl(V(sample_index), 0, x0, 1, x1, ...)`` (ngspice's B source), so one
instance of the subcircuit settles every sample in turn, Newton starting from
the previous point.  Printing goes through ``.print dc``; ``ngspice -b -r FILE``
also writes every node (``v(xnet.h1_0)``) to a raw file.  A network of more than
:attr:`~eqspice.circuits.export.spice.SpiceWriter.max_ports` ports is written flat into the testbench (its top-level
nodes are the port names, ``v(h1_0)``), since ngspice cannot instantiate it.
"""

from __future__ import annotations

import numpy as np

from eqspice.circuits.export.design import Design
from eqspice.circuits.export.spice import TEMPERATURE_C, SpiceWriter, wrapped
from eqspice.circuits.netlist import SAMPLE_INDEX, _by_sample_index, rail_expression

#: The table of one input line over the sample index (netlist's, shared with the engine's sweeps).
by_sample_index = _by_sample_index


class NgspiceWriter(SpiceWriter):
    dialect = "ngspice"
    max_ports = 1000
    options = {"reltol": 1e-9, "abstol": 1e-15, "vntol": 1e-12, "gmin": 1e-12, "tnom": TEMPERATURE_C, "temp": TEMPERATURE_C}

    def saturating_amplifier(self, block):
        """As :meth:`amplifier`, the forward source a behavioural one with the rails' smooth saturation."""
        lines = []
        for n, h, src, out, (a, b, lo, hi) in zip(block.names, *block.nodes, block.values):
            lines += [
                f"B{n} {src} 0 V = {rail_expression(h, a, (lo, hi))}",
                f"V{n} {src} {out} dc 0",
                f"F{n} {h} 0 V{n} {b!r}",
            ]
        return lines

    def option_lines(self):
        return [".options " + " ".join(f"{k}={v:g}" for k, v in self.options.items())]

    def sample_source(self, node: str, values) -> str:
        return f"B{node} {node} 0 V = {by_sample_index(values)}"

    def sweep(self, n: int) -> str:
        return f".dc V{SAMPLE_INDEX} 0 {n - 1} 1"

    def print_dc(self, nodes) -> list[str]:
        return [".print dc" + wrapped([f"v({n})" for n in nodes])]

    def testbench(self, design: Design, samples_v, labels=None, notes=()) -> str:
        """The subcircuit, one instance ``Xnet`` and a ``.dc`` sweep of the sample index (one point per sample)."""
        c = self.comment
        samples_v = np.atleast_2d(np.asarray(samples_v, dtype=float))
        n = len(samples_v)
        if self.max_ports is None or len(design.ports) <= self.max_ports:
            lines = [self.subckt(design, notes).rstrip("\n"), ""]
            instance = [self.instance("Xnet", list(design.ports), design)]
        else:
            lines = self.header(design, notes) + self.port_lines(design) + self.model_card(design)
            lines.append(
                f"{c} the network, flat: ngspice 39 instantiates a subcircuit of at most {self.max_ports} ports, "
                f"this one has {len(design.ports)} (see {design.name}{self.extension} for the .subckt)"
            )
            lines += self.body(design) + [""]
            instance = []
        lines.append(f"{c} testbench: {n} samples, point k of the sweep of V({SAMPLE_INDEX}) applies sample k")
        lines += self.label_lines(design, labels)
        lines.append(f"V{SAMPLE_INDEX} {SAMPLE_INDEX} 0 dc 0")
        lines.append(f"R{SAMPLE_INDEX} {SAMPLE_INDEX} 0 1")  # a load, so the index node is not floating anywhere
        lines += [self.sample_source(node, samples_v[:, i]) for i, node in enumerate(design.inputs)]
        lines += self.rail_sources(design)
        lines += instance
        lines += self.option_lines() + self.print_dc([*design.outputs, *design.probes]) + [self.sweep(n)] + self.end()
        return "\n".join(lines)
