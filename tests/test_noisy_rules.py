"""The three noisy estimators against closed forms, and noisy training from a config.

Linear network, gibbs noise, exact Gaussian samples.  Closed forms, by hand
from a dense nodal matrix: ``J(beta) = F(beta) - F(0)`` (Gaussian integrals)
and ``E_0[L] = |P mu - y|^2 / 2 + tr(P Sigma P^T) / 2``; their conductance
gradients by central differences.
"""

import numpy as np
import pytest

from eqspice.circuits.noise import GibbsNoise
from eqspice.learning.rules.noisy import NoisyRule, gauss_legendre_nudges
from eqspice.learning.run.config import ConfigError, parse_config
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.sampling.native import NativeSampler
from tests.nodal import conductance_matrix
from tests.test_finite_nudge_theorem import T_EFF_W, TARGET_V, X, free_energy, network


def expected_loss(circuit, g):
    lap = conductance_matrix(circuit, g)
    f = circuit.free_slice
    known = np.concatenate([X, circuit.fixed_volts])
    h = lap[f, f]
    mu = np.linalg.solve(h, -lap[f, : f.start] @ known)
    out = circuit.output_index - f.start
    sigma = T_EFF_W * np.linalg.inv(h)
    return 0.5 * np.sum((mu[out] - TARGET_V) ** 2) + 0.5 * np.trace(sigma[np.ix_(out, out)])


def central_difference(fun, g, h=1e-9):
    return np.array([(fun(g + h * e) - fun(g - h * e)) / (2 * h) for e in np.eye(len(g))])


def estimate(kind, beta_s, samples, seed, points=3):
    circuit, g = network()
    spec = GibbsNoise(dt_sec=1e-8, run_sec=1e-3, burn_in_sec=1e-5, samples=samples, t_eff_w=T_EFF_W, capacitance_f=1e-9)
    rule = NoisyRule(kind, beta_s, NativeSampler(spec, "exact_gaussian"), temperature_w=T_EFF_W, points=points)
    engine = NativeEngine()
    engine.load(circuit, g)
    phases = rule.phases(engine, X[None], TARGET_V[None], rng=np.random.default_rng(seed))
    return rule.gradient(circuit, phases)


def test_gauss_legendre_nudges_integrate_a_cubic_exactly():
    b, w = gauss_legendre_nudges(2e-4, 2)
    assert np.all((b > 0) & (b < 2e-4))
    assert np.sum(w * b**3) == pytest.approx((2e-4) ** 4 / 4, rel=1e-12)


@pytest.mark.parametrize("kind", ["contrastive", "path_integral"])
def test_finite_nudge_estimators_give_the_gradient_of_j(kind):
    circuit, g = network()
    beta_s = 1e-4
    exact = central_difference(lambda gg: free_energy(circuit, gg, beta_s) - free_energy(circuit, gg, 0.0), g) / beta_s
    got = estimate(kind, beta_s, 100_000, seed=1)
    assert np.linalg.norm(got - exact) < 0.1 * np.linalg.norm(exact), (got, exact)


def test_loss_covariance_gives_the_gradient_of_the_expected_loss():
    circuit, g = network()
    exact = central_difference(lambda gg: expected_loss(circuit, gg), g)
    got = estimate("loss_covariance", 1e-4, 200_000, seed=2)
    assert np.linalg.norm(got - exact) < 0.1 * np.linalg.norm(exact), (got, exact)


NOISY = {
    "data": {"name": "iris", "limit_train": 16, "limit_test": 8},
    "network": {"layers": [4, 8, 3]},
    "training": {"epochs": 1, "batch_size": 8, "beta_s": 1e-4, "estimator": "contrastive",
                 "target_high_v": 0.05, "target_low_v": -0.05},
    "engine": {"backend": "native"},
    "noise": {"model": "gibbs", "t_eff_w": 1e-9, "tau_sec": 1e-9, "dt_sec": 1e-10, "burn_in_sec": 2e-9, "run_sec": 1e-8, "samples": 8},
}


def with_(**changes):
    raw = {k: dict(v) for k, v in NOISY.items()}
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        raw.setdefault(section, {})[key] = value
    return raw


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(noise__model="johnson", noise__temperature_k=-3.0), "temperature_k"),
        (dict(noise__capacitance_f=-1e-12), "capacitance_f"),
        (dict(noise__dt_sec=-1e-10), "dt_sec"),
        (dict(noise__dt_sec=1e-7), "longer than the run"),
        (dict(noise__burn_in_sec=2e-8), "burn_in_sec"),
        (dict(noise__model="johnson", training__estimator="path_integral"), "gibbs"),
        (dict(noise__model="none", training__estimator="contrastive"), "noise.model"),
        (dict(noise__native_sampler="exact_gaussian"), "linear network"),
        (dict(training__estimator="corrected"), "noiseless asymmetric EP"),
        (dict(mismatch__nonreciprocal=0.1), "not modelled by the samplers"),
        (dict(mismatch__diode_is=0.3), "not modelled by the samplers"),
    ],
)
def test_bad_noise_configs_are_one_line_errors(changes, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(with_(**changes))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("estimator", ["centred", "path_integral"])
def test_noisy_training_runs_from_a_config_and_repeats_with_its_seed(tmp_path, monkeypatch, estimator):
    import eqspice.learning.run.loop as loop
    from eqspice.learning.run.loop import train

    monkeypatch.setattr(loop, "save_reports", lambda *a: None)  # plots are not the point here

    config = parse_config(with_(training__estimator=estimator, noise__quadrature_points=2))
    a = train(config, tmp_path / "a", progress=False)
    b = train(config, tmp_path / "b", progress=False)
    assert np.array_equal(a.g_s, b.g_s)
    assert len(a.metrics) == 1 and np.isfinite(a.metrics[0]["test_loss"])


def test_chip_in_the_loop_with_ngspice_transients(tmp_path, monkeypatch):
    """Every phase a noisy ngspice transient; the run records its loss and the conductances move."""
    import eqspice.learning.run.loop as loop
    from eqspice.circuits.network import crossbar
    from eqspice.learning.run.build import initial_state, make_device
    from eqspice.learning.run.loop import train

    monkeypatch.setattr(loop, "save_reports", lambda *a: None)
    config = parse_config(
        with_(data__limit_train=4, data__limit_test=4, training__batch_size=4, engine__backend="ngspice",
              noise__samples=4, noise__run_sec=6e-9)  # fmt: skip
    )
    start = initial_state(config, crossbar(config.network), make_device(config)).g_s
    state = train(config, tmp_path / "run", progress=False)
    assert np.isfinite(state.metrics[0]["train_loss"]) and not np.array_equal(state.g_s, start)
