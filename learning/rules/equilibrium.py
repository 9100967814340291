"""Learning rules: what the controller computes from the voltages it reads.

For a resistive network the co-content is ``E = sum_e G_e (dv_e)^2 / 2``, so
``dE/dG_e = (dv_e)^2 / 2`` needs only the voltage across device e.  Equilibrium
propagation estimates the loss gradient from the free (beta = 0) and nudged
steady states:

* one-sided: ``dL/dG_e ~ [dE/dG_e(v_beta) - dE/dG_e(v_0)] / beta``;
* centred:   ``dL/dG_e ~ [dE/dG_e(v_beta) - dE/dG_e(v_-beta)] / (2 beta)``,
  whose error is O(beta^2) instead of O(beta).

For finite beta the one-sided contrast is the exact gradient of
``[F(beta) - F(0)] / beta`` ("Equilibrium Propagation Without Limits", arXiv 2511.22024).

References
----------
Scellier and Bengio, "Equilibrium Propagation", 2017.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from eqspice.circuits.amplifiers import edge_energy_weights
from eqspice.circuits.network import Circuit
from eqspice.simulator.engine import FREE, Engine, Nudge


def check_beta(rule: str, beta_s: float) -> None:
    """Refuse a nudge strength that is not a positive finite conductance, in one line."""
    if not (isinstance(beta_s, (int, float)) and math.isfinite(beta_s) and beta_s > 0):
        raise ValueError(f"{rule}.beta_s = {beta_s!r}: give a positive finite nudge strength in siemens")


def device_voltages(circuit: Circuit, v: np.ndarray) -> np.ndarray:
    """Voltage across every programmable device, ``dv[batch, edge] = v_a - v_b`` (volts)."""
    a, b = circuit.edges.T
    return v[:, a] - v[:, b]


def energy_gradient(circuit: Circuit, v: np.ndarray) -> np.ndarray:
    """``dE/dG_e = (dv_e)^2 / 2`` for every sample and device, V^2."""
    return 0.5 * device_voltages(circuit, v) ** 2


def output_loss(circuit: Circuit, v: np.ndarray, targets_v: np.ndarray) -> np.ndarray:
    """``L = |v_out - y|^2 / 2`` per sample, V^2."""
    return 0.5 * np.sum((v[:, circuit.output_index] - targets_v) ** 2, axis=1)


def energy_contrast(circuit: Circuit, v_a: np.ndarray, v_b: np.ndarray) -> np.ndarray:
    """``sum over batch of dE/dG_e(v_a) - dE/dG_e(v_b)`` per device, V^2.

    Computed as ``(dv_a - dv_b)(dv_a + dv_b) / 2`` (no cancellation between two
    large squares); on a crossbar the batch sum is two matrix products instead
    of a gather over every device.  With amplifiers between layers each device's
    term is weighted by its crossbar's share of the circuit's energy
    (:func:`eqspice.circuits.amplifiers.edge_energy_weights`), so the contrast stays
    the gradient of the free-energy difference.
    """
    out = device_products(circuit, v_a - v_b, v_a + v_b)
    out *= 0.5
    weights = edge_energy_weights(circuit)
    if weights is not None:
        out *= weights
    return out


def device_products(circuit: Circuit, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sum over batch of (x_p - x_q)(y_p - y_q)`` for every device e = (p, q) (units of x times y).

    On a crossbar group the batch sum is
    ``sum x_p y_p + sum x_q y_q - x_r^T y_c - y_r^T x_c``: two matrix products
    over the rows and columns instead of a gather over every device.  Rows
    on which ``x`` (or ``y``) is zero in every sample, e.g. the driven input
    lines for a difference of two phases or an adjoint, contribute exact zeros
    and are skipped: the input crossbar costs one product, written in place.
    """
    out = np.empty(circuit.n_edges)
    xy = np.einsum("bn,bn->n", x, y)
    for group in circuit.groups:
        if group.rows is not None:
            r, c = np.asarray(group.rows), np.asarray(group.cols)
            block = out[group.slice].reshape(len(r), len(c))
            x_r, y_r = x[:, r], y[:, r]
            if not x_r.any():  # xy[r] = 0 and x_r^T y_c = 0 exactly
                np.subtract(xy[c][None, :], y_r.T @ x[:, c], out=block)
            elif not y_r.any():
                np.subtract(xy[c][None, :], x_r.T @ y[:, c], out=block)
            else:
                np.add(xy[r][:, None], xy[c][None, :], out=block)
                block -= x_r.T @ y[:, c]
                block -= y_r.T @ x[:, c]
        else:
            a, b = circuit.edges[group.slice].T
            out[group.slice] = np.einsum("be,be->e", x[:, a] - x[:, b], y[:, a] - y[:, b])
    return out


