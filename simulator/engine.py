"""The interface every engine implements, and the errors engines raise.

An engine holds one circuit with its conductances and settles it for a batch of
input voltages, optionally nudged towards target voltages:

* free phase: ``settle(inputs_v)``;
* nudged phase: ``settle(inputs_v, targets_v, beta_s)``, the circuit then
  minimises ``E(v) + beta * |v_out - y|^2 / 2`` (docs/physics.md, "The nudge");
* the -beta phase of the centred estimator: ``beta_s < 0``.

It returns the voltage of every node of ``circuit.node_names``, shaped
``v[batch, node]``, in volts.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp

from eqspice.circuits.network import Circuit


class EngineError(RuntimeError):
    """An engine could not settle a sample; the message names sample and phase."""


class SimulatorCrash(EngineError):
    """The simulator process died or hung; the engine has started a fresh one."""


class ConvergenceError(EngineError):
    """The operating point did not converge, even with gmin and source stepping."""


class Engine(Protocol):
    name: str

    def load(self, circuit: Circuit, g_s: np.ndarray) -> None:
        """Take ``circuit`` with conductances ``g_s[edge]`` (siemens)."""

    def set_conductances(self, g_s: np.ndarray) -> None:
        """Write new conductances into the loaded circuit."""

    def settle(
        self,
        inputs_v: np.ndarray,
        targets_v: np.ndarray | None = None,
        beta_s: float = 0.0,
        *,
        phase: str = "free",
        sample_ids: np.ndarray | None = None,
        initial_v: np.ndarray | None = None,
        antisymmetric_sign: float = 1.0,
        injected_a: np.ndarray | None = None,
    ) -> np.ndarray:
        """Steady-state node voltages ``v[batch, node]`` for ``inputs_v[batch, input]``.

        ``phase`` and ``sample_ids`` name the work in error messages;
        ``initial_v`` (e.g. the free state before a nudged phase) may serve an
        engine as a starting point and never changes the answer.
        ``antisymmetric_sign = -1`` reverses the antisymmetric (non-reciprocal)
        couplings between free nodes and ``injected_a[batch, free]`` adds constant
        currents into the free nodes, amperes: the learning phases of asymmetric
        EP (:mod:`eqspice.learning.rules.asymmetric`).  A reciprocal circuit ignores the sign.
        """

    def settle_phases(
        self,
        inputs_v: np.ndarray,
        targets_v: np.ndarray | None,
        betas_s: list[float],
        *,
        sample_ids: np.ndarray | None = None,
        phases: list[str] | None = None,
        antisymmetric_sign: float = 1.0,
        injected_a: np.ndarray | None = None,
        initial_v: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """``v[batch, node]`` for each nudge strength in ``betas_s`` (0 is the free phase).

        ``antisymmetric_sign``, ``injected_a`` and ``initial_v`` apply to every
        phase, as in :meth:`settle`.
        """

    def close(self) -> None:
        """Release the engine's resources."""


def batch_arrays(circuit: Circuit | None, inputs_v, targets_v, sample_ids):
    """``inputs_v[batch, input]``, ``targets_v[batch, output]`` (0 V if None) and sample ids, as arrays."""
    if circuit is None:
        raise EngineError("no circuit loaded; call load(circuit, g_s) first")
    inputs_v = np.atleast_2d(np.asarray(inputs_v, dtype=float))
    batch = inputs_v.shape[0]
    if targets_v is None:
        targets_v = np.zeros((batch, len(circuit.output_nodes)))
    targets_v = np.atleast_2d(np.asarray(targets_v, dtype=float))
    ids = np.arange(batch) if sample_ids is None else np.asarray(sample_ids)
    return inputs_v, targets_v, ids


def phase_name(beta_s: float) -> str:
    if beta_s == 0:
        return "free"
    return "nudged (+beta)" if beta_s > 0 else "nudged (-beta)"


def settle_each_phase(
    engine: Engine,
    inputs_v: np.ndarray,
    targets_v: np.ndarray | None,
    betas_s: list[float],
    *,
    sample_ids: np.ndarray | None = None,
    phases: list[str] | None = None,
    initial_v: np.ndarray | None = None,
    **learning,
) -> list[np.ndarray]:
    """Settle the phases one after another, each nudged phase started from the free state.

    ``initial_v`` (e.g. a free state settled before) starts every phase;
    ``learning`` (``antisymmetric_sign``, ``injected_a``) goes to every ``settle``.
    """
    names = phases or [phase_name(b) for b in betas_s]
    out: list[np.ndarray] = []
    free = initial_v
    for beta, name in zip(betas_s, names):
        v = engine.settle(inputs_v, targets_v, beta, phase=name, sample_ids=sample_ids, initial_v=free, **learning)
        if beta == 0 and free is None:
            free = v
        out.append(v)
    return out


def free_end_incidence(ends: np.ndarray, first_free: int, n_free: int) -> sp.csr_matrix:
    """``(n_free, len(ends))`` signed incidence of two-terminal elements on the free nodes.

    Element e runs from node ``ends[e, 0]`` (entry +1) to ``ends[e, 1]`` (entry -1);
    ends outside the free nodes ``first_free .. first_free + n_free - 1`` (known
    nodes, ground) have no entry.
    """
    ends = np.asarray(ends).reshape(-1, 2)
    free = (ends >= first_free) & (ends < first_free + n_free)
    rows, cols, signs = [], [], []
    for col, sign in ((0, 1.0), (1, -1.0)):
        hit = np.flatnonzero(free[:, col])
        rows.append(ends[hit, col] - first_free)
        cols.append(hit)
        signs.append(np.full(hit.size, sign))
    return sp.csr_matrix(
        (np.concatenate(signs), (np.concatenate(rows), np.concatenate(cols))), shape=(n_free, len(ends))
    )
