"""Thermal noise in the circuit: what it is, and its SPICE text.

Two models (docs/physics.md, "Thermal noise").  The circuit's dynamics are

    C_n dv_n/dt = -dE/dv_n + i_n(t),

with node capacitances ``C_n`` (farads) and white noise currents ``i_n``
(amperes).  The co-content ``E(v) = sum_e G_e dv_e^2 / 2 + diode terms`` is in
watts (V^2 S), so every "temperature" below is an energy rate in watts too.

* ``gibbs``: a noise current at every free node with two-sided power spectral
  density ``2 T_eff C_n`` (A^2/Hz; one-sided ``4 T_eff C_n``).  The
  Fokker-Planck equation of ``dv = -C^-1 grad E dt + sqrt(2 T_eff C^-1) dW``
  then has the stationary density ``p(v) ~ exp(-E(v) / T_eff)`` whatever the
  capacitances: the distribution the finite-nudge theory assumes.  ``T_eff``
  is given in watts (V^2 S).
* ``johnson``: a noise current across every conductance G (memristors and
  output loads) with two-sided PSD ``2 k T G`` (one-sided ``4 k T G``) at the
  physical temperature ``T`` (kelvin).  For a linear network at rest the
  free-node covariance is then ``k T C^-1`` (equipartition, one ``kT/2`` per
  capacitor), independent of the conductances.  Diodes and the nudge
  (a controlled source) are noiseless in this model.

In ngspice each noise current is ``trnoise(NA NT 0 0)``: Gaussian samples of
rms ``NA`` every ``NT`` seconds, linear in between.  Its two-sided PSD is
``NA^2 NT sinc^4(f NT)``, i.e. ``NA^2 NT`` well below ``1/NT``, so a source of
PSD ``S`` has ``NA = sqrt(S / NT)``.  ``NT`` must sit well below the smallest
RC time constant; the interpolation removes a fraction of order ``NT / tau``
of the variance (reported by ``eqspice gradcheck noise``).

References
----------
"Equilibrium Propagation Without Limits", arXiv 2511.22024 (Gibbs density,
free energy, finite nudge).  ngspice manual, "Transient noise source".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from eqspice.circuits.network import Circuit

#: Boltzmann's constant, J/K (ngspice's value).
BOLTZMANN_J_PER_K = 1.38064852e-23

NOISE_MODELS = ("johnson", "gibbs")


class NoiseSpecError(ValueError):
    """A noise specification that cannot run; the message is one line naming the parameter."""


@dataclass(frozen=True)
class NoiseSpec:
    """Injected thermal noise and how it is sampled.

    Parameters
    ----------
    model : ``"johnson"`` or ``"gibbs"`` (see the module docstring).
    temperature_k : physical temperature of the johnson model, kelvin.
    t_eff_w : effective temperature of the gibbs model, watts (V^2 S).
    capacitance_f : capacitance from every free node to ground, farads.
    tau_s : if not None (gibbs only), each free node's capacitance is instead
        ``tau_s`` times its total conductance, the nudge included (seconds), so
        every node relaxes at about the same rate; the stationary density does
        not depend on C.
    dt_s : noise time step: ngspice's trnoise NT and the native step, seconds.
    run_s : length of the transient run per phase, seconds.
    burn_in_s : time discarded at the start of the run, seconds.
    samples : voltage readings per phase, equally spaced over the window
        ``[burn_in_s, run_s]``; expectations are averages over them.
    """

    model: str
    dt_s: float
    run_s: float
    burn_in_s: float
    samples: int
    temperature_k: float = 300.0
    t_eff_w: float = 0.0
    capacitance_f: float = 1e-12
    tau_s: float | None = None

    def __post_init__(self) -> None:
        check_noise_spec(self)

    @property
    def temperature_w(self) -> float:
        """Noise strength: ``k T`` in joules (johnson) or ``T_eff`` in watts (gibbs).

        Johnson noise sets the free-node covariance ``k T C^-1`` (J/F = V^2);
        gibbs noise sets ``T_eff H^-1`` (W/S = V^2).  Either way the noise
        current PSD at a node is ``2 * temperature_w * (C_n or G)``.
        """
        return BOLTZMANN_J_PER_K * self.temperature_k if self.model == "johnson" else self.t_eff_w

    @property
    def window_s(self) -> float:
        return self.run_s - self.burn_in_s

    def sample_times(self) -> np.ndarray:
        """Times of the readings, seconds: the centres of ``samples`` equal slices of the window."""
        return self.burn_in_s + (np.arange(self.samples) + 0.5) * (self.window_s / self.samples)


def check_noise_spec(spec: NoiseSpec) -> None:
    """Refuse a spec that cannot run, with one line naming the parameter and the fix."""
    if spec.model not in NOISE_MODELS:
        raise NoiseSpecError(f"noise.model = {spec.model!r}: use one of {', '.join(NOISE_MODELS)}")
    for name in ("dt_s", "run_s", "capacitance_f"):
        value = getattr(spec, name)
        if not (math.isfinite(value) and value > 0):
            raise NoiseSpecError(f"noise.{name} = {value:g}: must be a positive number")
    if not (math.isfinite(spec.burn_in_s) and spec.burn_in_s >= 0):
        raise NoiseSpecError(f"noise.burn_in_s = {spec.burn_in_s:g}: must be zero or positive")
    if spec.model == "johnson" and not (math.isfinite(spec.temperature_k) and spec.temperature_k > 0):
        raise NoiseSpecError(f"noise.temperature_k = {spec.temperature_k:g}: must be a positive temperature in kelvin")
    if spec.model == "gibbs" and not (math.isfinite(spec.t_eff_w) and spec.t_eff_w > 0):
        raise NoiseSpecError(f"noise.t_eff_w = {spec.t_eff_w:g}: the gibbs model needs a positive T_eff in watts")
    if spec.tau_s is not None:
        if spec.model != "gibbs":
            raise NoiseSpecError("noise.tau_s: matched capacitances only for the gibbs model; use capacitance_f")
        if not (math.isfinite(spec.tau_s) and spec.tau_s > 0):
            raise NoiseSpecError(f"noise.tau_s = {spec.tau_s:g}: must be a positive time in seconds")
    if spec.dt_s > spec.run_s:
        raise NoiseSpecError(
            f"noise.dt_s = {spec.dt_s:g} s is longer than the run (run_s = {spec.run_s:g} s); shorten dt_s"
        )
    if spec.burn_in_s >= spec.run_s:
        raise NoiseSpecError(
            f"noise.burn_in_s = {spec.burn_in_s:g} s is not shorter than the run (run_s = {spec.run_s:g} s)"
        )
    if spec.samples < 1:
        raise NoiseSpecError(f"noise.samples = {spec.samples}: need at least 1 reading")


def self_conductance(circuit: Circuit, g_s: np.ndarray) -> np.ndarray:
    """Total conductance of the devices and loads at every free node, siemens (diodes excluded)."""
    k = len(circuit.input_nodes) + len(circuit.fixed_nodes)
    total = np.bincount(circuit.edges.ravel(), weights=np.repeat(g_s, 2), minlength=len(circuit.node_names))
    out = total[k:].copy()
    out[circuit.output_index - k] += circuit.output_load_s
    return out


def node_capacitances(circuit: Circuit, g_s: np.ndarray, spec: NoiseSpec, beta_s: float = 0.0) -> np.ndarray:
    """Capacitance of every free node to ground, farads.

    With ``tau_s``: ``tau_s`` times the node's total conductance, the nudge
    ``|beta_s|`` included at the outputs, so a strong nudge does not make the
    outputs faster than the rest (gibbs: C does not change the density).
    """
    if spec.tau_s is not None:
        total = self_conductance(circuit, g_s)
        total[circuit.output_index - circuit.free_slice.start] += abs(beta_s)
        return spec.tau_s * total
    return np.full(len(circuit.free_nodes), spec.capacitance_f)


def noisy_edges(circuit: Circuit, g_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of node indices (-1 for ground) and conductances (S) that carry johnson noise.

    Every memristor with at least one free end, then every output load.
    """
    k = len(circuit.input_nodes) + len(circuit.fixed_nodes)
    touches = (circuit.edges >= k).any(axis=1)
    pairs = [circuit.edges[touches]]
    g = [np.asarray(g_s, dtype=float)[touches]]
    if circuit.output_load_s > 0:
        pairs.append(np.stack([circuit.output_index, np.full(len(circuit.output_index), -1)], axis=1))
        g.append(np.full(len(circuit.output_index), circuit.output_load_s))
    return np.concatenate(pairs), np.concatenate(g)


