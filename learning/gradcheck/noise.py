"""``eqspice gradcheck noise``: the noisy circuit against closed forms.

On a small linear network (three free nodes, no diodes), prints

1. the stationary statistics of the free-node voltages from the native
   Langevin sampler and from an ngspice transient with trnoise sources,
   against the closed form (mean = DC solution; johnson ``k T C^-1``; gibbs
   ``T_eff H^-1``), with the expected discretisation bias of each;
2. the contrastive estimate ``E_beta[dE/dG] - E_0[dE/dG]`` against
   ``d/dG [F(beta) - F(0)]`` from the Gaussian closed form of the free energy,
   for nudges over several decades (relative error, Monte Carlo standard
   error, cosine), and the path-integral and loss-covariance estimators at
   one nudge.

Units: volts, siemens, watts (T_eff), kelvin, farads, seconds.
"""

from __future__ import annotations

import argparse

import networkx as nx
import numpy as np

from eqspice.circuits.network import circuit_from_graph
from eqspice.circuits.noise import GibbsNoise, noise_spec
from eqspice.learning.rules.equilibrium import output_loss
from eqspice.learning.rules.noisy import (
    expected_energy_gradient,
    gauss_legendre_nudges,
    loss_energy_covariance,
)
from eqspice.simulator.engine import FREE
from eqspice.simulator.ngspice.sampler import NgspiceSampler
from eqspice.simulator.sampling.co_content import CoContent
from eqspice.simulator.sampling.gaussian import gaussian_samples, stationary_covariance
from eqspice.simulator.sampling.langevin import langevin_samples


def small_network():
    """Inputs in0, in1, a 0 V rail vss; free nodes a, b and the output out."""
    graph = nx.Graph([("in0", "a"), ("in1", "a"), ("a", "b"), ("in1", "b"), ("b", "out"), ("a", "out"), ("out", "vss")])
    circuit = circuit_from_graph(graph, ["in0", "in1"], ["out"], fixed={"vss": 0.0})
    g_s = np.array([1e-4, 0.5e-4, 2e-4, 1e-4, 1.5e-4, 0.7e-4, 0.3e-4])
    return circuit, g_s


def gaussian_free_energy(circuit, g_s, inputs_v, targets_v, beta_s: float, t_eff_w: float) -> float:
    """``F(beta) = -T log int exp(-(E + beta L) / T) dv`` (watts) of a linear network, in closed form.

    ``F = c - b^T H^-1 b / 2 + (T/2) log det H - (n T / 2) log(2 pi T)`` for
    ``E + beta L = v^T H v / 2 - b^T v + c`` on the free nodes.
    """
    system = CoContent(circuit, g_s, inputs_v[None], targets_v[None], beta_s, 0.0)
    h, b = system.h.toarray(), system.b[0]
    known = system.known[0]
    k = circuit.free_slice.start
    edges_v = np.where(circuit.edges < k, known[np.minimum(circuit.edges, k - 1)], 0.0)
    # constant term: devices between two known nodes fully, devices from a known node to a free one v_k^2 / 2
    both = (circuit.edges < k).all(axis=1)
    one = (circuit.edges < k).any(axis=1) & ~both
    c = 0.5 * np.sum(g_s[both] * (edges_v[both, 0] - edges_v[both, 1]) ** 2)
    c += 0.5 * np.sum(g_s[one] * np.sum(edges_v[one], axis=1) ** 2)
    c += 0.5 * beta_s * float(targets_v @ targets_v)
    _, logdet = np.linalg.slogdet(h)
    n = len(h)
    return c - b @ np.linalg.solve(h, b) / 2 + t_eff_w / 2 * logdet - n * t_eff_w / 2 * np.log(2 * np.pi * t_eff_w)


def grad_j(circuit, g_s, x, y, beta_s, t_eff_w, h=1e-9) -> np.ndarray:
    """``d/dG [F(beta) - F(0)]`` (V^2) by central differences of the closed form."""
    j = lambda g: gaussian_free_energy(circuit, g, x, y, beta_s, t_eff_w) - gaussian_free_energy(circuit, g, x, y, 0.0, t_eff_w)  # noqa: E731
    return np.array([(j(g_s + h * e) - j(g_s - h * e)) / (2 * h) for e in np.eye(len(g_s))])


