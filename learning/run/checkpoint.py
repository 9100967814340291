"""Run state on disk: written to a temporary file and renamed, never half a file."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

CHECKPOINT = "checkpoint.npz"

#: Metric names of runs written before seconds were ``_sec``: old name -> today's.
OLD_METRIC_NAMES = {"seconds": "train_sec", "samples_per_s": "samples_per_sec"}


class CheckpointError(ValueError):
    """A run's checkpoint is missing, truncated or corrupt; the message names the file and what to do."""


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def emptied_on_failure(folder: Path, remove_folder: bool):
    """Run the body; if it raises (disk full, Ctrl-C), delete the files it left in ``folder``, and
    ``folder`` itself with ``remove_folder``, so that no half-written run is left behind."""
    try:
        yield
    except BaseException:
        if folder.exists():
            for path in folder.iterdir():
                path.unlink()
            if remove_folder:
                folder.rmdir()
        raise


def write_csv_atomic(path: str | Path, columns, rows, extrasaction: str = "raise") -> Path:
    """``rows`` (dicts) as a CSV file of ``columns``, written atomically (:func:`write_atomic`).
    ``extrasaction="ignore"`` drops keys that are not columns (see :class:`csv.DictWriter`)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n", extrasaction=extrasaction)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue().encode())
    return Path(path)


@dataclass
class RunState:
    """Everything a run needs to continue exactly where it stopped.

    ``epoch`` counts completed epochs; within the running epoch, ``batch_index``
    mini-batches of ``order`` are done and ``running`` holds their sums.

    Parameters
    ----------
    g_s : ndarray, shape (n_edges,)
        Programmed conductance of every device, siemens.
    rng : numpy.random.Generator
        The run's random stream (data order, device noise, sampling), saved with its state.
    epoch, batch_index : int
        Completed epochs; mini-batches done in the running one.
    order : ndarray of int
        The running epoch's permutation of the training set.
    running : dict
        Sums of the running epoch (loss, correct, seen, train_sec, pulses).
    metrics : list of dict
        One row per completed epoch (the rows of ``metrics.csv``).
    restarts : int
        Simulator restarts so far.
    optimizer, device : dict of ndarray
        Per-device optimizer state and device state (fabrication draws, drift clocks).
    """

    g_s: np.ndarray
    rng: np.random.Generator
    epoch: int = 0
    batch_index: int = 0
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    running: dict = field(
        default_factory=lambda: {"loss": 0.0, "correct": 0, "seen": 0, "train_sec": 0.0, "pulses": 0}
    )
    metrics: list[dict] = field(default_factory=list)
    restarts: int = 0
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)
    device: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, run_dir: str | Path) -> None:
        meta = {
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "running": self.running,
            "metrics": self.metrics,
            "restarts": self.restarts,
            "rng": self.rng.bit_generator.state,
        }
        buffer = io.BytesIO()
        extra = {f"optimizer_{k}": v for k, v in self.optimizer.items()}
        extra.update({f"device_{k}": v for k, v in self.device.items()})
        np.savez(buffer, g_s=self.g_s, order=self.order, meta=np.array(json.dumps(meta)), **extra)
        write_atomic(Path(run_dir) / CHECKPOINT, buffer.getvalue())

    def copy(self) -> "RunState":
        """An independent copy: arrays, RNG and bookkeeping share nothing with this state."""
        rng = np.random.default_rng()
        rng.bit_generator.state = self.rng.bit_generator.state
        return RunState(
            g_s=self.g_s.copy(),
            rng=rng,
            epoch=self.epoch,
            batch_index=self.batch_index,
            order=self.order.copy(),
            running=dict(self.running),
            metrics=[dict(row) for row in self.metrics],  # rows of numbers: a shallow copy each is whole
            restarts=self.restarts,
            optimizer={k: v.copy() for k, v in self.optimizer.items()},
            device={k: v.copy() for k, v in self.device.items()},
        )

    def snapshot(self) -> "RunState":
        """A copy that shares the arrays (conductances, order, optimizer and device states) with this
        state: it stays whole while the state's arrays are replaced, never written into, which is how
        a training step changes them; RNG and bookkeeping are copied."""
        rng = np.random.default_rng()
        rng.bit_generator.state = self.rng.bit_generator.state
        return replace(
            self, rng=rng, running=dict(self.running), metrics=[dict(row) for row in self.metrics],
            optimizer=dict(self.optimizer), device=dict(self.device),
        )  # fmt: skip

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunState":
        """The state saved in ``run_dir/checkpoint.npz``.

        Raises
        ------
        CheckpointError
            The file is missing, or truncated or corrupt so that it cannot be read
            back (a partly written file never replaces a good one, see
            :func:`write_atomic`, but disks and copies can still damage it).
        """
        path = Path(run_dir) / CHECKPOINT
        try:
            return cls._read(path)
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no such checkpoint; give the folder of a run written by eqspice train") from None
        except PermissionError as exc:
            raise CheckpointError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
        except Exception as exc:  # noqa: BLE001 - np.load, zipfile and json fail in many ways on a damaged file
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if len(reason) > 80:
                reason = reason[:77] + "..."
            raise CheckpointError(f"{path} is damaged ({reason}); restore it from a copy or start a new run") from None

    @classmethod
    def _read(cls, path: Path) -> "RunState":
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":  # np.load would try to read anything else as a pickle
                raise ValueError("not a zip archive")
        with np.load(path) as archive:
            meta = json.loads(str(archive["meta"]))
            g_s, order = archive["g_s"].copy(), archive["order"].copy()
            optimizer = {k.removeprefix("optimizer_"): archive[k].copy() for k in archive if k.startswith("optimizer_")}
            device = {k.removeprefix("device_"): archive[k].copy() for k in archive if k.startswith("device_")}
        if g_s.ndim != 1 or not np.issubdtype(g_s.dtype, np.floating) or not np.all(np.isfinite(g_s)):
            raise ValueError("its conductances are not a finite vector")
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        return cls(
            g_s=g_s,
            rng=rng,
            epoch=int(meta["epoch"]),
            batch_index=int(meta["batch_index"]),
            order=order,
            running=_renamed(meta["running"]),
            metrics=[_renamed(row) for row in meta["metrics"]],
            restarts=int(meta["restarts"]),
            optimizer=optimizer,
            device=device,
        )


def _renamed(row: dict) -> dict:
    """``row`` with the metric names of an older checkpoint in today's names (:data:`OLD_METRIC_NAMES`)."""
    return {OLD_METRIC_NAMES.get(key, key): value for key, value in row.items()}
