"""The reference engine: ngspice (libngspice through PySpice) in supervised children.

The circuit is loaded once.  Per sample only what changed is ``alter``-ed: the
input sources, the target sources and the nudge gain.  A weight update that
touches many conductances reloads the circuit with the new values (ngspice's
``alter`` cost grows with circuit size, DESIGN.md); a sparse one alters.

Each ngspice instance lives in a child process (``workers`` of them settle the
samples of a batch in parallel).  If a child dies, exits or hangs past its
timeout, the engine raises :class:`~eqspice.simulator.engine.SimulatorCrash` naming the
sample and phase, and starts a fresh child with the same circuit and
conductances, so the next call works.
"""

from __future__ import annotations


import numpy as np

from eqspice.circuits.netlist import (
    TIGHT_OPTIONS,
    antisymmetric_gains,
    antisymmetric_names,
    edge_names,
    free_free_edges,
    injection_name,
    sample_injection,
    nudge_name,
    SAMPLE_INDEX,
    render_netlist,
    sample_nudge,
    sample_source,
    source_name,
    target_node,
)
from eqspice.circuits.network import Circuit
from eqspice.simulator.engine import (
    ConvergenceError,
    EngineError,
    SimulatorCrash,
    batch_arrays,
    phase_name,
    settle_each_phase,
)
from eqspice.simulator.ngspice.pool import ChildPool, _Child

#: Fraction of conductances above which an update reloads the circuit instead of altering.
RELOAD_FRACTION = 0.05


