"""Supervised ngspice children: one process per libngspice, replaced when it dies or hangs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection

from eqspice.simulator.ngspice import worker as ngspice_worker


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

    def receive(self, timeout_sec: float) -> tuple[tuple | None, str | None]:
        """The reply, or None and why the child is gone."""
        try:
            if self.conn.poll(timeout_sec):
                return self.conn.recv(), None
            return None, self.why_gone(f"hung for more than {timeout_sec:g} s")
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


class ChildPool:
    """``workers`` ngspice children, started on first use; a dead or hung one is replaced.

    ``on_start(child)`` runs on every replacement (e.g. loading the circuit the
    others hold); ``restarts`` counts the replacements.
    """

    def __init__(self, workers: int, on_start=None) -> None:
        self.workers = workers
        self.on_start = on_start
        self.restarts = 0
        self._children: list[_Child] = []

    @property
    def children(self) -> list[_Child]:
        if not self._children:
            self._children = [_Child() for _ in range(self.workers)]
        return self._children

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self._children]

    def replace(self, k: int) -> None:
        """Kill child k and start a fresh one in its place."""
        self._children[k].kill()
        self.restarts += 1
        self._children[k] = _Child()
        if self.on_start is not None:
            self.on_start(self._children[k])

    def close(self) -> None:
        for child in self._children:
            child.send(("exit", 0))
            child.kill()
        self._children = []
