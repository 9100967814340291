"""Training under non-reciprocal mismatch: plain (centred EP) against corrected (asymmetric EP).

Every coupling of the crossbar gets a frozen non-reciprocal part
``K_pq = G (1 + delta)``, ``K_qp = G (1 - delta)``, ``delta ~ N(0, sigma)``
(``mismatch.nonreciprocal = sigma``, drawn from the run's seed, the same draw for
both rules).  Each data set is trained at each sigma with both rules, native
engine, same seed, data order and initial conductances; the script writes

* ``docs/results/nonreciprocal_results.csv``: one row per run and epoch;
* ``docs/results/nonreciprocal.png``: test accuracy against epoch, plain vs corrected.

Fashion-MNIST runs on a subset (``--fashion-train`` / ``--fashion-test`` samples,
a 64-node hidden layer) so that the whole comparison fits in minutes of CPU.

    python examples/nonreciprocal.py                 # digits and Fashion-MNIST subset
    python examples/nonreciprocal.py --datasets digits --epochs 4
"""

from __future__ import annotations

import argparse
import csv
import io
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "docs" / "results"  # where the write-ups and their data live

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eqspice.learning.run.checkpoint import write_atomic  # noqa: E402
from eqspice.learning.run.config import parse_config  # noqa: E402
from eqspice.learning.run.loop import train  # noqa: E402

RULES = {"plain": "centred", "corrected": "corrected"}


def base_config(dataset: str, epochs: int, seed: int, args) -> dict:
    """The run configuration of one data set (native engine), without mismatch and rule."""
    common = {
        "seed": seed,
        "device": {"g_min_s": 1e-7, "g_max_s": 1e-4},
        "engine": {"backend": "native"},
    }
    training = {
        "epochs": epochs, "optimizer": "adam", "beta_s": 1e-5,
        "target_high_v": 0.05, "target_low_v": -0.05,
    }  # fmt: skip
    if dataset == "digits":  # examples/digits.toml, on the native engine
        return common | {
            "data": {"name": "digits", "test_fraction": 0.2},
            "network": {"layers": [64, 32, 10], "input_scale_v": 1.0, "bias_v": 1.0, "diode_bias_v": [0.4, -0.4]},
            "training": training | {"batch_size": 8, "learning_rate": 0.01},
        }
    # examples/fashion_mnist_3v.toml on a subset and a narrower hidden layer
    return common | {
        "data": {"name": "fashion_mnist", "limit_train": args.fashion_train, "limit_test": args.fashion_test},
        "network": {"layers": [784, 64, 10], "input_scale_v": 3.0, "bias_v": 1.0, "diode_bias_v": [0.4, -0.4]},
        "training": training | {"batch_size": 32, "learning_rate": 0.02},
    }


def run_one(dataset: str, sigma: float, rule: str, epochs: int, seed: int, args, workdir: Path) -> list[dict]:
    raw = base_config(dataset, epochs, seed, args)
    raw["training"]["estimator"] = RULES[rule]
    raw["mismatch"] = {"nonreciprocal": sigma}
    config = parse_config(raw, f"{dataset} sigma={sigma} {rule}")
    started = time.perf_counter()
    state = train(config, workdir / f"{dataset}_{sigma:g}_{rule}_{seed}", progress=False)
    print(
        f"{dataset:<14} sigma {sigma:<5g} seed {seed} {rule:<9}: test accuracy "
        + " ".join(f"{m['test_accuracy']:.3f}" for m in state.metrics)
        + f"  ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    return [
        {"dataset": dataset, "sigma": sigma, "rule": rule, "seed": seed, **{k: m[k] for k in ("epoch", "train_accuracy", "test_accuracy", "test_loss")}}
        for m in state.metrics
    ]


def write_csv(path: Path, rows: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue().encode())


