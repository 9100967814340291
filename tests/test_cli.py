"""The command line as a user meets it: bad input gives one line, an exit code, no litter."""

import csv
import io
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eqspice.learning.run.checkpoint import CheckpointError, RunState
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
    last = list(csv.DictReader(io.StringIO((run_dir / "metrics.csv").read_text())))[-1]
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


def start_native_training(run_dir, *flags):
    """XOR on the native engine with its progress bar, returned once its first checkpoint after an epoch is on disk."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "eqspice.learning.cli", "train", str(XOR), "--backend", "native", "--run-dir", str(run_dir), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not (run_dir / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.02)
    return proc


PHYSICS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "pulses")


def physics_columns(run_dir):
    return [[row[k] for k in PHYSICS] for row in csv.DictReader(io.StringIO((run_dir / "metrics.csv").read_text()))]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signalled_run_saves_its_state_says_how_to_resume_and_resumes_exactly(tmp_path, signum, code):
    run_dir = tmp_path / "run"
    proc = start_native_training(run_dir, "--quiet")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert lines == [f"eqspice: interrupted ({signal.Signals(signum).name}); state saved, continue with --resume {run_dir}"]
    stopped_at = RunState.load(run_dir)
    assert 1 <= stopped_at.epoch < 300
    resumed = eqspice("train", XOR, "--backend", "native", "--resume", run_dir, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    whole = eqspice("train", XOR, "--backend", "native", "--run-dir", tmp_path / "whole", "--quiet")
    assert whole.returncode == 0, whole.stderr
    assert physics_columns(run_dir) == physics_columns(tmp_path / "whole")
    assert len(physics_columns(run_dir)) == 300
    np.testing.assert_array_equal(RunState.load(run_dir).g_s, RunState.load(tmp_path / "whole").g_s)


def test_terminated_ngspice_run_resumes_to_the_end(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_training(XOR, run_dir)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and f"--resume {run_dir}" in err and "Traceback" not in err
    resumed = eqspice("train", XOR, "--resume", run_dir, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "metrics.csv").read_text().splitlines()[-1].startswith("300,")


def files_of(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = eqspice("train", XOR, "--backend", "native", "--set", "training.epochs=2", "--run-dir", run_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    return run_dir


def truncated(data):
    return data[: len(data) // 2]


def corrupted(data):
    middle = len(data) // 3  # inside the stored arrays, past the first file header
    return data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 64]) + data[middle + 64 :]


@pytest.mark.parametrize("damage", [truncated, corrupted, lambda data: b""], ids=["truncated", "corrupted", "empty"])
def test_a_damaged_checkpoint_is_one_line_for_eval_and_resume_and_nothing_is_written(tmp_path, two_epoch_run, damage):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name, data in files_of(two_epoch_run).items():
        (run_dir / name).write_bytes(damage(data) if name == "checkpoint.npz" else data)
    before = files_of(run_dir)
    checkpoint = run_dir / "checkpoint.npz"
    for command in (["eval", run_dir], ["train", XOR, "--backend", "native", "--resume", run_dir, "--quiet"]):
        result = eqspice(*command)
        assert result.returncode == 2, result.stderr
        assert_one_line_error(result, f"{checkpoint} is damaged", "restore it from a copy or start a new run")
        assert files_of(run_dir) == before
    with pytest.raises(CheckpointError, match="is damaged"):
        RunState.load(run_dir)


def test_a_checkpoint_of_another_circuit_is_refused(tmp_path, two_epoch_run):
    other = tmp_path / "other"
    result = eqspice(
        "train", XOR, "--backend", "native", "--set", "training.epochs=1", "--set", "network.layers=[2, 3, 2]",
        "--run-dir", other, "--quiet",
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name, data in files_of(two_epoch_run).items():
        (run_dir / name).write_bytes((other / name).read_bytes() if name == "checkpoint.npz" else data)
    for command in (["eval", run_dir], ["train", run_dir / "config.toml", "--resume", run_dir, "--quiet"]):
        assert_one_line_error(eqspice(*command), "conductances, the run's circuit has", "belongs to another run")


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
        "--set", "seed=7",
    )
    assert result.returncode == 0, result.stderr
    recorded = load_config(run_dir / "config.toml")
    assert recorded.seed == 7 != load_config(XOR).seed
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


def test_every_command_turns_its_flags_into_the_same_dotted_overrides(tmp_path):
    from eqspice.learning.cli import build_parser, cli_overrides, load_source

    parse = build_parser().parse_args
    evaluation = parse(["eval", str(XOR), "--backend", "native", "--limit", "3", "--data-dir", str(tmp_path)])
    assert cli_overrides(evaluation) == {"engine.backend": "native", "data.limit_test": 3, "data.data_dir": str(tmp_path)}
    training = parse(["train", str(XOR), "--set", "engine.backend=ngspice", "--set", "training.epochs=2", "--backend", "native"])
    assert cli_overrides(training) == {"engine.backend": "native", "training.epochs": 2}  # the named flag wins
    assert cli_overrides(parse(["settle", str(XOR), "--input", "0,1"])) == {}
    assert cli_overrides(parse(["export", str(XOR), "-o", "x.cir"])) == {}
    source = load_source(XOR, cli_overrides(evaluation))
    assert (source.config.engine.backend, source.config.data.limit_test, source.run_dir) == ("native", 3, None)


def test_eval_limits_a_trained_run_to_the_first_samples(two_epoch_run):
    result = eqspice("eval", two_epoch_run, "--limit", "2", "--backend", "native")
    assert result.returncode == 0, result.stderr
    assert f"trained run {two_epoch_run}: native engine, 2 test samples of xor" in result.stdout


def test_a_reader_that_stops_early_ends_the_report_quietly(tmp_path):
    """``eqspice report ... | head -1``: no traceback when the pipe closes, the exit code of a SIGPIPE."""
    table = tmp_path / "sweep" / "results.csv"
    table.parent.mkdir()
    rows = "".join(f"{k},in_situ,{k % 3},{k // 3 * 0.1},0.9,0.1\n" for k in range(3000))  # a long atlas table
    table.write_text("cell,arm,seed,device.c2c,test_accuracy,test_loss\n" + rows)
    process = subprocess.Popen(
        [sys.executable, "-m", "eqspice.learning.cli", "report", str(table.parent), "-o", str(tmp_path / "a.png")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    process.stdout.readline()
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 128 + signal.SIGPIPE
    assert "Traceback" not in err and err == ""
