"""Supervised ngspice children: one process per libngspice, replaced when it dies or hangs.

Every exchange with the children goes through :meth:`ChildPool.run`: it sends
:class:`Job` requests (``(verb, *args)`` tuples, answered by
:mod:`eqspice.simulator.ngspice.worker`), waits for each reply within the job's
timeout, replaces a dead or hung child and turns failed jobs into
:class:`~eqspice.simulator.engine.SimulatorCrash`,
:class:`~eqspice.simulator.engine.ConvergenceError` or
:class:`~eqspice.simulator.engine.EngineError` naming the work.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import NamedTuple

from eqspice.simulator.engine import ConvergenceError, EngineError, SimulatorCrash
from eqspice.simulator.ngspice import worker as ngspice_worker


class Job(NamedTuple):
    """One request for one child, and how to report it.

    Attributes
    ----------
    request : tuple
        ``(verb, *args)`` for :func:`eqspice.simulator.ngspice.worker.serve`.
    what : str
        The work in error messages, e.g. ``"the free phase of sample 3"``.
    timeout_sec : float
        Seconds the reply may take before the child counts as hung.
    """

    request: tuple
    what: str
    timeout_sec: float


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

    Parameters
    ----------
    workers : int
        Child processes; :meth:`run` keeps that many jobs in flight.
    restore : callable or None
        ``restore()`` returns the :class:`Job` that brings a fresh child to
        the others' state (e.g. loading the circuit they hold), or None when
        there is nothing to bring; it runs on every replacement.

    Attributes
    ----------
    restarts : int
        Children replaced so far.
    """

    def __init__(self, workers: int, restore: Callable[[], Job | None] | None = None) -> None:
        self.workers = workers
        self.restore = restore
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

    def run(self, jobs: Iterable[Job]) -> list:
        """Every job's reply value, in order; the jobs go out ``workers`` at a time, one per child.

        ``jobs`` is read one round at a time, so a generator builds each
        request (e.g. a netlist) only when a child is free for it.  After a
        failure the rest of its round is still received, so no reply is left
        waiting for the next call, and the later rounds are not sent.

        Parameters
        ----------
        jobs : iterable of Job

        Returns
        -------
        list
            The value of each ``("ok", value)`` reply.

        Raises
        ------
        SimulatorCrash
            A child died or hung; it has been replaced by a fresh, restored one.
        ConvergenceError
            ngspice's operating point did not converge.
        EngineError
            ngspice reported another error.
        """
        values = []
        jobs = iter(jobs)
        while wave := list(itertools.islice(jobs, self.workers)):
            children = self.children
            gone = [child.send(job.request) for child, job in zip(children, wave)]
            dead, errors = [], []
            for k, job in enumerate(wave):
                reply, why = (None, gone[k]) if gone[k] else children[k].receive(job.timeout_sec)
                if why:
                    dead.append((k, f"ngspice child {why} during {job.what}"))
                elif reply[0] != "ok":
                    errors.append(reply_error(reply[1], job.what))
                else:
                    values.append(reply[1])
            # replaced once the round is in: a restoring job must not overtake the others' replies
            crashes = [self._replace(k, crash) for k, crash in dead]
            if crashes or errors:
                raise (crashes + errors)[0]
        return values

    def broadcast(self, request: tuple, what: str, timeout_sec: float) -> None:
        """Send ``request`` to every child and check every reply; raises as :meth:`run`."""
        self.run([Job(request, what, timeout_sec)] * self.workers)

    def _replace(self, k: int, crash: str) -> SimulatorCrash:
        """Kill child k, start a fresh one in its place and restore it; the error that reports ``crash``."""
        self._children[k].kill()
        self.restarts += 1
        self._children[k] = fresh = _Child()
        job = self.restore() if self.restore is not None else None
        if job is not None:
            why = fresh.send(job.request)
            reply, why = (None, why) if why else fresh.receive(job.timeout_sec)
            if why or reply[0] != "ok":
                reason = why or reply[1]
                return SimulatorCrash(
                    f"{crash}; the fresh one started in its place failed during {job.what} as well ({reason})"
                )
        return SimulatorCrash(f"{crash}; started a fresh one")

    def close(self) -> None:
        for child in self._children:
            child.send(("exit", 0))
            child.kill()
        self._children = []


def reply_error(message: str, what: str) -> EngineError:
    """The error of a child's ``("error", message, ...)`` reply to ``what``."""
    if "NonConvergence" in message:
        return ConvergenceError(
            f"ngspice did not converge in {what} (tried gmin and source stepping); "
            "check for floating nodes or extreme conductances"
        )
    return EngineError(f"ngspice failed during {what}: {message}")
