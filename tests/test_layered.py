"""The native engine's layer sweeps (block Gauss-Seidel) against its Newton solver and by hand."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from eqspice.circuits import CrossbarSpec, DiodeModel, crossbar
from eqspice.circuits.mismatch import with_mismatch
from eqspice.circuits.network import with_nonreciprocal
from eqspice.simulator.diode import diode_current
from eqspice.simulator.engine import ConvergenceError, Nudge
from eqspice.simulator.layered import layered_structure
from eqspice.simulator.native import NativeEngine


@st.composite
def layered_circuits(draw, amplified=True):
    layers = tuple(draw(st.lists(st.integers(1, 7), min_size=2, max_size=5)))
    n_hidden = len(layers) - 2
    gain = draw(st.sampled_from([None, 1.0, 4.0, 30.0])) if n_hidden and amplified else None
    spec = CrossbarSpec(
        layers=layers,
        differential_inputs=draw(st.booleans()),
        differential_outputs=draw(st.booleans()),
        input_scale_v=draw(st.floats(0.2, 10.0)),
        bias_v=draw(st.sampled_from([0.0, 1.0])),
        nonlinearity=draw(st.sampled_from(["diode_pair", "diode", "none"])),
        diode_bias_v=(draw(st.floats(-0.5, 0.5)), draw(st.floats(-0.5, 0.5))),
        diode_model=DiodeModel(is_a=10 ** draw(st.floats(-16, -9)), n=draw(st.floats(1.0, 2.0))),
        output_load_s=draw(st.sampled_from([0.0, 1e-6])),
        amplifier_gain=gain,
    )
    return crossbar(spec), draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([0.0, 1e-6, 1e-4, -1e-7]))


@settings(max_examples=60, deadline=None)
@given(layered_circuits())
def test_sweeps_settle_to_newtons_voltages(case):
    """Two solvers of the same equations: sweeps over layers and Newton on all free nodes."""
    circuit, seed, beta = case
    rng = np.random.default_rng(seed)
    g = 10 ** rng.uniform(-7, -4, circuit.n_edges)
    inputs = rng.uniform(-1, 1, (4, circuit.n_features)) @ circuit.input_gain.T
    nudge = Nudge(targets_v=rng.uniform(-0.5, 0.5, (4, len(circuit.output_nodes))), beta_s=beta)
    sweeps, newton = NativeEngine(), NativeEngine(layered=False)
    sweeps.load(circuit, g)
    newton.load(circuit, g)
    assert sweeps.layered_reason is None and newton.layered_reason is not None
    try:
        reference = newton.settle(inputs), newton.settle(inputs, nudge)
    except ConvergenceError:  # amplified deep circuits at hundreds of volts: no reference to compare with
        assume(False)
    free = sweeps.settle(inputs)
    np.testing.assert_allclose(free, reference[0], rtol=1e-11, atol=1e-12)
    # warm-started from the free state, as the nudged phases of EP are
    np.testing.assert_allclose(sweeps.settle(inputs, nudge, initial_v=free), reference[1], rtol=1e-11, atol=1e-12)


def test_one_hidden_node_solves_its_kirchhoff_equation_by_hand():
    """A 1-1-1 crossbar without bias: KCL at the hidden and output node, written out."""
    model = DiodeModel(is_a=1e-12, n=1.0)
    circuit = crossbar(CrossbarSpec(layers=(1, 1, 1), differential_inputs=False, differential_outputs=False,
                                    bias_v=0.0, nonlinearity="diode", diode_bias_v=(0.0, 0.2), diode_model=model))  # fmt: skip
    g_in, g_out = 2e-5, 5e-6
    engine = NativeEngine()
    engine.load(circuit, np.array([g_in, g_out]))
    assert engine.layered_reason is None
    v = engine.settle(np.array([[3.0]]))[0]
    k = circuit.free_slice.start
    h, o = v[k], v[k + 1]
    i_d, _ = diode_current(np.array([h - 0.2]), model, engine.gmin_s)
    assert abs(g_in * (h - 3.0) + g_out * (h - o) + i_d[0]) < 1e-18  # amperes leaving the hidden node
    assert abs(o - h) < 1e-15  # the output's only conductance is to the hidden node: no current, same voltage


def test_the_sweep_state_leaves_no_trace_of_an_earlier_batch():
    """Bit for bit: a batch settles to the same voltages whatever was settled before it."""
    circuit = crossbar(CrossbarSpec(layers=(5, 8, 3), nonlinearity="diode_pair", diode_bias_v=(0.3, -0.3)))
    rng = np.random.default_rng(2)
    g = 10 ** rng.uniform(-7, -4, circuit.n_edges)
    x = rng.uniform(0, 1, (6, circuit.n_features)) @ circuit.input_gain.T
    a, b = NativeEngine(), NativeEngine()
    a.load(circuit, g)
    b.load(circuit, g)
    b.settle(x[::-1])
    b.settle(np.tile(x, (2, 1)))
    np.testing.assert_array_equal(a.settle(x), b.settle(x))


def test_circuits_the_sweeps_cannot_settle_go_to_newton_and_say_why():
    spec = CrossbarSpec(layers=(3, 4, 2))
    plain = crossbar(spec)
    assert isinstance(layered_structure(plain), list)
    rails = crossbar(CrossbarSpec(layers=(3, 4, 2), amplifier_gain=2.0, amplifier_rails_v=(-1.0, 1.0)))
    assert "saturating" in layered_structure(rails)
    spread = with_mismatch(crossbar(CrossbarSpec(layers=(3, 4, 2), amplifier_gain=2.0)), amplifier_gain_scale=np.linspace(0.9, 1.1, 4))
    assert "differ from node to node" in layered_structure(spread)
    engine = NativeEngine()
    engine.load(spread, np.full(spread.n_edges, 1e-5))
    assert "differ from node to node" in engine.layered_reason


@settings(max_examples=40, deadline=None)
@given(layered_circuits(amplified=False), st.sampled_from([0.05, 0.3]), st.sampled_from([1.0, -1.0]))
def test_non_reciprocal_couplings_sweep_to_newtons_voltages(case, sigma, sign):
    """K_pq = G + a, K_qp = G - a: the same sweeps with G - a into columns and G + a into rows."""
    reciprocal, seed, beta = case
    rng = np.random.default_rng(seed)
    circuit = with_nonreciprocal(reciprocal, sigma * rng.standard_normal(reciprocal.n_edges))
    g = 10 ** rng.uniform(-7, -4, circuit.n_edges)
    inputs = rng.uniform(-1, 1, (4, circuit.n_features)) @ circuit.input_gain.T
    nudge = Nudge(targets_v=rng.uniform(-0.5, 0.5, (4, len(circuit.output_nodes))), beta_s=beta, antisymmetric_sign=sign)
    sweeps, newton = NativeEngine(), NativeEngine(layered=False)
    sweeps.load(circuit, g)
    newton.load(circuit, g)
    assert sweeps.layered_reason is None
    try:
        reference = newton.settle(inputs, nudge)
    except ConvergenceError:
        assume(False)
    np.testing.assert_allclose(sweeps.settle(inputs, nudge), reference, rtol=1e-11, atol=1e-12)
    # Settled by the sweeps themselves, not the fallback to Newton, wherever the reciprocal
    # circuit's sweeps settle in half the sweeps allowed: a nearly floating cluster (tiny
    # couplings to anything fixed) needs thousands of Gauss-Seidel sweeps with or without
    # the mismatch (about 5% of these draws), and the mismatch changes the count by up to
    # 1.6x (1500 draws).
    plain = NativeEngine()
    plain.load(reciprocal, g)
    plain.settle(inputs, Nudge(targets_v=nudge.targets_v, beta_s=beta))
    easy = plain._layered.settled and plain._layered.sweeps <= plain._layered.max_sweeps // 2
    assert sweeps._layered.settled or not easy


@pytest.mark.parametrize("width", [1, 2])
def test_a_conductance_update_moves_the_sweeps_like_a_fresh_engine(width):
    """After set_conductances the sweeps see the new devices (views of the engine's own copy)."""
    nonlinearity = "diode" if width == 1 else "diode_pair"
    circuit = crossbar(CrossbarSpec(layers=(4, 6, 2), nonlinearity=nonlinearity))
    rng = np.random.default_rng(width)
    g1, g2 = (10 ** rng.uniform(-7, -4, circuit.n_edges) for _ in range(2))
    x = rng.uniform(0, 1, (3, circuit.n_features)) @ circuit.input_gain.T
    engine, fresh = NativeEngine(), NativeEngine()
    engine.load(circuit, g1)
    engine.settle(x)
    engine.set_conductances(g2)
    g2[:] = 1e-7  # the caller's array changes afterwards: the engine keeps its own copy
    fresh.load(circuit, 10 ** np.random.default_rng(width).uniform(-7, -4, (2, circuit.n_edges))[1])
    np.testing.assert_array_equal(engine.settle(x), fresh.settle(x))


@settings(max_examples=30, deadline=None)
@given(layered_circuits())
def test_the_layered_adjoint_solve_is_the_newton_engines(case):
    """``J^T x = r`` by linear sweeps against the Schur-complement solve of the general engine."""
    circuit, seed, _ = case
    assume(circuit.amplifiers is None)
    rng = np.random.default_rng(seed)
    g = 10 ** rng.uniform(-7, -4, circuit.n_edges)
    inputs = rng.uniform(-1, 1, (3, circuit.n_features)) @ circuit.input_gain.T
    sweeps, newton = NativeEngine(), NativeEngine(layered=False)
    sweeps.load(circuit, g)
    newton.load(circuit, g)
    v = newton.settle(inputs)
    rhs = rng.normal(size=(3, len(circuit.free_nodes))) * 1e-6
    x, reference = sweeps.solve_transposed_jacobian(v, rhs), newton.solve_transposed_jacobian(v, rhs)
    np.testing.assert_allclose(x, reference, rtol=0, atol=1e-12 * np.abs(reference).max())


def test_sweeps_that_do_not_settle_hand_over_to_newton_with_the_same_voltages():
    """A chain whose output devices outweigh the amplified layer below by 1000x: each sweep moves
    the middle node by a thousandth of its error, so 400 sweeps do not settle and the engine hands
    over to Newton (here one exact linear solve: the circuit has no diodes)."""
    circuit = crossbar(CrossbarSpec(layers=(1, 1, 1, 4), bias_v=0.0, nonlinearity="none", amplifier_gain=30.0,
                                    differential_inputs=False, differential_outputs=False))  # fmt: skip
    rng = np.random.default_rng(0)
    g = 10 ** rng.uniform(-5, -4, circuit.n_edges)
    g[:2] = 1e-7  # the input device and the one into the middle node
    x = rng.uniform(-1, 1, (4, circuit.n_features)) @ circuit.input_gain.T
    sweeps, newton = NativeEngine(), NativeEngine(layered=False)
    sweeps.load(circuit, g)
    newton.load(circuit, g)
    v = sweeps.settle(x)
    assert not sweeps._layered.settled and sweeps.iterations == sweeps._layered.max_sweeps
    reference = newton.settle(x)
    np.testing.assert_allclose(v, reference, rtol=1e-12, atol=1e-12)
    assert np.abs(reference).max() > 100  # amplified twice by 30: the slow mode is real, not a trivial circuit


def test_a_warm_start_a_fraction_of_a_nanovolt_off_still_sweeps_to_the_solution():
    """A linear chain whose sweeps contract slowly (about 180 sweeps from a cold start): one sweep
    from a start 3e-10 V off moves the nodes by less than a nanovolt, which says nothing yet about
    the error left, so the sweeps go on until two of them show how fast they converge (stopping
    there left 2.5e-10 V)."""
    circuit = crossbar(CrossbarSpec(layers=(1, 1, 1, 2), bias_v=0.0, nonlinearity="none",
                                    differential_inputs=False, differential_outputs=False))  # fmt: skip
    g = np.full(circuit.n_edges, 1e-5)
    x = np.array([[0.7]]) @ circuit.input_gain.T
    sweeps, newton = NativeEngine(), NativeEngine(layered=False)
    sweeps.load(circuit, g)
    newton.load(circuit, g)
    exact = newton.settle(x)
    start = exact.copy()
    start[:, circuit.free_slice] += 3e-10
    v = sweeps.settle(x, initial_v=start)
    assert sweeps._layered.settled and sweeps.iterations > 2
    np.testing.assert_allclose(v, exact, rtol=0, atol=1e-13)
