"""The Nudge value object: its checks, and what each field does to the settled voltages on every engine."""

import dataclasses

import numpy as np
import pytest
from nodal import conductance_matrix

from eqspice.circuits import CrossbarSpec, crossbar
from eqspice.circuits.network import with_nonreciprocal
from eqspice.simulator.engine import FREE, Nudge
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.ngspice.engine import NgspiceEngine
from eqspice.simulator.sampling.co_content import SamplingError, sampled_phase


def one_line_error(kind, call, *words):
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"beta_s": float("nan")}, ["Nudge.beta_s", "finite", "siemens"]),
        ({"beta_s": "strong"}, ["Nudge.beta_s", "siemens"]),
        ({"antisymmetric_sign": 0.5}, ["Nudge.antisymmetric_sign", "+1 or -1"]),
        ({"antisymmetric_sign": 0}, ["Nudge.antisymmetric_sign", "+1 or -1"]),
        ({"targets_v": np.zeros((2, 2, 2))}, ["Nudge.targets_v", "3 dimensions", "volts"]),
        ({"targets_v": [[0.1, np.nan]]}, ["Nudge.targets_v", "NaN", "volts"]),
        ({"targets_v": "high"}, ["Nudge.targets_v", "numbers"]),
        ({"injected_a": [[np.inf]]}, ["Nudge.injected_a", "infinity", "amperes"]),
    ],
)
def test_a_bad_field_is_a_one_line_error_naming_it(fields, words):
    one_line_error(ValueError, lambda: Nudge(**fields), *words)


def test_fields_are_keywords_and_the_nudge_is_frozen_with_its_own_read_only_arrays():
    targets = np.array([[0.05, -0.05]])
    with pytest.raises(TypeError):
        Nudge(targets, 1e-5)  # which is which: keywords only
    nudge = Nudge(targets_v=targets, beta_s=1e-5)
    targets[0, 0] = 9.0  # the caller's array is not the nudge's
    assert nudge.targets_v[0, 0] == 0.05
    with pytest.raises(ValueError):
        nudge.targets_v[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        nudge.beta_s = 2e-5
    assert isinstance(nudge.beta_s, float) and nudge.antisymmetric_sign == 1.0
    assert "[1, 2]" in repr(nudge)  # arrays shown by their shapes


def test_opposite_is_the_minus_beta_phase_of_the_same_nudge():
    injected = np.full((1, 3), 1e-7)
    plus = Nudge(targets_v=[0.1, -0.1], beta_s=2e-5, injected_a=injected, antisymmetric_sign=-1)
    minus = plus.opposite()
    assert minus.beta_s == -2e-5 and minus.antisymmetric_sign == -1.0
    assert minus.targets_v is plus.targets_v and minus.injected_a is plus.injected_a  # nothing copied again
    assert (FREE.phase, plus.phase, minus.phase) == ("free", "nudged (+beta)", "nudged (-beta)")
    assert FREE.targets_v is None and FREE.injected_a is None and FREE.beta_s == 0.0


@pytest.fixture(scope="module")
def network():
    """A linear, non-reciprocal crossbar with an output load, a batch of inputs, targets and currents."""
    rng = np.random.default_rng(11)
    base = crossbar(CrossbarSpec(layers=(3, 4, 2), nonlinearity="none", output_load_s=2e-6))
    circuit = with_nonreciprocal(base, rng.normal(0, 0.2, base.n_edges))
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (3, 3)) @ circuit.input_gain.T
    targets = rng.uniform(-0.3, 0.3, (3, len(circuit.output_nodes)))
    injected = rng.normal(0, 1e-6, (3, len(circuit.free_nodes)))
    return circuit, g, inputs, targets, injected


