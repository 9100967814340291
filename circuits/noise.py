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

from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from eqspice.circuits.constants import BOLTZMANN_J_PER_K
from eqspice.circuits.network import Circuit
from eqspice.circuits.schema import FieldError, SpecError, spec, tagged

#: Values of ``model`` (``noise.model`` in a run config), in the order the messages list them.
NOISE_MODELS = ("none", "johnson", "gibbs")


class NoiseSpecError(SpecError):
    """A noise specification that cannot run; the message is one line naming the parameter."""


@spec(error=NoiseSpecError)
class NoNoise:
    """A noiseless circuit: ``model = "none"``, no other parameter.

    Parameters
    ----------
    model : {"none"}
        The tag of this noise model (:func:`noise_spec`).
    """

    model: Literal["none"] = "none"


@spec(error=NoiseSpecError)
class NoiseSpec:
    """How injected thermal noise is sampled: what :class:`JohnsonNoise` and :class:`GibbsNoise` share.

    Build one of those two (or :func:`noise_spec`); this class alone has no noise model.

    Parameters
    ----------
    dt_sec : float
        Noise time step: ngspice's trnoise NT and the native step, seconds; positive.
    run_sec : float
        Length of the transient run per phase, seconds; at least ``dt_sec``.
    burn_in_sec : float
        Time discarded at the start of the run, seconds; zero or more, below ``run_sec``.
    samples : int
        Voltage readings per phase, equally spaced over the window
        ``[burn_in_sec, run_sec]``; expectations are averages over them.
    capacitance_f : float
        Capacitance from every free node to ground, farads; positive.

    Raises
    ------
    NoiseSpecError
        A field of the wrong type, out of range or not finite, or times that do
        not fit together (one line naming the field).
    """

    dt_sec: Annotated[float, Field(gt=0)] = 1e-10
    run_sec: Annotated[float, Field(gt=0)] = 1e-8
    burn_in_sec: Annotated[float, Field(ge=0)] = 1e-9
    samples: Annotated[int, Field(ge=1)] = 20
    capacitance_f: Annotated[float, Field(gt=0)] = 1e-12

    @model_validator(mode="after")
    def _times_fit(self):
        if type(self) is NoiseSpec:
            raise FieldError("model", "missing; build JohnsonNoise or GibbsNoise, or noise_spec(model, ...)")
        if self.dt_sec > self.run_sec:
            raise FieldError(
                "dt_sec", f"{self.dt_sec:g} s is longer than the run (run_sec = {self.run_sec:g} s); shorten dt_sec"
            )
        if self.burn_in_sec >= self.run_sec:
            raise FieldError(
                "burn_in_sec", f"{self.burn_in_sec:g} s is not shorter than the run (run_sec = {self.run_sec:g} s)"
            )
        return self

    @property
    def temperature_w(self) -> float:
        """Noise strength: ``k T`` in joules (johnson) or ``T_eff`` in watts (gibbs).

        Johnson noise sets the free-node covariance ``k T C^-1`` (J/F = V^2);
        gibbs noise sets ``T_eff H^-1`` (W/S = V^2).  Either way the noise
        current PSD at a node is ``2 * temperature_w * (C_n or G)``.
        """
        raise NotImplementedError

    @property
    def window_sec(self) -> float:
        """Length of the window the readings are spread over, seconds."""
        return self.run_sec - self.burn_in_sec

    def sample_times(self) -> np.ndarray:
        """Times of the readings, seconds: the centres of ``samples`` equal slices of the window."""
        return self.burn_in_sec + (np.arange(self.samples) + 0.5) * (self.window_sec / self.samples)


@spec(error=NoiseSpecError)
class JohnsonNoise(NoiseSpec):
    """Johnson noise: a current of two-sided PSD ``2 k T G`` across every conductance.

    Parameters
    ----------
    temperature_k : float
        Physical temperature, kelvin; positive.
    model : {"johnson"}
        The tag of this noise model (:func:`noise_spec`).

    The sampling parameters are :class:`NoiseSpec`'s; every node has ``capacitance_f``.
    """

    temperature_k: Annotated[float, Field(gt=0)] = 300.0
    model: Literal["johnson"] = "johnson"

    @property
    def temperature_w(self) -> float:
        return BOLTZMANN_J_PER_K * self.temperature_k


@spec(error=NoiseSpecError)
class GibbsNoise(NoiseSpec):
    """Gibbs noise: a current of two-sided PSD ``2 T_eff C_n`` at every free node, ``p(v) ~ exp(-E / T_eff)``.

    Parameters
    ----------
    t_eff_w : float
        Effective temperature, watts (V^2 S); positive, required (keyword).
    tau_sec : float or None
        If set, each free node's capacitance is ``tau_sec`` times its total
        conductance, the nudge included (seconds), so every node relaxes at
        about the same rate; the stationary density does not depend on C.
        None: every node has ``capacitance_f``.
    model : {"gibbs"}
        The tag of this noise model (:func:`noise_spec`).

    The sampling parameters are :class:`NoiseSpec`'s.
    """

    t_eff_w: Annotated[float, Field(gt=0)] = Field(kw_only=True)
    tau_sec: Annotated[float, Field(gt=0)] | None = None
    model: Literal["gibbs"] = "gibbs"

    @property
    def temperature_w(self) -> float:
        return self.t_eff_w


