"""Circuit mismatch: seeded, frozen, in the netlist, and the same in both engines."""

import dataclasses
import json

import networkx as nx
import numpy as np
import pytest
from runs import whole_and_resumed

from eqspice.circuits import CrossbarSpec, DiodeModel, circuit_from_graph, crossbar
from eqspice.circuits.mismatch import split_diode_bias, with_mismatch
from eqspice.circuits.netlist import render_netlist
from eqspice.learning.run.build import build_circuit, mismatched_circuit
from eqspice.learning.run.config import ConfigError, load_config
from eqspice.learning.run.loop import train
from eqspice.simulator.engine import Nudge
from eqspice.simulator.native import NativeEngine

K_B, Q_E, T_K = 1.38064852e-23, 1.6021766208e-19, 300.15  # ngspice's constants at 27 degC
VT = K_B * T_K / Q_E


def test_one_diode_node_with_an_area_matches_bisection_in_both_engines(ngspice):
    # in --G-- h, diode h -> ground with IS = 1e-14 A * area 7.3, GMIN 1e-12 S across it:
    # KCL at h: G (v_in - v) = 7.3e-14 (exp(v / Vt) - 1) + 1e-12 v
    graph = nx.Graph([("in", "h")])
    circuit = circuit_from_graph(graph, inputs=["in"], outputs=["h"], diodes=[("h", "0")])
    circuit = with_mismatch(circuit, diode_area=np.array([7.3]))
    g, v_in = np.array([1e-4]), 2.0

    def net(v, area):
        return g[0] * (v_in - v) - area * 1e-14 * np.expm1(v / VT) - 1e-12 * v

    def bisect(area):
        lo, hi = 0.0, v_in
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if net(mid, area) > 0 else (lo, mid)
        return (lo + hi) / 2

    expected = bisect(7.3)
    native = NativeEngine()
    native.load(circuit, g)
    ngspice.load(circuit, g)
    v_native = native.settle(np.array([[v_in]]))[0, 1]
    v_spice = ngspice.settle(np.array([[v_in]]))[0, 1]
    assert abs(v_native - expected) < 1e-9
    assert abs(v_spice - expected) < 1e-6
    # the area did something: about Vt ln(7.3) below the unit-area diode's voltage
    assert bisect(1.0) - expected == pytest.approx(VT * np.log(7.3), rel=0.02)


def mismatched_crossbar(seed=3):
    base = crossbar(CrossbarSpec(layers=(3, 5, 2), diode_bias_v=(0.35, -0.35), diode_model=DiodeModel(n=1.2)))
    return mismatched_circuit(base, diode_is=0.8, bias_v=0.05, input_gain=0.1, seed=seed)


def loaded_in_both(circuit, ngspice, seed, batch):
    """Random conductances (1-100 uS), inputs and targets; ``circuit`` loaded in ngspice and in a native engine."""
    rng = np.random.default_rng(seed)
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (batch, circuit.n_features)) @ circuit.input_gain.T
    targets = rng.uniform(-0.1, 0.1, (batch, len(circuit.output_nodes)))
    native = NativeEngine()
    native.load(circuit, g)
    ngspice.load(circuit, g)
    return g, inputs, targets, native


def test_native_and_ngspice_agree_on_a_mismatched_crossbar(ngspice):
    circuit = mismatched_crossbar()
    assert len(set(circuit.fixed_volts)) == len(circuit.fixed_nodes)  # every source its own voltage
    g, inputs, targets, native = loaded_in_both(circuit, ngspice, seed=0, batch=4)
    for beta in (0.0, 2e-5):
        v_native = native.settle(inputs, Nudge(targets_v=targets, beta_s=beta))
        v_spice = ngspice.settle(inputs, Nudge(targets_v=targets, beta_s=beta))
        assert np.max(np.abs(v_native - v_spice)) <= 1e-6
    # the diodes conduct: the mismatch is exercised, not idle
    hidden = v_native[:, circuit.free_slice][:, :5]
    assert np.max(np.abs(hidden)) > 0.3


def test_each_hidden_node_gets_its_own_diode_bias_sources():
    base = crossbar(CrossbarSpec(layers=(2, 3, 1)))
    split = split_diode_bias(base)
    assert "vd_up" not in split.fixed_nodes and "vd_dn" not in split.fixed_nodes
    assert {"vd_up_h1_0", "vd_dn_h1_0", "vd_up_h1_2"} <= set(split.fixed_nodes)
    names = split.node_names
    for (a, c), (a0, c0) in zip(split.diodes, base.diodes):
        assert {names[a], names[c]} - set(base.node_names) or (names[a], names[c]) == (
            base.node_names[a0],
            base.node_names[c0],
        )
    # the same wiring otherwise: every edge joins the same named nodes
    assert [(names[a], names[b]) for a, b in split.edges] == [
        (base.node_names[a], base.node_names[b]) for a, b in base.edges
    ]
    # and the same voltages when nothing is drawn
    g = np.full(base.n_edges, 3e-5)
    x = np.array([[0.7, -0.4, -0.7, 0.4]])
    v0, v1 = NativeEngine(), NativeEngine()
    v0.load(base, g)
    v1.load(split, g)
    out0 = v0.settle(x)[0, base.output_index]
    out1 = v1.settle(x)[0, split.output_index]
    np.testing.assert_allclose(out1, out0, atol=1e-12)


