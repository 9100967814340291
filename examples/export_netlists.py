"""Regenerate netlists/: the trained XOR, Iris and digits circuits as subcircuits and testbenches in every dialect.

Each example config is trained once with the native engine into ``--runs``
(skipped when a finished run is there already), then exported with
``eqspice export RUN --subckt NAME --dialect D --samples N`` into
``netlists/<dialect>/``: ``NAME.cir`` (``.scs`` for Spectre), the subcircuit, and
``NAME_tb.cir``, a testbench of the first N test samples.

Run (about two minutes on 2 cores):

    .venv/bin/python examples/export_netlists.py [--runs runs/netlists]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eqspice.learning.cli import main as eqspice
from eqspice.learning.run.checkpoint import RunState
from eqspice.learning.run.config import load_config

ROOT = Path(__file__).resolve().parents[1]

#: name -> (config, test samples in the testbench: all for the small sets, a few digits to keep files small)
CIRCUITS = {"xor": ("xor.toml", "all"), "iris": ("iris.toml", "all"), "digits": ("digits.toml", "5")}
DIALECTS = ("ngspice", "spice", "spectre", "xyce")


def trained(name: str, config: str, runs: Path) -> Path:
    run_dir = runs / name
    epochs = load_config(ROOT / "examples" / config).training.epochs
    if not (run_dir / "checkpoint.npz").exists() or RunState.load(run_dir).epoch < epochs:
        code = eqspice(["train", str(ROOT / "examples" / config), "--run-dir", str(run_dir), "--backend", "native", "--quiet"])
        if code:
            raise SystemExit(code)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/netlists", help="where the trained runs are kept")
    parser.add_argument("--out", default=str(ROOT / "netlists"), help="folder of the dialect folders")
    args = parser.parse_args()
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    for name, (config, samples) in CIRCUITS.items():
        run_dir = trained(name, config, runs)
        for dialect in DIALECTS:
            out = Path(args.out) / dialect
            out.mkdir(parents=True, exist_ok=True)
            code = eqspice(["export", str(run_dir), "--subckt", name, "-o", str(out), "--dialect", dialect, "--samples", samples])
            if code:
                raise SystemExit(code)


if __name__ == "__main__":
    main()
