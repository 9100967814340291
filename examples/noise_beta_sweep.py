"""Finite nudges with thermal noise: test accuracy and gradient SNR against beta.

The circuit of ``examples/fashion_noise.toml`` (a 784-256-10 crossbar with
gibbs noise at T_eff, the config's native sampler: block Gibbs) is trained at
several nudges by the config's noisy rule: there the one-sided contrastive rule
``(E_beta[dE/dG] - E_0[dE/dG]) / beta`` from time averages; ``--config
examples/fashion_noise_ce.toml`` gives the centred cross-entropy rule on the
half-wave circuit.  Nudges are given in the paper's units (beta in [0, 1]
scaling the loss) and mapped to conductance units by

    beta_s = beta_paper * g_ref,   g_ref = (hidden + 2 bias rows) * (g_init_min + g_init_max) / 2,

the expected conductance of one output node at initialisation: beta_paper = 1
pulls an output halfway to its target.

Then, on the circuit trained at the largest nudge and a fixed mini-batch, each
nudge's estimate of ``dJ/dG`` is repeated ``--repeats`` times with fresh
noise.  Reported per beta:

* SNR = |E g| / sqrt(E |g - E g|^2) over the repeats g (vectors over all
  devices, and over the output crossbar alone; ``|E g|^2`` estimated as
  ``|mean|^2 - spread^2 / repeats``, so a pure-noise estimate scores about 0);
* cosine of a single estimate to a reference gradient of J(beta) (the same
  rule with ``--reference-factor`` times more readings, pooled over the
  repeats);
* cosine of a single estimate to the gradient of the noiseless loss
  (the config's loss by centred EP at beta = 1e-3 g_ref on the noiseless
  circuit, the T -> 0 limit of the expected loss's gradient).

Run (defaults: a subset, about 30 minutes on 2 shared cores):

    python examples/noise_beta_sweep.py [--train 2000] [--test 1000] [--epochs 2] [--repeats 6]
    python examples/noise_beta_sweep.py --full       # all of Fashion-MNIST, the config's epochs
    python examples/noise_beta_sweep.py --trained RUN_DIR --out OUT   # SNR and cosines only, on a trained run

Writes docs/results/noise_beta_sweep.csv and docs/results/noise_beta_sweep.png.
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
from threadpoolctl import threadpool_limits  # noqa: E402
from tqdm import tqdm  # noqa: E402

from eqspice.circuits.noise import NoNoise  # noqa: E402
from eqspice.learning.rules.noisy import make_noisy_rule  # noqa: E402
from eqspice.learning.run.build import make_rule, open_session  # noqa: E402
from eqspice.learning.run.checkpoint import RunState  # noqa: E402
from eqspice.learning.run.config import load_config  # noqa: E402
from eqspice.learning.run.loop import train  # noqa: E402

HERE = Path(__file__).parent
RESULTS = HERE.parent / "docs" / "results"  # where the write-ups and their data live


def reference_conductance(config) -> float:
    """``g_ref`` (S): an output node's expected conductance at initialisation."""
    d = config.device
    lo, hi = d.init_range()
    rows = config.network.layers[-2] + (2 if config.network.bias_v else 0)
    return rows * (lo + hi) / 2


