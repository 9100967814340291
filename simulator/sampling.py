"""Samplers of the noisy circuit: node voltages drawn from its stationary distribution.

The circuit with injected thermal noise (:mod:`circuits.noise`) obeys

    C dv/dt = -grad E(v) + i_noise(t),        E = co-content + beta L   (watts),

on its free nodes.  A sampler returns ``v[batch, sample, node]`` (volts): for
each input row, ``spec.samples`` readings after the burn-in.  Averages over
the sample axis are the controller's time averages.

* :func:`langevin_samples`: Euler-Maruyama on that equation, batched, with the
  noise held constant over each step ``dt_s`` (the same low-frequency PSD as
  ngspice's trnoise).  Its stationary variance of a mode with time constant
  ``tau`` is too large by ``dt / (2 tau)`` (first order); the test and
  ``eqspice gradcheck noise`` report that bias.
* :func:`gaussian_samples`: for circuits without diodes, exact independent
  draws from the stationary Gaussian: mean = the DC solution, covariance
  :func:`stationary_covariance` (gibbs: ``T_eff H^-1``; johnson: the solution
  of the Lyapunov equation, ``k T C^-1`` when no controlled source acts).
* :func:`simulator.block_gibbs.block_gibbs_samples`: for the gibbs model on a
  layered (bipartite) circuit, an exact Markov chain on ``exp(-E / T_eff)``:
  the two colour classes drawn in turn, each node by Metropolis-Hastings with
  a Gaussian proposal at its conditional mode (no time step, no step bias).
* :class:`NgspiceSampler`: a transient run of the netlist with trnoise sources
  and node capacitors in a supervised ngspice child, read at the same times.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from circuits.netlist import TIGHT_OPTIONS, render_netlist
from circuits.network import Circuit
from circuits.noise import NoiseSpec, node_capacitances, noise_netlist_lines, noisy_edges
from simulator.diode import diode_current, thermal_voltage
from simulator.engine import EngineError, SimulatorCrash, batch_arrays, free_end_incidence


#: free nodes up to which the co-content's gradient uses dense matrices (8 n^2 bytes)
DENSE_FREE_NODES_MAX = 2000


class SamplingError(EngineError):
    """The sampler cannot run this circuit with this noise spec; the message says why and what to change."""


#: ngspice options of the noisy transient: the noise step bounds every
#: internal step (TMAX), so the tight DC tolerances would only slow it down.
TRANSIENT_OPTIONS = {"reltol": 1e-6, "abstol": 1e-15, "vntol": 1e-9, "gmin": TIGHT_OPTIONS["gmin"]}


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


def stationary_covariance(circuit: Circuit, g_s: np.ndarray, spec: NoiseSpec, beta_s: float = 0.0) -> np.ndarray:
    """Covariance of the free-node voltages at rest, V^2, for a circuit without diodes.

    gibbs: ``T_eff H^-1``.  johnson: ``P`` with ``A P + P A^T + Q = 0``,
    ``A = -C^-1 H``, ``Q = C^-1 (2 k T Lap_noise) C^-1`` (``Lap_noise`` the
    conductance matrix of the noisy conductances on the free nodes); when
    ``H = Lap_noise`` (no nudge) that is ``k T C^-1``.
    """
    if len(circuit.diodes):
        raise SamplingError("the closed-form covariance needs a circuit without diodes; use the Langevin sampler")
    n_in = len(circuit.input_nodes)
    system = CoContent(circuit, g_s, np.zeros((1, n_in)), None, beta_s, 0.0)
    h = system.h.toarray()
    if spec.model == "gibbs":
        return spec.t_eff_w * np.linalg.inv(h)
    c_inv = 1.0 / node_capacitances(circuit, g_s, spec, beta_s)
    q = 2.0 * spec.temperature_w * c_inv[:, None] * johnson_conductance_matrix(circuit, g_s) * c_inv[None, :]
    cov = scipy.linalg.solve_continuous_lyapunov(-c_inv[:, None] * h, -q)
    return 0.5 * (cov + cov.T)


def johnson_conductance_matrix(circuit: Circuit, g_s: np.ndarray) -> np.ndarray:
    """Conductance matrix (S) of the johnson-noisy conductances, restricted to the free nodes."""
    k = circuit.free_slice.start
    n = len(circuit.node_names)
    pairs, g = noisy_edges(circuit, g_s)
    pairs = np.where(pairs < 0, n, pairs)
    lap = np.zeros((n + 1, n + 1))
    for (a, b), ge in zip(pairs.tolist(), g):
        lap[a, a] += ge
        lap[b, b] += ge
        lap[a, b] -= ge
        lap[b, a] -= ge
    return lap[k:n, k:n]


def gaussian_samples(
    circuit: Circuit, g_s, spec: NoiseSpec, inputs_v, targets_v, beta_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Exact independent draws ``v[batch, sample, node]`` from the stationary Gaussian (no diodes)."""
    cov = stationary_covariance(circuit, g_s, spec, beta_s)
    system = CoContent(circuit, g_s, inputs_v, targets_v, beta_s, 0.0)
    mean = np.linalg.solve(system.h.toarray(), system.b.T).T
    chol = np.linalg.cholesky(cov)
    z = rng.standard_normal((len(mean), spec.samples, len(circuit.free_nodes)))
    v_free = mean[:, None, :] + z @ chol.T
    known = np.broadcast_to(system.known[:, None, :], (len(mean), spec.samples, system.known.shape[1]))
    return np.concatenate([known, v_free], axis=2)


