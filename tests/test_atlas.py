"""The robustness atlas: sweeps with an in-situ and an off-chip arm, and the figure eqspice report draws from them."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eqspice.learning.run.build import open_session
from eqspice.learning.run.checkpoint import RunState
from eqspice.learning.run.config import ConfigError
from eqspice.learning.run.deploy import chip_evaluation
from eqspice.learning.run.report import atlas_points, failure_levels
from eqspice.learning.run.sweep import load_sweep, run_sweep

XOR = Path(__file__).resolve().parents[1] / "examples" / "xor.toml"


def eqspice(*args):
    return subprocess.run(
        [sys.executable, "-m", "eqspice.learning.cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def sweep_file(tmp_path, axes, arms='arms = ["in_situ", "off_chip"]'):
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'base = "{XOR}"\nout = "{tmp_path / "out"}"\n{arms}\n[axes]\n{axes}\n'
        '[overrides]\n"engine.backend" = "native"\n"training.epochs" = 30\n"device.model" = "pulsed"\n'
        '"deploy.cycles" = 5\n'
    )
    return path


#: A hand-made atlas table: in situ drops 1.5 points at 0.1 and 8 at 0.3; off chip never drops 1 point.
TABLE = [
    ("in_situ", 0, 0.0, 0.90), ("in_situ", 1, 0.0, 0.92), ("in_situ", 0, 0.1, 0.89), ("in_situ", 1, 0.1, 0.90),
    ("in_situ", 0, 0.3, 0.82), ("in_situ", 1, 0.3, 0.84), ("off_chip", 0, 0.0, 0.91), ("off_chip", 1, 0.0, 0.91),
    ("off_chip", 0, 0.1, 0.905), ("off_chip", 1, 0.1, 0.91), ("off_chip", 0, 0.3, 0.91), ("off_chip", 1, 0.3, 0.905),
]


def test_the_atlas_is_the_mean_and_spread_over_seeds_and_the_first_value_that_drops_1_and_5_points(tmp_path):
    rows = [{"cell": str(k), "arm": a, "seed": s, "device.stuck_min": v, "test_accuracy": acc}
            for k, (a, s, v, acc) in enumerate(TABLE)]
    points = atlas_points(rows, "device.stuck_min")
    value, mean, std, n = points["in_situ"][1]
    assert (value, n) == ("0.1", 2)
    assert mean == pytest.approx(89.5) and std == pytest.approx(np.std([89.0, 90.0], ddof=1))
    assert failure_levels(points["in_situ"]) == {1.0: "0.1", 5.0: "0.3"}
    assert failure_levels(points["off_chip"]) == {1.0: None, 5.0: None}

    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0], "test_loss", "reference_accuracy"])
        writer.writeheader()
        writer.writerows(rows)
    result = eqspice("report", path, "-o", tmp_path / "atlas.png")
    assert result.returncode == 0, result.stderr
    assert "in_situ: ideal 91.0% at device.stuck_min = 0.0; -1 points at device.stuck_min = 0.1; " \
           "-5 points at device.stuck_min = 0.3" in result.stdout
    assert "off_chip: ideal 91.0% at device.stuck_min = 0.0; never -1 points" in result.stdout
    assert (tmp_path / "atlas.png").stat().st_size > 0


def write_results(path, field, table):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"cell": str(k), "arm": a, "seed": s, field: v, "test_accuracy": acc} for k, (a, s, v, acc) in enumerate(table)]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0], "test_loss"])
        writer.writeheader()
        writer.writerows(rows)


def test_report_on_several_sweeps_draws_one_panel_each_and_writes_one_tidy_table(tmp_path):
    write_results(tmp_path / "atlas" / "stuck" / "results.csv", "device.stuck_min", TABLE)
    levels = [("in_situ", 0, 0, 0.90), ("in_situ", 0, 8, 0.80), ("off_chip", 0, 0, 0.90), ("off_chip", 0, 8, 0.895)]
    write_results(tmp_path / "atlas" / "levels" / "results.csv", "device.levels", levels)
    result = eqspice("report", tmp_path / "atlas" / "stuck", tmp_path / "atlas" / "levels")
    assert result.returncode == 0, result.stderr
    assert "| stuck | device.stuck_min | in situ | 91.0 | 0.1 | 0.3 |" in result.stdout
    assert "| levels | device.levels | in situ | 90.0 | 8 | 8 |" in result.stdout
    assert "| levels | device.levels | off chip | 90.0 | not reached | not reached |" in result.stdout
    assert (tmp_path / "atlas" / "atlas.png").stat().st_size > 0
    with open(tmp_path / "atlas" / "atlas.csv") as fh:
        tidy = list(csv.DictReader(fh))
    assert len(tidy) == len(TABLE) + len(levels)
    assert tidy[-1] == {"sweep": "levels", "field": "device.levels", "value": "8", "arm": "off_chip", "seed": "0",
                        "test_accuracy": "0.895", "reference_accuracy": "", "train_sec": ""}  # fmt: skip

    mixed = eqspice("report", tmp_path / "atlas" / "stuck", tmp_path)
    assert mixed.returncode != 0 and "not both" in mixed.stderr and len(mixed.stderr.strip().splitlines()) == 1


def test_a_sweep_with_arms_trains_each_reference_once_and_deploys_it_into_every_chip(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, 'seed = [0]\n"device.stuck_min" = [0.0, 0.5]'))
    cells = sweep.cells()
    assert [c.values["arm"] for c in cells] == ["in_situ", "off_chip"] * 2
    assert len(sweep.references()) == 1  # one seed: one software reference for both chips
    rows = run_sweep(sweep, workers=2, progress=False)
    out = tmp_path / "out"
    with open(out / "results.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [(r["arm"], r["device.stuck_min"]) for r in table] == [
        ("in_situ", "0.0"), ("off_chip", "0.0"), ("in_situ", "0.5"), ("off_chip", "0.5")
    ]
    assert len(list((out / "reference" / "runs").iterdir())) == 1
    reference = json.loads(next((out / "reference" / "cells").iterdir()).read_text())
    for cell, row in zip(cells, rows):
        if cell.values["arm"] == "off_chip":  # the row is the deployed chip's own evaluation
            session = open_session(cell.config)
            state = RunState.load(out / "runs" / cell.id)
            assert chip_evaluation(session, state)[1] == row["test_accuracy"]
            session.engine.close()
            assert row["reference_accuracy"] == reference["test_accuracy"]
            assert row["train_sec"] == reference["train_sec"]
        else:  # no read noise or drift: the chip's accuracy is the training's last test accuracy
            metrics = RunState.load(out / "runs" / cell.id).metrics
            assert row["test_accuracy"] == metrics[-1]["test_accuracy"]
    stuck = RunState.load(out / "runs" / cells[3].id).device["stuck"]
    assert 0.3 < np.mean(stuck < 0) < 0.7

    kept = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    run_sweep(sweep, workers=1, progress=False)  # nothing left to run
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == kept

    report = eqspice("report", out)
    assert report.returncode == 0, report.stderr
    assert "in_situ: ideal" in report.stdout and "off_chip: ideal" in report.stdout
    assert (out / "atlas_device_stuck_min.png").stat().st_size > 0
    assert (out / "accuracy_vs_device_stuck_min.png").stat().st_size > 0


def test_sweeps_that_name_one_references_folder_train_each_reference_once(tmp_path):
    shared = tmp_path / "references"
    first = sweep_file(tmp_path, 'seed = [0]\n"device.stuck_min" = [0.0, 0.3]', f'arms = ["off_chip"]\nreferences = "{shared}"')
    rows = run_sweep(load_sweep(first), workers=1, progress=False)
    trained = {p.name: p.stat().st_mtime_ns for p in (shared / "cells").iterdir()}
    assert len(trained) == 1 and not (tmp_path / "out" / "reference").exists()
    second = load_sweep(sweep_file(tmp_path, 'seed = [0]\n"device.stuck_max" = [0.3]', f'arms = ["off_chip"]\nreferences = "{shared}"'),
                        out=tmp_path / "second")  # fmt: skip
    other = run_sweep(second, workers=1, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (shared / "cells").iterdir()} == trained  # not trained again
    assert other[0]["reference_accuracy"] == rows[0]["reference_accuracy"]


def test_an_in_situ_run_that_two_sweeps_share_is_trained_once(tmp_path):
    shared = tmp_path / "references"
    arms = f'arms = ["in_situ"]\nreferences = "{shared}"'
    first = run_sweep(load_sweep(sweep_file(tmp_path, 'seed = [0]\n"device.stuck_min" = [0.0, 0.3]', arms)), workers=1, progress=False)
    second_sweep = load_sweep(sweep_file(tmp_path, 'seed = [0]\n"device.stuck_max" = [0.0, 0.3]', arms), out=tmp_path / "second")
    second = run_sweep(second_sweep, workers=1, progress=False)
    # stuck_min = 0 and stuck_max = 0 are one config: its run lives in the first sweep only
    ideal, faulty = second_sweep.cells()
    assert not (tmp_path / "second" / "runs" / ideal.id).exists()
    assert (tmp_path / "second" / "runs" / faulty.id).exists()
    assert second[0]["run"] == str(tmp_path / "out" / "runs" / first[0]["cell"])
    for key in ("test_accuracy", "test_loss", "train_loss", "pulses"):
        assert second[0][key] == first[0][key]
    assert second[0]["device.stuck_max"] == 0.0 and "device.stuck_min" not in second[0]
    assert second[1]["test_accuracy"] != first[1]["test_accuracy"] or second[1]["pulses"] != first[1]["pulses"]
    assert len(list((shared / "cells").glob("in_situ-*.json"))) == 3  # one per distinct config

    for entry in (shared / "cells").glob("in_situ-*.json"):  # an index lost, or older than the runs
        entry.unlink()
    run_sweep(second_sweep, workers=1, progress=False)  # nothing to train: finished runs enter the index
    entries = [json.loads(p.read_text()) for p in (shared / "cells").glob("in_situ-*.json")]
    assert sorted(e["run"] for e in entries) == sorted([second[0]["run"], str(tmp_path / "second" / "runs" / faulty.id)])


@pytest.mark.parametrize(
    "arms, words",
    [
        ('arms = ["in_situ", "on_paper"]', ["unknown arm 'on_paper'"]),
        ("arms = []", ["distinct arms"]),
        ('arms = ["off_chip", "off_chip"]', ["distinct arms"]),
        ('arms = "off_chip"', ["give a list"]),
        ('arms = ["hw_aware"]', ["hw_aware_noise = s"]),
        ('arms = ["off_chip"]\nhw_aware_noise = 0.1', ["add \"hw_aware\" to arms"]),
        ('arms = ["hw_aware"]\nhw_aware_noise = 0', ["hw_aware_noise = 0", "(0, 1]"]),
        ('arms = ["hw_aware"]\nhw_aware_noise = "high"', ["hw_aware_noise = 'high'"]),
    ],
)
def test_bad_arms_are_refused_before_anything_runs(tmp_path, arms, words):
    with pytest.raises(ConfigError) as info:
        load_sweep(sweep_file(tmp_path, '"device.stuck_min" = [0.0]', arms))
    for word in words:
        assert word in str(info.value)
    assert not (tmp_path / "out").exists()


def test_report_refuses_a_table_that_is_not_a_sweeps(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    result = eqspice("report", path)
    assert result.returncode == 2 and "not a sweep's results table" in result.stderr


@pytest.mark.parametrize("name", ["digits_stuck_min.toml", "digits_levels.toml"])
def test_the_atlas_sweeps_compare_both_arms_from_the_most_ideal_value(name, tmp_path):
    sweep = load_sweep(Path(__file__).resolve().parents[1] / "examples" / "atlas" / name, tmp_path / "out")
    assert sweep.arms == ("in_situ", "off_chip", "hw_aware") and sweep.axes["seed"] == [0, 1, 2]
    (field,) = [k for k in sweep.axes if k != "seed"]
    assert sweep.axes[field][0] == 0  # no stuck devices; a continuous device
    assert len(sweep.references()) == 6  # per seed one software reference and one trained with weight noise
    assert all(c.config.engine.backend == "native" and list(c.config.network.layers) == [64, 32, 10] for c in sweep.cells())


def test_a_spot_check_reruns_recorded_cells_from_nothing_and_names_a_cell_that_differs(tmp_path):
    path = sweep_file(tmp_path, 'seed = [0]\n"device.stuck_min" = [0.0, 0.5]')
    run_sweep(load_sweep(path), workers=2, progress=False)
    table = tmp_path / "out" / "results.csv"
    check = eqspice("sweep", path, "--check", table, "--cells", "3", "--out", tmp_path / "check", "--workers", "1", "--quiet")
    assert check.returncode == 0, check.stderr
    lines = [line for line in check.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(lines) == 3 and all(line.endswith("| yes |") for line in lines)
    assert not (tmp_path / "check" / "runs" / "reference").exists() and (tmp_path / "check" / "reference").is_dir()

    with open(table) as fh:
        recorded = list(csv.DictReader(fh))
    recorded[1]["test_accuracy"] = str(float(recorded[1]["test_accuracy"]) - 0.25)  # one table row altered by hand
    altered = tmp_path / "altered.csv"
    with open(altered, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(recorded[0]))
        writer.writeheader()
        writer.writerows(recorded)
    differs = eqspice("sweep", path, "--check", altered, "--cells", "4", "--out", tmp_path / "again", "--workers", "1", "--quiet")
    assert differs.returncode == 1 and recorded[1]["cell"] in differs.stderr
    assert len(differs.stderr.strip().splitlines()) == 1 and "| NO |" in differs.stdout

    (tmp_path / "other").mkdir()
    other = sweep_file(tmp_path / "other", "seed = [1]")
    foreign = eqspice("sweep", other, "--check", table, "--out", tmp_path / "never")
    assert foreign.returncode == 2 and "is not a cell of this sweep file" in foreign.stderr
    assert len(foreign.stderr.strip().splitlines()) == 1 and not (tmp_path / "never").exists()


def test_the_hardware_aware_arm_trains_its_reference_with_weight_noise_and_deploys_it(tmp_path):
    path = sweep_file(tmp_path, 'seed = [0]\n"device.stuck_min" = [0.0, 0.3]', 'arms = ["off_chip", "hw_aware"]\nhw_aware_noise = 0.2')
    sweep = load_sweep(path)
    off, hw = (c for c in sweep.cells()[:2])
    assert hw.values["arm"] == "hw_aware" and hw.reference.id != off.reference.id
    assert hw.reference.config.device.read_noise == 0.2 and off.reference.config.device.read_noise == 0.0
    assert hw.reference.config.device.model == "ideal" and hw.reference.config.mismatch == off.reference.config.mismatch
    rows = run_sweep(sweep, workers=2, progress=False)
    assert [r["arm"] for r in rows] == ["off_chip", "hw_aware"] * 2
    out = tmp_path / "out"
    trained = {p.name: RunState.load(p).g_s for p in (out / "reference" / "runs").iterdir()}
    assert len(trained) == 2  # one reference per arm for the one seed
    # the same seed, data and schedule: only the injected noise tells the two trainings apart
    assert not np.allclose(trained[off.reference.id], trained[hw.reference.id], rtol=1e-3)
    for cell, row in zip(sweep.cells(), rows):  # each chip holds its own arm's reference, programmed
        assert row["reference_accuracy"] == json.loads(
            (out / "reference" / "cells" / f"{cell.reference.id}.json").read_text())["test_accuracy"]  # fmt: skip
    with open(out / "results.csv") as fh:
        assert "reference_accuracy" in fh.readline()


def test_a_recorded_table_is_taken_as_known_and_only_new_values_run(tmp_path):
    """An axis extended after its run folders are gone: the recorded rows are entered, only new cells train."""
    first = sweep_file(tmp_path, 'seed = [0]\n"device.stuck_min" = [0.0, 0.5]')
    run_sweep(load_sweep(first), workers=2, progress=False)
    with open(tmp_path / "out" / "results.csv") as fh:
        recorded = list(csv.DictReader(fh))
    (tmp_path / "later").mkdir()
    extended = sweep_file(tmp_path / "later", 'seed = [0]\n"device.stuck_min" = [0.0, 0.5, 0.3]')
    result = eqspice("sweep", extended, "--known", tmp_path / "out" / "results.csv", "--workers", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "4 cells taken from" in result.stdout
    out = tmp_path / "later" / "out"
    with open(out / "results.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [(r["arm"], r["device.stuck_min"]) for r in table] == [
        ("in_situ", "0.0"), ("off_chip", "0.0"), ("in_situ", "0.5"), ("off_chip", "0.5"), ("in_situ", "0.3"), ("off_chip", "0.3")
    ]
    assert table[:4] == recorded  # the recorded rows, unchanged to the last digit
    new = {r["cell"] for r in table[4:]}
    assert {p.name for p in (out / "runs").iterdir()} == new  # nothing else was trained or deployed again

    (tmp_path / "other").mkdir()
    other = sweep_file(tmp_path / "other", 'seed = [1]\n"device.stuck_min" = [0.0]')
    foreign = eqspice("sweep", other, "--known", tmp_path / "out" / "results.csv")
    assert foreign.returncode == 2 and "is not a cell of this sweep file" in foreign.stderr
    assert len(foreign.stderr.strip().splitlines()) == 1 and not (tmp_path / "other" / "out").exists()
