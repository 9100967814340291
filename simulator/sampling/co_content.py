"""The co-content of a noisy circuit's batch on its free nodes: what every native sampler moves on."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from eqspice.circuits.network import Circuit
from eqspice.simulator.diode import diode_current, thermal_voltage
from eqspice.simulator.engine import BatchPhase, EngineError, Nudge, batch_arrays, free_end_incidence

#: free nodes up to which the co-content's gradient uses dense matrices (8 n^2 bytes)
DENSE_FREE_NODES_MAX = 2000


class SamplingError(EngineError):
    """The sampler cannot run this circuit with this noise spec; the message says why and what to change."""


def sampled_phase(circuit: Circuit, inputs_v, nudge: Nudge) -> BatchPhase:
    """``inputs_v`` and ``nudge`` checked for a sampler, which models the nudge conductance and targets only.

    Parameters
    ----------
    circuit : Circuit
    inputs_v : numpy.ndarray
        Input voltages ``[batch, input]``, volts.
    nudge : Nudge
        Targets and ``beta_s`` of the phase.

    Returns
    -------
    BatchPhase

    Raises
    ------
    SamplingError
        The nudge injects currents or reverses the antisymmetric couplings.
    """
    if nudge.injected_a is not None or nudge.antisymmetric_sign != 1:
        raise SamplingError(
            "the noise samplers model a nudge's targets_v and beta_s only; "
            "Nudge.injected_a and antisymmetric_sign = -1 need the noiseless engines"
        )
    return BatchPhase.of(circuit, inputs_v, nudge)


class CoContent:
    """The co-content ``E + beta L`` of a batch on the free nodes, and its gradient.

    ``E(v) = v^T H v / 2 - b^T v + const + diode co-content`` (watts), with
    ``H`` the conductance matrix of the free nodes (memristors, loads, nudge)
    and ``b[batch, free]`` the currents the sources and targets push in.
    """

    def __init__(self, circuit: Circuit, g_s: np.ndarray, inputs_v, targets_v, beta_s: float, gmin_s: float):
        inputs_v, targets_v, _ = batch_arrays(circuit, inputs_v, targets_v, None)
        self.circuit, self.gmin_s = circuit, gmin_s
        n = len(circuit.node_names)
        k = circuit.free_slice.start
        a, b = circuit.edges.T
        g = np.asarray(g_s, dtype=float)
        lap = sp.coo_matrix(
            (np.concatenate([g, g, -g, -g]), (np.concatenate([a, b, a, b]), np.concatenate([a, b, b, a]))), shape=(n, n)
        ).tocsr()
        out = circuit.output_index - k
        extra = np.zeros(n - k)
        extra[out] += circuit.output_load_s + beta_s
        self.h = (lap[k:, k:] + sp.diags(extra)).tocsr()
        self.known = np.hstack([inputs_v, np.broadcast_to(np.array(circuit.fixed_volts), (len(inputs_v), k - inputs_v.shape[1]))])
        self.b = -(lap[k:, :k] @ self.known.T).T
        self.b[:, out] += beta_s * targets_v
        d = circuit.diodes.copy()
        d[d < 0] = n
        self._diodes = d
        # diode ends as columns of [free..., the few known nodes and ground the diodes touch]
        touched = np.unique(d[(d < k) | (d == n)])
        known_ext = np.hstack([self.known, np.zeros((len(self.known), 1))])
        self._diode_known = known_ext[:, np.where(touched == n, k, touched)] if touched.size else known_ext[:, :0]
        column = {int(node): n - k + j for j, node in enumerate(touched)}
        self._diode_cols = np.vectorize(lambda i: i - k if k <= i < n else column[int(i)], otypes=[int])(d) if len(d) else d
        self._incidence = free_end_incidence(d, k, n - k)
        # the sampler takes hundreds of steps per phase: small systems go through dense products,
        # which cost less than building sparse results step after step
        dense = n - k <= DENSE_FREE_NODES_MAX
        self._h_t = self.h.T.toarray() if dense else self.h.T.tocsr()
        self._inc_t = self._incidence.T.toarray() if dense else self._incidence.T.tocsr()
        self._inc_abs_t = abs(self._inc_t)

    def gradient(self, v_free: np.ndarray) -> np.ndarray:
        """``dE/dv[batch, free]``, amperes: the net current leaving each free node."""
        return self.gradient_and_diode_diagonal(v_free)[0]

    def gradient_and_diode_diagonal(self, v_free: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
        """``dE/dv`` (A) and the diodes' share of the Hessian diagonal (S; 0 without diodes)."""
        grad = v_free @ self._h_t - self.b
        if not len(self._diodes):
            return grad, 0.0
        v_ext = np.hstack([v_free, self._diode_known])
        anode, cathode = self._diode_cols.T
        i_d, g_d = self._diode(v_ext[:, anode] - v_ext[:, cathode])
        grad += i_d @ self._inc_t
        return grad, g_d @ self._inc_abs_t


    def _diode(self, v_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ngspice's diode current and conductance; the forward (Shockley) branch inline, as it is the common one."""
        model = self.circuit.diode_model
        vte = model.n * thermal_voltage()
        if v_d.min() < -3.0 * vte:
            return diode_current(v_d, model, self.gmin_s)
        ev = model.is_a * np.exp(v_d / vte)
        return ev - model.is_a + self.gmin_s * v_d, ev / vte + self.gmin_s


