"""The command line as a user meets it: bad input gives one line, an exit code, no litter."""

import csv
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eqspice.learning.run.config import load_config

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.toml"


def eqspice(*args, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "eqspice.learning.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def config_with(tmp_path, old, new, name="bad.toml"):
    text = XOR.read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def assert_one_line_error(result, *words):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("eqspice: error: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    "old, new, words",
    [
        ("epochs = 300", "epochs = 300\nepochz = 3", ["training.epochz", "unknown key"]),
        ("g_min_s = 1e-7", "g_min_s = 2e-4", ["device.g_min_s: must be below g_max_s"]),
        ("g_min_s = 1e-7", "g_min_s = 0.0", ["device.g_min_s", "greater than 0"]),
        ("g_max_s = 1e-4", "g_max_s = -1e-4", ["device.g_max_s"]),
        ("layers = [2, 8, 2]", "layers = [3, 8, 2]", ["layers[0] = 3", "2 features"]),
        ("layers = [2, 8, 2]", "layers = [2, 0, 2]", ["layers[1]: 0 hidden nodes"]),
        ('name = "xor"', 'name = "mnist"\ndata_dir = "/nonexistent/mnist"', ["/nonexistent/mnist"]),
        ('name = "xor"', 'name = "xorr"', ["data.name"]),
        ("beta_s = 1e-5", "beta_s = nan", ["training.beta_s"]),
        ("g_min_s = 1e-7", 'g_min_s = 1e-7\nmodel = "pulsed"\nup_down = 1.0', ["device.up_down"]),
        ("g_min_s = 1e-7", "g_min_s = 1e-7\nstuck_min = 0.7\nstuck_max = 0.6", ["stuck_min + stuck_max"]),
        ("g_min_s = 1e-7", 'g_min_s = 1e-7\nstep = "cubic"', ["device.step"]),
        ("epochs = 300", 'epochs = 300\nlr_schedule = "step"', ["lr_step_epochs"]),
        ("epochs = 300", 'epochs = 300\nlr_schedule = "step"\nlr_step_epochs = [300]', ["lr_step_epochs [300]", "1..epochs-1"]),
    ],
)
def test_bad_config_is_one_line_and_leaves_no_run_directory(tmp_path, old, new, words):
    config = config_with(tmp_path, old, new)
    run_dir = tmp_path / "run"
    result = eqspice("train", config, "--run-dir", run_dir, "--backend", "native")
    assert result.returncode == 2
    assert_one_line_error(result, *words)
    assert not run_dir.exists()


def write_idx(path, array, code):
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def test_nan_in_data_is_refused(tmp_path):
    data = tmp_path / "mnist"
    data.mkdir()
    images = np.random.default_rng(0).uniform(0, 255, (10, 2, 1))
    images[3, 0, 0] = np.nan
    labels = np.arange(10, dtype=np.uint8) % 2
    for split in ("train", "t10k"):
        write_idx(data / f"{split}-images-idx3-ubyte", images, 0x0E)  # float64 IDX
        write_idx(data / f"{split}-labels-idx1-ubyte", labels, 0x08)
    config = config_with(tmp_path, 'name = "xor"', f'name = "mnist"\ndata_dir = "{data}"')
    result = eqspice("train", config, "--run-dir", tmp_path / "run", "--backend", "native")
    assert_one_line_error(result, "NaN")
    assert not (tmp_path / "run").exists()


def test_unwritable_run_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = eqspice("train", XOR, "--run-dir", blocker / "run", "--backend", "native")
    assert_one_line_error(result, "not writable")


def test_existing_run_directory_is_not_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "precious.txt").write_text("keep me")
    result = eqspice("train", XOR, "--run-dir", run_dir, "--backend", "native")
    assert_one_line_error(result, "--resume")
    assert (run_dir / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in run_dir.iterdir()) == ["precious.txt"]


def test_missing_config_file(tmp_path):
    assert_one_line_error(eqspice("train", tmp_path / "nope.toml"), "no such config file")


def test_settle_rejects_wrong_input_length_and_nan():
    assert_one_line_error(eqspice("settle", XOR, "--input", "0,1,1"), "3 values", "2 inputs")
    assert_one_line_error(eqspice("settle", XOR, "--input", "nan,1"), "NaN")


