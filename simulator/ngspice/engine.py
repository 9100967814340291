"""The reference engine: ngspice (libngspice through PySpice) in supervised children.

The circuit is loaded once.  Per sample only what changed is ``alter``-ed: the
input sources, the target sources and the nudge gain.  A weight update that
touches many conductances reloads the circuit with the new values (ngspice's
``alter`` cost grows with circuit size, docs/design.md); a sparse one alters.

Each ngspice instance lives in a child process (``workers`` of them settle the
samples of a batch in parallel).  If a child dies, exits or hangs past its
timeout, the engine raises :class:`~eqspice.simulator.engine.SimulatorCrash` naming the
sample and phase, and starts a fresh child with the same circuit and
conductances, so the next call works.
"""

from __future__ import annotations

import numpy as np

from eqspice.circuits.netlist import (
    SAMPLE_INDEX,
    TIGHT_OPTIONS,
    amplifier_gain_values,
    antisymmetric_gains,
    antisymmetric_names,
    edge_names,
    free_free_edges,
    injection_name,
    nudge_name,
    render_netlist,
    sample_injection,
    sample_nudge,
    sample_source,
    source_name,
    target_node,
)
from eqspice.circuits.network import Circuit
from eqspice.simulator.engine import BatchPhase, Engine, EngineError
from eqspice.simulator.ngspice.pool import ChildPool, Job

#: Fraction of conductances above which an update reloads the circuit instead of altering.
RELOAD_FRACTION = 0.05


