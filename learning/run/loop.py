"""The training loop of the host-side controller.

Per mini-batch the controller applies the inputs, lets the engine settle the
free and nudged phases, reads the node voltages, computes each device's local
EP update, passes it through the device model and writes the conductances
back.  After every mini-batch the run's state is consistent, so a crash of the
simulator or a Ctrl-C saves it and ``--resume`` continues exactly.

Weights are ``w = G / g_max`` and the optimizer (Adam or SGD, per device) works
on ``dL/dw = g_max dL/dG``, so the learning rate does not change with the
device's scale; the requested change ``dG = g_max dw`` then goes through the
device model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from eqspice.learning.run.checkpoint import CHECKPOINT, RunState, write_atomic
from eqspice.learning.run.config import ConfigError, RunConfig, dump_config
from eqspice.learning.devices.models import read_conductances
from eqspice.learning.run.build import record as record_mismatch
from eqspice.learning.run.report import (
    plot_conductance_histograms,
    plot_learning_curves,
    write_metrics,
)
from eqspice.learning.rules.equilibrium import (
    Phases,
)
from eqspice.learning.run.build import Session, initial_state, open_session
from eqspice.simulator.engine import EngineError, SimulatorCrash


#: Seconds between plot refreshes during a run (plots are always drawn at its end).
PLOT_EVERY_SEC = 30.0


class RunError(RuntimeError):
    """The run stopped; its state is saved and the message says how to go on."""


def run_clock_sec(session: "Session", state: RunState) -> float:
    """Device time at the start of the running mini-batch, seconds: mini-batches done times
    ``device.drift.batch_interval_sec`` (0 without drift, whose clock nothing reads)."""
    drift = session.config.device.drift
    return 0.0 if drift is None else batches_done(session, state)[0] * drift.batch_interval_sec


def batches_done(session: "Session", state: RunState) -> tuple[int, int]:
    """Mini-batches done in the whole run before the running one, and mini-batches per epoch."""
    per_epoch = -(-len(session.data.x_train) // session.config.training.batch_size)
    return state.epoch * per_epoch + state.batch_index, per_epoch


def evaluate(session: Session, x: np.ndarray, labels: np.ndarray, batch: int = 64) -> tuple[float, float]:
    """Mean loss (:meth:`Session.loss`) and accuracy of the free phase on ``x``."""
    losses, correct = [], 0
    for start in range(0, len(x), batch):
        ids = np.arange(start, min(start + batch, len(x)))
        v = session.engine.settle(session.inputs_v(x[ids]), phase="free (evaluation)", sample_ids=ids)
        losses.append(session.loss(v, session.targets_v(labels[ids])))
        correct += int(np.sum(np.argmax(session.scores(v), axis=1) == labels[ids]))
    return float(np.mean(np.concatenate(losses))), correct / len(x)


def read_voltages(phases: Phases, resolution_v: float) -> Phases:
    """The node voltages as the controller's converter reads them: rounded to ``resolution_v``."""
    if resolution_v == 0:
        return phases
    q = lambda v: None if v is None else np.round(v / resolution_v) * resolution_v  # noqa: E731
    return Phases(q(phases.free), q(phases.plus), q(phases.minus))


