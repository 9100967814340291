"""The exact loss gradient at the free steady state, by implicit differentiation.

The free state ``v0`` solves Kirchhoff's current law ``R(v, G) = 0`` on the free
nodes (``R_n`` is the current leaving free node n, amperes).  Differentiating
``R(v0(G), G) = 0`` gives ``dv0/dG = -J^-1 dR/dG`` with the Jacobian
``J = dR/dv`` (siemens), so for the loss ``L = |v_out - y|^2 / 2``

    dL/dG_e = lambda^T dR/dG_e,      J^T lambda = -dL/dv   (lambda in volts per siemens),

summed over the samples of a batch.  ``J`` is not symmetric when the couplings
are non-reciprocal, which is why the *transposed* system appears: ``lambda`` is
the response of the circuit with transposed Jacobian to the nudge
(``lambda = dv/dbeta`` of that circuit).  Dense linear algebra: meant as a
reference for gradient checks on small circuits, not for training.

References
----------
Scellier et al., "Equilibrium Propagation for Non-Conservative Systems",
arXiv 2602.03670 (the adjoint that asymmetric EP estimates).
"""

from __future__ import annotations

import numpy as np

from eqspice.circuits.netlist import TIGHT_OPTIONS
from eqspice.circuits.network import Circuit
from eqspice.simulator.engine import FREE
from eqspice.simulator.settling import phase_jacobian


def kcl_jacobian(circuit: Circuit, g_s: np.ndarray, v: np.ndarray, gmin_s: float = TIGHT_OPTIONS["gmin"]) -> np.ndarray:
    """``J[batch, n, m] = dR_n / dv_m`` on the free nodes at node voltages ``v[batch, node]``, siemens.

    ``R_n = sum_e (current leaving n through edge e) + diode currents + load``;
    edge e = (p, q) takes ``G (v_p - v_q) - a v_q`` out of p and
    ``G (v_q - v_p) + a v_p`` out of q, with ``a = delta_e G_e``: the free phase's
    :func:`eqspice.simulator.settling.phase_jacobian` (diode areas included).
    """
    return phase_jacobian(circuit, g_s, v, FREE, gmin_s)


def adjoint_response(circuit: Circuit, g_s: np.ndarray, v0: np.ndarray, targets_v: np.ndarray, **kw) -> np.ndarray:
    """``lambda[batch, node]`` (volts per siemens of nudge) solving ``J^T lambda = -dL/dv``; 0 on driven nodes."""
    jac = kcl_jacobian(circuit, g_s, v0, **kw)
    k = circuit.free_slice.start
    dl_dv = np.zeros((len(v0), len(circuit.free_nodes)))
    dl_dv[:, circuit.output_index - k] = v0[:, circuit.output_index] - targets_v
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


def adjoint_gradient(circuit: Circuit, g_s: np.ndarray, v0: np.ndarray, targets_v: np.ndarray, **kw) -> np.ndarray:
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
    **kw
        ``gmin_s`` of the diodes, as in the engines.

    Returns
    -------
    ndarray, shape (n_edges,)
    """
    lam = adjoint_response(circuit, g_s, v0, targets_v, **kw)[:, circuit.free_slice]
    return np.einsum("bn,bne->e", lam, kcl_parameter_jacobian(circuit, v0))
