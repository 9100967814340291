"""The ngspice engine survives its child: death and hangs become errors naming sample and phase."""

import os
import signal

import numpy as np
import pytest

from eqspice.circuits import CrossbarSpec, crossbar
from eqspice.simulator.engine import SimulatorCrash
from eqspice.simulator.ngspice.engine import NgspiceEngine
from eqspice.simulator.native import NativeEngine


@pytest.fixture
def setup():
    circuit = crossbar(CrossbarSpec(layers=(3, 4, 2)))
    g = np.random.default_rng(0).uniform(1e-6, 1e-4, circuit.n_edges)
    inputs = np.random.default_rng(1).uniform(0, 1, (4, 3)) @ circuit.input_gain.T
    native = NativeEngine()
    native.load(circuit, g)
    return circuit, g, inputs, native.settle(inputs, np.full((4, 2), 0.1), 1e-5)


def test_killed_child_is_named_and_replaced(setup):
    circuit, g, inputs, expected = setup
    with NgspiceEngine() as engine:
        engine.load(circuit, g)
        os.kill(engine.child_pids[0], signal.SIGKILL)
        with pytest.raises(SimulatorCrash, match=r"killed by signal 9 during the nudged \(\+beta\) phase of sample 17"):
            engine.settle(inputs, np.full((4, 2), 0.1), 1e-5, phase="nudged (+beta)", sample_ids=np.arange(17, 21))
        assert engine.restarts == 1
        np.testing.assert_allclose(engine.settle(inputs, np.full((4, 2), 0.1), 1e-5), expected, atol=1e-9)


def test_hung_child_times_out_and_is_replaced(setup):
    circuit, g, inputs, expected = setup
    with NgspiceEngine(timeout_sec=1.0) as engine:
        engine.load(circuit, g)
        os.kill(engine.child_pids[0], signal.SIGSTOP)
        with pytest.raises(SimulatorCrash, match=r"hung for more than 1 s during the free phase of sample 0"):
            engine.settle(inputs)
        np.testing.assert_allclose(engine.settle(inputs, np.full((4, 2), 0.1), 1e-5), expected, atol=1e-9)


def test_parallel_children_give_the_same_voltages_as_one(setup):
    circuit, g, inputs, expected = setup
    with NgspiceEngine(workers=2) as engine:
        engine.load(circuit, g)
        assert len(set(engine.child_pids)) == 2
        np.testing.assert_allclose(engine.settle(inputs, np.full((4, 2), 0.1), 1e-5), expected, atol=1e-9)


def test_sweep_mode_gives_the_one_sample_at_a_time_voltages():
    circuit = crossbar(CrossbarSpec(layers=(5, 6, 3), diode_bias_v=(0.4, -0.4), input_scale_v=1.5))
    rng = np.random.default_rng(5)
    g = rng.uniform(1e-6, 1e-4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (7, 5)) @ circuit.input_gain.T
    targets = rng.uniform(-0.2, 0.2, (7, 3))
    betas = [0.0, 2e-5, -2e-5]
    with NgspiceEngine(mode="op") as one_by_one, NgspiceEngine(mode="sweep", workers=2, chunk=4) as swept:
        one_by_one.load(circuit, g)
        swept.load(circuit, g)
        expected = one_by_one.settle_phases(inputs, targets, betas)
        got = swept.settle_phases(inputs, targets, betas)
        for a, b in zip(got, expected):
            assert np.max(np.abs(a - b)) < 1e-9
        # the diodes conduct here, so agreement is not trivial
        assert np.max(np.abs(expected[0][:, circuit.free_slice])) < 0.35
        single = swept.settle(inputs[2:3], targets[2:3], 2e-5)
        assert np.max(np.abs(single - expected[1][2:3])) < 1e-9


def test_sweep_mode_names_the_samples_of_a_crashed_chunk(setup):
    circuit, g, inputs, expected = setup
    with NgspiceEngine(mode="sweep") as engine:
        engine.load(circuit, g)
        engine.settle(inputs)  # starts the child
        os.kill(engine.child_pids[0], signal.SIGKILL)
        with pytest.raises(SimulatorCrash, match=r"killed by signal 9 during the free phase of samples 40-43"):
            engine.settle(inputs, sample_ids=np.arange(40, 44))
        np.testing.assert_allclose(engine.settle(inputs, np.full((4, 2), 0.1), 1e-5), expected, atol=1e-9)
