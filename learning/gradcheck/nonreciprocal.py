"""``eqspice gradcheck nonreciprocal``: EP estimators against the exact gradient under non-reciprocal mismatch.

For each mismatch spread sigma and each of several random diode crossbars
(conductances log-uniform in the device range, a batch of random inputs and
targets), the exact loss gradient ``dL/dG`` comes from the adjoint
(:func:`eqspice.learning.rules.adjoint.adjoint_gradient`, checked here against central finite
differences of the loss settled by the same engine).  Against it, the table
gives the relative error ``|g - g_exact| / |g_exact|`` and the cosine of

* plain EP: one-sided contrast of the free and +beta phases of the
  non-reciprocal circuit (the vector-field method);
* centred EP: contrast of its +beta and -beta phases;
* corrected: asymmetric EP (:mod:`eqspice.learning.rules.asymmetric`);
* phases only: the corrected learning phases with the plain EP contrast, i.e.
  without the term ``delta_e (lambda_q v0_p - lambda_p v0_q)`` that the
  mismatch's scaling with G adds to ``dR/dG`` (a diagnostic: both halves of the
  correction are needed).

The mismatch of a network is ``delta = sigma z`` with one frozen ``z ~ N(0, 1)``
per edge, so the rows differ only in sigma.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from eqspice.circuits.network import CrossbarSpec, DiodeModel, crossbar, with_nonreciprocal
from eqspice.learning.rules.adjoint import adjoint_gradient
from eqspice.learning.rules.asymmetric import AsymmetricEquilibriumPropagation, mismatch_term
from eqspice.learning.rules.equilibrium import EquilibriumPropagation, output_loss
from eqspice.learning.run.config import ConfigError

#: The goal of the check: the corrected estimator's largest relative error at every sigma.
GOAL_RELATIVE_ERROR = 1e-2


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} {text!r}: give comma-separated numbers, e.g. 0,0.05,0.1") from None
    if not values or not all(np.isfinite(values)):
        raise ConfigError(f"{what} {text!r}: give at least one finite number")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eqspice gradcheck nonreciprocal",
        description="Relative error and cosine of plain, centred and corrected (asymmetric) EP against "
        "the exact adjoint gradient, for several non-reciprocal mismatch spreads.",
    )
    p.add_argument("--networks", type=int, default=10, help="random networks per sigma (default 10)")
    p.add_argument("--samples", type=int, default=4, help="inputs per network, one batch (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of networks, inputs and mismatch (default 0)")
    p.add_argument("--sigmas", default="0,0.05,0.1,0.2", help="relative mismatch spreads (default 0,0.05,0.1,0.2)")
    p.add_argument("--layers", default="4,6,3", help="crossbar layer sizes (default 4,6,3)")
    p.add_argument("--beta-s", type=float, default=1e-8, help="nudge, siemens (default 1e-8)")
    p.add_argument("--g-range-s", default="1e-7,1e-4", help="conductances log-uniform in this range, siemens")
    p.add_argument("--fd-networks", type=int, default=2, help="networks per sigma whose adjoint is checked "
                   "against central finite differences of the loss (default 2)")  # fmt: skip
    p.add_argument("--backend", choices=["native", "ngspice"], default="native", help="engine (default native)")
    p.add_argument("--json", help="also write the table to this JSON file")
    return p


def make_network(rng: np.random.Generator, layers: tuple[int, ...], g_range: tuple[float, float], samples: int):
    """A diode crossbar whose diodes conduct, conductances, inputs, targets and a unit mismatch ``z``."""
    circuit = crossbar(CrossbarSpec(layers=layers, diode_bias_v=(0.35, -0.35), input_scale_v=1.5, diode_model=DiodeModel(n=1.2)))
    low, high = np.log10(g_range)
    g_s = 10 ** rng.uniform(low, high, circuit.n_edges)
    inputs_v = rng.uniform(0, 1, (samples, circuit.n_features)) @ circuit.input_gain.T
    targets_v = rng.uniform(-0.3, 0.3, (samples, len(circuit.output_nodes)))
    z = rng.normal(0.0, 1.0, circuit.n_edges)
    return circuit, g_s, inputs_v, targets_v, z


def finite_difference_gradient(engine, circuit, g_s, inputs_v, targets_v, relative_step: float = 1e-4) -> np.ndarray:
    """Central differences of the summed loss, one conductance at a time, V^2/S."""
    def loss(g):
        engine.set_conductances(g)
        return float(np.sum(output_loss(circuit, engine.settle(inputs_v), targets_v)))

    out = np.empty(circuit.n_edges)
    for e in range(circuit.n_edges):
        h = relative_step * g_s[e]
        step = np.zeros(circuit.n_edges)
        step[e] = h
        out[e] = (loss(g_s + step) - loss(g_s - step)) / (2 * h)
    engine.set_conductances(g_s)
    return out


def relative_error(estimate: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(estimate - exact) / np.linalg.norm(exact))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def error_summary(errors: list[float], cosines: list[float]) -> dict:
    """One table row's statistics over the networks: mean and worst relative error and cosine."""
    return {
        "mean_relative_error": float(np.mean(errors)),
        "max_relative_error": float(np.max(errors)),
        "mean_cosine": float(np.mean(cosines)),
        "min_cosine": float(np.min(cosines)),
    }


def make_engine(backend: str):
    if backend == "native":
        from eqspice.simulator.native import NativeEngine

        return NativeEngine()
    from eqspice.simulator.ngspice.engine import NgspiceEngine

    return NgspiceEngine(mode="sweep")


