"""Bidirectional amplifiers between layers: the circuit both engines settle, and EP on it.

Oracles: ngspice (a second engine reading the netlist's E, V, F and B elements),
Kirchhoff's law written out by hand for one amplifier, finite differences of the
loss, and the circuit without amplifiers (a unity buffer with unity return is a wire).
"""

import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eqspice.circuits import CrossbarSpec, DiodeModel, crossbar
from eqspice.circuits.amplifiers import amplified_voltage
from eqspice.circuits.export import ExportError, export_texts
from eqspice.circuits.netlist import export_netlist, render_netlist
from eqspice.circuits.schema import SpecError
from eqspice.learning.gradcheck.nonreciprocal import cosine, finite_difference_gradient
from eqspice.learning.rules.equilibrium import EquilibriumPropagation
from eqspice.learning.run.config import ConfigError, load_config
from eqspice.simulator.engine import Nudge
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.ngspice.rawfile import read_rawfile


@st.composite
def deep_circuits(draw):
    n_hidden = draw(st.integers(1, 3))
    layers = (draw(st.integers(1, 4)), *(draw(st.integers(1, 5)) for _ in range(n_hidden)), draw(st.integers(1, 3)))
    gains = tuple(10 ** draw(st.floats(0, 2)) for _ in range(n_hidden))
    backward = draw(st.sampled_from(["reciprocal", "transformer", "other"]))
    spec = CrossbarSpec(
        layers=layers,
        differential_outputs=draw(st.booleans()),
        input_scale_v=draw(st.floats(0.2, 2.0)),
        nonlinearity=draw(st.sampled_from(["diode_pair", "diode", "none"])),
        diode_bias_v=(draw(st.floats(0.1, 0.5)), draw(st.floats(-0.5, -0.1))),
        diode_model=DiodeModel(is_a=10 ** draw(st.floats(-16, -10)), n=draw(st.floats(1.0, 2.0))),
        amplifier_gain=gains,
        amplifier_backward_gain=None if backward == "reciprocal" else gains if backward == "transformer" else 0.5,
        # rails with the default return only: a transformer (B = A) whose forward side saturates and
        # whose return does not drives ngspice's own Newton into gmin stepping, which the engine refuses
        amplifier_rails_v=draw(st.sampled_from([None, (-0.7, 1.2)])) if backward == "reciprocal" else None,
    )
    return crossbar(spec), draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([0.0, 1e-6, -1e-7, 1e-5]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(deep_circuits())
def test_native_and_ngspice_agree_within_a_microvolt_on_deep_amplified_circuits(ngspice, case):
    circuit, seed, beta = case
    rng = np.random.default_rng(seed)
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    inputs = rng.uniform(-1, 1, (3, circuit.n_features)) @ circuit.input_gain.T
    targets = rng.uniform(-0.3, 0.3, (3, len(circuit.output_nodes)))
    native = NativeEngine()
    native.load(circuit, g)
    ngspice.load(circuit, g)
    nudge = Nudge(targets_v=targets, beta_s=beta)
    v_native, v_ngspice = native.settle(inputs, nudge), ngspice.settle(inputs, nudge)
    assert v_native.shape == (3, len(circuit.node_names))
    assert np.max(np.abs(v_native - v_ngspice)) <= 1e-6


def test_one_amplifier_meets_kirchhoffs_law_written_by_hand():
    # in -G1- h -[A, B]- a -G2- out, linear: at out G2 (v_o - A v_h) = 0 ... with a load to ground
    circuit = crossbar(CrossbarSpec(layers=(1, 1, 1), differential_inputs=False, bias_v=0.0, nonlinearity="none",
                                    output_load_s=2e-5, amplifier_gain=5.0, amplifier_backward_gain=0.3))  # fmt: skip
    g1, g2, gl, a, b, x = 1e-5, 4e-5, 2e-5, 5.0, 0.3, 0.8
    # out: g2 (v_o - a v_h) + gl v_o = 0;  h: g1 (v_h - x) + b g2 (a v_h - v_o) = 0
    m = np.array([[g1 + b * g2 * a, -b * g2], [-g2 * a, g2 + gl]])
    v_h, v_o = np.linalg.solve(m, [g1 * x, 0.0])
    engine = NativeEngine()
    engine.load(circuit, np.array([g1, g2]))
    v = engine.settle(np.array([[x]]))[0]
    names = circuit.node_names
    assert v[names.index("h1_0")] == pytest.approx(v_h, rel=1e-12)
    assert v[names.index("out_0")] == pytest.approx(v_o, rel=1e-12)
    assert v[names.index("amp1_0")] == pytest.approx(a * v_h, rel=1e-12)


def test_a_unity_buffer_with_unity_return_is_a_wire():
    spec = dict(layers=(3, 4, 3, 2), diode_bias_v=(0.35, -0.35))
    plain, buffered = crossbar(**spec), crossbar(**spec, amplifier_gain=1.0, amplifier_backward_gain=1.0)
    rng = np.random.default_rng(3)
    g = 10 ** rng.uniform(-6, -4, plain.n_edges)
    x = rng.uniform(-1, 1, (4, plain.n_features)) @ plain.input_gain.T
    v = []
    for circuit in (plain, buffered):
        engine = NativeEngine()
        engine.load(circuit, g)
        v.append(engine.settle(x))
    np.testing.assert_allclose(v[1][:, : len(plain.node_names)], v[0], atol=1e-13)
    amp = buffered.amplifiers
    np.testing.assert_array_equal(v[1][:, len(plain.node_names) :], v[1][:, amp.source])


def test_the_rails_saturate_smoothly_and_contain_zero():
    v_h = np.linspace(-0.3, 0.3, 6001)
    v_a, slope = amplified_voltage(v_h, 10.0, (-0.5, 1.5))
    assert -0.5 <= v_a.min() < -0.49 and 1.49 < v_a.max() <= 1.5 and np.all(np.diff(v_a) > 0)
    assert abs(v_a[3000]) < 1e-15 and slope[3000] == pytest.approx(10.0, rel=1e-12)
    np.testing.assert_allclose(np.gradient(v_a, v_h)[1:-1], slope[1:-1], rtol=1e-3, atol=1e-6)
    linear, unit = amplified_voltage(v_h, 10.0, None)
    np.testing.assert_array_equal(linear, 10.0 * v_h)
    assert np.all(unit == 10.0)


def test_no_amplifiers_renders_the_same_netlist_as_before():
    plain = crossbar(layers=(3, 4, 3, 2))
    g = np.full(plain.n_edges, 1e-5)
    text = render_netlist(plain, g)
    assert plain.amplifiers is None
    assert not [line for line in text.splitlines() if line[:1] and line[0] in "EFB" or line.startswith("Vamp")]
    assert plain.node_names == plain.input_nodes + plain.fixed_nodes + plain.free_nodes


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="needs the ngspice program")
@pytest.mark.parametrize("rails", [None, (-0.6, 0.9)], ids=["linear", "rails"])
def test_the_exported_netlist_runs_in_plain_ngspice_with_the_engines_voltages(tmp_path, rails):
    circuit = crossbar(layers=(3, 4, 3, 2), amplifier_gain=(6.0, 20.0), amplifier_rails_v=rails)
    rng = np.random.default_rng(5)
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    x = circuit.input_gain @ rng.uniform(-1, 1, circuit.n_features)
    path = export_netlist(tmp_path / "deep.cir", circuit, g, x)
    text = path.read_text()
    assert "Eamp_h1_0" in text or "Bamp_h1_0" in text
    assert "Vamp_h2_2 amp_src_h2_2 amp2_2 dc 0" in text and "Famp_h2_2 h2_2 0 Vamp_h2_2" in text
    raw = tmp_path / "deep.raw"
    subprocess.run(["ngspice", "-b", "-r", str(raw), str(path)], capture_output=True, check=True, cwd=tmp_path)
    vectors = read_rawfile(raw)
    engine = NativeEngine()
    engine.load(circuit, g)
    v = engine.settle(x[None])[0]
    for name, volts in zip(circuit.node_names, v):
        assert abs(vectors[f"v({name})"][0] - volts) < 1e-6, name


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="needs the ngspice program")
def test_the_subcircuit_export_writes_amplifiers_where_the_dialect_can(tmp_path):
    circuit = crossbar(layers=(2, 3, 2), amplifier_gain=4.0)
    g = 10 ** np.random.default_rng(2).uniform(-6, -4, circuit.n_edges)
    x = circuit.input_gain @ np.array([0.5, -0.3])
    engine = NativeEngine()
    railed = crossbar(layers=(2, 3, 2), amplifier_gain=4.0, amplifier_rails_v=(-0.2, 0.3))
    # the ngspice testbench sweeps the samples (two: a one-point sweep does not settle), the spice one has one
    for net, dialect, samples in ((circuit, "spice", x[None]), (railed, "ngspice", np.stack([x, -0.5 * x]))):
        subckt, bench = export_texts(net, g, "deep", samples, dialect=dialect)
        if net is circuit:
            assert "Eamp_h1_0 amp_src_h1_0 0 h1_0 0 4.0" in subckt and "Famp_h1_0 h1_0 0 Vamp_h1_0 0.25" in subckt
        else:
            assert "Bamp_h1_0 amp_src_h1_0 0 V = " in subckt
        (tmp_path / "tb.cir").write_text(bench)
        raw = tmp_path / "tb.raw"
        subprocess.run(["ngspice", "-b", "-r", str(raw), "tb.cir"], capture_output=True, check=True, cwd=tmp_path)
        vectors = read_rawfile(raw)
        engine.load(net, g)
        v = engine.settle(samples)
        for name in net.output_nodes:
            np.testing.assert_allclose(vectors[f"v({name})"], v[:, net.node_names.index(name)], atol=1e-6, rtol=0)
    with pytest.raises(ExportError, match="dialect spectre cannot express 3 amplifier elements"):
        export_texts(circuit, g, "deep", x[None], dialect="spectre")
    with pytest.raises(ExportError, match="dialect spice cannot express 3 saturating_amplifier"):
        export_texts(railed, g, "deep", x[None], dialect="spice")


