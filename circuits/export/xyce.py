"""``--dialect xyce``: the subcircuit and the sample-index sweep in the syntax of Xyce's reference guide.

Differences from the ngspice form, each a rule of that guide: options are set
per package (``.OPTIONS DEVICE`` holds GMIN, TNOM and the temperature, ``.OPTIONS
NONLIN`` the Newton tolerances); a behavioural source's expression is in
braces, ``V={table(V(sample_index), 0, x0, 1, x1, ...)}``; the diode area is
the instance's ``AREA=`` parameter; there is no ``trnoise``, so a noisy run
is refused (or, with ``--lossy``, exported without its noise, said in a comment).
No Xyce is installed here: the file is checked against those rules only.
"""

from __future__ import annotations

from eqspice.circuits.export.ngspice import SAMPLE_INDEX, NgspiceWriter, by_sample_index
from eqspice.circuits.export.spice import TEMPERATURE_C, fmt, wrapped


class XyceWriter(NgspiceWriter):
    dialect = "xyce"
    max_ports = None
    saturating_amplifier = None  # ngspice's ternary B-source expression is not written for Xyce: refused

    def diode(self, block, model):
        return [f"{n} {a} {c} {model} AREA={area!r}" for n, a, c, area in zip(block.names, *block.nodes, block.values)]

    def option_lines(self):
        t = fmt(TEMPERATURE_C)
        return [
            f".OPTIONS DEVICE GMIN=1e-12 TNOM={t} TEMP={t}",
            ".OPTIONS NONLIN RELTOL=1e-9 ABSTOL=1e-15 DELTAXTOL=1e-12",
        ]

    def sample_source(self, node: str, values) -> str:
        return f"B{node} {node} 0 V={{{by_sample_index(values, 'table')}}}"

    def sweep(self, n: int) -> str:
        return f".DC V{SAMPLE_INDEX} 0 {n - 1} 1"

    def print_dc(self, nodes):
        return [".PRINT DC FORMAT=CSV" + wrapped([f"V({n})" for n in nodes])]

    def end(self):
        return [".END", ""]
