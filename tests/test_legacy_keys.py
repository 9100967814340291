"""Old config keys load as the config they always meant, each with a one-line note naming the new key."""

import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

from eqspice.learning.run.checkpoint import RunState
from eqspice.learning.run.config import ConfigError, dump_config, load_config, parse_config
from eqspice.learning.run.legacy import ALIASES, DeprecatedKey

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.toml"
EXAMPLES = ROOT / "examples"

#: A value for every old key, and what the new layout needs next to it to mean the same.
OLD_VALUES = {
    "diode_is_a": 1e-13,
    "diode_n": 1.2,
    "drift_nu": 0.05,
    "drift_nu_std": 0.01,
    "drift_t0_s": 30.0,
    "seconds_per_batch": 2.0,
    "drift_eval_delay_s": 100.0,
    "timeout_s": 10.0,
    "dt_s": 2e-10,
    "run_s": 2e-8,
    "burn_in_s": 2e-9,
    "tau_s": 1e-9,
}
NOISE = {"model": "gibbs", "t_eff_w": 1e-9}


def xor_raw(**sections) -> dict:
    raw = tomllib.loads(XOR.read_text())
    for name, table in sections.items():
        raw[name] = {**raw.get(name, {}), **table}
    return raw


def set_path(table: dict, path: tuple, value) -> None:
    for name in path[:-1]:
        table = table.setdefault(name, {})
    table[path[-1]] = value


@pytest.mark.parametrize("section, old", sorted(ALIASES), ids=[f"{s}.{o}" for s, o in sorted(ALIASES)])
def test_every_old_key_loads_as_its_new_key_with_a_note(section, old):
    path, unit = ALIASES[section, old]
    value = OLD_VALUES[old]
    extra = {"noise": dict(NOISE)} if section == "noise" else {}
    old_raw, new_raw = xor_raw(**extra), xor_raw(**extra)
    old_raw[section][old] = value
    set_path(new_raw[section], path, value)
    with pytest.warns(DeprecatedKey) as notes:
        old_config = parse_config(old_raw)
    new = ".".join((section, *path))
    assert [str(n.message) for n in notes] == [f"{section}.{old} is deprecated; write {new} ({unit})"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecatedKey)
        new_config = parse_config(new_raw)
    assert old_config == new_config
    assert old_config.model_dump() == new_config.model_dump()


def test_an_old_key_and_its_new_key_together_are_refused():
    raw = xor_raw(engine={"timeout_s": 10.0, "timeout_sec": 20.0})
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert str(info.value) == "config: engine.timeout_s and engine.timeout_sec are both given; keep engine.timeout_sec (seconds)"


OLD_IRIS_NOISE = """
seed = 0
[data]
name = "iris"
test_fraction = 0.5
[network]
layers = [4, 8, 3]
nonlinearity = "diode_pair"
diode_bias_v = [0.4, -0.4]
[device]
g_min_s = 1e-7
g_max_s = 1e-4
[training]
epochs = 40
batch_size = 8
optimizer = "adam"
learning_rate = 0.02
lr_schedule = "cosine"
lr_final_fraction = 0.02
beta_s = 1e-4
estimator = "contrastive"
target_high_v = 0.1
target_low_v = -0.1
[engine]
backend = "ngspice"
workers = 2
[noise]
model = "gibbs"
t_eff_w = 1e-9
tau_s = 1e-9
dt_s = 1e-10
burn_in_s = 5e-9
run_s = 4.5e-8
samples = 20
"""


def test_the_old_iris_noise_file_is_todays_example(tmp_path):
    path = tmp_path / "iris_noise.toml"
    path.write_text(OLD_IRIS_NOISE)
    with pytest.warns(DeprecatedKey) as notes:
        old = load_config(path)
    assert {str(n.message).split(" ")[0] for n in notes} == {"noise.tau_s", "noise.dt_s", "noise.burn_in_s", "noise.run_s"}
    assert old == load_config(EXAMPLES / "iris_noise.toml")