def _deep_problem(circuit):
    """Conductances, inputs and targets drawn for ``circuit``, the native engine loaded with them,
    and the exact gradient of the loss by central finite differences."""
    rng = np.random.default_rng(11)
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    x = rng.uniform(-1, 1, (4, circuit.n_features)) @ circuit.input_gain.T
    y = rng.uniform(-0.3, 0.3, (4, 2))
    engine = NativeEngine()
    engine.load(circuit, g)
    return engine, x, y, finite_difference_gradient(engine, circuit, g, x, y, relative_step=1e-3)


@pytest.mark.parametrize(
    "layers, gain, backward",
    [((3, 5, 4, 2), 8.0, None), ((3, 4, 3, 3, 2), (3.0, 20.0, 2.0), None), ((3, 5, 4, 2), 8.0, 8.0)],
    ids=["2 hidden, 1/A", "3 hidden, 1/A", "2 hidden, transformer"],
)
def test_ep_on_deep_amplified_circuits_is_the_gradient_of_the_loss(layers, gain, backward):
    circuit = crossbar(layers=layers, diode_bias_v=(0.35, -0.35), input_scale_v=1.5,
                       amplifier_gain=gain, amplifier_backward_gain=backward)  # fmt: skip
    engine, x, y, exact = _deep_problem(circuit)
    errors = {}
    for centred in (False, True):
        rule = EquilibriumPropagation(beta_s=1e-7, centred=centred)
        estimate = rule.gradient(circuit, rule.phases(engine, x, y))
        assert cosine(estimate, exact) >= 0.999
        errors[centred] = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    assert errors[True] < errors[False] / 10