def train_step(session: Session, state: RunState, ids: np.ndarray) -> tuple[float, int]:
    """One mini-batch: phases, local updates, device writes.  Returns summed loss and hits."""
    x, labels = session.data.x_train[ids], session.data.y_train[ids]
    targets = session.targets_v(labels)
    now_sec = run_clock_sec(session, state)
    g_now = state.g_s if session.drift is None else session.drift.conductances(state.g_s, state.device, now_sec)
    if session.device.read_noise:
        session.engine.set_conductances(read_conductances(g_now, session.device.read_noise, state.rng))
    elif session.drift is not None:
        session.engine.set_conductances(g_now)
    noisy = {"rng": state.rng} if getattr(session.rule, "needs_rng", False) else {}
    phases = session.rule.phases(session.engine, session.inputs_v(x), targets, sample_ids=ids, **noisy)
    t = session.config.training
    read = read_voltages(phases, t.readout_resolution_v)
    grad = session.rule.gradient(session.circuit, read)
    if t.reduce == "mean":
        grad = grad / len(ids)
    g_max = session.config.device.g_max_s
    dw = session.optimizer.step(grad * g_max, state.optimizer, t.lr_scale(*batches_done(session, state)))
    g_new, pulses = session.device.update(g_now, dw * g_max, state.device, state.rng)
    if session.drift is None:
        state.g_s = g_new
    else:  # devices that took no pulse keep drifting from their last programming
        programmed = (pulses != 0) | (g_new != g_now)
        state.g_s = session.drift.reprogram(state.g_s, g_new, programmed, state.device, now_sec)
    state.running["pulses"] = state.running.get("pulses", 0) + int(np.abs(pulses).sum())
    session.engine.set_conductances(state.g_s)
    loss = float(np.sum(session.loss(phases.free, targets)))
    hits = int(np.sum(np.argmax(session.scores(phases.free), axis=1) == labels))
    return loss, hits


def prepare_run_dir(run_dir: Path, config: RunConfig, resume: bool) -> None:
    if resume:
        if not (run_dir / CHECKPOINT).exists():
            raise ConfigError(f"--resume {run_dir}: no {CHECKPOINT} there; start a new run instead")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} exists and is not empty; pick another or use --resume")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / "config.toml", dump_config(config).encode())
    except OSError as exc:
        raise ConfigError(f"run directory {run_dir} is not writable ({exc.strerror}); pick another") from None


def save_reports(session: Session, state: RunState, run_dir: Path) -> None:
    write_metrics(run_dir, state.metrics)
    if state.metrics:
        plot_learning_curves(
            run_dir, state.metrics, title=f"{session.data.name}, {session.engine.name}", loss_label=session.loss_label
        )
    d = session.config.device
    plot_conductance_histograms(run_dir, session.circuit, state.g_s, d.g_min_s, d.g_max_s)


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    progress: bool = True,
    session: Session | None = None,
) -> RunState:
    """Train ``config`` into ``run_dir``; with ``resume``, continue from its checkpoint.

    ``stop_after_epochs`` ends this call after that many epochs (the run can be
    resumed later), as an interruption would.
    """
    run_dir = Path(run_dir)
    session = session or open_session(config)
    with threadpool_limits(limits=config.engine.blas_threads, user_api="blas"):
        return _train(session, config, run_dir, resume, stop_after_epochs, progress)


def _train(session: Session, config: RunConfig, run_dir: Path, resume: bool, stop_after_epochs, progress) -> RunState:
    try:
        if resume:
            prepare_run_dir(run_dir, config, resume=True)
            state = RunState.load(run_dir)
        else:
            state = initial_state(config, session.circuit, session.device)
        session.engine.load(session.circuit, state.g_s)
        if not resume:
            prepare_run_dir(run_dir, config, resume=False)
            state.save(run_dir)
            record_mismatch(run_dir, config, session.circuit)
        state = _epochs(session, state, run_dir, stop_after_epochs, progress)
        save_reports(session, state, run_dir)
        return state
    finally:
        session.engine.close()
        getattr(getattr(session.rule, "sampler", None), "close", lambda: None)()


