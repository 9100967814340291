"""The finite-nudge theorem on a linear network: d/dG [F(beta) - F(0)] = E_beta[dE/dG] - E_0[dE/dG].

For a linear network with gibbs noise, ``E + beta L`` is a quadratic form on the
free nodes, the density ``exp(-(E + beta L) / T)`` is Gaussian, and

    F(beta) = -T log Z_beta
            = c_beta - b_beta^T H_beta^-1 b_beta / 2 + (T/2) log det H_beta - (n T / 2) log(2 pi T)

in closed form.  Its derivative in each conductance (central differences of
that formula, built here from a dense nodal matrix) is compared with the
Monte Carlo contrastive estimate from the sampler, for nudges spanning a
factor of 10^4.  The Monte Carlo error is estimated from the samples.
"""

import networkx as nx
import numpy as np
import pytest
from nodal import conductance_matrix

from eqspice.circuits.network import circuit_from_graph
from eqspice.circuits.noise import GibbsNoise
from eqspice.learning.rules.noisy import expected_energy_gradient
from eqspice.simulator.sampling.gaussian import gaussian_samples
from eqspice.simulator.sampling.langevin import langevin_samples

T_EFF_W = 1e-9  # V^2 S: output noise of about 2 mV rms
TARGET_V = np.array([0.05])


def network():
    graph = nx.Graph([("in0", "a"), ("in1", "a"), ("a", "b"), ("in1", "b"), ("b", "out"), ("a", "out"), ("out", "vss")])
    circuit = circuit_from_graph(graph, ["in0", "in1"], ["out"], fixed={"vss": 0.0})
    g = np.array([1e-4, 0.5e-4, 2e-4, 1e-4, 1.5e-4, 0.7e-4, 0.3e-4])
    return circuit, g


X = np.array([0.2, -0.1])


def free_energy(circuit, g, beta_s):
    """``F(beta) = -T log Z_beta`` (watts) from the Gaussian integral, by hand."""
    lap = conductance_matrix(circuit, g)
    f = circuit.free_slice
    known = np.concatenate([X, circuit.fixed_volts])
    h = lap[f, f].copy()
    b = -lap[f, : f.start] @ known
    c = known @ lap[: f.start, : f.start] @ known / 2
    out = circuit.output_index - f.start
    h[out, out] += beta_s
    b[out] += beta_s * TARGET_V
    c += beta_s * TARGET_V @ TARGET_V / 2
    n = len(h)
    _, logdet = np.linalg.slogdet(h)
    return c - b @ np.linalg.solve(h, b) / 2 + T_EFF_W / 2 * logdet - n * T_EFF_W / 2 * np.log(2 * np.pi * T_EFF_W)


def grad_free_energy_difference(circuit, g, beta_s, h=1e-9):
    grad = np.empty_like(g)
    for e in range(len(g)):
        step = np.zeros_like(g)
        step[e] = h
        diff = lambda gg: free_energy(circuit, gg, beta_s) - free_energy(circuit, gg, 0.0)  # noqa: E731
        grad[e] = (diff(g + step) - diff(g - step)) / (2 * h)
    return grad


def spec(samples):
    return GibbsNoise(dt_sec=1e-8, run_sec=1e-3, burn_in_sec=1e-5, samples=samples, t_eff_w=T_EFF_W, capacitance_f=1e-9)


def contrast_and_error(circuit, v_beta, v_0):
    """Mean of ``dE/dG`` under beta minus under 0 (V^2), and its standard error from the samples."""
    a, b = circuit.edges.T
    de = lambda v: 0.5 * (v[:, a] - v[:, b]) ** 2  # noqa: E731
    d_beta, d_0 = de(v_beta), de(v_0)
    error = np.sqrt(d_beta.var(0) / len(d_beta) + d_0.var(0) / len(d_0))
    return d_beta.mean(0) - d_0.mean(0), error


@pytest.mark.parametrize("beta_s", [1e-7, 1e-6, 1e-5, 1e-4, 1e-3])
def test_contrastive_estimate_is_the_gradient_of_the_free_energy_difference(beta_s):
    circuit, g = network()
    exact = grad_free_energy_difference(circuit, g, beta_s)
    rng = np.random.default_rng(int(beta_s * 1e9))
    s = spec(200_000)
    v_beta = gaussian_samples(circuit, g, s, X[None], TARGET_V[None], beta_s, rng)[0]
    v_0 = gaussian_samples(circuit, g, s, X[None], TARGET_V[None], 0.0, rng)[0]
    estimate, error = contrast_and_error(circuit, v_beta, v_0)
    assert np.all(np.abs(estimate - exact) < 5 * error), (estimate, exact, error)
    # the same number through the controller's code path (sum over the batch of sample means)
    assert np.allclose(
        expected_energy_gradient(circuit, v_beta[None]) - expected_energy_gradient(circuit, v_0[None]), estimate
    )
    if beta_s >= 1e-4:  # a finite nudge: the signal stands far above the noise
        assert np.linalg.norm(estimate - exact) < 0.05 * np.linalg.norm(exact)


def test_tiny_nudges_drown_in_noise():
    """Relative Monte Carlo error of the contrast, same sample budget: large at 1e-7 S, small at 1e-4 S."""
    circuit, g = network()
    rng = np.random.default_rng(2)
    s = spec(20_000)
    rel = {}
    for beta_s in (1e-7, 1e-4):
        exact = grad_free_energy_difference(circuit, g, beta_s)
        v_beta = gaussian_samples(circuit, g, s, X[None], TARGET_V[None], beta_s, rng)[0]
        v_0 = gaussian_samples(circuit, g, s, X[None], TARGET_V[None], 0.0, rng)[0]
        _, error = contrast_and_error(circuit, v_beta, v_0)
        rel[beta_s] = np.linalg.norm(error) / np.linalg.norm(exact)
    assert rel[1e-7] > 1.0 > 0.1 > rel[1e-4]


def test_langevin_dynamics_give_the_same_gradient_at_a_finite_nudge():
    circuit, g = network()
    beta_s = 1e-4
    exact = grad_free_energy_difference(circuit, g, beta_s)
    tau = 1e-9 / 4e-4
    s = GibbsNoise(dt_sec=tau / 40, run_sec=400 * tau, burn_in_sec=10 * tau, samples=1560,
                  t_eff_w=T_EFF_W, capacitance_f=1e-9)
    rng = np.random.default_rng(8)
    chains = 16
    xs, ys = np.repeat(X[None], chains, 0), np.repeat(TARGET_V[None], chains, 0)
    v_beta = langevin_samples(circuit, g, s, xs, ys, beta_s, rng)
    v_0 = langevin_samples(circuit, g, s, xs, ys, 0.0, rng)
    per_chain = np.array([expected_energy_gradient(circuit, v_beta[i : i + 1]) - expected_energy_gradient(circuit, v_0[i : i + 1]) for i in range(chains)])
    estimate, error = per_chain.mean(0), per_chain.std(0, ddof=1) / np.sqrt(chains)
    # 5 standard errors between chains, plus the Euler-Maruyama bias of the variances (dt / 2 tau ~ 1.3%)
    assert np.all(np.abs(estimate - exact) < 5 * error + 0.02 * np.abs(exact)), (estimate, exact, error)