#: Builds a noise model, told apart by its ``model`` tag (``[noise]`` of a run config).
_build_noise = tagged(dict(zip(NOISE_MODELS, (NoNoise, JohnsonNoise, GibbsNoise))), NoiseSpecError)


def noise_spec(model: str, **fields) -> NoNoise | JohnsonNoise | GibbsNoise:
    """The noise model called ``model`` with ``fields``, checked as a run config's ``[noise]`` is.

    Parameters
    ----------
    model : {"none", "johnson", "gibbs"}
        Which model.
    **fields
        Its parameters (:class:`JohnsonNoise`, :class:`GibbsNoise`).

    Returns
    -------
    NoNoise, JohnsonNoise or GibbsNoise

    Raises
    ------
    NoiseSpecError
        An unknown model, or a parameter it lacks or refuses (one line).
    """
    return _build_noise(model, **fields)


def matched_tau_sec(spec: NoiseSpec) -> float | None:
    """``tau_sec`` of a gibbs spec with matched capacitances, else None (every node has ``capacitance_f``)."""
    return spec.tau_sec if isinstance(spec, GibbsNoise) else None


def self_conductance(circuit: Circuit, g_s: np.ndarray) -> np.ndarray:
    """Total conductance of the devices and loads at every free node, siemens (diodes excluded)."""
    k = len(circuit.input_nodes) + len(circuit.fixed_nodes)
    total = np.bincount(circuit.edges.ravel(), weights=np.repeat(g_s, 2), minlength=len(circuit.node_names))
    out = total[k:].copy()
    out[circuit.output_index - k] += circuit.output_load_s
    return out


def node_capacitances(circuit: Circuit, g_s: np.ndarray, spec: NoiseSpec, beta_s: float = 0.0) -> np.ndarray:
    """Capacitance of every free node to ground, farads.

    With ``tau_sec`` (gibbs): ``tau_sec`` times the node's total conductance, the
    nudge ``|beta_s|`` included at the outputs, so a strong nudge does not make
    the outputs faster than the rest (gibbs: C does not change the density).
    """
    tau_sec = matched_tau_sec(spec)
    if tau_sec is not None:
        total = self_conductance(circuit, g_s)
        total[circuit.output_index - circuit.free_slice.start] += abs(beta_s)
        return tau_sec * total
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

    The ``.tran`` card is ``.tran dt_sec run_sec 0 dt_sec``: the largest internal
    step is the noise step, so the integrator sees every noise sample.
    """
    names = circuit.node_names
    node = lambda i: "0" if i < 0 else names[i]  # noqa: E731
    cap = node_capacitances(circuit, g_s, spec, beta_s)
    tau_sec = matched_tau_sec(spec)
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
        + (f"tau_sec = {tau_sec:g} s times each node's conductance (nudge included)" if tau_sec else f"{spec.capacitance_f:g} F"),
        f"* noise time step NT = {spec.dt_sec:g} s, run {spec.run_sec:g} s, burn-in {spec.burn_in_sec:g} s, "
        f"{spec.samples} readings over the window {spec.window_sec:g} s",
        "* trnoise(NA NT 0 0): NA = sqrt(two-sided PSD / NT) amperes rms",
    ]
    if seed is not None:
        lines.append(f"* noise seed {seed} (ngspice: setseed {seed})")
    lines += [f"Cnode_{names[i]} {names[i]} 0 {_fmt(c)}" for i, c in zip(range(circuit.free_slice.start, circuit.free_slice.stop), cap)]
    if spec.model == "gibbs":
        amp = np.sqrt(2.0 * spec.t_eff_w * cap / spec.dt_sec)
        lines += [
            f"Inoise_{names[i]} 0 {names[i]} dc 0 trnoise({_fmt(a)} {_fmt(spec.dt_sec)} 0 0)"
            for i, a in zip(range(circuit.free_slice.start, circuit.free_slice.stop), amp)
        ]
    else:
        pairs, g = noisy_edges(circuit, g_s)
        amp = np.sqrt(2.0 * spec.temperature_w * g / spec.dt_sec)
        lines += [
            f"Ijohnson_{e} {node(a)} {node(b)} dc 0 trnoise({_fmt(na)} {_fmt(spec.dt_sec)} 0 0)"
            for e, ((a, b), na) in enumerate(zip(pairs.tolist(), amp))
        ]
    lines.append(f".tran {_fmt(spec.dt_sec)} {_fmt(spec.run_sec)} 0 {_fmt(spec.dt_sec)}")
    return lines
