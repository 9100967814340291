"""Euler-Maruyama dynamics of the noisy circuit, batched, in numpy."""

from __future__ import annotations

import numpy as np

from eqspice.circuits.netlist import TIGHT_OPTIONS
from eqspice.circuits.network import Circuit
from eqspice.circuits.noise import NoiseSpec, node_capacitances, noisy_edges
from eqspice.simulator.engine import Nudge, free_end_incidence
from eqspice.simulator.sampling.co_content import CoContent, SamplingError


def check_time_step(circuit: Circuit, g_s, spec: NoiseSpec, beta_s: float = 0.0) -> float:
    """The shortest RC time constant ``min C_n / H_nn`` (seconds); refuse ``dt_sec`` above half of it."""
    cap = node_capacitances(circuit, g_s, spec, beta_s)
    system_diag = np.asarray(CoContent(circuit, g_s, np.zeros((1, len(circuit.input_nodes))), None, abs(beta_s), 0.0).h.diagonal())
    tau = float(np.min(cap / system_diag))
    if spec.dt_sec > 0.5 * tau:
        raise SamplingError(
            f"noise.dt_sec = {spec.dt_sec:g} s is too long for the circuit's shortest time constant C/G = {tau:.3g} s; "
            f"use dt_sec <= {0.5 * tau:.3g} s (better {tau / 20:.3g} s) or larger capacitances"
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
        from eqspice.simulator.native import NativeEngine

        engine = NativeEngine(gmin_s=gmin_s)
        engine.load(circuit, g_s)
        start_v = engine.settle(inputs_v, Nudge(targets_v=targets_v, beta_s=beta_s))
    v = np.array(start_v[:, circuit.free_slice], dtype=float)
    cap = node_capacitances(circuit, g_s, spec, beta_s)
    dt = spec.dt_sec
    gain = dt / cap
    if spec.model == "gibbs":
        kick = np.sqrt(2.0 * spec.t_eff_w * dt / cap)
    else:
        k = circuit.free_slice.start
        pairs, g_noise = noisy_edges(circuit, g_s)
        # current of noise source e flows from its first node to its second: it leaves a, enters b
        spread = -free_end_incidence(pairs, k, len(cap))
        edge_sd = np.sqrt(2.0 * spec.temperature_w * g_noise / dt)
    steps = int(round(spec.run_sec / dt))
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
        raise SamplingError("the Langevin sampler diverged; shorten noise.dt_sec")
    known = np.broadcast_to(system.known[:, None, :], (batch, spec.samples, system.known.shape[1]))
    return np.concatenate([known, out], axis=2)


