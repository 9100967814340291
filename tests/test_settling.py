"""Settling time of a phase: RC closed forms, a dense matrix exponential, ngspice transients, the switching energy."""

import shutil

import networkx as nx
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

from eqspice.circuits import CrossbarSpec, DiodeModel, circuit_from_graph, crossbar, with_nonreciprocal
from eqspice.simulator.engine import FREE, Nudge
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.power import phase_power
from eqspice.simulator.settling import (
    band_exit_time,
    ngspice_settling_time,
    phase_jacobian,
    settling_time,
    switching_energy_j,
)

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")


def single_rc():
    return circuit_from_graph(nx.Graph([("in", "n")]), inputs=["in"], outputs=["n"])


def ladder():
    """in -G1- n1 -G2- n2, a capacitor at n1 and at n2."""
    return circuit_from_graph(nx.Graph([("in", "n1"), ("n1", "n2")]), inputs=["in"], outputs=["n2"])


@pytest.mark.parametrize("tol", [0.5, 0.1, 0.01, 1e-4])
@pytest.mark.parametrize("g, c", [(1e-4, 1e-12), (3.7e-6, 2.2e-15), (2e-3, 5e-9)])
def test_single_rc_node_settles_in_tau_ln_one_over_tol(g, c, tol):
    rc = single_rc()
    v_start = np.array([[1.0, -0.3], [-2.0, 0.7]])  # the input has switched; the node starts elsewhere
    v_end = np.array([[1.0, 1.0], [-2.0, -2.0]])
    t = settling_time(rc, np.array([g]), v_start, v_end, c, tolerance=tol)
    expected = c / g * np.log(1.0 / tol)
    np.testing.assert_allclose(t, expected, rtol=1e-9, atol=0)


def ladder_expm(g1, g2, c, x0):
    """``x(t) = expm(-C^-1 J t) x0`` of the ladder, from the element values alone."""
    jac = np.array([[g1 + g2, -g2], [-g2, g2]])
    a = jac / np.asarray(c)[:, None]
    return lambda t: scipy.linalg.expm(-a * t) @ x0


@pytest.mark.parametrize(
    "x0",
    [
        np.array([0.4, 0.4]),  # both nodes step together
        np.array([1.0, 0.0]),  # n2 starts at its final value, rises out of the band and comes back
        np.array([-0.2, 0.5]),
    ],
)
def test_two_node_ladder_against_a_dense_matrix_exponential(x0):
    g1, g2, c = 3e-5, 1e-5, np.array([1e-12, 4e-12])
    tol = 0.01
    circuit = ladder()
    v_end = np.array([[0.8, 0.8, 0.8]])
    v_start = v_end.copy()
    v_start[0, 1:] += x0
    t_s = settling_time(circuit, np.array([g1, g2]), v_start, v_end, c, tolerance=tol)[0]
    x = ladder_expm(g1, g2, c, x0)
    band = tol * np.abs(x0).max()
    # exactly on the band edge at t_s, outside just before, inside on a dense grid after
    assert np.abs(x(t_s)).max() == pytest.approx(band, rel=1e-9)
    assert np.abs(x(t_s * (1 - 1e-6))).max() > band
    after = np.linspace(t_s, 20 * t_s, 4000)[1:]
    assert max(np.abs(x(t)).max() for t in after) <= band
    # the last exit on a dense grid of the matrix exponential, to the grid's resolution
    grid = np.linspace(0.0, 3 * t_s, 30001)
    states = np.array([x(t) for t in grid])
    assert band_exit_time(grid, states, band) == pytest.approx(t_s, rel=1e-6)


def test_ladder_that_leaves_the_band_again_is_not_settled_at_the_first_entry():
    # n2 sits at its final value at t = 0, so it is "in the band" at first and leaves it
    g1, g2, c = 3e-5, 1e-5, np.array([1e-12, 4e-12])
    circuit = ladder()
    v_end = np.zeros((1, 3))
    v_start = np.array([[0.0, 1.0, 0.0]])
    t_s = settling_time(circuit, np.array([g1, g2]), v_start, v_end, c, tolerance=0.01)[0]
    x = ladder_expm(g1, g2, c, np.array([1.0, 0.0]))
    first_n1 = 1e-12 / (g1 + g2) * np.log(100)  # n1 alone would be settled long before
    assert t_s > 3 * first_n1
    assert abs(x(t_s)[1]) == pytest.approx(0.01, rel=1e-9)  # n2 is the node that settles last