def test_settle_prints_the_same_outputs_from_both_engines():
    outputs = []
    for backend in ("ngspice", "native"):
        result = eqspice("settle", XOR, "--input", "1,0", "--backend", backend)
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stdout.splitlines() if line.startswith("V(out_")]
        assert len(lines) == 2 and "predicted class" in result.stdout
        outputs.append([float(line.split("=")[1].split()[0]) for line in lines])
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-9)


def start_training(config, run_dir):
    """A training run in the background, returned once its first epoch is on disk."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "eqspice.learning.cli", "train", str(config), "--run-dir", str(run_dir), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not (run_dir / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.05)
    return proc


def child_pids(pid):
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def test_killed_ngspice_child_does_not_lose_the_run(tmp_path):
    config = config_with(tmp_path, "epochs = 300", "epochs = 150", name="xor.toml")
    run_dir = tmp_path / "run"
    proc = start_training(config, run_dir)
    victims = child_pids(proc.pid)
    assert victims, "the run should have an ngspice child"
    os.kill(victims[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "killed by signal 9" in err and "sample" in err and "phase" in err
    last = list(csv.DictReader((run_dir / "metrics.csv").open()))[-1]
    assert last["epoch"] == "150"
    assert int(last["engine_restarts"]) >= 1


def test_a_child_that_always_dies_stops_the_run_with_its_state_saved(tmp_path, monkeypatch):
    config = config_with(tmp_path, "epochs = 300", "epochs = 2", name="xor.toml")
    env = dict(os.environ, NGSPICE_LIBRARY_PATH="/nonexistent/libngspice.so")
    result = subprocess.run(
        [sys.executable, "-m", "eqspice.learning.cli", "train", str(config), "--run-dir", str(tmp_path / "run"), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert_one_line_error(result, "ngspice child")
    assert not (tmp_path / "run").exists()


def test_terminated_run_saves_its_state_and_resumes_to_the_end(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_training(XOR, run_dir)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (3, 130), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    resumed = eqspice("train", XOR, "--resume", run_dir, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "metrics.csv").read_text().splitlines()[-1].startswith("300,")


def test_report_prints_each_run_and_plots_them_side_by_side(tmp_path):
    for name, accs in (("a", (0.5, 0.75, 0.7)), ("b", (0.6, 0.65, 0.9))):
        run = tmp_path / name
        run.mkdir()
        lines = ["epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds,samples_per_s,engine_restarts,pulses"]
        lines += [f"{e + 1},0.1,0.5,0.2,{acc},1.5,10,0,0" for e, acc in enumerate(accs)]
        (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    plot = tmp_path / "both.png"
    result = eqspice("report", tmp_path / "a", tmp_path / "b", "-o", plot)
    assert result.returncode == 0, result.stderr
    assert "best test accuracy 75.00% at epoch 2" in result.stdout
    assert "best test accuracy 90.00% at epoch 3" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_refuses_a_folder_without_metrics(tmp_path):
    assert_one_line_error(eqspice("report", tmp_path), "no metrics.csv")
    (tmp_path / "metrics.csv").write_text("epoch,train_loss\n")
    assert_one_line_error(eqspice("report", tmp_path, "-o", tmp_path / "x.pdf"), "give a .png")


def test_set_overrides_config_values_and_records_them(tmp_path):
    run_dir = tmp_path / "run"
    result = eqspice(
        "train", XOR, "--run-dir", run_dir, "--backend", "native", "--quiet",
        "--set", "training.epochs=2", "--set", "training.lr_schedule=cosine", "--set", "network.layers=[2, 3, 2]",
    )
    assert result.returncode == 0, result.stderr
    recorded = load_config(run_dir / "config.toml")
    assert recorded.training.epochs == 2
    assert recorded.training.lr_schedule == "cosine"
    assert list(recorded.network.layers) == [2, 3, 2]


@pytest.mark.parametrize(
    "setting, words",
    [("epochs=2", ["--set 'epochs=2'", "section.key=value"]), ("training.epochz=2", ["training.epochz", "unknown key"])],
)
def test_a_bad_set_is_one_line_and_leaves_no_run_directory(tmp_path, setting, words):
    run_dir = tmp_path / "run"
    result = eqspice("train", XOR, "--run-dir", run_dir, "--backend", "native", "--set", setting)
    assert result.returncode == 2
    assert_one_line_error(result, *words)
    assert not run_dir.exists()