def dense_kirchhoff(circuit, g, inputs, targets_v=None, beta_s=0.0, injected_a=None, antisymmetric_sign=1.0):
    """Node voltages ``v[batch, node]`` from the full nodal matrix, the nudge's quantities given one by one.

    The symmetric part is the Laplacian of tests/nodal.py; the antisymmetric
    pair of edge (p, q) adds ``+a v_q`` into p and ``-a v_p`` into q (``a = delta G``,
    times the sign between two free nodes); each output has its load and the
    conductance ``beta`` to its target; ``injected_a`` flows into the free nodes.
    """
    names = circuit.node_names
    y = conductance_matrix(circuit, g)
    start = circuit.free_slice.start
    for (p, q), ge, delta in zip(circuit.edges, g, circuit.nonreciprocal):
        a = delta * ge * (antisymmetric_sign if min(p, q) >= start else 1.0)
        y[p, q] -= a
        y[q, p] += a
    current = np.zeros((len(inputs), len(names)))
    for k, out in enumerate(circuit.output_nodes):
        o = names.index(out)
        y[o, o] += circuit.output_load_s + beta_s
        if targets_v is not None:
            current[:, o] += beta_s * np.broadcast_to(targets_v, (len(inputs), len(circuit.output_nodes)))[:, k]
    if injected_a is not None:
        current[:, circuit.free_slice] += injected_a
    known = np.hstack([inputs, np.tile(circuit.fixed_volts, (len(inputs), 1))])
    free = np.arange(start, len(names))
    rhs = current[:, free] - known @ y[np.ix_(free, np.arange(start))].T
    return np.hstack([known, np.linalg.solve(y[np.ix_(free, free)], rhs.T).T])


@pytest.mark.parametrize("backend", ["native", "ngspice op", "ngspice sweep"])
def test_every_field_of_a_nudge_settles_as_kirchhoff_says_on_every_engine(network, backend):
    circuit, g, inputs, targets, injected = network
    cases = {
        "free": ({}, FREE),
        "+beta": ({"targets_v": targets, "beta_s": 3e-5}, Nudge(targets_v=targets, beta_s=3e-5)),
        "-beta, one target row for the batch": (
            {"targets_v": targets[0], "beta_s": -2e-6},
            Nudge(targets_v=targets[0], beta_s=2e-6).opposite(),
        ),
        "learning circuit": (
            {"targets_v": targets, "beta_s": 1e-5, "injected_a": injected, "antisymmetric_sign": -1.0},
            Nudge(targets_v=targets, beta_s=1e-5, injected_a=injected, antisymmetric_sign=-1),
        ),
        "currents only": ({"injected_a": injected}, Nudge(injected_a=injected)),
    }
    engine = NativeEngine() if backend == "native" else NgspiceEngine(timeout_sec=20, mode=backend.split()[1], chunk=2)
    try:
        engine.load(circuit, g)
        expected = {name: dense_kirchhoff(circuit, g, inputs, **fields) for name, (fields, _) in cases.items()}
        for name, (_, nudge) in cases.items():
            assert np.abs(engine.settle(inputs, nudge) - expected[name]).max() < 1e-9, name
        # all in one call, both signs mixed (the sweep renders each sign's netlist apart)
        together = engine.settle_phases(inputs, [nudge for _, nudge in cases.values()])
        for name, v in zip(cases, together):
            assert np.abs(v - expected[name]).max() < 1e-9, name
    finally:
        engine.close()
    assert np.abs(expected["learning circuit"] - expected["+beta"]).max() > 1e-3  # the fields matter


def test_arguments_that_do_not_fit_the_circuit_are_one_line_errors(network):
    circuit, g, inputs, targets, injected = network
    engine = NativeEngine()
    engine.load(circuit, g)
    one_line_error(ValueError, lambda: engine.settle(inputs, Nudge(targets_v=np.zeros((3, 5)), beta_s=1e-5)),
                   "Nudge.targets_v", "[3, 5]", "2 outputs")  # fmt: skip
    one_line_error(ValueError, lambda: engine.settle(inputs, Nudge(injected_a=injected[:, :2])), "Nudge.injected_a", "free nodes")
    one_line_error(ValueError, lambda: engine.settle(inputs[:, :2]), "inputs_v", "[3, 2]")
    one_line_error(ValueError, lambda: engine.settle(inputs, sample_ids=[1, 2]), "sample_ids")
    one_line_error(TypeError, lambda: engine.settle(inputs, targets), "give a Nudge")  # the old (targets, beta) call
    one_line_error(ValueError, lambda: engine.settle_phases(inputs, [FREE, FREE], phases=["free"]), "1 names for 2 nudges")


def test_the_samplers_refuse_what_their_noisy_circuits_do_not_model(network):
    circuit, g, inputs, targets, injected = network
    # sampled_phase is the check both samplers (native and ngspice) make first
    one_line_error(SamplingError, lambda: sampled_phase(circuit, inputs, Nudge(injected_a=injected)), "injected_a")
    one_line_error(SamplingError, lambda: sampled_phase(circuit, inputs, Nudge(antisymmetric_sign=-1)), "antisymmetric_sign")
    phase = sampled_phase(circuit, inputs, Nudge(targets_v=targets, beta_s=1e-5))
    assert phase.name == "nudged (+beta)" and phase.targets_v.shape == targets.shape
