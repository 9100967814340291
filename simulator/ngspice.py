"""The reference engine: ngspice (libngspice through PySpice) in supervised children.

The circuit is loaded once.  Per sample only what changed is ``alter``-ed: the
input sources, the target sources and the nudge gain.  A weight update that
touches many conductances reloads the circuit with the new values (ngspice's
``alter`` cost grows with circuit size, DESIGN.md); a sparse one alters.

Each ngspice instance lives in a child process (``workers`` of them settle the
samples of a batch in parallel).  If a child dies, exits or hangs past its
timeout, the engine raises :class:`~simulator.engine.SimulatorCrash` naming the
sample and phase, and starts a fresh child with the same circuit and
conductances, so the next call works.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection

import numpy as np

from circuits.netlist import TIGHT_OPTIONS, edge_names, nudge_name, render_netlist, source_name, target_node
from circuits.network import Circuit
from simulator import ngspice_worker
from simulator.engine import ConvergenceError, EngineError, SimulatorCrash

#: Fraction of conductances above which an update reloads the circuit instead of altering.
RELOAD_FRACTION = 0.05


class _Child:
    """One ngspice process and the socket to it."""

    def __init__(self) -> None:
        # A plain subprocess (not multiprocessing) so that user scripts need no
        # `if __name__ == "__main__"` guard; requests travel on a socket pair
        # because ngspice itself may write to stdout.
        parent, child = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", ngspice_worker.__name__, str(child.fileno())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        child.close()
        self.conn = Connection(parent.detach())

    def send(self, request: tuple) -> str | None:
        """Send a request; return why the child is gone, or None."""
        try:
            self.conn.send(request)
            return None
        except OSError:
            return self.why_gone("died")

    def receive(self, timeout_s: float) -> tuple[tuple | None, str | None]:
        """The reply, or None and why the child is gone."""
        try:
            if self.conn.poll(timeout_s):
                return self.conn.recv(), None
            return None, self.why_gone(f"hung for more than {timeout_s:g} s")
        except (EOFError, OSError):
            return None, self.why_gone("died")

    def why_gone(self, default: str) -> str:
        try:  # a closed socket arrives before the exit status: give it a moment
            code = self.process.wait(timeout=0 if default.startswith("hung") else 2)
        except subprocess.TimeoutExpired:
            return default
        return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.conn.close()


class NgspiceEngine:
    """Settle circuits with ngspice, one operating point per sample and phase.

    Parameters
    ----------
    timeout_s : seconds one operating point may take before its child is
        declared hung, killed and replaced.
    load_timeout_s : seconds a (re)load of the circuit may take.
    workers : ngspice child processes that settle samples in parallel.
    options : ngspice ``.options``; default :data:`circuits.netlist.TIGHT_OPTIONS`.
    """

    name = "ngspice"

    def __init__(
        self,
        timeout_s: float = 30.0,
        load_timeout_s: float = 300.0,
        workers: int = 1,
        options: dict[str, float] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.load_timeout_s = load_timeout_s
        self.workers = workers
        self.options = dict(TIGHT_OPTIONS if options is None else options)
        self.circuit: Circuit | None = None
        self.g_s: np.ndarray | None = None
        self.restarts = 0
        self._children: list[_Child] = []

    @property
    def child_pids(self) -> list[int]:
        return [c.process.pid for c in self._children]

    # -- children ------------------------------------------------------------
    def _load_request(self) -> tuple:
        netlist = render_netlist(self.circuit, self.g_s, options=self.options)
        current = {source_name(n): 0.0 for n in self.circuit.input_nodes}
        for out in self.circuit.output_nodes:
            current[source_name(target_node(out))] = 0.0
            current[nudge_name(out)] = 0.0
        return ("load", netlist, list(self.circuit.node_names), current)

    def _broadcast(self, request: tuple, what: str) -> None:
        """Send ``request`` to every child and check every reply."""
        if not self._children:
            self._children = [_Child() for _ in range(self.workers)]
        failures = [child.send(request) for child in self._children]
        for k, child in enumerate(self._children):
            reply, gone = (None, failures[k]) if failures[k] else child.receive(self.load_timeout_s)
            if gone:
                self._replace(k)
                raise SimulatorCrash(f"ngspice child {gone} during {what}; started a fresh one")
            if reply[0] != "ok":
                raise EngineError(f"ngspice failed during {what}: {reply[1]}")

    def _replace(self, k: int) -> None:
        """Kill child k and start a fresh one holding the current circuit."""
        self._children[k].kill()
        self.restarts += 1
        fresh = _Child()
        self._children[k] = fresh
        if self.circuit is not None:
            gone = fresh.send(self._load_request())
            reply, gone = (None, gone) if gone else fresh.receive(self.load_timeout_s)
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
        if changed.size > RELOAD_FRACTION * g_s.size:
            self._broadcast(self._load_request(), "reloading conductances")
        else:
            values = {self._elements[e]: ("resistance", float(1.0 / g_s[e])) for e in changed}
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
    ) -> np.ndarray:
        """Node voltages ``v[batch, node]``; ``initial_v`` is accepted for the interface and unused."""
        circuit = self.circuit
        if circuit is None:
            raise EngineError("no circuit loaded; call load(circuit, g_s) first")
        inputs_v = np.atleast_2d(np.asarray(inputs_v, dtype=float))
        batch = inputs_v.shape[0]
        if targets_v is None:
            targets_v = np.zeros((batch, len(circuit.output_nodes)))
        targets_v = np.atleast_2d(np.asarray(targets_v, dtype=float))
        ids = np.arange(batch) if sample_ids is None else np.asarray(sample_ids)
        in_names = [source_name(n) for n in circuit.input_nodes]
        tgt_names = [source_name(target_node(n)) for n in circuit.output_nodes]
        gain_names = [nudge_name(n) for n in circuit.output_nodes]

        def change(b: int) -> dict:
            values = {n: ("dc", float(x)) for n, x in zip(in_names, inputs_v[b])}
            values.update({n: ("gain", float(beta_s)) for n in gain_names})
            if beta_s != 0:
                values.update({n: ("dc", float(y)) for n, y in zip(tgt_names, targets_v[b])})
            return values

        v = np.empty((batch, len(circuit.node_names)))
        n_children = len(self._children)
        for start in range(0, batch, n_children):
            # one sample per child at a time, so a failure names its sample
            busy = list(range(start, min(start + n_children, batch)))
            gone = [self._children[k].send(("settle", [change(b)])) for k, b in enumerate(busy)]
            failure = None
            for k, b in enumerate(busy):
                what = f"the {phase} phase of sample {ids[b]}"
                reply, why = (None, gone[k]) if gone[k] else self._children[k].receive(self.timeout_s)
                if why:
                    self._replace(k)
                    failure = failure or SimulatorCrash(f"ngspice child {why} during {what}; started a fresh one")
                elif reply[0] != "ok":
                    if "NonConvergence" in reply[1]:
                        failure = failure or ConvergenceError(
                            f"ngspice did not converge in {what} (tried gmin and source stepping); "
                            "check for floating nodes or extreme conductances"
                        )
                    else:
                        failure = failure or EngineError(f"ngspice failed in {what}: {reply[1]}")
                else:
                    v[b] = reply[1][0]
            if failure:
                raise failure
        return v

    def close(self) -> None:
        for child in self._children:
            child.send(("exit", 0))
            child.kill()
        self._children = []

    def __enter__(self) -> "NgspiceEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
