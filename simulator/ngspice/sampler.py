"""Noisy transients in ngspice: trnoise sources and node capacitors, read at the sampling times."""

from __future__ import annotations

import numpy as np

from eqspice.circuits.netlist import TIGHT_OPTIONS, render_netlist
from eqspice.circuits.network import Circuit
from eqspice.circuits.noise import NoiseSpec, noise_netlist_lines
from eqspice.simulator.engine import EngineError, SimulatorCrash, batch_arrays
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
        from eqspice.simulator.ngspice.pool import ChildPool

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
                reply, why = (None, gone[k]) if gone[k] else children[k].receive(self.timeout_sec)
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