@dataclass
class Phases:
    """Node voltages of the phases one update needs, each ``v[batch, node]`` in volts.

    Parameters
    ----------
    free : ndarray
        The free phase (no nudge).
    plus : ndarray
        The phase nudged by ``+beta``.
    minus : ndarray or None
        The phase nudged by ``-beta`` (centred estimators), else None.
    nudges : tuple of Nudge or None
        What each phase applied (free, plus, minus), for the energy and settling
        accounting; None if the rule does not say.
    adjoint : ndarray or None
        The adjoint response ``lambda[batch, node]`` (volts per siemens) of the
        exact-gradient rule (:class:`~eqspice.learning.rules.adjoint.ImplicitGradient`,
        whose ``plus`` is None), else None.
    """

    free: np.ndarray
    plus: np.ndarray | None
    minus: np.ndarray | None = None
    nudges: tuple | None = None
    adjoint: np.ndarray | None = None


class LearningRule(Protocol):
    def phases(self, engine: Engine, inputs_v, targets_v, sample_ids=None) -> Phases: ...

    def gradient(self, circuit: Circuit, phases: Phases) -> np.ndarray:
        """Estimate of ``dL/dG[edge]`` summed over the batch, V^2/S."""


@dataclass(frozen=True)
class EquilibriumPropagation:
    """Equilibrium propagation with a nudge of strength ``beta_s``, one-sided or centred.

    The nudge is a conductance ``beta_s`` from every output to its target;
    the estimate of the loss gradient per device is

    * one-sided: ``[dE/dG(v_beta) - dE/dG(v_0)] / beta``,
    * centred: ``[dE/dG(v_beta) - dE/dG(v_-beta)] / (2 beta)``,

    with ``dE/dG_e = dv_e^2 / 2`` (docs/physics.md, "Update rules").

    Parameters
    ----------
    beta_s : float
        Nudge strength, siemens (positive, finite).  A finite nudge is legitimate:
        the one-sided estimate is the exact gradient of ``[F(beta) - F(0)] / beta``.
    centred : bool
        Use the +beta and -beta phases (error O(beta^2)) instead of +beta and free (O(beta)).

    Examples
    --------
    >>> import numpy as np
    >>> from eqspice.circuits.network import CrossbarSpec, crossbar
    >>> from eqspice.simulator.native import NativeEngine
    >>> circuit = crossbar(CrossbarSpec(layers=(2, 3, 2)))
    >>> engine = NativeEngine()
    >>> engine.load(circuit, np.full(circuit.n_edges, 5e-5))
    >>> rule = EquilibriumPropagation(beta_s=1e-5)
    >>> phases = rule.phases(engine, np.ones((1, 4)), np.array([[0.05, -0.05]]))
    >>> rule.gradient(circuit, phases).shape == (circuit.n_edges,)
    True
    """

    beta_s: float
    centred: bool = True

    def __post_init__(self) -> None:
        check_beta(type(self).__name__, self.beta_s)

    def phases(self, engine: Engine, inputs_v, targets_v, sample_ids=None) -> Phases:
        plus = Nudge(targets_v=targets_v, beta_s=self.beta_s)
        nudges = [FREE, plus, plus.opposite()] if self.centred else [FREE, plus]
        v = engine.settle_phases(inputs_v, nudges, sample_ids=sample_ids)
        return Phases(v[0], v[1], v[2] if self.centred else None, tuple(nudges))

    def gradient(self, circuit: Circuit, phases: Phases) -> np.ndarray:
        """Estimate of ``dL/dG[edge]`` summed over the batch, V^2/S."""
        if self.centred:
            out = energy_contrast(circuit, phases.plus, phases.minus)
            out /= 2 * self.beta_s
            return out
        out = energy_contrast(circuit, phases.plus, phases.free)
        out /= self.beta_s
        return out


def _softmax_and_labels(circuit: Circuit, v: np.ndarray, targets_v: np.ndarray, scale_v: float) -> tuple:
    """Logits ``s / scale_v``, their softmax ``p`` and the one-hot labels (the classes whose target is highest)."""
    logits = v[:, circuit.output_index] @ circuit.readout.T / scale_v
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    class_targets = targets_v @ circuit.readout.T
    y = (class_targets == class_targets.max(axis=1, keepdims=True)).astype(float)
    return logits, p, y


