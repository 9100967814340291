"""Static power of a phase: Tellegen's theorem, a divider by hand, and ngspice's own source currents."""

import dataclasses
import doctest
import shutil
import subprocess

import networkx as nx
import numpy as np
import pytest

from eqspice.circuits import CrossbarSpec, DiodeModel, circuit_from_graph, crossbar, render_netlist, with_nonreciprocal
from eqspice.circuits.mismatch import with_mismatch
from eqspice.simulator.diode import thermal_voltage
from eqspice.simulator.engine import FREE, Nudge
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.ngspice.rawfile import read_rawfile
from eqspice.simulator import power as power_module
from eqspice.simulator.power import DELIVERED_TERMS, DISSIPATED_TERMS, phase_power

BATCH = 4


def diode_crossbar(seed, sigma=0.0):
    """A 3-5-2 crossbar whose diodes conduct, with output loads, mismatched diode areas and optional non-reciprocity."""
    rng = np.random.default_rng(seed)
    base = crossbar(
        CrossbarSpec(
            layers=(3, 5, 2),
            diode_bias_v=(0.35, -0.35),
            input_scale_v=1.5,
            diode_model=DiodeModel(n=1.2),
            output_load_s=3e-6,
        )
    )
    base = with_mismatch(base, diode_area=np.exp(0.3 * rng.normal(size=len(base.diodes))))
    circuit = with_nonreciprocal(base, sigma * rng.normal(size=base.n_edges)) if sigma else base
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (BATCH, circuit.n_features)) @ circuit.input_gain.T
    targets = rng.uniform(-0.3, 0.3, (BATCH, len(circuit.output_nodes)))
    return circuit, g, inputs, targets, rng


def graph_network(seed):
    """A random graph with a fixed node, diodes to ground and between free nodes, and a diode on an input."""
    rng = np.random.default_rng(seed)
    graph = nx.gnm_random_graph(10, 22, seed=seed)
    graph = nx.relabel_nodes(graph, {k: f"n{k}" for k in graph.nodes})
    for k in range(9):  # connected
        graph.add_edge(f"n{k}", f"n{k + 1}")
    circuit = circuit_from_graph(
        graph,
        inputs=["n0", "n5"],
        outputs=["n7", "n9"],
        fixed={"n3": 0.25},
        diodes=[("n1", "0"), ("0", "n2"), ("n4", "n6"), ("n0", "n8")],
        diode_model=DiodeModel(is_a=1e-12, n=1.5),
    )
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    inputs = rng.uniform(-1, 1, (BATCH, 2))
    targets = rng.uniform(-0.3, 0.3, (BATCH, 2))
    return circuit, g, inputs, targets, rng


def phases(circuit, targets, rng):
    """Free, +beta and -beta nudges, and -beta with controller currents (and reversed couplings if non-reciprocal)."""
    injected = np.zeros((BATCH, len(circuit.free_nodes)))
    injected[:, circuit.injection_columns] = rng.normal(0, 2e-6, (BATCH, len(circuit.injection_columns)))
    plus = Nudge(targets_v=targets, beta_s=1e-5)
    sign = -1.0 if circuit.nonreciprocal is not None else 1.0
    return {
        "free": FREE,
        "+beta": plus,
        "-beta": plus.opposite(),
        "+beta with currents": Nudge(targets_v=targets, beta_s=1e-5, injected_a=injected, antisymmetric_sign=sign),
        "-beta with currents": Nudge(targets_v=targets, beta_s=-1e-5, injected_a=injected, antisymmetric_sign=sign),
    }


NETWORKS = {
    "diode crossbar": lambda: diode_crossbar(1),
    "non-reciprocal crossbar": lambda: diode_crossbar(2, sigma=0.2),
    "graph with diodes": lambda: graph_network(3),
}


@pytest.mark.parametrize("network", NETWORKS)
def test_delivered_power_equals_dissipated_power_tellegen(network):
    circuit, g, inputs, targets, rng = NETWORKS[network]()
    engine = NativeEngine()
    engine.load(circuit, g)
    for name, nudge in phases(circuit, targets, rng).items():
        v = engine.settle(inputs, nudge)
        power = phase_power(circuit, g, v, nudge)
        residual = np.abs(power.delivered_w - power.dissipated_w) / power.dissipated_w
        assert residual.max() < 1e-9, (name, residual.max())
        assert power.dissipated["diodes"].min() > 0 and power.dissipated["memristors"].min() > 0
        for term in DISSIPATED_TERMS:  # every dissipation is non-negative, every term per sample
            assert power.dissipated[term].shape == (BATCH,) and power.dissipated[term].min() >= 0, term
        # the nudge is a dissipation for +beta and a delivery for -beta, never both
        assert not (np.any(power.delivered["nudge"]) and np.any(power.dissipated["nudge"]))
        assert np.any(power.delivered["nudge"]) == (nudge.beta_s < 0)
        assert np.any(power.dissipated["nudge"]) == (nudge.beta_s > 0)
        # an antisymmetric coupling does no net work, though its halves do
        assert np.all(np.abs(power.delivered["antisymmetric"]) <= 1e-12 * power.dissipated_w)
        assert np.all(power.antisymmetric_gross_w > 0) == (circuit.nonreciprocal is not None)
        assert np.any(power.delivered["injected"]) == (nudge.injected_a is not None)
        table = power.table()
        assert table["delivered_w"] == pytest.approx(table["dissipated_w"], rel=1e-9)
        assert set(table) >= {f"delivered.{k}" for k in DELIVERED_TERMS} | {f"dissipated.{k}" for k in DISSIPATED_TERMS}


