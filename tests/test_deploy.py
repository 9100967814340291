"""Off-chip deployment: trained conductances programmed into a chip through its device model.

The effects on the programmed conductances are checked against what a hand
calculation expects of each non-ideality: a binomial fraction of stuck devices,
quantisation to the nearest of the levels, and the spread of a sum of noisy pulses.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eqspice.learning.devices.models import IdealDevice, PulsedDevice
from eqspice.learning.devices.programming import Programming, ProgrammingSpecError, program_conductances
from eqspice.learning.run.build import open_session
from eqspice.learning.run.checkpoint import RunState
from eqspice.learning.run.config import load_config
from eqspice.learning.run.deploy import DEPLOYMENT, chip_evaluation, deploy, deploy_state, software_reference
from eqspice.learning.run.loop import conductances_at_evaluation, train

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.toml"
TRAINING = {"engine.backend": "native", "training.epochs": 40}


def eqspice(*args):
    return subprocess.run(
        [sys.executable, "-m", "eqspice.learning.cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An XOR run trained on the ideal device (the software reference), in its own folder."""
    run_dir = tmp_path_factory.mktemp("deploy") / "ideal"
    config = load_config(XOR, TRAINING)
    state = train(config, run_dir, progress=False)
    return config, state, run_dir


def chip(**device):
    return load_config(XOR, {**TRAINING, **{f"device.{k}": v for k, v in device.items()}, "deploy.scheme": "write_verify"})


def test_an_ideal_run_programmed_into_an_ideal_chip_keeps_every_conductance_and_its_accuracy(trained, tmp_path):
    config, state, run_dir = trained
    summary = deploy(RunState.load(run_dir), chip(), tmp_path / "chip", source=str(run_dir))
    programmed = RunState.load(tmp_path / "chip")
    assert np.array_equal(programmed.g_s, state.g_s)  # bit for bit
    assert summary["within_tolerance"] == summary["devices"] == state.g_s.size
    assert summary["test_accuracy"] == state.metrics[-1]["test_accuracy"]
    assert summary["test_loss"] == state.metrics[-1]["test_loss"]
    before, after = eqspice("eval", run_dir), eqspice("eval", tmp_path / "chip")
    assert before.returncode == after.returncode == 0, after.stderr
    assert before.stdout.split("accuracy ")[1].split(",")[0] == after.stdout.split("accuracy ")[1].split(",")[0]
    assert json.loads((tmp_path / "chip" / DEPLOYMENT).read_text())["source"] == str(run_dir)


def test_stuck_devices_are_a_binomial_fraction_at_their_bound_and_the_others_reach_their_targets():
    n, p_min, p_max = 20000, 0.2, 0.1
    device = PulsedDevice(stuck_min=p_min, stuck_max=p_max, dw_min_s=1e-6)
    rng = np.random.default_rng(1)
    state = device.init_state(n, rng)
    target = rng.uniform(2e-5, 8e-5, n)  # away from both bounds
    start = rng.uniform(device.g_min_s, device.g_max_s, n)
    g, _, _ = program_conductances(device, start, target, state, rng, Programming(cycles=40))
    for fraction, bound in ((p_min, device.g_min_s), (p_max, device.g_max_s)):
        at_bound = np.mean(g == bound)
        assert abs(at_bound - fraction) < 4 * np.sqrt(fraction * (1 - fraction) / n)
    free = state["stuck"] == 0
    assert np.all(np.abs(g[free] - target[free]) <= 0.5 * device.dw_min_s * (1 + 1e-9))  # half a pulse


def test_write_verify_puts_each_device_on_the_level_nearest_its_target():
    device = IdealDevice(levels=9)
    spacing = (device.g_max_s - device.g_min_s) / 8
    rng = np.random.default_rng(2)
    target = rng.uniform(device.g_min_s, device.g_max_s, 5000)
    g, _, _ = program_conductances(device, np.full(5000, device.g_min_s), target, {}, rng, Programming(cycles=40))
    nearest = device.g_min_s + np.round((target - device.g_min_s) / spacing) * spacing
    np.testing.assert_allclose(g, nearest, rtol=0, atol=1e-9 * spacing)
    assert np.max(np.abs(g - target)) <= spacing / 2 * (1 + 1e-9)


