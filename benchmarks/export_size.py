"""Export time of the 784-1024-10 Fashion-MNIST crossbar (1.6 million memristors), and its load in ngspice.

Run: ``python -m benchmarks.export_size [--json FILE] [--no-ngspice]``.
Target: the subcircuit and a one-sample testbench written in at most 10 s.

For each dialect the table gives the time to build the circuit description and
both texts (``export_texts``), to write them (atomically), their sizes, and for
``ngspice`` the wall time of ``ngspice -b`` reading the testbench and setting
up the circuit (a subprocess, the analysis card removed: the operating point of
1.6 million devices takes ngspice 39 more than ten minutes on this machine).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from eqspice.circuits import CrossbarSpec, crossbar
from eqspice.circuits.export import export_texts, write_export

#: The network of examples/fashion_mnist.toml.
FASHION = CrossbarSpec(
    layers=(784, 1024, 10), differential_outputs=True, input_scale_v=10.0, nonlinearity="diode", diode_bias_v=(0.4, -0.5)
)


def measure(dialect: str, folder: Path, run_ngspice: bool) -> dict:
    started = time.perf_counter()
    circuit = crossbar(FASHION)
    rng = np.random.default_rng(0)  # recorded: seed 0
    g_s = rng.uniform(1e-7, 2.5e-5, circuit.n_edges)
    x = rng.uniform(0.0, 1.0, (1, circuit.n_features))
    texts = export_texts(circuit, g_s, "fashion", x @ circuit.input_gain.T, dialect=dialect)
    render_sec = time.perf_counter() - started
    started = time.perf_counter()
    paths = write_export(folder, "fashion", dialect, texts)
    write_sec = time.perf_counter() - started
    row = {
        "dialect": dialect,
        "memristors": circuit.n_edges,
        "render_sec": round(render_sec, 2),
        "write_sec": round(write_sec, 2),
        "export_sec": round(render_sec + write_sec, 2),
        "subckt_mb": round(paths[0].stat().st_size / 1e6, 1),
        "testbench_mb": round(paths[1].stat().st_size / 1e6, 1),
        "ngspice_sec": None,
        "ngspice_ok": None,
    }
    if run_ngspice and dialect == "ngspice":
        # Load only: the testbench without its analysis card, so ngspice reads, expands and sets up
        # the circuit and stops (its operating point of 1.6 M devices takes more than 10 minutes).
        loaded = folder / "load_only.cir"
        analysis = re.compile(r"^\.dc .*$|^\.print dc[^\n]*(\n\+[^\n]*)*", re.M)  # .print needs the .dc
        loaded.write_text(analysis.sub("", paths[1].read_text()))
        started = time.perf_counter()
        result = subprocess.run(["ngspice", "-b", loaded.name], cwd=folder, capture_output=True, text=True)
        row["ngspice_sec"] = round(time.perf_counter() - started, 1)
        said = result.stdout + result.stderr  # with no analysis ngspice -b exits 1 after "no simulations run"
        row["ngspice_ok"] = "Circuit: " in said and "error" not in said.lower() and "no simulations run" in said
        loaded.unlink()
    for path in paths:
        path.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", default="benchmarks/export_size.json")
    parser.add_argument("--no-ngspice", action="store_true", help="do not load the testbench in ngspice")
    args = parser.parse_args()
    run_ngspice = not args.no_ngspice and shutil.which("ngspice") is not None
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(d, Path(tmp), run_ngspice) for d in ("ngspice", "spice", "xyce", "spectre")]
    print(f"{'dialect':>8} {'memristors':>11} {'render s':>9} {'write s':>8} {'export s':>9} {'subckt MB':>10} "
          f"{'bench MB':>9} {'ngspice s':>10} {'loads':>6}")
    for r in rows:
        ng = "-" if r["ngspice_sec"] is None else f"{r['ngspice_sec']:.1f}"
        ok = "-" if r["ngspice_ok"] is None else ("yes" if r["ngspice_ok"] else "NO")
        print(f"{r['dialect']:>8} {r['memristors']:>11} {r['render_sec']:>9.2f} {r['write_sec']:>8.2f} "
              f"{r['export_sec']:>9.2f} {r['subckt_mb']:>10.1f} {r['testbench_mb']:>9.1f} {ng:>10} {ok:>6}")
    with open(args.json, "w") as fh:
        json.dump(rows, fh, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
