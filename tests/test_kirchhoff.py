"""Settled voltages against Kirchhoff's laws, computed independently here."""

import networkx as nx
import numpy as np
import pytest
from nodal import conductance_matrix

from eqspice.circuits import CrossbarSpec, DiodeModel, circuit_from_graph, crossbar
from eqspice.simulator.engine import Nudge
from eqspice.simulator.native import NativeEngine

K_B, Q_E, T_K = 1.38064852e-23, 1.6021766208e-19, 300.15  # ngspice's constants at 27 degC


def dense_solution(circuit, g, inputs_v, targets_v=None, beta=0.0):
    """Node voltages of a linear resistive network from the full nodal matrix (no engine code)."""
    names = circuit.node_names
    n = len(names)
    G = conductance_matrix(circuit, g)
    current = np.zeros(n)
    out = [names.index(o) for o in circuit.output_nodes]
    for k, o in enumerate(out):
        G[o, o] += beta + circuit.output_load_s
        if targets_v is not None:
            current[o] += beta * targets_v[k]
    known = np.concatenate([inputs_v, circuit.fixed_volts])
    n_known = len(known)
    free = np.arange(n_known, n)
    rhs = current[free] - G[np.ix_(free, np.arange(n_known))] @ known
    return np.concatenate([known, np.linalg.solve(G[np.ix_(free, free)], rhs)])


def shockley(v, model, gmin=1e-12):
    vte = model.n * K_B * T_K / Q_E
    i = np.where(v >= -3 * vte, model.is_a * np.expm1(np.minimum(v, 3) / vte), -model.is_a) + gmin * v
    return i


def kcl_residual(circuit, g, v):
    """Net current leaving every free node (amperes): resistors, diodes, loads."""
    names = circuit.node_names
    leaving = np.zeros(len(names))
    for (a, b), ge in zip(circuit.edges, g):
        leaving[a] += ge * (v[a] - v[b])
        leaving[b] -= ge * (v[a] - v[b])
    vg = np.append(v, 0.0)
    for a, c in circuit.diodes:
        i = shockley(vg[a] - vg[c], circuit.diode_model)
        if a >= 0:
            leaving[a] += i
        if c >= 0:
            leaving[c] -= i
    for o in circuit.output_index:
        leaving[o] += circuit.output_load_s * v[o]
    return leaving[circuit.free_slice]


@pytest.mark.parametrize("layers", [(2, 3, 1), (4, 6, 3), (5, 4, 4, 2)])
@pytest.mark.parametrize("beta", [0.0, 3e-5, -2e-6])
def test_linear_crossbar_matches_dense_kirchhoff(ngspice, rng, layers, beta):
    circuit = crossbar(CrossbarSpec(layers=layers, nonlinearity="none", output_load_s=2e-6))
    g = rng.uniform(1e-6, 1e-4, circuit.n_edges)
    x = rng.uniform(0, 1, (3, circuit.n_features))
    inputs = x @ circuit.input_gain.T
    targets = rng.uniform(-0.5, 0.5, (3, len(circuit.output_nodes)))
    ngspice.load(circuit, g)
    v = ngspice.settle(inputs, Nudge(targets_v=targets, beta_s=beta))
    for b in range(3):
        expected = dense_solution(circuit, g, inputs[b], targets[b], beta)
        assert np.max(np.abs(v[b] - expected)) < 1e-9


def test_any_graph_matches_dense_kirchhoff(ngspice, rng):
    graph = nx.connected_watts_strogatz_graph(12, 4, 0.3, seed=3)
    graph = nx.relabel_nodes(graph, {k: f"n{k}" for k in graph.nodes})
    circuit = circuit_from_graph(graph, inputs=["n0", "n5"], outputs=["n7", "n9"], fixed={"n3": 0.25})
    g = rng.uniform(1e-6, 1e-4, circuit.n_edges)
    inputs = np.array([[1.0, -0.5]])
    ngspice.load(circuit, g)
    v = ngspice.settle(inputs, Nudge(targets_v=np.array([[0.1, 0.2]]), beta_s=1e-5))[0]
    assert np.max(np.abs(v - dense_solution(circuit, g, inputs[0], [0.1, 0.2], 1e-5))) < 1e-9