def cosine(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def snr(runs: np.ndarray) -> float:
    """``|E g| / sqrt(E |g - E g|^2)`` over repeats ``runs[repeat, device]``.

    ``|E g|^2`` is estimated without the noise floor of a finite mean:
    ``|mean|^2 - spread^2 / repeats`` (clipped at 0).
    """
    mean = runs.mean(axis=0)
    spread2 = np.sum((runs - mean) ** 2) / (len(runs) - 1)
    signal2 = max(float(mean @ mean) - spread2 / len(runs), 0.0)
    return float(np.sqrt(signal2 / spread2))


def gradient_statistics(config_path, overrides, g_s, betas_s, repeats: int, reference_factor: int, batch: int, seed: int, g_ref: float):
    """SNR and cosines of the config's noisy rule's estimate of dJ/dG at each nudge, on conductances ``g_s``.

    The rule is the run's own (``training.estimator`` and ``training.loss``); the
    noiseless reference is the matching noiseless rule (EP, or cross-entropy
    propagation) at beta = 1e-3 g_ref, centred.
    """
    at = lambda **kw: load_config(config_path, {**overrides, **kw})  # noqa: E731
    config = at()
    session = open_session(config)
    engine = session.engine
    engine.load(session.circuit, g_s)
    ids = np.arange(batch)
    x = session.inputs_v(session.data.x_train[ids])
    y = session.targets_v(session.data.y_train[ids])
    centred = config.training.model_copy(update={"beta_s": 1e-3 * g_ref, "estimator": "centred"})
    noiseless = make_rule(config.model_copy(update={"noise": NoNoise(), "training": centred}))
    loss_grad = noiseless.gradient(session.circuit, noiseless.phases(engine, x, y))
    n = config.noise
    longer = {"noise.samples": n.samples * reference_factor, "noise.run_sec": n.burn_in_sec + n.window_sec * reference_factor}
    rows = []
    rng = np.random.default_rng(seed)
    for beta in tqdm(betas_s, desc="gradient SNR", unit="beta"):
        rule = make_noisy_rule(at(**{"training.beta_s": beta}))
        runs = np.array([rule.objective_gradient(session.circuit, rule.phases(engine, x, y, rng=rng)) for _ in range(repeats)])
        ref_rule = make_noisy_rule(at(**{"training.beta_s": beta, **longer}))
        reference = np.mean(
            [ref_rule.objective_gradient(session.circuit, ref_rule.phases(engine, x, y, rng=rng)) for _ in range(repeats)], axis=0
        )
        rows.append(
            {
                "snr": snr(runs),
                "snr_output_layer": snr(runs[:, session.circuit.groups[-1].slice]),
                "cos_j": float(np.mean([cosine(r, reference) for r in runs])),
                "cos_loss": float(np.mean([cosine(r, loss_grad) for r in runs])),
            }
        )
    engine.close()
    return rows


def plot(rows: list[dict], out: Path, g_ref: float, t_eff_w: float) -> None:
    """Accuracy, SNR and cosines against beta (paper's units), one panel each."""
    betas = [float(r["beta_paper"]) for r in rows]
    col = lambda key: [float(r[key]) for r in rows]  # noqa: E731
    trained = "test_accuracy" in rows[0]  # else the statistics of one trained run (--trained)
    fig, axes = plt.subplots(1, 3 if trained else 2, figsize=(14 if trained else 9.5, 4))
    snr_ax, cos_ax = axes[-2:]
    if trained:
        axes[0].semilogx(betas, [100 * a for a in col("test_accuracy")], "o-")
        axes[0].set_ylabel("test accuracy (%)")
    snr_ax.set_title(f"Fashion-MNIST, gibbs noise, T_eff = {t_eff_w:g} W")
    snr_ax.semilogx(betas, col("snr"), "o-", label="all devices")
    snr_ax.semilogx(betas, col("snr_output_layer"), "s-", label="output crossbar")
    snr_ax.set_ylabel("SNR of the dJ/dG estimate")
    snr_ax.legend()
    cos_ax.semilogx(betas, col("cos_j"), "s-", label="to dJ/dG (reference)")
    cos_ax.semilogx(betas, col("cos_loss"), "^-", label="to dL/dG (noiseless)")
    cos_ax.set_ylabel("cosine of one estimate")
    cos_ax.legend()
    for ax in axes:
        ax.set_xlabel(f"beta (paper's units; 1 = {g_ref:.3g} S)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)


def train_at_each_nudge(config_path, overrides: dict, betas: list[float], g_ref: float) -> tuple[list[dict], np.ndarray]:
    """Train the config at each nudge (paper's units); a row of accuracies per nudge, and the
    conductances trained at the largest."""
    rows, trained = [], {}
    for beta in tqdm(betas, desc="noisy beta sweep", unit="run"):
        config = load_config(config_path, {**overrides, "training.beta_s": beta * g_ref})
        started = time.perf_counter()
        state = train(config, progress=False)  # no run folder: the returned state is all this needs
        trained[beta] = state.g_s
        last = state.metrics[-1]
        rows.append(
            {
                "beta_paper": beta,
                "beta_s": beta * g_ref,
                "test_accuracy": last["test_accuracy"],
                "train_accuracy": last["train_accuracy"],
                "epochs": state.epoch,
                "train_samples": config.data.limit_train or "all",
                "minutes": round((time.perf_counter() - started) / 60, 2),
            }
        )
        tqdm.write(f"beta {beta:g} ({beta * g_ref:.3g} S): test accuracy {last['test_accuracy']:.4f}")
    return rows, trained[max(betas)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(HERE / "fashion_noise.toml"))
    parser.add_argument("--betas", nargs="+", type=float, default=[0.01, 0.1, 0.5, 1.0], help="paper's units")
    parser.add_argument("--train", type=int, default=2000, help="training samples (first N)")
    parser.add_argument("--test", type=int, default=1000, help="test samples (first N)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="all data, the config's epochs")
    parser.add_argument("--repeats", type=int, default=6, help="noisy repeats per beta for the SNR")
    parser.add_argument("--reference-factor", type=int, default=4, help="readings of the reference, times")
    parser.add_argument("--snr-batch", type=int, default=32, help="samples of the fixed mini-batch")
    parser.add_argument("--out", default=str(RESULTS / "noise_beta_sweep"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the CSV")
    parser.add_argument(
        "--trained", metavar="RUN_DIR", help="no training: the SNR and cosines on this run's conductances, with its config"
    )
    args = parser.parse_args()

    if args.trained:
        args.config = str(Path(args.trained) / "config.toml")
    base = load_config(args.config)
    g_ref = reference_conductance(base)
    if args.plot_only:
        with open(Path(args.out).with_suffix(".csv")) as f:
            plot(list(csv.DictReader(f)), Path(args.out), g_ref, base.noise.t_eff_w)
        return
    if args.trained:  # the statistics of one trained run, with its own config
        overrides = {}
        rows = [{"beta_paper": beta, "beta_s": beta * g_ref} for beta in args.betas]
        g_s = RunState.load(args.trained).g_s
    else:
        overrides = {} if args.full else {"data.limit_train": args.train, "data.limit_test": args.test, "training.epochs": args.epochs}
        rows, g_s = train_at_each_nudge(args.config, overrides, args.betas, g_ref)
    config = load_config(args.config, overrides)
    with threadpool_limits(limits=config.engine.blas_threads, user_api="blas"):
        stats = gradient_statistics(
            args.config, overrides, g_s, [b * g_ref for b in args.betas], args.repeats, args.reference_factor,
            args.snr_batch, config.seed + 1, g_ref,
        )  # fmt: skip
    for row, stat in zip(rows, stats):
        row.update(stat)
    for row in rows:
        # no measurable signal at the smallest nudge: the gain is unbounded
        row["snr_gain_over_smallest"] = row["snr"] / rows[0]["snr"] if rows[0]["snr"] > 0 else float("inf")

    out = Path(args.out)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out, g_ref, config.noise.t_eff_w)
    for row in rows:
        print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
