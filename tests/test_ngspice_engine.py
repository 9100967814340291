"""The ngspice engine survives its child: death and hangs become errors naming sample and phase."""

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from eqspice.circuits import CrossbarSpec, crossbar
from eqspice.simulator.engine import FREE, ConvergenceError, EngineError, Nudge, SimulatorCrash
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.ngspice.engine import NgspiceEngine
from eqspice.simulator.ngspice.pool import ChildPool, Job, reply_error
from eqspice.simulator.ngspice.sampler import NgspiceSampler

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

NUDGED = Nudge(targets_v=np.full((4, 2), 0.1), beta_s=1e-5)


@pytest.fixture
def setup():
    circuit = crossbar(CrossbarSpec(layers=(3, 4, 2)))
    g = np.random.default_rng(0).uniform(1e-6, 1e-4, circuit.n_edges)
    inputs = np.random.default_rng(1).uniform(0, 1, (4, 3)) @ circuit.input_gain.T
    native = NativeEngine()
    native.load(circuit, g)
    return circuit, g, inputs, native.settle(inputs, NUDGED)


def test_killed_child_is_named_and_replaced(setup):
    circuit, g, inputs, expected = setup
    with NgspiceEngine() as engine:
        engine.load(circuit, g)
        os.kill(engine.child_pids[0], signal.SIGKILL)
        with pytest.raises(SimulatorCrash, match=r"killed by signal 9 during the nudged \(\+beta\) phase of sample 17"):
            engine.settle(inputs, NUDGED, phase="nudged (+beta)", sample_ids=np.arange(17, 21))
        assert engine.restarts == 1
        np.testing.assert_allclose(engine.settle(inputs, NUDGED), expected, atol=1e-9)


def test_hung_child_times_out_and_is_replaced(setup):
    circuit, g, inputs, expected = setup
    with NgspiceEngine(timeout_sec=1.0) as engine:
        engine.load(circuit, g)
        os.kill(engine.child_pids[0], signal.SIGSTOP)
        with pytest.raises(SimulatorCrash, match=r"hung for more than 1 s during the free phase of sample 0"):
            engine.settle(inputs)
        np.testing.assert_allclose(engine.settle(inputs, NUDGED), expected, atol=1e-9)


def test_parallel_children_give_the_same_voltages_as_one(setup):
    circuit, g, inputs, expected = setup
    with NgspiceEngine(workers=2) as engine:
        engine.load(circuit, g)
        assert len(set(engine.child_pids)) == 2
        np.testing.assert_allclose(engine.settle(inputs, NUDGED), expected, atol=1e-9)


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
        nudges = [Nudge(targets_v=targets, beta_s=beta) for beta in betas]
        expected = one_by_one.settle_phases(inputs, nudges)
        got = swept.settle_phases(inputs, nudges)
        for a, b in zip(got, expected):
            assert np.max(np.abs(a - b)) < 1e-9
        # the diodes conduct here, so agreement is not trivial
        assert np.max(np.abs(expected[0][:, circuit.free_slice])) < 0.35
        single = swept.settle(inputs[2:3], Nudge(targets_v=targets[2:3], beta_s=2e-5))
        assert np.max(np.abs(single - expected[1][2:3])) < 1e-9


def test_sweep_mode_names_the_samples_of_a_crashed_chunk(setup):
    circuit, g, inputs, expected = setup
    with NgspiceEngine(mode="sweep") as engine:
        engine.load(circuit, g)
        engine.settle(inputs)  # starts the child
        os.kill(engine.child_pids[0], signal.SIGKILL)
        with pytest.raises(SimulatorCrash, match=r"killed by signal 9 during the free phase of samples 40-43"):
            engine.settle(inputs, sample_ids=np.arange(40, 44))
        np.testing.assert_allclose(engine.settle(inputs, NUDGED), expected, atol=1e-9)


# -- the one request/reply path: ChildPool.run ------------------------------------------------


def test_a_child_that_dies_mid_request_is_replaced_and_the_rest_of_its_round_still_received():
    pool = ChildPool(2)
    try:
        jobs = [Job(("exit", 3), "the first job", 10.0), Job(("no such verb",), "the second job", 10.0)]
        with pytest.raises(SimulatorCrash, match=r"exited with code 3 during the first job; started a fresh one"):
            pool.run(jobs)  # the worker answers ("exit", 3) by exiting: it dies holding the request
        assert pool.restarts == 1
        # the second child's error reply was read in that round, so it is not taken for this one's
        assert pool.run([Job(("alter", {}), f"alter {k}", 10.0) for k in range(4)]) == [None] * 4
        with pytest.raises(EngineError, match=r"^ngspice failed during the second job: unknown request 'no such verb'$"):
            pool.run(jobs[1:])
    finally:
        pool.close()


def test_a_fresh_child_is_restored_and_a_failed_restore_is_named():
    restore = Job(("alter", {}), "restoring the circuit", 10.0)
    pool = ChildPool(1, restore=lambda: restore)
    try:
        with pytest.raises(SimulatorCrash, match=r"during the job; started a fresh one$"):
            pool.run([Job(("exit", 1), "the job", 10.0)])
        restore = Job(("no such verb",), "restoring the circuit", 10.0)
        with pytest.raises(SimulatorCrash, match=r"the fresh one started in its place failed during restoring the circuit"):
            pool.run([Job(("exit", 1), "the job", 10.0)])
        assert pool.restarts == 2
    finally:
        pool.close()


