"""Exact samples of the Gibbs density of a layered circuit, by block Gibbs sweeps.

With gibbs noise the free-node voltages follow

    rho(v) ~ exp(-(E(v) + beta L(v)) / T_eff),
    E + beta L = v^T H v / 2 - b^T v + sum_d D(v_anode - v_cathode) + const   (watts),

``H`` the conductance matrix of the free nodes (memristors, output loads,
nudge), ``b`` the currents the sources and targets push in, ``D`` a diode's
co-content (:func:`eqspice.simulator.diode.diode_co_content`).  In a layered crossbar
no memristor or diode joins two free nodes of the same colour class A or B
(the graph is bipartite), so given B the nodes of A are independent, each with
a one-dimensional log-concave density

    p(v_n | rest) ~ exp(-phi_n(v_n) / T),
    phi_n(x) = H_nn x^2 / 2 - c_n x + sum_{d at n} D(s_d (x - w_d)),

``c_n = b_n - sum_m H_nm v_m`` (the neighbours at their present values),
``s_d = +1`` when n is diode d's anode, -1 when its cathode, ``w_d`` the
voltage of its other end.  One sweep draws all of A, then all of B.

Each node is drawn by one Metropolis-Hastings step with an independence
proposal: the Gaussian ``N(m_n, T / phi_n''(m_n))`` around the conditional
mode ``m_n`` (a few vectorised Newton steps from the noiseless operating
point, so the proposal depends on the neighbours only, never on the node's own
present value).  Without diodes ``phi_n`` is quadratic, the proposal is the
conditional itself and every move is accepted; with diodes the acceptance
ratio corrects the Gaussian, so the chain's stationary density is ``rho``
exactly (no time-step bias, unlike Euler-Maruyama).

References
----------
"Equilibrium Propagation Without Limits", arXiv 2511.22024 (Gibbs density).
Geman and Geman, 1984 (Gibbs sampler); Tierney, "Markov chains for exploring
posterior distributions", Ann. Statist. 22 (1994) (Metropolis-within-Gibbs,
independence proposals).
"""

from __future__ import annotations

import numpy as np

from eqspice.circuits.netlist import TIGHT_OPTIONS
from eqspice.circuits.network import Circuit
from eqspice.circuits.noise import NoiseSpec
from eqspice.simulator.diode import diode_co_content, diode_current
from eqspice.simulator.engine import Nudge
from eqspice.simulator.native import NativeEngine, independent_split
from eqspice.simulator.sampling.co_content import DENSE_FREE_NODES_MAX, SamplingError

#: Newton iterations for a conditional mode; each step is limited to ``NEWTON_STEP_MAX_V``
NEWTON_ITERATIONS_MAX = 30
NEWTON_STEP_MAX_V = 0.1
#: Newton stops when no node moves more than this fraction of its conditional standard deviation
NEWTON_TOL_SD = 0.05


