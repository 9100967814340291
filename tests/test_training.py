"""The controller: training runs, resume, crash recovery, device model."""

import signal

import numpy as np
import pytest

from eqspice.learning.devices.models import IdealDevice
from eqspice.learning.rules.optimizers import Adam
from eqspice.learning.run.build import open_session
from eqspice.learning.run.checkpoint import RunState
from eqspice.learning.run.config import ConfigError, load_config
from eqspice.learning.run.loop import Interrupted, RunError, Stop, train
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


class InterruptAt(NativeEngine):
    """A native engine that raises ``stop`` in its ``at``-th ``set_conductances``: the moment a
    mini-batch has changed conductances, optimizer and device state but the loop has not yet
    counted it, the worst moment for a checkpoint."""

    def __init__(self, at, stop):
        super().__init__()
        self.calls, self.at, self.stop = 0, at, stop

    def load(self, circuit, g_s):
        super().load(circuit, g_s)
        self.calls = 0  # count the training loop's writes only

    def set_conductances(self, g_s):
        self.calls += 1
        if self.calls == self.at:
            raise self.stop
        super().set_conductances(g_s)


def _in_compiled_code(signum):
    """How a signal's exception reaches Python when it strikes inside a compiled (numba) kernel."""
    wrapped = SystemError("CPUDispatcher(<function _adam_written>) returned a result with an exception set")
    wrapped.__cause__ = SystemError("<function _numba_unpickle> returned a result with an exception set")
    wrapped.__cause__.__cause__ = Stop(signum)
    return wrapped


@pytest.mark.parametrize(
    "stop, signum",
    [(KeyboardInterrupt(), signal.SIGINT), (Stop(signal.SIGTERM), signal.SIGTERM), (_in_compiled_code(signal.SIGTERM), signal.SIGTERM)],
    ids=["ctrl-c", "sigterm", "sigterm inside a compiled kernel"],
)
def test_an_interruption_mid_update_saves_the_last_whole_batch_and_resumes_exactly(tmp_path, stop, signum):
    config = load_config(XOR, {"engine.backend": "native", "training.epochs": 3, "training.batch_size": 1})
    whole = train(config, tmp_path / "whole", progress=False)
    session = open_session(config)
    session.engine = InterruptAt(at=6, stop=stop)  # the 2nd of epoch 2's 4 mini-batches
    with pytest.raises(Interrupted) as caught:
        train(config, tmp_path / "split", progress=False, session=session)
    assert caught.value.signum == signum
    assert f"--resume {tmp_path / 'split'}" in str(caught.value)
    saved = RunState.load(tmp_path / "split")
    assert (saved.epoch, saved.batch_index) == (1, 1)
    resumed = train(config, tmp_path / "split", resume=True, progress=False)
    np.testing.assert_array_equal(resumed.g_s, whole.g_s)
    np.testing.assert_array_equal(resumed.optimizer["m"], whole.optimizer["m"])
    physics = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "pulses")
    assert [[m[k] for k in physics] for m in resumed.metrics] == [[m[k] for k in physics] for m in whole.metrics]


def test_a_run_without_a_folder_writes_nothing_and_ends_where_a_recorded_run_does(tmp_path, monkeypatch):
    config = load_config(XOR, {"engine.backend": "native", "training.epochs": 3, "mismatch.bias_v": 0.01})
    recorded = train(config, tmp_path / "recorded", progress=False)
    assert (tmp_path / "recorded" / "mismatch.json").exists()  # what the folderless run must not write
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    bare = train(config, progress=True)
    assert list(cwd.rglob("*")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "recorded"]
    assert bare.epoch == 3 and len(bare.metrics) == 3
    np.testing.assert_array_equal(bare.g_s, recorded.g_s)
    physics = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "pulses")
    assert [[m[k] for k in physics] for m in bare.metrics] == [[m[k] for k in physics] for m in recorded.metrics]


def test_resume_needs_a_run_folder():
    with pytest.raises(ConfigError, match="resume needs the run_dir"):
        train(load_config(XOR, {"engine.backend": "native"}), resume=True)


