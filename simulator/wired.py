"""Exact elimination of a crossbar's resistive lines onto the circuit's free nodes.

The memristors, wire segments, driver resistors and output loads form a linear
network; the only nonlinear elements (diodes) sit on circuit nodes.  With the
node voltages split into known ones k (inputs, fixed sources), free ones f
(hidden, outputs) and the line nodes i (:mod:`eqspice.circuits.wires`),
Kirchhoff's current law of the linear part reads ``Y v = currents``, and the
line nodes, which nothing but the linear network touches, obey
``Y_ik v_k + Y_if v_f + Y_ii v_i = 0``.  Eliminating them leaves, exactly,

    Y_red_ff = Y_ff - Y_fi Y_ii^-1 Y_if,    Y_red_fk = Y_fk - Y_fi Y_ii^-1 Y_ik,

a dense ``n_free x n_free`` network between the free nodes (plus a drive from the
known ones) that the Newton loop of :class:`~eqspice.simulator.native.NativeEngine`
solves like an ideal crossbar.  ``Y_ii`` depends on the conductances only, so one
sparse LU factorisation per conductance update serves every sample and phase of
a batch; the line voltages ``v_i = -Y_ii^-1 (Y_ik v_k + Y_if v_f)`` follow from the
settled circuit nodes by one more solve per sample.

Cost: the factorisation of ``Y_ii`` per crossbar plus ``n_free`` triangular solves
(transposed, so non-reciprocal couplings are exact too); measured in
``python -m benchmarks.wires``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from eqspice.circuits.netlist import antisymmetric_gains
from eqspice.circuits.network import Circuit
from eqspice.circuits.wires import wire_network

#: Right-hand sides per triangular solve (memory: COLUMNS x line nodes x 8 bytes).
COLUMNS = 32


def linear_admittance(circuit: Circuit, g_s: np.ndarray, ends: np.ndarray, wire_s: np.ndarray, wire_ends: np.ndarray, n: int) -> sp.csr_matrix:
    """``Y[n, n]`` (siemens): current leaving each node per volt, of memristors (with their
    antisymmetric VCCS), wire resistors and output loads; ground is dropped.

    A memristor ``G`` at ``ends[e] = (p, q)`` with antisymmetric part ``a`` adds
    ``Y_pp = Y_qq = G``, ``Y_pq = -(G + a)``, ``Y_qp = -(G - a)``.
    """
    a_s = antisymmetric_gains(circuit, g_s) if circuit.nonreciprocal is not None else np.zeros(circuit.n_edges)
    p, q = ends.T
    u, w = wire_ends.T
    out = circuit.output_index
    rows = np.concatenate([p, q, p, q, u, w, u, w, out])
    cols = np.concatenate([p, q, q, p, u, w, w, u, out])
    vals = np.concatenate([g_s, g_s, -(g_s + a_s), -(g_s - a_s), wire_s, wire_s, -wire_s, -wire_s, np.full(len(out), circuit.output_load_s)])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def factorise(y_ii: sp.csc_matrix, symmetric: bool):
    """Sparse LU of the line nodes' block; a reciprocal block is symmetric positive definite,
    so its ordering is taken from ``Y + Y^T`` and its pivots from the diagonal."""
    if symmetric:
        return spla.splu(y_ii, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return spla.splu(y_ii)


class WireElimination:
    """The lines of ``circuit`` eliminated onto its free nodes, for given conductances.

    Parameters
    ----------
    circuit : Circuit
        A circuit with ``circuit.wires`` set (:func:`eqspice.circuits.wires.with_wires`).

    Attributes
    ----------
    network : WireNetwork
        Line nodes, device ends and wire resistors.
    """

    def __init__(self, circuit: Circuit) -> None:
        self.circuit = circuit
        self.network = wire_network(circuit)
        self._n_nodes = len(circuit.node_names)
        self._n = self._n_nodes + len(self.network.internal_nodes)
        free = circuit.free_slice
        self._known = np.arange(free.start)
        self._free = np.arange(free.start, free.stop)
        self._internal = np.arange(self._n_nodes, self._n)
        self._g_s: np.ndarray | None = None
        self._blocks: list = []

    def reduce(self, g_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(Y_red_ff[free, free], Y_red_fk[free, known])``, siemens, for conductances ``g_s[edge]``.

        The lines of different crossbars share no node, so ``Y_ii`` is block diagonal and
        each crossbar's block is factorised and eliminated on its own.  The result (and the
        factorisations) are kept until the conductances change.
        """
        g_s = np.asarray(g_s, dtype=float)
        if self._g_s is not None and np.array_equal(g_s, self._g_s):
            return self._reduced
        y = linear_admittance(self.circuit, g_s, self.network.device_ends, self.network.resistor_s, self.network.resistor_ends, self._n)
        k, f = self._known, self._free
        y_f, y_ff, y_fk = y[f], y[f][:, f].toarray(), y[f][:, k].toarray()
        self._blocks = []
        for nodes in self.network.group_nodes:
            i = self._internal[nodes]
            if len(i) == 0:
                continue
            y_ii = y[i][:, i].tocsc()
            y_fi, y_if, y_ik = y_f[:, i].tocsr(), y[i][:, f], y[i][:, k]
            lu = factorise(y_ii, symmetric=self.circuit.nonreciprocal is None)
            touched = np.flatnonzero(np.diff(y_fi.indptr))  # free nodes this crossbar's lines end on
            y_fi_dense = y_fi[touched].toarray()
            for start in range(0, len(touched), COLUMNS):
                chunk = slice(start, start + COLUMNS)
                w = lu.solve(np.ascontiguousarray(y_fi_dense[chunk].T), trans="T")  # Y_ii^-T Y_fi^T
                rows = touched[chunk]
                y_ff[rows] -= (y_if.T @ w).T
                y_fk[rows] -= (y_ik.T @ w).T
            self._blocks.append((nodes, lu, y_ik, y_if))
        self._g_s = g_s.copy()
        self._reduced = (y_ff, y_fk)
        return self._reduced

    def line_voltages(self, g_s: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Voltages of every node and line node, ``v_ext[batch, node + line node]`` (volts).

        Parameters
        ----------
        g_s : ndarray, shape (n_edges,)
            The conductances (siemens) under which ``v`` settled.
        v : ndarray, shape (batch, n_nodes)
            Settled voltages of ``circuit.node_names`` (either engine).
        """
        self.reduce(g_s)
        v = np.atleast_2d(np.asarray(v, dtype=float))
        out = np.empty((len(v), self._n))
        out[:, : self._n_nodes] = v
        v_k, v_f = v[:, self._known].T, v[:, self._free].T
        for nodes, lu, y_ik, y_if in self._blocks:
            out[:, self._n_nodes + nodes.start : self._n_nodes + nodes.stop] = -lu.solve(np.asarray(y_ik @ v_k + y_if @ v_f)).T
        return out

    def device_voltages(self, g_s: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Voltage across every memristor at its cell, ``dv[batch, edge]`` (row line minus column line), volts."""
        v_ext = self.line_voltages(g_s, v)
        a, b = self.network.device_ends.T
        return v_ext[:, a] - v_ext[:, b]

    def dissipated_w(self, g_s: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
        """Power dissipated per sample in the memristors and in the lines, watts.

        ``memristors = sum_e G_e dv_e^2`` with ``dv_e`` each device's own voltage, and
        ``lines = sum_w g_w (v_a - v_b)^2`` over every segment and driver resistor.
        With the diodes', loads' and nudge's shares (:mod:`eqspice.simulator.power`)
        they add up to the power the sources deliver (Tellegen).
        """
        g_s = np.asarray(g_s, dtype=float)
        v_ext = self.line_voltages(g_s, v)
        a, b = self.network.device_ends.T
        u, w = self.network.resistor_ends.T
        return {
            "memristors": ((v_ext[:, a] - v_ext[:, b]) ** 2) @ g_s,
            "lines": ((v_ext[:, u] - v_ext[:, w]) ** 2) @ self.network.resistor_s,
        }
