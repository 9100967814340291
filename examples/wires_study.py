"""Test accuracy against the resistance of a crossbar's lines, trained off-chip or in situ.

For every wire resistance per segment ``r`` (``network.wire_resistance_ohm``):

* ``ideal->wired``: trained once on ideal wires, then evaluated on the wired chip
  (off-chip training, deployed);
* ``in situ, device``: trained on the wired chip, the update reading each
  memristor's own voltage (``training.device_voltage = "device"``);
* ``in situ, terminals``: trained on the wired chip, the update reading the source
  and column-node voltages at the array's edge (``"terminals"``);
* the first two again with column lines of at most ``--tile-rows`` rows.

At ``r = 0`` every curve is the ideal training.  With ``--ngspice-ohms``, each
curve's circuit at those resistances is evaluated again by ngspice (sweep mode) on
the first ``--ngspice-images`` test images, beside the native engine on the same
images: both accuracies and the largest voltage difference go into the table.

Writes ``<out>.csv`` and ``<out>.png``; runs are checkpointed under ``--runs``
(a finished run is read back, not retrained).

    python examples/wires_study.py examples/wires_digits.toml --out docs/results/wires_digits \\
        --runs /tmp/wires-digits --ngspice-ohms 2 10
    python examples/wires_study.py examples/wires_fashion.toml --out docs/results/wires_fashion --runs /tmp/wires-fashion
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eqspice.learning.run.build import open_session  # noqa: E402
from eqspice.learning.run.checkpoint import RunState, write_atomic  # noqa: E402
from eqspice.learning.run.config import load_config  # noqa: E402
from eqspice.learning.run.loop import evaluate, train  # noqa: E402

CURVES = {  # name: (trained on wires?, device_voltage, tiled?)
    "ideal->wired": (False, "device", False),
    "in situ, device": (True, "device", False),
    "in situ, terminals": (True, "terminals", False),
    "ideal->wired, tiles": (False, "device", True),
    "in situ, device, tiles": (True, "device", True),
}


#: Overrides every run and evaluation of the study shares (``--epochs``).
BASE: dict = {}


def wires(ohm: float, tile_rows: int | None) -> dict:
    return {**BASE, "network.wire_resistance_ohm": ohm, "network.tile_rows": tile_rows}


def trained(config_path: Path, overrides: dict, run_dir: Path) -> RunState:
    """The run's final state: read back if it finished, else trained (and checkpointed) now."""
    config = load_config(config_path, overrides)
    if (run_dir / "checkpoint.npz").exists():
        state = RunState.load(run_dir)
        if state.epoch >= config.training.epochs:
            return state
        return train(config, run_dir, resume=True, progress=False)
    return train(config, run_dir, progress=False)


