"""Test accuracy against nudge strength beta, for a controller that reads voltages
through a converter of finite resolution.

EP's update is a difference between two phases.  A nudge much smaller than the
device conductances moves the node voltages by less than the controller can
read, and learning stops; a finite nudge keeps a readable contrast.  This
script trains the same network at several beta (siemens, also given as a
fraction of g_max) and writes a table and a plot.

Run (about 4 minutes on 2 cores with the defaults):

    .venv/bin/python examples/beta_sweep.py [--config examples/fashion_mnist_3v.toml]
        [--betas 1e-8 1e-7 1e-6 1e-5 1e-4] [--resolution-v 1e-4] [--train 10000] [--epochs 2]

Writes docs/results/beta_sweep.csv and docs/results/beta_sweep.png.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tqdm import tqdm  # noqa: E402

from eqspice.learning.run.config import load_config  # noqa: E402
from eqspice.learning.run.loop import train  # noqa: E402

HERE = Path(__file__).parent
RESULTS = HERE.parent / "docs" / "results"  # where the write-ups and their data live


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(HERE / "fashion_mnist_3v.toml"))
    parser.add_argument("--betas", nargs="+", type=float, default=[1e-8, 1e-7, 1e-6, 1e-5, 1e-4])
    parser.add_argument("--resolution-v", nargs="+", type=float, default=[1e-4, 0.0])
    parser.add_argument("--train", type=int, default=10000, help="training samples (first N)")
    parser.add_argument("--test", type=int, default=2000, help="test samples (first N)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "beta_sweep"))
    args = parser.parse_args()

    rows = []
    cells = [(r, b) for r in args.resolution_v for b in args.betas]
    for resolution, beta in tqdm(cells, desc="beta sweep", unit="run"):
        config = load_config(
            args.config,
            {
                "training.beta_s": beta,
                "training.readout_resolution_v": resolution,
                "training.epochs": args.epochs,
                "data.limit_train": args.train,
                "data.limit_test": args.test,
            },
        )
        state = train(config, progress=False)  # no run folder: the returned state is all this needs
        last = state.metrics[-1]
        rows.append(
            {
                "beta_s": beta,
                "beta_over_g_max": beta / config.device.g_max_s,
                "readout_resolution_v": resolution,
                "test_accuracy": last["test_accuracy"],
                "test_loss_v2": last["test_loss"],
                "train_accuracy": last["train_accuracy"],
            }
        )
        tqdm.write(f"beta {beta:.0e} S, readout {resolution:g} V: test accuracy {last['test_accuracy']:.4f}")

    with open(f"{args.out}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'beta (S)':>10} {'beta/g_max':>11} {'readout (V)':>12} {'test acc':>9}")
    for r in rows:
        print(
            f"{r['beta_s']:>10.0e} {r['beta_over_g_max']:>11.0e} {r['readout_resolution_v']:>12g} "
            f"{r['test_accuracy']:>9.4f}"
        )

    fig, ax = plt.subplots(figsize=(6, 4))
    for resolution in args.resolution_v:
        sel = [r for r in rows if r["readout_resolution_v"] == resolution]
        label = f"readout step {resolution * 1e6:g} uV" if resolution else "exact readout"
        ax.plot([r["beta_s"] for r in sel], [100 * r["test_accuracy"] for r in sel], "-o", label=label)
    ax.set(xscale="log", xlabel="nudge beta (S); devices span 1e-7 to 1e-4 S", ylabel="test accuracy (%)", ylim=(0, 100))
    ax.set_title(f"{config.data.name}: {args.train} training samples, {args.epochs} epochs")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(f"{args.out}.png", dpi=110, bbox_inches="tight")
    print(f"wrote {args.out}.csv and {args.out}.png")


if __name__ == "__main__":
    main()
