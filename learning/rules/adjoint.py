"""The exact loss gradient at the free steady state, by implicit differentiation.

The free state ``v0`` solves Kirchhoff's current law ``R(v, G) = 0`` on the free
nodes (``R_n`` is the current leaving free node n, amperes).  Differentiating
``R(v0(G), G) = 0`` gives ``dv0/dG = -J^-1 dR/dG`` with the Jacobian
``J = dR/dv`` (siemens), so for the loss ``L = |v_out - y|^2 / 2``

    dL/dG_e = lambda^T dR/dG_e,      J^T lambda = -dL/dv   (lambda in volts per siemens),

summed over the samples of a batch.  ``J`` is not symmetric when the couplings
are non-reciprocal, which is why the *transposed* system appears: ``lambda`` is
the response of the circuit with transposed Jacobian to the nudge
(``lambda = dv/dbeta`` of that circuit).

Two ways to the same numbers:

* :func:`adjoint_gradient`: dense linear algebra on the full Jacobian and the
  parameter Jacobian, the reference for gradient checks on small circuits;
* :class:`ImplicitGradient`, the training rule ``training.estimator =
  "implicit"``: the adjoint solved with the native engine's own block structure
  (hidden nodes diagonal given the outputs, a small Schur complement on the
  outputs: :meth:`eqspice.simulator.native.NativeEngine.solve_transposed_jacobian`)
  and contracted with the voltages by crossbar matrix products, so it runs at
  Fashion-MNIST scale.  It is not a local rule: the controller would need the
  transposed Jacobian of the whole circuit, which a chip cannot measure.  It
  is the reference for how much EP loses.

References
----------
Scellier et al., "Equilibrium Propagation for Non-Conservative Systems",
arXiv 2602.03670 (the adjoint that asymmetric EP estimates).
"""

from __future__ import annotations

import numpy as np

import math
from dataclasses import dataclass
from typing import Literal

from eqspice.circuits.netlist import TIGHT_OPTIONS
from eqspice.circuits.network import Circuit
from eqspice.learning.rules.asymmetric import mismatch_term
from eqspice.learning.rules.equilibrium import Phases, device_products, softmax_targets
from eqspice.simulator.engine import FREE, Engine
from eqspice.simulator.settling import phase_jacobian


def kcl_jacobian(circuit: Circuit, g_s: np.ndarray, v: np.ndarray, gmin_s: float = TIGHT_OPTIONS["gmin"]) -> np.ndarray:
    """``J[batch, n, m] = dR_n / dv_m`` on the free nodes at node voltages ``v[batch, node]``, siemens.

    ``R_n = sum_e (current leaving n through edge e) + diode currents + load``;
    edge e = (p, q) takes ``G (v_p - v_q) - a v_q`` out of p and
    ``G (v_q - v_p) + a v_p`` out of q, with ``a = delta_e G_e``: the free phase's
    :func:`eqspice.simulator.settling.phase_jacobian` (diode areas included).
    """
    return phase_jacobian(circuit, g_s, v, FREE, gmin_s)


def adjoint_response(
    circuit: Circuit, g_s: np.ndarray, v0: np.ndarray, targets_v: np.ndarray, dl_dv_out: np.ndarray | None = None, **kw
) -> np.ndarray:
    """``lambda[batch, node]`` (volts per siemens of nudge) solving ``J^T lambda = -dL/dv``; 0 on driven nodes.

    ``dl_dv_out[batch, output]`` is the loss's gradient in the output voltages;
    None is the squared error's, ``v_out - targets_v``.
    """
    jac = kcl_jacobian(circuit, g_s, v0, **kw)
    k = circuit.free_slice.start
    dl_dv = np.zeros((len(v0), len(circuit.free_nodes)))
    dl_dv[:, circuit.output_index - k] = v0[:, circuit.output_index] - targets_v if dl_dv_out is None else dl_dv_out
    lam = np.zeros_like(v0, dtype=float)
    lam[:, circuit.free_slice] = np.linalg.solve(np.transpose(jac, (0, 2, 1)), -dl_dv[..., None])[..., 0]
    return lam


def kcl_parameter_jacobian(circuit: Circuit, v: np.ndarray) -> np.ndarray:
    """``dR_n/dG_e[batch, n, e]`` on the free nodes at ``v[batch, node]``, volts.

    Edge e = (p, q): ``dR_p/dG_e = (v_p - v_q) - delta_e v_q`` and
    ``dR_q/dG_e = (v_q - v_p) + delta_e v_p`` (the mismatch scales with G).
    """
    v = np.atleast_2d(v)
    delta = np.zeros(circuit.n_edges) if circuit.nonreciprocal is None else circuit.nonreciprocal
    p, q = circuit.edges.T
    edge = np.arange(circuit.n_edges)
    full = np.zeros((len(v), len(circuit.node_names), circuit.n_edges))
    np.add.at(full, (slice(None), p, edge), v[:, p] - v[:, q] - delta * v[:, q])
    np.add.at(full, (slice(None), q, edge), v[:, q] - v[:, p] + delta * v[:, p])
    return full[:, circuit.free_slice, :]


