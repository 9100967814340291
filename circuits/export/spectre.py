"""``--dialect spectre``: the Spectre netlist language (``simulator lang=spectre``).

Rules followed (Spectre circuit simulator reference): ``//`` comments, ``\\``
continues a line, node lists in parentheses, ``name (nodes) master param=value``
instances (``resistor r=``, ``vsource dc=``, ``vccs gm=``, a diode instance of a
``model NAME diode`` card with ``area=``), ``subckt NAME (ports)`` ... ``ends
NAME``, node ``0`` is ground, an ``options`` statement for tolerances, GMIN and
temperature, ``dc`` for the operating point, ``save`` for what to keep.  The
testbench instantiates the subcircuit once per sample, like the portable form.
No Spectre is installed here: the file is checked against those rules only.
"""

from __future__ import annotations

from eqspice.circuits.export.spice import TEMPERATURE_C, SpiceWriter, fmt


class SpectreWriter(SpiceWriter):
    dialect = "spectre"
    comment = "//"
    extension = ".scs"
    max_ports = None
    amplifier = None  # no E/F controlled-source cards written for spectre yet: refused
    saturating_amplifier = None

    def resistor(self, block):
        return [f"{n} ({a} {b}) resistor r={r!r}" for n, a, b, r in zip(block.names, *block.nodes, block.values)]

    def diode(self, block, model):
        return [f"{n} ({a} {c}) {model} area={area!r}" for n, a, c, area in zip(block.names, *block.nodes, block.values)]

    def vccs(self, block):
        return [
            f"{n} ({p} {m} {cp} {cm}) vccs gm={g!r}" for n, p, m, cp, cm, g in zip(block.names, *block.nodes, block.values)
        ]

    def header(self, design, notes=()):
        return ["simulator lang=spectre", *super().header(design, notes)]

    def model_card(self, design):
        return [
            "// junction diode; bv not given: no breakdown; imax large so the exponential is never linearised",
            f"model {design.diode_model} diode is={fmt(design.diode_is_a)} n={fmt(design.diode_n)} rs=0 cjo=0 tt=0 "
            f"eg=1.11 xti=3 tnom={fmt(TEMPERATURE_C)} imax=1e3",
        ]

    def subckt_open(self, design):
        ports = list(design.ports)
        rows = [" ".join(ports[i : i + 12]) for i in range(0, len(ports), 12)]
        return [f"subckt {design.name} (" + " \\\n    ".join(rows) + ")"]

    def subckt_close(self, design):
        return [f"ends {design.name}"]

    def instance(self, name, nodes, design):
        rows = [" ".join(nodes[i : i + 12]) for i in range(0, len(nodes), 12)]
        return f"{name} (" + " \\\n    ".join(rows) + f") {design.name}"

    def vsource(self, name, node, volts):
        return f"{name} ({node} 0) vsource dc={fmt(volts)}"

    def option_lines(self):
        t = fmt(TEMPERATURE_C)
        return [f"eqspiceOptions options temp={t} tnom={t} gmin=1e-12 reltol=1e-9 vabstol=1e-12 iabstol=1e-15"]

    def print_op(self, nodes):
        rows = [" ".join(nodes[i : i + 12]) for i in range(0, len(nodes), 12)]
        return ["save " + " \\\n    ".join(rows), "dcOp dc"]

    def end(self):
        return [""]