def test_without_the_layer_weights_ep_is_not_the_gradient():
    circuit = crossbar(layers=(3, 5, 4, 2), diode_bias_v=(0.35, -0.35), input_scale_v=1.5, amplifier_gain=8.0)
    engine, x, y, exact = _deep_problem(circuit)
    rule = EquilibriumPropagation(beta_s=1e-7)
    estimate = rule.gradient(circuit, rule.phases(engine, x, y))
    first = circuit.groups[0].slice
    assert circuit.amplifiers.layer_weights == (64.0 * 64.0, 64.0, 1.0)
    unweighted = estimate[first] / circuit.amplifiers.layer_weights[0]
    assert np.linalg.norm(unweighted - exact[first]) > 0.9 * np.linalg.norm(exact[first])


BAD = [
    ({"amplifier_gain": 0.0}, "amplifier_gain: gain 0.0; give a positive finite gain"),
    ({"amplifier_gain": -2.0}, "amplifier_gain: gain -2.0; give a positive finite gain"),
    ({"amplifier_gain": float("nan")}, "amplifier_gain: gain nan; give a positive finite gain"),
    ({"amplifier_gain": float("inf")}, "amplifier_gain: gain inf; give a positive finite gain"),
    ({"amplifier_gain": [2.0, 3.0, 4.0]}, "amplifier_gain: 3 gains for 2 hidden layers; give one number or one per hidden layer"),
    ({"amplifier_gain": [2.0, 0.0]}, "amplifier_gain[1]: gain 0.0; give a positive finite gain"),
    ({"amplifier_gain": 2.0, "amplifier_backward_gain": [1.0]}, "amplifier_backward_gain: 1 gains for 2 hidden layers"),
    ({"amplifier_gain": 2.0, "amplifier_backward_gain": -1.0}, "amplifier_backward_gain: gain -1.0; give a positive"),
    ({"amplifier_gain": 2.0, "amplifier_rails_v": [0.1, 1.0]}, "amplifier_rails_v: [0.1, 1.0] does not contain 0 V"),
    ({"amplifier_gain": 2.0, "amplifier_rails_v": [-1.0, -0.2]}, "amplifier_rails_v: [-1.0, -0.2] does not contain 0 V"),
    ({"amplifier_rails_v": [-1.0, 1.0]}, "amplifier_gain: not set; the backward gain and rails need amplifiers"),
    ({"amplifier_gain": 2.0, "wire_resistance_ohm": 1.0}, "amplifier_gain: amplifiers with resistive wires are not modelled"),
]


