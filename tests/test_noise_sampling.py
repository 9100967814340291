"""Thermal noise: sampled statistics against closed forms, ngspice against the native sampler.

Linear network, both noise models.  At rest the free-node voltages are Gaussian
with mean = the DC solution and covariance ``k T C^-1`` (johnson) or
``T_eff H^-1`` (gibbs), computed here from a dense nodal matrix
(:mod:`tests.nodal`), not from the sampler's code.

Statistical tolerances: a chain of length ``W`` of a mode with time constant
``tau`` gives the variance to a relative standard error of about
``sqrt(tau / W)`` and the mean to ``sqrt(2 tau / W)`` standard deviations.
Each test states its ``W / tau`` and allows five standard errors plus the
discretisation bias (``dt / tau`` = 1/40 to 1/30 of the fastest mode:
Euler-Maruyama about +dt/(2 tau) = +1.7%, trnoise about -1.5%).
"""

import networkx as nx
import numpy as np
import pytest

from eqspice.circuits.network import circuit_from_graph
from eqspice.circuits.noise import BOLTZMANN_J_PER_K, GibbsNoise, NoiseSpecError, noise_netlist_lines, noise_spec
from eqspice.simulator.engine import FREE
from eqspice.simulator.ngspice.sampler import NgspiceSampler
from eqspice.simulator.sampling.co_content import SamplingError
from eqspice.simulator.sampling.gaussian import gaussian_samples
from eqspice.simulator.sampling.langevin import langevin_samples
from tests.nodal import conductance_matrix

C_F = 1e-9  # node capacitance
T_EFF_W = 1e-11  # gibbs temperature, V^2 S
T_K = 3e10  # johnson temperature: kT/C = 0.4 mV^2 (a hot 1 nF node, to see it in millivolts)


def small_network():
    """Three free nodes a, b, c between two inputs and a 0 V rail (no diodes)."""
    graph = nx.Graph([("in0", "a"), ("a", "b"), ("b", "c"), ("c", "in1"), ("a", "c"), ("b", "vss")])
    circuit = circuit_from_graph(graph, ["in0", "in1"], ["c"], fixed={"vss": 0.0})
    g = np.array([1e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4, 1e-4])
    return circuit, g


def dense_system(circuit, g, inputs_v, beta_s=0.0, targets_v=None):
    """``H`` (S) and ``b`` (A) of ``E = v^T H v / 2 - b^T v + c`` on the free nodes, by hand."""
    lap = conductance_matrix(circuit, g)
    f = circuit.free_slice
    known = np.concatenate([inputs_v, circuit.fixed_volts])
    h = lap[f, f].copy()
    b = -lap[f, : f.start] @ known
    out = circuit.output_index - f.start
    h[out, out] += beta_s
    if targets_v is not None:
        b[out] += beta_s * targets_v
    return h, b


def spec(model, tau, **kw):
    base = dict(dt_sec=tau / 40, run_sec=600 * tau, burn_in_sec=10 * tau, samples=2360, capacitance_f=C_F)
    base.update({"t_eff_w": T_EFF_W} if model == "gibbs" else {"temperature_k": T_K})
    base.update(kw)
    return noise_spec(model, **base)


def closed_form(circuit, g, model, inputs_v):
    h, b = dense_system(circuit, g, inputs_v)
    cov = T_EFF_W * np.linalg.inv(h) if model == "gibbs" else BOLTZMANN_J_PER_K * T_K / C_F * np.eye(len(h))
    tau = C_F / np.linalg.eigvalsh(h).max()
    return np.linalg.solve(h, b), cov, tau


def pooled_moments(v_free):
    """Mean and covariance pooled over chains (each chain about its own mean)."""
    centred = v_free - v_free.mean(axis=1, keepdims=True)
    cov = np.einsum("rki,rkj->ij", centred, centred) / (centred.shape[0] * (centred.shape[1] - 1))
    return v_free.mean(axis=(0, 1)), cov


def check_moments(mean, cov, mean_ref, cov_ref, chain_over_tau_slow, bias):
    sd = np.sqrt(np.diag(cov_ref))
    # mean: 5 standard errors of a chain of W / tau_slow
    assert np.all(np.abs(mean - mean_ref) < 5 * sd * np.sqrt(2 / chain_over_tau_slow)), (mean, mean_ref)
    # variances and correlations: 5 standard errors plus the step bias
    tol = 5 / np.sqrt(chain_over_tau_slow) + bias
    assert np.allclose(np.diag(cov), np.diag(cov_ref), rtol=tol), (np.diag(cov) / np.diag(cov_ref))
    corr = cov / np.outer(np.sqrt(np.diag(cov)), np.sqrt(np.diag(cov)))
    corr_ref = cov_ref / np.outer(sd, sd)
    assert np.allclose(corr, corr_ref, atol=tol), (corr, corr_ref)


X = np.array([0.3, -0.2])


