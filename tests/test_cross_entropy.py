"""The cross-entropy nudge: its currents and its EP update against finite differences."""

import numpy as np
import pytest

from eqspice.circuits import CrossbarSpec, DiodeModel, crossbar
from eqspice.circuits.noise import GibbsNoise
from eqspice.learning.gradcheck.noise import grad_j
from eqspice.learning.rules.equilibrium import (
    CrossEntropyPropagation,
    softmax_nudge_currents,
    softmax_targets,
)
from eqspice.learning.rules.equilibrium import (
    cross_entropy as library_cross_entropy,
)
from eqspice.learning.rules.noisy import NoisyRule
from eqspice.learning.run.config import ConfigError, load_config
from eqspice.learning.run.loop import train
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.sampling.native import NativeSampler

SCALE_V = 0.02


def cross_entropy(circuit, v, label):
    logits = v[:, circuit.output_index] @ circuit.readout.T / SCALE_V
    return float(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[0, label])


@pytest.fixture(scope="module")
def problem():
    # diodes conducting, differential outputs: the gradient runs through the clip and the readout
    circuit = crossbar(
        CrossbarSpec(
            layers=(3, 4, 3), diode_bias_v=(0.35, -0.35), input_scale_v=1.5,
            differential_outputs=True, diode_model=DiodeModel(n=1.2),
        )
    )  # fmt: skip
    rng = np.random.default_rng(11)
    g = rng.uniform(5e-6, 1e-4, circuit.n_edges)
    inputs = np.array([[0.9, 0.1, 0.6]]) @ circuit.input_gain.T
    label = 1
    targets = np.array([[-0.05, 0.05, -0.05]]) @ circuit.target_gain.T
    engine = NativeEngine()
    engine.load(circuit, g)

    def loss(gg):
        engine.set_conductances(gg)
        return cross_entropy(circuit, engine.settle(inputs), label)

    h = 1e-9  # siemens; central differences
    fd = np.array([(loss(g + e) - loss(g - e)) / (2 * h) for e in np.eye(circuit.n_edges) * h])
    engine.set_conductances(g)
    return circuit, engine, inputs, targets, label, fd


def test_nudge_currents_are_minus_beta_scale_squared_times_the_loss_gradient(problem):
    circuit, engine, inputs, targets, label, _ = problem
    v = engine.settle(inputs)
    beta = 1e-6
    currents = softmax_nudge_currents(circuit, v, targets, beta, SCALE_V)
    out = circuit.output_index
    h = 1e-7
    dl_dv = []
    for k in out:  # finite differences of the loss in each output voltage
        up, down = v.copy(), v.copy()
        up[0, k] += h
        down[0, k] -= h
        dl_dv.append((cross_entropy(circuit, up, label) - cross_entropy(circuit, down, label)) / (2 * h))
    np.testing.assert_allclose(currents[0, out - circuit.free_slice.start], -beta * SCALE_V**2 * np.array(dl_dv), rtol=1e-6, atol=1e-17)
    hidden = np.ones(len(circuit.free_nodes), dtype=bool)
    hidden[out - circuit.free_slice.start] = False
    assert np.all(currents[:, hidden] == 0)


@pytest.mark.parametrize("beta", [1e-7, 1e-6])
def test_update_is_the_cross_entropy_gradient(problem, beta):
    circuit, engine, inputs, targets, _, fd = problem
    rule = CrossEntropyPropagation(beta, SCALE_V)
    estimate = rule.gradient(circuit, rule.phases(engine, inputs, targets)) / SCALE_V**2
    assert np.linalg.norm(estimate - fd) < 1e-3 * np.linalg.norm(fd)


