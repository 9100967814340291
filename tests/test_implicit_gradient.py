"""The exact-gradient baseline (training.estimator = "implicit"): the adjoint on the native
engine's block structure, against finite differences, the dense adjoint reference and EP."""

import csv
from pathlib import Path

import numpy as np
import pytest
from problems import diode_bridge_graph

from eqspice.circuits import CrossbarSpec, DiodeModel, crossbar, with_nonreciprocal
from eqspice.learning.rules.adjoint import ImplicitGradient, adjoint_gradient
from eqspice.learning.rules.equilibrium import CrossEntropyPropagation, EquilibriumPropagation, cross_entropy, output_loss
from eqspice.learning.run.config import ConfigError, load_config
from eqspice.learning.run.loop import train
from eqspice.learning.run.report import read_metrics
from eqspice.simulator.native import NativeEngine

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.toml"
SCALE_V = 0.02


def network(seed, sigma=0.0, layers=(3, 5, 2), differential=False, batch=3):
    """A crossbar whose diodes conduct, non-reciprocal by sigma, with conductances, inputs and targets."""
    rng = np.random.default_rng(seed)
    spec = CrossbarSpec(layers=layers, diode_bias_v=(0.35, -0.35), input_scale_v=1.5, diode_model=DiodeModel(n=1.2),
                        differential_outputs=differential)  # fmt: skip
    base = crossbar(spec)
    circuit = with_nonreciprocal(base, sigma * rng.normal(size=base.n_edges)) if sigma else base
    g = 10 ** rng.uniform(-6, -4, base.n_edges)
    inputs = rng.uniform(0, 1, (batch, circuit.n_features)) @ circuit.input_gain.T
    labels = rng.integers(0, circuit.n_classes, batch)
    classes = np.full((batch, circuit.n_classes), -0.05)
    classes[np.arange(batch), labels] = 0.05
    return circuit, g, inputs, classes @ circuit.target_gain.T


def loaded(circuit, g):
    engine = NativeEngine()
    engine.load(circuit, g)
    return engine


def finite_differences(engine, circuit, g, inputs, loss, rel_step=1e-4):
    """Central differences of ``loss(v_free)`` summed over the batch, in every conductance."""

    def total(gg):
        engine.set_conductances(gg)
        return loss(engine.settle(inputs)).sum()

    fd = np.array([(total(g + h) - total(g - h)) / (2 * h.max()) for h in np.eye(circuit.n_edges) * g * rel_step])
    engine.set_conductances(g)
    return fd


def exact(circuit, engine, inputs, targets, loss="squared"):
    rule = ImplicitGradient(loss, SCALE_V)
    return rule.gradient(circuit, rule.phases(engine, inputs, targets))


