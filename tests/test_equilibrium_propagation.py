"""The EP update against finite differences of the loss, settled by ngspice."""

import numpy as np
import pytest

from eqspice.circuits import CrossbarSpec, DiodeModel, crossbar
from eqspice.learning.rules.asymmetric import AsymmetricEquilibriumPropagation
from eqspice.learning.rules.equilibrium import (
    CrossEntropyPropagation,
    EquilibriumPropagation,
    energy_contrast,
    energy_gradient,
    output_loss,
)
from eqspice.learning.rules.optimizers import SGD, Adam


@pytest.fixture(scope="module")
def problem(ngspice):
    # diodes biased to conduct: the gradient then runs through the nonlinearity
    circuit = crossbar(
        CrossbarSpec(layers=(3, 4, 2), diode_bias_v=(0.35, -0.35), input_scale_v=1.5, diode_model=DiodeModel(n=1.2))
    )
    rng = np.random.default_rng(7)
    g = rng.uniform(5e-6, 1e-4, circuit.n_edges)
    inputs = np.array([[0.9, 0.1, 0.6]]) @ circuit.input_gain.T
    targets = np.array([[0.25, -0.25]])
    ngspice.load(circuit, g)

    def loss(gg):
        ngspice.set_conductances(gg)
        return output_loss(circuit, ngspice.settle(inputs), targets)[0]

    h = 1e-9  # siemens; central differences
    basis = np.eye(circuit.n_edges) * h
    fd = np.array([(loss(g + e) - loss(g - e)) / (2 * h) for e in basis])
    ngspice.set_conductances(g)
    return circuit, inputs, targets, fd


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def ep(ngspice, problem, beta, centred):
    circuit, inputs, targets, _ = problem
    rule = EquilibriumPropagation(beta, centred=centred)
    return rule.gradient(circuit, rule.phases(ngspice, inputs, targets))


def test_diodes_shape_the_gradient(ngspice, problem):
    circuit, inputs, _, _ = problem
    v = ngspice.settle(inputs)[0]
    hidden = [circuit.node_names.index(n) for n in circuit.free_nodes if n.startswith("h1_")]
    assert np.max(np.abs(v[hidden])) < 0.3, "hidden nodes should sit in the diode clip"


@pytest.mark.parametrize("beta", [1e-7, 1e-6])
def test_ep_update_points_along_the_loss_gradient(ngspice, problem, beta):
    fd = problem[3]
    assert cosine(ep(ngspice, problem, beta, centred=False), fd) > 0.99
    assert cosine(ep(ngspice, problem, beta, centred=True), fd) > 0.99


@pytest.mark.parametrize("beta", [1e-6, 1e-5])
def test_centred_estimator_is_closer_than_one_sided(ngspice, problem, beta):
    fd = problem[3]
    one_sided = np.linalg.norm(ep(ngspice, problem, beta, centred=False) - fd)
    centred = np.linalg.norm(ep(ngspice, problem, beta, centred=True) - fd)
    assert centred < 0.2 * one_sided


def test_batched_contrast_equals_the_per_sample_sum(problem):
    circuit = problem[0]
    rng = np.random.default_rng(3)
    v_a, v_b = rng.normal(size=(2, 5, len(circuit.node_names)))
    expected = (energy_gradient(circuit, v_a) - energy_gradient(circuit, v_b)).sum(axis=0)
    np.testing.assert_allclose(energy_contrast(circuit, v_a, v_b), expected, rtol=1e-12, atol=1e-12)


def test_energy_gradient_is_half_the_squared_device_voltage(problem):
    circuit = problem[0]
    v = np.zeros((1, len(circuit.node_names)))
    a, b = circuit.edges[0]
    v[0, a], v[0, b] = 0.7, 0.2
    assert energy_gradient(circuit, v)[0, 0] == pytest.approx(0.5 * 0.5**2)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: EquilibriumPropagation(0.0), ["EquilibriumPropagation.beta_s = 0.0", "siemens"]),
        (lambda: EquilibriumPropagation(float("inf")), ["beta_s = inf"]),
        (lambda: CrossEntropyPropagation(1e-5, -0.01), ["scale_v = -0.01"]),
        (lambda: AsymmetricEquilibriumPropagation(float("nan")), ["AsymmetricEquilibriumPropagation.beta_s = nan"]),
        (lambda: Adam(0.0), ["learning rate 0.0"]),
        (lambda: Adam(0.01, beta1=1.0), ["Adam.beta1 = 1.0", "[0, 1)"]),
        (lambda: SGD(float("nan")), ["learning rate nan"]),
    ],
)
def test_rules_and_optimizers_refuse_nudges_and_rates_that_cannot_learn(make, words):
    with pytest.raises(ValueError) as info:
        make()
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_contrast_with_zero_rows_skips_them_and_keeps_the_per_sample_sum(problem):
    """Phases that agree on the driven nodes (as two nudged phases do): the crossbar's input rows are skipped."""
    circuit = problem[0]
    rng = np.random.default_rng(8)
    v_a, v_b = rng.normal(size=(2, 4, len(circuit.node_names)))
    v_b[:, : circuit.free_slice.start] = v_a[:, : circuit.free_slice.start]
    expected = (energy_gradient(circuit, v_a) - energy_gradient(circuit, v_b)).sum(axis=0)
    np.testing.assert_allclose(energy_contrast(circuit, v_a, v_b), expected, rtol=1e-12, atol=1e-14)