def test_no_step_settles_at_once_and_an_unstable_phase_never():
    circuit = ladder()
    v = np.array([[0.3, 0.2, 0.1]])
    assert settling_time(circuit, np.array([1e-5, 1e-5]), v, v, 1e-12)[0] == 0.0
    # a -beta nudge stronger than the output's conductances: a growing mode
    unstable = Nudge(targets_v=[0.0], beta_s=-1e-4)
    v_start = v + [[0.0, 0.01, 0.01]]
    assert settling_time(circuit, np.array([1e-5, 1e-5]), v_start, v, 1e-12, nudge=unstable)[0] == np.inf


def test_nudge_conductance_speeds_up_the_outputs():
    circuit = single_rc()
    plus = Nudge(targets_v=[0.0], beta_s=3e-4)
    t = settling_time(circuit, np.array([1e-4]), [[0.0, 1.0]], [[0.0, 0.0]], 1e-12, tolerance=0.05, nudge=plus)
    np.testing.assert_allclose(t, 1e-12 / 4e-4 * np.log(20), rtol=1e-9)


def linear_crossbar(seed):
    rng = np.random.default_rng(seed)
    circuit = crossbar(CrossbarSpec(layers=(3, 4, 2), nonlinearity="none", output_load_s=2e-6))
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (3, circuit.n_features)) @ circuit.input_gain.T
    caps = rng.uniform(0.5, 2.0, len(circuit.free_nodes)) * 1e-12
    return circuit, g, inputs, caps, rng


def diode_crossbar(seed):
    rng = np.random.default_rng(seed)
    circuit = crossbar(
        CrossbarSpec(layers=(3, 5, 2), diode_bias_v=(0.35, -0.35), input_scale_v=1.5, diode_model=DiodeModel(n=1.2))
    )
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (4, circuit.n_features)) @ circuit.input_gain.T
    return circuit, g, inputs, rng


@needs_ngspice
def test_ngspice_transient_matches_native_on_a_linear_crossbar():
    circuit, g, inputs, caps, rng = linear_crossbar(0)
    engine = NativeEngine()
    engine.load(circuit, g)
    free = engine.settle(inputs)
    previous = np.roll(free, 1, axis=0)  # free phase: from the previous sample's free state
    native = settling_time(circuit, g, previous, free, caps)
    spice = ngspice_settling_time(circuit, g, previous, free, caps)
    np.testing.assert_allclose(spice, native, rtol=1e-5)
    nudge = Nudge(targets_v=rng.uniform(-0.3, 0.3, (3, 2)), beta_s=5e-5)
    nudged = engine.settle(inputs, nudge)
    native = settling_time(circuit, g, free, nudged, caps, tolerance=0.02, nudge=nudge)
    spice = ngspice_settling_time(circuit, g, free, nudged, caps, tolerance=0.02, nudge=nudge)
    np.testing.assert_allclose(spice, native, rtol=1e-5)


@needs_ngspice
def test_ngspice_transient_matches_native_on_a_non_reciprocal_crossbar():
    circuit, g, inputs, caps, rng = linear_crossbar(3)
    circuit = with_nonreciprocal(circuit, 0.3 * rng.normal(size=circuit.n_edges))
    engine = NativeEngine()
    engine.load(circuit, g)
    free = engine.settle(inputs)
    previous = np.roll(free, 1, axis=0)
    native = settling_time(circuit, g, previous, free, caps)
    spice = ngspice_settling_time(circuit, g, previous, free, caps)
    np.testing.assert_allclose(spice, native, rtol=1e-5)


@needs_ngspice
def test_ngspice_transient_matches_native_on_a_diode_crossbar():
    circuit, g, inputs, rng = diode_crossbar(1)
    engine = NativeEngine()
    engine.load(circuit, g)
    free = engine.settle(inputs)
    nudge = Nudge(targets_v=rng.uniform(-0.3, 0.3, (4, 2)), beta_s=1e-5)
    nudged = engine.settle(inputs, nudge)
    # the diodes conduct: their small-signal conductances are a real part of J
    linear = phase_jacobian(crossbar(CrossbarSpec(layers=(3, 5, 2), nonlinearity="none")), g, nudged, nudge)
    with_diodes = phase_jacobian(circuit, g, nudged, nudge)
    assert np.abs(with_diodes - linear).max() > 0.1 * np.abs(linear).max()
    # a nudged phase from the free state: steps of a few mV to tens of mV
    native = settling_time(circuit, g, free, nudged, 1e-12, nudge=nudge)
    spice = ngspice_settling_time(circuit, g, free, nudged, 1e-12, nudge=nudge)
    np.testing.assert_allclose(spice, native, rtol=0.05)
    # a free phase from the previous sample: steps of about 0.2 V through the diodes' knees
    previous = np.roll(free, 1, axis=0)
    native = settling_time(circuit, g, previous, free, 1e-12)
    spice = ngspice_settling_time(circuit, g, previous, free, 1e-12)
    np.testing.assert_allclose(spice, native, rtol=0.05)