def relative_error(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("sigma", [0.0, 0.2])
def test_squared_error_gradient_matches_finite_differences_and_the_dense_adjoint(sigma):
    circuit, g, inputs, targets = network(3, sigma)
    engine = loaded(circuit, g)
    fd = finite_differences(engine, circuit, g, inputs, lambda v: output_loss(circuit, v, targets))
    fast = exact(circuit, engine, inputs, targets)
    assert relative_error(fast, fd) < 1e-6
    dense = adjoint_gradient(circuit, g, engine.settle(inputs), targets)
    assert relative_error(fast, dense) < 1e-12


@pytest.mark.parametrize("differential", [False, True])
def test_cross_entropy_gradient_is_scale_squared_times_finite_differences(differential):
    circuit, g, inputs, targets = network(4, 0.1, layers=(3, 4, 3), differential=differential)
    engine = loaded(circuit, g)
    fd = finite_differences(engine, circuit, g, inputs, lambda v: cross_entropy(circuit, v, targets, SCALE_V))
    assert relative_error(exact(circuit, engine, inputs, targets, "cross_entropy") / SCALE_V**2, fd) < 1e-6


def test_a_diode_between_free_nodes_takes_the_dense_transposed_step():
    circuit, g, inputs, targets = diode_bridge_graph()
    engine = loaded(circuit, g)
    assert engine._diode_offdiag
    dense = adjoint_gradient(circuit, g, engine.settle(inputs), targets)
    assert relative_error(exact(circuit, engine, inputs, targets), dense) < 1e-10


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_centred_ep_converges_to_the_exact_gradient_as_beta_falls(loss):
    circuit, g, inputs, targets = network(6, layers=(4, 6, 3), differential=True)
    engine = loaded(circuit, g)
    reference = exact(circuit, engine, inputs, targets, loss)
    errors, cosines = [], []
    for beta in (1e-5, 1e-6, 1e-7):
        rule = CrossEntropyPropagation(beta, SCALE_V) if loss == "cross_entropy" else EquilibriumPropagation(beta)
        estimate = rule.gradient(circuit, rule.phases(engine, inputs, targets))
        errors.append(relative_error(estimate, reference))
        cosines.append(estimate @ reference / np.linalg.norm(estimate) / np.linalg.norm(reference))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4
    assert cosines[0] < cosines[2] and cosines[2] > 1 - 1e-8


def test_plain_ep_on_a_non_reciprocal_circuit_is_measurably_off_the_exact_gradient():
    circuit, g, inputs, targets = network(7, 0.3)
    engine = loaded(circuit, g)
    reference = exact(circuit, engine, inputs, targets)
    rule = EquilibriumPropagation(1e-8)
    assert relative_error(rule.gradient(circuit, rule.phases(engine, inputs, targets)), reference) > 1e-2


def test_with_ngspice_the_dense_reference_gives_the_same_gradient(ngspice):
    circuit, g, inputs, targets = network(8, 0.2)
    native = loaded(circuit, g)
    ngspice.load(circuit, g)
    np.testing.assert_allclose(
        exact(circuit, ngspice, inputs, targets, "cross_entropy"), exact(circuit, native, inputs, targets, "cross_entropy"), rtol=1e-4
    )


def xor(overrides):
    return load_config(XOR, {"training.epochs": 2, "engine.backend": "native", **overrides})


def test_training_with_the_exact_gradient_and_the_cosine_column(tmp_path):
    run = train(xor({"training.estimator": "implicit", "training.measure_gradient_cosine": 1}), tmp_path / "implicit", progress=False)
    rows = read_metrics(tmp_path / "implicit")
    assert [r["gradient_cosine"] for r in rows] == pytest.approx([1.0, 1.0], abs=1e-12)
    assert [r["gradient_relative_error"] for r in rows] == [0.0, 0.0]
    again = train(xor({"training.estimator": "implicit"}), progress=False)
    np.testing.assert_array_equal(run.g_s, again.g_s)  # measuring touches nothing the run draws or updates
    train(xor({"training.measure_gradient_cosine": 2}), tmp_path / "ep", progress=False)
    cosines = [r["gradient_cosine"] for r in read_metrics(tmp_path / "ep")]
    # one mini-batch per epoch, measured every second one: the first epoch's, not the second's
    assert 0.99 < cosines[0] < 1 and np.isnan(cosines[1]), cosines
    error = read_metrics(tmp_path / "ep")[0]["gradient_relative_error"]
    assert 1e-6 < error < 0.1  # beta = 1e-5 S on XOR's targets: second order in beta, small but not 0


def test_without_the_key_the_metrics_have_no_cosine_column_and_the_run_is_unchanged(tmp_path):
    plain = train(xor({}), tmp_path / "plain", progress=False)
    measured = train(xor({"training.measure_gradient_cosine": 1}), progress=False)
    np.testing.assert_array_equal(plain.g_s, measured.g_s)
    assert "gradient_cosine" not in read_metrics(tmp_path / "plain")[0]


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"training.estimator": "implicit", "noise.model": "gibbs", "noise.t_eff_w": 1e-12}, "noise.model = 'none'"),
        ({"training.measure_gradient_cosine": 3, "noise.model": "gibbs", "noise.t_eff_w": 1e-12}, "measure_gradient_cosine"),
        ({"training.estimator": "implicit", "network.wire_resistance_ohm": 1.0}, "wire_resistance_ohm"),
        ({"training.estimator": "implicit", "training.readout_resolution_v": 1e-3}, "readout_resolution_v to 0"),
        ({"training.measure_gradient_cosine": -1}, "measure_gradient_cosine"),
    ],
)
def test_refusals_are_one_line(overrides, words):
    with pytest.raises(ConfigError) as info:
        xor(overrides)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_gradcheck_exact_on_a_config_writes_its_table(tmp_path):
    from eqspice.learning.cli import main

    out = tmp_path / "check.csv"
    code = main(["gradcheck", "exact", "--config", str(XOR), "--batch", "4", "--betas", "1e-7,1e-5", "--csv", str(out), "--plot", str(tmp_path / "check.png")])
    assert code == 0 and (tmp_path / "check.png").stat().st_size > 0
    rows = {(r["loss"], r["estimator"], float(r["beta_s"])): float(r["relative_error"]) for r in csv.DictReader(out.open())}
    assert rows[("squared", "centred", 1e-5)] < rows[("squared", "one-sided", 1e-5)]
    assert rows[("squared", "centred", 1e-7)] < rows[("squared", "centred", 1e-5)] < 1e-2
    assert rows[("cross_entropy", "centred", 1e-7)] < 1e-4