@pytest.mark.parametrize("fields, message", BAD, ids=[m.split(";")[0] for _, m in BAD])
def test_bad_amplifier_settings_are_refused_in_one_line_from_python_and_toml(tmp_path, fields, message):
    with pytest.raises(SpecError) as python:
        CrossbarSpec(layers=(4, 3, 3, 2), **fields)
    assert message in str(python.value) and "\n" not in str(python.value)
    path = tmp_path / "run.toml"
    toml = "\n".join(f"{k} = {v!r}".replace("nan", "nan").replace("'", '"') for k, v in fields.items())
    path.write_text(f'[data]\nname = "xor"\n[network]\nlayers = [4, 3, 3, 2]\n{toml}\n[energy]\nsettling_samples = 0\n')
    with pytest.raises(ConfigError) as config:
        load_config(path)
    assert str(config.value) == f"{path}: network.{python.value}"


def test_a_run_refuses_what_amplifiers_do_not_model_in_one_line(tmp_path):
    path = tmp_path / "run.toml"
    base = '[data]\nname = "xor"\n[network]\nlayers = [2, 3, 3, 2]\n'
    cases = [
        ("amplifier_gain = 2.0\n", "settling energy with amplifiers is not modelled; set energy.settling_samples = 0"),
        ("[mismatch]\namplifier_gain = 0.1\n", "mismatch.amplifier_gain needs amplifiers"),
        ('amplifier_gain = 2.0\n[energy]\nsettling_samples = 0\n[noise]\nmodel = "johnson"\n', "noise with amplifiers"),
        ('amplifier_gain = 2.0\namplifier_rails_v = [-1.0, 1.0]\n[energy]\nsettling_samples = 0\n[mismatch]\n'
         'amplifier_gain = 0.1\n[training]\nestimator = "corrected"\n', "corrected' with mismatched saturating"),
        ('amplifier_gain = 2.0\n[energy]\nsettling_samples = 0\n[training]\nestimator = "implicit"\n',
         "'implicit' and measure_gradient_cosine with amplifiers"),
        ('amplifier_gain = 2.0\n[energy]\nsettling_samples = 0\n[training]\nmeasure_gradient_cosine = 1\n',
         "'implicit' and measure_gradient_cosine with amplifiers"),
    ]
    for extra, message in cases:
        path.write_text(base + extra)
        with pytest.raises(ConfigError, match=message) as info:
            load_config(path)
        assert "\n" not in str(info.value)


