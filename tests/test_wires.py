"""Resistive row and column lines (IR drop): geometry, both engines, the controller's reading, bad input."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eqspice.circuits import CrossbarSpec, DiodeModel, crossbar, render_netlist
from eqspice.circuits.schema import SpecError
from eqspice.learning.rules.equilibrium import EquilibriumPropagation, output_loss
from eqspice.learning.rules.lines import at_devices, devices_on_lines
from eqspice.learning.run.build import mismatched_circuit
from eqspice.learning.run.config import ConfigError, load_config
from eqspice.simulator.engine import Nudge
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.ngspice.rawfile import read_rawfile
from eqspice.simulator.wired import WireElimination

ROOT = Path(__file__).resolve().parents[1]


# -- an oracle that shares no code with the engines: nodal analysis of the netlist text ----------
def netlist_nodal(text: str):
    """Node names, the conductance matrix of every R and nudge G, and the V-source volts, from SPICE text."""
    names: dict[str, int] = {}
    idx = lambda n: names.setdefault(n.lower(), len(names))  # noqa: E731
    resistors, sources = [], {}
    for line in text.splitlines():
        f = line.split()
        if not f or f[0].startswith(("*", ".", "+")):
            continue
        if f[0][0] in "Rr":
            resistors.append((f[1], f[2], 1.0 / float(f[3])))
        elif f[0].startswith("Gnudge"):
            resistors.append((f[1], f[2], float(f[5])))
        elif f[0][0] in "Vv":
            sources[f[1]] = float(f[4])
    for a, b, _ in resistors:
        idx(a), idx(b)
    n = len(names)
    y = np.zeros((n, n))
    for a, b, g in resistors:
        for p, q in ((a, b), (b, a)):
            if p != "0":
                y[idx(p), idx(p)] += g
                if q != "0":
                    y[idx(p), idx(q)] -= g
    return names, y, sources


def solve_netlist(text: str) -> dict[str, float]:
    """Every node's voltage of a linear netlist (resistors, nudge conductances, DC sources)."""
    names, y, sources = netlist_nodal(text)
    fixed = [names[s.lower()] for s in sources if s.lower() in names] + ([names["0"]] if "0" in names else [])
    volts = [sources[s] for s in sources if s.lower() in names] + ([0.0] if "0" in names else [])
    free = [i for i in range(len(names)) if i not in fixed]
    v = np.zeros(len(names))
    v[fixed] = volts
    v[free] = np.linalg.solve(y[np.ix_(free, free)], -y[np.ix_(free, fixed)] @ v[fixed])
    return {name: v[i] for name, i in names.items()}


def wired_free_matrix(circuit, g):
    """The linear network reduced onto the free nodes (dense Schur complement of the netlist's matrix)."""
    names, y, _ = netlist_nodal(render_netlist(circuit, g))
    free = [names[n.lower()] for n in circuit.free_nodes]
    known = {names[n.lower()] for n in circuit.input_nodes + circuit.fixed_nodes if n.lower() in names}
    known |= {i for n, i in names.items() if n.startswith("tgt_") or n == "0"}
    inner = [i for i in range(len(names)) if i not in known and i not in free]
    y_ff, y_fi, y_ii = y[np.ix_(free, free)], y[np.ix_(free, inner)], y[np.ix_(inner, inner)]
    return y_ff - y_fi @ np.linalg.solve(y_ii, y_fi.T) if inner else y_ff


def stability_limit(circuit, g):
    """Largest |beta| of a -beta nudge that keeps the wired linear network stable (see test_engine_agreement)."""
    out = circuit.output_index - circuit.free_slice.start
    inverse_out = np.linalg.inv(wired_free_matrix(circuit, g))[np.ix_(out, out)]
    return 1.0 / np.linalg.eigvalsh(0.5 * (inverse_out + inverse_out.T)).max()