def adjoint_gradient(
    circuit: Circuit, g_s: np.ndarray, v0: np.ndarray, targets_v: np.ndarray, dl_dv_out: np.ndarray | None = None, **kw
) -> np.ndarray:
    """Exact ``dL/dG[edge]`` (V^2/S) of ``L = sum over batch |v_out - y|^2 / 2`` at the free states ``v0``.

    The reference the EP estimates are checked against: implicit differentiation
    of Kirchhoff's law, ``dL/dG = lambda^T dKCL/dG`` with the adjoint ``lambda``
    solving ``J^T lambda = dL/dv`` (``J`` the KCL Jacobian at ``v0``).

    Parameters
    ----------
    circuit : Circuit
    g_s : ndarray, shape (n_edges,)
        Conductances, siemens.
    v0 : ndarray, shape (batch, node)
        Free-phase voltages, volts.
    targets_v : ndarray, shape (batch, output)
        Target voltages, volts.
    dl_dv_out : ndarray, shape (batch, output), optional
        Another loss's gradient in the output voltages (e.g. the cross-entropy's,
        :func:`output_gradient`); None is the squared error's.
    **kw
        ``gmin_s`` of the diodes, as in the engines.

    Returns
    -------
    ndarray, shape (n_edges,)
    """
    lam = adjoint_response(circuit, g_s, v0, targets_v, dl_dv_out, **kw)[:, circuit.free_slice]
    return np.einsum("bn,bne->e", lam, kcl_parameter_jacobian(circuit, v0))


def nudge_direction(circuit: Circuit, v0: np.ndarray, targets_v: np.ndarray, loss: str, scale_v: float) -> np.ndarray:
    """What EP's nudge pushes into each output per siemens of ``beta``, ``[batch, output]`` volts.

    ``y - v_out`` for the squared error, the step to the softmax targets
    (``-scale_v^2 dL/dv_out``, :func:`eqspice.learning.rules.equilibrium.softmax_targets`)
    for the cross-entropy: the right-hand side ``-dL/dv`` of the adjoint, in
    the scale EP estimates (``dL/dG``, resp. ``scale_v^2 dL/dG``).
    """
    v_out = v0[:, circuit.output_index]
    if loss == "cross_entropy":
        return softmax_targets(circuit, v0, targets_v, scale_v) - v_out
    return targets_v - v_out


@dataclass(frozen=True)
class ImplicitGradient:
    """The exact gradient at the free steady state, by implicit differentiation (not a local rule).

    One settled phase (the free one), then the adjoint ``J^T lambda = r`` with
    ``r`` EP's nudge direction (:func:`nudge_direction`) and
    ``dL/dG_e = sum over batch of (lambda_p - lambda_q)(v_p - v_q)
    + delta_e (lambda_q v_p - lambda_p v_q)`` (the second term only with
    non-reciprocal couplings).  It is what EP's centred estimate tends to as
    ``beta -> 0`` on a reciprocal circuit, in the same units: ``dL/dG`` (V^2/S)
    for the squared error, ``scale_v^2 dL/dG`` for the cross-entropy, so the
    same learning rate means the same step.

    With the native engine the adjoint is its layered block solve
    (:meth:`~eqspice.simulator.native.NativeEngine.solve_transposed_jacobian`);
    with another engine the dense reference (:func:`adjoint_response`, small circuits only).

    Parameters
    ----------
    loss : {"squared", "cross_entropy"}
    scale_v : float
        Cross-entropy: volts of class score per unit of logit (positive, finite).
    """

    loss: Literal["squared", "cross_entropy"] = "squared"
    scale_v: float = 0.01

    def __post_init__(self) -> None:
        if self.loss not in ("squared", "cross_entropy"):
            raise ValueError(f"ImplicitGradient.loss = {self.loss!r}: give 'squared' or 'cross_entropy'")
        if not (math.isfinite(self.scale_v) and self.scale_v > 0):
            raise ValueError(f"ImplicitGradient.scale_v = {self.scale_v!r}: give a positive finite voltage")

    def phases(self, engine: Engine, inputs_v, targets_v, sample_ids=None) -> Phases:
        free = engine.settle(inputs_v, sample_ids=sample_ids)
        return Phases(free, None, None, (FREE,), adjoint=self.adjoint(engine, free, targets_v))

    def adjoint(self, engine: Engine, free: np.ndarray, targets_v) -> np.ndarray:
        """``lambda[batch, node]`` at the free state ``free`` of the conductances loaded in ``engine``."""
        circuit = engine.circuit
        targets_v = np.broadcast_to(np.asarray(targets_v, dtype=float), (len(free), len(circuit.output_nodes)))
        r = nudge_direction(circuit, free, targets_v, self.loss, self.scale_v)
        lam = np.zeros_like(free)
        solve = getattr(engine, "solve_transposed_jacobian", None)
        if solve is None:
            return adjoint_response(circuit, engine.g_s, free, targets_v, -r, gmin_s=getattr(engine, "gmin_s", TIGHT_OPTIONS["gmin"]))
        rhs = np.zeros((len(free), len(circuit.free_nodes)))
        rhs[:, circuit.output_index - circuit.free_slice.start] = r
        lam[:, circuit.free_slice] = solve(free, rhs)
        return lam

    def gradient(self, circuit: Circuit, phases: Phases) -> np.ndarray:
        """``dL/dG[edge]`` summed over the batch (times ``scale_v^2`` for the cross-entropy), V^2/S."""
        out = device_products(circuit, phases.adjoint, phases.free)
        if circuit.nonreciprocal is not None:
            out += mismatch_term(circuit, phases.free, phases.adjoint)
        return out
