"""Learning rules for circuits with thermal noise: expectations instead of steady states.

With gibbs noise the free nodes follow ``rho_b(v) ~ exp(-(E + b L) / T)``
(``T`` = T_eff in watts, ``b`` a nudge conductance in siemens).  The free
energy ``F(b) = -T log Z_b`` gives the objective ``J(beta) = F(beta) - F(0)``
(V^2 S = W), and (the seed paper, "Equilibrium Propagation Without Limits"):

* contrastive:    ``dJ/dG = E_beta[dE/dG] - E_0[dE/dG]``, exact for any finite beta;
* path integral:  ``dJ/dG = -(1/T) int_0^beta Cov_b(L, dE/dG) db``, by
  Gauss-Legendre quadrature with ``points`` nudges in ``(0, beta)``;
* loss covariance: ``d E_0[L] / dG = -(1/T) Cov_0(L, dE/dG)``, the gradient
  of the expected loss itself (the integrand at b = 0).

``dE/dG_e = (dv_e)^2 / 2`` (V^2) needs only the voltage across device e, so
all three are local given the controller's readings (time averages).  The
rules return ``dJ/dG / beta`` (V^2/S, summed over the batch), which tends
to ``dL/dG`` as beta -> 0, so the optimizer's learning rate means the same
as for the noiseless rule; the loss-covariance rule returns ``dE_0[L]/dG``.

Expectations are sample means over the readings of each input (axis 1 of
``v[batch, sample, node]``); covariances use ``1 / (samples - 1)``.

References
----------
"Equilibrium Propagation Without Limits", arXiv 2511.22024.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eqspice.circuits.network import Circuit
from eqspice.learning.rules.equilibrium import output_loss, softmax_targets
from eqspice.simulator.engine import Nudge


def weighted_energy_gradient(circuit: Circuit, v: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_k w_k dE/dG_e(v_k)`` per device (V^2 times the weights' unit), for ``v[k, node]``.

    On a crossbar group the sum is ``(sum w v_r^2 + sum w v_c^2) / 2 - (w v_r)^T v_c``:
    two vectors and one matrix product instead of a gather over every device.
    """
    w = np.asarray(weights, dtype=float)
    sq = w @ (v * v)
    out = np.empty(circuit.n_edges)
    for group in circuit.groups:
        if group.rows is not None:
            r, c = np.asarray(group.rows), np.asarray(group.cols)
            cross = (v[:, r] * w[:, None]).T @ v[:, c]
            out[group.slice] = (0.5 * (sq[r][:, None] + sq[c][None, :]) - cross).ravel()
        else:
            a, b = circuit.edges[group.slice].T
            out[group.slice] = 0.5 * (w @ (v[:, a] - v[:, b]) ** 2)
    return out


def expected_energy_gradient(circuit: Circuit, v: np.ndarray) -> np.ndarray:
    """``sum over batch of E[dE/dG_e]`` (V^2), the expectation a sample mean over axis 1 of ``v[batch, sample, node]``."""
    batch, samples, nodes = v.shape
    return weighted_energy_gradient(circuit, v.reshape(-1, nodes), np.full(batch * samples, 1.0 / samples))


def loss_energy_covariance(circuit: Circuit, v: np.ndarray, targets_v: np.ndarray) -> np.ndarray:
    """``sum over batch of Cov(L, dE/dG_e)`` (V^4) over the readings of each input."""
    batch, samples, nodes = v.shape
    loss = output_loss(circuit, v.reshape(-1, nodes), np.repeat(targets_v, samples, axis=0)).reshape(batch, samples)
    w = (loss - loss.mean(axis=1, keepdims=True)) / (samples - 1)
    return weighted_energy_gradient(circuit, v.reshape(-1, nodes), w.ravel())


