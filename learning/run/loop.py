"""The training loop of the host-side controller.

Per mini-batch the controller applies the inputs, lets the engine settle the
free and nudged phases, reads the node voltages, computes each device's local
EP update, passes it through the device model and writes the conductances
back.  After every mini-batch the run's state is consistent; the loop keeps a
copy of the last consistent state, so a crash of the simulator, a Ctrl-C or a
SIGTERM at any moment saves that copy and ``--resume`` continues exactly.
Without a run folder (``run_dir=None``) nothing is written to disk and the
returned :class:`RunState` is the whole result.

Weights are ``w = G / g_max`` and the optimizer (Adam or SGD, per device) works
on ``dL/dw = g_max dL/dG``, so the learning rate does not change with the
device's scale; the requested change ``dG = g_max dw`` then goes through the
device model.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from eqspice.learning.devices.models import read_conductances
from eqspice.learning.rules.equilibrium import (
    Phases,
)
from eqspice.learning.rules.lines import at_devices, devices_on_lines
from eqspice.learning.run.build import Session, exact_gradient_rule, initial_state, open_session
from eqspice.learning.run.build import record as record_mismatch
from eqspice.learning.run.checkpoint import CHECKPOINT, CheckpointError, RunState, emptied_on_failure, write_atomic
from eqspice.learning.run.config import ConfigError, RunConfig, dump_config
from eqspice.learning.run.data import IMAGE_SIDES, augmented
from eqspice.learning.run.energy import RUNNING_SUMS, account_phases, account_write, energy_metrics
from eqspice.learning.run.progress import progress_bar
from eqspice.learning.run.report import (
    plot_conductance_histograms,
    plot_energy,
    plot_learning_curves,
    write_metrics,
)
from eqspice.simulator.engine import EngineError, SimulatorCrash

#: Seconds between plot refreshes during a run (plots are always drawn at its end).
PLOT_EVERY_SEC = 30.0


class RunError(RuntimeError):
    """The run stopped; the message says why and, with a run folder, how to go on.

    ``state`` is the run's last consistent :class:`RunState` (the one saved in
    the run folder, if there is one), or None if the run stopped before it had one.
    """

    def __init__(self, message: str, state: RunState | None = None) -> None:
        super().__init__(message)
        self.state = state


class Interrupted(RunError):
    """A signal stopped the run; its last consistent state is saved in the run folder.

    ``signum`` is the signal (``signal.SIGINT`` for Ctrl-C or a plain
    :class:`KeyboardInterrupt`).
    """

    def __init__(self, message: str, state: RunState | None, signum: int) -> None:
        super().__init__(message, state)
        self.signum = signum


class Stop(KeyboardInterrupt):
    """Raised by a signal handler (e.g. the command line's, for SIGTERM) to stop a run as Ctrl-C does.

    A subclass of :class:`KeyboardInterrupt`, so code that handles Ctrl-C handles
    it too; ``signum`` names the signal in :class:`Interrupted`.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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
    """Mean loss and accuracy of the free phase on ``x``, settled by the session's (loaded) engine.

    Parameters
    ----------
    session : Session
        Its engine must hold the conductances to evaluate (``session.engine.load``).
    x : ndarray, shape (n, n_features)
        Features.
    labels : ndarray of int, shape (n,)
        Classes.
    batch : int
        Samples per engine call.

    Returns
    -------
    loss : float
        Mean of :meth:`Session.loss`: squared error (V^2) or cross-entropy (nats).
    accuracy : float
        Fraction of samples whose highest class score is the label.
    """
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
    d = session.config.data
    if d.augment_shift_px or d.augment_flip:
        x = augmented(x, IMAGE_SIDES[d.name], d.augment_shift_px, d.augment_flip, state.rng)
    targets = session.targets_v(labels)
    now_sec = run_clock_sec(session, state)
    g_now = state.g_s if session.drift is None else session.drift.conductances(state.g_s, state.device, now_sec)
    if session.device.read_noise:
        session.engine.set_conductances(read_conductances(g_now, session.device.read_noise, state.rng))
    elif session.drift is not None:
        session.engine.set_conductances(g_now)
    noisy = {"rng": state.rng} if getattr(session.rule, "needs_rng", False) else {}
    phases = session.rule.phases(session.engine, session.inputs_v(x), targets, sample_ids=ids, **noisy)
    account_phases(session, state, phases)
    t = session.config.training
    if session.lines is None:
        read = read_voltages(phases, t.readout_resolution_v)
        grad = session.rule.gradient(session.circuit, read)
    else:  # training.device_voltage = "device" on resistive lines: each device's own voltage
        lines = getattr(session.engine, "wires", None) or session.lines  # the native engine's factorisation
        read = read_voltages(at_devices(lines, session.engine.g_s, phases), t.readout_resolution_v)
        grad = session.rule.gradient(devices_on_lines(session.circuit, lines), read)
    if t.measure_gradient_cosine and batches_done(session, state)[0] % t.measure_gradient_cosine == 0:
        r = state.running
        cosine, error = gradient_agreement(session, phases, targets, grad)
        r["cosine_sum"] = r.get("cosine_sum", 0.0) + cosine
        r["error_sum"] = r.get("error_sum", 0.0) + error
        r["cosine_batches"] = r.get("cosine_batches", 0) + 1
    # the mean over the batch and the units of w = G / g_max, in the optimizer's one pass over the devices
    g_max = session.config.device.g_max_s
    divisor = len(ids) if t.reduce == "mean" else 1
    lr_scale = t.lr_scale(*batches_done(session, state))
    scales = {"grad_divisor": divisor, "grad_factor": g_max, "step_factor": g_max}
    written = None  # an ideal device's write and its equivalent pulses, in the optimizer's pass
    if hasattr(session.optimizer, "step_written") and session.device.model == "ideal" and not session.device.levels:
        dev = session.device
        g_new, written = session.optimizer.step_written(grad, state.optimizer, lr_scale, **scales, g_s=g_now, low_s=dev.g_min_s, high_s=dev.g_max_s)
        pulses = np.zeros(len(g_new), dtype=np.int8)
    else:
        dw = session.optimizer.step(grad, state.optimizer, lr_scale, **scales)
        g_new, pulses = session.device.update(g_now, dw, state.device, state.rng)
    if session.drift is None:
        state.g_s = g_new
    else:  # devices that took no pulse keep drifting from their last programming
        programmed = (pulses != 0) | (g_new != g_now)
        state.g_s = session.drift.reprogram(state.g_s, g_new, programmed, state.device, now_sec)
    state.running["pulses"] = state.running.get("pulses", 0) + int(np.abs(pulses).sum())
    account_write(session, state, g_now, g_new, pulses, equivalent=written)
    session.engine.set_conductances(state.g_s)
    loss = float(np.sum(session.loss(phases.free, targets)))
    hits = int(np.sum(np.argmax(session.scores(phases.free), axis=1) == labels))
    return loss, hits


def gradient_agreement(session: Session, phases: Phases, targets_v: np.ndarray, estimate: np.ndarray) -> tuple[float, float]:
    """Cosine and relative error ``|g - g_exact| / |g_exact|`` of a gradient estimate against the exact
    gradient of the mini-batch at its free state.

    The exact gradient (:class:`~eqspice.learning.rules.adjoint.ImplicitGradient`, in the units the
    run's EP rule estimates) is taken at the conductances the engine settled the phases with; (1, 0)
    for the exact rule itself; (0, 1) if the exact gradient is 0.
    """
    exact_rule = exact_gradient_rule(session.config)
    lam = phases.adjoint if phases.adjoint is not None else exact_rule.adjoint(session.engine, phases.free, targets_v)
    exact = exact_rule.gradient(session.circuit, Phases(phases.free, None, adjoint=lam))
    norm_exact, norm = np.linalg.norm(exact), np.linalg.norm(estimate)
    if norm_exact == 0:
        return 0.0, 1.0
    cosine = float(estimate @ exact / (norm * norm_exact)) if norm > 0 else 0.0
    return cosine, float(np.linalg.norm(estimate - exact) / norm_exact)


def prepare_run_dir(run_dir: Path, config: RunConfig, resume: bool) -> None:
    """Check ``run_dir`` for a resumed run; for a new one, create it and write ``config.toml``."""
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


def start_run_dir(run_dir: Path, config: RunConfig, session: Session, state: RunState) -> None:
    """Create a new run's folder: config, first checkpoint, mismatch record.

    A folder that cannot be completed (disk full, Ctrl-C) is removed again, so
    the next attempt does not meet a run directory that cannot be resumed.
    """
    existed = run_dir.exists()
    prepare_run_dir(run_dir, config, resume=False)  # refuses a non-empty folder: all that is in it is ours
    with emptied_on_failure(run_dir, remove_folder=not existed):
        state.save(run_dir)
        record_mismatch(run_dir, config, session.circuit)


def check_resumable(run_dir: Path, state: RunState, fresh: RunState) -> None:
    """Refuse a checkpoint whose arrays do not fit the run's config (``fresh`` is its seeded start).

    Raises
    ------
    CheckpointError
        The checkpoint belongs to another circuit, optimizer or device model, or
        its sample order is not a permutation of the training set.
    """
    path = run_dir / CHECKPOINT
    fix = "it belongs to another run; restore this run's checkpoint from a copy or start a new run"
    if state.g_s.shape != fresh.g_s.shape:
        raise CheckpointError(f"{path} holds {state.g_s.size} conductances, the run's circuit has {fresh.g_s.size}: {fix}")
    for what, saved, expected in (("optimizer", state.optimizer, fresh.optimizer), ("device", state.device, fresh.device)):
        if {k: v.shape for k, v in saved.items()} != {k: v.shape for k, v in expected.items()}:
            raise CheckpointError(
                f"{path}: its {what} state ({', '.join(sorted(saved)) or 'none'}) does not fit the run's config "
                f"({', '.join(sorted(expected)) or 'none'}): {fix}"
            )
    n = len(state.order)
    if state.batch_index and (n == 0 or not np.array_equal(np.sort(state.order), np.arange(n))):
        raise CheckpointError(f"{path} is damaged (its sample order is not a permutation); restore it from a copy or start a new run")


def save_reports(session: Session, state: RunState, run_dir: Path) -> None:
    write_metrics(run_dir, state.metrics)
    if state.metrics:
        plot_learning_curves(
            run_dir, state.metrics, title=f"{session.data.name}, {session.engine.name}", loss_label=session.loss_label
        )
    d = session.config.device
    plot_conductance_histograms(run_dir, session.circuit, state.g_s, d.g_min_s, d.g_max_s)
    plot_energy(run_dir / "energy.png", {run_dir.name: state.metrics}, title="energy and time on the chip")


def train(
    config: RunConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    progress: bool = True,
    session: Session | None = None,
) -> RunState:
    """Train ``config``; with a ``run_dir``, record the run there, and with ``resume`` continue it.

    Parameters
    ----------
    config : RunConfig
        The run.
    run_dir : str or Path, optional
        Folder of the run: ``config.toml``, ``checkpoint.npz`` (after every
        epoch and whenever the run stops), ``metrics.csv``, the plots and the
        mismatch record.  None writes nothing to disk; the returned state is
        then the whole result.
    resume : bool
        Continue the run saved in ``run_dir`` (which must be given).
    stop_after_epochs : int, optional
        End this call after that many epochs, as an interruption would; with a
        ``run_dir`` the run can be resumed later.
    progress : bool
        Show a progress bar (on a terminal; elsewhere a line now and then).
    session : Session, optional
        Data, circuit and engine already opened for ``config``.

    Returns
    -------
    RunState
        Conductances, optimizer and device state, and ``metrics`` (one dict per epoch).

    Raises
    ------
    ConfigError
        ``resume`` without a ``run_dir``, or a run folder that cannot be used.
    CheckpointError
        The checkpoint to resume from is damaged or does not fit ``config``.
    Interrupted
        Ctrl-C or a :class:`Stop` signal with a ``run_dir``: the last consistent
        state is saved there.  Without one, the :class:`KeyboardInterrupt`
        itself propagates, as nothing can be resumed.
    RunError
        The simulator kept failing; ``RunError.state`` is the last consistent
        state (also saved in ``run_dir``, if given).
    """
    if resume and run_dir is None:
        raise ConfigError("resume needs the run_dir of the run to continue; a run without a folder cannot be resumed")
    run_dir = None if run_dir is None else Path(run_dir)
    if resume:
        prepare_run_dir(run_dir, config, resume=True)
    session = session or open_session(config)
    with threadpool_limits(limits=config.engine.blas_threads, user_api="blas"):
        return _train(session, config, run_dir, resume, stop_after_epochs, progress)


def _train(session: Session, config: RunConfig, run_dir: Path | None, resume: bool, stop_after_epochs, progress) -> RunState:
    try:
        try:
            state = initial_state(config, session.circuit, session.device)
            if resume:
                fresh, state = state, RunState.load(run_dir)
                check_resumable(run_dir, state, fresh)
            session.engine.load(session.circuit, state.g_s)
            if run_dir is not None and not resume:
                start_run_dir(run_dir, config, session, state)
        except KeyboardInterrupt as exc:
            if not resume:
                raise  # a new run leaves nothing behind (start_run_dir cleans up)
            signum = getattr(exc, "signum", signal.SIGINT)
            raise Interrupted(
                f"interrupted ({signal.Signals(signum).name}); {run_dir} is unchanged, continue with --resume {run_dir}",
                None,
                signum,
            ) from None
        return _epochs(session, state, run_dir, stop_after_epochs, progress)
    finally:
        session.engine.close()
        getattr(getattr(session.rule, "sampler", None), "close", lambda: None)()


class _Consistent:
    """Copies of the run's state from the last points where it was consistent.

    Between mini-batches and between epochs the state is consistent; within a
    mini-batch it is half updated.  ``state`` is the last copy a resumed run
    can start from: an interruption saves it, whenever it strikes.  ``retry``
    is where a crashed mini-batch starts again: the same copy, except in an
    epoch's first mini-batch, which starts after the epoch's sample order was
    drawn (a resumed run draws that order itself).
    """

    def __init__(self, state: RunState) -> None:
        self.state = self.retry = state.copy()

    def mark(self, state: RunState) -> None:
        # one assignment once the snapshot is complete: an interruption inside it keeps the older one.
        # A snapshot shares the arrays, which train_step replaces and never writes into.
        self.state = self.retry = state.snapshot()

    def mark_retry(self, state: RunState) -> None:
        self.retry = state.snapshot()

    def rewind(self, session: Session, state: RunState) -> None:
        """Put ``state`` back to ``retry`` (keeping its restart count) and the engine with it."""
        restarts, back = state.restarts, self.retry.copy()
        for f in dataclasses.fields(RunState):
            setattr(state, f.name, getattr(back, f.name))
        state.restarts = restarts
        session.engine.set_conductances(state.g_s)


def _epochs(session: Session, state: RunState, run_dir: Path | None, stop_after: int | None, progress: bool) -> RunState:
    """Train to the config's epochs (or ``stop_after`` more); write the reports at the end.

    A simulator that keeps failing or a signal, whenever it arrives, ends the
    run with the last consistent state saved (with a run folder) and a
    :class:`RunError` (:class:`Interrupted`) that says how to resume.
    """
    consistent = _Consistent(state)
    try:
        with interruptions_unwrapped():
            _run_epochs(session, state, run_dir, stop_after, progress, consistent)
            if run_dir is not None:
                save_reports(session, state, run_dir)
            return state
    except KeyboardInterrupt as exc:
        if run_dir is None:
            raise  # nothing to save and nothing to resume: Ctrl-C means what it always means
        last = _save_consistent(consistent, state, run_dir)
        signum = getattr(exc, "signum", signal.SIGINT)
        raise Interrupted(
            f"interrupted ({signal.Signals(signum).name}); state saved, continue with --resume {run_dir}", last, signum
        ) from None
    except RunError as exc:
        if run_dir is None:
            last = consistent.state
            last.restarts = state.restarts
            raise RunError(f"{exc}; no run folder, so nothing was saved", last) from None
        last = _save_consistent(consistent, state, run_dir)
        raise RunError(f"{exc}. State saved: continue with --resume {run_dir}", last) from None


def _save_consistent(consistent: _Consistent, state: RunState, run_dir: Path) -> RunState:
    last = consistent.state
    last.restarts = state.restarts  # the restarts happened, whatever was undone
    last.save(run_dir)
    write_metrics(run_dir, last.metrics)
    return last


def _run_epochs(
    session: Session, state: RunState, run_dir: Path | None, stop_after: int | None, progress: bool, consistent: _Consistent
) -> None:
    t = session.config.training
    n = len(session.data.x_train)
    epochs_done_here = 0
    last_plot = time.monotonic()
    while state.epoch < t.epochs:
        if stop_after is not None and epochs_done_here >= stop_after:
            break
        if state.batch_index == 0:
            state.order = state.rng.permutation(n)
            state.running = {"loss": 0.0, "correct": 0, "seen": 0, "train_sec": 0.0, "pulses": 0, **RUNNING_SUMS}
            consistent.mark_retry(state)
        batches = [state.order[s : s + t.batch_size] for s in range(0, n, t.batch_size)]
        bar = progress_bar(
            n,
            initial=state.running["seen"],
            unit="sample",
            desc=f"epoch {state.epoch + 1}/{t.epochs}",
            enabled=progress,
            final_line=False,  # the epoch's summary line follows
        )
        try:
            while state.batch_index < len(batches):
                ids = batches[state.batch_index]
                started = time.perf_counter()
                loss, hits = _with_restarts(
                    session, state, lambda: train_step(session, state, ids), lambda: consistent.rewind(session, state)
                )
                r = state.running
                r["loss"] += loss
                r["correct"] += hits
                r["seen"] += len(ids)
                r["train_sec"] += time.perf_counter() - started
                state.batch_index += 1
                consistent.mark(state)
                bar.update(len(ids))
                bar.set_postfix(train_acc=f"{r['correct'] / r['seen']:.3f}")
        finally:
            bar.close()
        r = state.running
        test_loss, test_acc = _evaluate_with_restarts(session, state)
        state.metrics.append(
            {
                "epoch": state.epoch + 1,
                "train_loss": r["loss"] / r["seen"],
                "train_accuracy": r["correct"] / r["seen"],
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "train_sec": round(r["train_sec"], 3),
                "samples_per_sec": round(r["seen"] / max(r["train_sec"], 1e-9), 2),
                "engine_restarts": state.restarts,
                "pulses": r.get("pulses", 0),
            }
            | energy_metrics(r)
            | gradient_metrics(r)
        )
        state.epoch += 1
        state.batch_index = 0
        consistent.mark(state)
        if progress:
            tqdm.write(
                f"epoch {state.epoch}: train acc {r['correct'] / r['seen']:.3f}, "
                f"test acc {test_acc:.3f}, test loss {test_loss:.3g} ({session.loss_label})"
            )
        if run_dir is not None:
            state.save(run_dir)
            write_metrics(run_dir, state.metrics)
            if time.monotonic() - last_plot > PLOT_EVERY_SEC and state.epoch < t.epochs:  # the last is drawn at the end
                save_reports(session, state, run_dir)
                last_plot = time.monotonic()
        epochs_done_here += 1


def gradient_metrics(running: dict) -> dict:
    """The epoch's mean cosine and relative error against the exact gradient, if it measured any."""
    n = running.get("cosine_batches", 0)
    if not n:
        return {}
    return {"gradient_cosine": running["cosine_sum"] / n, "gradient_relative_error": running["error_sum"] / n}


def _evaluate_with_restarts(session: Session, state: RunState) -> tuple[float, float]:
    data = session.data
    if session.drift is not None:
        session.engine.set_conductances(conductances_at_evaluation(session, state))
    return _with_restarts(session, state, lambda: evaluate(session, data.x_test, data.y_test), lambda: None)


def conductances_at_evaluation(session: Session, state: RunState) -> np.ndarray:
    """Conductances ``device.drift.eval_delay_sec`` after the last update (siemens): what the test set sees."""
    if session.drift is None:
        return state.g_s
    t_sec = run_clock_sec(session, state) + session.config.device.drift.eval_delay_sec
    return session.drift.conductances(state.g_s, state.device, t_sec)


@contextmanager
def interruptions_unwrapped():
    """Re-raise a Ctrl-C or :class:`Stop` that reached Python inside a compiled (numba) kernel,
    which hands it on wrapped in :class:`SystemError`, as itself."""
    try:
        yield
    except SystemError as exc:
        cause, seen = exc, set()
        while cause is not None and id(cause) not in seen:
            if isinstance(cause, KeyboardInterrupt):
                raise cause from None
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        raise


def _with_restarts(session: Session, state: RunState, action, rewind):
    """``action()``, repeated after ``rewind()`` while the simulator crashes, up to max_restarts.

    A retried mini-batch starts from exactly the state the failed one started
    from, so a run that crashed ends with the same conductances as one that
    did not.  Raises :class:`RunError` (the caller saves the state) once the
    restarts are used up or on an engine error that a restart cannot cure.
    """
    limit = session.config.engine.max_restarts
    for attempt in range(limit + 1):
        try:
            if attempt:
                rewind()
            return action()
        except SimulatorCrash as exc:
            state.restarts += 1
            if attempt == limit:
                raise RunError(f"{exc}; gave up after {limit} restarts") from None
            tqdm.write(f"warning: {exc}; retrying", file=sys.stderr)
        except EngineError as exc:
            raise RunError(str(exc)) from None
    raise AssertionError("unreachable")
