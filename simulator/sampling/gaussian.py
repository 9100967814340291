"""Circuits without diodes: the stationary Gaussian of the free-node voltages, in closed form."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from eqspice.circuits.network import Circuit
from eqspice.circuits.noise import NoiseSpec, node_capacitances, noisy_edges
from eqspice.simulator.sampling.co_content import CoContent, SamplingError


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