def check_time_step(circuit: Circuit, g_s, spec: NoiseSpec, beta_s: float = 0.0) -> float:
    """The shortest RC time constant ``min C_n / H_nn`` (seconds); refuse ``dt_s`` above half of it."""
    cap = node_capacitances(circuit, g_s, spec, beta_s)
    system_diag = np.asarray(CoContent(circuit, g_s, np.zeros((1, len(circuit.input_nodes))), None, abs(beta_s), 0.0).h.diagonal())
    tau = float(np.min(cap / system_diag))
    if spec.dt_s > 0.5 * tau:
        raise SamplingError(
            f"noise.dt_s = {spec.dt_s:g} s is too long for the circuit's shortest time constant C/G = {tau:.3g} s; "
            f"use dt_s <= {0.5 * tau:.3g} s (better {tau / 20:.3g} s) or larger capacitances"
        )
    return tau


def langevin_samples(
    circuit: Circuit,
    g_s,
    spec: NoiseSpec,
    inputs_v,
    targets_v,
    beta_s: float,
    rng: np.random.Generator,
    start_v: np.ndarray | None = None,
    gmin_s: float = TIGHT_OPTIONS["gmin"],
) -> np.ndarray:
    """Euler-Maruyama of ``C dv/dt = -grad E + i_noise``: readings ``v[batch, sample, node]``.

    ``v_{k+1} = v_k + (dt / C) (-grad E(v_k) + i_k) / (1 + dt g_d / C)``, with
    ``g_d`` the diodes' conductance at the node (the stiff junctions taken
    implicitly; plain Euler-Maruyama for a linear circuit), ``i_k`` Gaussian with
    variance ``S / dt`` for a white current of two-sided PSD ``S`` (gibbs:
    ``S = 2 T_eff C_n`` per node; johnson: ``2 k T G`` across each
    conductance).  ``start_v[batch, node]`` (e.g. the DC solution) is the
    state at t = 0; default: the DC solution of the native engine.
    """
    check_time_step(circuit, g_s, spec, beta_s)
    system = CoContent(circuit, g_s, inputs_v, targets_v, beta_s, gmin_s)
    batch = len(system.b)
    if start_v is None:
        from simulator.native import NativeEngine

        engine = NativeEngine(gmin_s=gmin_s)
        engine.load(circuit, g_s)
        start_v = engine.settle(inputs_v, targets_v, beta_s)
    v = np.array(start_v[:, circuit.free_slice], dtype=float)
    cap = node_capacitances(circuit, g_s, spec, beta_s)
    dt = spec.dt_s
    gain = dt / cap
    if spec.model == "gibbs":
        kick = np.sqrt(2.0 * spec.t_eff_w * dt / cap)
    else:
        k = circuit.free_slice.start
        pairs, g_noise = noisy_edges(circuit, g_s)
        # current of noise source e flows from its first node to its second: it leaves a, enters b
        spread = -free_end_incidence(pairs, k, len(cap))
        edge_sd = np.sqrt(2.0 * spec.temperature_w * g_noise / dt)
    steps = int(round(spec.run_s / dt))
    record = np.minimum((spec.sample_times() / dt).astype(int), steps - 1)
    out = np.empty((batch, spec.samples, v.shape[1]))
    slot = 0
    for step in range(steps):
        if spec.model == "gibbs":
            noise = kick * rng.standard_normal(v.shape)
        else:
            noise = gain * (spread @ (edge_sd[:, None] * rng.standard_normal((len(edge_sd), batch)))).T
        grad, g_diode = system.gradient_and_diode_diagonal(v)
        # diodes' conductance taken implicitly (a forward-biased junction is stiff); exact EM without diodes
        v = v + (noise - gain * grad) / (1.0 + gain * g_diode)
        while slot < spec.samples and record[slot] == step:
            out[:, slot] = v
            slot += 1
    if not np.all(np.isfinite(out)):
        raise SamplingError("the Langevin sampler diverged; shorten noise.dt_s")
    known = np.broadcast_to(system.known[:, None, :], (batch, spec.samples, system.known.shape[1]))
    return np.concatenate([known, out], axis=2)


