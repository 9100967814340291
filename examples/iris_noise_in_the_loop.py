"""Chip in the loop with thermal noise: ngspice transients against the native sampler.

The run of ``examples/iris_noise.toml`` (Iris on a 4-8-3 diode crossbar, gibbs
noise at T_eff, contrastive rule on time averages) is trained once per engine
and seed:

* ``ngspice``: every phase of every training sample is a noisy ngspice
  transient (trnoise sources, node capacitors);
* ``native``: the same Langevin dynamics by Euler-Maruyama in numpy.

The learning rate follows the config's cosine schedule down to a small
fraction, so the last epochs move the conductances little and the final test
accuracy depends less on where the last noisy step happened to land (a run
can still move by a flower or two then; the table also gives the mean of the
last epochs).  Test accuracy is the same measurement on both
engines: the noiseless operating point of the free phase (``evaluate`` in
``learning/train.py``, ngspice ``op`` or native Newton on the trained
conductances), so the engines differ only in the noisy training phases.

Each run lives in ``--run-root/<engine>_seed<k>`` and is advanced one epoch
at a time (``--resume``), so an interrupted script continues where it
stopped, and two invocations (``--engines ngspice`` and ``--engines native``)
may run side by side.  Every invocation then collects the runs it finds for
the requested seeds, of both engines, into the table, the CSV and the plot
(rewriting them: the last invocation should name every seed).

Run:

    python examples/iris_noise_in_the_loop.py [--seeds 0 1 2 3] [--epochs 40] [--engines ngspice native]

Writes docs/results/iris_noise_in_the_loop.csv (per engine, seed and epoch) and
docs/results/iris_noise_in_the_loop.png (test accuracy against epoch).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from eqspice.learning.run.checkpoint import CHECKPOINT, RunState  # noqa: E402
from eqspice.learning.run.config import load_config  # noqa: E402
from eqspice.learning.run.data import load_dataset  # noqa: E402
from eqspice.learning.run.loop import train  # noqa: E402

HERE = Path(__file__).parent
RESULTS = HERE.parent / "docs" / "results"  # where the write-ups and their data live
CONFIG = HERE / "iris_noise.toml"
ENGINES = ("ngspice", "native")
COLUMNS = ("engine", "seed", "epoch", "test_accuracy", "train_accuracy", "test_loss", "learning_rate", "train_sec")


def run_config(engine: str, seed: int, epochs: int | None):
    overrides = {"seed": seed, "engine.backend": engine}
    if epochs is not None:
        overrides["training.epochs"] = epochs
    return load_config(CONFIG, overrides)


def epochs_done(run_dir: Path) -> int:
    return RunState.load(run_dir).epoch if (run_dir / CHECKPOINT).exists() else 0


def advance(engine: str, seed: int, epochs: int | None, run_root: Path, bar: tqdm) -> None:
    """Train one run to its last epoch, one resumable epoch per call of ``train``."""
    config = run_config(engine, seed, epochs)
    run_dir = run_root / f"{engine}_seed{seed}"
    while (done := epochs_done(run_dir)) < config.training.epochs:
        bar.set_description(f"{engine} seed {seed} epoch {done + 1}/{config.training.epochs}")
        state = train(config, run_dir, resume=done > 0, stop_after_epochs=1, progress=False)
        bar.update(1)
        bar.set_postfix(test_acc=f"{state.metrics[-1]['test_accuracy']:.3f}")


def collect(engines, seeds, epochs: int | None, run_root: Path) -> list[dict]:
    """Per-epoch rows of every run found; the learning rate is the schedule's value at the epoch's last step."""
    rows = []
    for engine in engines:
        for seed in seeds:
            run_dir = run_root / f"{engine}_seed{seed}"
            if not (run_dir / CHECKPOINT).exists():
                continue
            config = run_config(engine, seed, epochs)
            t = config.training
            n_train = len(load_dataset("iris", seed=seed, test_fraction=config.data.test_fraction).x_train)
            per_epoch = -(-n_train // t.batch_size)
            for m in RunState.load(run_dir).metrics:
                lr = t.learning_rate * t.lr_scale(m["epoch"] * per_epoch - 1, per_epoch)
                rows.append(
                    {
                        "engine": engine,
                        "seed": seed,
                        "epoch": m["epoch"],
                        "test_accuracy": round(m["test_accuracy"], 4),
                        "train_accuracy": round(m["train_accuracy"], 4),
                        "test_loss": f"{m['test_loss']:.4g}",
                        "learning_rate": f"{lr:.3g}",
                        "train_sec": m["train_sec"],
                    }
                )
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colours = {"ngspice": "tab:blue", "native": "tab:orange"}
    for engine in ENGINES:
        seeds = sorted({r["seed"] for r in rows if r["engine"] == engine})
        for i, seed in enumerate(seeds):
            mine = [r for r in rows if r["engine"] == engine and r["seed"] == seed]
            ax.plot(
                [r["epoch"] for r in mine],
                [100 * r["test_accuracy"] for r in mine],
                color=colours[engine],
                marker="o" if engine == "ngspice" else "s",
                markersize=3,
                linewidth=0.8,
                alpha=0.5,
                label=f"{engine}, one line per seed" if i == 0 else None,
            )
        curves = [[r["test_accuracy"] for r in rows if r["engine"] == engine and r["seed"] == s] for s in seeds]
        finished = [c for c in curves if len(c) == max(map(len, curves), default=0)]
        if finished:
            mean = 100 * np.mean(finished, axis=0)
            label = f"{engine}, mean of {len(finished)} seeds"
            ax.plot(np.arange(1, len(mean) + 1), mean, color=colours[engine], linewidth=2.5, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%), noiseless read-out")
    ax.set_title("Iris 4-8-3, gibbs noise in the loop: ngspice transients vs native Langevin\n(cosine learning rate, 75 test flowers)")
    ax.set_ylim(30, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def final_table(rows: list[dict], last: int, epochs: int) -> str:
    """Final test accuracy (%) per engine and seed, the mean over the last ``last`` epochs, and the means.

    Only runs that reached ``epochs`` count; unfinished ones are listed as such.
    The paired line compares the two engines on the seeds both finished (same
    data split, initial conductances and first epoch's order).
    """
    lines = [f"{'engine':8} {'seed':>4} {'final':>6} {f'last {last}':>7} {'train min':>9}"]
    final, tail = {}, {}
    for engine in ENGINES:
        for seed in sorted({r["seed"] for r in rows if r["engine"] == engine}):
            acc = 100 * np.array([r["test_accuracy"] for r in rows if r["engine"] == engine and r["seed"] == seed])
            if len(acc) < epochs:
                lines.append(f"{engine:8} {seed:>4} unfinished: {len(acc)} of {epochs} epochs")
                continue
            minutes = sum(r["train_sec"] for r in rows if r["engine"] == engine and r["seed"] == seed) / 60
            final[engine, seed], tail[engine, seed] = acc[-1], acc[-last:].mean()
            lines.append(f"{engine:8} {seed:>4} {acc[-1]:6.1f} {tail[engine, seed]:7.1f} {minutes:9.1f}")
    for engine in ENGINES:
        seeds = [s for e, s in final if e == engine]
        if seeds:
            f, t = [final[engine, s] for s in seeds], [tail[engine, s] for s in seeds]
            sd = f" (sd {np.std(f, ddof=1):.1f})" if len(f) > 1 else ""
            lines.append(f"{engine:8} mean {np.mean(f):6.1f} {np.mean(t):7.1f}   over {len(f)} seeds{sd}")
    both = sorted({s for e, s in final if e == "ngspice"} & {s for e, s in final if e == "native"})
    if both:
        d = np.array([final["ngspice", s] - final["native", s] for s in both])
        dt = np.array([tail["ngspice", s] - tail["native", s] for s in both])
        se = f", standard error {np.std(d, ddof=1) / np.sqrt(len(d)):.1f}" if len(d) > 1 else ""
        lines.append(
            f"ngspice - native on seeds {both}: final {d.mean():+.1f} points{se}; last {last} {dt.mean():+.1f} points"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--epochs", type=int, help="override training.epochs (default: the config's)")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    p.add_argument("--run-root", type=Path, default=Path("runs/iris_noise_in_the_loop"))
    p.add_argument("--last", type=int, default=5, help="epochs averaged in the table's second column")
    args = p.parse_args()

    total = sum(run_config(e, s, args.epochs).training.epochs for e in args.engines for s in args.seeds)
    done = sum(epochs_done(args.run_root / f"{e}_seed{s}") for e in args.engines for s in args.seeds)
    started = time.monotonic()
    with tqdm(total=total, initial=done, unit="epoch") as bar:
        for engine in args.engines:
            for seed in args.seeds:
                advance(engine, seed, args.epochs, args.run_root, bar)
    print(f"wall time of this invocation: {(time.monotonic() - started) / 60:.1f} min")

    rows = collect(ENGINES, args.seeds, args.epochs, args.run_root)
    write_csv(rows, RESULTS / "iris_noise_in_the_loop.csv")
    plot(rows, RESULTS / "iris_noise_in_the_loop.png")
    epochs = run_config(ENGINES[0], args.seeds[0], args.epochs).training.epochs
    print(final_table(rows, args.last, epochs))


if __name__ == "__main__":
    main()
