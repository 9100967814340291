"""The portable SPICE subset (``--dialect spice``) and the base of the SPICE-family writers.

Portable means: R, V, D with an explicit ``.model``, linear G sources,
``.subckt``/``X``, ``.options`` of SPICE2/3 names, ``.temp``, ``.op`` and
``.print``; no behavioural sources, no ``.control``, no ngspice-only options.
The N-sample testbench therefore has no sample-index sweep: it instantiates
the subcircuit once per sample, each with its own input sources, and one
``.op`` settles them all (the instances share nothing but the rail sources,
so each is the circuit of one sample).

A writer turns each :class:`~eqspice.circuits.export.design.Block` into lines
with the method named for its kind (``resistor``, ``diode``, ``vccs``); a
kind without a method is one the dialect cannot express.
"""

from __future__ import annotations

import numpy as np

from eqspice.circuits.constants import BOLTZMANN_J_PER_K, ELECTRON_CHARGE_C, thermal_voltage
from eqspice.circuits.constants import NOMINAL_TEMPERATURE_C as TEMPERATURE_C
from eqspice.circuits.export.design import Block, Design, ExportError, sample_copy


def fmt(x: float) -> str:
    """The shortest text that reads back as the same double."""
    return repr(float(x))


def wrapped(tokens, per_line: int = 10) -> str:
    """`` a b c ...`` with a ``+`` continuation line every ``per_line`` tokens (gnucap reads lines of
    about a thousand characters at most; SPICE continues a card on lines that start with ``+``)."""
    tokens = list(tokens)
    return " " + "\n+ ".join(" ".join(tokens[i : i + per_line]) for i in range(0, len(tokens), per_line))


