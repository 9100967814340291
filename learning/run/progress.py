"""Progress of a run as a person watching it or a log file needs it.

On a terminal, a tqdm bar redrawn in place.  Anywhere else (a file, a pipe, a
CI log) every redraw would stay in the output for good: ``make demo`` to a file
wrote 270 KB of them.  There the progress is a plain line at most every
:data:`LOG_EVERY_SEC` seconds, and one when the bar closes.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

#: Seconds between progress lines when the stream is not a terminal.
LOG_EVERY_SEC = 30.0


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LineProgress:
    """A progress report for a stream that is not a terminal: whole lines, seldom.

    Same calls as the tqdm bar it stands in for (``update``, ``set_postfix``,
    ``close``).  A line is written when ``every_sec`` seconds passed since the
    last one and, if ``final_line``, when the bar closes.

    Parameters
    ----------
    total : int
        Units of work in the whole task.
    initial : int
        Units already done (a resumed task).
    desc : str
        What is being done, at the start of every line.
    unit : str
        Name of one unit of work.
    file : text stream
        Where the lines go.
    every_sec : float
        Least time between two lines, in seconds.
    final_line : bool
        Write a line on ``close`` (off where a summary line follows anyway).
    """

    def __init__(
        self,
        total: int,
        initial: int = 0,
        desc: str = "",
        unit: str = "it",
        file=None,
        every_sec: float = LOG_EVERY_SEC,
        final_line: bool = True,
    ) -> None:
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.file = file if file is not None else sys.stderr
        self.every_sec, self.final_line = every_sec, final_line
        self.postfix = ""
        self._started = self._last = time.monotonic()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.every_sec:
            self._write()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self._closed and self.final_line:
            self._write()
        self._closed = True

    def _write(self) -> None:
        self._last = time.monotonic()
        head = f"{self.desc}: " if self.desc else ""
        tail = f", {self.postfix}" if self.postfix else ""
        elapsed = self._last - self._started
        print(f"{head}{self.n}/{self.total} {self.unit}s, {elapsed:.0f} s{tail}", file=self.file, flush=True)


def progress_bar(
    total: int, *, initial: int = 0, desc: str = "", unit: str = "it", enabled: bool = True, final_line: bool = True
):
    """A tqdm bar on a terminal, :class:`LineProgress` on any other stderr, nothing if not ``enabled``.

    ``final_line`` applies to the non-terminal case only (a closing tqdm bar
    always stays on screen).
    """
    if enabled and not _is_terminal(sys.stderr):
        return LineProgress(total, initial=initial, desc=desc, unit=unit, file=sys.stderr, final_line=final_line)
    return tqdm(total=total, initial=initial, unit=unit, desc=desc or None, disable=not enabled, leave=True)