def test_an_unsettled_state_breaks_the_balance():
    circuit, g, inputs, targets, rng = diode_crossbar(4)
    engine = NativeEngine()
    engine.load(circuit, g)
    v = engine.settle(inputs)
    v[:, circuit.free_slice] += 1e-3 * rng.normal(size=(BATCH, len(circuit.free_nodes)))
    power = phase_power(circuit, g, v)
    assert np.all(np.abs(power.delivered_w - power.dissipated_w) > 1e-6 * power.dissipated_w)


def divider(load_s):
    graph = nx.Graph([("x", "y"), ("y", "b")])
    circuit = circuit_from_graph(graph, inputs=["x"], outputs=["y"], fixed={"b": -0.4})
    return dataclasses.replace(circuit, output_load_s=load_s)


@pytest.mark.parametrize("beta", [0.0, 2e-5, -2e-5])
def test_a_loaded_nudged_divider_matches_kirchhoff_by_hand(beta):
    """x --G1-- y --G2-- b (fixed at Vb), a load GL and the nudge beta to a target t at y, a current I into y."""
    g1, g2, gl, vx, vb, t, i = 4e-5, 1e-5, 5e-6, 0.8, -0.4, 0.3, 1.5e-6
    circuit = divider(gl)
    g = np.array([g1, g2])
    nudge = Nudge(targets_v=[t], beta_s=beta, injected_a=[[i]])
    vy = (g1 * vx + g2 * vb + beta * t + i) / (g1 + g2 + gl + beta)  # KCL at y, by hand
    hand = {
        "inputs": vx * g1 * (vx - vy),
        "fixed": vb * g2 * (vb - vy),
        "targets": t * beta * (t - vy),
        "injected": vy * i,
        "memristors": g1 * (vx - vy) ** 2 + g2 * (vy - vb) ** 2,
        "loads": gl * vy**2,
        "nudge": beta * (vy - t) ** 2,
    }
    engine = NativeEngine()
    engine.load(circuit, g)
    v = engine.settle([[vx]], nudge)
    assert v[0, 2] == pytest.approx(vy, abs=1e-12)
    for state in (np.array([[vx, vb, vy]]), v):
        power = phase_power(circuit, g, state, nudge)
        for term in ("inputs", "fixed", "targets", "injected"):
            assert power.delivered[term][0] == pytest.approx(hand[term], rel=1e-10, abs=1e-20), term
        for term in ("memristors", "loads"):
            assert power.dissipated[term][0] == pytest.approx(hand[term], rel=1e-10), term
        nudge_term = power.dissipated["nudge"][0] - power.delivered["nudge"][0]
        assert nudge_term == pytest.approx(hand["nudge"], rel=1e-10, abs=1e-20)
        assert power.source_names == ("Vx", "Vb", "Vtgt_y")
        by_hand = [g1 * (vx - vy), g2 * (vb - vy), beta * (t - vy)]
        assert power.source_current_a[0] == pytest.approx(by_hand, rel=1e-10, abs=1e-20)
        total = hand["inputs"] + hand["fixed"] + hand["targets"] + hand["injected"]
        assert power.delivered_w[0] == pytest.approx(total - min(beta, 0) * (vy - t) ** 2, rel=1e-10)
        assert power.dissipated_w[0] == pytest.approx(power.delivered_w[0], rel=1e-12)


def test_a_diode_dissipates_its_shockley_current_times_its_voltage():
    """x --G-- h, a diode of area 2 from h to ground: P_in = Vx G (Vx - Vh) = G (Vx - Vh)^2 + I_d(Vh) Vh."""
    model = DiodeModel(is_a=1e-14, n=1.0)
    graph = nx.Graph([("x", "h")])
    circuit = circuit_from_graph(graph, inputs=["x"], outputs=["h"], diodes=[("h", "0")], diode_model=model)
    circuit = with_mismatch(circuit, diode_area=np.array([2.0]))
    g = np.array([1e-4])
    engine = NativeEngine()
    engine.load(circuit, g)
    v = engine.settle([[1.0]])
    vh = v[0, 1]
    assert 0.4 < vh < 0.9  # forward biased
    diode = 2.0 * 1e-14 * np.expm1(vh / thermal_voltage()) * vh + 1e-12 * vh**2
    power = phase_power(circuit, g, v)
    assert power.dissipated["diodes"][0] == pytest.approx(diode, rel=1e-12)
    assert power.delivered["inputs"][0] == pytest.approx(1.0 * 1e-4 * (1.0 - vh), rel=1e-12)
    assert power.delivered_w[0] == pytest.approx(power.dissipated_w[0], rel=1e-10)


