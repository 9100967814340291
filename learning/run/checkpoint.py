"""Run state on disk: written to a temporary file and renamed, never half a file."""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHECKPOINT = "checkpoint.npz"

#: Metric names of runs written before seconds were ``_sec``: old name -> today's.
OLD_METRIC_NAMES = {"seconds": "train_sec", "samples_per_s": "samples_per_sec"}


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


@dataclass
class RunState:
    """Everything a run needs to continue exactly where it stopped.

    ``epoch`` counts completed epochs; within the running epoch, ``batch_index``
    mini-batches of ``order`` are done and ``running`` holds their sums.
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

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunState":
        with np.load(Path(run_dir) / CHECKPOINT) as archive:
            meta = json.loads(str(archive["meta"]))
            g_s, order = archive["g_s"].copy(), archive["order"].copy()
            optimizer = {k.removeprefix("optimizer_"): archive[k].copy() for k in archive if k.startswith("optimizer_")}
            device = {k.removeprefix("device_"): archive[k].copy() for k in archive if k.startswith("device_")}
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        return cls(
            g_s=g_s,
            rng=rng,
            epoch=meta["epoch"],
            batch_index=meta["batch_index"],
            order=order,
            running=_renamed(meta["running"]),
            metrics=[_renamed(row) for row in meta["metrics"]],
            restarts=meta["restarts"],
            optimizer=optimizer,
            device=device,
        )


def _renamed(row: dict) -> dict:
    """``row`` with the metric names of an older checkpoint in today's names (:data:`OLD_METRIC_NAMES`)."""
    return {OLD_METRIC_NAMES.get(key, key): value for key, value in row.items()}