class NgspiceEngine:
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
        self._pool = ChildPool(workers, on_start=self._reload)

    @property
    def child_pids(self) -> list[int]:
        return self._pool.pids

    @property
    def restarts(self) -> int:
        return self._pool.restarts

    @property
    def _children(self) -> list[_Child]:
        return self._pool.children

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
        """``alter`` values of the VCCS pairs of non-reciprocal edges (all, or ``edges``)."""
        circuit = self.circuit
        if circuit.nonreciprocal is None:
            return {}
        gains = antisymmetric_gains(circuit, self.g_s, antisymmetric_sign)
        names = antisymmetric_names(circuit)
        chosen = np.flatnonzero(circuit.nonreciprocal) if edges is None else edges
        return {
            name: ("gain", float(gains[e]))
            for e in chosen.tolist()
            if circuit.nonreciprocal[e] != 0
            for name in names[e]
        }

    def _broadcast(self, request: tuple, what: str) -> None:
        """Send ``request`` to every child and check every reply."""
        failures = [child.send(request) for child in self._children]
        for k, child in enumerate(self._children):
            reply, gone = (None, failures[k]) if failures[k] else child.receive(self.load_timeout_sec)
            if gone:
                self._pool.replace(k)
                raise SimulatorCrash(f"ngspice child {gone} during {what}; started a fresh one")
            if reply[0] != "ok":
                raise EngineError(f"ngspice failed during {what}: {reply[1]}")

    def _reload(self, fresh: _Child) -> None:
        """Load the current circuit into a child that replaced a dead or hung one."""
        if self.circuit is not None:
            gone = fresh.send(self._load_request())
            reply, gone = (None, gone) if gone else fresh.receive(self.load_timeout_sec)
            if gone or reply[0] != "ok":
                raise SimulatorCrash("a fresh ngspice child could not load the circuit either")

    # -- Engine interface ----------------------------------------------------
    def load(self, circuit: Circuit, g_s: np.ndarray) -> None:
        self.circuit = circuit
        self.g_s = np.array(g_s, dtype=float)
        self._elements = edge_names(circuit)
        self._broadcast(self._load_request(), "loading the circuit")

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
            self._broadcast(self._load_request(), "reloading conductances")
        else:
            values = {self._elements[e]: ("resistance", float(1.0 / g_s[e])) for e in changed}
            values.update(self._antisymmetric_values(1.0, changed))
            self._broadcast(("alter", values), "altering conductances")

    def settle(
        self,
        inputs_v: np.ndarray,
        targets_v: np.ndarray | None = None,
        beta_s: float = 0.0,
        *,
        phase: str = "free",
        sample_ids: np.ndarray | None = None,
        initial_v: np.ndarray | None = None,
        antisymmetric_sign: float = 1.0,
        injected_a: np.ndarray | None = None,
    ) -> np.ndarray:
        """Node voltages ``v[batch, node]``; ``initial_v`` is accepted for the interface and unused.

        ``antisymmetric_sign`` and ``injected_a[batch, free]`` (amperes) as in
        :meth:`eqspice.simulator.engine.Engine.settle`.
        """
        circuit = self.circuit
        inputs_v, targets_v, ids = batch_arrays(circuit, inputs_v, targets_v, sample_ids)
        batch = inputs_v.shape[0]
        injected = self._injected(injected_a, batch, antisymmetric_sign)
        if self.mode == "sweep":
            return self.settle_phases(
                inputs_v, targets_v, [beta_s], sample_ids=ids, phases=[phase],
                antisymmetric_sign=antisymmetric_sign, injected_a=injected,
            )[0]  # fmt: skip
        # only couplings between free nodes change with the sign; the worker skips unchanged values
        reversal = self._antisymmetric_values(antisymmetric_sign, np.flatnonzero(free_free_edges(circuit)))
        inj_columns = circuit.injection_columns
        inj_names = [injection_name(n) for n in circuit.injection_nodes]
        in_names = [source_name(n) for n in circuit.input_nodes]
        tgt_names = [source_name(target_node(n)) for n in circuit.output_nodes]
        gain_names = [nudge_name(n) for n in circuit.output_nodes]

        def request(rows: np.ndarray) -> tuple:
            b = rows[0]
            values = {n: ("dc", float(x)) for n, x in zip(in_names, inputs_v[b])}
            values.update({n: ("gain", float(beta_s)) for n in gain_names})
            values.update(reversal)
            values.update({n: ("dc", float(i)) for n, i in zip(inj_names, injected[b, inj_columns])})
            if beta_s != 0:
                values.update({n: ("dc", float(y)) for n, y in zip(tgt_names, targets_v[b])})
            return ("settle", [values])

        v = np.empty((batch, len(circuit.node_names)))
        # one sample per child at a time, so a failure names its sample
        self._settle_chunks(v, lambda rows: f"the {phase} phase of sample {ids[rows[0]]}", request, size=1)
        return v

    def settle_phases(
        self,
        inputs_v: np.ndarray,
        targets_v: np.ndarray | None,
        betas_s: list[float],
        *,
        sample_ids: np.ndarray | None = None,
        phases: list[str] | None = None,
        antisymmetric_sign: float = 1.0,
        injected_a: np.ndarray | None = None,
        initial_v: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """Node voltages of every sample in every phase; in sweep mode all phases share one sweep."""
        if self.mode == "op":
            return settle_each_phase(
                self, inputs_v, targets_v, betas_s, sample_ids=sample_ids, phases=phases,
                antisymmetric_sign=antisymmetric_sign, injected_a=injected_a,
            )  # fmt: skip
        inputs_v, targets_v, ids = batch_arrays(self.circuit, inputs_v, targets_v, sample_ids)
        batch, n_phases = inputs_v.shape[0], len(betas_s)
        injected = self._injected(injected_a, batch, antisymmetric_sign)
        names = phases or [phase_name(b) for b in betas_s]
        # point p of the sweep is sample p % batch in phase p // batch
        points = np.arange(batch * n_phases)
        v = np.empty((points.size, len(self.circuit.node_names)))
        beta = np.repeat(np.asarray(betas_s, dtype=float), batch)
        what = lambda rows: (  # noqa: E731
            f"the {'/'.join(sorted({names[p // batch] for p in rows}))} phase of samples "
            f"{ids[rows[0] % batch]}-{ids[rows[-1] % batch]}"
        )
        self._settle_chunks(
            v,
            what,
            lambda rows: self._sweep_request(
                inputs_v[rows % batch], targets_v[rows % batch], beta[rows], antisymmetric_sign, injected[rows % batch]
            ),
        )
        return [v[k * batch : (k + 1) * batch] for k in range(n_phases)]

    def _injected(self, injected_a: np.ndarray | None, batch: int, antisymmetric_sign: float) -> np.ndarray:
        """``injected_a`` as ``[batch, free]`` amperes, checked against the circuit."""
        if antisymmetric_sign not in (1.0, -1.0):
            raise EngineError(f"antisymmetric_sign {antisymmetric_sign!r}: use +1 or -1")
        n_free = len(self.circuit.free_nodes)
        if injected_a is None:
            return np.zeros((batch, n_free))
        injected = np.broadcast_to(np.asarray(injected_a, dtype=float), (batch, n_free))
        elsewhere = np.ones(n_free, dtype=bool)
        elsewhere[self.circuit.injection_columns] = False
        if np.any(injected[:, elsewhere]):
            raise EngineError(
                "injected currents into hidden nodes need a non-reciprocal circuit (only its netlist has "
                "Iinj sources there); inject at the outputs"
            )
        return injected

    def _sweep_request(
        self,
        inputs_v: np.ndarray,
        targets_v: np.ndarray,
        beta_s: np.ndarray,
        antisymmetric_sign: float = 1.0,
        injected_a: np.ndarray | None = None,
    ) -> tuple:
        """The circuit with inputs, targets, nudge and injected currents following the sample index."""
        if injected_a is None:
            injected_a = np.zeros((len(inputs_v), len(self.circuit.free_nodes)))
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

    def _settle_chunks(self, v: np.ndarray, what, request, size: int | None = None) -> None:
        """Fill ``v`` chunk by chunk, one chunk per child at a time; ``what(rows)`` names a chunk."""
        if size is None:
            size = max(1, min(self.chunk, -(-len(v) // len(self._children))))
        chunks = [np.arange(s, min(s + size, len(v))) for s in range(0, len(v), size)]
        for first in range(0, len(chunks), len(self._children)):
            busy = chunks[first : first + len(self._children)]
            gone = [self._children[k].send(request(rows)) for k, rows in enumerate(busy)]
            failure = None
            for k, rows in enumerate(busy):
                timeout = self.timeout_sec * len(rows)
                reply, why = (None, gone[k]) if gone[k] else self._children[k].receive(timeout)
                if why:
                    self._pool.replace(k)
                    failure = failure or SimulatorCrash(
                        f"ngspice child {why} during {what(rows)}; started a fresh one"
                    )
                elif reply[0] != "ok" and "NonConvergence" in reply[1]:
                    failure = failure or ConvergenceError(
                        f"ngspice did not converge in {what(rows)} (tried gmin and source stepping); "
                        "check for floating nodes or extreme conductances"
                    )
                elif reply[0] != "ok":
                    failure = failure or EngineError(f"ngspice failed in {what(rows)}: {reply[1]}")
                else:
                    v[rows] = reply[1][: len(rows)]
            if failure:
                raise failure

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
