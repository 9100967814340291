"""Sweeps: every cell once, restartable, bad input refused before anything runs."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from eqspice.learning.run.config import ConfigError
from eqspice.learning.run.sweep import load_sweep, run_sweep

XOR = Path(__file__).resolve().parents[1] / "examples" / "xor.toml"


def sweep_file(tmp_path, axes, extra=""):
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'base = "{XOR}"\nout = "{tmp_path / "out"}"\n{extra}\n[axes]\n{axes}\n'
        '[overrides]\n"engine.backend" = "native"\n"training.epochs" = 5\n"device.model" = "pulsed"\n'
    )
    return path


def rows(out):
    with open(out / "results.csv") as fh:
        return list(csv.DictReader(fh))


def test_sweep_runs_each_cell_once_and_a_restart_runs_only_missing_cells(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, 'seed = [0, 1]\n"device.c2c" = [0.0, 0.3]'))
    run_sweep(sweep, workers=2, progress=False)
    out = tmp_path / "out"
    first = rows(out)
    assert len(first) == 4 and len({r["cell"] for r in first}) == 4
    assert {(r["seed"], r["device.c2c"]) for r in first} == {("0", "0.0"), ("0", "0.3"), ("1", "0.0"), ("1", "0.3")}
    assert (out / "accuracy_vs_device_c2c.png").stat().st_size > 0

    # an interrupted sweep: two results lost, one of them with a run that never checkpointed
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    lost = sorted(kept)[:2]
    for name in lost:
        (out / "cells" / name).unlink()
    cell = lost[0].removesuffix(".json")
    for f in (out / "runs" / cell).iterdir():
        f.unlink()
    run_sweep(sweep, workers=2, progress=False)
    second = rows(out)
    assert len(second) == 4 and len({r["cell"] for r in second}) == 4
    timeless = lambda table: [{k: v for k, v in r.items() if k != "train_sec"} for r in table]  # noqa: E731
    assert timeless(second) == timeless(first)  # the same seeds give the same results
    for name, mtime in kept.items():
        if name not in lost:
            assert (out / "cells" / name).stat().st_mtime_ns == mtime  # not run again
    assert json.loads((out / "cells" / lost[0]).read_text())["epochs"] == 5


@pytest.mark.parametrize(
    "axes, extra, words",
    [
        ('"device.c2cc" = [0.1]', "", ["device.c2cc", "unknown key"]),
        ('"device.c2c" = []', "", ["axes.device.c2c is empty"]),
        ("", "", ["[axes] is empty"]),
        ('"device.c2c" = [-0.1]', "", ["device.c2c"]),
        ('"device.step" = ["cubic"]', "", ["device.step"]),
        ('seed = [0, 1]\n"device.c2c" = [0.1]', 'mode = "list"', ["equal length"]),
        ('seed = [0]', 'references = "runs/refs"', ["references", "with arms"]),
        ('seed = [0]', 'arms = ["off_chip"]\nreferences = 3', ["references = 3", "folder"]),
    ],
)
def test_bad_sweeps_are_refused_before_any_run(tmp_path, axes, extra, words):
    path = sweep_file(tmp_path, axes, extra)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    for word in words:
        assert word in str(info.value)
    assert not (tmp_path / "out").exists()


def test_unreachable_scheduler_is_one_line_and_runs_nothing(tmp_path):
    path = sweep_file(tmp_path, "seed = [0]")
    result = subprocess.run(
        [sys.executable, "-m", "eqspice.learning.cli", "sweep", str(path), "--scheduler", "tcp://127.0.0.1:9", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "results.csv").exists()
