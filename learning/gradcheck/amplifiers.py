"""``eqspice gradcheck amplifiers``: EP estimators against the exact gradient of deep amplified crossbars.

The rule weighs each crossbar's contrast by its layer's share of the co-content,
computed from the nominal gain ratio ``r = B / A`` of every amplifier layer
(:func:`eqspice.circuits.amplifiers.edge_energy_weights`).  Two ways for the
circuit to differ from what the rule assumes:

* **forward-gain mismatch** (``mismatch.amplifier_gain``): amplifier j has
  ``A_j = A (1 + sigma z_j)``, so ``B_j / A_j`` differs from node to node and the
  circuit has no co-content at all (non-conservative);
* **another backward gain**: every amplifier returns ``factor / A`` instead of
  ``1 / A``, a conservative circuit whose layer weights are not the rule's.

Against central finite differences of the loss (settled by the same engine, one
conductance at a time), the table gives the relative error and cosine of plain
EP (one-sided), centred EP, and corrected EP (asymmetric EP,
:mod:`eqspice.learning.rules.asymmetric`: learning phases whose amplifiers have the
gains transposed in the metric of the layer weights, plus correction currents and
the local amplifier term).  Each network has one frozen ``z ~ N(0, 1)`` per
amplifier, so the rows differ only in sigma or factor.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from eqspice.circuits.mismatch import with_mismatch
from eqspice.circuits.network import CrossbarSpec, DiodeModel, crossbar
from eqspice.learning.gradcheck.nonreciprocal import (
    GOAL_RELATIVE_ERROR,
    _floats,
    cosine,
    error_summary,
    finite_difference_gradient,
    make_engine,
    relative_error,
    run_and_report,
    worst_corrected,
)
from eqspice.learning.rules.asymmetric import AsymmetricEquilibriumPropagation
from eqspice.learning.rules.equilibrium import EquilibriumPropagation
from eqspice.learning.run.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eqspice gradcheck amplifiers",
        description="Relative error and cosine of plain, centred and corrected (asymmetric) EP against central "
        "finite differences of the loss, on deep crossbars whose amplifiers differ from what the rule assumes.",
    )
    p.add_argument("--networks", type=int, default=3, help="random networks per row (default 3)")
    p.add_argument("--samples", type=int, default=4, help="inputs per network, one batch (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of networks, inputs and mismatch (default 0)")
    p.add_argument("--sigmas", default="0,0.05,0.1,0.2", help="relative spreads of the forward gains (default 0,0.05,0.1,0.2)")
    p.add_argument("--backward-factors", default="0.5,2", help="backward gains factor/A instead of 1/A (default 0.5,2)")
    p.add_argument("--layers", default="3,5,4,2", help="crossbar layer sizes, at least two hidden (default 3,5,4,2)")
    p.add_argument("--gain", type=float, default=4.0, help="nominal forward gain A of every amplifier (default 4)")
    p.add_argument("--beta-s", type=float, default=1e-8, help="nudge, siemens (default 1e-8)")
    p.add_argument("--backend", choices=["native", "ngspice"], default="native", help="engine (default native)")
    p.add_argument("--json", help="also write the table to this JSON file")
    return p


def make_network(rng: np.random.Generator, layers: tuple[int, ...], gain: float, samples: int):
    """An amplified diode crossbar, conductances in 1e-6..1e-4 S, inputs, targets and a unit draw ``z`` per amplifier."""
    circuit = crossbar(
        CrossbarSpec(layers=layers, diode_bias_v=(0.35, -0.35), input_scale_v=1.5, diode_model=DiodeModel(n=1.2), amplifier_gain=gain)
    )
    g_s = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    inputs_v = rng.uniform(-1, 1, (samples, circuit.n_features)) @ circuit.input_gain.T
    targets_v = rng.uniform(-0.3, 0.3, (samples, len(circuit.output_nodes)))
    z = rng.normal(0.0, 1.0, len(circuit.amplifiers.nodes))
    return circuit, g_s, inputs_v, targets_v, z


def variant(circuit, kind: str, value: float, z: np.ndarray):
    """The circuit with its forward gains spread by ``value`` (kind "sigma") or its backward gains times ``value``."""
    if kind == "sigma":
        return with_mismatch(circuit, amplifier_gain_scale=1.0 + value * z) if value else circuit
    amplifiers = dataclasses.replace(circuit.amplifiers, backward_gain=circuit.amplifiers.backward_gain * value)
    return dataclasses.replace(circuit, amplifiers=amplifiers)


def run(args) -> dict:
    sigmas = _floats(args.sigmas, "--sigmas")
    factors = _floats(args.backward_factors, "--backward-factors")
    layers = tuple(int(v) for v in _floats(args.layers, "--layers"))
    if args.networks < 1 or args.samples < 1:
        raise ConfigError("--networks and --samples: give at least 1")
    if len(layers) < 4 or min(layers) < 1:
        raise ConfigError(f"--layers {args.layers}: give at least two hidden layers of positive sizes, e.g. 3,5,4,2")
    if not (args.gain > 0 and args.beta_s > 0):
        raise ConfigError("--gain and --beta-s: give positive numbers")
    if any(s < 0 or s >= 0.5 for s in sigmas) or any(f <= 0 for f in factors):
        raise ConfigError("--sigmas in [0, 0.5) and --backward-factors positive")
    rules = {
        "plain EP": EquilibriumPropagation(args.beta_s, centred=False),
        "centred EP": EquilibriumPropagation(args.beta_s, centred=True),
        "corrected": AsymmetricEquilibriumPropagation(args.beta_s),
    }
    networks = [make_network(np.random.default_rng([args.seed, k]), layers, args.gain, args.samples) for k in range(args.networks)]
    engine = make_engine(args.backend)
    rows = []
    try:
        for kind, value in [("sigma", s) for s in sigmas] + [("backward factor", f) for f in factors]:
            errors = {name: [] for name in rules}
            cosines = {name: [] for name in rules}
            for base, g_s, inputs_v, targets_v, z in networks:
                circuit = variant(base, kind, value, z)
                engine.load(circuit, g_s)
                exact = finite_difference_gradient(engine, circuit, g_s, inputs_v, targets_v)
                for name, rule in rules.items():
                    estimate = rule.gradient(circuit, rule.phases(engine, inputs_v, targets_v))
                    errors[name].append(relative_error(estimate, exact))
                    cosines[name].append(cosine(estimate, exact))
            for name in rules:
                rows.append({"kind": kind, "value": value, "method": name, **error_summary(errors[name], cosines[name])})
    finally:
        engine.close()
    return {
        "backend": args.backend,
        "networks": args.networks,
        "samples": args.samples,
        "seed": args.seed,
        "layers": list(layers),
        "gain": args.gain,
        "edges": networks[0][0].n_edges,
        "beta_s": args.beta_s,
        "rows": rows,
    }


def format_table(result: dict) -> str:
    lines = [
        f"amplifier gradient check: {result['networks']} random {'-'.join(map(str, result['layers']))} diode crossbars "
        f"({result['edges']} devices), amplifiers A = {result['gain']:g}, rule assumes B = 1/A; "
        f"{result['samples']} inputs each, beta = {result['beta_s']:g} S, {result['backend']} engine, seed {result['seed']}",
        "exact gradient: central finite differences of the loss (relative step 1e-4)",
        "",
        f"{'circuit':<22} {'method':<12} {'mean rel err':>12} {'max rel err':>12} {'mean cosine':>12} {'min cosine':>12}",
    ]
    for r in result["rows"]:
        what = f"A spread {r['value']:g}" if r["kind"] == "sigma" else f"B = {r['value']:g}/A"
        lines.append(
            f"{what:<22} {r['method']:<12} {r['mean_relative_error']:>12.3e} {r['max_relative_error']:>12.3e} "
            f"{r['mean_cosine']:>12.6f} {r['min_cosine']:>12.6f}"
        )
    worst = worst_corrected(result["rows"])
    verdict = "met" if worst <= GOAL_RELATIVE_ERROR else "NOT met"
    lines += ["", f"goal (corrected max relative error <= {GOAL_RELATIVE_ERROR:g} in every row): {verdict} (worst {worst:.2e})"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    return run_and_report(build_parser().parse_args(argv), run, format_table)