class NgspiceEngine(Engine):
    """Settle circuits with ngspice, one operating point per sample and phase.

    Parameters
    ----------
    timeout_sec : seconds one operating point may take before its child is
        declared hung, killed and replaced.
    load_timeout_sec : seconds a (re)load of the circuit may take.
    workers : ngspice child processes that settle samples in parallel.
    mode : ``"op"``: one operating point per sample and phase, inputs changed by
        ``alter``; ``"sweep"``: many samples per ngspice call, as the points of
        one DC sweep of a sample-index source that every input and target
        source follows piecewise-linearly (the circuit is memoryless, so each
        point is that sample's operating point).  Both give the same voltages.
    chunk : samples per sweep.
    options : ngspice ``.options``; default :data:`eqspice.circuits.netlist.TIGHT_OPTIONS`.
    """

    name = "ngspice"

    def __init__(
        self,
        timeout_sec: float = 30.0,
        load_timeout_sec: float = 300.0,
        workers: int = 1,
        mode: str = "op",
        chunk: int = 256,
        options: dict[str, float] | None = None,
    ) -> None:
        if mode not in ("op", "sweep"):
            raise ValueError(f"mode {mode!r}: use 'op' or 'sweep'")
        self.mode = mode
        self.chunk = chunk
        self.timeout_sec = timeout_sec
        self.load_timeout_sec = load_timeout_sec
        self.options = dict(TIGHT_OPTIONS if options is None else options)
        self.circuit: Circuit | None = None
        self.g_s: np.ndarray | None = None
        self._pool = ChildPool(workers, restore=self._restore_job)

    @property
    def child_pids(self) -> list[int]:
        return self._pool.pids

    @property
    def restarts(self) -> int:
        return self._pool.restarts

    # -- children ------------------------------------------------------------
    def _load_request(self) -> tuple:
        netlist = render_netlist(self.circuit, self.g_s, options=self.options)
        current = {source_name(n): 0.0 for n in self.circuit.input_nodes}
        for out in self.circuit.output_nodes:
            current[source_name(target_node(out))] = 0.0
            current[nudge_name(out)] = 0.0
        current.update({name: v for name, (_, v) in self._antisymmetric_values(1.0).items()})
        current.update({injection_name(n): 0.0 for n in self.circuit.injection_nodes})
        return ("load", netlist, list(self.circuit.node_names), current)

    def _antisymmetric_values(self, antisymmetric_sign: float, edges: np.ndarray | None = None) -> dict:
        """``alter`` values of the VCCS pairs of non-reciprocal edges (all, or ``edges``), and of the
        amplifiers' E and F gains (learning gains for sign -1, :meth:`Amplifiers.learning_gains`)."""
        circuit = self.circuit
        values = amplifier_gain_values(circuit, antisymmetric_sign)
        if circuit.nonreciprocal is None:
            return values
        gains = antisymmetric_gains(circuit, self.g_s, antisymmetric_sign)
        names = antisymmetric_names(circuit)
        chosen = np.flatnonzero(circuit.nonreciprocal) if edges is None else edges
        return values | {
            name: ("gain", float(gains[e]))
            for e in chosen.tolist()
            if circuit.nonreciprocal[e] != 0
            for name in names[e]
        }

    def _restore_job(self) -> Job | None:
        """The job that loads the current circuit into a child that replaced a dead or hung one."""
        if self.circuit is None:
            return None
        return Job(self._load_request(), "loading the circuit", self.load_timeout_sec)

    # -- Engine interface ----------------------------------------------------
    def load(self, circuit: Circuit, g_s: np.ndarray) -> None:
        self.circuit = circuit
        self.g_s = np.array(g_s, dtype=float)
        self._elements = edge_names(circuit)
        self._pool.broadcast(self._load_request(), "loading the circuit", self.load_timeout_sec)

    def set_conductances(self, g_s: np.ndarray) -> None:
        if self.circuit is None:
            raise EngineError("no circuit loaded; call load(circuit, g_s) first")
        g_s = np.array(g_s, dtype=float)
        changed = np.flatnonzero(g_s != self.g_s)
        if changed.size == 0:
            return
        self.g_s = g_s
        if self.mode == "sweep":
            return  # every sweep loads the circuit with the current conductances
        if changed.size > RELOAD_FRACTION * g_s.size:
            self._pool.broadcast(self._load_request(), "reloading conductances", self.load_timeout_sec)
        else:
            values = {self._elements[e]: ("resistance", float(1.0 / g_s[e])) for e in changed}
            values.update(self._antisymmetric_values(1.0, changed))
            self._pool.broadcast(("alter", values), "altering conductances", self.load_timeout_sec)

    def _settle(self, phase: BatchPhase, initial_v: np.ndarray | None) -> np.ndarray:
        """Node voltages ``v[batch, node]``, one operating point per sample; ``initial_v`` is unused."""
        if self.mode == "sweep":
            return self._settle_phases([phase], initial_v)[0]
        circuit = self.circuit
        injected = self._injected(phase)
        # only couplings between free nodes change with the sign; the worker skips unchanged values
        reversal = self._antisymmetric_values(phase.antisymmetric_sign, np.flatnonzero(free_free_edges(circuit)))
        inj_columns = circuit.injection_columns
        inj_names = [injection_name(n) for n in circuit.injection_nodes]
        in_names = [source_name(n) for n in circuit.input_nodes]
        tgt_names = [source_name(target_node(n)) for n in circuit.output_nodes]
        gain_names = [nudge_name(n) for n in circuit.output_nodes]

        def request(b: int) -> tuple:
            values = {n: ("dc", float(x)) for n, x in zip(in_names, phase.inputs_v[b])}
            values.update({n: ("gain", phase.beta_s) for n in gain_names})
            values.update(reversal)
            values.update({n: ("dc", float(i)) for n, i in zip(inj_names, injected[b, inj_columns])})
            if phase.beta_s != 0:
                values.update({n: ("dc", float(y)) for n, y in zip(tgt_names, phase.targets_v[b])})
            return ("settle", [values])

        # one sample per child at a time, so a failure names its sample
        samples = range(len(phase.inputs_v))
        jobs = (Job(request(b), f"the {phase.name} phase of sample {phase.sample_ids[b]}", self.timeout_sec) for b in samples)
        v = np.empty((len(samples), len(circuit.node_names)))
        for b, out in zip(samples, self._pool.run(jobs)):
            v[b] = out[0]
        return v

    def _settle_phases(self, phases: list[BatchPhase], initial_v: np.ndarray | None) -> list[np.ndarray]:
        """Every phase of the batch; in sweep mode the phases of one antisymmetric sign share one sweep."""
        if self.mode == "op":
            return super()._settle_phases(phases, initial_v)
        out: list[np.ndarray | None] = [None] * len(phases)
        # the sign is rendered into the netlist, so each sign has its own sweep
        for sign in dict.fromkeys(p.antisymmetric_sign for p in phases):
            chosen = [k for k, p in enumerate(phases) if p.antisymmetric_sign == sign]
            for k, v in zip(chosen, self._sweep([phases[k] for k in chosen])):
                out[k] = v
        return out

    def _sweep(self, phases: list[BatchPhase]) -> list[np.ndarray]:
        """``v[batch, node]`` of phases of one sign, as the points of DC sweeps of the sample index."""
        batch = len(phases[0].inputs_v)
        ids = phases[0].sample_ids
        # point p of the sweep is sample p % batch in phase p // batch
        inputs_v = np.concatenate([p.inputs_v for p in phases])
        targets_v = np.concatenate([p.targets_v for p in phases])
        beta = np.repeat([p.beta_s for p in phases], batch)
        injected = np.concatenate([self._injected(p) for p in phases])
        sign = phases[0].antisymmetric_sign
        points = len(inputs_v)
        size = max(1, min(self.chunk, -(-points // self._pool.workers)))
        chunks = [np.arange(start, min(start + size, points)) for start in range(0, points, size)]

        def what(rows: np.ndarray) -> str:
            names = "/".join(sorted({phases[p // batch].name for p in rows}))
            return f"the {names} phase of samples {ids[rows[0] % batch]}-{ids[rows[-1] % batch]}"

        jobs = (
            Job(
                self._sweep_request(inputs_v[rows], targets_v[rows], beta[rows], sign, injected[rows]),
                what(rows),
                self.timeout_sec * len(rows),
            )
            for rows in chunks
        )
        v = np.empty((points, len(self.circuit.node_names)))
        for rows, out in zip(chunks, self._pool.run(jobs)):
            v[rows] = out[: len(rows)]  # a sweep of one sample repeats it (see _sweep_request)
        return [v[k * batch : (k + 1) * batch] for k in range(len(phases))]

    def _injected(self, phase: BatchPhase) -> np.ndarray:
        """The phase's injected currents as ``[batch, free]`` amperes, checked against the netlist."""
        n_free = len(self.circuit.free_nodes)
        if phase.injected_a is None:
            return np.zeros((len(phase.inputs_v), n_free))
        elsewhere = np.ones(n_free, dtype=bool)
        elsewhere[self.circuit.injection_columns] = False
        if np.any(phase.injected_a[:, elsewhere]):
            raise EngineError(
                "injected currents into hidden nodes need a non-conservative circuit (only its netlist has "
                "Iinj sources there); inject at the outputs"
            )
        return phase.injected_a

    def _sweep_request(
        self,
        inputs_v: np.ndarray,
        targets_v: np.ndarray,
        beta_s: np.ndarray,
        antisymmetric_sign: float,
        injected_a: np.ndarray,
    ) -> tuple:
        """The circuit with inputs, targets, nudge and injected currents following the sample index.

        Parameters
        ----------
        inputs_v, targets_v, injected_a : numpy.ndarray
            Per sweep point: ``[point, input]`` and ``[point, output]`` volts, ``[point, free]`` amperes.
        beta_s : numpy.ndarray
            Nudge conductance per sweep point, siemens.
        antisymmetric_sign : float
            The sign of the antisymmetric couplings between free nodes, for the whole sweep.
        """
        if len(inputs_v) == 1:  # a sweep and a pwl need two points: repeat the sample
            inputs_v, targets_v, beta_s, injected_a = (
                np.repeat(a, 2, axis=0) for a in (inputs_v, targets_v, beta_s, injected_a)
            )
        circuit = self.circuit
        lines = render_netlist(
            circuit, self.g_s, options=self.options, antisymmetric_sign=antisymmetric_sign
        ).split("\n")
        injections = {
            injection_name(n): (n, injected_a[:, k]) for n, k in zip(circuit.injection_nodes, circuit.injection_columns)
        }
        waves = {n: inputs_v[:, k] for k, n in enumerate(circuit.input_nodes)}
        waves.update({target_node(n): targets_v[:, k] for k, n in enumerate(circuit.output_nodes)})
        nudged = {nudge_name(n): n for n in circuit.output_nodes}
        for i, line in enumerate(lines):
            element, node = (line.split(" ", 2) + ["", ""])[:2]
            if element.startswith("V") and node in waves:
                lines[i] = sample_source(node, waves[node])
            elif element in nudged:
                lines[i] = sample_nudge(nudged[element], beta_s)
            elif element in injections and np.any(injections[element][1]):
                lines[i] = sample_injection(*injections[element])
        lines.insert(1, f"{source_name(SAMPLE_INDEX)} {SAMPLE_INDEX} 0 dc 0")
        return ("sweep", "\n".join(lines), list(circuit.node_names), len(inputs_v))

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> "NgspiceEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