def test_the_docstring_example_runs():
    result = doctest.testmod(power_module)
    assert result.attempted > 0 and result.failed == 0


def test_shapes_are_checked():
    circuit = divider(0.0)
    with pytest.raises(ValueError, match="g_s"):
        phase_power(circuit, np.ones(3), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="node_names"):
        phase_power(circuit, np.ones(2), np.zeros((1, 4)))


def ngspice_operating_point(tmp_path, circuit, g, inputs, nudge, k):
    """Voltages and source currents of sample k, from plain ``ngspice -b`` on the rendered netlist."""
    injected = None if nudge.injected_a is None else nudge.injected_a[k]
    targets = None if nudge.targets_v is None else nudge.targets_v[k]
    netlist = render_netlist(
        circuit, g, inputs_v=inputs[k], targets_v=targets, beta_s=nudge.beta_s,
        antisymmetric_sign=nudge.antisymmetric_sign, injected_a=injected,
    )
    path, raw = tmp_path / "op.cir", tmp_path / "op.raw"
    path.write_text(netlist)
    subprocess.run(["ngspice", "-b", "-r", str(raw), str(path)], capture_output=True, check=True, cwd=tmp_path)
    vectors = read_rawfile(raw)
    return vectors, np.array([vectors[f"v({n})"][0] for n in circuit.node_names])


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="needs the ngspice program")
@pytest.mark.parametrize("network", ["diode crossbar", "non-reciprocal crossbar"])
def test_ngspices_own_source_currents_give_the_native_powers(network, tmp_path):
    circuit, g, inputs, targets, rng = NETWORKS[network]()
    engine = NativeEngine()
    engine.load(circuit, g)
    worst_current = worst_power = worst_tellegen = 0.0
    for name, nudge in phases(circuit, targets, rng).items():
        native = phase_power(circuit, g, engine.settle(inputs, nudge), nudge)
        for k in range(2):
            vectors, v = ngspice_operating_point(tmp_path, circuit, g, inputs, nudge, k)
            # ngspice's i(vname) is the current into the source's + terminal: minus what it pushes into the node
            own = np.array([-vectors[f"i({s.lower()})"][0] for s in native.source_names])
            scale = np.abs(native.source_current_a[k]).max()
            worst_current = max(worst_current, np.abs(own - native.source_current_a[k]).max() / scale)
            n_in, n_fixed = len(circuit.input_nodes), len(circuit.fixed_nodes)
            y = np.zeros(len(circuit.output_nodes)) if nudge.targets_v is None else nudge.targets_v[k]
            own_power = own * np.concatenate([v[: n_in + n_fixed], y])
            own_classes = {
                "inputs": own_power[:n_in].sum(),
                "fixed": own_power[n_in : n_in + n_fixed].sum(),
                "targets": own_power[n_in + n_fixed :].sum(),
            }
            total = native.delivered_w[k]
            for term, value in own_classes.items():  # relative to the phase's total power
                worst_power = max(worst_power, abs(value - native.delivered[term][k]) / total)
            # Tellegen with ngspice's own source currents and its voltages
            at_ngspice = phase_power(circuit, g, v[None], _one_sample(nudge, k))
            others = sum(at_ngspice.delivered[t][0] for t in ("injected", "nudge", "antisymmetric"))
            dissipated = at_ngspice.dissipated_w[0]
            worst_tellegen = max(worst_tellegen, abs(sum(own_classes.values()) + others - dissipated) / dissipated)
            assert at_ngspice.delivered_w[0] == pytest.approx(native.delivered_w[k], rel=1e-9), name
    assert worst_current < 1e-9, worst_current
    assert worst_power < 1e-9, worst_power
    assert worst_tellegen < 1e-9, worst_tellegen


def _one_sample(nudge, k):
    pick = lambda a: None if a is None else np.atleast_2d(a)[k]  # noqa: E731
    return Nudge(
        targets_v=pick(nudge.targets_v), beta_s=nudge.beta_s, injected_a=pick(nudge.injected_a),
        antisymmetric_sign=nudge.antisymmetric_sign,
    )


def test_the_ngspice_engine_settles_to_a_balanced_state(ngspice):
    circuit, g, inputs, targets, rng = diode_crossbar(5, sigma=0.1)
    ngspice.load(circuit, g)
    nudges = list(phases(circuit, targets, rng).values())
    for nudge, v in zip(nudges, ngspice.settle_phases(inputs, nudges)):
        power = phase_power(circuit, g, v, nudge)
        residual = np.abs(power.delivered_w - power.dissipated_w) / power.dissipated_w
        assert residual.max() < 1e-9, residual.max()