class NgspiceSampler:
    """Transient runs of the noisy netlist in supervised ngspice children.

    Each input row and nudge is one run: the netlist of
    :func:`circuits.noise.noise_netlist_lines` (trnoise sources, node
    capacitors, ``.tran dt run 0 dt``), seeded with ``setseed`` from the
    caller's generator (ngspice 39 ignores that seed for trnoise: its runs
    are statistically, not bitwise, repeatable); the node voltages are read at
    :meth:`~circuits.noise.NoiseSpec.sample_times` by linear interpolation
    of ngspice's time points.
    """

    name = "ngspice"

    def __init__(self, spec: NoiseSpec, workers: int = 1, timeout_s: float = 120.0, options: dict | None = None):
        self.spec = spec
        self.timeout_s = timeout_s
        self.options = dict(TRANSIENT_OPTIONS if options is None else options)
        from simulator.ngspice import ChildPool

        self._pool = ChildPool(workers)

    @property
    def restarts(self) -> int:
        return self._pool.restarts

    def netlist(self, circuit: Circuit, g_s, inputs_v, targets_v, beta_s: float, seed: int | None = None) -> str:
        """SPICE text of one noisy transient run (runs as it is under ``ngspice -b``)."""
        lines = noise_netlist_lines(circuit, g_s, self.spec, seed, beta_s)
        return render_netlist(circuit, g_s, inputs_v, targets_v, beta_s, analysis="\n".join(lines), options=self.options)

    def sample(self, circuit: Circuit, g_s, inputs_v, targets_v, beta_s: float, rng: np.random.Generator) -> np.ndarray:
        """Readings ``v[batch, sample, node]`` (volts), one transient run per input row."""
        check_time_step(circuit, g_s, self.spec, beta_s)
        inputs_v, targets_v, _ = batch_arrays(circuit, inputs_v, targets_v, None)
        seeds = rng.integers(1, 2**31 - 1, size=len(inputs_v))
        times = self.spec.sample_times()
        out = np.empty((len(inputs_v), self.spec.samples, len(circuit.node_names)))
        children = self._pool.children
        for first in range(0, len(inputs_v), len(children)):
            rows = range(first, min(first + len(children), len(inputs_v)))
            gone = [
                children[k].send(
                    (
                        "transient",
                        self.netlist(circuit, g_s, inputs_v[r], targets_v[r], beta_s, int(seeds[r])),
                        list(circuit.node_names),
                        int(seeds[r]),
                    )
                )
                for k, r in enumerate(rows)
            ]
            for k, r in enumerate(rows):
                reply, why = (None, gone[k]) if gone[k] else children[k].receive(self.timeout_s)
                if why:
                    self._pool.replace(k)
                    raise SimulatorCrash(f"ngspice child {why} during the noisy transient of row {r}; started a fresh one")
                if reply[0] != "ok":
                    raise EngineError(f"ngspice failed in the noisy transient of row {r}: {reply[1]}")
                t, v = reply[1]
                if t[-1] < times[-1]:
                    raise EngineError(f"the noisy transient of row {r} stopped at {t[-1]:g} s")
                out[r] = np.column_stack([np.interp(times, t, v[:, j]) for j in range(v.shape[1])])
        return out

    def close(self) -> None:
        self._pool.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class NativeSampler:
    """The native samplers behind one ``sample`` call.

    ``method``: ``"langevin"`` (Euler-Maruyama dynamics), ``"exact_gaussian"``
    (independent draws, no diodes) or ``"block_gibbs"`` (exact Markov chain on
    the gibbs density of a layered circuit, :mod:`simulator.block_gibbs`, with
    ``burn_in_sweeps`` discarded sweeps and ``sweeps_per_reading``).  Langevin
    and block Gibbs chains start from the noiseless operating point of the
    same nudge (native Newton), so the burn-in only has to forget that point.
    """

    name = "native"
    methods = ("langevin", "exact_gaussian", "block_gibbs")

    def __init__(self, spec: NoiseSpec, method: str = "langevin", burn_in_sweeps: int = 5, sweeps_per_reading: int = 1):
        if method not in self.methods:
            raise ValueError(f"method {method!r}: use one of {', '.join(map(repr, self.methods))}")
        self.spec, self.method = spec, method
        self.burn_in_sweeps, self.sweeps_per_reading = burn_in_sweeps, sweeps_per_reading
        self._engine = None

    def sample(self, circuit: Circuit, g_s, inputs_v, targets_v, beta_s: float, rng: np.random.Generator) -> np.ndarray:
        """Readings ``v[batch, sample, node]`` (volts)."""
        if self.method == "exact_gaussian":
            return gaussian_samples(circuit, g_s, self.spec, inputs_v, targets_v, beta_s, rng)
        from simulator.native import NativeEngine

        if self._engine is None or self._engine.circuit is not circuit:
            self._engine = NativeEngine()
            self._engine.load(circuit, g_s)
        else:
            self._engine.set_conductances(g_s)
        start = self._engine.settle(inputs_v, targets_v, beta_s)
        if self.method == "block_gibbs":
            from simulator.block_gibbs import block_gibbs_samples

            return block_gibbs_samples(
                circuit, g_s, self.spec, inputs_v, targets_v, beta_s, rng, start_v=start,
                burn_in_sweeps=self.burn_in_sweeps, sweeps_per_reading=self.sweeps_per_reading, engine=self._engine,
            )  # fmt: skip
        return langevin_samples(circuit, g_s, self.spec, inputs_v, targets_v, beta_s, rng, start_v=start)

    def close(self) -> None:
        pass