def _epochs(session: Session, state: RunState, run_dir: Path, stop_after: int | None, progress: bool) -> RunState:
    t = session.config.training
    n = len(session.data.x_train)
    epochs_done_here = 0
    last_plot = time.monotonic()
    while state.epoch < t.epochs:
        if stop_after is not None and epochs_done_here >= stop_after:
            break
        if state.batch_index == 0:
            state.order = state.rng.permutation(n)
            state.running = {"loss": 0.0, "correct": 0, "seen": 0, "train_sec": 0.0, "pulses": 0}
        batches = [state.order[s : s + t.batch_size] for s in range(0, n, t.batch_size)]
        bar = tqdm(
            total=n,
            initial=state.running["seen"],
            unit="sample",
            desc=f"epoch {state.epoch + 1}/{t.epochs}",
            disable=not progress,
            leave=True,
        )
        try:
            while state.batch_index < len(batches):
                ids = batches[state.batch_index]
                started = time.perf_counter()
                loss, hits = _step_with_restarts(session, state, ids, run_dir)
                r = state.running
                r["loss"] += loss
                r["correct"] += hits
                r["seen"] += len(ids)
                r["train_sec"] += time.perf_counter() - started
                state.batch_index += 1
                bar.update(len(ids))
                bar.set_postfix(train_acc=f"{r['correct'] / r['seen']:.3f}")
        except KeyboardInterrupt:
            state.save(run_dir)
            raise RunError(f"interrupted; state saved, continue with --resume {run_dir}") from None
        finally:
            bar.close()
        r = state.running
        test_loss, test_acc = _evaluate_with_restarts(session, state, run_dir)
        state.epoch += 1
        state.batch_index = 0
        state.metrics.append(
            {
                "epoch": state.epoch,
                "train_loss": r["loss"] / r["seen"],
                "train_accuracy": r["correct"] / r["seen"],
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "train_sec": round(r["train_sec"], 3),
                "samples_per_sec": round(r["seen"] / max(r["train_sec"], 1e-9), 2),
                "engine_restarts": state.restarts,
                "pulses": r.get("pulses", 0),
            }
        )
        if progress:
            tqdm.write(
                f"epoch {state.epoch}: train acc {r['correct'] / r['seen']:.3f}, "
                f"test acc {test_acc:.3f}, test loss {test_loss:.3g} ({session.loss_label})"
            )
        state.save(run_dir)
        write_metrics(run_dir, state.metrics)
        if time.monotonic() - last_plot > PLOT_EVERY_SEC or state.epoch == t.epochs:
            save_reports(session, state, run_dir)
            last_plot = time.monotonic()
        epochs_done_here += 1
    return state


def _step_with_restarts(session: Session, state: RunState, ids: np.ndarray, run_dir: Path) -> tuple[float, int]:
    """Run one mini-batch; after a simulator crash, retry it from exactly where it started."""
    g_before, rng_before = state.g_s.copy(), state.rng.bit_generator.state
    optimizer_before = {k: v.copy() for k, v in state.optimizer.items()}
    device_before = {k: v.copy() for k, v in state.device.items()}

    def rewind() -> None:
        # a retried run gives the same conductances as one that never crashed
        state.g_s = g_before.copy()
        state.rng.bit_generator.state = rng_before
        state.optimizer = {k: v.copy() for k, v in optimizer_before.items()}
        state.device = {k: v.copy() for k, v in device_before.items()}
        session.engine.set_conductances(state.g_s)

    return _with_restarts(session, state, run_dir, lambda: train_step(session, state, ids), rewind)


def _evaluate_with_restarts(session: Session, state: RunState, run_dir: Path) -> tuple[float, float]:
    data = session.data
    if session.drift is not None:
        session.engine.set_conductances(conductances_at_evaluation(session, state))
    return _with_restarts(session, state, run_dir, lambda: evaluate(session, data.x_test, data.y_test), lambda: None)


def conductances_at_evaluation(session: Session, state: RunState) -> np.ndarray:
    """Conductances ``device.drift.eval_delay_sec`` after the last update (siemens): what the test set sees."""
    if session.drift is None:
        return state.g_s
    t_sec = run_clock_sec(session, state) + session.config.device.drift.eval_delay_sec
    return session.drift.conductances(state.g_s, state.device, t_sec)


def _with_restarts(session: Session, state: RunState, run_dir: Path, action, rewind):
    """``action()``, repeated after ``rewind()`` while the simulator crashes, up to max_restarts."""
    limit = session.config.engine.max_restarts
    for attempt in range(limit + 1):
        try:
            if attempt:
                rewind()
            return action()
        except SimulatorCrash as exc:
            state.restarts += 1
            if attempt == limit:
                state.save(run_dir)
                raise RunError(
                    f"{exc}; gave up after {limit} restarts. State saved: continue with --resume {run_dir}"
                ) from None
            tqdm.write(f"warning: {exc}; retrying", file=sys.stderr)
        except EngineError as exc:
            state.save(run_dir)
            raise RunError(f"{exc}. State saved: continue with --resume {run_dir}") from None
    raise AssertionError("unreachable")