# -- geometry ---------------------------------------------------------------------------------------
def test_a_two_by_two_crossbar_has_its_driver_at_column_0_and_its_terminal_past_the_last_row():
    c = crossbar(layers=(2, 2), differential_inputs=False, bias_v=0.0, nonlinearity="none",
                 wire_resistance_ohm=3.0, driver_resistance_ohm=7.0)  # fmt: skip
    lines = set(render_netlist(c, np.full(c.n_edges, 1e-4)).splitlines())
    expected = {
        "Rdrv1_0 in_0 row1_0_0 7.0", "Rdrv1_1 in_1 row1_1_0 7.0",
        "Rrow1_0_1 row1_0_0 row1_0_1 3.0", "Rrow1_1_1 row1_1_0 row1_1_1 3.0",
        "Rcol1_0_0 col1_0_0 out_0 3.0", "Rcol1_0_1 col1_0_1 out_1 3.0",
        "R1_0_0 row1_0_0 col1_0_0 10000.0", "R1_0_1 row1_0_1 col1_0_1 10000.0",
        "R1_1_0 row1_1_0 out_0 10000.0", "R1_1_1 row1_1_1 out_1 10000.0",
    }  # fmt: skip
    assert expected <= lines
    assert sum(line.startswith(("Rrow", "Rcol", "Rdrv")) for line in lines) == len(expected) - 4


def test_tiles_end_every_column_line_on_the_column_node():
    c = crossbar(layers=(5, 1), differential_inputs=False, bias_v=0.0, nonlinearity="none",
                 wire_resistance_ohm=1.0, driver_resistance_ohm=1.0, tile_rows=2)  # fmt: skip
    text = render_netlist(c, np.full(c.n_edges, 1e-4))
    # rows 0-1, 2-3, 4: each tile's last row sits on out_0
    for fragment in ("Rcol1_0_0 col1_0_0 out_0", "Rcol1_2_0 col1_2_0 out_0", "R1_1_0 row1_1_0 out_0",
                     "R1_3_0 row1_3_0 out_0", "R1_4_0 row1_4_0 out_0"):  # fmt: skip
        assert fragment in text
    assert "Rcol1_1_0" not in text and "Rcol1_3_0" not in text


def test_a_single_cell_behind_its_driver_divides_as_three_resistors_in_series():
    g, g_load, r_d, v_in = 1e-3, 2e-3, 250.0, 0.8
    c = crossbar(layers=(1, 1), differential_inputs=False, bias_v=0.0, nonlinearity="none",
                 output_load_s=g_load, driver_resistance_ohm=r_d)  # fmt: skip
    engine = NativeEngine()
    engine.load(c, np.array([g]))
    v = engine.settle(np.array([[v_in]]))[0]
    current = v_in / (r_d + 1 / g + 1 / g_load)
    assert v[c.output_index[0]] == pytest.approx(current / g_load, rel=1e-12)
    dv = WireElimination(c).device_voltages(np.array([g]), v[None])
    assert dv[0, 0] == pytest.approx(current / g, rel=1e-12)


# -- zero resistance is the ideal crossbar, bit for bit -----------------------------------------------
def test_zero_resistances_are_todays_crossbar_bit_for_bit():
    spec = dict(layers=(4, 3, 2), nonlinearity="diode_pair")
    ideal = crossbar(**spec)
    zero = crossbar(**spec, wire_resistance_ohm=0.0, driver_resistance_ohm=0.0, tile_rows=2)
    assert zero.wires is None
    rng = np.random.default_rng(3)
    g = 10 ** rng.uniform(-6, -4, ideal.n_edges)
    assert render_netlist(zero, g) == render_netlist(ideal, g)
    x = rng.uniform(0, 1, (5, 4)) @ ideal.input_gain.T
    nudge = Nudge(targets_v=rng.uniform(-0.1, 0.1, (5, 2)), beta_s=1e-5)
    a, b = NativeEngine(), NativeEngine()
    a.load(ideal, g), b.load(zero, g)
    assert np.array_equal(a.settle(x, nudge), b.settle(x, nudge))