def test_one_shot_programming_rounds_to_a_neighbouring_level_without_bias():
    device = IdealDevice(levels=5)
    spacing = (device.g_max_s - device.g_min_s) / 4
    rng = np.random.default_rng(3)
    n = 40000
    target = rng.uniform(device.g_min_s, device.g_max_s, n)
    g, _, writes = program_conductances(device, np.full(n, device.g_min_s), target, {}, rng, Programming(scheme="one_shot"))
    assert writes == 1
    error = g - target
    assert np.max(np.abs(error)) < spacing
    # stochastic rounding: error -f s with probability 1 - f, (1 - f) s with probability f; mean 0, var f (1 - f) s^2
    f = (target - device.g_min_s) / spacing % 1
    assert abs(error.mean()) < 4 * np.sqrt(np.mean(f * (1 - f)) * spacing**2 / n)


def test_programming_noise_is_the_spread_of_a_sum_of_noisy_pulses():
    dw, k, c2c, n = 2.0**-20, 16, 0.2, 20000  # exact binary numbers: exactly k pulses are asked for
    device = PulsedDevice(dw_min_s=dw, c2c=c2c, step="linear")
    rng = np.random.default_rng(4)
    state = device.init_state(n, rng)
    start = np.full(n, 2.0**-14)
    g, pulses, _ = program_conductances(device, start, start + k * dw, state, rng, Programming(scheme="one_shot"))
    assert np.all(pulses == k)
    error = g - (start + k * dw)  # a sum of k independent steps dw c2c N(0, 1)
    expected = c2c * dw * np.sqrt(k)
    assert abs(error.std() / expected - 1) < 4 / np.sqrt(2 * n)
    assert abs(error.mean()) < 4 * expected / np.sqrt(n)


def test_the_same_seed_fabricates_and_programs_the_same_chip(trained):
    config, state, run_dir = trained
    make = lambda seed: load_config(  # noqa: E731
        run_dir / "config.toml",
        {"seed": seed, "device.model": "pulsed", "device.stuck_min": 0.2, "device.c2c": 0.3, "device.d2d_step": 0.3},
    )
    first, _ = deploy_state(open_session(make(0)), state)
    again, _ = deploy_state(open_session(make(0)), state)
    other, _ = deploy_state(open_session(make(1)), state)
    assert np.array_equal(first.g_s, again.g_s)
    assert all(np.array_equal(first.device[k], again.device[k]) for k in first.device)
    assert not np.array_equal(first.g_s, other.g_s)


def test_a_deployed_chip_drifts_from_the_end_of_training_and_reads_noisily_but_repeatably(trained):
    config, state, run_dir = trained
    drifting = load_config(
        run_dir / "config.toml",
        {"device.drift.nu_mean": 0.1, "device.drift.t0_sec": 20.0, "device.drift.eval_delay_sec": 1e4},
    )
    session = open_session(drifting)
    programmed, _ = deploy_state(session, state)
    nu = programmed.device["drift_nu"]
    np.testing.assert_allclose(conductances_at_evaluation(session, programmed), state.g_s * ((1e4 + 20.0) / 20.0) ** -nu)
    noisy = open_session(load_config(run_dir / "config.toml", {"device.read_noise": 0.5}))
    chip_state, _ = deploy_state(noisy, state)
    assert chip_evaluation(noisy, chip_state) == chip_evaluation(noisy, chip_state)
    assert chip_evaluation(noisy, chip_state)[0] != state.metrics[-1]["test_loss"]


def test_the_software_reference_is_the_run_on_the_ideal_device_of_the_same_window():
    config = load_config(
        XOR,
        {
            "device.model": "pulsed", "device.stuck_min": 0.3, "device.levels": 8, "device.read_noise": 0.1,
            "device.drift.nu_mean": 0.1, "mismatch.diode_is": 0.2, "training.readout_resolution_v": 1e-3,
            "deploy.cycles": 5,
        },
    )
    reference = software_reference(config)
    assert reference.device.model == "ideal" and reference.device.levels == 0 and reference.device.read_noise == 0
    assert (reference.device.g_min_s, reference.device.g_max_s) == (config.device.g_min_s, config.device.g_max_s)
    assert reference.device.drift is None and reference.mismatch.diode_is == 0 and reference.deploy is None
    assert reference.training.readout_resolution_v == 0
    assert reference.training.epochs == config.training.epochs and reference.seed == config.seed