def test_the_draw_is_seeded_frozen_and_written_into_the_netlist():
    a, b, c = mismatched_crossbar(3), mismatched_crossbar(3), mismatched_crossbar(4)
    np.testing.assert_array_equal(a.diode_area, b.diode_area)
    np.testing.assert_array_equal(a.input_gain, b.input_gain)
    assert a.fixed_volts == b.fixed_volts
    assert not np.array_equal(a.diode_area, c.diode_area)
    text = render_netlist(a, np.full(a.n_edges, 1e-5))
    diode_lines = [line for line in text.splitlines() if line.startswith("D")]
    assert len(diode_lines) == len(a.diodes)
    for line, area in zip(diode_lines, a.diode_area):
        assert line.endswith(f" area={float(area)!r}")
    for name, volts in zip(a.fixed_nodes, a.fixed_volts):
        assert f"V{name} {name} 0 dc {volts!r}" in text
    # spreads of the drawn values (many diodes for a statistical check)
    big = mismatched_circuit(crossbar(CrossbarSpec(layers=(200, 400, 2))), 0.2, 0.01, 0.05, seed=0)
    assert np.std(np.log(big.diode_area)) == pytest.approx(0.2, rel=0.05)
    assert np.std(np.linalg.norm(big.input_gain, axis=1)) == pytest.approx(0.05, rel=0.1)


def test_switching_one_kind_of_mismatch_leaves_the_others_draw_alone():
    base = crossbar(CrossbarSpec(layers=(3, 5, 2)))
    only_diodes = mismatched_circuit(base, 0.5, 0.0, 0.0, seed=1)
    all_three = mismatched_circuit(base, 0.5, 0.02, 0.1, seed=1)
    np.testing.assert_array_equal(only_diodes.diode_area, all_three.diode_area)
    assert mismatched_circuit(base, 0.0, 0.0, 0.0, seed=1) is base


def test_a_run_records_its_mismatch_and_resumes_with_the_same_draw(tmp_path):
    overrides = {
        "engine.backend": "native",
        "training.epochs": 4,
        "mismatch.diode_is": 0.5,
        "mismatch.bias_v": 0.02,
        "mismatch.input_gain": 0.1,
    }
    config = load_config("examples/xor.toml", overrides)
    whole, resumed = whole_and_resumed(config, tmp_path)
    np.testing.assert_array_equal(resumed.g_s, whole.g_s)
    recorded = json.loads((tmp_path / "whole" / "mismatch.json").read_text())
    circuit = build_circuit(config)
    assert list(recorded["diode_area"].values()) == circuit.diode_area.tolist()
    assert recorded["fixed_volts"]["vd_up_h1_0"] == circuit.fixed_volts[circuit.fixed_nodes.index("vd_up_h1_0")]
    clean = train(load_config("examples/xor.toml", {"engine.backend": "native", "training.epochs": 4}), tmp_path / "c", progress=False)
    assert not np.array_equal(clean.g_s, whole.g_s)
    assert not (tmp_path / "c" / "mismatch.json").exists()


@pytest.mark.parametrize(
    "key, value, words",
    [("mismatch.diode_iss", 0.1, ["mismatch.diode_iss", "unknown key"]), ("mismatch.bias_v", -0.1, ["mismatch.bias_v"])],
)
def test_bad_mismatch_keys_are_one_line(key, value, words):
    with pytest.raises(ConfigError) as info:
        load_config("examples/xor.toml", {key: value})
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_diode_mismatch_without_diodes_is_refused_in_one_line():
    """A linear network has no diodes to spread: the config says so instead of crashing in the draw."""
    with pytest.raises(ConfigError) as info:
        load_config("examples/xor.toml", {"network.nonlinearity": "none", "mismatch.diode_is": 0.3})
    assert "\n" not in str(info.value) and "mismatch.diode_is" in str(info.value)
    linear = crossbar(layers=[2, 3, 1], nonlinearity="none")
    with pytest.raises(ValueError, match="without diodes"):
        with_mismatch(linear, diode_area=np.ones(0))


def test_circuit_mismatch_and_non_reciprocal_couplings_together(ngspice, tmp_path):
    """A run's circuit carries every kind of mismatch at once, and both engines still agree,
    in the free phase and in the reversed learning phases of asymmetric EP."""
    from eqspice.learning.rules.asymmetric import correction_currents
    from eqspice.learning.run.build import build_circuit as run_circuit

    toml = tmp_path / "all.toml"
    toml.write_text(
        'seed = 3\n[network]\nlayers = [3, 5, 2]\ndiode_bias_v = [0.2, -0.2]\ninput_scale_v = 2.0\n'
        "[mismatch]\ndiode_is = 0.5\nbias_v = 0.05\ninput_gain = 0.1\nnonreciprocal = 0.2\n"
    )
    circuit = run_circuit(load_config(toml))
    assert circuit.diode_area is not None and circuit.nonreciprocal is not None
    assert np.any(circuit.nonreciprocal != 0)
    g, inputs, targets, native = loaded_in_both(circuit, ngspice, seed=1, batch=3)
    v0 = native.settle(inputs)
    assert np.max(np.abs(v0 - ngspice.settle(inputs))) <= 1e-6
    injected = correction_currents(circuit, g, v0)
    learning = Nudge(targets_v=targets, beta_s=2e-5, antisymmetric_sign=-1, injected_a=injected)
    v_native = native.settle(inputs, learning)
    v_spice = ngspice.settle(inputs, learning)
    assert np.max(np.abs(v_native - v_spice)) <= 1e-6
    # with the correction currents the beta = 0 state of the learning circuit is the free state
    assert np.max(np.abs(native.settle(inputs, dataclasses.replace(learning, beta_s=0.0)) - v0)) <= 1e-9
