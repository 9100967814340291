"""Learning curves of digits crossbars with 1, 2 and 3 hidden layers, with and without amplifiers.

Every run is ``examples/digits_deep.toml`` (the same recipe: Adam, cosine schedule,
centred cross-entropy EP, native engine) with ``network.layers`` set to
64-32-10, 64-32-32-10 or 64-32-32-32-10 and ``network.amplifier_gain`` either the
config's gain or unset (a passive crossbar).  Writes ``<out>.csv`` (epoch, test
accuracy and train loss of every run) and ``<out>.png``; runs are kept under
``--runs`` (a finished run is read back, not retrained).

    python examples/deep_networks.py --epochs 3 --out docs/results/deep_networks --runs /tmp/deep
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from eqspice.learning.run.checkpoint import write_atomic  # noqa: E402
from eqspice.learning.run.config import load_config  # noqa: E402
from eqspice.learning.run.loop import train  # noqa: E402

CONFIG = Path(__file__).resolve().parent / "digits_deep.toml"
DEPTHS = {1: [64, 32, 10], 2: [64, 32, 32, 10], 3: [64, 32, 32, 32, 10]}


def run_name(depth: int, amplified: bool) -> str:
    return f"depth{depth}_{'amplifiers' if amplified else 'passive'}"


def curves(runs: Path, epochs: int, progress: bool) -> dict[str, list[dict]]:
    """``{run name: metrics rows}``, training the runs that have no finished metrics yet."""
    out = {}
    for depth, layers in DEPTHS.items():
        for amplified in (False, True):
            overrides = {"network.layers": layers, "training.epochs": epochs}
            if not amplified:
                overrides["network.amplifier_gain"] = None
            run_dir = runs / run_name(depth, amplified)
            metrics = run_dir / "metrics.csv"
            rows = list(csv.DictReader(metrics.open())) if metrics.exists() else []
            if len(rows) < epochs:
                train(load_config(CONFIG, overrides), run_dir, resume=(run_dir / "checkpoint.npz").exists(), progress=progress)
                rows = list(csv.DictReader(metrics.open()))
            out[run_name(depth, amplified)] = rows[:epochs]
    return out


def write(out: Path, results: dict[str, list[dict]], gain: float) -> None:
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(["run", "hidden_layers", "amplifier_gain", "epoch", "test_accuracy", "train_loss"])
    for name, rows in results.items():
        depth = int(name[5])
        for r in rows:
            w.writerow([name, depth, gain if "amplifiers" in name else 0, r["epoch"], r["test_accuracy"], r["train_loss"]])
    write_atomic(out.with_suffix(".csv"), text.getvalue().encode())
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {1: "tab:blue", 2: "tab:orange", 3: "tab:green"}
    for name, rows in results.items():
        depth = int(name[5])
        amplified = "amplifiers" in name
        ax.plot(
            [int(r["epoch"]) for r in rows],
            [100 * float(r["test_accuracy"]) for r in rows],
            "-o" if amplified else "--s",
            color=colours[depth],
            label=f"{depth} hidden, " + (f"amplifiers A = {gain:g}" if amplified else "passive"),
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("digits, 32 nodes per hidden layer, native engine")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    write_atomic(out.with_suffix(".png"), buf.getvalue())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3, help="epochs of every run (default 3)")
    p.add_argument("--out", default="docs/results/deep_networks", help="CSV and PNG path without suffix")
    p.add_argument("--runs", default="runs/deep_networks", help="folder of the runs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args()
    results = curves(Path(args.runs), args.epochs, not args.quiet)
    write(Path(args.out), results, load_config(CONFIG).network.amplifier_gain)
    for name, rows in results.items():
        print(f"{name:<24} " + " ".join(f"{100 * float(r['test_accuracy']):5.1f}" for r in rows))


if __name__ == "__main__":
    main()