def colour_classes(circuit: Circuit, engine: NativeEngine | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Free-node indices (into ``circuit.free_nodes``) of the two colour classes A and B.

    Edges are the memristors and diodes that join two free nodes; A is the
    native engine's independent set (``engine.split`` if an engine is given).
    Raises :class:`~eqspice.simulator.sampling.co_content.SamplingError` when B is not independent
    (the graph has an odd cycle).
    """
    k = circuit.free_slice.start
    n_free = len(circuit.free_nodes)
    ends = np.vstack([circuit.edges, circuit.diodes.reshape(-1, 2)])
    pairs = ends[(ends >= k).all(axis=1)] - k
    if engine is None:
        in_a = independent_split(n_free, pairs) if n_free else np.zeros(0, dtype=bool)
    else:
        in_a = np.zeros(n_free, dtype=bool)
        in_a[engine.split[0]] = True
    if np.any(~in_a[pairs[:, 0]] & ~in_a[pairs[:, 1]]):
        raise SamplingError(
            "noise.native_sampler = 'block_gibbs' needs a bipartite free-node graph (a layered crossbar); "
            "this circuit's free nodes form an odd cycle: use native_sampler = 'langevin'"
        )
    return np.flatnonzero(in_a), np.flatnonzero(~in_a)


class _Conditionals:
    """The conditional densities of one colour class X given the other class and the known nodes.

    Plain arrays: ``diag[x]`` = ``H_xx`` (S); ``coupling[free, x]`` = ``-H_mx``
    (S), nonzero only from the other class; for every diode with an end in
    X, that end ``node[d]`` (index into X), its sign ``sign[d]``, the column
    ``other[d]`` of its other end in ``[free..., known..., ground]`` and its
    SPICE ``area[d]``;
    ``slots[x, j]`` lists the diodes at node x (padded with ``node.size``, a
    column of zeros), so per-node sums are one gather.
    """

    def __init__(self, circuit: Circuit, diag: np.ndarray, coupling, nodes: np.ndarray, n_known: int):
        self.nodes = nodes
        self.diag = diag[nodes]
        dense = coupling.shape[0] <= DENSE_FREE_NODES_MAX
        self.coupling = coupling[nodes].toarray().T if dense else coupling[nodes].T.tocsr()
        k = circuit.free_slice.start
        n_free = len(diag)
        d = circuit.diodes.reshape(-1, 2)
        col = np.where(d < 0, n_free + n_known, np.where(d >= k, d - k, d + n_free))
        position = np.full(n_free + n_known + 1, -1)
        position[nodes] = np.arange(len(nodes))
        area = np.ones(len(d)) if circuit.diode_area is None else np.asarray(circuit.diode_area, dtype=float)
        node, sign, other, areas = [], [], [], []
        for end, s in ((0, 1.0), (1, -1.0)):
            hit = np.flatnonzero(position[col[:, end]] >= 0)
            node.append(position[col[hit, end]])
            sign.append(np.full(hit.size, s))
            other.append(col[hit, 1 - end])
            areas.append(area[hit])
        self.area = np.concatenate(areas)
        self.node = np.concatenate(node)
        self.sign = np.concatenate(sign)
        self.other = np.concatenate(other)
        self.moving = np.flatnonzero(self.other < n_free)  # diodes whose other end is a free node
        count = np.bincount(self.node, minlength=len(nodes))
        order = np.argsort(self.node, kind="stable")
        self.slots = np.full((len(nodes), count.max() if count.size else 0), self.node.size)
        rank = np.arange(self.node.size) - np.repeat(np.cumsum(count) - count, count)
        self.slots[self.node[order], rank] = order

    def per_node(self, per_diode: np.ndarray) -> np.ndarray:
        """Per-node sums ``[batch, x]`` of per-diode values ``[batch, diode]``."""
        padded = np.hstack([per_diode, np.zeros((len(per_diode), 1))])
        return padded[:, self.slots].sum(axis=2)

    def gradient_and_curvature(self, x, c, w, model, gmin_s):
        """``phi'(x)`` (A) and ``phi''(x)`` (S) for ``x[batch, node]``."""
        i_d, g_d = diode_current(self.sign * (x[:, self.node] - w), model, gmin_s, self.area)
        return self.diag * x - c + self.per_node(self.sign * i_d), self.diag + self.per_node(g_d)

    def diode_co_content(self, x, w, model, gmin_s, diodes=slice(None)):
        """Each diode's ``D(s_d (x_n - w_d))`` (W), ``[batch, diode]``, for ``x[batch, node]``."""
        u = self.sign[diodes] * (x[:, self.node[diodes]] - w[:, diodes])
        return diode_co_content(u, model, gmin_s, self.area[diodes])


def conditional_modes(cond: _Conditionals, start, c, w, model, gmin_s, t_w):
    """Modes ``m[batch, node]`` (V) of the conditionals and ``phi''`` (S) near them, by limited Newton steps.

    Deterministic in the conditioning (``start``, ``c``, ``w``), as an independence
    proposal must be; how far Newton gets changes only the acceptance rate.
    """
    m = start.copy()
    for _ in range(NEWTON_ITERATIONS_MAX):
        grad, curv = cond.gradient_and_curvature(m, c, w, model, gmin_s)
        step = np.clip(grad / curv, -NEWTON_STEP_MAX_V, NEWTON_STEP_MAX_V)
        m -= step
        if np.all(np.abs(step) <= NEWTON_TOL_SD * np.sqrt(t_w / curv)):
            break
    return m, curv


def block_gibbs_samples(
    circuit: Circuit,
    g_s,
    spec: NoiseSpec,
    inputs_v,
    targets_v,
    beta_s: float,
    rng: np.random.Generator,
    start_v: np.ndarray | None = None,
    burn_in_sweeps: int = 5,
    sweeps_per_reading: int = 1,
    engine: NativeEngine | None = None,
    gmin_s: float = TIGHT_OPTIONS["gmin"],
    acceptance: dict | None = None,
) -> np.ndarray:
    """Readings ``v[batch, sample, node]`` (volts) of the gibbs density by block Gibbs sweeps.

    ``start_v[batch, node]`` (default: the native engine's DC solution) starts
    the chains and every Newton search for a conditional mode;
    ``burn_in_sweeps`` sweeps are discarded, then ``spec.samples`` readings
    are taken ``sweeps_per_reading`` sweeps apart.  Only ``spec.t_eff_w`` and
    ``spec.samples`` of the spec are used (no time steps: a sweep is not a
    time).  ``engine``: a :class:`~eqspice.simulator.native.NativeEngine` already
    loaded with this circuit and ``g_s``, whose matrices are reused.  If
    ``acceptance`` is a dict, its ``"rate"`` is set to the fraction of
    accepted moves.
    """
    if spec.model != "gibbs":
        raise SamplingError(
            f"noise.model = {spec.model!r} has no Gibbs density when conductances differ; "
            "block_gibbs needs noise.model = 'gibbs' (or use native_sampler = 'langevin')"
        )
    if engine is None:
        engine = NativeEngine(gmin_s=gmin_s)
        engine.load(circuit, g_s)
    classes = colour_classes(circuit, engine)
    if start_v is None:
        start_v = engine.settle(inputs_v, Nudge(targets_v=targets_v, beta_s=beta_s))
    diag, coupling, drive, known = engine.quadratic_part(inputs_v, targets_v, beta_s)
    if np.any(diag <= 0):
        raise SamplingError(
            f"beta_s = {beta_s:g} S makes an output's total conductance negative: the Gibbs density "
            "does not exist; use a smaller |beta_s|"
        )
    batch = len(drive)
    t_w, model = spec.t_eff_w, circuit.diode_model
    v = np.array(start_v[:, circuit.free_slice], dtype=float)
    conds = [_Conditionals(circuit, diag, coupling, nodes, known.shape[1]) for nodes in classes]
    start = [v[:, cond.nodes].copy() for cond in conds]
    # each diode's co-content at the present state: kept between sweeps, recomputed only where
    # the other end is a free node that has moved
    d_now = [None] * len(conds)
    known_ext = np.hstack([known, np.zeros((batch, 1))])
    accepted = proposed = 0
    out = np.empty((batch, spec.samples, v.shape[1]))
    sweeps = burn_in_sweeps + spec.samples * sweeps_per_reading
    for sweep in range(sweeps):
        for which, (cond, x0) in enumerate(zip(conds, start)):
            c = drive[:, cond.nodes] + np.asarray(v @ cond.coupling)
            if not cond.node.size:  # Gaussian conditionals: exact Gibbs draws
                v[:, cond.nodes] = c / cond.diag + np.sqrt(t_w / cond.diag) * rng.standard_normal(c.shape)
                accepted, proposed = accepted + c.size, proposed + c.size
                continue
            w = np.hstack([v, known_ext])[:, cond.other]
            m, curv = conditional_modes(cond, x0, c, w, model, gmin_s, t_w)
            x = v[:, cond.nodes]
            proposal = m + np.sqrt(t_w / curv) * rng.standard_normal(m.shape)
            if d_now[which] is None:
                d_now[which] = cond.diode_co_content(x, w, model, gmin_s)
            elif cond.moving.size:
                d_now[which][:, cond.moving] = cond.diode_co_content(x, w, model, gmin_s, cond.moving)
            d_new = cond.diode_co_content(proposal, w, model, gmin_s)
            # log alpha = -(phi(x') - phi(x)) / T + phi''(m) ((x' - m)^2 - (x - m)^2) / (2 T), the quadratic
            # part of phi(x') - phi(x) formed as a product of differences (its terms are large next to T)
            rise = (proposal - x) * (0.5 * cond.diag * (proposal + x) - c) + cond.per_node(d_new - d_now[which])
            log_alpha = (0.5 * curv * ((proposal - m) ** 2 - (x - m) ** 2) - rise) / t_w
            take = np.log(rng.uniform(size=m.shape)) < log_alpha
            v[:, cond.nodes] = np.where(take, proposal, x)
            d_now[which] = np.where(take[:, cond.node], d_new, d_now[which])
            accepted += int(take.sum())
            proposed += take.size
        done = sweep + 1 - burn_in_sweeps
        if done > 0 and done % sweeps_per_reading == 0:
            out[:, done // sweeps_per_reading - 1] = v
    if acceptance is not None:
        acceptance["rate"] = accepted / max(proposed, 1)
    if not np.all(np.isfinite(out)):
        raise SamplingError("the block Gibbs sampler produced non-finite voltages; check the circuit's conductances")
    known = np.broadcast_to(known[:, None, :], (batch, spec.samples, known.shape[1]))
    return np.concatenate([known, out], axis=2)