def _statistics(args, circuit, g_s, x) -> None:
    system = CoContent(circuit, g_s, x[None], None, 0.0, 0.0)
    h = system.h.toarray()
    mean_ref = np.linalg.solve(h, system.b[0])
    cap = 1e-9
    tau = cap / np.linalg.eigvalsh(h).max()
    print("1. stationary statistics of the free nodes (a, b, out), linear network, C = 1 nF per node")
    print(f"   fastest time constant {tau:.3g} s; noise step dt = tau / {args.steps_per_tau}; "
          f"run {args.run_tau} tau per chain, {args.chains} chains")  # fmt: skip
    for model in args.models:
        strength = {"t_eff_w": 1e-11} if model == "gibbs" else {"temperature_k": 3e10}
        spec = noise_spec(model, dt_sec=tau / args.steps_per_tau, run_sec=args.run_tau * tau, burn_in_sec=10 * tau,
                          samples=int(args.run_tau - 10) * 4, capacitance_f=cap, **strength)  # fmt: skip
        cov_ref = stationary_covariance(circuit, g_s, spec)
        what = "k T / C" if model == "johnson" else "T_eff H^-1"
        print(f"   {model}: closed form mean {np.array2string(mean_ref, precision=5)} V, "
              f"variances ({what}) {np.array2string(np.diag(cov_ref), precision=4)} V^2")  # fmt: skip
        rng = np.random.default_rng(args.seed)
        xs = np.repeat(x[None], args.chains, 0)
        runs = {"native Langevin": langevin_samples(circuit, g_s, spec, xs, None, 0.0, rng)}
        if not args.no_ngspice:
            sampler = NgspiceSampler(spec, workers=2)
            try:
                runs["ngspice trnoise"] = sampler.sample(circuit, g_s, xs, FREE, rng)
            finally:
                sampler.close()
        for name, v in runs.items():
            vf = v[:, :, circuit.free_slice]
            centred = vf - vf.mean(axis=1, keepdims=True)
            var = np.einsum("rki,rki->i", centred, centred) / (vf.shape[0] * (vf.shape[1] - 1))
            dmean = (vf.mean(axis=(0, 1)) - mean_ref) / np.sqrt(np.diag(cov_ref))
            print(f"     {name:16s} mean - DC = {np.array2string(dmean, precision=3)} sd; "
                  f"variance / closed form = {np.array2string(var / np.diag(cov_ref), precision=3)}")  # fmt: skip
    print(f"   expected step bias of a mode of time constant tau: Euler-Maruyama +dt/(2 tau) = "
          f"{50 / args.steps_per_tau:+.1f}% at the fastest mode; trnoise (linear between samples) about "
          f"-0.45 dt/tau = {-45 / args.steps_per_tau:+.1f}%")  # fmt: skip