def test_old_flat_pulsed_and_drift_keys_load_into_the_tagged_device():
    flat = {"model": "pulsed", "step": "soft_bounds", "dw_min_s": 1e-6, "drift_nu": 0.06, "drift_t0_s": 25.0,
            "seconds_per_batch": 3.0, "drift_eval_delay_s": 60.0}  # fmt: skip
    with pytest.warns(DeprecatedKey):
        config = parse_config(xor_raw(device=flat))
    d = config.device
    assert (d.model, d.step, d.dw_min_s) == ("pulsed", "soft_bounds", 1e-6)
    assert (d.drift.nu_mean, d.drift.nu_std, d.drift.t0_sec) == (0.06, 0.0, 25.0)
    assert (d.drift.batch_interval_sec, d.drift.eval_delay_sec) == (3.0, 60.0)


def test_pulsed_keys_next_to_an_ideal_device_are_dropped_with_a_note_after_the_old_checks():
    with pytest.warns(DeprecatedKey, match=r"^device\.c2c is ignored by device\.model = 'ideal'"):
        config = parse_config(xor_raw(device={"c2c": 0.1, "step": "soft_bounds"}))
    assert config == parse_config(xor_raw())
    # the old flat section checked them all the same, with the pulsed device's words
    with pytest.raises(ConfigError) as info:
        parse_config(xor_raw(device={"step": "softbounds"}))
    assert str(info.value) == "config: device.step: must be 'linear', 'soft_bounds' or 'exponential' (got 'softbounds')"


def test_keys_of_another_noise_model_are_dropped_with_a_note():
    with pytest.warns(DeprecatedKey, match=r"^noise\.temperature_k is ignored by noise\.model = 'gibbs'; remove it$"):
        config = parse_config(xor_raw(noise={**NOISE, "temperature_k": 77.0}))
    assert config == parse_config(xor_raw(noise=NOISE))
    with pytest.warns(DeprecatedKey, match=r"^noise\.t_eff_w is ignored by noise\.model = 'none'"):
        assert parse_config(xor_raw(noise={"model": "none", "t_eff_w": 1e-9})) == parse_config(xor_raw())
    with pytest.warns(DeprecatedKey, match=r"^noise\.dt_s is ignored by noise\.model = 'none'; remove it$"):
        parse_config(xor_raw(noise={"model": "none", "dt_s": 5e-10}))  # named as written


#: What an old run folder's config.toml holds for a noiseless run: every old key at its default.
OLD_RECORDED_NOISE = {
    "model": "none", "temperature_k": 300.0, "t_eff_w": 0.0, "capacitance_f": 1e-12, "dt_s": 1e-10, "run_s": 1e-8,
    "burn_in_s": 1e-9, "samples": 20, "native_sampler": "langevin", "burn_in_sweeps": 5, "sweeps_per_reading": 1,
    "quadrature_points": 3,
}  # fmt: skip
OLD_RECORDED_DEVICE = {
    "model": "ideal", "g_min_s": 1e-7, "g_max_s": 1e-4, "levels": 0, "dw_min_s": 1e-6, "step": "linear", "up_down": 0.0,
    "gamma": 3.0, "d2d_step": 0.0, "d2d_bounds": 0.0, "c2c": 0.0, "stuck_min": 0.0, "stuck_max": 0.0, "max_pulses": 100,
    "read_noise": 0.0, "c2c_additive": False,
}  # fmt: skip


def test_an_old_recorded_config_notes_only_the_keys_it_renames():
    with pytest.warns(DeprecatedKey) as notes:
        config = parse_config(xor_raw(noise=OLD_RECORDED_NOISE, device={**OLD_RECORDED_DEVICE, "drift_nu": 0.0}))
    assert [str(n.message) for n in notes] == ["device.drift_nu is deprecated; write device.drift.nu_mean (dimensionless)"]
    assert config.device.device() == parse_config(xor_raw()).device.device()
    assert config.noise == parse_config(xor_raw()).noise


def test_a_preset_still_fills_the_drift_table_under_explicit_keys():
    with pytest.warns(DeprecatedKey):
        config = parse_config(xor_raw(device={"preset": "pcm_gst", "drift_t0_s": 40.0}))
    drift = config.device.drift
    assert (drift.nu_mean, drift.nu_std, drift.t0_sec) == (0.06, 0.023, 40.0)  # explicit > preset
    new = parse_config(xor_raw(device={"preset": "pcm_gst", "drift": {"t0_sec": 40.0}}))
    assert new == config