def accuracy(config_path: Path, overrides: dict, g_s: np.ndarray, images: int | None = None) -> tuple[float, np.ndarray]:
    """Test accuracy of conductances ``g_s`` on the circuit of ``overrides``, and the free-phase voltages."""
    config = load_config(config_path, overrides)
    session = open_session(config)
    x, y = session.data.x_test[:images], session.data.y_test[:images]
    try:
        session.engine.load(session.circuit, g_s)
        if images is None:
            return evaluate(session, x, y, batch=256)[1], None
        v = session.engine.settle(session.inputs_v(x))
    finally:
        session.engine.close()
    return float(np.mean(np.argmax(session.scores(v), axis=1) == y)), v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="path without suffix of the .csv and .png")
    parser.add_argument("--runs", type=Path, required=True, help="folder of the training runs (checkpoints)")
    parser.add_argument("--ohms", type=float, nargs="+", default=[0, 0.5, 1, 2, 5, 10])
    parser.add_argument("--tile-rows", type=int, default=128)
    parser.add_argument("--curves", nargs="+", default=list(CURVES), choices=list(CURVES))
    parser.add_argument("--ngspice-ohms", type=float, nargs="*", default=[], help="points confirmed by ngspice")
    parser.add_argument("--ngspice-images", type=int, default=60)
    parser.add_argument("--epochs", type=int, help="override training.epochs (quick looks)")
    args = parser.parse_args()
    global BASE
    BASE = {} if args.epochs is None else {"training.epochs": args.epochs}
    args.runs.mkdir(parents=True, exist_ok=True)
    ideal = trained(args.config, dict(BASE), args.runs / "ideal")
    rows = earlier_rows(args.out.with_suffix(".csv"))  # other curves and resistances stay in the table
    for curve in args.curves:
        in_situ, reading, tiled = CURVES[curve]
        tile = args.tile_rows if tiled else None
        for ohm in args.ohms:
            started = time.perf_counter()
            circuit = wires(ohm, tile)
            if in_situ and ohm > 0:
                slug = f"{reading}_{ohm:g}ohm" + (f"_tiles{tile}" if tile else "")
                g_s = trained(args.config, {**circuit, "training.device_voltage": reading}, args.runs / slug).g_s
            else:
                g_s = ideal.g_s
            acc, _ = accuracy(args.config, circuit, g_s)
            row = dict(curve=curve, wire_resistance_ohm=ohm, tile_rows=tile or "", test_accuracy=acc)
            if ohm in args.ngspice_ohms:
                n = args.ngspice_images
                native_acc, v_native = accuracy(args.config, circuit, g_s, n)
                spice_acc, v_spice = accuracy(args.config, {**circuit, "engine.backend": "ngspice", "engine.ngspice_mode": "sweep"}, g_s, n)
                row.update(ngspice_images=n, native_subset_accuracy=native_acc, ngspice_subset_accuracy=spice_acc,
                           max_dv_v=float(np.abs(v_native - v_spice).max()))  # fmt: skip
            row["sec"] = round(time.perf_counter() - started, 1)
            print(row, flush=True)
            rows = [r for r in rows if not same_point(r, row)] + [row]
            write_table(rows, args.out.with_suffix(".csv"))
    plot(rows, args.out.with_suffix(".png"), load_config(args.config).data.name)


def earlier_rows(path: Path) -> list[dict]:
    """The rows of an earlier run of the study (numbers parsed), or none."""
    if not path.exists():
        return []
    rows = []
    for r in csv.DictReader(io.StringIO(path.read_text())):
        r = {key: value for key, value in r.items() if value != ""}
        for key in ("wire_resistance_ohm", "test_accuracy", "native_subset_accuracy", "ngspice_subset_accuracy", "max_dv_v", "sec"):
            if key in r:
                r[key] = float(r[key])
        for key in ("tile_rows", "ngspice_images"):
            if key in r:
                r[key] = int(r[key])
        r.setdefault("tile_rows", "")
        rows.append(r)
    return rows


def same_point(a: dict, b: dict) -> bool:
    return (a["curve"], a["wire_resistance_ohm"], a["tile_rows"]) == (b["curve"], b["wire_resistance_ohm"], b["tile_rows"])


def write_table(rows: list[dict], path: Path) -> None:
    fields = ["curve", "wire_resistance_ohm", "tile_rows", "test_accuracy", "ngspice_images",
              "native_subset_accuracy", "ngspice_subset_accuracy", "max_dv_v", "sec"]  # fmt: skip
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue().encode())


def plot(rows: list[dict], path: Path, dataset: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for curve in dict.fromkeys(r["curve"] for r in rows):
        pts = sorted((r for r in rows if r["curve"] == curve), key=lambda r: r["wire_resistance_ohm"])
        ax.plot([r["wire_resistance_ohm"] for r in pts], [r["test_accuracy"] for r in pts], "o-" if "tiles" not in curve else "s--", label=curve)
        spice = [r for r in pts if "ngspice_subset_accuracy" in r]
        if spice:
            ax.plot([r["wire_resistance_ohm"] for r in spice], [r["test_accuracy"] for r in spice], "k+", ms=12)
    ax.set_xscale("symlog", linthresh=0.5)
    ax.set_xlabel("wire resistance per line segment (ohm)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{dataset}: IR drop, off-chip vs in-situ training (+: confirmed by ngspice)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    write_atomic(path, buffer.getvalue())


if __name__ == "__main__":
    main()