def _contrast(args, circuit, g_s, x, y) -> None:
    t_eff = args.t_eff_w
    print()
    print(f"2. d/dG [F(beta) - F(0)]: closed form against the contrastive estimate, T_eff = {t_eff:g} W, "
          f"{args.samples} exact Gaussian samples per phase")  # fmt: skip
    print("   beta (S)   |dJ/dG| (V^2)  rel. error  MC rel. std. error  cosine")
    spec = GibbsNoise(dt_sec=1e-8, run_sec=1e-3, burn_in_sec=1e-5, samples=args.samples, t_eff_w=t_eff, capacitance_f=1e-9)
    rng = np.random.default_rng(args.seed)
    a, b = circuit.edges.T
    for beta_s in args.betas:
        exact = grad_j(circuit, g_s, x, y, beta_s, t_eff)
        v_beta = gaussian_samples(circuit, g_s, spec, x[None], y[None], beta_s, rng)
        v_0 = gaussian_samples(circuit, g_s, spec, x[None], y[None], 0.0, rng)
        est = expected_energy_gradient(circuit, v_beta) - expected_energy_gradient(circuit, v_0)
        de = lambda v: 0.5 * (v[0][:, a] - v[0][:, b]) ** 2  # noqa: E731
        err = np.sqrt(de(v_beta).var(0) / args.samples + de(v_0).var(0) / args.samples)
        rel = np.linalg.norm(est - exact) / np.linalg.norm(exact)
        cos = est @ exact / np.linalg.norm(est) / np.linalg.norm(exact)
        print(f"   {beta_s:9.1e}  {np.linalg.norm(exact):12.4e}  {rel:10.3f}  {np.linalg.norm(err) / np.linalg.norm(exact):18.3f}  {cos:6.3f}")
    beta_s = args.betas[-1]
    exact = grad_j(circuit, g_s, x, y, beta_s, t_eff)
    nudges, weights = gauss_legendre_nudges(beta_s, args.points)
    path = -sum(w * loss_energy_covariance(circuit, gaussian_samples(circuit, g_s, spec, x[None], y[None], float(bj), rng), y[None])
                for bj, w in zip(nudges, weights)) / t_eff  # fmt: skip
    print(f"   path integral, {args.points} Gauss-Legendre nudges, beta = {beta_s:g} S: "
          f"rel. error {np.linalg.norm(path - exact) / np.linalg.norm(exact):.3f}, "
          f"cosine {path @ exact / np.linalg.norm(path) / np.linalg.norm(exact):.3f}")  # fmt: skip
    # the expected loss's gradient: dJ/dbeta at 0 = E_0[L]; its G-derivative by central differences in beta
    db = 1e-9
    loss_grad = (grad_j(circuit, g_s, x, y, db, t_eff) - grad_j(circuit, g_s, x, y, -db, t_eff)) / (2 * db)
    cov0 = -loss_energy_covariance(circuit, gaussian_samples(circuit, g_s, spec, x[None], y[None], 0.0, rng), y[None]) / t_eff
    print(f"   loss covariance -(1/T) Cov_0(L, dE/dG) against d E_0[L] / dG (closed form): "
          f"rel. error {np.linalg.norm(cov0 - loss_grad) / np.linalg.norm(loss_grad):.3f}")  # fmt: skip
    mean_loss = output_loss(circuit, gaussian_samples(circuit, g_s, spec, x[None], y[None], 0.0, rng)[0], np.repeat(y[None], args.samples, 0)).mean()
    print(f"   (E_0[L] = {mean_loss:.4g} V^2 at this input)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="eqspice gradcheck noise", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--models", nargs="+", choices=["gibbs", "johnson"], default=["gibbs", "johnson"])
    parser.add_argument("--chains", type=int, default=4, help="independent chains per sampler")
    parser.add_argument("--run-tau", type=float, default=400.0, help="chain length in fastest time constants")
    parser.add_argument("--steps-per-tau", type=int, default=40, help="noise steps per fastest time constant")
    parser.add_argument("--samples", type=int, default=200_000, help="exact Gaussian samples per phase (part 2)")
    parser.add_argument("--betas", nargs="+", type=float, default=[1e-7, 1e-6, 1e-5, 1e-4, 1e-3], help="nudges, S")
    parser.add_argument("--t-eff-w", type=float, default=1e-9, help="T_eff of part 2, watts")
    parser.add_argument("--points", type=int, default=3, help="quadrature nudges of the path integral")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ngspice", action="store_true", help="skip the ngspice transients")
    args = parser.parse_args(argv)
    from eqspice.learning.run.config import ConfigError

    if args.chains < 1 or args.samples < 2 or args.steps_per_tau < 2 or args.run_tau <= 20 or args.points < 1:
        raise ConfigError("gradcheck noise: need --chains >= 1, --samples >= 2, --steps-per-tau >= 2, --run-tau > 20, --points >= 1")
    if args.t_eff_w <= 0 or any(b <= 0 for b in args.betas):
        raise ConfigError("gradcheck noise: --t-eff-w and every --betas value must be positive")
    circuit, g_s = small_network()
    x, y = np.array([0.2, -0.1]), np.array([0.05])
    _statistics(args, circuit, g_s, x)
    _contrast(args, circuit, g_s, x, y)
    return 0
