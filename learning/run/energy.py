"""What training costs on the chip, as a run accounts for it: settling energy and time, programming.

Per mini-batch the controller's phases (free, +beta, and -beta for centred
estimators) are settled on the chip one sample after the other:

* a sample's **free phase** starts from the previous sample's free state (the
  first sample of a mini-batch of one starts from the rest state, every free
  node at 0 V);
* each **nudged phase** starts from the sample's free state.

A phase that runs until it has settled costs ``t_s`` seconds and
``E = P_static t_s + E_switch`` joules (:func:`eqspice.simulator.settling.phase_cost`,
with ``network.node_capacitance_f`` and ``energy.settling_tolerance``).  The free
phase alone is one **inference**.

Settling a phase exactly costs an eigen-decomposition per sample, far more than
the training step itself on a large circuit, so a run settles only a stated
subset: ``energy.settling_samples`` samples per epoch, taken from evenly spaced
mini-batches (:func:`sampled_batches`); in each, every sample after the first
(whose free state only starts the next sample's free phase).  The metrics built
from them carry the prefix ``sampled_`` and are averages over ``energy_samples``
samples; the epoch's figures scale those averages by the samples in the epoch.

Programming is counted exactly for every mini-batch
(:mod:`eqspice.learning.devices.programming`): ``device.pulse_energy_j`` per
pulse, and ``device.pulse_duration_sec`` per pulse slot of ``energy.write_scheme``.
The on-chip time of an epoch is the settling time of all its phases plus its
write time (readout and controller arithmetic are not counted).

Noisy rules (``noise.model`` other than ``"none"``) do not say which nudge each
phase applied, so their runs report programming only.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from eqspice.circuits.network import Circuit
from eqspice.learning.devices.programming import programming_pulses, write_energy_j, write_time_sec
from eqspice.simulator.engine import FREE, Nudge
from eqspice.simulator.settling import phase_cost

#: Time points of the settling grid in a run's accounting (the reference uses more, see
#: :data:`eqspice.simulator.settling.GRID_POINTS`): the last exit is refined exactly either way.
ACCOUNTING_GRID_POINTS = 512

#: Columns this accounting adds to ``metrics.csv``, in order (units in the names).
ENERGY_COLUMNS = (
    "sampled_inference_energy_j",
    "sampled_free_settling_sec",
    "sampled_plus_settling_sec",
    "sampled_minus_settling_sec",
    "sampled_sample_settling_energy_j",
    "sample_programming_energy_j",
    "sampled_epoch_settling_energy_j",
    "epoch_programming_energy_j",
    "epoch_write_sec",
    "sampled_epoch_chip_sec",
    "energy_samples",
    "batch_programming_energy_j",
    "batch_write_sec",
)

#: Sums of the running epoch the accounting keeps in ``RunState.running`` (checkpointed).
RUNNING_SUMS = {
    "energy_samples": 0,
    "minus_samples": 0,
    "free_settling_sec": 0.0,
    "plus_settling_sec": 0.0,
    "minus_settling_sec": 0.0,
    "inference_energy_j": 0.0,
    "settling_energy_j": 0.0,
    "programming_energy_j": 0.0,
    "write_sec": 0.0,
    "write_batches": 0,
}


@functools.lru_cache(maxsize=16)
def sampled_batches(n_batches: int, batch_size: int, settling_samples: int) -> tuple[int, ...]:
    """Indices of the mini-batches of an epoch whose phases are settled exactly, evenly spaced.

    Each contributes ``batch_size - 1`` samples (1 for a batch of one), so
    ``ceil(settling_samples / that)`` of the ``n_batches`` are taken, at most all.
    """
    if settling_samples == 0 or n_batches == 0:
        return ()
    per_batch = max(batch_size - 1, 1)
    k = min(n_batches, -(-settling_samples // per_batch))
    return tuple(int(b) for b in np.unique(np.linspace(0, n_batches - 1, k).round().astype(int)))


def _rows(nudge: Nudge, rows: np.ndarray) -> Nudge:
    """``nudge`` restricted to the samples ``rows`` (its per-sample arrays sliced)."""
    pick = lambda a: a if a is None or np.ndim(a) < 2 else np.asarray(a)[rows]  # noqa: E731
    return dataclasses.replace(nudge, targets_v=pick(nudge.targets_v), injected_a=pick(nudge.injected_a))


def phases_cost(
    circuit: Circuit,
    g_s: np.ndarray,
    states: tuple,
    nudges: tuple,
    capacitance_f: float,
    tolerance: float,
    limit: int,
    grid_points: int = ACCOUNTING_GRID_POINTS,
) -> dict:
    """Settling time and energy of the phases of up to ``limit`` samples of one mini-batch, summed.

    Parameters
    ----------
    circuit : Circuit
    g_s : numpy.ndarray
        The conductances the phases settled with, ``[edge]`` siemens.
    states : tuple of numpy.ndarray or None
        ``(free, plus, minus)`` states ``[batch, node]``, volts; ``minus`` may be None.
    nudges : tuple of Nudge
        What each of those phases applied.
    capacitance_f, tolerance : float
        Node capacitance (farads, > 0) and settling band (a fraction in (0, 1)).
    limit : int
        Most samples to settle.

    Returns
    -------
    dict
        Sums over the measured samples, keys of :data:`RUNNING_SUMS` (but the
        programming ones): ``energy_samples``, ``minus_samples``, ``*_settling_sec``,
        ``inference_energy_j`` (free phases) and ``settling_energy_j`` (all phases).
    """
    free = states[0]
    if len(free) == 1:  # the free phase starts from the rest state
        rows, start = np.array([0]), np.zeros_like(free)
    else:
        rows = np.arange(1, min(len(free), limit + 1))
        start = free[rows - 1]
    out = {"energy_samples": len(rows), "minus_samples": 0}
    cost = phase_cost(circuit, g_s, start, free[rows], capacitance_f, tolerance, FREE, grid_points)
    out["free_settling_sec"] = float(cost.settling_sec.sum())
    out["inference_energy_j"] = out["settling_energy_j"] = float(cost.energy_j.sum())
    for name, v, nudge in zip(("plus", "minus"), states[1:], nudges[1:]):
        if v is None:
            out[f"{name}_settling_sec"] = 0.0
            continue
        cost = phase_cost(circuit, g_s, free[rows], v[rows], capacitance_f, tolerance, _rows(nudge, rows), grid_points)
        out[f"{name}_settling_sec"] = float(cost.settling_sec.sum())
        out["settling_energy_j"] += float(cost.energy_j.sum())
        if name == "minus":
            out["minus_samples"] = len(rows)
    return out


def account_phases(session, state, phases) -> None:
    """Add the settling cost of a sampled mini-batch's phases to ``state.running`` (others: nothing)."""
    config = session.config
    c, e = config.network.node_capacitance_f, config.energy
    nudges = getattr(phases, "nudges", None)
    if c == 0 or nudges is None:
        return
    n_batches = -(-len(session.data.x_train) // config.training.batch_size)
    if state.batch_index not in sampled_batches(n_batches, config.training.batch_size, e.settling_samples):
        return
    left = e.settling_samples - state.running.get("energy_samples", 0)
    if left <= 0:
        return
    states = (phases.free, phases.plus, phases.minus)
    sums = phases_cost(session.circuit, session.engine.g_s, states, nudges, c, e.settling_tolerance, left)
    for key, value in sums.items():
        state.running[key] = state.running.get(key, 0) + value


def account_write(session, state, g_before_s: np.ndarray, g_after_s: np.ndarray, pulses: np.ndarray, equivalent=None) -> None:
    """Add the programming energy and write time of one mini-batch's update to ``state.running``
    (``equivalent``: :func:`programming_pulses` of the write when already known)."""
    device, scheme = session.config.device, session.config.energy.write_scheme
    n = programming_pulses(session.device, g_before_s, g_after_s, pulses) if equivalent is None else equivalent
    r = state.running
    r["programming_energy_j"] = r.get("programming_energy_j", 0.0) + write_energy_j(n, device.pulse_energy_j)
    r["write_sec"] = r.get("write_sec", 0.0) + write_time_sec(session.circuit, n, device.pulse_duration_sec, scheme)
    r["write_batches"] = r.get("write_batches", 0) + 1


def energy_metrics(running: dict) -> dict:
    """The epoch's :data:`ENERGY_COLUMNS` from its running sums (None where nothing was settled)."""
    r = {**RUNNING_SUMS, **running}
    n, seen = r["energy_samples"], max(r["seen"], 1)
    out = {
        "sample_programming_energy_j": r["programming_energy_j"] / seen,
        "epoch_programming_energy_j": r["programming_energy_j"],
        "epoch_write_sec": r["write_sec"],
        "energy_samples": n,
        "batch_programming_energy_j": r["programming_energy_j"] / max(r["write_batches"], 1),
        "batch_write_sec": r["write_sec"] / max(r["write_batches"], 1),
    }
    if n == 0:
        return {key: out.get(key) for key in ENERGY_COLUMNS}
    settle_sec = r["free_settling_sec"] + r["plus_settling_sec"] + r["minus_settling_sec"]
    minus = r["minus_settling_sec"] / r["minus_samples"] if r["minus_samples"] else None
    out |= {
        "sampled_inference_energy_j": r["inference_energy_j"] / n,
        "sampled_free_settling_sec": r["free_settling_sec"] / n,
        "sampled_plus_settling_sec": r["plus_settling_sec"] / n,
        "sampled_minus_settling_sec": minus,
        "sampled_sample_settling_energy_j": r["settling_energy_j"] / n,
        "sampled_epoch_settling_energy_j": r["settling_energy_j"] / n * r["seen"],
        "sampled_epoch_chip_sec": settle_sec / n * r["seen"] + r["write_sec"],
    }
    return {key: out[key] for key in ENERGY_COLUMNS}


def inference_cost(
    circuit: Circuit, g_s: np.ndarray, v_free: np.ndarray, capacitance_f: float, tolerance: float
) -> tuple[float, float]:
    """Mean energy (J) and latency (s) of one inference over consecutive free states ``v_free[sample, node]``.

    Sample k's free phase starts from sample k-1's free state, the first from the rest state (0 V).
    """
    start = np.vstack([np.zeros_like(v_free[:1]), v_free[:-1]])
    cost = phase_cost(circuit, g_s, start, v_free, capacitance_f, tolerance, FREE, ACCOUNTING_GRID_POINTS)
    return float(cost.energy_j.mean()), float(cost.settling_sec.mean())


#: Test samples ``eqspice eval`` settles in sequence for the energy and latency of an inference.
EVAL_SAMPLES = 64


def eval_inference_cost(session, g_s: np.ndarray, limit: int = EVAL_SAMPLES) -> tuple[float, float, int] | None:
    """Mean energy (J) and latency (s) of an inference over the first ``limit`` test samples, and their number.

    The session's engine must hold ``g_s``.  None when ``network.node_capacitance_f`` is 0 or the
    circuit has amplifiers (their settling is not modelled).
    """
    c = session.config.network.node_capacitance_f
    if c == 0 or session.circuit.amplifiers is not None:  # settling with amplifiers is not modelled
        return None
    x = session.data.x_test[:limit]
    v = session.engine.settle(session.inputs_v(x), phase="free (inference cost)", sample_ids=np.arange(len(x)))
    energy_j, latency_sec = inference_cost(session.circuit, g_s, v, c, session.config.energy.settling_tolerance)
    return energy_j, latency_sec, len(x)