def test_the_ir_drop_vanishes_linearly_with_the_wire_resistance():
    rng = np.random.default_rng(4)
    ideal = crossbar(layers=(4, 3, 2))
    g = 10 ** rng.uniform(-5, -4, ideal.n_edges)
    x = rng.uniform(0, 1, (3, 4)) @ ideal.input_gain.T

    def settle(circuit):
        engine = NativeEngine()
        engine.load(circuit, g)
        return engine.settle(x)

    v_ideal = settle(ideal)
    drop = [np.abs(settle(crossbar(layers=(4, 3, 2), wire_resistance_ohm=r, driver_resistance_ohm=r)) - v_ideal).max()
            for r in (1.0, 0.1, 0.01)]  # fmt: skip
    assert 0 < drop[2] < drop[1] < drop[0] < 1e-3
    assert 9 < drop[0] / drop[1] < 11 and 9 < drop[1] / drop[2] < 11


# -- the native engine against nodal analysis of the netlist and against ngspice ------------------
@pytest.mark.parametrize("tile_rows", [None, 3])
def test_native_wired_linear_crossbar_matches_nodal_analysis_of_its_netlist(tile_rows):
    rng = np.random.default_rng(5)
    c = crossbar(layers=(5, 4, 3), nonlinearity="none", output_load_s=1e-6, wire_resistance_ohm=20.0,
                 driver_resistance_ohm=50.0, tile_rows=tile_rows)  # fmt: skip
    g = 10 ** rng.uniform(-5, -3, c.n_edges)
    x = rng.uniform(-1, 1, (1, 5)) @ c.input_gain.T
    targets = rng.uniform(-0.2, 0.2, (1, 3))
    engine = NativeEngine()
    engine.load(c, g)
    v = engine.settle(x, Nudge(targets_v=targets, beta_s=2e-4))
    oracle = solve_netlist(render_netlist(c, g, inputs_v=x[0], targets_v=targets[0], beta_s=2e-4))
    v_ext = engine.wires.line_voltages(g, v)[0]
    names = c.node_names + engine.wires.network.internal_nodes
    assert max(abs(v_ext[k] - oracle[n.lower()]) for k, n in enumerate(names)) < 1e-12
    assert np.abs(v[0] - v_ext[: len(c.node_names)]).max() == 0


def wired_circuits():
    return st.builds(
        lambda layers, diff_in, nl, bias, diode, load, r_w, r_d, tile: CrossbarSpec(
            layers=layers, differential_inputs=diff_in, nonlinearity=nl, bias_v=bias,
            diode_bias_v=(0.3, -0.3), diode_model=diode, output_load_s=load,
            wire_resistance_ohm=r_w, driver_resistance_ohm=r_d, tile_rows=tile,
        ),  # fmt: skip
        st.lists(st.integers(1, 5), min_size=2, max_size=3).map(tuple),
        st.booleans(),
        st.sampled_from(["diode_pair", "diode", "none"]),
        st.sampled_from([0.0, 1.0]),
        st.builds(DiodeModel, is_a=st.sampled_from([1e-14, 1e-11]), n=st.floats(1.0, 2.0)),
        st.sampled_from([0.0, 1e-6]),
        st.sampled_from([0.0, 0.5, 10.0, 2000.0]),
        st.sampled_from([0.0, 5.0, 500.0]),
        st.sampled_from([None, 1, 2, 3]),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    wired_circuits(),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.0, 0.1, 1.0, -0.1, -0.5]),
    st.sampled_from(["none", "mismatch", "nonreciprocal"]),
)
def test_native_and_ngspice_agree_within_a_microvolt_with_wires(ngspice, spec, seed, beta_fraction, flaw):
    from eqspice.circuits.network import with_nonreciprocal

    rng = np.random.default_rng(seed)
    circuit = crossbar(spec)
    if flaw == "mismatch":
        sigma = 0.3 if len(circuit.diodes) else 0.0  # (with_mismatch cannot report the spread of no diodes)
        circuit = mismatched_circuit(circuit, diode_is=sigma, bias_v=0.02, input_gain=0.05, seed=seed % 1000)
    g = 10 ** rng.uniform(-6, -3, circuit.n_edges)
    if flaw == "nonreciprocal":
        circuit = with_nonreciprocal(circuit, rng.normal(0, 0.1, circuit.n_edges))
        beta_fraction = abs(beta_fraction)  # the limit below is the reciprocal network's
    beta = beta_fraction * stability_limit(circuit, g)
    inputs = rng.uniform(0, 1, (3, circuit.n_features)) @ circuit.input_gain.T
    nudge = Nudge(targets_v=rng.uniform(-0.5, 0.5, (3, len(circuit.output_nodes))), beta_s=beta)
    native = NativeEngine()
    native.load(circuit, g)
    ngspice.load(circuit, g)
    assert np.max(np.abs(native.settle(inputs, nudge) - ngspice.settle(inputs, nudge))) <= 1e-6


