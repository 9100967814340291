"""The child process that owns libngspice.

ngspice keeps global state, can call ``exit()`` on fatal errors and can hang, so
it never runs in the process that holds a training run.  The parent
(:class:`eqspice.simulator.ngspice.engine.NgspiceEngine`) sends requests over a pipe; this
module answers them.  Requests are tuples ``(verb, *args)``; replies are
``("ok", value)`` or ``("error", message, sample_position)``.
"""

from __future__ import annotations

import ctypes.util
import os
import signal

import numpy as np

# Debian ships libngspice.so.0 without the unversioned development symlink that
# PySpice looks for.
os.environ.setdefault("NGSPICE_LIBRARY_PATH", ctypes.util.find_library("ngspice") or "libngspice.so.0")

#: Retries for an operating point that does not converge, in order: ngspice's
#: own Newton with its default homotopies, then longer gmin stepping, then
#: source stepping only.
CONVERGENCE_AIDS = (
    (),
    ("option gminsteps=200", "option itl1=1000"),
    ("option gminsteps=0", "option srcsteps=200", "option itl1=1000"),
)
RESET_AIDS = ("option gminsteps=10", "option srcsteps=10", "option itl1=100")

from eqspice.circuits.netlist import SAMPLE_INDEX  # noqa: E402


class NonConvergence(RuntimeError):
    pass


class Worker:
    """Holds one libngspice instance and the names it alters and reads."""

    def __init__(self) -> None:
        import logging

        logging.getLogger("PySpice").setLevel(logging.CRITICAL)
        from PySpice.Spice.NgSpice.Shared import NgSpiceShared

        self.ng = NgSpiceShared.new_instance()
        self.lib = self.ng._ngspice_shared
        self.node_names: list[str] = []
        self.settable: dict[str, str] = {}
        self.current: dict[str, float] = {}
        self.ops_since_cleanup = 0

    def load(self, netlist: str, node_names: list[str], current: dict[str, float]) -> None:
        self.ng.exec_command("destroy all")
        if self.node_names:  # free the previous circuit
            self.ng.exec_command("remcirc")
        self.ng.load_circuit(netlist)
        self.node_names = [n.lower() for n in node_names]
        self.current = dict(current)

    def alter(self, values: dict[str, tuple[str, float]]) -> None:
        """Apply ``{element: (parameter, value)}``, skipping unchanged values."""
        for element, (param, value) in values.items():
            if self.current.get(element) != value:
                self.ng.exec_command(f"alter {element} {param}={float(value)!r}")
                self.current[element] = value

    def operating_point(self) -> np.ndarray:
        for aids in CONVERGENCE_AIDS:
            for command in aids:
                self.ng.exec_command(command)
            try:  # a failed return code or an error/abort line; notes (e.g. gmin stepping started) are not failures
                self.run("op")
                ok = True
            except RuntimeError:
                ok = False
            if aids:
                for command in RESET_AIDS:
                    self.ng.exec_command(command)
            if ok:
                return self.read_nodes()
        raise NonConvergence("operating point did not converge (tried gmin and source stepping)")

    def sweep(self, n_samples: int) -> np.ndarray:
        """Node voltages of ``n_samples`` samples from one DC sweep of the sample index.

        The loaded circuit's sources follow V(sample_index)
        (:func:`eqspice.circuits.netlist.sample_source`), so sweep point k is sample k's
        operating point.
        """
        self.run(f"dc v{SAMPLE_INDEX} 0 {n_samples - 1} 1")
        plot = self.ng.last_plot
        out = np.column_stack([self.vector(plot, name) for name in self.node_names])
        self.run("destroy all")
        if out.shape[0] != n_samples:
            raise RuntimeError(f"the sweep returned {out.shape[0]} points for {n_samples} samples")
        return out

    def transient(self, netlist: str, node_names: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Time points (s) and node voltages ``v[time, node]`` of the netlist's ``.tran`` run.

        ``setseed`` reseeds ngspice's generators before the run.  Debian's
        ngspice 39 draws trnoise values from Gaussian pools filled once per
        process, which ``setseed`` does not refill: the noise is then
        statistically right but not repeatable bit for bit.
        """
        self.load(netlist, node_names, {})
        self.run(f"setseed {int(seed)}")
        self.run("run")
        plot = self.ng.last_plot
        t = self.vector(plot, "time")
        v = np.column_stack([self.vector(plot, name) for name in self.node_names])
        self.run("destroy all")
        return t, v

    def run(self, command: str) -> None:
        # straight to libngspice: PySpice caps commands at 1023 characters
        self.ng.clear_output()
        failed = self.lib.ngSpice_Command(command.encode()) != 0
        errors = [line for line in self.ng._stderr if "error" in line.lower() or "abort" in line.lower()]
        if failed or errors:
            raise RuntimeError(f"ngspice refused {command[:40]}...: {' '.join(errors)[-300:]}")

    def vector(self, plot: str, name: str) -> np.ndarray:
        from PySpice.Spice.NgSpice.Shared import ffi

        info = self.lib.ngGet_Vec_Info(f"{plot}.{name}".encode())
        if info == ffi.NULL or info.v_length < 1:
            raise RuntimeError(f"ngspice returned no vector {name}")
        return np.frombuffer(ffi.buffer(info.v_realdata, info.v_length * 8), dtype=np.float64).copy()

    def read_nodes(self) -> np.ndarray:
        from PySpice.Spice.NgSpice.Shared import ffi

        plot = self.ng.last_plot
        v = np.empty(len(self.node_names))
        for k, name in enumerate(self.node_names):
            info = self.lib.ngGet_Vec_Info(f"{plot}.{name}".encode())
            if info == ffi.NULL or info.v_length < 1:
                raise RuntimeError(f"ngspice returned no voltage for node {name}")
            v[k] = info.v_realdata[0]
        self.ops_since_cleanup += 1
        if self.ops_since_cleanup >= 200:
            self.ng.exec_command("destroy all")
            self.ops_since_cleanup = 0
        return v


def serve(conn) -> None:
    """Answer requests on ``conn`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    worker = Worker()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        verb, *args = request
        position = None
        try:
            if verb == "load":
                worker.load(*args)
                reply = ("ok", None)
            elif verb == "settle":
                (changes,) = args
                out = np.empty((len(changes), len(worker.node_names)))
                for position, change in enumerate(changes):
                    worker.alter(change)
                    out[position] = worker.operating_point()
                reply = ("ok", out)
            elif verb == "sweep":
                netlist, node_names, n_samples = args
                worker.load(netlist, node_names, {})
                reply = ("ok", worker.sweep(n_samples))
            elif verb == "transient":
                reply = ("ok", worker.transient(*args))
            elif verb == "alter":
                worker.alter(*args)
                reply = ("ok", None)
            elif verb == "exit":
                os._exit(int(args[0]) if args else 0)
            else:
                reply = ("error", f"unknown request {verb!r}", None)
        except Exception as exc:  # reported to the parent, which names sample and phase
            reply = ("error", f"{type(exc).__name__}: {exc}", position)
        conn.send(reply)


if __name__ == "__main__":
    import sys
    from multiprocessing.connection import Connection

    serve(Connection(int(sys.argv[1])))