@pytest.mark.parametrize("model", ["gibbs", "johnson"])
def test_langevin_matches_the_closed_form(model):
    circuit, g = small_network()
    mean_ref, cov_ref, tau = closed_form(circuit, g, model, X)
    h, _ = dense_system(circuit, g, X)
    tau_slow = C_F / np.linalg.eigvalsh(h).min()
    chains = 8
    s = spec(model, tau)
    v = langevin_samples(circuit, g, s, np.repeat(X[None], chains, 0), None, 0.0, np.random.default_rng(3))
    mean, cov = pooled_moments(v[:, :, circuit.free_slice])
    check_moments(mean, cov, mean_ref, cov_ref, chains * s.window_sec / tau_slow, bias=0.02)


@pytest.mark.parametrize("model", ["gibbs", "johnson"])
def test_exact_gaussian_sampler_matches_the_closed_form(model):
    circuit, g = small_network()
    mean_ref, cov_ref, tau = closed_form(circuit, g, model, X)
    s = spec(model, tau, samples=40000)
    v = gaussian_samples(circuit, g, s, X[None], None, 0.0, np.random.default_rng(4))[0][:, circuit.free_slice]
    # independent draws: standard error of a variance sqrt(2 / n)
    check_moments(v.mean(0), np.cov(v.T), mean_ref, cov_ref, 40000 / 2, bias=0.0)


def test_johnson_noise_is_equipartition_whatever_the_conductances():
    circuit, g = small_network()
    s = spec("johnson", 1e-6)
    for scale in (0.1, 1.0, 10.0):
        v = gaussian_samples(circuit, g * scale, s, X[None], None, 0.0, np.random.default_rng(5))
        var = v[0][:, circuit.free_slice].var(axis=0)
        assert np.allclose(var, BOLTZMANN_J_PER_K * T_K / C_F, rtol=0.15)


@pytest.fixture(scope="module")
def ngspice_runs():
    """Four transient runs per model on the small network (2 ngspice children)."""
    circuit, g = small_network()
    out = {}
    sampler = None
    for model in ("gibbs", "johnson"):
        mean_ref, cov_ref, tau = closed_form(circuit, g, model, X)
        s = spec(model, tau, dt_sec=tau / 30, run_sec=250 * tau, samples=960)
        sampler = NgspiceSampler(s, workers=2)
        try:
            v = sampler.sample(circuit, g, np.repeat(X[None], 4, 0), FREE, np.random.default_rng(6))
        finally:
            sampler.close()
        out[model] = (v, s, mean_ref, cov_ref)
    return circuit, g, out


@pytest.mark.parametrize("model", ["gibbs", "johnson"])
def test_ngspice_transient_matches_the_closed_form(ngspice_runs, model):
    circuit, g, runs = ngspice_runs
    v, s, mean_ref, cov_ref = runs[model]
    h, _ = dense_system(circuit, g, X)
    tau_slow = C_F / np.linalg.eigvalsh(h).min()
    mean, cov = pooled_moments(v[:, :, circuit.free_slice])
    check_moments(mean, cov, mean_ref, cov_ref, 4 * s.window_sec / tau_slow, bias=0.02)


@pytest.mark.parametrize("model", ["gibbs", "johnson"])
def test_ngspice_and_native_agree_statistically(ngspice_runs, model):
    circuit, g, runs = ngspice_runs
    v_ng, s, _, cov_ref = runs[model]
    v_em = langevin_samples(circuit, g, s, np.repeat(X[None], 4, 0), None, 0.0, np.random.default_rng(7))
    h, _ = dense_system(circuit, g, X)
    tau_slow = C_F / np.linalg.eigvalsh(h).min()
    m_ng, c_ng = pooled_moments(v_ng[:, :, circuit.free_slice])
    m_em, c_em = pooled_moments(v_em[:, :, circuit.free_slice])
    n_eff = 4 * s.window_sec / tau_slow
    sd = np.sqrt(np.diag(cov_ref))
    # two independent estimates: sqrt(2) times one's standard error, five of them, plus both biases
    assert np.all(np.abs(m_ng - m_em) < 5 * sd * np.sqrt(2 * 2 / n_eff))
    assert np.allclose(np.diag(c_ng), np.diag(c_em), rtol=5 * np.sqrt(2 / n_eff) + 0.03)


def test_netlist_states_the_noise_and_sources_have_the_right_strength():
    circuit, g = small_network()
    s = spec("gibbs", 1e-6)
    text = "\n".join(noise_netlist_lines(circuit, g, s, seed=11))
    assert "T_eff = 1e-11 W" in text and "burn-in 1e-05 s" in text and "setseed 11" in text
    na = float(text.split("Inoise_a 0 a dc 0 trnoise(")[1].split()[0])
    # two-sided PSD of trnoise below 1/NT is NA^2 NT; gibbs wants 2 T_eff C
    assert na**2 * s.dt_sec == pytest.approx(2 * T_EFF_W * C_F, rel=1e-12)
    johnson = "\n".join(noise_netlist_lines(circuit, g, spec("johnson", 1e-6)))
    assert johnson.count("dc 0 trnoise(") == 6 and ".tran 2.5e-08 0.0006 0 2.5e-08" in johnson


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(temperature_k=-1.0, model="johnson"), "temperature_k"),
        (dict(capacitance_f=-1e-12), "capacitance_f"),
        (dict(dt_sec=-1e-9), "dt_sec"),
        (dict(dt_sec=1.0), "longer than the run"),
        (dict(burn_in_sec=1.0), "burn_in_sec"),
        (dict(t_eff_w=0.0), "t_eff_w"),
    ],
)
def test_bad_noise_parameters_are_refused_before_anything_runs(bad, message):
    base = dict(model="gibbs", dt_sec=1e-8, run_sec=1e-5, burn_in_sec=1e-6, samples=10, t_eff_w=1e-11)
    base.update(bad)
    if base["model"] == "johnson":
        del base["t_eff_w"]  # a gibbs parameter: johnson noise refuses it
    with pytest.raises(NoiseSpecError, match=message):
        noise_spec(**base)


