"""Asymmetric equilibrium propagation: the exact gradient of a non-reciprocal circuit.

With non-reciprocal couplings (``K = S + A``, :func:`eqspice.circuits.network.with_nonreciprocal`)
the circuit minimises no energy and plain EP is biased.  Asymmetric EP keeps the
free phase and changes the two learning phases (+beta and -beta) to

    C dv/dt = -R(v) - beta (v_out - y) - 2 A (v - v0),

with ``A`` the antisymmetric part of the coupling between free nodes (the
antisymmetric part of the Jacobian of the dynamics at the free state ``v0``;
diodes add only to its symmetric part).  Their linearisation at ``v0`` is
``-J^T``, so ``lambda = (v_+beta - v_-beta) / (2 beta)`` is the adjoint response
of :mod:`eqspice.learning.rules.adjoint`, to O(beta^2), and
``dL/dG_e = lambda^T dR/dG_e`` at ``v0``.

On a chip: ``-2 A (v - v0)`` is the antisymmetric VCCS pair of every free-free
coupling with its sign reversed, plus constant currents ``2 A v0`` that the
controller computes from the free-phase voltages it read and injects, so the
beta = 0 state of the learning circuit is ``v0`` itself
(:func:`correction_currents`).  The update of device e stays local: the
centred EP contrast of the learning phases (the ``(lambda_p - lambda_q) dv_e``
term) plus, for its own mismatch ``delta_e``,
``delta_e (lambda_q v0_p - lambda_p v0_q)``, i.e. the voltages at its two
terminals in the three phases.

References
----------
Scellier et al., "Equilibrium Propagation for Non-Conservative Systems",
arXiv 2602.03670 (Asymmetric EP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from eqspice.circuits.amplifiers import edge_energy_weights
from eqspice.circuits.netlist import free_free_edges
from eqspice.circuits.network import Circuit, antisymmetric_coupling
from eqspice.learning.rules.equilibrium import Phases, check_beta, energy_contrast, softmax_nudge_currents
from eqspice.simulator.engine import FREE, Engine, Nudge


def correction_currents(circuit: Circuit, g_s: np.ndarray, v0: np.ndarray) -> np.ndarray:
    """``2 A v0``: current into every free node (amperes, ``[batch, free]``) that keeps ``v0`` settled.

    For a free-free edge (p, q) with ``a = delta_e G_e``: ``+2 a v0_q`` into p
    and ``-2 a v0_p`` into q, exactly what the reversed VCCS pair fails to
    deliver at ``v0``.
    """
    if circuit.amplifiers is not None:
        return amplifier_correction_currents(circuit, g_s, v0)
    a_s = antisymmetric_coupling(circuit, g_s)
    ff = np.flatnonzero(free_free_edges(circuit) & (a_s != 0))
    p, q = circuit.edges[ff].T
    n = len(circuit.node_names)
    twice_a = sp.csr_matrix(
        (np.concatenate([2 * a_s[ff], -2 * a_s[ff]]), (np.concatenate([p, q]), np.concatenate([q, p]))), shape=(n, n)
    )
    return np.asarray(twice_a @ v0.T).T[:, circuit.free_slice]


def _amplifier_edges(circuit: Circuit):
    """Edges from an amplifier output: edge index, amplifier j, hidden node h and other end m (node indices)."""
    first = circuit.free_slice.stop
    a, b = circuit.edges.T
    edge = np.flatnonzero(a >= first)  # a crossbar's rows are the amplifier outputs
    j = a[edge] - first
    return edge, j, circuit.amplifiers.source[j], b[edge]


def amplifier_correction_currents(circuit: Circuit, g_s: np.ndarray, v0: np.ndarray) -> np.ndarray:
    """Currents into the free nodes (amperes, ``[batch, free]``) that keep ``v0`` settled in the learning
    circuit whose amplifiers have the learning gains ``(A', B')`` (:meth:`Amplifiers.learning_gains`).

    Per device G from amplifier j (input h) to node m: ``-(A'_j - A_j) G v0_h`` into m and
    ``-(B'_j - B_j) G v0_m`` into h, what the changed gains fail to deliver at ``v0``
    (``A' B' = A B``, so the hidden node's own conductance is unchanged).
    """
    amplifiers = circuit.amplifiers
    forward, backward = amplifiers.learning_gains()
    edge, j, h, m = _amplifier_edges(circuit)
    g = np.asarray(g_s, dtype=float)[edge]
    out = np.zeros((len(v0), len(circuit.node_names)))
    np.add.at(out, (slice(None), m), -(forward - amplifiers.forward_gain)[j] * g * v0[:, h])
    np.add.at(out, (slice(None), h), -(backward - amplifiers.backward_gain)[j] * g * v0[:, m])
    return out[:, circuit.free_slice]


def amplifier_term(circuit: Circuit, v0: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``sum over batch of w_m (A'_j - A_j) v0_h (lambda_m - A'_j lambda_h)`` per device from amplifier j
    (V^2/S; zero elsewhere): the learning phases read ``A'_j v_h`` at the amplifier output where
    ``dR/dG`` holds ``A_j v_h``."""
    out = np.zeros(circuit.n_edges)
    amplifiers = circuit.amplifiers
    if amplifiers is None or amplifiers.conservative:
        return out
    forward, _ = amplifiers.learning_gains()
    edge, j, h, m = _amplifier_edges(circuit)
    a_learn = forward[j]
    cross = np.einsum("be,be->e", v0[:, h], lam[:, m] - a_learn * lam[:, h])
    out[edge] = (a_learn - amplifiers.forward_gain[j]) * cross
    return out * edge_energy_weights(circuit)


def mismatch_term(circuit: Circuit, v0: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``sum over batch of delta_e (lambda_q v0_p - lambda_p v0_q)`` per edge (V^2/S): dR/dG through A."""
    if circuit.nonreciprocal is None:
        return np.zeros(circuit.n_edges)
    cross = np.empty(circuit.n_edges)
    for group in circuit.groups:
        if group.rows is not None:  # crossbar: two matrix products instead of a gather per device
            r, c = np.asarray(group.rows), np.asarray(group.cols)
            cross[group.slice] = (v0[:, r].T @ lam[:, c] - lam[:, r].T @ v0[:, c]).ravel()
        else:
            p, q = circuit.edges[group.slice].T
            cross[group.slice] = np.einsum("be,be->e", lam[:, q], v0[:, p]) - np.einsum("be,be->e", lam[:, p], v0[:, q])
    return circuit.nonreciprocal * cross


@dataclass(frozen=True)
class AsymmetricEquilibriumPropagation:
    """Asymmetric EP with nudges +beta_s and -beta_s (siemens).

    The correction currents need the antisymmetric coupling ``a = delta G``:
    the controller takes the circuit and conductances loaded in the engine
    (``engine.circuit``, ``engine.g_s``), i.e. it knows its chip's calibrated
    mismatch.  On a reciprocal circuit it is centred EP, phase for phase.

    With ``scale_v`` the loss is the softmax cross-entropy of the class scores:
    the learning phases are nudged by the constant currents of
    :func:`~eqspice.learning.rules.equilibrium.softmax_nudge_currents`, ``+``
    then ``-``, on top of the correction currents, and the estimate is
    ``scale_v^2 dL/dG``, as :class:`~eqspice.learning.rules.equilibrium.CrossEntropyPropagation`'s.

    Parameters
    ----------
    beta_s : float
        Nudge strength, siemens (positive, finite).
    scale_v : float or None
        Cross-entropy: volts of class score per unit of logit; None: the squared error.

    References
    ----------
    "Equilibrium Propagation for Non-Conservative Systems" (the correction of
    EP for non-reciprocal couplings); docs/physics.md, "Non-reciprocal couplings".
    """

    beta_s: float
    scale_v: float | None = None

    def __post_init__(self) -> None:
        check_beta(type(self).__name__, self.beta_s)
        if self.scale_v is not None and not (math.isfinite(self.scale_v) and self.scale_v > 0):
            raise ValueError(f"AsymmetricEquilibriumPropagation.scale_v = {self.scale_v!r}: give a positive finite voltage or None")

    def phases(self, engine: Engine, inputs_v, targets_v, sample_ids=None) -> Phases:
        circuit = engine.circuit
        free = engine.settle(inputs_v, sample_ids=sample_ids)
        if circuit.conservative:
            correction, sign, names = None, 1.0, None
        else:  # the learning circuit: A reversed, its beta = 0 state held at the free state by injected currents
            correction, sign = correction_currents(circuit, engine.g_s, free), -1.0
            names = ["learning (+beta, A reversed)", "learning (-beta, A reversed)"]
        if self.scale_v is None:
            plus = Nudge(targets_v=targets_v, beta_s=self.beta_s, injected_a=correction, antisymmetric_sign=sign)
            minus = plus.opposite()
        else:
            nudge = softmax_nudge_currents(circuit, free, targets_v, self.beta_s, self.scale_v)
            base = 0.0 if correction is None else correction
            plus = Nudge(injected_a=base + nudge, antisymmetric_sign=sign)
            minus = Nudge(injected_a=base - nudge, antisymmetric_sign=sign)
        plus_v, minus_v = engine.settle_phases(inputs_v, [plus, minus], phases=names, sample_ids=sample_ids, initial_v=free)
        return Phases(free, plus_v, minus_v, (FREE, plus, minus))

    def gradient(self, circuit: Circuit, phases: Phases) -> np.ndarray:
        """Estimate of ``dL/dG[edge]`` summed over the batch, V^2/S."""
        symmetric = energy_contrast(circuit, phases.plus, phases.minus) / (2 * self.beta_s)
        lam = (phases.plus - phases.minus) / (2 * self.beta_s)
        return symmetric + mismatch_term(circuit, phases.free, lam) + amplifier_term(circuit, phases.free, lam)
