"""``eqspice gradcheck exact``: EP's estimates against the exact gradient on a run's own circuit.

The circuit, conductances and data are a run config's (default
``examples/fashion_mnist.toml``, at its seeded initial conductances); one
mini-batch of its training set is settled.  The exact gradient is the adjoint
of Kirchhoff's law at the free state on the native engine's block structure
(:class:`eqspice.learning.rules.adjoint.ImplicitGradient`, checked against
finite differences and the dense adjoint in the tests).  Against it, for each
loss and nudge strength beta, the relative error ``|g - g_exact| / |g_exact|``
and the cosine of

* squared error: one-sided and centred EP (resistive nudge to the targets);
* cross-entropy: centred EP with the softmax currents (the estimate and the
  exact gradient both in units of ``scale_v^2 dL/dG``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from eqspice.learning.rules.adjoint import ImplicitGradient
from eqspice.learning.rules.equilibrium import CrossEntropyPropagation, EquilibriumPropagation
from eqspice.learning.run.build import initial_state, open_session
from eqspice.learning.run.checkpoint import write_csv_atomic
from eqspice.learning.run.config import ConfigError, load_config
from eqspice.learning.run.report import new_figure

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ("loss", "estimator", "beta_s", "relative_error", "cosine")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eqspice gradcheck exact",
        description="Relative error and cosine of EP's estimates against the exact gradient (implicit "
        "differentiation) on a run config's circuit, for several nudge strengths and both losses.",
    )
    p.add_argument("--config", default=str(ROOT / "examples" / "fashion_mnist.toml"), help="run config (default: the Fashion-MNIST example)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    p.add_argument("--betas", default="1e-8,1e-7,1e-6,1e-5,1e-4,1e-3", help="nudge strengths, siemens, comma-separated")
    p.add_argument("--batch", type=int, default=32, help="training samples settled (default 32)")
    p.add_argument("--csv", help="write the table to this CSV file")
    p.add_argument("--plot", help="plot relative error against beta into this PNG")
    return p


def betas(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--betas {text!r}: give comma-separated positive numbers, e.g. 1e-7,1e-6") from None
    if not values or not all(np.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"--betas {text!r}: give at least one positive finite number")
    return values


def run(args) -> list[dict]:
    from eqspice.learning.cli import cli_overrides  # the command line's own --set parsing

    config = load_config(args.config, {"engine.backend": "native", **cli_overrides(args)})
    session = open_session(config)
    state = initial_state(config, session.circuit, session.device)
    engine, circuit = session.engine, session.circuit
    engine.load(circuit, state.g_s)
    x, labels = session.data.x_train[: args.batch], session.data.y_train[: args.batch]
    inputs, targets = session.inputs_v(x), session.targets_v(labels)
    scale = config.training.softmax_scale_v
    rows = []
    for loss in ("squared", "cross_entropy"):
        exact_rule = ImplicitGradient(loss, scale)
        exact = exact_rule.gradient(circuit, exact_rule.phases(engine, inputs, targets))
        for beta in betas(args.betas):
            if loss == "squared":
                rules = {"one-sided": EquilibriumPropagation(beta, centred=False), "centred": EquilibriumPropagation(beta)}
            else:
                rules = {"centred": CrossEntropyPropagation(beta, scale)}
            for name, rule in rules.items():
                estimate = rule.gradient(circuit, rule.phases(engine, inputs, targets))
                rows.append({
                    "loss": loss, "estimator": name, "beta_s": beta,
                    "relative_error": float(np.linalg.norm(estimate - exact) / np.linalg.norm(exact)),
                    "cosine": float(estimate @ exact / (np.linalg.norm(estimate) * np.linalg.norm(exact))),
                })  # fmt: skip
    engine.close()
    return rows


def plot(path: str, rows: list[dict], title: str) -> None:
    fig = new_figure((5.5, 3.6))
    ax = fig.add_subplot(111)
    for key in sorted({(r["loss"], r["estimator"]) for r in rows}):
        sel = [r for r in rows if (r["loss"], r["estimator"]) == key]
        ax.loglog([r["beta_s"] for r in sel], [max(r["relative_error"], 1e-17) for r in sel], "o-", label=" ".join(key))
    ax.set_xlabel("nudge beta (S)")
    ax.set_ylabel("|EP - exact| / |exact|")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        rows = run(args)
    print(f"{'loss':>14} {'estimator':>10} {'beta (S)':>9} {'rel err':>10} {'1 - cosine':>11}")
    for r in rows:
        print(f"{r['loss']:>14} {r['estimator']:>10} {r['beta_s']:>9.0e} {r['relative_error']:>10.2e} {1 - r['cosine']:>11.2e}")
    print(f"({time.perf_counter() - started:.1f} s)")
    if args.csv:
        write_csv_atomic(args.csv, COLUMNS, rows)
    if args.plot:
        plot(args.plot, rows, f"EP vs the exact gradient, {Path(args.config).stem}, {args.batch} samples")
    return 0