def test_a_time_step_beyond_the_circuit_time_constant_is_refused():
    circuit, g = small_network()
    s = spec("gibbs", 1e-6, dt_sec=2e-6, run_sec=1e-3, burn_in_sec=1e-5)
    with pytest.raises(SamplingError, match="dt_sec"):
        langevin_samples(circuit, g, s, X[None], None, 0.0, np.random.default_rng(0))


def test_matched_capacitances_give_every_node_the_same_time_constant_even_when_nudged():
    from eqspice.circuits.noise import node_capacitances

    circuit, g = small_network()
    s = GibbsNoise(dt_sec=1e-10, run_sec=1e-8, burn_in_sec=1e-9, samples=4, t_eff_w=1e-11, tau_sec=1e-9)
    h, _ = dense_system(circuit, g, X, beta_s=3e-4)
    assert np.allclose(node_capacitances(circuit, g, s, beta_s=3e-4) / np.diag(h), 1e-9, rtol=1e-12)


def diode_current_by_hand(v_d, model):
    """Shockley's law at 27 degC, constants written out: ``IS (exp(v / (N k T / q)) - 1)`` (A)."""
    vte = model.n * 1.38064852e-23 * 300.15 / 1.6021766208e-19
    return model.is_a * np.expm1(v_d / vte)


def configurational_temperature(circuit, g, v):
    """``<(v_i - <v_i>) dE/dv_i>`` (W) per input row and free node, ``dE/dv`` from the nodal matrix and Shockley.

    Integrating by parts under ``p ~ exp(-E / T)``: ``<v_i dE/dv_j> = T delta_ij`` and
    ``<dE/dv_i> = 0``, for any smooth confining E, diodes included.
    """
    current = v @ conductance_matrix(circuit, g).T
    for anode, cathode in circuit.diodes:
        i_d = diode_current_by_hand(v[..., anode] - v[..., cathode], circuit.diode_model)
        current[..., anode] += i_d
        current[..., cathode] -= i_d
    f = circuit.free_slice
    centred = v[..., f] - v[..., f].mean(axis=1, keepdims=True)
    return (centred * current[..., f]).mean(axis=1)


@pytest.mark.parametrize("sampler", ["langevin", "ngspice"])
def test_both_samplers_hold_a_diode_clipped_crossbar_at_the_gibbs_temperature(sampler):
    """A 2-3-1 crossbar whose hidden diodes conduct (g_d up to 3x the memristors'): the virial theorem.

    Chains of 800 tau at dt = tau / 40 (matched capacitances, diodes excluded from tau):
    each row's mean over its 4 free nodes has about 2% statistical error, and each
    sampler's step bias is 1-2% (Euler-Maruyama up, trnoise down; at tau / 20 trnoise
    read about 4% low, and ngspice's noise cannot be seeded, so that left the run one
    unlucky draw from the bound); a wrong noise amplitude or a sampler blind to the
    diodes is off by tens of percent.
    """
    from eqspice.circuits.network import CrossbarSpec, crossbar

    circuit = crossbar(CrossbarSpec(layers=(2, 3, 1), bias_v=0.5, diode_bias_v=(0.4, -0.4)))
    g = np.random.default_rng(0).uniform(2e-5, 1e-4, circuit.n_edges)
    x = np.array([[0.8, -0.6, -0.8, 0.6], [-0.9, 0.2, 0.9, -0.2]])  # hidden nodes pushed into both clips
    t_eff_w = 1e-9
    s = GibbsNoise(t_eff_w=t_eff_w, tau_sec=1e-9, dt_sec=2.5e-11, burn_in_sec=5e-9, run_sec=8.05e-7, samples=4000)
    if sampler == "langevin":
        v = langevin_samples(circuit, g, s, x, None, 0.0, np.random.default_rng(1))
    else:
        ng = NgspiceSampler(s, workers=2)
        try:
            v = ng.sample(circuit, g, x, FREE, np.random.default_rng(2))
        finally:
            ng.close()
    d = [diode_current_by_hand(v[..., a] - v[..., c], circuit.diode_model) for a, c in circuit.diodes]
    assert max(np.mean(i) for i in d) > 3e-6  # the diodes carry microamperes: the nonlinearity is in play
    per_row = configurational_temperature(circuit, g, v).mean(axis=1) / t_eff_w
    assert np.allclose(per_row, 1.0, atol=0.1), per_row