@pytest.mark.parametrize("nonlinearity", ["diode_pair", "diode"])
def test_diode_network_balances_current_at_every_free_node(ngspice, rng, nonlinearity):
    # diode bias placed so that diodes conduct strongly: the test bites only then
    spec = CrossbarSpec(
        layers=(4, 6, 3),
        nonlinearity=nonlinearity,
        diode_bias_v=(0.4, -0.4),
        input_scale_v=2.0,
        diode_model=DiodeModel(is_a=1e-12, n=1.3),
    )
    circuit = crossbar(spec)
    g = rng.uniform(1e-6, 1e-4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (4, circuit.n_features)) @ circuit.input_gain.T
    ngspice.load(circuit, g)
    v = ngspice.settle(inputs)
    diode_current = []
    for b in range(4):
        assert np.max(np.abs(kcl_residual(circuit, g, v[b]))) < 1e-12
        vg = np.append(v[b], 0.0)
        diode_current.append(max(abs(shockley(vg[a] - vg[c], circuit.diode_model)) for a, c in circuit.diodes))
    assert max(diode_current) > 1e-6, "diodes should carry microamperes in this test"


@pytest.mark.parametrize("nonlinearity", ["diode_pair", "diode"])
def test_each_hidden_layer_may_have_its_own_diode_sources(ngspice, rng, nonlinearity):
    sources = ((0.4, -0.4), (0.1, -0.1))  # the second layer clips closer to 0 V
    spec = dict(layers=(4, 5, 4, 2), nonlinearity=nonlinearity, input_scale_v=2.0, diode_model=DiodeModel(is_a=1e-12, n=1.3))
    circuit = crossbar(CrossbarSpec(**spec, diode_bias_v=sources))
    volts = dict(zip(circuit.fixed_nodes, circuit.fixed_volts))
    names = circuit.node_names
    for a, c in circuit.diodes:  # every diode goes from its node to its own layer's source
        node, source = (names[a], names[c]) if names[c].startswith("vd_") else (names[c], names[a])
        layer = int(node[1]) - 1
        low, high = sources[layer]
        assert (source, volts[source]) in ((f"vd_dn_{layer + 1}", low), (f"vd_up_{layer + 1}", high))
    g = rng.uniform(1e-6, 1e-4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (4, circuit.n_features)) @ circuit.input_gain.T
    ngspice.load(circuit, g)
    v = ngspice.settle(inputs)
    native = NativeEngine()
    native.load(circuit, g)
    assert np.max(np.abs(native.settle(inputs) - v)) < 1e-9
    for b in range(4):
        assert np.max(np.abs(kcl_residual(circuit, g, v[b]))) < 1e-12
    # the same pair for both layers is the shared-source circuit: the same voltages
    shared = crossbar(CrossbarSpec(**spec, diode_bias_v=sources[0]))
    same = crossbar(CrossbarSpec(**spec, diode_bias_v=[sources[0]] * 2))
    native.load(shared, g)
    v_shared = native.settle(inputs)[:, shared.free_slice]
    native.load(same, g)
    np.testing.assert_allclose(native.settle(inputs)[:, same.free_slice], v_shared, rtol=0, atol=1e-12)
    assert np.max(np.abs(v_shared - v[:, circuit.free_slice])) > 1e-3  # the second layer's own sources do move them


def test_native_engine_matches_ngspice_on_diode_networks(ngspice, rng):
    circuit = crossbar(CrossbarSpec(layers=(6, 5, 3), diode_bias_v=(0.4, -0.4), input_scale_v=2.0))
    g = rng.uniform(1e-6, 1e-4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (5, circuit.n_features)) @ circuit.input_gain.T
    targets = rng.uniform(-0.3, 0.3, (5, 3))
    native = NativeEngine()
    native.load(circuit, g)
    ngspice.load(circuit, g)
    for beta in (0.0, 2e-5, -2e-5):
        nudge = Nudge(targets_v=targets, beta_s=beta)
        assert np.max(np.abs(native.settle(inputs, nudge) - ngspice.settle(inputs, nudge))) < 1e-9


def test_conductance_updates_take_effect_by_alter_and_by_reload(ngspice, rng):
    circuit = crossbar(CrossbarSpec(layers=(3, 4, 2), nonlinearity="none"))
    g = rng.uniform(1e-6, 1e-4, circuit.n_edges)
    inputs = np.array([[0.3, -0.2, 0.9, -0.3, 0.2, -0.9]])
    ngspice.load(circuit, g)
    sparse = g.copy()
    sparse[3] *= 3.0  # one device: altered in place
    ngspice.set_conductances(sparse)
    assert np.max(np.abs(ngspice.settle(inputs)[0] - dense_solution(circuit, sparse, inputs[0]))) < 1e-9
    dense = sparse * rng.uniform(0.5, 1.5, circuit.n_edges)  # every device: reloaded
    ngspice.set_conductances(dense)
    assert np.max(np.abs(ngspice.settle(inputs)[0] - dense_solution(circuit, dense, inputs[0]))) < 1e-9