def _mismatched(sigma, seed=4, layers=(3, 4, 3, 2)):
    from eqspice.circuits.mismatch import with_mismatch

    circuit = crossbar(layers=layers, diode_bias_v=(0.35, -0.35), input_scale_v=1.5, amplifier_gain=4.0)
    rng = np.random.default_rng(seed)
    circuit = with_mismatch(circuit, amplifier_gain_scale=1 + sigma * rng.standard_normal(len(circuit.amplifiers.nodes)))
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    x = rng.uniform(-1, 1, (3, circuit.n_features)) @ circuit.input_gain.T
    y = rng.uniform(-0.3, 0.3, (3, 2))
    return circuit, g, x, y


def test_gain_mismatch_biases_plain_ep_and_asymmetric_ep_restores_the_gradient():
    from eqspice.learning.rules.asymmetric import AsymmetricEquilibriumPropagation

    circuit, g, x, y = _mismatched(0.2)
    assert not circuit.conservative and circuit.injection_nodes == circuit.free_nodes
    engine = NativeEngine()
    engine.load(circuit, g)
    exact = finite_difference_gradient(engine, circuit, g, x, y)
    error = {}
    for name, rule in (("centred", EquilibriumPropagation(beta_s=1e-8)), ("corrected", AsymmetricEquilibriumPropagation(beta_s=1e-8))):
        estimate = rule.gradient(circuit, rule.phases(engine, x, y))
        error[name] = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    assert error["centred"] > 2e-2
    assert error["corrected"] < 1e-4


@pytest.mark.parametrize("mode", ["op", "sweep"])
def test_the_learning_phases_of_asymmetric_ep_agree_in_both_engines(mode):
    from eqspice.learning.rules.asymmetric import correction_currents
    from eqspice.simulator.ngspice.engine import NgspiceEngine

    circuit, g, x, y = _mismatched(0.2)
    native = NativeEngine()
    native.load(circuit, g)
    free = native.settle(x)
    nudge = Nudge(targets_v=y, beta_s=1e-6, injected_a=correction_currents(circuit, g, free), antisymmetric_sign=-1)
    with NgspiceEngine(mode=mode) as ngspice:
        ngspice.load(circuit, g)
        for phase in (nudge, nudge.opposite()):
            np.testing.assert_allclose(ngspice.settle(x, phase), native.settle(x, phase), atol=1e-6, rtol=0)
    # at beta = 0 the correction currents hold the learning circuit at the free state
    np.testing.assert_allclose(native.settle(x, Nudge(injected_a=nudge.injected_a, antisymmetric_sign=-1))[:, circuit.free_slice],
                               free[:, circuit.free_slice], atol=1e-12)  # fmt: skip