def test_memristors_and_lines_dissipate_what_the_sources_deliver():
    rng = np.random.default_rng(9)
    c = crossbar(layers=(4, 3, 2), nonlinearity="none", wire_resistance_ohm=40.0, driver_resistance_ohm=80.0, tile_rows=3)
    g = 10 ** rng.uniform(-4, -3, c.n_edges)
    x = rng.uniform(-1, 1, 4) @ c.input_gain.T
    text = render_netlist(c, g, inputs_v=x)
    oracle = solve_netlist(text)
    names, y, sources = netlist_nodal(text)
    v_all = np.zeros(len(names))
    for n, i in names.items():
        v_all[i] = oracle[n]
    delivered = sum(v_all[names[s]] * (y[names[s]] @ v_all) for s in sources if s in names)
    engine = NativeEngine()
    engine.load(c, g)
    power = engine.wires.dissipated_w(g, engine.settle(x[None]))
    assert power["lines"][0] > 1e-3 * power["memristors"][0]
    assert power["memristors"][0] + power["lines"][0] == pytest.approx(delivered, rel=1e-10)


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="needs the ngspice program")
def test_line_voltages_from_the_settled_nodes_are_ngspices_own_line_voltages(tmp_path):
    rng = np.random.default_rng(6)
    c = crossbar(layers=(3, 4, 2), wire_resistance_ohm=30.0, driver_resistance_ohm=100.0, tile_rows=2)
    g = 10 ** rng.uniform(-5, -3, c.n_edges)
    x = rng.uniform(0, 1, 3) @ c.input_gain.T
    netlist = tmp_path / "wired.cir"
    netlist.write_text(render_netlist(c, g, inputs_v=x))
    raw = tmp_path / "wired.raw"
    subprocess.run(["ngspice", "-b", "-r", str(raw), str(netlist)], capture_output=True, check=True, cwd=tmp_path)
    spice = read_rawfile(raw)
    lines = WireElimination(c)
    v_nodes = np.array([[spice[f"v({n})"][0] for n in c.node_names]])
    v_ext = lines.line_voltages(g, v_nodes)[0]
    names = c.node_names + lines.network.internal_nodes
    assert max(abs(v_ext[k] - spice[f"v({n})"][0]) for k, n in enumerate(names)) < 1e-9


# -- what the controller reads --------------------------------------------------------------------
def ep_gradients(circuit, g, x, targets, beta):
    engine = NativeEngine()
    engine.load(circuit, g)
    rule = EquilibriumPropagation(beta_s=beta, centred=True)
    phases = rule.phases(engine, x, targets)
    lines = WireElimination(circuit)
    device = rule.gradient(devices_on_lines(circuit, lines), at_devices(lines, g, phases))
    return device, rule.gradient(circuit, phases), engine