def test_switching_energy_is_the_extra_energy_the_sources_deliver():
    """Integrate the sources' power over the linear transient (phase_power at x(t)) minus the static power."""
    circuit, g, inputs, caps, rng = linear_crossbar(2)
    engine = NativeEngine()
    engine.load(circuit, g)
    for nudge, start_of in ((FREE, lambda v: np.roll(v, 1, axis=0)), (Nudge(targets_v=[0.2, -0.1], beta_s=4e-5), None)):
        free = engine.settle(inputs)
        v_end = engine.settle(inputs, nudge)
        v_start = start_of(free) if start_of else free
        jac = phase_jacobian(circuit, g, v_end, nudge)
        s = circuit.free_slice
        energy = switching_energy_j(circuit, caps, v_start, v_end)
        static = phase_power(circuit, g, v_end, nudge).delivered_w
        for b in range(len(v_end)):
            a = jac[b] / caps[:, None]
            slowest = 1.0 / np.linalg.eigvals(a).real.min()
            times = np.linspace(0.0, 40 * slowest, 40001)
            x0 = v_start[b, s] - v_end[b, s]
            step = scipy.linalg.expm(-a * (times[1] - times[0]))
            states = np.empty((len(times), len(x0)))
            states[0] = x0
            for k in range(1, len(times)):
                states[k] = step @ states[k - 1]
            v_t = np.repeat(v_end[b : b + 1], len(times), axis=0)
            v_t[:, s] += states
            extra = phase_power(circuit, g, v_t, nudge).delivered_w - static[b]
            integral = scipy.integrate.trapezoid(extra, times)
            assert integral == pytest.approx(energy[b], rel=2e-4)
            stored = 0.5 * (caps * (v_end[b, s] ** 2 - v_start[b, s] ** 2)).sum()
            dissipated = 0.5 * (caps * x0**2).sum()
            assert energy[b] == pytest.approx(stored + dissipated, rel=1e-12)


def test_switching_energy_of_charging_one_capacitor():
    rc = single_rc()
    e = switching_energy_j(rc, 3e-12, [[1.5, 0.0], [0.0, 1.5]], [[1.5, 1.5], [0.0, 0.0]])
    np.testing.assert_allclose(e, [3e-12 * 1.5**2, 0.0])


BAD = [
    ({"capacitance_f": 0.0}, "capacitance_f"),
    ({"capacitance_f": -1e-12}, "capacitance_f"),
    ({"capacitance_f": float("nan")}, "capacitance_f"),
    ({"capacitance_f": float("inf")}, "capacitance_f"),
    ({"capacitance_f": np.array([1e-12, 1e-12, 1e-12])}, "capacitance_f"),
    ({"capacitance_f": "big"}, "capacitance_f"),
    ({"tolerance": 0.0}, "tolerance"),
    ({"tolerance": 1.0}, "tolerance"),
    ({"tolerance": -0.1}, "tolerance"),
    ({"tolerance": float("nan")}, "tolerance"),
    ({"tolerance": "small"}, "tolerance"),
    ({"v_start": np.zeros((1, 2))}, "v_start"),
    ({"v_end": np.full((1, 3), np.nan)}, "v_end"),
]


@pytest.mark.parametrize("bad, name", BAD)
def test_bad_inputs_give_one_line_errors_naming_the_parameter(bad, name):
    args = {"v_start": np.zeros((1, 3)), "v_end": np.ones((1, 3)), "capacitance_f": 1e-12, "tolerance": 0.01} | bad
    for measure in (settling_time, ngspice_settling_time):
        with pytest.raises(ValueError, match=name) as info:
            measure(ladder(), np.array([1e-5, 1e-5]), **args)
        assert "\n" not in str(info.value)
    if "capacitance_f" in bad:
        with pytest.raises(ValueError, match="capacitance_f"):
            switching_energy_j(ladder(), bad["capacitance_f"], args["v_start"], args["v_end"])


def test_exported_at_the_root():
    import eqspice

    assert eqspice.settling_time is settling_time
    assert eqspice.switching_energy_j is switching_energy_j
    assert eqspice.ngspice_settling_time is ngspice_settling_time