def test_ngspice_gives_the_same_update(ngspice, problem):
    circuit, engine, inputs, targets, _, _ = problem
    rule = CrossEntropyPropagation(1e-6, SCALE_V)
    ngspice.load(circuit, engine.g_s)
    expected = rule.gradient(circuit, rule.phases(engine, inputs, targets))
    np.testing.assert_allclose(rule.gradient(circuit, rule.phases(ngspice, inputs, targets)), expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


@pytest.fixture(scope="module")
def linear_noisy():
    """A linear crossbar with gibbs noise (about 1 mV rms) drawn exactly, and a finite nudge."""
    circuit = crossbar(CrossbarSpec(layers=(2, 3, 3), nonlinearity="none", bias_v=0.0, input_scale_v=0.5))
    g = np.random.default_rng(5).uniform(2e-5, 1e-4, circuit.n_edges)
    x = np.array([[0.8, -0.3]]) @ circuit.input_gain.T
    targets = np.array([[0.0, 0.05, 0.0]]) @ circuit.target_gain.T
    t_eff_w, beta = 1e-10, 1e-4
    spec = GibbsNoise(dt_sec=1e-8, run_sec=1e-3, burn_in_sec=1e-5, samples=100_000, t_eff_w=t_eff_w, capacitance_f=1e-9)
    engine = NativeEngine()
    engine.load(circuit, g)
    return circuit, g, x, targets, t_eff_w, beta, NativeSampler(spec, "exact_gaussian"), engine


def test_with_noise_the_rule_is_the_exact_gradient_of_j_for_the_softmax_targets(linear_noisy):
    """Linear crossbar, gibbs noise, exact Gaussian draws: the contrast against the closed-form dJ/dG."""
    circuit, g, x, targets, t_eff_w, beta, sampler, engine = linear_noisy
    rule = NoisyRule("contrastive", beta, sampler, softmax_scale_v=SCALE_V)
    phases = rule.phases(engine, x, targets, rng=np.random.default_rng(6))
    # the nudge aims at the softmax targets of the free phase's time average
    np.testing.assert_allclose(phases.targets_v, softmax_targets(circuit, phases.free, targets, SCALE_V), rtol=1e-12)
    assert not np.allclose(phases.targets_v, targets)
    exact = grad_j(circuit, g, x[0], phases.targets_v[0], beta, t_eff_w)
    estimate = rule.objective_gradient(circuit, phases)
    a, b = circuit.edges.T
    spread = np.sqrt(sum(((v[0][:, a] - v[0][:, b]) ** 2 / 2).var(0) / len(v[0]) for v in phases.samples.values()))
    assert np.all(np.abs(estimate - exact) < 5 * spread), (estimate, exact, spread)
    assert np.linalg.norm(estimate - exact) < 0.05 * np.linalg.norm(exact)


def test_with_noise_the_centred_rule_is_the_exact_gradient_for_mirrored_targets(linear_noisy):
    """Centred with noise: +beta towards t and +beta towards 2 <v_out>_0 - t; the contrast is
    d/dG [F(beta, t) - F(beta, t_mirrored)] / 2 from the closed form, and points along the
    noiseless cross-entropy gradient."""
    circuit, g, x, targets, t_eff_w, beta, sampler, engine = linear_noisy
    rule = NoisyRule("contrastive", beta, sampler, centred=True, softmax_scale_v=SCALE_V)
    phases = rule.phases(engine, x, targets, rng=np.random.default_rng(7))
    mirrored = 2 * phases.free[:, circuit.output_index] - phases.targets_v
    exact = 0.5 * (
        grad_j(circuit, g, x[0], phases.targets_v[0], beta, t_eff_w) - grad_j(circuit, g, x[0], mirrored[0], beta, t_eff_w)
    )
    estimate = rule.objective_gradient(circuit, phases)
    a, b = circuit.edges.T
    spread = 0.5 * np.sqrt(sum(((phases.samples[k][0][:, a] - phases.samples[k][0][:, b]) ** 2 / 2).var(0) / len(phases.samples[k][0]) for k in (beta, -beta)))
    assert np.all(np.abs(estimate - exact) < 5 * spread), (estimate, exact, spread)
    assert np.linalg.norm(estimate - exact) < 0.05 * np.linalg.norm(exact)
    # and it points along the noiseless cross-entropy gradient of this linear circuit
    noiseless = CrossEntropyPropagation(1e-9, SCALE_V)
    reference = noiseless.gradient(circuit, noiseless.phases(engine, x, targets))
    assert estimate @ reference / np.linalg.norm(estimate) / np.linalg.norm(reference) > 0.95


def test_reported_loss_is_the_cross_entropy(problem):
    circuit, engine, inputs, targets, label, _ = problem
    v = engine.settle(np.vstack([inputs, 0.5 * inputs]))
    expected = [cross_entropy(circuit, v[k : k + 1], label) for k in range(2)]
    np.testing.assert_allclose(library_cross_entropy(circuit, v, np.vstack([targets, targets]), SCALE_V), expected, rtol=1e-12)


def test_digits_learn_with_the_cross_entropy_nudge(tmp_path):
    config = load_config(
        "examples/digits.toml",
        {"engine": {"backend": "native"}, "training": {"loss": "cross_entropy", "epochs": 3}, "data": {"limit_train": 600}},
    )
    state = train(config, tmp_path / "run", progress=False)
    losses = [row["train_loss"] for row in state.metrics]
    assert losses[2] < losses[0] < np.log(10)  # nats: below chance from the first epoch on
    assert state.metrics[-1]["test_accuracy"] > 0.8


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"training": {"loss": "cross_entropy", "estimator": "one_sided"}}, "centred"),
        (
            {"training": {"loss": "cross_entropy", "estimator": "path_integral"}, "noise": {"model": "gibbs", "t_eff_w": 1e-9}},
            "'contrastive'",
        ),
        ({"training": {"loss": "cross_entropy", "softmax_scale_v": -0.01}}, "softmax_scale_v"),
        ({"training": {"loss": "crossentropy"}}, "training.loss"),
    ],
)
def test_bad_cross_entropy_settings_are_refused_in_one_line(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        load_config("examples/digits.toml", overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)