def test_gradcheck_amplifiers_meets_its_goal(tmp_path, capsys):
    from eqspice.learning.gradcheck.amplifiers import main

    out = tmp_path / "check.json"
    code = main(["--networks", "1", "--samples", "2", "--sigmas", "0,0.2", "--backward-factors", "2",
                 "--layers", "2,3,2,2", "--json", str(out)])  # fmt: skip
    assert code == 0
    import json

    rows = {(r["kind"], r["value"], r["method"]): r for r in json.loads(out.read_text())["rows"]}
    assert rows[("sigma", 0.2, "plain EP")]["max_relative_error"] > 1e-2
    assert rows[("backward factor", 2.0, "centred EP")]["max_relative_error"] > 1e-1
    assert max(r["max_relative_error"] for k, r in rows.items() if k[2] == "corrected") < 1e-2
    assert "goal (corrected max relative error <= 0.01 in every row): met" in capsys.readouterr().out


def test_training_a_deep_amplified_crossbar_gives_the_same_conductances_with_either_engine(tmp_path):
    from eqspice.learning.run.loop import train

    overrides = {
        "network.layers": [64, 8, 8, 10],
        "data.limit_train": 200,
        "data.limit_test": 50,
        "training.epochs": 4,
        "training.batch_size": 4,  # 200 Adam steps
    }
    runs = {}
    for backend in ("native", "ngspice"):
        config = load_config("examples/digits_deep.toml", {**overrides, "engine.backend": backend})
        runs[backend] = train(config, tmp_path / backend, progress=False)
    native, spice = runs["native"], runs["ngspice"]
    assert np.max(np.abs(native.g_s - spice.g_s) / native.g_s) < 1e-6
    assert native.metrics[-1]["test_accuracy"] == spice.metrics[-1]["test_accuracy"]
    assert native.metrics[-1]["train_loss"] < 0.5 * native.metrics[0]["train_loss"]


def test_power_and_settling_of_amplified_circuits_are_refused_in_one_line():
    from eqspice.simulator.power import phase_power, static_power_w
    from eqspice.simulator.settling import phase_jacobian

    circuit = crossbar(layers=(2, 3, 2), amplifier_gain=4.0)
    g = np.full(circuit.n_edges, 1e-5)
    v = np.zeros((1, len(circuit.node_names)))
    for compute, words in ((phase_power, "power of the amplifiers"), (static_power_w, "power of the amplifiers"),
                           (phase_jacobian, "settling and the KCL Jacobian with amplifiers")):  # fmt: skip
        with pytest.raises(ValueError, match=words):
            compute(circuit, g, v)


def test_amplifier_gain_mismatch_is_drawn_from_the_run_seed_and_recorded(tmp_path):
    import json

    from eqspice.learning.run.build import build_circuit, record

    path = tmp_path / "run.toml"
    text = '[data]\nname = "xor"\n[network]\nlayers = [2, 3, 3, 2]\namplifier_gain = 4.0\n[energy]\nsettling_samples = 0\n'
    path.write_text(text + "[mismatch]\namplifier_gain = 0.1\n")
    config = load_config(path)
    first, again = build_circuit(config), build_circuit(config)
    gains = first.amplifiers.forward_gain
    np.testing.assert_array_equal(gains, again.amplifiers.forward_gain)
    assert np.all(gains != 4.0) and np.all(np.abs(gains / 4.0 - 1) < 0.5)
    np.testing.assert_array_equal(first.amplifiers.backward_gain, 0.25)
    assert not first.conservative
    record(tmp_path, config, first)
    recorded = json.loads((tmp_path / "mismatch.json").read_text())["amplifier_forward_gain"]
    assert list(recorded.values()) == gains.tolist()
    path.write_text(text)
    assert build_circuit(load_config(path)).conservative
