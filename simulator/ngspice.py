"""The reference engine: ngspice (libngspice through PySpice) in a supervised child.

The circuit is loaded once.  Per sample only what changed is ``alter``-ed: the
input sources, the target sources and the nudge gain.  A weight update that
touches many conductances reloads the circuit with the new values (ngspice's
``alter`` cost grows with circuit size, DESIGN.md); a sparse one alters.

If the child dies, exits or hangs past its timeout, the engine raises
:class:`~simulator.engine.SimulatorCrash` naming the sample and phase, and
starts a fresh child with the same circuit and conductances.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection

import numpy as np

from circuits.netlist import (
    TIGHT_OPTIONS,
    edge_names,
    nudge_name,
    render_netlist,
    source_name,
    target_node,
)
from circuits.network import Circuit
from simulator.engine import ConvergenceError, EngineError, SimulatorCrash
from simulator import ngspice_worker

#: Fraction of conductances above which an update reloads the circuit instead of altering.
RELOAD_FRACTION = 0.05


class NgspiceEngine:
    """Settle circuits with ngspice, one operating point per sample and phase.

    Parameters
    ----------
    timeout_s : seconds one operating point may take before the child is
        declared hung, killed and replaced.
    load_timeout_s : seconds a (re)load of the circuit may take.
    options : ngspice ``.options``; default :data:`circuits.netlist.TIGHT_OPTIONS`.
    """

    name = "ngspice"

    def __init__(
        self,
        timeout_s: float = 30.0,
        load_timeout_s: float = 300.0,
        options: dict[str, float] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.load_timeout_s = load_timeout_s
        self.options = dict(TIGHT_OPTIONS if options is None else options)
        self.circuit: Circuit | None = None
        self.g_s: np.ndarray | None = None
        self.restarts = 0
        self._restarting = False
        self._process = None
        self._conn = None

    # -- child process -------------------------------------------------------
    @property
    def child_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _start(self) -> None:
        # A plain subprocess (not multiprocessing) so that user scripts need no
        # `if __name__ == "__main__"` guard; requests travel on a socket pair
        # because ngspice itself may write to stdout.
        parent, child = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-m", ngspice_worker.__name__, str(child.fileno())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        child.close()
        self._conn = Connection(parent.detach())

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def _request(self, request: tuple, timeout_s: float, what: str):
        """Send ``request`` and wait for its reply; on death or hang, restart and raise."""
        if self._process is None:
            self._start()
            if request[0] != "load" and self.circuit is not None:
                self._load_current()
        try:
            self._conn.send(request)
            if not self._conn.poll(timeout_s):
                reason = f"hung for more than {timeout_s:g} s"
            else:
                return self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            reason = "died"
        code = self._process.poll() if self._process is not None else None
        if code is not None:
            reason = f"exited with code {code}"
        self._kill()
        if self._restarting:
            raise SimulatorCrash(f"ngspice child {reason} during {what}")
        self.restarts += 1
        message = f"ngspice child {reason} during {what}; started a fresh one"
        self._restarting = True
        try:
            self._start()
            if self.circuit is not None:
                self._load_current()
        except EngineError as exc:
            message = f"ngspice child {reason} during {what}; a fresh one failed too ({exc})"
        finally:
            self._restarting = False
        raise SimulatorCrash(message)

    def _load_current(self) -> None:
        netlist = render_netlist(self.circuit, self.g_s, options=self.options)
        current = {source_name(n): 0.0 for n in self.circuit.input_nodes}
        for out in self.circuit.output_nodes:
            current[source_name(target_node(out))] = 0.0
            current[nudge_name(out)] = 0.0
        reply = self._request(
            ("load", netlist, list(self.circuit.node_names), current),
            self.load_timeout_s,
            "loading the circuit",
        )
        if reply[0] != "ok":
            raise EngineError(f"ngspice could not load the circuit: {reply[1]}")

    # -- Engine interface ----------------------------------------------------
    def load(self, circuit: Circuit, g_s: np.ndarray) -> None:
        self.circuit = circuit
        self.g_s = np.array(g_s, dtype=float)
        self._elements = np.array(edge_names(circuit))
        self._load_current()

    def set_conductances(self, g_s: np.ndarray) -> None:
        g_s = np.array(g_s, dtype=float)
        changed = np.flatnonzero(g_s != self.g_s)
        if changed.size == 0:
            return
        if changed.size > RELOAD_FRACTION * g_s.size:
            self.g_s = g_s
            self._load_current()
            return
        values = {self._elements[e]: ("resistance", 1.0 / g_s[e]) for e in changed}
        reply = self._request(("alter", values), self.load_timeout_s, "altering conductances")
        if reply[0] != "ok":
            raise EngineError(f"ngspice could not alter conductances: {reply[1]}")
        self.g_s = g_s

    def settle(
        self,
        inputs_v: np.ndarray,
        targets_v: np.ndarray | None = None,
        beta_s: float = 0.0,
        *,
        phase: str = "free",
        sample_ids: np.ndarray | None = None,
    ) -> np.ndarray:
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
        v = np.empty((batch, len(circuit.node_names)))
        for b in range(batch):
            change = {n: ("dc", float(x)) for n, x in zip(in_names, inputs_v[b])}
            change.update({n: ("gain", float(beta_s)) for n in gain_names})
            if beta_s != 0:
                change.update({n: ("dc", float(y)) for n, y in zip(tgt_names, targets_v[b])})
            what = f"the {phase} phase of sample {ids[b]}"
            reply = self._request(("settle", [change]), self.timeout_s, what)
            if reply[0] != "ok":
                if "NonConvergence" in reply[1]:
                    raise ConvergenceError(
                        f"ngspice did not converge in {what} (tried gmin and source stepping); "
                        "check for floating nodes or extreme conductances"
                    )
                raise EngineError(f"ngspice failed in {what}: {reply[1]}")
            v[b] = reply[1][0]
        return v

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(("exit", 0))
            except (OSError, BrokenPipeError):
                pass
        self._kill()

    def __enter__(self) -> "NgspiceEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._kill()
        except Exception:
            pass
