"""What training costs on the chip: RC closed forms for the phases, pulses counted by hand, the run's columns."""

import csv
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from eqspice.circuits import CrossbarSpec, DiodeModel, circuit_from_graph, crossbar
from eqspice.circuits.schema import SpecError
from eqspice.learning.devices.models import DeviceSpecError, device_model
from eqspice.learning.devices.presets import PRESETS, preset_values
from eqspice.learning.devices.programming import programming_pulses, write_energy_j, write_time_sec
from eqspice.learning.run.config import ConfigError, load_config, parse_config
from eqspice.learning.run.energy import ENERGY_COLUMNS, inference_cost, phases_cost, sampled_batches
from eqspice.learning.run.loop import train
from eqspice.learning.run.report import METRIC_COLUMNS, metrics_table, plot_energy, read_metrics
from eqspice.simulator.engine import FREE, Nudge
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.settling import settling_time

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.toml"


def eqspice(*args):
    return subprocess.run(
        [sys.executable, "-m", "eqspice.learning.cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )


# --- bad input: one line, before anything runs -------------------------------------------------

BAD_KEYS = [
    ("network", "node_capacitance_f", "-1e-15", "greater than or equal to 0"),
    ("network", "node_capacitance_f", "inf", "finite"),
    ("network", "node_capacitance_f", "nan", "finite"),
    ("energy", "settling_tolerance", "0.0", "greater than 0"),
    ("energy", "settling_tolerance", "1.0", "less than 1"),
    ("energy", "settling_tolerance", "-0.5", "greater than 0"),
    ("energy", "settling_samples", "-1", "greater than or equal to 0"),
    ("energy", "write_scheme", '"diagonal"', "row_parallel"),
    ("device", "pulse_energy_j", "-1e-12", "greater than or equal to 0"),
    ("device", "pulse_energy_j", "inf", "finite"),
    ("device", "pulse_duration_sec", "-1e-9", "greater than or equal to 0"),
]


@pytest.mark.parametrize("section, key, value, words", BAD_KEYS)
def test_bad_energy_keys_are_refused_from_toml_with_one_line_and_no_run_folder(tmp_path, section, key, value, words):
    text = XOR.read_text().replace("epochs = 300", "epochs = 1")
    path = tmp_path / "bad.toml"
    if f"[{section}]" in text:
        text = text.replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n")
    else:
        text += f"\n[{section}]\n{key} = {value}\n"
    path.write_text(text)
    run_dir = tmp_path / "run"
    result = eqspice("train", path, "--run-dir", run_dir)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eqspice: error: "), result.stderr
    assert f"{section}.{key}" in lines[0] and words in lines[0]
    assert not run_dir.exists()


@pytest.mark.parametrize("section, key, value, words", BAD_KEYS)
def test_bad_energy_keys_are_refused_from_python(section, key, value, words):
    number = {"inf": float("inf"), "nan": float("nan")}.get(value)
    value = number if number is not None else (value.strip('"') if value.startswith('"') else float(value))
    raw = {"network": {"layers": [2, 3, 2]}}
    raw.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError, match=f"{section}.{key}") as info:
        parse_config(raw, "python")
    assert "\n" not in str(info.value) and words in str(info.value)
    # the domain objects refuse the same values themselves
    if section == "network":
        with pytest.raises(SpecError, match=key):
            CrossbarSpec(layers=(2, 3, 2), node_capacitance_f=value)
    if section == "device":
        for model in ("ideal", "pulsed"):
            with pytest.raises(DeviceSpecError, match=key):
                device_model(model, **{key: value})


def test_zero_capacitance_and_zero_pulse_costs_are_allowed():
    config = parse_config(
        {"network": {"layers": [2, 3, 2], "node_capacitance_f": 0.0}, "device": {"pulse_energy_j": 0.0, "pulse_duration_sec": 0.0}}
    )
    assert config.network.node_capacitance_f == 0.0 and config.device.pulse_energy_j == 0.0


def test_every_preset_states_its_pulse_figures_and_a_user_value_wins():
    for name, preset in PRESETS.items():
        assert preset.pulse_source.startswith("illustrative") or "doi" in preset.pulse_source.lower(), name
        values = preset_values(name, 1e-7, 1e-4)
        assert values["pulse_energy_j"] == preset.pulse_energy_j > 0
        assert values["pulse_duration_sec"] == preset.pulse_duration_sec > 0
    config = parse_config({"network": {"layers": [2, 3, 2]}, "device": {"preset": "reram_sb", "pulse_energy_j": 7e-15}})
    assert config.device.pulse_energy_j == 7e-15
    assert config.device.pulse_duration_sec == PRESETS["reram_sb"].pulse_duration_sec


# --- programming: pulses, energy, write time ----------------------------------------------------


def test_write_time_counts_row_slots_and_device_slots_by_hand():
    circuit = crossbar(CrossbarSpec(layers=(2, 2, 1), bias_v=0.0))  # L1: 4 x 2 rows x cols, L2: 2 x 1
    rng = np.random.default_rng(0)
    pulses = rng.integers(-5, 6, circuit.n_edges)
    tau = 2e-9
    l1, l2 = pulses[:8].reshape(4, 2), pulses[8:].reshape(2, 1)
    slots = 0
    for block in (l1, l2):
        for row in block:  # up pulses of the row together, then its down pulses
            slots += max(max(row), 0) + max(max(-row), 0)
    assert write_time_sec(circuit, pulses, tau, "row_parallel") == pytest.approx(slots * tau)
    assert write_time_sec(circuit, pulses, tau, "device_by_device") == pytest.approx(np.abs(pulses).sum() * tau)
    assert write_energy_j(pulses, 3e-12) == pytest.approx(3e-12 * np.abs(pulses).sum())
    with pytest.raises(ValueError, match="write scheme"):
        write_time_sec(circuit, pulses, tau, "diagonal")


def test_an_ideal_device_is_written_in_equivalent_pulses():
    before = np.array([1e-5, 2e-5, 3e-5, 4e-5])
    after = np.array([1e-5, 2.5e-5, 1e-5, 4e-5 + 1e-12])
    continuous = device_model("ideal", g_min_s=1e-6, g_max_s=1e-4)
    np.testing.assert_array_equal(programming_pulses(continuous, before, after, np.zeros(4, int)), [0, 1, -1, 1])
    levels = device_model("ideal", g_min_s=0.0 + 1e-6, g_max_s=1e-6 + 99e-6, levels=100)  # step 1 uS
    g0 = 1e-6 + np.array([3, 10, 50, 7]) * 1e-6
    g1 = 1e-6 + np.array([5, 10, 40, 6]) * 1e-6
    np.testing.assert_array_equal(programming_pulses(levels, g0, g1, np.zeros(4, int)), [2, 0, -10, -1])
    pulsed = device_model("pulsed")
    reported = np.array([3, 0, -2, 1])
    np.testing.assert_array_equal(programming_pulses(pulsed, before, after, reported), reported)


# --- a phase's cost against the closed form of one RC node --------------------------------------


def test_the_phases_of_an_rc_node_cost_what_the_closed_form_says():
    """in --G-- n, C at n: free phases from the previous sample, nudged ones from the free state."""
    g, c, tol, beta, y = 4e-5, 2e-14, 0.02, 1e-5, 0.3
    rc = circuit_from_graph(nx.Graph([("in", "n")]), inputs=["in"], outputs=["n"])
    v_in = np.array([0.5, -0.2, 0.8, 0.1])
    free = np.stack([v_in, v_in], axis=1)  # no current at DC: the node sits at its input
    plus_v = (g * v_in + beta * y) / (g + beta)
    minus_v = (g * v_in - beta * y) / (g - beta)
    targets = np.full((4, 1), y)
    nudges = (FREE, Nudge(targets_v=targets, beta_s=beta), Nudge(targets_v=targets, beta_s=-beta))
    states = (free, np.stack([v_in, plus_v], axis=1), np.stack([v_in, minus_v], axis=1))
    sums = phases_cost(rc, np.array([g]), states, nudges, c, tol, limit=10)
    k = np.arange(1, 4)  # sample 0 only starts sample 1's free phase
    log = np.log(1 / tol)
    assert sums["energy_samples"] == sums["minus_samples"] == 3
    assert sums["free_settling_sec"] == pytest.approx(3 * c / g * log, rel=1e-9)
    assert sums["plus_settling_sec"] == pytest.approx(3 * c / (g + beta) * log, rel=1e-9)
    assert sums["minus_settling_sec"] == pytest.approx(3 * c / (g - beta) * log, rel=1e-9)
    free_energy = (v_in[k] * c * (v_in[k] - v_in[k - 1])).sum()  # no static power at all
    assert sums["inference_energy_j"] == pytest.approx(free_energy, rel=1e-9)
    plus_static = g * (v_in - plus_v) ** 2 + beta * (plus_v - y) ** 2
    minus_static = g * (v_in - minus_v) ** 2  # what the resistor dissipates; the -beta VCCS delivers the rest
    plus_energy = plus_static * c / (g + beta) * log + plus_v * c * (plus_v - v_in)
    minus_energy = minus_static * c / (g - beta) * log + minus_v * c * (minus_v - v_in)
    expected = free_energy + plus_energy[k].sum() + minus_energy[k].sum()
    assert sums["settling_energy_j"] == pytest.approx(expected, rel=1e-9)
    energy, latency = inference_cost(rc, np.array([g]), free, c, tol)
    first = v_in[0] * c * v_in[0]  # the first inference starts from 0 V
    assert energy == pytest.approx((first + free_energy) / 4, rel=1e-9)
    assert latency == pytest.approx(c / g * log, rel=1e-9)


def test_the_accounting_grid_finds_the_reference_settling_times():
    circuit = crossbar(
        CrossbarSpec(layers=(3, 5, 2), diode_bias_v=(0.35, -0.35), input_scale_v=1.5, diode_model=DiodeModel(n=1.2))
    )
    rng = np.random.default_rng(4)
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    engine = NativeEngine()
    engine.load(circuit, g)
    free = engine.settle(rng.uniform(0, 1, (6, circuit.n_features)) @ circuit.input_gain.T)
    start = np.roll(free, 1, axis=0)
    fine = settling_time(circuit, g, start, free, 1e-14)
    coarse = settling_time(circuit, g, start, free, 1e-14, grid_points=512)
    np.testing.assert_allclose(coarse, fine, rtol=1e-6)


def test_sampled_batches_are_evenly_spaced_and_enough():
    np.testing.assert_array_equal(sampled_batches(100, 8, 16), [0, 50, 99])  # 7 samples each: 3 batches
    assert len(sampled_batches(100, 8, 14)) == 2 and len(sampled_batches(3, 8, 100)) == 3
    assert len(sampled_batches(10, 1, 100)) == 10
    assert len(sampled_batches(10, 4, 0)) == 0


# --- a run's metrics ----------------------------------------------------------------------------


def tiny_run(tmp_path, name, **overrides):
    config = load_config(XOR, {"training.epochs": 2, "engine.backend": "native", **overrides})
    return config, train(config, tmp_path / name, progress=False)


def test_a_run_reports_programming_from_its_own_pulse_count_and_settling_from_a_sample(tmp_path):
    config, state = tiny_run(
        tmp_path,
        "pulsed",
        **{
            "device.model": "pulsed",
            "device.dw_min_s": 2e-6,
            "device.pulse_energy_j": 3e-12,
            "device.pulse_duration_sec": 5e-9,
            "energy.write_scheme": "device_by_device",
            "energy.settling_samples": 5,
        },
    )
    rows = read_metrics(tmp_path / "pulsed")
    assert set(ENERGY_COLUMNS) <= set(rows[0]) and tuple(rows[0]) == METRIC_COLUMNS
    for row in rows:
        assert row["pulses"] > 0
        assert row["epoch_programming_energy_j"] == pytest.approx(3e-12 * row["pulses"], rel=1e-12)
        assert row["epoch_write_sec"] == pytest.approx(5e-9 * row["pulses"], rel=1e-12)
        assert row["sample_programming_energy_j"] == pytest.approx(row["epoch_programming_energy_j"] / 4)
        assert row["batch_programming_energy_j"] == pytest.approx(row["epoch_programming_energy_j"])  # one batch
        assert row["batch_write_sec"] == pytest.approx(row["epoch_write_sec"])
        assert row["energy_samples"] == 3  # XOR: 4 samples in one batch, the first only starts the second
        for column in ("sampled_free_settling_sec", "sampled_plus_settling_sec", "sampled_minus_settling_sec"):
            assert 0 < row[column] < 1e-6
        chip = 4 * (row["sampled_free_settling_sec"] + row["sampled_plus_settling_sec"] + row["sampled_minus_settling_sec"])
        assert row["sampled_epoch_chip_sec"] == pytest.approx(chip + row["epoch_write_sec"], rel=1e-9)
        assert row["sampled_epoch_settling_energy_j"] == pytest.approx(4 * row["sampled_sample_settling_energy_j"])
    assert (tmp_path / "pulsed" / "energy.png").is_file()
    text = metrics_table("pulsed", rows)
    assert "per inference" in text and "programming" in text


def test_zero_capacitance_leaves_the_settling_columns_empty(tmp_path):
    tiny_run(tmp_path, "nocap", **{"network.node_capacitance_f": 0.0})
    with open(tmp_path / "nocap" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["sampled_inference_energy_j"] == "" and rows[0]["energy_samples"] == "0"
    assert float(rows[0]["epoch_programming_energy_j"]) > 0  # ideal devices: one equivalent pulse per write


def test_an_old_metrics_file_without_the_energy_columns_still_loads_and_reports(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.csv").write_text(
        "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds,samples_per_s,engine_restarts,pulses\n"
        "1,0.01,0.5,0.02,0.4,1.5,10.0,0,0\n"
    )
    rows = read_metrics(old)
    assert rows[0]["train_sec"] == 1.5 and "sampled_inference_energy_j" not in rows[0]
    assert "best test accuracy" in metrics_table("old", rows)
    assert plot_energy(tmp_path / "energy.png", {"old": rows}) is None
    result = eqspice("report", old, "--output", tmp_path / "cmp.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cmp.png").is_file() and not (tmp_path / "cmp_energy.png").exists()


def test_eval_prints_energy_and_latency_per_inference(tmp_path):
    tiny_run(tmp_path, "run")
    result = eqspice("eval", tmp_path / "run", "--backend", "native")
    assert result.returncode == 0, result.stderr
    line = [s for s in result.stdout.splitlines() if s.startswith("per inference")]
    assert len(line) == 1 and " J, latency " in line[0] and " s " in line[0]


def test_the_cheap_static_power_is_what_the_sources_deliver():
    """static_power_w sums the dissipation; phase_power's delivered side sums the sources' own currents."""
    import importlib

    from eqspice.simulator.power import phase_power, static_power_w

    power_tests = importlib.import_module("test_power")
    for circuit, g, inputs, targets, rng in (power_tests.diode_crossbar(7, sigma=0.2), power_tests.graph_network(8)):
        engine = NativeEngine()
        engine.load(circuit, g)
        for nudge in power_tests.phases(circuit, targets, rng).values():
            v = engine.settle(inputs, nudge)
            np.testing.assert_allclose(
                static_power_w(circuit, g, v, nudge), phase_power(circuit, g, v, nudge).delivered_w, rtol=1e-9
            )


def test_scaling_every_conductance_of_a_linear_circuit_keeps_the_energy_and_stretches_the_time():
    """G -> k G, beta -> k beta, load -> k load: same voltages, P_static x k, t_s / k, E_phase unchanged."""
    import dataclasses

    rng = np.random.default_rng(9)
    base = crossbar(CrossbarSpec(layers=(4, 6, 2), nonlinearity="none", output_load_s=3e-6))
    g = 10 ** rng.uniform(-6, -4, base.n_edges)
    inputs = rng.uniform(0, 1, (5, base.n_features)) @ base.input_gain.T
    targets = rng.uniform(-0.2, 0.2, (5, 2))
    costs = {}
    for k in (1.0, 0.1):
        circuit = dataclasses.replace(base, output_load_s=k * base.output_load_s)
        engine = NativeEngine()
        engine.load(circuit, k * g)
        nudge = Nudge(targets_v=targets, beta_s=k * 2e-5)
        free, plus = engine.settle(inputs), engine.settle(inputs, nudge)
        costs[k] = (free, phases_cost(circuit, k * g, (free, plus, None), (FREE, nudge, None), 1e-14, 0.01, limit=10))
    np.testing.assert_allclose(costs[0.1][0], costs[1.0][0], atol=1e-9)
    for key in ("free_settling_sec", "plus_settling_sec"):
        assert costs[0.1][1][key] == pytest.approx(10 * costs[1.0][1][key], rel=1e-6)
    assert costs[0.1][1]["settling_energy_j"] == pytest.approx(costs[1.0][1]["settling_energy_j"], rel=1e-6)