def test_recorded_config_is_in_new_keys_and_an_old_key_config_resumes_it(tmp_path):
    old = tmp_path / "old.toml"
    old.write_text(
        XOR.read_text().replace("[engine]", "[engine]\ntimeout_s = 25.0")
        .replace("g_max_s = 1e-4", 'g_max_s = 1e-4\npreset = "pcm_gst"\ndrift_eval_delay_s = 100.0\nseconds_per_batch = 2.0')
    )  # fmt: skip
    run_dir = tmp_path / "run"
    cli = [sys.executable, "-m", "eqspice.learning.cli", "train", old, "--backend", "native", "--quiet"]
    first = subprocess.run([*cli, "--run-dir", run_dir, "--set", "training.epochs=1"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    notes = first.stderr.strip().splitlines()
    assert "eqspice: note: engine.timeout_s is deprecated; write engine.timeout_sec (seconds)" in notes
    assert all(line.startswith("eqspice: note: ") for line in notes), first.stderr
    recorded = (run_dir / "config.toml").read_text()
    for key in ("timeout_s ", "drift_eval_delay_s", "seconds_per_batch", "drift_nu"):
        assert key not in recorded
    assert "timeout_sec = 25.0" in recorded and "eval_delay_sec = 100.0" in recorded
    assert tomllib.loads(recorded)["device"]["drift"]["batch_interval_sec"] == 2.0
    resumed = subprocess.run([*cli, "--resume", run_dir, "--set", "training.epochs=2"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "metrics.csv").read_text().splitlines()[-1].startswith("2,")
    other = tmp_path / "other.toml"
    other.write_text(old.read_text().replace("drift_eval_delay_s = 100.0", "drift_eval_delay_s = 5.0"))
    changed = subprocess.run([*cli[:4], other, *cli[5:], "--resume", run_dir], capture_output=True, text=True)
    assert changed.returncode == 2 and "differs from the config recorded" in changed.stderr


def test_an_old_key_override_wins_over_the_new_key_of_the_file():
    with pytest.warns(DeprecatedKey, match=r"^noise\.dt_s is deprecated; write noise\.dt_sec \(seconds\)$"):
        config = load_config(EXAMPLES / "iris_noise.toml", {"noise.dt_s": 5e-11})
    assert config.noise.dt_sec == 5e-11


def test_an_override_wins_over_the_files_old_key_in_either_spelling(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text(XOR.read_text().replace("g_max_s = 1e-4", "g_max_s = 1e-4\ndrift_nu = 0.1\nseconds_per_batch = 2.0"))
    for key in ("device.drift.batch_interval_sec", "device.seconds_per_batch"):
        with pytest.warns(DeprecatedKey):
            config = load_config(path, {key: 3.0})
        assert (config.device.drift.batch_interval_sec, config.device.drift.nu_mean) == (3.0, 0.1)


def test_dumped_config_reads_back_without_notes():
    with pytest.warns(DeprecatedKey):
        config = load_config(XOR, {"device.preset": "pcm_gst", "device.seconds_per_batch": 5.0, "engine.timeout_s": 9.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecatedKey)
        assert parse_config(tomllib.loads(dump_config(config))) == config


def test_an_old_checkpoint_resumes_with_todays_names(tmp_path):
    rng = np.random.default_rng(0)
    state = RunState(g_s=np.ones(3), rng=rng, running={"loss": 1.0, "correct": 1, "seen": 2, "seconds": 0.5, "pulses": 0})
    state.metrics = [{"epoch": 1, "seconds": 1.5, "samples_per_s": 4.0}]
    state.device = {"programmed_at_s": np.array([0.0, 5.0, 9.0]), "drift_nu": np.full(3, 0.1)}
    state.save(tmp_path)
    loaded = RunState.load(tmp_path)
    assert loaded.running["train_sec"] == 0.5 and "seconds" not in loaded.running
    assert loaded.metrics == [{"epoch": 1, "train_sec": 1.5, "samples_per_sec": 4.0}]
    from eqspice.learning.devices.drift import RetentionDrift

    g = RetentionDrift(0.1, 0.0, 20.0).conductances(np.ones(3), loaded.device, 9.0)
    np.testing.assert_allclose(g, [(29 / 20) ** -0.1, (24 / 20) ** -0.1, 1.0])
    assert "programmed_at_s" not in loaded.device and "programmed_at_sec" in loaded.device


#: The config.toml an old run folder holds: ``eqspice train examples/xor.toml --backend native`` before the rename.
OLD_RUN_CONFIG = """
seed = 0

[data]
name = "xor"
test_fraction = 0.2

[network]
layers = [
    2,
    8,
    2,
]
differential_inputs = true
differential_outputs = false
input_scale_v = 1.0
bias_v = 1.0
nonlinearity = "diode_pair"
diode_bias_v = [
    0.4,
    -0.4,
]
diode_is_a = 1e-14
diode_n = 1.0
output_load_s = 0.0

[device]
model = "ideal"
g_min_s = 1e-07
g_max_s = 0.0001
levels = 0
dw_min_s = 1e-06
step = "linear"
up_down = 0.0
gamma = 3.0
d2d_step = 0.0
d2d_bounds = 0.0
c2c = 0.0
stuck_min = 0.0
stuck_max = 0.0
max_pulses = 100
read_noise = 0.0
c2c_additive = false
drift_nu = 0.0
drift_nu_std = 0.0
drift_t0_s = 20.0
seconds_per_batch = 1.0
drift_eval_delay_s = 0.0

[training]
epochs = 300
batch_size = 4
optimizer = "adam"
learning_rate = 0.03
lr_schedule = "constant"
lr_final_fraction = 0.0
lr_step_epochs = []
lr_step_factor = 0.1
beta_s = 1e-05
estimator = "centred"
loss = "squared"
softmax_scale_v = 0.01
reduce = "mean"
readout_resolution_v = 0.0
target_high_v = 0.05
target_low_v = -0.05

[engine]
backend = "native"
timeout_s = 30.0
max_restarts = 3
workers = 1
blas_threads = 1
ngspice_mode = "sweep"

[mismatch]
diode_is = 0.0
bias_v = 0.0
input_gain = 0.0
nonreciprocal = 0.0

[noise]
model = "none"
temperature_k = 300.0
t_eff_w = 0.0
capacitance_f = 1e-12
dt_s = 1e-10
run_s = 1e-08
burn_in_s = 1e-09
samples = 20
native_sampler = "langevin"
burn_in_sweeps = 5
sweeps_per_reading = 1
quadrature_points = 3
"""


def test_an_old_run_folder_config_equals_the_config_it_was_trained_from(tmp_path):
    """``--resume`` compares the two: every old key at its default must mean what leaving it out means."""
    path = tmp_path / "config.toml"
    path.write_text(OLD_RUN_CONFIG)
    with pytest.warns(DeprecatedKey) as notes:
        recorded = load_config(path)
    assert recorded == load_config(XOR, {"engine.backend": "native"})
    assert recorded.device.drift is None
    assert len(notes) == 8  # diode_is_a, diode_n, five drift keys, timeout_s: the noise keys are all defaults


def test_the_old_robustness_sweep_builds_the_cells_of_todays_example(tmp_path):
    from eqspice.learning.run.sweep import load_sweep

    text = (EXAMPLES / "robustness_circuit.toml").read_text()
    old = (
        text.replace('base = "digits.toml"', f'base = "{EXAMPLES / "digits.toml"}"')
        .replace('"device.drift.eval_delay_sec"', '"device.drift_eval_delay_s"')
        .replace('"device.drift.batch_interval_sec"', '"device.seconds_per_batch"')
    )
    assert old != text
    (tmp_path / "old.toml").write_text(old)
    with pytest.warns(DeprecatedKey):
        old_cells = load_sweep(tmp_path / "old.toml", tmp_path / "out").cells()
    new_cells = load_sweep(EXAMPLES / "robustness_circuit.toml", tmp_path / "out").cells()
    assert len(old_cells) == len(new_cells) == 24
    assert [c.config for c in old_cells] == [c.config for c in new_cells]
    assert {c.config.device.drift.eval_delay_sec for c in new_cells} == {0.0, 1e6}