class SpiceWriter:
    """Writes a :class:`Design` as SPICE text; subclasses change the parts their dialect does differently."""

    dialect = "spice"
    comment = "*"
    extension = ".cir"
    #: SPICE2/3 options: the tolerances under which ngspice meets Kirchhoff's law
    #: to ~1e-12 A on diode networks, GMIN across every junction, 15 printed digits.
    #: Ports above which the testbench holds flat copies instead of instances: gnucap 0.36 instantiates
    #: at most 100 ("can't find" the 101st port), ngspice 39 about 1000 ("N_GLOBAL_NODES overflow").
    max_ports: int | None = 100
    options = {"reltol": 1e-9, "abstol": 1e-15, "vntol": 1e-12, "gmin": 1e-12, "tnom": TEMPERATURE_C, "numdgt": 15}

    def __init__(self, lossy: bool = False):
        self.lossy = lossy
        #: One line per thing written as a comment instead of an element (``lossy``).
        self.lost: list[str] = []
        self._body: tuple[Design, list[str]] | None = None

    # -- elements -------------------------------------------------------------------------
    def resistor(self, block: Block) -> list[str]:
        return [f"{n} {a} {b} {r!r}" for n, a, b, r in zip(block.names, *block.nodes, block.values)]

    def diode(self, block: Block, model: str) -> list[str]:
        return [f"{n} {a} {c} {model} area={area!r}" for n, a, c, area in zip(block.names, *block.nodes, block.values)]

    def vccs(self, block: Block) -> list[str]:
        return [f"{n} {p} {m} {cp} {cm} {g!r}" for n, p, m, cp, cm, g in zip(block.names, *block.nodes, block.values)]

    def amplifier(self, block: Block) -> list[str]:
        """Forward ``E`` from the hidden node, 0 V ``V`` sensing the current into the next crossbar,
        backward ``F`` drawing B times that current out of the hidden node."""
        lines = []
        for n, h, src, out, (a, b) in zip(block.names, *block.nodes, block.values):
            lines += [f"E{n} {src} 0 {h} 0 {a!r}", f"V{n} {src} {out} dc 0", f"F{n} {h} 0 V{n} {b!r}"]
        return lines

    def model_card(self, design: Design) -> list[str]:
        return [
            f"{self.comment} junction diode, SPICE level 1; BV not given: no breakdown; IKF not given: no high injection",
            f".model {design.diode_model} D(IS={fmt(design.diode_is_a)} N={fmt(design.diode_n)} RS=0 CJO=0 TT=0 "
            f"EG=1.11 XTI=3 TNOM={fmt(TEMPERATURE_C)})",
        ]

    def subckt_open(self, design: Design) -> list[str]:
        return [f".subckt {design.name}" + wrapped(design.ports)]

    def subckt_close(self, design: Design) -> list[str]:
        return [f".ends {design.name}"]

    def instance(self, name: str, nodes: list[str], design: Design) -> str:
        return f"{name}" + wrapped([*nodes, design.name])

    def vsource(self, name: str, node: str, volts: float) -> str:
        return f"{name} {node} 0 dc {fmt(volts)}"

    def option_lines(self) -> list[str]:
        return [".options " + " ".join(f"{k}={v:g}" for k, v in self.options.items()), f".temp {fmt(TEMPERATURE_C)}"]

    def end(self) -> list[str]:
        return [".end", ""]

    # -- the two files ------------------------------------------------------------------------
    def header(self, design: Design, notes=()) -> list[str]:
        c = self.comment
        vt = thermal_voltage(TEMPERATURE_C)
        lines = [f"{c} {design.title}: subcircuit {design.name}, dialect {self.dialect}"]
        lines += [f"{c} {line}" for line in (*design.comments, *notes)]
        lines += [
            f"{c} units: volts, ohms, siemens, amperes; {design.n_devices} elements",
            f"{c} physics at {TEMPERATURE_C:g} degC: Vt = kT/q = {vt:.9g} V with k = {BOLTZMANN_J_PER_K} J/K, "
            f"q = {ELECTRON_CHARGE_C} C; a simulator with other constants",
            f"{c}   (gnucap: CODATA 1973) sees another Vt: match it by its temperature, see docs/export.md",
        ]
        return lines

    def port_lines(self, design: Design) -> list[str]:
        c = self.comment
        rails = [f"{n}={v:g}V" for n, v in zip(design.rails, design.rail_volts)]
        groups = [
            ("inputs", design.inputs, "input line volts, driven"),
            ("outputs", design.outputs, "free, read"),
            ("rails", rails, "bias lines and diode bias, hold at these volts"),
            ("probes", design.probes, "hidden nodes, leave unconnected"),
        ]
        lines = [f"{c} ports, in order:"]
        for what, names, meaning in groups:
            if names:  # ten names a line: gnucap reads lines of about a thousand characters at most
                lines.append(f"{c}   {what} ({len(names)}, {meaning}):")
                lines += [f"{c}     " + " ".join(names[i : i + 10]) for i in range(0, len(names), 10)]
        return lines

    def body(self, design: Design) -> list[str]:
        """The element lines of ``design`` (computed once per design: a testbench repeats its subcircuit)."""
        if self._body is not None and self._body[0] is design:
            return self._body[1]
        lines = []
        for block in design.blocks:
            lines.append(f"{self.comment} {block.comment}")
            write = getattr(self, block.kind, None)
            if write is None:
                lines += self.refuse(f"{len(block.names)} {block.kind} elements ({block.comment})")
            elif block.kind == "diode":
                lines += write(block, design.diode_model)
            else:
                lines += write(block)
        self._body = (design, lines)
        return lines

    def refuse(self, what: str) -> list[str]:
        """Lines for something this dialect cannot express: a comment with ``lossy``, else an error."""
        if not self.lossy:
            raise ExportError(f"dialect {self.dialect} cannot express {what}; pass --lossy to write it as a comment")
        self.lost.append(what)
        return [f"{self.comment} NOT EXPRESSED in dialect {self.dialect} (--lossy): {what}"]

    def subckt(self, design: Design, notes=()) -> str:
        """The subcircuit file: header, model card, ``.subckt`` ... ``.ends``."""
        lines = self.header(design, notes) + self.port_lines(design) + self.model_card(design)
        lines += self.subckt_open(design) + self.body(design) + self.subckt_close(design)
        return "\n".join(lines + [""])

    def rail_sources(self, design: Design) -> list[str]:
        return [self.vsource(f"V{n}", n, v) for n, v in zip(design.rails, design.rail_volts)]

    def testbench(self, design: Design, samples_v: np.ndarray, labels=None, notes=()) -> str:
        """The subcircuit followed by one instance per sample (rows of ``samples_v``, input line volts)
        and one ``.op``; it prints every output (and probe) of every instance."""
        c = self.comment
        samples_v = np.atleast_2d(np.asarray(samples_v, dtype=float))
        flat = self.max_ports is not None and len(design.ports) > self.max_ports
        if flat:
            lines = self.header(design, notes) + self.port_lines(design) + self.model_card(design)
            lines.append(
                f"{c} testbench: {len(samples_v)} samples, one flat copy each (nodes s<k>_<port>): "
                f"{len(design.ports)} ports are more than {self.max_ports}, the most every simulator it targets instantiates"
            )
        else:
            lines = [self.subckt(design, notes).rstrip("\n"), "", f"{c} testbench: {len(samples_v)} samples, one instance each"]
        lines += self.label_lines(design, labels)
        lines += self.rail_sources(design)
        printed = []
        for k, x in enumerate(samples_v):
            top = f"s{k}_" if len(samples_v) > 1 else ""  # one sample: the ports' own names
            ins = [top + n for n in design.inputs]
            outs = [top + n for n in design.outputs]
            probes = [top + n for n in design.probes]
            lines += [self.vsource(f"V{n}", n, v) for n, v in zip(ins, x.tolist())]
            if flat:
                lines += self.body(sample_copy(design, k) if top else design)
            else:
                lines.append(self.instance(f"X{k}", ins + outs + list(design.rails) + probes, design))
            printed += outs + probes
        lines += self.option_lines() + self.print_op(printed) + self.end()
        return "\n".join(lines)

    def label_lines(self, design: Design, labels) -> list[str]:
        c = self.comment
        lines = [f"{c} class score = readout @ outputs, the predicted class its argmax (see the header)"]
        if labels is not None:
            text = " ".join(str(int(y)) for y in labels)
            lines += [f"{c} labels of the samples: " + text[i : i + 100] for i in range(0, len(text), 100)]
        return lines

    def print_op(self, nodes: list[str]) -> list[str]:
        return [".print op" + wrapped([f"v({n})" for n in nodes]), ".op"]
