"""The controller: training runs, resume, crash recovery, device model."""

import numpy as np
import pytest

from eqspice.learning.run.checkpoint import RunState
from eqspice.learning.run.config import load_config
from eqspice.learning.devices.models import IdealDevice
from eqspice.learning.rules.optimizers import Adam
from eqspice.learning.run.build import open_session
from eqspice.learning.run.loop import train
from eqspice.simulator.engine import SimulatorCrash
from eqspice.simulator.native import NativeEngine

XOR = "examples/xor.toml"


def test_xor_is_learned_with_ngspice_in_the_loop(tmp_path):
    config = load_config(XOR)
    assert config.engine.backend == "ngspice"
    state = train(config, tmp_path / "run", progress=False)
    assert state.metrics[-1]["test_accuracy"] == 1.0
    assert state.metrics[-1]["test_loss"] < 0.1 * state.metrics[0]["test_loss"]
    for name in ("config.toml", "metrics.csv", "checkpoint.npz", "learning_curves.png", "conductances.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + config.training.epochs


def test_resume_gives_the_same_run_as_no_interruption(tmp_path):
    config = load_config(XOR, {"engine.backend": "native", "training.epochs": 6, "training.batch_size": 2})
    whole = train(config, tmp_path / "whole", progress=False)
    train(config, tmp_path / "split", progress=False, stop_after_epochs=2)
    assert RunState.load(tmp_path / "split").epoch == 2
    resumed = train(config, tmp_path / "split", resume=True, progress=False)
    np.testing.assert_array_equal(resumed.g_s, whole.g_s)
    np.testing.assert_array_equal(resumed.optimizer["m"], whole.optimizer["m"])
    physics = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
    assert [[m[k] for k in physics] for m in resumed.metrics] == [[m[k] for k in physics] for m in whole.metrics]


class CrashOnce(NativeEngine):
    """A native engine whose simulator 'dies' once, in the nudged phase of a chosen call."""

    def __init__(self, crash_at_call):
        super().__init__()
        self.calls = 0
        self.crash_at_call = crash_at_call

    def _settle(self, phase, initial_v):
        self.calls += 1
        if self.calls == self.crash_at_call:
            raise SimulatorCrash(f"ngspice child died during the {phase.name} phase")
        return super()._settle(phase, initial_v)


def test_a_simulator_crash_mid_batch_changes_nothing_in_the_result(tmp_path):
    config = load_config(XOR, {"engine.backend": "native", "training.epochs": 3, "device.levels": 64})
    clean = train(config, tmp_path / "clean", progress=False)
    session = open_session(config)
    session.engine = CrashOnce(crash_at_call=5)
    crashed = train(config, tmp_path / "crashed", progress=False, session=session)
    assert crashed.restarts == 1
    assert crashed.metrics[-1]["engine_restarts"] == 1
    np.testing.assert_array_equal(crashed.g_s, clean.g_s)


def test_ideal_device_clips_to_bounds_and_quantises_to_levels():
    rng = np.random.default_rng(0)
    device = IdealDevice(1e-6, 1e-4)
    g, _ = device.update(np.array([5e-5, 5e-5, 9.9e-5]), np.array([1.0, -1.0, 0.5e-6]), {}, rng)
    np.testing.assert_allclose(g, [1e-4, 1e-6, 9.95e-5])
    stepped = IdealDevice(0.0 + 1e-6, 1e-6 + 10e-6, levels=11)  # levels every 1 uS
    g, _ = stepped.update(np.full(20000, 3e-6), np.full(20000, 0.25e-6), {}, rng)
    assert set(np.round(g * 1e6, 9)) == {3.0, 4.0}
    # stochastic rounding keeps the requested change in expectation
    assert np.mean(g) == pytest.approx(3.25e-6, rel=0.02)


def test_adam_steps_are_about_the_learning_rate_whatever_the_gradient_scale():
    adam = Adam(lr=0.01)
    for scale in (1e-4, 1.0, 1e6):
        state = adam.init_state(3)
        dw = adam.step(np.array([1.0, -2.0, 0.5]) * scale, state)
        np.testing.assert_allclose(np.abs(dw), 0.01, rtol=1e-3)
        assert np.all(np.sign(dw) == [-1, 1, -1])


def test_a_nudge_below_the_readout_step_teaches_nothing_and_a_finite_one_does(tmp_path):
    overrides = {"engine.backend": "native", "training.epochs": 2, "training.readout_resolution_v": 1e-3}
    tiny = load_config(XOR, {**overrides, "training.beta_s": 1e-9})
    finite = load_config(XOR, {**overrides, "training.beta_s": 2e-5})
    start = train(tiny, tmp_path / "start", progress=False, stop_after_epochs=0)  # the seeded start
    stalled = train(tiny, tmp_path / "tiny", progress=False)
    learning = train(finite, tmp_path / "finite", progress=False)
    np.testing.assert_array_equal(stalled.g_s, start.g_s)
    assert np.abs(learning.g_s - start.g_s).max() > 1e-6


def test_learning_rate_schedules_start_at_the_rate_and_end_where_asked():
    from eqspice.learning.run.config import TrainingConfig

    cosine = TrainingConfig(epochs=4, lr_schedule="cosine", lr_final_fraction=0.05)
    scales = np.array([cosine.lr_scale(k, 10) for k in range(40)])
    assert scales[0] == 1.0 and scales[-1] == pytest.approx(0.05)
    assert np.all(np.diff(scales) < 0)
    assert scales[19] == pytest.approx(0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * 19 / 39)))
    step = TrainingConfig(epochs=4, lr_schedule="step", lr_step_epochs=[1, 3], lr_step_factor=0.5)
    assert [step.lr_scale(k, 10) for k in (0, 9, 10, 29, 30, 39)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert TrainingConfig(epochs=4).lr_scale(39, 10) == 1.0


def test_a_decaying_learning_rate_changes_the_run_and_resumes_exactly(tmp_path):
    from runs import whole_and_resumed

    base = {"engine.backend": "native", "training.epochs": 4}
    decayed = load_config("examples/xor.toml", {**base, "training.lr_schedule": "cosine"})
    whole, resumed = whole_and_resumed(decayed, tmp_path)
    np.testing.assert_array_equal(resumed.g_s, whole.g_s)
    constant = train(load_config("examples/xor.toml", base), tmp_path / "constant", progress=False)
    assert not np.allclose(constant.g_s, whole.g_s)
