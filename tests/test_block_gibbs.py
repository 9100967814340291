"""The block Gibbs sampler draws from the gibbs density exactly.

References are independent of the sampler's code: the closed form of a linear
network (dense nodal matrix of :mod:`tests.nodal`), and for diode circuits
the density ``exp(-(E + beta L) / T)`` integrated on a 2-D grid, with the
diode co-content obtained by integrating :func:`eqspice.simulator.diode.diode_current`
numerically.

Statistical tolerances: the chains are independent (one per batch row), so
the standard error of a chain average is the spread of the per-chain averages
over ``sqrt(chains)``, whatever the autocorrelation within a chain.  Each
check allows five standard errors.
"""

import networkx as nx
import numpy as np
import pytest
from scipy.integrate import cumulative_trapezoid, quad

from eqspice.circuits.network import DiodeModel, circuit_from_graph
from eqspice.circuits.noise import GibbsNoise
from eqspice.learning.run.config import ConfigError, parse_config
from eqspice.simulator.diode import diode_co_content, diode_current, thermal_voltage
from eqspice.simulator.engine import Nudge
from eqspice.simulator.sampling.block_gibbs import block_gibbs_samples, colour_classes
from eqspice.simulator.sampling.co_content import SamplingError
from tests.test_noise_sampling import dense_system
from tests.test_noisy_rules import with_

GMIN_S = 1e-12


def gibbs_spec(t_eff_w, samples):
    return GibbsNoise(dt_sec=1e-10, run_sec=1e-8, burn_in_sec=1e-9, samples=samples, t_eff_w=t_eff_w)


def chain_average(values):
    """Mean over chains and readings, and its standard error from the spread of the chain means."""
    per_chain = values.mean(axis=1)
    return per_chain.mean(axis=0), per_chain.std(axis=0, ddof=1) / np.sqrt(len(per_chain))


# -- (c) the diode co-content is the integral of ngspice's diode current -----------------------


@pytest.mark.parametrize("model", [DiodeModel(), DiodeModel(is_a=1e-9, n=1.8)])
def test_diode_co_content_is_the_integral_of_the_diode_current(model):
    vte = model.n * thermal_voltage()
    # both branches, the knee at -3 N Vt, and deep forward bias
    for v in [-2.0, -0.5, -3.0 * vte - 1e-3, -3.0 * vte, -3.0 * vte + 1e-3, -0.01, 0.0, 0.02, 0.3, 0.65]:
        points = [-3.0 * vte] if v < -3.0 * vte else None
        exact, err = quad(lambda u: float(diode_current(np.array(u), model, GMIN_S)[0]), 0.0, v,
                          points=points, epsabs=0.0, epsrel=1e-12, limit=200)  # fmt: skip
        got = float(diode_co_content(np.array(v), model, GMIN_S))
        assert got == pytest.approx(exact, rel=1e-9, abs=1e-24), (v, got, exact)


# -- (a) linear network: mean = DC solution, covariance = T H^-1 ---------------------------------


def layered_linear():
    """Inputs -> three hidden nodes -> two outputs -> a 0 V rail: a bipartite free-node graph."""
    graph = nx.Graph()
    rng = np.random.default_rng(0)
    for h in ("h1", "h2", "h3"):
        for i in ("in0", "in1"):
            graph.add_edge(i, h)
        for o in ("o1", "o2"):
            graph.add_edge(h, o)
    graph.add_edges_from([("o1", "vss"), ("o2", "vss")])
    circuit = circuit_from_graph(graph, ["in0", "in1"], ["o1", "o2"], fixed={"vss": 0.0})
    return circuit, rng.uniform(2e-5, 1e-4, circuit.n_edges)


@pytest.mark.parametrize("beta_s", [0.0, 4e-5, -4e-5])
def test_linear_network_samples_have_the_dc_mean_and_covariance_t_h_inverse(beta_s):
    circuit, g = layered_linear()
    x, y = np.array([0.5, -0.3]), np.array([0.1, -0.1])
    t_w, chains, readings = 1e-9, 100, 200
    h, b = dense_system(circuit, g, x, beta_s, y)
    mean_ref, cov_ref = np.linalg.solve(h, b), t_w * np.linalg.inv(h)
    acceptance = {}
    v = block_gibbs_samples(circuit, g, gibbs_spec(t_w, readings), np.repeat(x[None], chains, 0),
                            np.repeat(y[None], chains, 0), beta_s, np.random.default_rng(1),
                            acceptance=acceptance)[:, :, circuit.free_slice]  # fmt: skip
    # a Gaussian conditional is proposed exactly: every move is accepted
    assert acceptance["rate"] > 1 - 1e-9
    mean, mean_se = chain_average(v)
    assert np.all(np.abs(mean - mean_ref) < 5 * mean_se), (mean - mean_ref) / mean_se
    centred = v - mean_ref
    cov, cov_se = chain_average(np.einsum("rki,rkj->rkij", centred, centred))
    assert np.all(np.abs(cov - cov_ref) < 5 * cov_se), (cov - cov_ref) / cov_se
    # the check can fail: the standard errors resolve the covariance to a few per cent
    assert np.all(cov_se[np.diag_indices(len(h))] < 0.05 * np.diag(cov_ref))


# -- (b) diode network: expectations against a 2-D integral over the density -------------------

DIODES = DiodeModel()
X_V = 1.5  # drives the hidden node past the knee of the diode to +0.4 V