def cross_entropy(circuit: Circuit, v: np.ndarray, targets_v: np.ndarray, scale_v: float) -> np.ndarray:
    """``-log p_label`` per sample (nats), ``p = softmax(s / scale_v)`` of the class scores."""
    logits, _, y = _softmax_and_labels(circuit, v, targets_v, scale_v)
    top = logits.max(axis=1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=1)) - np.sum(logits * y, axis=1)


def softmax_targets(circuit: Circuit, v_free: np.ndarray, targets_v: np.ndarray, scale_v: float) -> np.ndarray:
    """Output voltages one softmax step from the free state, ``[batch, output]`` volts.

    The class scores ``s = readout v_out`` (volts) are read in the free state;
    with ``p = softmax(s / scale_v)`` and the one-hot label ``y`` (the class
    whose target is highest), the result is
    ``v_out - scale_v * (p - y) readout = v_out - scale_v^2 dL/dv_out``.  A
    squared-error nudge towards it has, at the free state, the cross-entropy's
    gradient times ``scale_v^2``.
    """
    _, p, y = _softmax_and_labels(circuit, v_free, targets_v, scale_v)
    return v_free[:, circuit.output_index] - scale_v * ((p - y) @ circuit.readout)


def softmax_nudge_currents(circuit: Circuit, v_free: np.ndarray, targets_v: np.ndarray, beta_s: float, scale_v: float) -> np.ndarray:
    """Currents into the free nodes that nudge the outputs down the cross-entropy, ``[batch, free]`` amperes.

    Into output k: ``-beta * scale_v^2 * dL/dv_k``, i.e. ``beta`` times the
    step to :func:`softmax_targets`, the same size as a squared-error nudge
    with a ``scale_v`` error; zero elsewhere.
    """
    step = softmax_targets(circuit, v_free, targets_v, scale_v) - v_free[:, circuit.output_index]
    currents = np.zeros((len(v_free), len(circuit.free_nodes)))
    currents[:, circuit.output_index - circuit.free_slice.start] = beta_s * step
    return currents


@dataclass(frozen=True)
class CrossEntropyPropagation:
    """Centred EP on the softmax cross-entropy of the class scores.

    The controller reads the free state, computes ``p = softmax(s / scale_v)``
    and drives the outputs with the constant currents of
    :func:`softmax_nudge_currents`, ``+`` then ``-``.  A constant current is
    the nudge of the loss linearised at the free state, whose gradient is the
    cross-entropy's; the centred contrast estimates ``scale_v^2 dL/dG`` with an
    O(beta^2) error.

    Parameters
    ----------
    beta_s : float
        Nudge strength, siemens (positive, finite): the currents are ``beta_s``
        times the step to the softmax targets.
    scale_v : float
        Volts of class score per unit of logit (the softmax temperature; positive, finite).
    """

    beta_s: float
    scale_v: float

    def __post_init__(self) -> None:
        check_beta(type(self).__name__, self.beta_s)
        if not (math.isfinite(self.scale_v) and self.scale_v > 0):
            raise ValueError(f"CrossEntropyPropagation.scale_v = {self.scale_v!r}: give a positive finite voltage")

    def phases(self, engine: Engine, inputs_v, targets_v, sample_ids=None) -> Phases:
        circuit = engine.circuit
        free = engine.settle(inputs_v, sample_ids=sample_ids)
        currents = softmax_nudge_currents(circuit, free, targets_v, self.beta_s, self.scale_v)
        # both nudged phases in one call: the batch twice, with +currents then -currents
        ids = None if sample_ids is None else np.concatenate([sample_ids, sample_ids])
        twice = lambda a: np.concatenate([a, a])  # noqa: E731
        both = engine.settle(
            twice(np.asarray(inputs_v, dtype=float)), Nudge(injected_a=np.concatenate([currents, -currents])),
            phase="nudged (+/-beta)", sample_ids=ids, initial_v=twice(free),
        )  # fmt: skip
        nudges = (FREE, Nudge(injected_a=currents), Nudge(injected_a=-currents))
        return Phases(free, both[: len(free)], both[len(free) :], nudges)

    def gradient(self, circuit: Circuit, phases: Phases) -> np.ndarray:
        out = energy_contrast(circuit, phases.plus, phases.minus)
        out /= 2 * self.beta_s
        return out
