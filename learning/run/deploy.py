"""Off-chip deployment: train in software on an ideal device, then program a non-ideal chip.

The *software reference* of a run (:func:`software_reference`) is the same run
on the ideal device of the same conductance window: no finite levels, pulses,
stuck devices, drift or read noise, no circuit mismatch, exact readout and
ideal wires.  Deploying a trained run into a chip (:func:`deploy_state`) then

1. fabricates the chip as a run of the chip's config would
   (:func:`~eqspice.learning.run.build.initial_state`: per-device bounds and
   step spread, stuck devices, drift exponents and the as-fabricated
   conductances, all from the run's seed, so an in-situ run of the same seed
   trains on this very chip);
2. writes the trained conductances into it through the chip's device model
   (:func:`~eqspice.learning.devices.programming.program_conductances`: one shot
   or write-verify, the same ``device.update`` a training update uses);
3. starts the drift clock of every device at the end of training.

:func:`chip_evaluation` measures the test accuracy as the chip is read:
conductances drifted to ``device.drift.eval_delay_sec`` after programming, and
with ``device.read_noise`` one fresh read-noise draw per mini-batch of 64 test
samples, from a generator seeded by the run's seed alone (``[READ_STREAM, seed]``),
so an evaluation repeats exactly.

A deployed run folder holds the chip's config (with its ``[deploy]`` section),
the programmed checkpoint, the software training's ``metrics.csv``, the
programmed conductances' histogram and ``deployment.json`` (pulses, energy,
devices within tolerance, errors, the chip's accuracy); ``eqspice eval`` reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from eqspice.learning.devices.drift import PROGRAMMED_AT
from eqspice.learning.devices.models import read_conductances
from eqspice.learning.devices.programming import Programming, program_conductances, write_energy_j
from eqspice.learning.run.build import Session, initial_state, open_session
from eqspice.learning.run.checkpoint import RunState, emptied_on_failure, write_atomic
from eqspice.learning.run.config import ConfigError, RunConfig, parse_config
from eqspice.learning.run.loop import conductances_at_evaluation, evaluate, run_clock_sec, start_run_dir
from eqspice.learning.run.report import plot_conductance_histograms, write_metrics

#: File of a deployed run folder that records what programming did.
DEPLOYMENT = "deployment.json"

#: First word of the seed of the evaluation's read-noise generator: ASCII "read".
READ_STREAM = 0x72656164

#: Device keys the software reference keeps: the window and the cost of a pulse.
_REFERENCE_DEVICE_KEYS = ("g_min_s", "g_max_s", "g_init_min_s", "g_init_max_s", "pulse_energy_j", "pulse_duration_sec")

#: Estimators of a noiseless run (the reference has no thermal noise).
_NOISELESS_ESTIMATORS = ("centred", "one_sided", "corrected")


def software_reference(config: RunConfig) -> RunConfig:
    """``config`` on ideal hardware: the run an off-chip arm trains before deploying.

    The device becomes an :class:`~eqspice.learning.devices.models.IdealDevice` of the
    same window and initial range (continuous, no read noise, no drift); the
    circuit loses its mismatch, its resistive wires and its thermal noise (a
    noise-only estimator becomes ``centred``); the readout becomes exact.  Data,
    network, training schedule and seed stay.

    Raises
    ------
    ConfigError
        The reference does not validate (one line).
    """
    raw = config.model_dump(mode="json", exclude_none=True)
    raw["device"] = {"model": "ideal", **{k: raw["device"][k] for k in _REFERENCE_DEVICE_KEYS if k in raw["device"]}}
    raw["mismatch"] = {}
    raw["network"].update(wire_resistance_ohm=0.0, driver_resistance_ohm=0.0)
    raw["training"]["readout_resolution_v"] = 0.0
    if raw["noise"]["model"] != "none":
        raw["noise"] = {"model": "none"}
        if raw["training"]["estimator"] not in _NOISELESS_ESTIMATORS:
            raw["training"]["estimator"] = "centred"
    raw.pop("deploy", None)
    return parse_config(raw, "software reference")


def hardware_aware_reference(config: RunConfig, weight_noise: float) -> RunConfig:
    """:func:`software_reference` trained with injected weight noise: hardware-aware training.

    Every mini-batch's phases see the conductances ``G (1 + weight_noise N(0, 1))``, one
    draw per mini-batch from the run's generator (the device's ``read_noise`` mechanism),
    and the update lands on the noiseless ``G``: a network trained in software to
    tolerate perturbed weights before it is programmed into the chip.

    Raises
    ------
    ConfigError
        ``weight_noise`` is not a positive number of at most 1 (one line).
    """
    if not (isinstance(weight_noise, (int, float)) and 0 < weight_noise <= 1):
        raise ConfigError(f"hw_aware_noise = {weight_noise!r}: give the relative weight noise of training, in (0, 1]")
    raw = software_reference(config).model_dump(mode="json", exclude_none=True)
    raw["device"]["read_noise"] = float(weight_noise)
    return parse_config(raw, "hardware-aware reference")


def deploy_state(session: Session, trained: RunState) -> tuple[RunState, dict]:
    """The chip of ``session.config`` programmed with ``trained``'s conductances.

    Parameters
    ----------
    session : Session
        The chip: its config's device, drift and ``[deploy]`` (default: write-verify).
    trained : RunState
        The trained run (usually its software reference's).

    Returns
    -------
    RunState
        Programmed conductances, the chip's device state (drift clocks started at
        the end of training), the trained run's epochs and metrics, a fresh optimizer.
    dict
        What programming did: writes, pulses, energy (joules), devices stuck and
        within tolerance, RMS and largest error of the devices that are not stuck (siemens).

    Raises
    ------
    ConfigError
        The trained run has another number of devices than the chip.
    """
    config = session.config
    fresh = initial_state(config, session.circuit, session.device)
    if trained.g_s.shape != fresh.g_s.shape:
        raise ConfigError(
            f"the trained run has {trained.g_s.size} devices, the chip's network {fresh.g_s.size}; "
            "deploy into a chip of the same network.layers"
        )
    programming = config.deploy or Programming()
    device = session.device
    g, pulses, writes = program_conductances(device, fresh.g_s, trained.g_s, fresh.device, fresh.rng, programming)
    state = RunState(
        g_s=g,
        rng=fresh.rng,
        epoch=trained.epoch,
        order=trained.order.copy(),
        metrics=[dict(row) for row in trained.metrics],
        optimizer=fresh.optimizer,
        device=fresh.device,
    )
    if session.drift is not None:
        state.device[PROGRAMMED_AT] = np.full(g.shape, run_clock_sec(session, state))
    stuck = state.device.get("stuck", np.zeros(g.shape, dtype=int))
    error = (g - trained.g_s)[stuck == 0]
    summary = {
        "scheme": programming.scheme,
        "cycles": programming.cycles,
        "tolerance_s": programming.tolerance(device),
        "writes": writes,
        "devices": int(g.size),
        "pulses": int(pulses.sum()),
        "programming_energy_j": write_energy_j(pulses, device.pulse_energy_j),
        "stuck_min": int(np.sum(stuck < 0)),
        "stuck_max": int(np.sum(stuck > 0)),
        "within_tolerance": int(np.sum(np.abs(g - trained.g_s) <= programming.tolerance(device))),
        "rms_error_s": float(np.sqrt(np.mean(error**2))) if error.size else 0.0,
        "max_error_s": float(np.max(np.abs(error))) if error.size else 0.0,
    }
    return state, summary


def chip_evaluation(session: Session, state: RunState, batch: int = 64) -> tuple[float, float]:
    """Test loss and accuracy of the chip as it is read: drifted, with read noise (see the module notes).

    Loads the session's engine (the caller closes it).  Without drift and read
    noise this is the training loop's own test evaluation.
    """
    data = session.data
    g_s = conductances_at_evaluation(session, state)
    session.engine.load(session.circuit, g_s)
    read_noise = session.device.read_noise
    if not read_noise:
        return evaluate(session, data.x_test, data.y_test, batch=batch)
    rng = np.random.default_rng([READ_STREAM, session.config.seed])
    loss_sum, hits = 0.0, 0.0
    for start in range(0, len(data.x_test), batch):
        ids = slice(start, start + batch)
        session.engine.set_conductances(read_conductances(g_s, read_noise, rng))
        n = len(data.y_test[ids])
        loss, accuracy = evaluate(session, data.x_test[ids], data.y_test[ids], batch=n)
        loss_sum += loss * n
        hits += accuracy * n
    return loss_sum / len(data.x_test), round(hits) / len(data.x_test)


def deploy(trained: RunState, chip: RunConfig, out_dir: str | Path | None = None, source: str = "") -> dict:
    """Program ``trained`` into the chip ``chip`` describes, evaluate it, and with ``out_dir`` write a run folder.

    Parameters
    ----------
    trained : RunState
        The trained run's state (:meth:`RunState.load` of its folder).
    chip : RunConfig
        The chip: the trained run's config with the chip's ``[device]`` (and
        mismatch, noise, wires), and ``[deploy]`` for the programming scheme.
    out_dir : str or Path, optional
        New run folder of the deployed chip; must not exist or be empty.
        Nothing is left in it if writing fails.
    source : str
        What to record as the trained run (its folder).

    Returns
    -------
    dict
        :func:`deploy_state`'s summary with ``test_accuracy`` and ``test_loss``
        (:func:`chip_evaluation`) and ``deploy_sec``.

    Raises
    ------
    ConfigError
        The chip does not fit the trained run, or ``out_dir`` cannot be used.
    """
    import time

    started = time.perf_counter()
    session = open_session(chip)
    try:
        with threadpool_limits(limits=chip.engine.blas_threads, user_api="blas"):
            state, summary = deploy_state(session, trained)
            summary["test_loss"], summary["test_accuracy"] = chip_evaluation(session, state)
    finally:
        session.engine.close()
    summary = {"source": source, **summary, "deploy_sec": round(time.perf_counter() - started, 3)}
    if out_dir is not None:
        write_deployed(Path(out_dir), session, state, summary)
    return summary


def write_deployed(out_dir: Path, session: Session, state: RunState, summary: dict) -> None:
    """The deployed run folder (see the module notes); an incomplete one is emptied again."""
    existed = out_dir.exists()
    start_run_dir(out_dir, session.config, session, state)  # refuses a non-empty folder, cleans up after itself
    with emptied_on_failure(out_dir, remove_folder=not existed):
        write_metrics(out_dir, state.metrics)
        d = session.config.device
        plot_conductance_histograms(out_dir, session.circuit, state.g_s, d.g_min_s, d.g_max_s)
        write_atomic(out_dir / DEPLOYMENT, json.dumps(summary, indent=1).encode())