def diode_network():
    """One hidden node h with a diode pair to +/-0.4 V, and an output o joined to h by a memristor
    and a diode (anode h): a free-node graph with one edge, bipartite."""
    graph = nx.Graph([("in0", "h"), ("h", "o"), ("o", "vss")])
    fixed = {"vp": 0.4, "vn": -0.4, "vss": 0.0}
    circuit = circuit_from_graph(graph, ["in0"], ["o"], fixed=fixed, diodes=[("h", "vp"), ("vn", "h"), ("h", "o")],
                                 diode_model=DIODES)  # fmt: skip
    return circuit, np.array([1e-4, 5e-5, 5e-5])


def numerical_co_content(u_max=2.0, points=400_001):
    """``D(u)`` by cumulative trapezoidal integration of the diode current, as an interpolant."""
    u = np.linspace(-u_max, u_max, points)
    i, _ = diode_current(u, DIODES, GMIN_S)
    d = cumulative_trapezoid(i, u, initial=0.0)
    d -= np.interp(0.0, u, d)
    return lambda w: np.interp(w, u, d)


def grid_expectations(circuit, g, t_w, beta_s, target_v):
    """``E[v_h], E[v_o]`` and ``E[dE/dG_e]`` over ``exp(-(E + beta L) / T)`` on a fine grid."""
    d = numerical_co_content()
    vh = np.linspace(0.3, 1.3, 1201)[:, None]
    vo = np.linspace(-0.3, 0.9, 1201)[None, :]
    edge_dv = [X_V - vh, vh - vo, vo - 0.0]
    energy = sum(ge * dv**2 / 2 for ge, dv in zip(g, edge_dv))
    energy = energy + d(vh - 0.4) + d(-0.4 - vh) + d(vh - vo) + beta_s * (vo - target_v) ** 2 / 2
    weight = np.exp(-(energy - energy.min()) / t_w)
    # the density has died out well inside the grid
    assert weight[[0, -1], :].max() < 1e-12 and weight[:, [0, -1]].max() < 1e-12
    weight /= weight.sum()
    means = [float((weight * np.broadcast_to(q, weight.shape)).sum()) for q in (vh, vo)]
    de_dg = [float((weight * dv**2 / 2).sum()) for dv in edge_dv]
    return np.array(means), np.array(de_dg)


@pytest.mark.parametrize("beta_s", [0.0, 5e-5])
def test_diode_network_expectations_match_the_integral_over_the_density(beta_s):
    circuit, g = diode_network()
    t_w, target, chains, readings = 1.5e-7, 0.1, 64, 300
    assert [len(c) for c in colour_classes(circuit)] == [1, 1]
    acceptance = {}
    v = block_gibbs_samples(circuit, g, gibbs_spec(t_w, readings), np.full((chains, 1), X_V),
                            np.full((chains, 1), target), beta_s, np.random.default_rng(2),
                            acceptance=acceptance)  # fmt: skip
    names = list(circuit.node_names)
    vh, vo = v[:, :, names.index("h")], v[:, :, names.index("o")]
    edge_dv = np.stack([X_V - vh, vh - vo, vo], axis=2)
    mean, mean_se = chain_average(np.stack([vh, vo], axis=2))
    de_dg, de_dg_se = chain_average(edge_dv**2 / 2)
    mean_ref, de_dg_ref = grid_expectations(circuit, g, t_w, beta_s, target)
    assert np.all(np.abs(mean - mean_ref) < 5 * mean_se), (mean, mean_ref, mean_se)
    assert np.all(np.abs(de_dg - de_dg_ref) < 5 * de_dg_se), (de_dg, de_dg_ref, de_dg_se)
    # the diodes matter: the proposal is not the conditional (some moves refused), and the noise
    # moves the hidden node's mean away from the noiseless operating point by many standard errors
    from eqspice.simulator.native import NativeEngine

    engine = NativeEngine()
    engine.load(circuit, g)
    dc = engine.settle(np.array([[X_V]]), Nudge(targets_v=np.array([[target]]), beta_s=beta_s))[0]
    assert 0.5 < acceptance["rate"] < 0.999
    assert abs(mean_ref[0] - dc[names.index("h")]) > 10 * mean_se[0]


# -- (d) refusals --------------------------------------------------------------------------------


def test_a_circuit_with_an_odd_cycle_of_free_nodes_is_refused_with_the_fix():
    graph = nx.Graph([("in0", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "vss")])
    circuit = circuit_from_graph(graph, ["in0"], ["c"], fixed={"vss": 0.0})
    with pytest.raises(SamplingError, match="bipartite.*langevin") as info:
        block_gibbs_samples(circuit, np.full(5, 1e-4), gibbs_spec(1e-9, 4), np.zeros((1, 1)), None, 0.0,
                            np.random.default_rng(0))  # fmt: skip
    assert "\n" not in str(info.value)


def test_block_gibbs_with_johnson_noise_is_a_one_line_config_error():
    raw = with_(noise__model="johnson", noise__tau_sec=None, noise__native_sampler="block_gibbs")
    with pytest.raises(ConfigError, match="block_gibbs.*johnson") as info:
        parse_config(raw)
    assert "\n" not in str(info.value)
    parse_config(with_(noise__native_sampler="block_gibbs"))  # gibbs is fine


def test_the_sweeps_come_from_the_seeded_generator():
    circuit, g = diode_network()
    draw = lambda seed: block_gibbs_samples(circuit, g, gibbs_spec(1.5e-7, 5), np.full((3, 1), X_V), None, 0.0,
                                            np.random.default_rng(seed))  # fmt: skip
    assert np.array_equal(draw(7), draw(7)) and not np.array_equal(draw(7), draw(8))
