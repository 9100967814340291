"""What a circuit costs to train and to run, against its size and its devices' conductance range.

Each case trains one run configuration with the native engine and reads the
energy and time columns of its ``metrics.csv`` (docs/physics.md, "What a run
accounts for"):

* sizes: ``examples/digits.toml`` (64-32-10, 1437 training images, 8 epochs),
  ``examples/energy_fashion.toml`` (784-100-10 on 3000 Fashion-MNIST images,
  3 epochs) and the same at 784-256-10;
* device ranges: the configs' own window ``[g_min_s, g_max_s]`` and the same
  window scaled 10x down.  Every conductance the config sets scales with it
  (initial range, nudge ``beta_s``, output load); the diodes do not, so their
  clip is relatively ten times stiffer in the scaled circuit.  Were the circuit
  linear, it would be the same circuit at a tenth of the conductance: the same
  voltages, a tenth of the static power, ten times the settling time, the same
  energy per phase (docs/physics.md, "What a run accounts for").

Run (about 5 minutes on a shared 2-core machine):

    .venv/bin/python examples/energy_study.py [--out runs/energy_study]

Writes one run folder per case under ``--out`` and docs/results/energy.csv,
docs/results/energy.md's table (printed; paste it) and docs/results/energy.png.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from eqspice.learning.run.config import load_config  # noqa: E402
from eqspice.learning.run.loop import train  # noqa: E402
from eqspice.learning.run.report import read_metrics  # noqa: E402

HERE = Path(__file__).parent
RESULTS = HERE.parent / "docs" / "results"

#: (name, config, overrides): the network sizes.
SIZES = (
    ("64-32-10 digits", HERE / "digits.toml", {"engine.backend": "native", "energy.settling_samples": 8}),
    ("784-100-10 fashion", HERE / "energy_fashion.toml", {}),
    ("784-256-10 fashion", HERE / "energy_fashion.toml", {"network.layers": [784, 256, 10]}),
)

#: (name, factor on every conductance of the circuit).
RANGES = (("g_max 100 uS", 1.0), ("g_max 10 uS", 0.1))

#: Keys in siemens that scale with the device window.
SCALED = ("device.g_min_s", "device.g_max_s", "device.g_init_min_s", "device.g_init_max_s", "training.beta_s", "network.output_load_s")


def scaled(path: Path, overrides: dict, factor: float) -> dict:
    """``overrides`` with every conductance of the config times ``factor``."""
    base = load_config(path, overrides)
    values = {
        "device.g_min_s": base.device.g_min_s,
        "device.g_max_s": base.device.g_max_s,
        "device.g_init_min_s": base.device.init_range()[0],
        "device.g_init_max_s": base.device.init_range()[1],
        "training.beta_s": base.training.beta_s,
        "network.output_load_s": base.network.output_load_s,
    }
    return {**overrides, **{key: values[key] * factor for key in SCALED}}


def summary(name: str, window: str, rows: list[dict]) -> dict:
    """The last epoch's accuracy and costs, and the whole run's training energy and on-chip time."""
    last = rows[-1]
    return {
        "network": name,
        "devices": window,
        "epochs": int(last["epoch"]),
        "test_accuracy": last["test_accuracy"],
        "inference_energy_j": last["sampled_inference_energy_j"],
        "inference_sec": last["sampled_free_settling_sec"],
        "epoch_settling_energy_j": last["sampled_epoch_settling_energy_j"],
        "epoch_programming_energy_j": last["epoch_programming_energy_j"],
        "epoch_chip_sec": last["sampled_epoch_chip_sec"],
        "epoch_write_sec": last["epoch_write_sec"],
        "run_energy_j": sum(r["sampled_epoch_settling_energy_j"] + r["epoch_programming_energy_j"] for r in rows),
    }


def markdown(table: list[dict]) -> str:
    head = (
        "| network | devices | epochs | test acc. | J / inference | s / inference | settling J / epoch "
        "| programming J / epoch | on-chip s / epoch (writing) | training J, whole run |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in table:
        lines.append(
            f"| {r['network']} | {r['devices']} | {r['epochs']} | {100 * r['test_accuracy']:.1f}% "
            f"| {r['inference_energy_j']:.3g} | {r['inference_sec']:.3g} | {r['epoch_settling_energy_j']:.3g} "
            f"| {r['epoch_programming_energy_j']:.3g} | {r['epoch_chip_sec']:.3g} ({r['epoch_write_sec']:.3g}) "
            f"| {r['run_energy_j']:.3g} |"
        )
    return "\n".join(lines)


def plot(table: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for k, (window, _) in enumerate(RANGES):
        rows = [r for r in table if r["devices"] == window]
        names = [r["network"] for r in rows]
        x = range(len(rows))
        axes[0].plot(x, [r["inference_energy_j"] for r in rows], "-o", color=f"C{k}", label=window)
        axes[1].plot(x, [r["epoch_settling_energy_j"] for r in rows], "-o", color=f"C{k}", label=f"{window}: settling")
        axes[1].plot(x, [r["epoch_programming_energy_j"] for r in rows], "--s", color=f"C{k}", label=f"{window}: programming")
        axes[2].plot(x, [r["inference_sec"] for r in rows], "-o", color=f"C{k}", label=window)
        for ax in axes:
            ax.set_xticks(list(x), names, fontsize=8)
    axes[0].set(title="energy per inference", ylabel="J", yscale="log")
    axes[1].set(title="training energy per epoch (last epoch)", ylabel="J", yscale="log")
    axes[2].set(title="latency per inference (free phase settling)", ylabel="s", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/energy_study", help="folder of the runs (one per case)")
    parser.add_argument("--results", default=str(RESULTS), help="where energy.csv and energy.png go")
    args = parser.parse_args()
    out, results = Path(args.out), Path(args.results)
    table = []
    for name, path, overrides in SIZES:
        for window, factor in RANGES:
            run_dir = out / f"{name.split()[0]}-{factor:g}"
            if not (run_dir / "metrics.csv").is_file():  # a finished case is read, not trained again
                train(load_config(path, scaled(path, overrides, factor)), run_dir, progress=False)
            table.append(summary(name, window, read_metrics(run_dir)))
            print(f"{name}, {window}: test accuracy {table[-1]['test_accuracy']:.3f}", flush=True)
    results.mkdir(parents=True, exist_ok=True)
    with open(results / "energy.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    plot(table, results / "energy.png")
    print(markdown(table))
    print(f"wrote {results / 'energy.csv'} and {results / 'energy.png'}")


if __name__ == "__main__":
    main()