def plot(path: Path, rows: list[dict]) -> None:
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    sigmas = sorted({r["sigma"] for r in rows})
    fig, axes = plt.subplots(len(datasets), len(sigmas), figsize=(4 * len(sigmas), 3.4 * len(datasets)), squeeze=False)
    for i, dataset in enumerate(datasets):
        for j, sigma in enumerate(sigmas):
            ax = axes[i, j]
            for rule, style in (("plain", "-o"), ("corrected", "--s")):
                run = [r for r in rows if r["dataset"] == dataset and r["sigma"] == sigma and r["rule"] == rule]
                epochs = sorted({r["epoch"] for r in run})
                if not epochs:
                    continue
                acc = [[100 * r["test_accuracy"] for r in run if r["epoch"] == e] for e in epochs]
                mean = np.array([np.mean(a) for a in acc])
                ax.plot(epochs, mean, style, label=f"{rule} (mean of {len(acc[-1])} seeds)")
                if len(acc[-1]) > 1:
                    ax.fill_between(epochs, [min(a) for a in acc], [max(a) for a in acc], alpha=0.2)
            ax.set(title=f"{dataset}, sigma = {100 * sigma:g}%", xlabel="epoch", ylabel="test accuracy (%)")
            ax.grid(alpha=0.3)
            ax.legend()
    fig.suptitle("non-reciprocal couplings: plain (centred EP) vs corrected (asymmetric EP)", y=1.0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def summary(rows: list[dict]) -> str:
    """Final test accuracy, mean over seeds, per data set, sigma and rule."""
    lines = ["final test accuracy (mean over seeds, min..max):"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for sigma in sorted({r["sigma"] for r in rows if r["dataset"] == dataset}):
            parts = []
            for rule in RULES:
                run = [r for r in rows if r["dataset"] == dataset and r["sigma"] == sigma and r["rule"] == rule]
                if run:
                    last = max(r["epoch"] for r in run)
                    acc = [100 * r["test_accuracy"] for r in run if r["epoch"] == last]
                    parts.append(f"{rule} {np.mean(acc):.1f}% ({min(acc):.1f}..{max(acc):.1f})")
            lines.append(f"  {dataset:<14} sigma {100 * sigma:>4g}%: " + ", ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="digits,fashion_mnist")
    p.add_argument("--sigmas", default="0,0.1,0.2", help="relative mismatch spreads")
    p.add_argument("--epochs", type=int, default=8, help="digits epochs (default 8)")
    p.add_argument("--fashion-epochs", type=int, default=5)
    p.add_argument("--fashion-train", type=int, default=3000)
    p.add_argument("--fashion-test", type=int, default=1000)
    p.add_argument("--seeds", default="0,1,2", help="run seeds (mismatch draw, initial conductances, data order)")
    p.add_argument("--out", default=str(RESULTS / "nonreciprocal"), help="prefix of the CSV and PNG")
    p.add_argument("--append", action="store_true", help="keep the other data sets' rows of an existing CSV")
    p.add_argument("--plot-only", action="store_true", help="redraw the PNG and summary from the existing CSV")
    args = p.parse_args(argv)
    rows: list[dict] = []
    csv_path = Path(f"{args.out}_results.csv")
    if (args.append or args.plot_only) and csv_path.exists():
        with csv_path.open() as fh:
            kept = [r for r in csv.DictReader(fh) if args.plot_only or r["dataset"] not in args.datasets.split(",")]
        numbers = {"sigma": float, "seed": int, "epoch": int, "train_accuracy": float, "test_accuracy": float, "test_loss": float}
        rows = [{k: numbers.get(k, str)(v) for k, v in r.items()} for r in kept]
    if args.plot_only:
        if not rows:
            p.error(f"--plot-only: no rows in {csv_path}; run the comparison first")
        plot(Path(f"{args.out}.png"), rows)
        print(summary(rows))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            epochs = args.epochs if dataset == "digits" else args.fashion_epochs
            for sigma in [float(s) for s in args.sigmas.split(",")]:
                for seed in [int(s) for s in args.seeds.split(",")]:
                    for rule in RULES:
                        rows += run_one(dataset, sigma, rule, epochs, seed, args, Path(tmp))
                        write_csv(csv_path, rows)
                        plot(Path(f"{args.out}.png"), rows)
    print(summary(rows))
    print(f"wrote {args.out}_results.csv and {args.out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