class AlwaysCrash(NativeEngine):
    def settle(self, inputs_v, targets_v=None, beta_s=0.0, **kwargs):
        raise SimulatorCrash("ngspice child died")


def test_a_crash_without_a_run_folder_raises_without_a_resume_hint(tmp_path, monkeypatch):
    config = load_config(XOR, {"engine.backend": "native", "training.epochs": 2, "engine.max_restarts": 1})
    monkeypatch.chdir(tmp_path)
    session = open_session(config)
    session.engine = AlwaysCrash()
    with pytest.raises(RunError) as caught:
        train(config, progress=False, session=session)
    assert "gave up after 1 restarts" in str(caught.value)
    assert "--resume" not in str(caught.value)
    assert caught.value.state.epoch == 0 and caught.value.state.restarts == 2
    assert list(tmp_path.iterdir()) == []


def test_a_keyboard_interrupt_without_a_run_folder_is_a_keyboard_interrupt(tmp_path, monkeypatch):
    config = load_config(XOR, {"engine.backend": "native", "training.epochs": 2})
    monkeypatch.chdir(tmp_path)
    session = open_session(config)
    session.engine = InterruptAt(at=2, stop=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False, session=session)
    assert list(tmp_path.iterdir()) == []


def test_fused_adam_is_the_whole_array_formula_bit_for_bit():
    adam, rng = Adam(lr=0.01), np.random.default_rng(4)
    state, m, s = adam.init_state(50), np.zeros(50), np.zeros(50)
    for t in range(1, 4):
        g = rng.normal(size=50) * 10.0 ** rng.uniform(-3, 3, 50)
        m = 0.9 * m + (1 - 0.9) * g
        s = 0.999 * s + (1 - 0.999) * g**2
        expected = (-0.01 * 0.5 / (1 - 0.9**t)) * m / (np.sqrt(s / (1 - 0.999**t)) + 1e-8)
        before = state["m"].copy(), state["s"].copy()
        old = state["m"], state["s"]
        np.testing.assert_array_equal(adam.step(g, state, lr_scale=0.5), expected)
        np.testing.assert_array_equal(state["s"], s)
        np.testing.assert_array_equal(state["m"], m)
        assert state["t"][0] == t
        np.testing.assert_array_equal(old[0], before[0])  # the previous moments are not written
        np.testing.assert_array_equal(old[1], before[1])


def test_adams_write_into_an_ideal_device_is_the_step_then_the_device_update_bit_for_bit():
    """The training loop's one-pass write against the optimizer step, the device update and the
    equivalent pulses taken one after another, on devices pushed past both bounds."""
    from eqspice.learning.devices.programming import programming_pulses

    device, rng = IdealDevice(g_min_s=1e-7, g_max_s=1e-4), np.random.default_rng(7)
    adam = Adam(lr=0.3)  # steps large enough to hit the window's ends
    fused, apart = adam.init_state(200), adam.init_state(200)
    g_fused = g_apart = rng.uniform(1e-7, 1e-4, 200)
    for _ in range(3):
        grad = rng.normal(size=200) * 1e-3
        scales = {"grad_divisor": 32, "grad_factor": 1e-4, "step_factor": 1e-4}
        before = g_apart
        g_apart, pulses = device.update(before, adam.step(grad, apart, 0.7, **scales), {}, rng)
        signs = programming_pulses(device, before, g_apart, pulses)
        g_fused, written = adam.step_written(grad, fused, 0.7, **scales, g_s=g_fused, low_s=1e-7, high_s=1e-4)
        np.testing.assert_array_equal(g_fused, g_apart)
        np.testing.assert_array_equal(written, signs)
        for key in ("m", "s", "t"):
            np.testing.assert_array_equal(fused[key], apart[key])
    assert np.any(g_fused == 1e-4) and np.any(g_fused == 1e-7)


def test_input_lines_by_gather_are_the_dense_gain_product():

    for overrides in ({}, {"mismatch.input_gain": 0.1}):
        session = open_session(load_config("examples/digits.toml", {"engine.backend": "native", **overrides}))
        x = session.data.x_train[:9]
        assert session._input_lines is not None
        np.testing.assert_array_equal(session.inputs_v(x), x @ session.circuit.input_gain.T)
