"""A native engine: batched damped Newton on the free nodes, in numpy.

Kirchhoff's current law at every free node n,

    sum_m G_nm (v_n - v_m) + sum_d s_dn I_d(v_anode - v_cathode)
        + G_load v_n + beta (v_n - y_n) = 0,

(``s_dn = +1`` if n is the diode's anode, -1 if its cathode) is solved for all
samples of a batch at once.  The diode current is ngspice's
(:func:`eqspice.simulator.diode.diode_current`, GMIN included), so both engines settle
the same circuit to the same voltages.  Newton steps are limited to
``max_step_v`` per node, the role junction-voltage limiting plays in SPICE.

Structure that pays: the free nodes are split into an independent set A (no
conductance or diode joins two of them: in a layered crossbar, every other
layer) and the rest B.  The Jacobian block on A is then diagonal, so each Newton
step eliminates A exactly and solves only the Schur complement on B, a dense
``|B| x |B|`` system per sample (10 x 10 for a one-hidden-layer classifier),
instead of the whole ``n_free x n_free`` one.

Non-reciprocal couplings (:func:`eqspice.circuits.network.with_nonreciprocal`) make
the coupling matrix ``K`` non-symmetric (``K_pq = G + a``, ``K_qp = G - a``); the
blocks ``K_AB`` and ``K_BA`` are kept apart and the Schur complement
``D_B - K_BB - K_BA D_A^-1 K_AB`` still needs only the diagonal of block A.

References
----------
Scellier et al., "A fast algorithm to simulate nonlinear resistive networks",
2024 (exploiting the layered structure of the co-content).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from eqspice.circuits.amplifiers import amplified_voltage
from eqspice.circuits.netlist import TIGHT_OPTIONS, amplifier_gains
from eqspice.circuits.network import Circuit, antisymmetric_coupling
from eqspice.simulator.diode import diode_current, thermal_voltage
from eqspice.simulator.engine import (
    BatchPhase,
    ConvergenceError,
    Engine,
    EngineError,
    batch_arrays,
    free_end_incidence,
)
from eqspice.simulator.layered import LayeredSweep, layered_structure
from eqspice.simulator.recycled import Recycled
from eqspice.simulator.wired import WireElimination

PAIR_PRODUCTS_MAX = 4_000_000  # 32 MB
RAIL_PATIENCE = 25  # Newton iterations with saturating amplifiers, in units of max_iter


def independent_split(n: int, pairs: np.ndarray) -> np.ndarray:
    """Boolean mask of a large independent set of the graph on ``n`` nodes with edges ``pairs``.

    A two-colouring when the graph is bipartite (layered networks: the larger
    colour class); otherwise a greedy maximal independent set.
    """
    graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)).tocsr()
    graph = graph + graph.T
    colour = np.full(n, -1)
    bipartite = True
    for start in range(n):
        if colour[start] >= 0:
            continue
        colour[start] = 0
        frontier = [start]
        while frontier:
            node = frontier.pop()
            for other in graph.indices[graph.indptr[node] : graph.indptr[node + 1]]:
                if colour[other] < 0:
                    colour[other] = 1 - colour[node]
                    frontier.append(other)
                elif colour[other] == colour[node]:
                    bipartite = False
    if bipartite:
        chosen = colour == 0
        return chosen if chosen.sum() >= n - chosen.sum() else ~chosen
    chosen = np.zeros(n, dtype=bool)
    blocked = np.zeros(n, dtype=bool)
    for node in np.argsort(np.diff(graph.indptr)):  # low degree first
        if not blocked[node]:
            chosen[node] = True
            blocked[graph.indices[graph.indptr[node] : graph.indptr[node + 1]]] = True
    return chosen


class NativeEngine(Engine):
    """Batched Newton solver with the Schur complement on a layered split.

    Parameters
    ----------
    gmin_s : conductance across every diode junction, siemens (ngspice's GMIN).
    tol_a : KCL residual at which a sample counts as settled, amperes.
    step_tol_v : Newton step below which a sample counts as settled, volts.
    max_iter : Newton iterations before :class:`ConvergenceError`.
    max_step_v : largest change of one node voltage in one Newton step, volts.
    pair_products_max : largest ``|A| |B|^2`` for which the products ``K_ia K_aj`` of the
        Schur complement are stored (8 bytes each); above it they are formed per step.
    layered : settle layered crossbars by block Gauss-Seidel sweeps over the layers
        (:mod:`eqspice.simulator.layered`); False: Newton on every circuit.  Circuits
        the sweeps cannot settle (wires, non-reciprocal or saturating parts) use
        Newton either way; :attr:`layered_reason` says why.
    """

    name = "native"

    def __init__(
        self,
        gmin_s: float = TIGHT_OPTIONS["gmin"],
        tol_a: float = 1e-16,
        step_tol_v: float = 1e-13,
        max_iter: int = 200,
        max_step_v: float = 0.1,
        pair_products_max: int = PAIR_PRODUCTS_MAX,
        layered: bool = True,
    ) -> None:
        self.gmin_s = gmin_s
        self.tol_a = tol_a
        self.step_tol_v = step_tol_v
        self.max_iter = max_iter
        self.max_step_v = max_step_v
        self.pair_products_max = pair_products_max
        self.use_layered = layered
        self.circuit: Circuit | None = None
        self.iterations = 0
        self._wires: WireElimination | None = None
        self._layered: LayeredSweep | None = None
        self._general_g: np.ndarray | None = None
        self.g_s: np.ndarray | None = None
        self._recycled = Recycled()
        self._node_arrays = Recycled(keep=4, largest_bytes=16 << 20)  # settles' node voltages: 64 MB at most

    # -- structure, once per circuit ------------------------------------------
    def load(self, circuit: Circuit, g_s: np.ndarray) -> None:
        self.circuit = circuit
        k = len(circuit.input_nodes) + len(circuit.fixed_nodes)
        n_free = len(circuit.free_nodes)
        self._n_known, self._n_free = k, n_free
        self._fixed_v = np.array(circuit.fixed_volts, dtype=float)
        self._out = circuit.output_index - k

        a, b = circuit.edges.T
        # an edge end on an amplifier output is an end on its hidden node whose voltage is
        # scaled by the forward gain A and whose current is returned scaled by B
        amp = self._amplifier_ends(circuit)
        (a_, fwd_a, bwd_a), (b_, fwd_b, bwd_b) = amp(a, 1.0), amp(b, 1.0)
        a_free, b_free = a_ >= k, b_ >= k
        both = a_free & b_free
        self._ff = np.flatnonzero(both)  # edges between two free nodes
        self._ff_pairs = np.stack([a_[both] - k, b_[both] - k], axis=1)
        # K_pq = B_p A_q G (current into p per volt on q), K_qp = B_q A_p G; the learning phases
        # of asymmetric EP (sign -1) have their own gains with the same products A B
        self._ff_scale = {}
        for sign in (1.0, -1.0):
            (_, fa, ba), (_, fb, bb) = amp(a, sign), amp(b, sign)
            self._ff_scale[sign] = (ba[both] * fb[both], bb[both] * fa[both])
        a, b = a_, b_
        one = a_free ^ b_free  # edges from a known node to a free node
        self._fk = np.flatnonzero(one)
        free_end = np.where(a_free, a, b)[one] - k
        self._fk_sign = np.where(a_free, 1.0, -1.0)[one]  # K_fk = G + sign * a (free end first: +)
        self._fk_scale = np.where(a_free, bwd_a, bwd_b)[one]
        known_end = np.where(a_free, b, a)[one]
        self._fk_flat = free_end * k + known_end
        self._deg_index = np.concatenate([a[a_free] - k, b[b_free] - k])
        self._deg_edges = np.concatenate([np.flatnonzero(a_free), np.flatnonzero(b_free)])
        self._deg_scale = np.concatenate([(fwd_a * bwd_a)[a_free], (fwd_b * bwd_b)[b_free]])

        # diodes: endpoints as indices into [known..., free..., ground]
        d = circuit.diodes.copy()
        d[d < 0] = k + n_free
        self._diodes = d
        self._diode_area = 1.0 if circuit.diode_area is None else np.asarray(circuit.diode_area, dtype=float)
        d_free = (d >= k) & (d < k + n_free)
        self._incidence = free_end_incidence(d, k, n_free)
        both_diode = d_free.all(axis=1)
        # the diagonal of the diode Jacobian: each diode's conductance at each free end
        self._diode_diag = abs(self._incidence)
        pairs = np.vstack([self._ff_pairs, d[both_diode] - k])
        self._diode_offdiag = both_diode.any()
        in_a = independent_split(n_free, pairs) if n_free else np.zeros(0, dtype=bool)
        self._wires = WireElimination(circuit) if circuit.wires is not None else None
        if self._wires is not None:
            in_a[:] = False  # lines couple every free node of a crossbar to every other
        self._a, self._b = np.flatnonzero(in_a), np.flatnonzero(~in_a)
        # Behind an amplifier a node moves A times its hidden node's step: limiting every node to
        # max_step_v would hold the junctions to 1/A of it.  With amplifiers the limit applies to
        # the nonlinear nodes only (diode ends, saturating amplifiers' inputs).
        self._limited = None
        if circuit.amplifiers is not None:
            nonlinear = np.zeros(n_free, dtype=bool)
            nonlinear[d[d_free] - k] = True
            if circuit.amplifiers.rails_v is not None:
                nonlinear[circuit.amplifiers.source - k] = True
            self._limited = np.flatnonzero(nonlinear) if nonlinear.any() else None
        layers = layered_structure(circuit) if self.use_layered else "layered sweeps switched off"
        self._layered = LayeredSweep(circuit, layers, self.gmin_s) if isinstance(layers, list) else None
        self.layered_reason = None if self._layered is not None else layers
        self.set_conductances(g_s)

    def _amplifier_ends(self, circuit: Circuit):
        """A map from edge-end indices to (end on the hidden node, forward gain, backward gain).

        Ends on no amplifier keep their index with gains 1.  With output rails the
        forward gain is the amplifier's slope at 0 V; :meth:`_newton` adds the saturation.
        """
        amplifiers = circuit.amplifiers
        first = self._n_known + self._n_free
        if amplifiers is None:
            self._amp = None
            self._amp_gain = {}
            return lambda ends, sign: (ends, np.ones(len(ends)), np.ones(len(ends)))
        if circuit.nonreciprocal is not None:
            raise EngineError("non-reciprocal couplings with amplifiers are not modelled; drop one of the two")
        self._amp = (amplifiers.source - self._n_known, amplifiers.forward_gain, amplifiers.rails_v)
        learning = amplifiers.learning_gains() if not amplifiers.conservative and amplifiers.rails_v is None else None
        self._amp_gain = {1.0: (amplifiers.forward_gain, amplifiers.backward_gain), -1.0: learning}

        def ends(index, sign):
            forward, backward = self._amp_gain[sign] or self._amp_gain[1.0]
            on_amp = index >= first
            j = np.where(on_amp, index - first, 0)
            return (
                np.where(on_amp, amplifiers.source[j], index),
                np.where(on_amp, forward[j], 1.0),
                np.where(on_amp, backward[j], 1.0),
            )

        return ends

    def set_conductances(self, g_s: np.ndarray) -> None:
        """New device conductances.  A layered crossbar only re-sums its columns and rows here;
        the general structures (coupling blocks, Schur products) are built when first needed."""
        if self.circuit is None:
            raise EngineError("no circuit loaded; call load(circuit, g_s) first")
        # a new array each time (a caller may keep the old one), from arrays no one refers to any more
        old, self.g_s = self.g_s, self._recycled.take(len(g_s))
        np.copyto(self.g_s, g_s)
        self._recycled.give(old)
        self._general_g = None
        if self._layered is not None:
            self._layered.set_conductances(self.g_s)
        else:
            self._ensure_general()

    def _ensure_general(self) -> None:
        """Build the Newton solver's structures for the present conductances, once per update."""
        if self._general_g is self.g_s:
            return
        c, g_s = self.circuit, self.g_s
        k, n_free = self._n_known, self._n_free
        degree = np.bincount(self._deg_index, weights=g_s[self._deg_edges] * self._deg_scale, minlength=n_free)
        degree[self._out] += c.output_load_s
        self._degree = degree
        # L_fk: current into free node f per volt on known node j is +G (we keep -L_fk)
        a_e = antisymmetric_coupling(c, g_s)
        k_fk = g_s[self._fk] * self._fk_scale + self._fk_sign * a_e[self._fk]
        self._g_fk = np.bincount(self._fk_flat, weights=k_fk, minlength=n_free * k).reshape(n_free, k)
        g_ff, a_ff = g_s[self._ff], a_e[self._ff]
        signs = (1.0, -1.0) if np.any(a_ff) or self._amp_gain.get(-1.0) is not None else (1.0,)
        self._couplings = {
            sign: self._coupling_blocks(self._ff_scale[sign][0] * g_ff + sign * a_ff, self._ff_scale[sign][1] * g_ff - sign * a_ff)
            for sign in signs
        }
        if self._amp is not None and self._amp[2] is not None:
            self._rail_coupling = self._saturation_coupling(g_s)
        if self._wires is not None:
            self._use_wires(g_s)
        self._use_coupling(1.0)
        self._drive_cache = None
        self._general_g = g_s

    def _saturation_coupling(self, g_s: np.ndarray) -> sp.csr_matrix:
        """``C[free, amplifier]`` (siemens): the KCL residual's change per volt of ``s(v_h) - A v_h``.

        The linear blocks hold the amplifier at its slope ``A``; with rails the output
        is ``s(v_h)``, so the residual gains ``C u`` with ``u_j = s(v_hj) - A_j v_hj``:
        ``-G`` at the node m across each device from amplifier j, and ``+B_j G`` at its
        hidden node (the returned current).
        """
        c = self.circuit
        first = self._n_known + self._n_free
        a, b = c.edges.T
        on_a = a >= first
        j = np.where(on_a, a, b) - first
        m = np.where(on_a, b, a) - self._n_known
        amp = j >= 0
        j, m, g = j[amp], m[amp], g_s[amp]
        h = c.amplifiers.source[j] - self._n_known
        rows = np.concatenate([m, h])
        values = np.concatenate([-g, c.amplifiers.backward_gain[j] * g])
        return sp.csr_matrix((values, (rows, np.concatenate([j, j]))), shape=(self._n_free, len(c.amplifiers.nodes)))

    def amplifier_voltages(self, v_free: np.ndarray, antisymmetric_sign: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Output voltage of every amplifier ``[batch, amplifier]`` and its slope ``dv_a/dv_h``."""
        source, gain, rails = self._amp
        if antisymmetric_sign == -1 and self._amp_gain[-1.0] is not None:
            gain = self._amp_gain[-1.0][0]
        return amplified_voltage(v_free[:, source], gain, rails)

    def _use_wires(self, g_s: np.ndarray) -> None:
        """The resistive lines eliminated exactly onto the free nodes (:mod:`eqspice.simulator.wired`):
        degree, couplings and known-node drive of the reduced network replace the ideal ones."""
        y_ff, y_fk = self._wires.reduce(g_s)
        self._degree = np.diag(y_ff).copy()
        self._g_fk = -y_fk
        k_ff = -y_ff
        k_ff[np.diag_indices_from(k_ff)] = 0.0
        empty = np.zeros((self._n_free, 0))
        self._couplings = {1.0: (sp.csr_matrix(k_ff), empty, empty.T, k_ff, np.zeros((0, self._n_free**2)))}

    def _coupling_blocks(self, k_pq: np.ndarray, k_qp: np.ndarray) -> tuple:
        """``K_ff`` (current into row node per volt on column node, siemens) and its B/A blocks."""
        p, q = self._ff_pairs.T
        n_free = self._n_free
        off = sp.csr_matrix((np.concatenate([k_pq, k_qp]), (np.concatenate([p, q]), np.concatenate([q, p]))), shape=(n_free, n_free))
        a, b = self._a, self._b
        g_ba, g_ab = off[b][:, a].toarray(), off[a][:, b].toarray()
        # K_BA D_A^-1 K_AB = sum_a (1/d_a) K_Ba K_aB: with the products K_ia K_aj stored once per
        # conductance update, the Schur complement of a whole batch is one matrix product
        if len(a) * len(b) ** 2 <= self.pair_products_max:
            pairs = (g_ba.T[:, :, None] * g_ab[:, None, :]).reshape(len(a), len(b) ** 2)
        else:
            pairs = None
        return off, g_ba, g_ab, off[b][:, b].toarray(), pairs

    def _use_coupling(self, antisymmetric_sign: float) -> None:
        """Settle with the antisymmetric part between free nodes multiplied by ``antisymmetric_sign`` (+1 or -1)."""
        blocks = self._couplings.get(antisymmetric_sign, self._couplings[1.0])
        self._g_ff, self._g_ba, self._g_ab, self._g_bb, self._pairs = blocks

    # -- settling -------------------------------------------------------------
    def _settle(self, phase: BatchPhase, initial_v: np.ndarray | None) -> np.ndarray:
        """Node voltages ``v[batch, node]``; ``initial_v`` (e.g. the free state) warm-starts Newton."""
        c = self.circuit
        inputs_v, batch = phase.inputs_v, len(phase.inputs_v)
        if self._layered is not None:  # the node voltages written in place: inputs, fixed, free, amplifiers
            v = self._node_arrays.lend((batch, len(c.node_names)))  # the caller's; reused once it lets go
            n_in = inputs_v.shape[1]
            v[:, :n_in] = inputs_v
            v[:, n_in : self._n_known] = self._fixed_v
            initial_free = None if initial_v is None else initial_v[:, c.free_slice]
            known, v_free = v[:, : self._n_known], v[:, c.free_slice]
            self._layered.settle(
                known, phase.beta_s, phase.targets_v, phase.injected_a, initial_free, out=v_free,
                antisymmetric_sign=phase.antisymmetric_sign,
            )  # fmt: skip
            self.iterations = self._layered.sweeps
            if self._layered.settled:
                if self._amp is not None:
                    v[:, c.free_slice.stop :] = self.amplifier_voltages(v_free, phase.antisymmetric_sign)[0]
                return v
            # not settled (a slow mode, e.g. devices above a node outweighing those below it a
            # thousandfold): Newton from the caller's start, as with layered=False
        known = np.hstack([inputs_v, np.broadcast_to(self._fixed_v, (batch, len(self._fixed_v)))])
        self._ensure_general()
        if self._wires is not None and c.nonreciprocal is not None and phase.antisymmetric_sign != 1:
            raise EngineError("reversed antisymmetric couplings (asymmetric EP) with resistive wires are not modelled; set the wire and driver resistances to 0")
        self._use_coupling(phase.antisymmetric_sign)
        if self._amp is not None and phase.antisymmetric_sign == -1 and self._amp_gain[-1.0] is None:
            amplifier_gains(c, -1.0)  # refuses what the learning phases cannot model (saturating amplifiers)
        diag = np.broadcast_to(self._degree, (batch, self._n_free)).copy()
        drive = self._known_drive(known)
        if phase.injected_a is not None:
            drive = drive + phase.injected_a
        if phase.beta_s != 0:
            diag[:, self._out] += phase.beta_s
            drive[:, self._out] += phase.beta_s * phase.targets_v
        newton = lambda start: self._newton(start, known, diag, drive, phase.name, phase.sample_ids)  # noqa: E731

        def from_cold():  # diodes open, then limited; a linear circuit is solved by that alone
            start = self._limit_junctions(self._solve(diag, drive), known)
            return newton(start) if len(self._diodes) or self._rails else start

        if initial_v is None:
            v_free = from_cold()
        else:
            try:
                v_free = newton(np.array(initial_v[:, c.free_slice], dtype=float))
            except ConvergenceError:  # a warm start can sit where limited steps crawl (amplified nodes at tens of volts)
                v_free = from_cold()
        return self._with_amplifiers(known, v_free, phase.antisymmetric_sign)

    def _with_amplifiers(self, known, v_free, antisymmetric_sign: float) -> np.ndarray:
        if self._amp is None:
            return np.hstack([known, v_free])
        return np.hstack([known, v_free, self.amplifier_voltages(v_free, antisymmetric_sign)[0]])

    @property
    def _rails(self) -> bool:
        return self._amp is not None and self._amp[2] is not None

    def quadratic_part(self, inputs_v, targets_v=None, beta_s: float = 0.0) -> tuple:
        """The memristor, load and nudge terms of the co-content on the free nodes.

        ``E + beta L = sum_n d_n v_n^2 / 2 - v^T K v / 2 - i^T v + const + diode terms``:
        returns ``d[free]`` (S, total conductance of each node, nudge included),
        ``K`` (sparse, S, zero diagonal: the couplings between free nodes),
        ``i[batch, free]`` (A, the current the known nodes and targets push in) and
        ``known[batch, known]`` (V).  Only for reciprocal circuits.
        """
        c = self.circuit
        if self._wires is not None:
            raise EngineError("the co-content's quadratic part (noise samplers) is not written for resistive wires; set the wire and driver resistances to 0")
        if self._amp is not None:
            raise EngineError("the co-content's quadratic part (noise samplers) is not written for amplifiers; drop network.amplifier_gain")
        inputs_v, targets_v, _ = batch_arrays(c, inputs_v, targets_v, None)
        self._ensure_general()
        known = np.hstack([inputs_v, np.broadcast_to(self._fixed_v, (len(inputs_v), len(self._fixed_v)))])
        diag = self._degree.copy()
        drive = self._known_drive(known)
        diag[self._out] += beta_s
        drive[:, self._out] += beta_s * targets_v
        return diag, self._couplings[1.0][0], drive, known

    @property
    def wires(self) -> WireElimination | None:
        """The loaded circuit's resistive lines, eliminated (None for ideal wires)."""
        return self._wires

    @property
    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Free-node indices of the independent set A and of the rest B (see the module docstring)."""
        return self._a, self._b

    def solve_transposed_jacobian(self, v: np.ndarray, rhs_a: np.ndarray) -> np.ndarray:
        """``x[batch, free]`` solving ``J^T x = rhs`` with ``J = dR/dv`` of the free phase at ``v[batch, node]``.

        ``J = diag(d + diode conductances) - K_ff`` (siemens), so ``J^T`` has the
        couplings transposed, i.e. the antisymmetric part reversed: the same
        Schur complement on B as a Newton step (a dense solve if diodes join two
        free nodes).  ``rhs_a[batch, free]`` in amperes; x in volts.
        """
        if self._wires is not None:
            raise EngineError("the transposed Jacobian is not written for resistive wires; set the wire and driver resistances to 0")
        if self.circuit.amplifiers is not None:
            raise EngineError("the transposed Jacobian is not written for amplifiers between layers; drop the amplifiers")
        v = np.asarray(v, dtype=float)
        if self._layered is not None:  # symmetric J: the layer sweeps, no general structures
            x = self._layered.solve_linear(v[:, self.circuit.free_slice], np.asarray(rhs_a, dtype=float))
            if x is not None:
                return x
        self._ensure_general()
        v_all = np.hstack([v, np.zeros((len(v), 1))])
        anode, cathode = self._diodes.T
        _, g_d = diode_current(v_all[:, anode] - v_all[:, cathode], self.circuit.diode_model, self.gmin_s, self._diode_area)
        diag = np.broadcast_to(self._degree, rhs_a.shape)
        self._use_coupling(-1.0)
        try:
            if self._diode_offdiag:
                return self._dense_step(diag, g_d, rhs_a)
            return self._solve(diag + self._diode_diag.dot(g_d.T).T, rhs_a)
        finally:
            self._use_coupling(1.0)

    def _known_drive(self, known: np.ndarray) -> np.ndarray:
        """Current pushed into the free nodes by the known ones, amperes; the phases of one
        batch share it, so the last one is kept until the inputs or the conductances change."""
        cached = self._drive_cache
        if cached is not None and cached[0].shape == known.shape and np.array_equal(cached[0], known):
            return cached[1].copy()
        # the batch repeated (both nudged phases of a batch in one call): the cached rows, repeated
        rows = 0 if cached is None else len(cached[0])
        if rows and known.shape[1:] == cached[0].shape[1:] and len(known) % rows == 0 and len(known) > rows:
            repeats = len(known) // rows
            if np.array_equal(known.reshape(repeats, rows, -1), np.broadcast_to(cached[0], (repeats, *cached[0].shape))):
                return np.tile(cached[1], (repeats, 1))
        drive = known @ self._g_fk.T
        self._drive_cache = (known.copy(), drive.copy())
        return drive

    def _solve(self, diag: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """Solve ``(diag(d) - G_ff) x = rhs`` per sample through the Schur complement on B."""
        a, b = self._a, self._b
        if len(b) == 0:
            return rhs / diag
        d_a = diag[:, a]
        r_a, r_b = rhs[:, a], rhs[:, b]
        # S = D_B - K_BB - K_BA D_A^-1 K_AB  (J_BA = -K_BA, J_AB = -K_AB)
        n_b = len(b)
        if self._pairs is not None:
            coupled = ((1.0 / d_a) @ self._pairs).reshape(-1, n_b, n_b)
        else:
            coupled = (self._g_ba[None] / d_a[:, None, :]) @ self._g_ab
        schur = -coupled - self._g_bb
        schur[:, np.arange(n_b), np.arange(n_b)] += diag[:, b]
        x = np.empty_like(rhs)
        x[:, b] = np.linalg.solve(schur, (r_b + (r_a / d_a) @ self._g_ba.T)[..., None])[..., 0]
        x[:, a] = (r_a + x[:, b] @ self._g_ab.T) / d_a
        return x

    def _limit_junctions(self, v_free, known):
        """Pull free diode ends back so no junction starts beyond SPICE's critical voltage.

        ``Vcrit = N Vt ln(N Vt / (sqrt(2) IS))``; the linear solution with open
        diodes can forward-bias a junction by volts, which would cost many
        limited Newton steps to walk back.
        """
        model = self.circuit.diode_model
        vte = model.n * thermal_voltage()
        vcrit = vte * np.log(vte / (np.sqrt(2.0) * model.is_a))
        k, n_free = self._n_known, self._n_free
        v_all = np.hstack([known, v_free, np.zeros((len(v_free), 1))])
        anode, cathode = self._diodes.T
        free_a = (anode >= k) & (anode < k + n_free)
        free_c = (cathode >= k) & (cathode < k + n_free)
        up, down = free_a & ~free_c, free_c & ~free_a  # one free end: the other end holds still
        np.minimum.at(v_all, (slice(None), anode[up]), v_all[:, cathode[up]] + vcrit)
        np.maximum.at(v_all, (slice(None), cathode[down]), v_all[:, anode[down]] - vcrit)
        return v_all[:, k : k + n_free]

    def _kcl(self, v_free, known, diag, drive):
        """Net current leaving every free node (A) and every diode's conductance (S)."""
        v_all = np.hstack([known, v_free, np.zeros((len(v_free), 1))])
        anode, cathode = self._diodes.T
        i_d, g_d = diode_current(
            v_all[:, anode] - v_all[:, cathode], self.circuit.diode_model, self.gmin_s, self._diode_area
        )
        residual = diag * v_free - self._g_ff.dot(v_free.T).T - drive + self._incidence.dot(i_d.T).T
        if self._rails:
            v_amp, _ = self.amplifier_voltages(v_free)
            source, gain, _ = self._amp
            residual = residual + self._rail_coupling.dot((v_amp - gain * v_free[:, source]).T).T
        return residual, g_d

    def _newton(self, v_free, known, diag, drive, phase, sample_ids):
        """Newton steps, each limited to ``max_step_v`` on every node.

        With saturating amplifiers the steps cross the flat parts of the amplifiers' curves
        slowly (gains up to 100 in the tests: thousands of limited steps for some samples,
        measured), so Newton gets ``RAIL_PATIENCE`` times ``max_iter`` there."""
        limit = self.max_iter * (RAIL_PATIENCE if self._rails else 1)
        for iteration in range(limit):
            residual, g_d = self._kcl(v_free, known, diag, drive)
            if self._diode_offdiag or self._rails:
                step = self._dense_step(diag, g_d, residual, v_free)
            else:
                step = self._solve(diag + self._diode_diag.dot(g_d.T).T, residual)
            largest = np.abs(step).max(axis=1, keepdims=True)
            limited = largest if self._limited is None else np.abs(step[:, self._limited]).max(axis=1, keepdims=True)
            v_free = v_free - step * np.minimum(1.0, self.max_step_v / np.maximum(limited, 1e-300))
            if np.all((np.abs(residual).max(axis=1) < self.tol_a) | (largest[:, 0] < self.step_tol_v)):
                self.iterations = iteration + 1
                return v_free
        worst = int(np.argmax(np.abs(residual).max(axis=1)))
        sid = worst if sample_ids is None else sample_ids[worst]
        raise ConvergenceError(
            f"native Newton did not converge in the {phase} phase of sample {sid} "
            f"(residual {np.abs(residual[worst]).max():.3g} A after {limit} iterations)"
        )

    def _dense_step(self, diag, g_d, residual, v_free=None):
        """Newton step with the full Jacobian, for diodes that join two free nodes and for
        amplifiers with rails (whose slope differs per sample; ``v_free`` is needed only then)."""
        inc = self._incidence.toarray()
        jac = np.einsum("nd,bd,md->bnm", inc, g_d, inc) - self._g_ff.toarray()
        jac[:, np.arange(self._n_free), np.arange(self._n_free)] += diag
        if self._rails:
            source, gain, _ = self._amp
            _, slope = self.amplifier_voltages(v_free)
            extra = self._rail_coupling.toarray()[None] * (slope - gain)[:, None, :]  # [batch, free, amplifier]
            jac[:, :, source] += extra  # one amplifier per hidden node: no repeated columns
        return np.linalg.solve(jac, residual[..., None])[..., 0]
