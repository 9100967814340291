"""Arrays handed back for reuse: never one that someone still refers to."""

import numpy as np

from eqspice.simulator.native import NativeEngine
from eqspice.simulator.recycled import Recycled


def test_an_array_comes_back_only_once_no_one_else_holds_it():
    pool = Recycled()
    held = np.ones(5)
    pool.give(held)
    other = pool.take(5)
    assert other is not held and np.all(held == 1)  # still held by the caller: a new array
    address = held.__array_interface__["data"][0]
    del held
    again = pool.take(5)
    assert again.__array_interface__["data"][0] == address  # let go: reused
    view_base = np.zeros(5)
    view = view_base[1:]
    pool.give(view_base)
    del view_base
    assert pool.take(5).__array_interface__["data"][0] != view.base.__array_interface__["data"][0]  # a view holds it
    assert pool.take((2, 3)).shape == (2, 3) and pool.take(5, np.int8).dtype == np.int8


def test_a_settle_never_writes_into_node_voltages_its_caller_keeps():
    from eqspice.circuits import CrossbarSpec, crossbar

    circuit = crossbar(CrossbarSpec(layers=(3, 4, 2)))
    rng = np.random.default_rng(0)
    engine = NativeEngine()
    engine.load(circuit, 10 ** rng.uniform(-7, -4, circuit.n_edges))
    x = rng.uniform(-1, 1, (6, circuit.n_features)) @ circuit.input_gain.T
    first = engine.settle(x)
    kept = first.copy()
    second = engine.settle(-x)
    assert second is not first
    np.testing.assert_array_equal(first, kept)  # the caller's array is untouched
    del first
    third = engine.settle(x)
    np.testing.assert_array_equal(third, kept)  # a reused array holds the new settle, whole
