"""Export a trained network to other EDA tools: a ``.subckt`` with named ports and a testbench.

>>> import numpy as np
>>> from eqspice.circuits import crossbar
>>> from eqspice.circuits.export import export_texts
>>> c = crossbar(layers=(2, 2, 1))
>>> sub, bench = export_texts(c, np.full(c.n_edges, 1e-4), "net", np.zeros((3, 4)), dialect="spice")
>>> [line for line in sub.splitlines() if line.startswith(".subckt")]
['.subckt net in_0 in_1 inb_0 inb_1 out_0 bias_p bias_n vd_dn vd_up']

See docs/export.md for the dialects, what each was checked with, and the way back
(:mod:`eqspice.circuits.export.reader`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eqspice.circuits.export.design import Design, ExportError, design
from eqspice.circuits.export.ngspice import NgspiceWriter
from eqspice.circuits.export.spectre import SpectreWriter
from eqspice.circuits.export.spice import SpiceWriter
from eqspice.circuits.export.xyce import XyceWriter
from eqspice.circuits.network import Circuit

#: Dialect name -> writer class.
DIALECTS = {"ngspice": NgspiceWriter, "spice": SpiceWriter, "spectre": SpectreWriter, "xyce": XyceWriter}

__all__ = ["DIALECTS", "Design", "ExportError", "design", "export_texts", "write_export"]


def writer(dialect: str, lossy: bool = False) -> SpiceWriter:
    if dialect not in DIALECTS:
        raise ExportError(f"--dialect {dialect!r}: choose one of {', '.join(DIALECTS)}")
    return DIALECTS[dialect](lossy=lossy)


def export_texts(
    circuit: Circuit,
    g_s: np.ndarray,
    name: str,
    samples_v: np.ndarray,
    dialect: str = "ngspice",
    labels=None,
    notes=(),
    lossy: bool = False,
    not_expressed=(),
    probe_hidden: bool = False,
) -> tuple[str, str]:
    """Subcircuit text and testbench text of ``circuit`` with conductances ``g_s`` (siemens).

    Parameters
    ----------
    samples_v : ndarray, shape (n_samples, n_inputs)
        Volts on the input lines of each sample (``x @ circuit.input_gain.T``).
    dialect : {"ngspice", "spice", "spectre", "xyce"}
    labels : sequence of int, optional
        The samples' classes, written as a comment of the testbench.
    notes : sequence of str
        Comment lines for the header (where the circuit came from).
    lossy : bool
        Write what the dialect cannot express as comments instead of refusing.
    not_expressed : sequence of str
        Parts of the run the exported DC circuit lacks (e.g. its thermal noise):
        refused unless ``lossy``, then named in the header.
    probe_hidden : bool
        Hidden nodes as extra ports (for simulators that cannot probe inside a subcircuit).

    Raises
    ------
    ExportError
        Something the dialect cannot express (without ``lossy``), or a bad name.
    """
    w = writer(dialect, lossy)
    d = design(circuit, g_s, name, probe_hidden=probe_hidden)
    samples_v = np.atleast_2d(np.asarray(samples_v, dtype=float))
    if samples_v.shape[1] != len(d.inputs) or len(samples_v) < 1:
        raise ExportError(f"samples: need rows of {len(d.inputs)} input-line volts, got shape {samples_v.shape}")
    lost = [w.refuse(what)[0] for what in not_expressed]
    notes = (*notes, *(line.lstrip(w.comment + " ") for line in lost))
    return w.subckt(d, notes), w.testbench(d, samples_v, labels, notes)


def write_export(folder, name: str, dialect: str, texts: tuple[str, str]) -> tuple[Path, Path]:
    """Write ``folder/NAME.EXT`` (subcircuit) and ``folder/NAME_tb.EXT`` (testbench), each atomically."""
    from eqspice.circuits.netlist import write_text_atomic

    folder = Path(folder)
    ext = DIALECTS[dialect].extension
    paths = (folder / f"{name}{ext}", folder / f"{name}_tb{ext}")
    for path, text in zip(paths, texts):
        write_text_atomic(path, text)
    return paths
