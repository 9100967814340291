"""Noisy transients in ngspice: trnoise sources and node capacitors, read at the sampling times."""

from __future__ import annotations

import numpy as np

from eqspice.circuits.netlist import TIGHT_OPTIONS, render_netlist
from eqspice.circuits.network import Circuit
from eqspice.circuits.noise import NoiseSpec, noise_netlist_lines
from eqspice.simulator.engine import EngineError, Nudge
from eqspice.simulator.ngspice.pool import ChildPool, Job
from eqspice.simulator.sampling.co_content import sampled_phase
from eqspice.simulator.sampling.langevin import check_time_step

#: ngspice options of the noisy transient: the noise step bounds every
#: internal step (TMAX), so the tight DC tolerances would only slow it down.
TRANSIENT_OPTIONS = {"reltol": 1e-6, "abstol": 1e-15, "vntol": 1e-9, "gmin": TIGHT_OPTIONS["gmin"]}


class NgspiceSampler:
    """Transient runs of the noisy netlist in supervised ngspice children.

    Each input row and nudge is one run: the netlist of
    :func:`eqspice.circuits.noise.noise_netlist_lines` (trnoise sources, node
    capacitors, ``.tran dt run 0 dt``), seeded with ``setseed`` from the
    caller's generator (ngspice 39 ignores that seed for trnoise: its runs
    are statistically, not bitwise, repeatable); the node voltages are read at
    :meth:`~eqspice.circuits.noise.NoiseSpec.sample_times` by linear interpolation
    of ngspice's time points.
    """

    name = "ngspice"

    def __init__(self, spec: NoiseSpec, workers: int = 1, timeout_sec: float = 120.0, options: dict | None = None):
        self.spec = spec
        self.timeout_sec = timeout_sec
        self.options = dict(TRANSIENT_OPTIONS if options is None else options)
        self._pool = ChildPool(workers)

    @property
    def restarts(self) -> int:
        return self._pool.restarts

    def netlist(self, circuit: Circuit, g_s, inputs_v, targets_v, beta_s: float, seed: int | None = None) -> str:
        """SPICE text of one noisy transient run (runs as it is under ``ngspice -b``)."""
        lines = noise_netlist_lines(circuit, g_s, self.spec, seed, beta_s)
        return render_netlist(circuit, g_s, inputs_v, targets_v, beta_s, analysis="\n".join(lines), options=self.options)

    def sample(self, circuit: Circuit, g_s, inputs_v, nudge: Nudge, rng: np.random.Generator) -> np.ndarray:
        """Readings ``v[batch, sample, node]`` (volts), one transient run per input row.

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
            Draws each run's seed.

        Raises
        ------
        SimulatorCrash, EngineError
            A run failed (:meth:`eqspice.simulator.ngspice.pool.ChildPool.run`) or stopped early.
        SamplingError
            ``spec.dt_sec`` is too long for the circuit, or the nudge injects currents.
        """
        phase = sampled_phase(circuit, inputs_v, nudge)
        check_time_step(circuit, g_s, self.spec, phase.beta_s)
        seeds = rng.integers(1, 2**31 - 1, size=len(phase.inputs_v))
        times = self.spec.sample_times()
        names = list(circuit.node_names)
        rows = range(len(phase.inputs_v))

        def run(r: int) -> tuple:
            netlist = self.netlist(circuit, g_s, phase.inputs_v[r], phase.targets_v[r], phase.beta_s, int(seeds[r]))
            return ("transient", netlist, names, int(seeds[r]))

        jobs = (Job(run(r), f"the noisy transient of row {r}", self.timeout_sec) for r in rows)
        out = np.empty((len(rows), self.spec.samples, len(names)))
        for r, (t, v) in zip(rows, self._pool.run(jobs)):
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