def gauss_legendre_nudges(beta_s: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nudges ``b_j`` in (0, beta) and weights ``w_j`` (siemens) with ``int_0^beta f db ~ sum w_j f(b_j)``."""
    x, w = np.polynomial.legendre.leggauss(points)
    return 0.5 * beta_s * (x + 1.0), 0.5 * beta_s * w


@dataclass
class NoisyPhases:
    """The readings of every sampled nudge, ``samples[beta_s] = v[batch, sample, node]``.

    ``free`` (``v[batch, node]``) is what the controller reports as the
    network's output: the time average of the free phase, or the noiseless
    operating point when the rule samples no free phase.
    """

    free: np.ndarray
    #: keyed by the signed nudge; with softmax targets and the centred rule, key ``-beta``
    #: holds the phase nudged by ``+beta`` towards the mirrored targets (see :class:`NoisyRule`)
    samples: dict[float, np.ndarray] = field(default_factory=dict)
    targets_v: np.ndarray | None = None
    plus: np.ndarray | None = None
    minus: np.ndarray | None = None


@dataclass(frozen=True)
class NoisyRule:
    """One of the three estimators of the module docstring, on a sampler.

    Parameters
    ----------
    kind : ``"contrastive"`` (centred if ``centred``: ``E_beta - E_-beta`` over
        ``2 beta``), ``"path_integral"`` or ``"loss_covariance"``.
    beta_s : nudge, siemens (unused by ``loss_covariance``).
    temperature_w : T_eff, watts (the covariance rules).
    points : quadrature nudges of ``path_integral``.
    softmax_scale_v : contrastive only: nudge towards the softmax targets of the
        free phase's time average (:func:`eqspice.learning.rules.equilibrium.softmax_targets`, the
        cross-entropy loss) instead of the labels' targets; ``None`` for the
        squared error.  The rule is then the exact finite-nudge gradient of
        ``J`` for the squared error to those targets.  Centred, the second
        nudged phase aims at the mirrored targets ``2 <v_out>_0 - t`` through
        the same ``+beta`` conductance (a ``-beta`` conductance as large as an
        output's own would leave the output unbound); the contrast is then the
        exact gradient of ``J_c = [F(beta, t) - F(beta, t_mirrored)] / 2``.
        Both phases are equally stiffened by the nudge conductance, so the
        fall of the outputs' fluctuations under a nudge, which is the same for
        every label, cancels; what is left is the cross-entropy's step
        ``scale_v (y - p) readout`` seen by a circuit whose outputs are held by
        ``beta`` at their free mean.
    sampler : object with ``sample(circuit, g_s, inputs_v, nudge, rng)``
        returning ``v[batch, sample, node]`` (a
        :class:`~eqspice.simulator.engine.Nudge` with ``targets_v`` and ``beta_s``).
    """

    kind: str
    beta_s: float
    sampler: object
    temperature_w: float = 0.0
    points: int = 3
    centred: bool = False
    softmax_scale_v: float | None = None

    needs_rng = True

    def nudges(self) -> list[float]:
        if self.kind == "contrastive":
            return [0.0, self.beta_s, -self.beta_s] if self.centred else [0.0, self.beta_s]
        if self.kind == "path_integral":
            return [float(b) for b in gauss_legendre_nudges(self.beta_s, self.points)[0]]
        return [0.0]

    def phases(self, engine, inputs_v, targets_v, sample_ids=None, rng=None) -> NoisyPhases:
        circuit, g_s = engine.circuit, engine.g_s

        def sample(targets_v, beta_s):
            return self.sampler.sample(circuit, g_s, inputs_v, Nudge(targets_v=targets_v, beta_s=beta_s), rng)

        if self.softmax_scale_v is None:
            samples = {b: sample(targets_v, b) for b in self.nudges()}
            free = samples[0.0].mean(axis=1) if 0.0 in samples else engine.settle(inputs_v, sample_ids=sample_ids)
        else:  # the free phase first: its time average sets the targets of the nudged phases
            samples = {0.0: sample(targets_v, 0.0)}
            free = samples[0.0].mean(axis=1)
            targets_v = softmax_targets(circuit, free, np.atleast_2d(targets_v), self.softmax_scale_v)
            samples[self.beta_s] = sample(targets_v, self.beta_s)
            if self.centred:  # the mirrored targets, through the same +beta conductance (key -beta)
                mirrored = 2 * free[:, circuit.output_index] - targets_v
                samples[-self.beta_s] = sample(mirrored, self.beta_s)
        return NoisyPhases(free=free, samples=samples, targets_v=np.atleast_2d(targets_v))

    def gradient(self, circuit: Circuit, phases: NoisyPhases) -> np.ndarray:
        """``dJ/dG / beta`` (contrastive, path integral) or ``dE_0[L]/dG`` (loss covariance), V^2/S."""
        s = phases.samples
        if self.kind == "contrastive":
            if self.centred:
                diff = expected_energy_gradient(circuit, s[self.beta_s]) - expected_energy_gradient(circuit, s[-self.beta_s])
                return diff / (2 * self.beta_s)
            return (expected_energy_gradient(circuit, s[self.beta_s]) - expected_energy_gradient(circuit, s[0.0])) / self.beta_s
        if self.kind == "path_integral":
            nudges, weights = gauss_legendre_nudges(self.beta_s, self.points)
            integral = sum(w * loss_energy_covariance(circuit, s[float(b)], phases.targets_v) for b, w in zip(nudges, weights))
            return -integral / (self.temperature_w * self.beta_s)
        return -loss_energy_covariance(circuit, s[0.0], phases.targets_v) / self.temperature_w

    def objective_gradient(self, circuit: Circuit, phases: NoisyPhases) -> np.ndarray:
        """``dJ/dG`` itself (V^2), for the contrastive and path-integral rules."""
        return self.gradient(circuit, phases) * (self.beta_s if self.kind != "loss_covariance" else 1.0)


def make_noisy_rule(config) -> NoisyRule:
    """The rule of a run config with ``noise.model != "none"`` (its sampler on the config's backend).

    ``one_sided`` and ``contrastive`` are the same rule; ``centred`` samples
    the +beta and -beta phases.
    """
    from eqspice.simulator.ngspice.sampler import NgspiceSampler
    from eqspice.simulator.sampling.native import NativeSampler

    noise, t, e = config.noise, config.training, config.engine
    spec = noise.spec()
    if e.backend == "native":
        sampler = NativeSampler(spec, noise.native_sampler, noise.burn_in_sweeps, noise.sweeps_per_reading)
    else:
        sampler = NgspiceSampler(spec, workers=e.workers, timeout_sec=e.timeout_sec * 10)
    kind = t.estimator if t.estimator in ("path_integral", "loss_covariance") else "contrastive"
    return NoisyRule(
        kind=kind,
        beta_s=t.beta_s,
        sampler=sampler,
        temperature_w=spec.temperature_w,
        points=noise.quadrature_points,
        centred=t.estimator == "centred",
        softmax_scale_v=t.softmax_scale_v if t.loss == "cross_entropy" else None,
    )