def test_ep_on_device_voltages_is_the_finite_difference_gradient_of_the_wired_loss():
    rng = np.random.default_rng(7)
    c = crossbar(layers=(3, 3, 2), wire_resistance_ohm=200.0, driver_resistance_ohm=300.0, tile_rows=2)
    g = 10 ** rng.uniform(-4.5, -3.5, c.n_edges)
    x = rng.uniform(0, 1, (2, 3)) @ c.input_gain.T
    targets = rng.uniform(-0.1, 0.1, (2, 2))
    device, terminals, engine = ep_gradients(c, g, x, targets, beta=1e-7)

    def loss(gg):
        engine.set_conductances(gg)
        return output_loss(c, engine.settle(x), targets).sum()

    fd = np.empty(c.n_edges)
    for e in range(c.n_edges):
        h = 1e-4 * g[e]
        up, down = g.copy(), g.copy()
        up[e] += h
        down[e] -= h
        fd[e] = (loss(up) - loss(down)) / (2 * h)
    scale = np.abs(fd).max()
    assert np.abs(device - fd).max() < 1e-4 * scale
    assert np.abs(terminals - fd).max() > 1e-2 * scale  # the IR drop biases the edge reading


def test_device_and_terminal_readings_coincide_on_ideal_wires():
    rng = np.random.default_rng(8)
    c = crossbar(layers=(3, 3, 2))
    g = 10 ** rng.uniform(-4.5, -3.5, c.n_edges)
    x = rng.uniform(0, 1, (2, 3)) @ c.input_gain.T
    device, terminals, _ = ep_gradients(c, g, x, rng.uniform(-0.1, 0.1, (2, 2)), beta=1e-6)
    np.testing.assert_allclose(device, terminals, rtol=1e-10, atol=1e-12 * np.abs(terminals).max())


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields, words",
    [
        ({"wire_resistance_ohm": -1.0}, "wire_resistance_ohm"),
        ({"driver_resistance_ohm": float("nan")}, "driver_resistance_ohm"),
        ({"wire_resistance_ohm": float("inf")}, "wire_resistance_ohm"),
        ({"tile_rows": 0}, "tile_rows"),
    ],
)
def test_bad_wires_are_one_line_errors_in_python(fields, words):
    with pytest.raises(SpecError) as info:
        crossbar(layers=(2, 2), **fields)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "setting, words",
    [
        ("network.wire_resistance_ohm=-2", "network.wire_resistance_ohm"),
        ("network.driver_resistance_ohm=nan", "network.driver_resistance_ohm"),
        ("network.tile_rows=0", "network.tile_rows"),
        ("training.estimator='corrected'", "resistive wires"),
    ],
)
def test_bad_wires_in_a_config_are_one_line_and_nothing_runs(tmp_path, setting, words):
    extra = ["--set", "network.wire_resistance_ohm=1"] if "estimator" in setting else []
    result = subprocess.run(
        [sys.executable, "-m", "eqspice.learning.cli", "train", str(ROOT / "examples" / "xor.toml"),
         "--run-dir", str(tmp_path / "run"), "--backend", "native", "--set", setting, *extra],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_bad_wires_in_a_python_config_are_config_errors():
    for overrides in ({"network.wire_resistance_ohm": -2.0}, {"network.tile_rows": 0},
                      {"network.wire_resistance_ohm": 1.0, "training.estimator": "corrected"}):  # fmt: skip
        with pytest.raises(ConfigError) as info:
            load_config(ROOT / "examples" / "xor.toml", overrides)
        assert "\n" not in str(info.value)


# -- training, export and evaluation carry the wires ------------------------------------------------
@pytest.mark.skipif(shutil.which("ngspice") is None, reason="needs the ngspice program")
def test_export_writes_the_wired_netlist_and_eval_runs_a_trained_run_on_a_wired_chip(tmp_path):
    from eqspice.learning.run.checkpoint import RunState
    from eqspice.learning.run.loop import train

    config = load_config(ROOT / "examples" / "xor.toml", {"engine.backend": "native", "training.epochs": 20})
    train(config, tmp_path / "run", progress=False)
    cli = [sys.executable, "-m", "eqspice.learning.cli"]
    netlist = tmp_path / "wired.cir"
    wired = ["--set", "network.wire_resistance_ohm=2000", "--set", "network.driver_resistance_ohm=500"]
    subprocess.run([*cli, "export", str(tmp_path / "run"), "-o", str(netlist), "--input", "1,0", *wired], check=True, capture_output=True)
    assert "Rrow1_0_1" in netlist.read_text()
    raw = tmp_path / "wired.raw"
    subprocess.run(["ngspice", "-b", "-r", str(raw), str(netlist)], capture_output=True, check=True, cwd=tmp_path)
    spice = read_rawfile(raw)
    circuit = crossbar(config.network.__class__(**{**vars(config.network), "wire_resistance_ohm": 2000.0, "driver_resistance_ohm": 500.0}))
    g = RunState.load(tmp_path / "run").g_s
    engine = NativeEngine()
    engine.load(circuit, g)
    v = engine.settle(circuit.input_gain @ np.array([1.0, 0.0]))[0]
    assert max(abs(spice[f"v({n})"][0] - v[k]) for k, n in enumerate(circuit.node_names)) < 1e-6

    def eval_loss(*flags):
        out = subprocess.run([*cli, "eval", str(tmp_path / "run"), "--backend", "native", *flags],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        return float(out.split("loss ")[1].split()[0])

    from eqspice.learning.run.build import open_session

    data = open_session(config).data
    v_test = engine.settle(data.x_test @ circuit.input_gain.T)
    classes = np.full((len(data.y_test), 2), config.training.target_low_v)
    classes[np.arange(len(data.y_test)), data.y_test] = config.training.target_high_v
    wired_loss = output_loss(circuit, v_test, classes @ circuit.target_gain.T).mean()
    assert eval_loss(*wired) == pytest.approx(wired_loss, rel=1e-5)  # eval prints 6 digits
    assert abs(eval_loss() - wired_loss) > 1e-3 * wired_loss


@settings(max_examples=40, deadline=None)
@given(wired_circuits(), st.integers(0, 2**32 - 1))
def test_swept_lines_equal_the_sparse_factorisation(spec, seed):
    """The structured sweep (simulator/wired.py, _TileSweep) against a sparse LU of the same lines."""
    rng = np.random.default_rng(seed)
    circuit = crossbar(spec)
    g = 10 ** rng.uniform(-6, -3, circuit.n_edges)
    v = rng.uniform(-1, 1, (3, len(circuit.node_names)))
    swept, sparse = WireElimination(circuit), WireElimination(circuit, structured=False)
    (ff, fk), (ff_ref, fk_ref) = swept.reduce(g), sparse.reduce(g)
    scale = np.abs(ff_ref).max()
    assert np.abs(ff - ff_ref).max() <= 1e-10 * scale and np.abs(fk - fk_ref).max() <= 1e-10 * scale
    assert np.abs(swept.line_voltages(g, v) - sparse.line_voltages(g, v)).max() <= 1e-9
    if spec.wire_resistance_ohm > 0 and spec.layers[1] > 1:  # the first crossbar's rows are all driven inputs
        assert swept._tiles[0] is not None


def test_the_first_crossbar_of_a_wired_network_is_swept():
    c = crossbar(layers=(6, 4, 2), wire_resistance_ohm=1.0, tile_rows=3)
    lines = WireElimination(c)
    rows = len(c.groups[0].rows)
    assert lines._tiles[0] is not None and len(lines._tiles[0]) == -(-rows // 3)  # one sweep per tile of 3 rows
    assert lines._tiles[1] is None  # rows driven by the hidden nodes: sparse LU


# -- energy accounting with resistive lines --------------------------------------------------------
def test_source_currents_and_dissipation_with_wires_are_the_full_netlists():
    from eqspice.simulator.power import phase_power, static_power_w

    rng = np.random.default_rng(12)
    c = crossbar(layers=(4, 3, 2), nonlinearity="none", wire_resistance_ohm=40.0, driver_resistance_ohm=80.0, tile_rows=3)
    g = 10 ** rng.uniform(-4, -3, c.n_edges)
    x = rng.uniform(-1, 1, 4) @ c.input_gain.T
    text = render_netlist(c, g, inputs_v=x)
    oracle = solve_netlist(text)  # dense nodal analysis of the full wired netlist
    names, y, _ = netlist_nodal(text)
    v_all = np.zeros(len(names))
    for n, i in names.items():
        v_all[i] = oracle[n]
    pushed = {n: y[names[n.lower()]] @ v_all for n in c.input_nodes + c.fixed_nodes}  # current each source drives in
    engine = NativeEngine()
    engine.load(c, g)
    v = engine.settle(x[None])
    power = phase_power(c, g, v)
    known = len(c.input_nodes) + len(c.fixed_nodes)
    expected = np.array([pushed[n] for n in c.input_nodes + c.fixed_nodes])
    assert np.abs(power.source_current_a[0, :known] - expected).max() <= 1e-9 * np.abs(expected).max()
    assert power.dissipated["lines"][0] > 1e-3 * power.dissipated["memristors"][0]
    assert power.delivered_w[0] == pytest.approx(power.dissipated_w[0], rel=1e-9)
    assert static_power_w(c, g, v)[0] == pytest.approx(power.delivered_w[0], rel=1e-9)


def test_tellegen_holds_with_wires_diodes_and_a_nudge():
    from eqspice.simulator.power import phase_power, static_power_w

    rng = np.random.default_rng(13)
    c = crossbar(layers=(5, 4, 3), diode_bias_v=(0.3, -0.3), wire_resistance_ohm=20.0, driver_resistance_ohm=10.0, tile_rows=4)
    g = 10 ** rng.uniform(-5, -3, c.n_edges)
    x = rng.uniform(0, 1, (4, 5)) @ c.input_gain.T
    nudge = Nudge(targets_v=rng.uniform(-0.3, 0.3, (4, len(c.output_nodes))), beta_s=1e-5)
    engine = NativeEngine()
    engine.load(c, g)
    v = engine.settle(x, nudge)
    power = phase_power(c, g, v, nudge)
    assert power.dissipated["diodes"].min() > 0 and power.dissipated["lines"].min() > 0
    assert power.delivered_w == pytest.approx(power.dissipated_w, rel=1e-9)
    assert static_power_w(c, g, v, nudge) == pytest.approx(power.delivered_w, rel=1e-9)
    ideal = crossbar(layers=(5, 4, 3), diode_bias_v=(0.3, -0.3))
    engine.load(ideal, g)
    v_ideal = engine.settle(x, nudge)
    assert np.all(phase_power(ideal, g, v_ideal, nudge).dissipated["lines"] == 0)


def test_settling_jacobian_with_wires_is_the_schur_complement_of_the_full_netlist():
    from eqspice.simulator.settling import phase_jacobian

    rng = np.random.default_rng(14)
    c = crossbar(layers=(3, 4, 2), nonlinearity="none", wire_resistance_ohm=30.0, driver_resistance_ohm=60.0, tile_rows=2)
    g = 10 ** rng.uniform(-5, -3, c.n_edges)
    names, y, sources = netlist_nodal(render_netlist(c, g, inputs_v=np.zeros(len(c.input_nodes))))
    free = [names[n.lower()] for n in c.node_names[c.free_slice]]
    fixed = {names[s.lower()] for s in sources if s.lower() in names} | ({names["0"]} if "0" in names else set())
    lines = [i for i in range(len(names)) if i not in fixed and i not in free]
    y_red = y[np.ix_(free, free)] - y[np.ix_(free, lines)] @ np.linalg.solve(y[np.ix_(lines, lines)], y[np.ix_(lines, free)])
    beta = 2e-5
    y_red[c.output_index - c.free_slice.start, c.output_index - c.free_slice.start] += beta
    jac = phase_jacobian(c, g, np.zeros((1, len(c.node_names))), Nudge(targets_v=np.zeros((1, 2)), beta_s=beta))[0]
    assert np.abs(jac - y_red).max() <= 1e-10 * np.abs(y_red).max()