def test_error_replies_become_convergence_and_engine_errors():
    error = reply_error("NonConvergence: operating point did not converge", "the free phase of sample 5")
    assert type(error) is ConvergenceError
    assert str(error).startswith("ngspice did not converge in the free phase of sample 5 (tried gmin and source stepping)")
    error = reply_error("RuntimeError: no voltage for node h0", "loading the circuit")
    assert type(error) is EngineError
    assert str(error) == "ngspice failed during loading the circuit: RuntimeError: no voltage for node h0"


def test_the_noisy_sampler_survives_its_child_through_the_same_path():
    from eqspice.learning.run.config import load_config

    spec = load_config(EXAMPLES / "iris_noise.toml").noise.spec()
    circuit = crossbar(CrossbarSpec(layers=(2, 3, 1)))
    g = np.random.default_rng(0).uniform(1e-6, 1e-4, circuit.n_edges)
    inputs = np.random.default_rng(1).uniform(0, 1, (2, 2)) @ circuit.input_gain.T
    sampler = NgspiceSampler(spec, workers=1, timeout_sec=60)
    try:
        first = sampler.sample(circuit, g, inputs, FREE, np.random.default_rng(2))
        os.kill(sampler._pool.pids[0], signal.SIGKILL)
        with pytest.raises(SimulatorCrash, match=r"signal 9 during the noisy transient of row 0; started a fresh one"):
            sampler.sample(circuit, g, inputs, FREE, np.random.default_rng(2))
        again = sampler.sample(circuit, g, inputs, FREE, np.random.default_rng(2))
    finally:
        sampler.close()
    assert sampler.restarts == 1 and first.shape == again.shape == (2, spec.samples, len(circuit.node_names))
    # noisy readings about the same operating point (ngspice's trnoise is not repeatable bit for bit)
    assert np.abs(first.mean(axis=1) - again.mean(axis=1)).max() < 0.05


def test_a_note_from_ngspice_is_not_a_failed_operating_point():
    """ngspice writes notes (e.g. "Note: Starting dynamic gmin stepping") to stderr on the way to a
    converged operating point; only a failed return code or an error line sends the worker to its
    convergence aids."""
    from eqspice.simulator.ngspice.worker import CONVERGENCE_AIDS, NonConvergence, Worker

    class Shared:  # the part of PySpice's NgSpiceShared the worker's run() touches
        def __init__(self, stderr, code):
            self._stderr, self.code, self.commands = stderr, code, []

        def clear_output(self):
            pass

        def exec_command(self, command):
            self.commands.append(command)

        def ngSpice_Command(self, command):
            self.commands.append(command.decode())
            return self.code

    for stderr, code, converged in (
        (["Note: Starting dynamic gmin stepping", "Note: Dynamic gmin stepping completed"], 0, True),
        (["Error: no convergence in gmin stepping"], 0, False),
        ([], 1, False),
    ):
        worker = Worker.__new__(Worker)
        worker.ng = worker.lib = Shared(stderr, code)
        worker.read_nodes = lambda: "voltages"
        if converged:
            assert worker.operating_point() == "voltages"
            assert worker.ng.commands == ["op"]  # no convergence aid was tried
        else:
            with pytest.raises(NonConvergence):
                worker.operating_point()
            assert worker.ng.commands.count("op") == len(CONVERGENCE_AIDS)


def test_the_run_config_sets_ngspice_tolerances_and_they_bound_the_error():
    """A run's ``engine.ngspice_*`` keys reach the netlist: at ngspice's loosest reltol the diode crossbar's
    voltages are microvolts from the native engine's, at the default a fraction of a picovolt."""
    from eqspice.learning.run.build import make_engine
    from eqspice.learning.run.config import ConfigError, parse_config

    circuit = crossbar(CrossbarSpec(layers=(6, 8, 3)))
    g = np.random.default_rng(0).uniform(1e-6, 1e-4, circuit.n_edges)
    inputs = np.random.default_rng(1).uniform(-1, 1, (16, 6)) @ circuit.input_gain.T
    native = NativeEngine()
    native.load(circuit, g)
    expected = native.settle(inputs)
    base = {"network": {"layers": [6, 8, 3]}, "data": {"name": "xor"}}
    errors = {}
    for reltol in (1e-2, 1e-9):
        config = parse_config({**base, "engine": {"ngspice_reltol": reltol, "workers": 1}}, "run.toml")
        with make_engine(config) as engine:
            assert engine.options["reltol"] == reltol and engine.options["gmin"] == 1e-12
            engine.load(circuit, g)
            errors[reltol] = np.abs(engine.settle(inputs) - expected).max()
    assert errors[1e-2] > 1e-7 and errors[1e-9] < 1e-10
    with pytest.raises(ConfigError, match=r"^run.toml: engine.ngspice_vntol_v: must be greater than 0 \(got -1"):
        parse_config({**base, "engine": {"ngspice_vntol_v": -1e-9}}, "run.toml")