@pytest.mark.parametrize(
    "args, words",
    [
        (["--set", "device.model=pulsed", "--set", "device.stuck_min=1.5"], ["device.stuck_min", "less than or equal to 1"]),
        (["--set", "device.model=pulsed", "--set", "device.stuck_min=-0.1"], ["device.stuck_min"]),
        (["--set", "device.model=pulsed", "--set", "device.stuck_min=0.6", "--set", "device.stuck_max=0.6"], ["at most 1"]),
        (["--set", "device.levels=1"], ["device.levels"]),
        (["--set", "device.levels=-4"], ["device.levels"]),
        (["--set", "device.stuck_min=0.1"], ["ideal device has no stuck_min", "device.model=pulsed"]),
        (["--set", "deploy.cycles=0"], ["deploy.cycles"]),
        (["--set", "deploy.scheme=twice"], ["deploy.scheme"]),
        (["--set", "network.layers=[2,4,2]"], ["devices"]),
    ],
)
def test_bad_chips_are_one_line_errors_and_write_nothing(trained, tmp_path, args, words):
    _, _, run_dir = trained
    result = eqspice("deploy", run_dir, "--out", tmp_path / "chip", *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("eqspice: note:")]
    assert len(lines) == 1 and lines[0].startswith("eqspice: error: "), result.stderr
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "chip").exists()


def test_a_missing_run_or_a_used_output_folder_is_refused(trained, tmp_path):
    _, _, run_dir = trained
    missing = eqspice("deploy", tmp_path / "nope", "--out", tmp_path / "chip")
    assert missing.returncode == 2 and "no such run directory" in missing.stderr
    (tmp_path / "empty").mkdir()
    untrained = eqspice("deploy", tmp_path / "empty", "--out", tmp_path / "chip")
    assert untrained.returncode == 2 and "checkpoint.npz" in untrained.stderr
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("keep")
    used = eqspice("deploy", run_dir, "--out", tmp_path / "used")
    assert used.returncode == 2 and "not an empty folder" in used.stderr
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["x"] and not (tmp_path / "chip").exists()


def test_deploy_on_the_command_line_writes_a_run_eval_reads(trained, tmp_path):
    _, _, run_dir = trained
    out = tmp_path / "chip"
    result = eqspice(
        "deploy", run_dir, "--out", out, "--set", "device.model=pulsed", "--set", "device.stuck_min=0.5",
        "--set", "deploy.cycles=3",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / DEPLOYMENT).read_text())
    assert summary["writes"] == 3 and summary["stuck_min"] > 0
    assert load_config(out / "config.toml").deploy == Programming(cycles=3)
    evaluated = eqspice("eval", out)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"accuracy {summary['test_accuracy']:.4f}" in evaluated.stdout


def test_a_programming_scheme_refuses_bad_values_in_python_as_in_a_config():
    with pytest.raises(ProgrammingSpecError, match="cycles"):
        Programming(cycles=0)
    with pytest.raises(ProgrammingSpecError, match="tolerance_s"):
        Programming(tolerance_s=-1e-6)


@pytest.mark.parametrize("existing", [False, True])
def test_a_deployment_interrupted_while_writing_leaves_no_half_written_run(trained, tmp_path, monkeypatch, existing):
    """Ctrl-C while the deployed run's files are written: the folder is emptied, and removed if deploy made it."""
    import eqspice.learning.run.deploy as deploy_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    _, _, run_dir = trained
    out = tmp_path / "chip"
    if existing:
        out.mkdir()
    monkeypatch.setattr(deploy_module, "plot_conductance_histograms", interrupted)
    with pytest.raises(KeyboardInterrupt):
        deploy(RunState.load(run_dir), chip(), out)
    assert out.exists() == existing and (not existing or not any(out.iterdir()))
    monkeypatch.undo()
    deploy(RunState.load(run_dir), chip(), out)  # the next attempt meets a folder it can use
    assert (out / DEPLOYMENT).exists()
