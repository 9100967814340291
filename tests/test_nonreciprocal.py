"""Non-reciprocal couplings K = S + A: both engines, the exact gradient and asymmetric EP."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from problems import diode_bridge_graph

from eqspice.circuits import (
    CrossbarSpec,
    DiodeModel,
    crossbar,
    render_netlist,
    with_nonreciprocal,
)
from eqspice.learning.rules.adjoint import adjoint_gradient
from eqspice.learning.rules.asymmetric import AsymmetricEquilibriumPropagation, correction_currents
from eqspice.learning.rules.equilibrium import EquilibriumPropagation, output_loss
from eqspice.learning.run.build import build_circuit, initial_state, make_device, open_session
from eqspice.learning.run.config import ConfigError, load_config, parse_config
from eqspice.learning.run.loop import train
from eqspice.simulator.engine import Nudge
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.ngspice.engine import NgspiceEngine

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.toml"
SIGMAS = (0.0, 0.05, 0.1, 0.2)


def diode_network(seed, sigma, layers=(3, 4, 2), batch=3):
    """A crossbar whose diodes conduct, with a frozen mismatch sigma * z, and a batch of inputs and targets."""
    rng = np.random.default_rng(seed)
    base = crossbar(CrossbarSpec(layers=layers, diode_bias_v=(0.35, -0.35), input_scale_v=1.5, diode_model=DiodeModel(n=1.2)))
    circuit = with_nonreciprocal(base, sigma * rng.normal(size=base.n_edges))
    g = 10 ** rng.uniform(-6, -4, base.n_edges)
    inputs = rng.uniform(0, 1, (batch, circuit.n_features)) @ circuit.input_gain.T
    targets = rng.uniform(-0.3, 0.3, (batch, len(circuit.output_nodes)))
    return circuit, g, inputs, targets


def finite_difference_gradient(engine, circuit, g, inputs, targets, rel_step=1e-4):
    """Central differences of the summed free-state loss in every conductance, V^2/S; leaves ``engine`` at ``g``."""

    def loss(gg):
        engine.set_conductances(gg)
        return output_loss(circuit, engine.settle(inputs), targets).sum()

    fd = np.array([(loss(g + h) - loss(g - h)) / (2 * h.max()) for h in np.eye(circuit.n_edges) * g * rel_step])
    engine.set_conductances(g)
    return fd


def relative_error(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def kirchhoff_dense(circuit, g, inputs, sign=1.0, injected=None):
    """Free-node voltages of a linear circuit from the full nodal matrix, written out edge by edge.

    Current into p per volt on q is G + a, into q per volt on p is G - a (a = delta G);
    ``sign`` multiplies a on edges between two free nodes.
    """
    n = len(circuit.node_names)
    y = np.zeros((n, n))
    free = np.arange(circuit.free_slice.start, circuit.free_slice.stop)
    for (p, q), ge, d in zip(circuit.edges, g, circuit.nonreciprocal):
        a = d * ge * (sign if p in free and q in free else 1.0)
        y[p, p] += ge
        y[q, q] += ge
        y[p, q] -= ge + a
        y[q, p] -= ge - a
    known_idx = np.arange(circuit.free_slice.start)
    known = np.hstack([inputs, np.tile(circuit.fixed_volts, (len(inputs), 1))])
    rhs = -known @ y[np.ix_(free, known_idx)].T
    if injected is not None:
        rhs = rhs + injected
    return np.linalg.solve(y[np.ix_(free, free)], rhs.T).T


# -- the circuit -------------------------------------------------------------------------------


def test_native_engine_solves_kirchhoffs_law_of_a_linear_nonreciprocal_circuit():
    rng = np.random.default_rng(3)
    circuit = crossbar(CrossbarSpec(layers=(3, 5, 4, 2), nonlinearity="none"))
    circuit = with_nonreciprocal(circuit, rng.normal(0, 0.3, circuit.n_edges))
    g = 10 ** rng.uniform(-7, -4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (4, 3)) @ circuit.input_gain.T
    injected = rng.normal(0, 1e-6, (4, len(circuit.free_nodes)))
    engine = NativeEngine()
    engine.load(circuit, g)
    for sign, inj in ((1.0, None), (-1.0, None), (-1.0, injected)):
        v = engine.settle(inputs, Nudge(antisymmetric_sign=sign, injected_a=inj))[:, circuit.free_slice]
        np.testing.assert_allclose(v, kirchhoff_dense(circuit, g, inputs, sign, inj), atol=1e-12)
    # the mismatch matters: the reciprocal circuit settles elsewhere
    reciprocal = NativeEngine()
    reciprocal.load(with_nonreciprocal(circuit, None), g)
    assert np.abs(reciprocal.settle(inputs) - engine.settle(inputs)).max() > 1e-3


def test_netlist_carries_the_antisymmetric_part_as_a_vccs_pair():
    circuit = with_nonreciprocal(crossbar(CrossbarSpec(layers=(1, 1, 1), bias_v=0, nonlinearity="none",
                                                       differential_inputs=False)), [0.25, -0.5])  # fmt: skip
    g = np.array([2.0**-16, 2.0**-15])
    text = render_netlist(circuit, g)
    # edge 0 joins in_0 (p) to h1_0 (q): +a V(q) into p and -a V(p) into q, a = delta G
    a0, a1 = repr(0.25 * 2.0**-16), repr(-0.5 * 2.0**-15)
    assert f"Gf1_0_0 0 in_0 h1_0 0 {a0}" in text
    assert f"Gb1_0_0 h1_0 0 in_0 0 {a0}" in text
    assert f"Gf2_0_0 0 h1_0 out_0 0 {a1}" in text
    reversed_text = render_netlist(circuit, g, antisymmetric_sign=-1.0)
    assert f"Gf1_0_0 0 in_0 h1_0 0 {a0}" in reversed_text  # into a driven node: not reversed
    assert f"Gf2_0_0 0 h1_0 out_0 0 {repr(-float(a1))}" in reversed_text


@pytest.mark.parametrize("mode", ["op", "sweep"])
def test_ngspice_and_native_agree_within_a_microvolt_with_nonreciprocal_couplings(mode):
    engine = NgspiceEngine(timeout_sec=20, mode=mode)
    try:
        for seed in range(3):
            circuit, g, inputs, targets = diode_network(seed, 0.2, layers=(3, 4, 3, 2))
            native = NativeEngine()
            native.load(circuit, g)
            engine.load(circuit, g)
            injected = np.random.default_rng(seed).normal(0, 1e-7, (len(inputs), len(circuit.free_nodes)))
            for sign, inj in ((1.0, None), (-1.0, injected)):
                plus = Nudge(targets_v=targets, beta_s=2e-6, antisymmetric_sign=sign, injected_a=inj)
                nudges = [dataclasses.replace(plus, beta_s=0.0), plus, plus.opposite()]
                a = native.settle_phases(inputs, nudges)
                b = engine.settle_phases(inputs, nudges)
                assert max(np.abs(x - y).max() for x, y in zip(a, b)) < 1e-6
            # and a plain settle afterwards is back to the unmodified circuit
            np.testing.assert_allclose(engine.settle(inputs), native.settle(inputs), atol=1e-6)
    finally:
        engine.close()


# -- the exact gradient and the estimators ----------------------------------------------------


@pytest.mark.parametrize("sigma", [0.0, 0.2])
def test_adjoint_gradient_matches_central_finite_differences_of_the_loss(sigma):
    circuit, g, inputs, targets = diode_network(11, sigma)
    engine = NativeEngine()
    engine.load(circuit, g)
    fd = finite_difference_gradient(engine, circuit, g, inputs, targets)
    exact = adjoint_gradient(circuit, g, engine.settle(inputs), targets)
    assert relative_error(exact, fd) < 1e-6


@pytest.mark.parametrize("sigma", SIGMAS)
def test_corrected_estimator_is_the_exact_gradient_and_plain_ep_is_not(sigma):
    circuit, g, inputs, targets = diode_network(5, sigma)
    engine = NativeEngine()
    engine.load(circuit, g)
    exact = adjoint_gradient(circuit, g, engine.settle(inputs), targets)
    beta = 1e-8
    corrected = AsymmetricEquilibriumPropagation(beta)
    assert relative_error(corrected.gradient(circuit, corrected.phases(engine, inputs, targets)), exact) < 1e-2
    plain = EquilibriumPropagation(beta, centred=True)
    plain_error = relative_error(plain.gradient(circuit, plain.phases(engine, inputs, targets)), exact)
    if sigma >= 0.1:
        assert plain_error > 1e-2


def test_corrected_estimator_on_a_graph_with_a_diode_between_free_nodes_against_finite_differences():
    circuit, g, inputs, targets = diode_bridge_graph()
    engine = NativeEngine()
    engine.load(circuit, g)
    fd = finite_difference_gradient(engine, circuit, g, inputs, targets)
    rule = AsymmetricEquilibriumPropagation(1e-8)
    assert relative_error(rule.gradient(circuit, rule.phases(engine, inputs, targets)), fd) < 1e-5


def test_corrected_estimator_with_ngspice_in_the_loop():
    circuit, g, inputs, targets = diode_network(8, 0.2)
    native = NativeEngine()
    native.load(circuit, g)
    exact = adjoint_gradient(circuit, g, native.settle(inputs), targets)
    rule = AsymmetricEquilibriumPropagation(1e-7)
    with NgspiceEngine(timeout_sec=20, mode="sweep") as engine:
        engine.load(circuit, g)
        estimate = rule.gradient(circuit, rule.phases(engine, inputs, targets))
    assert relative_error(estimate, exact) < 1e-2


def test_without_mismatch_the_corrected_estimator_is_centred_ep():
    circuit, g, inputs, targets = diode_network(2, 0.0)
    assert circuit.nonreciprocal is None
    engine = NativeEngine()
    engine.load(circuit, g)
    beta = 1e-5
    a = AsymmetricEquilibriumPropagation(beta)
    b = EquilibriumPropagation(beta, centred=True)
    np.testing.assert_array_equal(a.gradient(circuit, a.phases(engine, inputs, targets)),
                                  b.gradient(circuit, b.phases(engine, inputs, targets)))  # fmt: skip


@pytest.mark.parametrize("backend", ["native", "ngspice"])
def test_correction_currents_keep_the_free_state_of_the_reversed_circuit(backend):
    circuit, g, inputs, targets = diode_network(4, 0.2)
    engine = NativeEngine() if backend == "native" else NgspiceEngine(timeout_sec=20, mode="sweep")
    try:
        engine.load(circuit, g)
        v0 = engine.settle(inputs)
        currents = correction_currents(circuit, g, v0)
        assert np.abs(currents).max() > 1e-8  # amperes: the correction is not trivially zero
        kept = engine.settle(inputs, Nudge(antisymmetric_sign=-1.0, injected_a=currents))
        moved = engine.settle(inputs, Nudge(antisymmetric_sign=-1.0))
    finally:
        engine.close()
    np.testing.assert_allclose(kept, v0, atol=1e-9)
    assert np.abs(moved - v0).max() > 1e-4


# -- configuration and training ---------------------------------------------------------------


def xor_config(**sections):
    raw = {"seed": 0, "data": {"name": "xor"}, "network": {"layers": [2, 4, 2]},
           "engine": {"backend": "native"}, "training": {"epochs": 3, "batch_size": 2}}  # fmt: skip
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw)


def test_mismatch_is_drawn_from_the_seed_and_leaves_the_training_stream_alone():
    config = xor_config(mismatch={"nonreciprocal": 0.1})
    a, b = build_circuit(config), build_circuit(config)
    np.testing.assert_array_equal(a.nonreciprocal, b.nonreciprocal)
    assert 0.05 < np.std(a.nonreciprocal) < 0.2
    other = build_circuit(config.model_copy(update={"seed": 1}))
    assert np.abs(other.nonreciprocal - a.nonreciprocal).max() > 0
    plain = xor_config()
    assert build_circuit(plain).nonreciprocal is None
    g_plain = initial_state(plain, build_circuit(plain), make_device(plain)).g_s
    g_mismatch = initial_state(config, a, make_device(config)).g_s
    np.testing.assert_array_equal(g_plain, g_mismatch)


def test_mismatch_can_be_given_per_edge_in_a_file(tmp_path):
    n_edges = build_circuit(xor_config()).n_edges
    delta = np.linspace(-0.2, 0.2, n_edges)
    np.savetxt(tmp_path / "delta.txt", delta)
    circuit = build_circuit(xor_config(mismatch={"nonreciprocal_file": str(tmp_path / "delta.txt")}))
    np.testing.assert_array_equal(circuit.nonreciprocal, delta)
    np.savetxt(tmp_path / "short.txt", delta[:-1])
    with pytest.raises(ConfigError, match=f"{n_edges - 1} values.*{n_edges} edges"):
        build_circuit(xor_config(mismatch={"nonreciprocal_file": str(tmp_path / "short.txt")}))


@pytest.mark.parametrize(
    "sections, words",
    [
        ({"mismatch": {"nonreciprocal": -0.1}}, "mismatch.nonreciprocal"),
        ({"mismatch": {"nonreciprocal": 0.1, "nonreciprocal_file": "x.txt"}}, "not both"),
        ({"mismatch": {"sigma": 0.1}}, "mismatch.sigma: unknown key"),
        ({"training": {"estimator": "asymmetric"}}, "training.estimator"),
    ],
)
def test_nonsense_mismatch_config_is_refused_in_one_line(sections, words):
    with pytest.raises(ConfigError, match=words) as info:
        xor_config(**sections)
    assert "\n" not in str(info.value)


def test_training_with_the_corrected_rule_records_the_mismatch_and_resumes_exactly(tmp_path):
    config = xor_config(mismatch={"nonreciprocal": 0.2}, training={"estimator": "corrected", "epochs": 2})
    train(config, tmp_path / "run", progress=False, stop_after_epochs=1)
    recorded = np.array(json.loads((tmp_path / "run" / "mismatch.json").read_text())["nonreciprocal_delta"])
    np.testing.assert_array_equal(recorded, build_circuit(config).nonreciprocal)
    # the record feeds another run the same couplings
    again = xor_config(mismatch={"nonreciprocal_file": str(tmp_path / "run" / "mismatch.json")})
    np.testing.assert_array_equal(build_circuit(again).nonreciprocal, recorded)
    resumed = train(config, tmp_path / "run", resume=True, progress=False)
    # the resumed session rebuilt the same mismatched circuit from the seed
    session = open_session(config)
    np.testing.assert_array_equal(session.circuit.nonreciprocal, recorded)
    assert resumed.epoch == 2


def test_without_mismatch_corrected_and_centred_training_coincide(tmp_path):
    a = train(xor_config(training={"estimator": "corrected", "epochs": 2}), tmp_path / "a", progress=False)
    b = train(xor_config(training={"estimator": "centred", "epochs": 2}), tmp_path / "b", progress=False)
    np.testing.assert_array_equal(a.g_s, b.g_s)


def test_session_uses_the_corrected_rule_on_the_mismatched_circuit():
    session = open_session(xor_config(mismatch={"nonreciprocal": 0.1}, training={"estimator": "corrected"}))
    assert isinstance(session.rule, AsymmetricEquilibriumPropagation)
    assert session.circuit.nonreciprocal is not None


# -- the command line --------------------------------------------------------------------------


def eqspice(*args):
    return subprocess.run([sys.executable, "-m", "eqspice.learning.cli", *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_gradcheck_prints_the_table_and_meets_the_goal(tmp_path):
    out = tmp_path / "check.json"
    result = eqspice("gradcheck", "nonreciprocal", "--networks", "1", "--fd-networks", "1", "--layers", "2,3,2",
                     "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows_printed = [line.split() for line in result.stdout.splitlines() if line[:6].strip() in ("0", "0.05", "0.1", "0.2")]
    methods = ["plain EP", "centred EP", "corrected", "phases only"]
    assert sorted(" ".join(r[1:-4]) for r in rows_printed) == sorted(methods * 4)
    assert "goal (corrected max relative error <= 0.01 at every sigma): met" in result.stdout
    import json

    rows = json.loads(out.read_text())["rows"]
    corrected = [r for r in rows if r["method"] == "corrected"]
    assert max(r["max_relative_error"] for r in corrected) < 1e-2
    assert min(r["mean_cosine"] for r in corrected) > 0.9999


def test_gradcheck_refuses_bad_options_in_one_line():
    result = eqspice("gradcheck", "nonreciprocal", "--sigmas", "0,abc")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--sigmas" in result.stderr


def test_exported_netlist_of_a_mismatched_run_holds_the_vccs_pairs(tmp_path):
    text = XOR.read_text().replace("[engine]", "[mismatch]\nnonreciprocal = 0.1\n\n[engine]")
    config = tmp_path / "xor_nr.toml"
    config.write_text(text)
    load_config(config)
    result = eqspice("export", str(config), "--input", "1,0", "-o", str(tmp_path / "x.cir"))
    assert result.returncode == 0, result.stderr
    netlist = (tmp_path / "x.cir").read_text()
    assert netlist.count("\nGf") == netlist.count("\nGb") == build_circuit(load_config(config)).n_edges


@pytest.mark.parametrize("sigma", [0.0, 0.2])
def test_corrected_cross_entropy_estimator_is_the_gradient_of_the_cross_entropy(sigma):
    """Asymmetric EP nudged by softmax currents against central finite differences of the cross-entropy
    (times scale_v^2, the units of the cross-entropy rules); plain cross-entropy EP is biased by the mismatch."""
    from eqspice.learning.rules.equilibrium import CrossEntropyPropagation, cross_entropy

    circuit, g, inputs, _ = diode_network(7, sigma, layers=(3, 5, 3), batch=4)
    labels = np.eye(3)[[0, 2, 1, 2]]  # one-hot class targets
    scale = 0.02
    engine = NativeEngine()
    engine.load(circuit, g)

    def loss(gg):
        engine.set_conductances(gg)
        return cross_entropy(circuit, engine.settle(inputs), labels, scale).sum()

    fd = np.array([(loss(g + h) - loss(g - h)) / (2 * h.max()) for h in np.eye(circuit.n_edges) * g * 1e-4])
    engine.set_conductances(g)
    fd *= scale**2
    beta = 1e-8
    corrected = AsymmetricEquilibriumPropagation(beta, scale_v=scale)
    estimate = corrected.gradient(circuit, corrected.phases(engine, inputs, labels))
    assert relative_error(estimate, fd) < 1e-6  # 2e-9 measured
    plain = CrossEntropyPropagation(beta, scale)
    plain_error = relative_error(plain.gradient(circuit, plain.phases(engine, inputs, labels)), fd)
    assert plain_error < 1e-6 if sigma == 0 else plain_error > 1e-2  # 0.41 measured at sigma 0.2


def test_a_run_with_the_cross_entropy_takes_the_corrected_rule_and_refuses_it_with_noise():
    from eqspice.learning.run.build import make_rule

    base = {"network": {"layers": [2, 4, 2]}, "data": {"name": "xor"}, "mismatch": {"nonreciprocal": 0.1}}
    config = parse_config({**base, "training": {"loss": "cross_entropy", "estimator": "corrected", "softmax_scale_v": 0.05}}, "run.toml")
    assert make_rule(config) == AsymmetricEquilibriumPropagation(config.training.beta_s, scale_v=0.05)
    with pytest.raises(ConfigError, match="^run.toml: .*corrected"):
        parse_config({**base, "training": {"loss": "cross_entropy", "estimator": "corrected"}, "noise": {"model": "johnson"}}, "run.toml")
    with pytest.raises(ValueError, match="scale_v = -1"):
        AsymmetricEquilibriumPropagation(1e-8, scale_v=-1.0)
