"""A native engine: batched damped Newton on the free nodes, in numpy.

Kirchhoff's current law at every free node n,

    sum_m G_nm (v_n - v_m) + sum_d s_dn I_d(v_anode - v_cathode)
        + G_load v_n + beta (v_n - y_n) = 0,

(``s_dn = +1`` if n is the diode's anode, -1 if its cathode) is solved for all
samples of a batch at once.  The diode current is ngspice's
(:func:`simulator.diode.diode_current`, GMIN included), so both engines settle
the same circuit to the same voltages.  Newton steps are limited to
``max_step_v`` per node, the same role junction-voltage limiting plays in SPICE.
"""

from __future__ import annotations

import numpy as np

from circuits.netlist import TIGHT_OPTIONS
from circuits.network import Circuit
from simulator.diode import diode_current
from simulator.engine import ConvergenceError, EngineError


class NativeEngine:
    """Dense batched Newton solver for circuits with up to a few thousand free nodes.

    Parameters
    ----------
    gmin_s : conductance across every diode junction, siemens (ngspice's GMIN).
    tol_a : KCL residual at which a sample counts as settled, amperes.
    max_iter : Newton iterations before :class:`ConvergenceError`.
    max_step_v : largest change of one node voltage in one Newton step, volts.
    """

    name = "native"

    def __init__(
        self,
        gmin_s: float = TIGHT_OPTIONS["gmin"],
        tol_a: float = 1e-16,
        max_iter: int = 200,
        max_step_v: float = 0.1,
    ) -> None:
        self.gmin_s = gmin_s
        self.tol_a = tol_a
        self.max_iter = max_iter
        self.max_step_v = max_step_v
        self.circuit: Circuit | None = None

    def load(self, circuit: Circuit, g_s: np.ndarray) -> None:
        self.circuit = circuit
        n_known = len(circuit.input_nodes) + len(circuit.fixed_nodes)
        self._n_known = n_known
        self._n_free = len(circuit.free_nodes)
        self._fixed_v = np.array(circuit.fixed_volts, dtype=float)
        self._out = circuit.output_index - n_known
        # diode endpoints as indices into [known..., free..., ground]
        self._diodes = circuit.diodes.copy()
        self._diodes[self._diodes < 0] = len(circuit.node_names)
        self.set_conductances(g_s)

    def set_conductances(self, g_s: np.ndarray) -> None:
        c = self.circuit
        if c is None:
            raise EngineError("no circuit loaded; call load(circuit, g_s) first")
        g_s = np.asarray(g_s, dtype=float)
        n = len(c.node_names)
        a, b = c.edges.T
        laplacian = np.zeros((n, n))
        np.add.at(laplacian, (a, b), -g_s)
        np.add.at(laplacian, (b, a), -g_s)
        np.add.at(laplacian, (a, a), g_s)
        np.add.at(laplacian, (b, b), g_s)
        k, f = self._n_known, c.free_slice
        self._l_ff = laplacian[f, f].copy()
        self._l_ff[self._out, self._out] += c.output_load_s
        self._l_fk = laplacian[f, :k].copy()
        self.g_s = g_s.copy()

    def settle(
        self,
        inputs_v: np.ndarray,
        targets_v: np.ndarray | None = None,
        beta_s: float = 0.0,
        *,
        phase: str = "free",
        sample_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        c = self.circuit
        if c is None:
            raise EngineError("no circuit loaded; call load(circuit, g_s) first")
        inputs_v = np.atleast_2d(np.asarray(inputs_v, dtype=float))
        batch = inputs_v.shape[0]
        known = np.hstack([inputs_v, np.broadcast_to(self._fixed_v, (batch, len(self._fixed_v)))])
        jac0 = self._l_ff.copy()
        rhs = -known @ self._l_fk.T  # current pushed into free nodes by known ones
        if beta_s != 0:
            targets_v = np.atleast_2d(np.asarray(targets_v, dtype=float))
            jac0[self._out, self._out] += beta_s
            rhs[:, self._out] += beta_s * targets_v
        v_free = np.linalg.solve(jac0, rhs.T).T  # the linear network, diodes open
        if len(self._diodes):
            v_free = self._newton(v_free, known, jac0, rhs, phase, sample_ids)
        return np.hstack([known, v_free])

    def _newton(self, v_free, known, jac0, rhs, phase, sample_ids):
        batch = v_free.shape[0]
        anode, cathode = self._diodes.T
        k, n_free = self._n_known, self._n_free
        ground = np.zeros((batch, 1))
        # incidence of diodes on free nodes: +1 at the anode, -1 at the cathode
        inc = np.zeros((n_free, len(self._diodes)))
        for d, (a, c_) in enumerate(self._diodes):
            if k <= a < k + n_free:
                inc[a - k, d] += 1.0
            if k <= c_ < k + n_free:
                inc[c_ - k, d] -= 1.0
        for _ in range(self.max_iter):
            v_all = np.hstack([known, v_free, ground])
            i_d, g_d = diode_current(v_all[:, anode] - v_all[:, cathode], self.circuit.diode_model, self.gmin_s)
            residual = v_free @ jac0.T - rhs + i_d @ inc.T
            jac = jac0 + np.einsum("nd,bd,md->bnm", inc, g_d, inc)
            step = np.linalg.solve(jac, residual[..., None])[..., 0]
            scale = np.minimum(1.0, self.max_step_v / np.maximum(np.abs(step).max(axis=1, keepdims=True), 1e-300))
            v_free = v_free - scale * step
            if np.all((np.abs(residual).max(axis=1) < self.tol_a) | (np.abs(step).max(axis=1) < 1e-13)):
                return v_free
        worst = int(np.argmax(np.abs(residual).max(axis=1)))
        sid = worst if sample_ids is None else sample_ids[worst]
        raise ConvergenceError(f"native Newton did not converge in the {phase} phase of sample {sid}")

    def close(self) -> None:
        pass