def run(args) -> dict:
    sigmas = _floats(args.sigmas, "--sigmas")
    layers = tuple(int(v) for v in _floats(args.layers, "--layers"))
    g_range = tuple(_floats(args.g_range_s, "--g-range-s"))
    if args.networks < 1 or args.samples < 1:
        raise ConfigError("--networks and --samples: give at least 1")
    if len(layers) < 2 or min(layers) < 1:
        raise ConfigError(f"--layers {args.layers}: give at least two positive sizes, e.g. 4,6,3")
    if len(g_range) != 2 or not 0 < g_range[0] < g_range[1]:
        raise ConfigError(f"--g-range-s {args.g_range_s}: give low,high siemens with 0 < low < high")
    if not args.beta_s > 0:
        raise ConfigError(f"--beta-s {args.beta_s}: give a positive nudge in siemens")
    if any(s < 0 for s in sigmas):
        raise ConfigError(f"--sigmas {args.sigmas}: spreads are relative and non-negative")
    rules = {
        "plain EP": EquilibriumPropagation(args.beta_s, centred=False),
        "centred EP": EquilibriumPropagation(args.beta_s, centred=True),
        "corrected": AsymmetricEquilibriumPropagation(args.beta_s),
    }
    networks = [make_network(np.random.default_rng([args.seed, k]), layers, g_range, args.samples) for k in range(args.networks)]
    engine = make_engine(args.backend)
    rows, fd_errors = [], {}
    try:
        for sigma in sigmas:
            errors = {name: [] for name in [*rules, "phases only"]}
            cosines = {name: [] for name in [*rules, "phases only"]}
            fd_errors[sigma] = []
            for k, (base, g_s, inputs_v, targets_v, z) in enumerate(networks):
                circuit = with_nonreciprocal(base, sigma * z)
                engine.load(circuit, g_s)
                v0 = engine.settle(inputs_v)
                exact = adjoint_gradient(circuit, g_s, v0, targets_v)
                if k < args.fd_networks:
                    fd = finite_difference_gradient(engine, circuit, g_s, inputs_v, targets_v)
                    fd_errors[sigma].append(relative_error(exact, fd))
                for name, rule in rules.items():
                    phases = rule.phases(engine, inputs_v, targets_v)
                    estimates = {name: rule.gradient(circuit, phases)}
                    if name == "corrected":
                        lam = (phases.plus - phases.minus) / (2 * args.beta_s)
                        estimates["phases only"] = estimates[name] - mismatch_term(circuit, phases.free, lam)
                    for method, estimate in estimates.items():
                        errors[method].append(relative_error(estimate, exact))
                        cosines[method].append(cosine(estimate, exact))
            for name in errors:
                rows.append({"sigma": sigma, "method": name, **error_summary(errors[name], cosines[name])})
    finally:
        engine.close()
    n_edges = networks[0][0].n_edges
    return {
        "backend": args.backend,
        "networks": args.networks,
        "samples": args.samples,
        "seed": args.seed,
        "layers": list(layers),
        "edges": n_edges,
        "beta_s": args.beta_s,
        "g_range_s": list(g_range),
        "adjoint_vs_finite_differences": {str(s): (max(v) if v else None) for s, v in fd_errors.items()},
        "rows": rows,
    }


def format_table(result: dict) -> str:
    lines = [
        f"non-reciprocal gradient check: {result['networks']} random {'-'.join(map(str, result['layers']))} diode "
        f"crossbars ({result['edges']} devices, G log-uniform in {result['g_range_s'][0]:g}..{result['g_range_s'][1]:g} S), "
        f"{result['samples']} inputs each, beta = {result['beta_s']:g} S, {result['backend']} engine, seed {result['seed']}",
        "exact gradient: adjoint (implicit differentiation of KCL); its largest relative error against central "
        "finite differences of the loss: "
        + ", ".join(
            f"sigma {float(s):g}: {e:.1e}" for s, e in result["adjoint_vs_finite_differences"].items() if e is not None
        ),
        "",
        f"{'sigma':>6}  {'method':<12} {'mean rel err':>12} {'max rel err':>12} {'mean cosine':>12} {'min cosine':>12}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['sigma']:>6.3g}  {r['method']:<12} {r['mean_relative_error']:>12.3e} {r['max_relative_error']:>12.3e} "
            f"{r['mean_cosine']:>12.6f} {r['min_cosine']:>12.6f}"
        )
    worst = worst_corrected(result["rows"])
    verdict = "met" if worst <= GOAL_RELATIVE_ERROR else "NOT met"
    lines += ["", f"goal (corrected max relative error <= {GOAL_RELATIVE_ERROR:g} at every sigma): {verdict} (worst {worst:.2e})"]
    return "\n".join(lines)


def worst_corrected(rows: list[dict]) -> float:
    """The largest relative error of the corrected estimator over a table's rows."""
    return max(r["max_relative_error"] for r in rows if r["method"] == "corrected")


def run_and_report(args, run, format_table) -> int:
    """Run a gradient check, print its table, write ``--json``; exit 0 if the corrected rows meet the goal."""
    started = time.perf_counter()
    result = run(args)
    result["elapsed_sec"] = round(time.perf_counter() - started, 2)
    print(format_table(result))
    print(f"({result['elapsed_sec']:.1f} s)")
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            raise ConfigError(f"--json {args.json}: cannot write ({exc.strerror})") from None
    return 0 if worst_corrected(result["rows"]) <= GOAL_RELATIVE_ERROR else 1


def main(argv: list[str]) -> int:
    return run_and_report(build_parser().parse_args(argv), run, format_table)