def _fmt(x: float) -> str:
    return repr(float(x))


def noise_netlist_lines(
    circuit: Circuit, g_s: np.ndarray, spec: NoiseSpec, seed: int | None = None, beta_s: float = 0.0
) -> list[str]:
    """Node capacitors, trnoise sources and the ``.tran`` card, with the parameters in comments.

    The ``.tran`` card is ``.tran dt_s run_s 0 dt_s``: the largest internal
    step is the noise step, so the integrator sees every noise sample.
    """
    names = circuit.node_names
    node = lambda i: "0" if i < 0 else names[i]  # noqa: E731
    cap = node_capacitances(circuit, g_s, spec, beta_s)
    lines = [
        f"* thermal noise, model {spec.model}: "
        + (
            f"johnson, T = {spec.temperature_k:g} K (kT = {spec.temperature_w:g} J), "
            "trnoise current across every conductance, two-sided PSD 2kTG"
            if spec.model == "johnson"
            else f"gibbs, T_eff = {spec.t_eff_w:g} W (V^2 S), trnoise current at every free node, "
            "two-sided PSD 2 T_eff C_n: stationary p(v) ~ exp(-E/T_eff)"
        ),
        "* node capacitance: "
        + (f"tau_s = {spec.tau_s:g} s times each node's conductance (nudge included)" if spec.tau_s else f"{spec.capacitance_f:g} F"),
        f"* noise time step NT = {spec.dt_s:g} s, run {spec.run_s:g} s, burn-in {spec.burn_in_s:g} s, "
        f"{spec.samples} readings over the window {spec.window_s:g} s",
        "* trnoise(NA NT 0 0): NA = sqrt(two-sided PSD / NT) amperes rms",
    ]
    if seed is not None:
        lines.append(f"* noise seed {seed} (ngspice: setseed {seed})")
    lines += [f"Cnode_{names[i]} {names[i]} 0 {_fmt(c)}" for i, c in zip(range(circuit.free_slice.start, circuit.free_slice.stop), cap)]
    if spec.model == "gibbs":
        amp = np.sqrt(2.0 * spec.t_eff_w * cap / spec.dt_s)
        lines += [
            f"Inoise_{names[i]} 0 {names[i]} dc 0 trnoise({_fmt(a)} {_fmt(spec.dt_s)} 0 0)"
            for i, a in zip(range(circuit.free_slice.start, circuit.free_slice.stop), amp)
        ]
    else:
        pairs, g = noisy_edges(circuit, g_s)
        amp = np.sqrt(2.0 * spec.temperature_w * g / spec.dt_s)
        lines += [
            f"Ijohnson_{e} {node(a)} {node(b)} dc 0 trnoise({_fmt(na)} {_fmt(spec.dt_s)} 0 0)"
            for e, ((a, b), na) in enumerate(zip(pairs.tolist(), amp))
        ]
    lines.append(f".tran {_fmt(spec.dt_s)} {_fmt(spec.run_s)} 0 {_fmt(spec.dt_s)}")
    return lines
