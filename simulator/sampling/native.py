"""The native samplers behind one ``sample`` call."""

from __future__ import annotations

import numpy as np

from eqspice.circuits.network import Circuit
from eqspice.circuits.noise import NoiseSpec
from eqspice.simulator.engine import Nudge
from eqspice.simulator.sampling.co_content import sampled_phase
from eqspice.simulator.sampling.gaussian import gaussian_samples
from eqspice.simulator.sampling.langevin import langevin_samples


class NativeSampler:
    """The native samplers behind one ``sample`` call.

    ``method``: ``"langevin"`` (Euler-Maruyama dynamics), ``"exact_gaussian"``
    (independent draws, no diodes) or ``"block_gibbs"`` (exact Markov chain on
    the gibbs density of a layered circuit, :mod:`eqspice.simulator.sampling.block_gibbs`, with
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

    def sample(self, circuit: Circuit, g_s, inputs_v, nudge: Nudge, rng: np.random.Generator) -> np.ndarray:
        """Readings ``v[batch, sample, node]`` (volts).

        Parameters
        ----------
        circuit : Circuit
        g_s : numpy.ndarray
            Conductances ``g_s[edge]``, siemens.
        inputs_v : numpy.ndarray
            Input voltages ``[batch, input]``, volts.
        nudge : Nudge
            Targets and ``beta_s`` of the phase (:data:`~eqspice.simulator.engine.FREE`: the free phase).
        rng : numpy.random.Generator

        Raises
        ------
        SamplingError
            The method cannot sample this circuit, or the nudge injects currents.
        """
        phase = sampled_phase(circuit, inputs_v, nudge)
        inputs_v, targets_v, beta_s = phase.inputs_v, phase.targets_v, phase.beta_s
        if self.method == "exact_gaussian":
            return gaussian_samples(circuit, g_s, self.spec, inputs_v, targets_v, beta_s, rng)
        from eqspice.simulator.native import NativeEngine

        if self._engine is None or self._engine.circuit is not circuit:
            self._engine = NativeEngine()
            self._engine.load(circuit, g_s)
        else:
            self._engine.set_conductances(g_s)
        start = self._engine.settle(inputs_v, nudge)
        if self.method == "block_gibbs":
            from eqspice.simulator.sampling.block_gibbs import block_gibbs_samples

            return block_gibbs_samples(
                circuit, g_s, self.spec, inputs_v, targets_v, beta_s, rng, start_v=start,
                burn_in_sweeps=self.burn_in_sweeps, sweeps_per_reading=self.sweeps_per_reading, engine=self._engine,
            )  # fmt: skip
        return langevin_samples(circuit, g_s, self.spec, inputs_v, targets_v, beta_s, rng, start_v=start)

    def close(self) -> None:
        pass
