"""A Dask worker killed mid-sweep: the sweep still ends with every cell exactly once."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.toml"
SEEDS = list(range(5))
EPOCHS = 6


def sweep_command(path):
    return [sys.executable, "-m", "eqspice.learning.cli", "sweep", str(path), "--workers", "2", "--quiet"]


def worker_processes(pid):
    """Dask worker processes of the sweep process ``pid`` (its nannies run inside it and spawn them)."""
    return [p for p in psutil.Process(pid).children() if "spawn_main" in " ".join(p.cmdline())]


def kill_a_worker_mid_sweep(sweep, cells):
    """SIGKILL one worker process once a cell has finished and at least three are still to come."""
    deadline = time.monotonic() + 90
    while sweep.poll() is None and time.monotonic() < deadline:
        done = list(cells.glob("*.json")) if cells.exists() else []
        workers = worker_processes(sweep.pid)
        if done and len(done) <= len(SEEDS) - 3 and len(workers) == 2:
            os.kill(workers[0].pid, signal.SIGKILL)  # a process this test started (through the sweep)
            return {p.name for p in done}
        time.sleep(0.05)
    raise AssertionError("the sweep ended before a worker could be killed; make the cells longer")


@pytest.mark.parametrize("allowed_failures", [None, 0], ids=["dask-retries-the-cell", "sweep-gives-up-then-reruns"])
def test_killing_a_worker_mid_sweep_loses_and_duplicates_no_cell(tmp_path, allowed_failures):
    out = tmp_path / "out"
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'base = "{XOR}"\nout = "{out}"\n[axes]\nseed = {SEEDS}\n'
        f'[overrides]\n"engine.backend" = "native"\n"training.epochs" = {EPOCHS}\n"device.model" = "pulsed"\n'
    )
    env = dict(os.environ)
    if allowed_failures is not None:  # a task whose worker dies once is given up on
        env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = str(allowed_failures)
    sweep = subprocess.Popen(
        sweep_command(path), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    finished_before = kill_a_worker_mid_sweep(sweep, out / "cells")
    _, stderr = sweep.communicate(timeout=180)
    if allowed_failures is None:
        assert sweep.returncode == 0, stderr
    else:
        assert sweep.returncode == 3, stderr
        lines = [line for line in stderr.splitlines() if line.startswith("eqspice: error")]
        assert len(lines) == 1 and "run the same command again" in lines[0], stderr
        assert not (out / "results.csv").exists()
        again = subprocess.run(sweep_command(path), cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert again.returncode == 0, again.stderr

    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(int(r["seed"]) for r in rows) == SEEDS  # each cell exactly once
    assert len({r["cell"] for r in rows}) == len(SEEDS)
    assert all(int(r["epochs"]) == EPOCHS for r in rows)
    cells = {p.name: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert len(cells) == len(SEEDS) and finished_before <= set(cells)
