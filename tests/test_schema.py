"""The domain objects are the schema: each refuses a bad value with the same one line from Python and from a config.

For every spec (CrossbarSpec, DiodeModel, JohnsonNoise, GibbsNoise, IdealDevice,
PulsedDevice, RetentionDrift) and every kind of bad value (a choice it does not
offer, a number out of range, inf or nan, a value of the wrong type, and the
rules that tie its fields together), the object built in Python and the same
values read from a TOML run config fail with one message: the config's is the
Python one prefixed by the file and the section.
"""

import math
import tomllib
from pathlib import Path

import pytest
import tomli_w

from eqspice.circuits.network import CrossbarSpec, DiodeModel, crossbar
from eqspice.circuits.noise import GibbsNoise, JohnsonNoise, NoiseSpec, NoiseSpecError, noise_spec
from eqspice.circuits.schema import SpecError
from eqspice.learning.devices.drift import RetentionDrift
from eqspice.learning.devices.models import DeviceSpecError, IdealDevice, PulsedDevice, device_model
from eqspice.learning.run.config import ConfigError, load_config

XOR = Path(__file__).resolve().parents[1] / "examples" / "xor.toml"
INF, NAN = math.inf, math.nan


def python_message(build, fields: dict) -> str:
    with pytest.raises(SpecError) as info:
        build(**fields)
    return str(info.value)


def config_message(tmp_path, section: str, fields: dict) -> str:
    """The error of xor.toml with ``fields`` written into ``section`` (dotted for a nested table)."""
    raw = tomllib.loads(XOR.read_text())
    target = raw
    for name in section.split("."):
        target = target.setdefault(name, {})
    target.update(fields)
    path = tmp_path / "run.toml"
    path.write_text(tomli_w.dumps(raw))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value), f"{path}: {section}."


LAYERS = {"layers": [2, 8, 2]}
GIBBS = {"model": "gibbs", "t_eff_w": 1e-9}
JOHNSON = {"model": "johnson"}
PULSED = {"model": "pulsed"}
DRIFT = {"nu_mean": 0.05}

# (what, Python constructor, section, fields, words the message must hold)
CASES = [
    # CrossbarSpec: [network]
    ("choice", CrossbarSpec, "network", {**LAYERS, "nonlinearity": "diodes"}, ["nonlinearity", "'diodes'", "'diode_pair'"]),
    ("range", CrossbarSpec, "network", {**LAYERS, "input_scale_v": 0.0}, ["input_scale_v", "greater than 0"]),
    ("range", CrossbarSpec, "network", {"layers": [2, 0, 2]}, ["layers[1]: 0 hidden nodes; need at least 1"]),
    ("range", CrossbarSpec, "network", {"layers": [2]}, ["layers", "[n_features, n_classes]"]),
    ("non-finite", CrossbarSpec, "network", {**LAYERS, "bias_v": INF}, ["bias_v", "finite", "inf"]),
    ("non-finite", CrossbarSpec, "network", {**LAYERS, "output_load_s": NAN}, ["output_load_s", "finite", "nan"]),
    ("type", CrossbarSpec, "network", {**LAYERS, "input_scale_v": "big"}, ["input_scale_v", "number", "'big'"]),
    ("type", CrossbarSpec, "network", {**LAYERS, "diode_bias_v": [0.4, -0.4, 0.1]}, ["diode_bias_v", "give two volts"]),
    ("fit", CrossbarSpec, "network", {"layers": [2, 8, 4, 2], "diode_bias_v": [[0.4, -0.4]] * 3},
     ["diode_bias_v", "3 pairs for 2 hidden layers", "one per hidden layer"]),  # fmt: skip
    ("non-finite", CrossbarSpec, "network", {"layers": [2, 8, 4, 2], "diode_bias_v": [[0.4, -0.4], [0.1, INF]]},
     ["diode_bias_v[1]", "inf", "not a finite number"]),  # fmt: skip
    ("type", CrossbarSpec, "network", {**LAYERS, "diode_model": "1n4148"}, ["diode_model", "table"]),
    ("unknown", CrossbarSpec, "network", {**LAYERS, "diode_is_ampere": 1e-14}, ["diode_is_ampere", "unknown key"]),
    # DiodeModel: [network.diode_model]
    ("choice", DiodeModel, "network.diode_model", {"name": "d hidden"}, ["name", "'d hidden'"]),
    ("range", DiodeModel, "network.diode_model", {"is_a": 0.0}, ["is_a", "greater than 0"]),
    ("range", DiodeModel, "network.diode_model", {"n": -1.0}, ["n:", "greater than 0"]),
    ("non-finite", DiodeModel, "network.diode_model", {"n": NAN}, ["n:", "finite"]),
    ("non-finite", DiodeModel, "network.diode_model", {"is_a": INF}, ["is_a", "finite"]),
    ("type", DiodeModel, "network.diode_model", {"is_a": "small"}, ["is_a", "number"]),
    # JohnsonNoise: [noise] model = "johnson"
    ("choice", noise_spec, "noise", {"model": "gaussian"}, ["model", "'gaussian'", "'johnson'", "'gibbs'"]),
    ("range", noise_spec, "noise", {**JOHNSON, "temperature_k": -3.0}, ["temperature_k", "greater than 0"]),
    ("range", noise_spec, "noise", {**JOHNSON, "samples": 0}, ["samples", "greater than or equal to 1"]),
    ("non-finite", noise_spec, "noise", {**JOHNSON, "temperature_k": INF}, ["temperature_k", "finite"]),
    ("type", noise_spec, "noise", {**JOHNSON, "samples": "many"}, ["samples", "integer"]),
    ("fit", noise_spec, "noise", {**JOHNSON, "dt_sec": 1e-7}, ["dt_sec", "longer than the run"]),
    ("other model", noise_spec, "noise", {**JOHNSON, "tau_sec": 1e-9}, ["tau_sec", "not a key of", "'gibbs'"]),
    # GibbsNoise: [noise] model = "gibbs"
    ("range", noise_spec, "noise", {**GIBBS, "t_eff_w": 0.0}, ["t_eff_w", "greater than 0"]),
    ("range", noise_spec, "noise", {**GIBBS, "tau_sec": -1e-9}, ["tau_sec", "greater than 0"]),
    ("non-finite", noise_spec, "noise", {**GIBBS, "tau_sec": NAN}, ["tau_sec", "finite"]),
    ("non-finite", noise_spec, "noise", {**GIBBS, "run_sec": INF}, ["run_sec", "finite"]),
    ("type", noise_spec, "noise", {**GIBBS, "burn_in_sec": "soon"}, ["burn_in_sec", "number"]),
    ("missing", noise_spec, "noise", {"model": "gibbs"}, ["t_eff_w", "missing"]),
    ("fit", noise_spec, "noise", {**GIBBS, "burn_in_sec": 1e-8}, ["burn_in_sec", "not shorter than the run"]),
    # IdealDevice: [device] model = "ideal"
    ("choice", device_model, "device", {"model": "memristor"}, ["model", "'memristor'", "'ideal'", "'pulsed'"]),
    ("range", IdealDevice, "device", {"read_noise": -0.1}, ["read_noise", "greater than or equal to 0"]),
    ("range", IdealDevice, "device", {"levels": 1}, ["levels", "no room to learn"]),
    ("non-finite", IdealDevice, "device", {"g_max_s": INF}, ["g_max_s", "finite"]),
    ("type", IdealDevice, "device", {"levels": "many"}, ["levels", "integer"]),
    ("fit", IdealDevice, "device", {"g_min_s": 2e-4}, ["g_min_s: must be below g_max_s", "0.0002 >= 0.0001 S"]),
    # PulsedDevice: [device] model = "pulsed"
    ("choice", PulsedDevice, "device", {**PULSED, "step": "softbounds"}, ["step", "'softbounds'", "'soft_bounds'"]),
    ("range", PulsedDevice, "device", {**PULSED, "up_down": 1.0}, ["up_down", "less than 1"]),
    ("range", PulsedDevice, "device", {**PULSED, "stuck_max": 1.5}, ["stuck_max", "less than or equal to 1"]),
    ("non-finite", PulsedDevice, "device", {**PULSED, "c2c": NAN}, ["c2c", "finite"]),
    ("type", PulsedDevice, "device", {**PULSED, "max_pulses": 2.5}, ["max_pulses", "integer", "2.5"]),
    ("type", PulsedDevice, "device", {**PULSED, "c2c_additive": "sometimes"}, ["c2c_additive", "boolean"]),
    ("fit", PulsedDevice, "device", {**PULSED, "stuck_min": 0.7, "stuck_max": 0.6}, ["stuck_min + stuck_max = 1.3"]),
    ("fit", PulsedDevice, "device", {**PULSED, "dw_min_s": 1e-3}, ["dw_min_s", "spans the whole range"]),
    # RetentionDrift: [device.drift]
    ("range", RetentionDrift, "device.drift", {**DRIFT, "nu_std": -0.01}, ["nu_std", "greater than or equal to 0"]),
    ("range", RetentionDrift, "device.drift", {**DRIFT, "t0_sec": 0.0}, ["t0_sec", "greater than 0"]),
    ("non-finite", RetentionDrift, "device.drift", {"nu_mean": INF}, ["nu_mean", "finite"]),
    ("non-finite", RetentionDrift, "device.drift", {**DRIFT, "t0_sec": NAN}, ["t0_sec", "finite"]),
    ("type", RetentionDrift, "device.drift", {**DRIFT, "t0_sec": "a minute"}, ["t0_sec", "number"]),
    ("unknown", RetentionDrift, "device.drift", {"nu": 0.05}, ["nu:", "unknown key"]),
]


@pytest.mark.parametrize(
    "what, build, section, fields, words",
    CASES,
    ids=[f"{build.__name__}-{what}-{'-'.join(map(str, fields))}" for what, build, section, fields, words in CASES],
)
def test_python_and_config_refuse_a_bad_value_with_the_same_line(tmp_path, what, build, section, fields, words):
    python = python_message(build, fields)
    config, prefix = config_message(tmp_path, section, fields)
    assert config == prefix + python
    assert "\n" not in python
    for word in words:
        assert word in python, python


def test_the_issues_examples_are_refused_in_python():
    with pytest.raises(SpecError, match=r"^nonlinearity: must be 'diode_pair', 'diode' or 'none' \(got 'diodes'\)$"):
        CrossbarSpec(layers=(2, 3, 1), nonlinearity="diodes")
    with pytest.raises(DeviceSpecError, match=r"^step: must be 'linear', 'soft_bounds' or 'exponential'"):
        PulsedDevice(step="softbounds")
    with pytest.raises(NoiseSpecError, match=r"^temperature_k: must be a finite number \(got inf\)$"):
        JohnsonNoise(temperature_k=math.inf)


def test_a_config_with_an_infinite_temperature_is_refused(tmp_path):
    message, prefix = config_message(tmp_path, "noise", {"model": "johnson", "temperature_k": INF})
    assert message == prefix + "temperature_k: must be a finite number (got inf)"


def test_replace_and_positional_construction_check_as_well():
    import dataclasses

    device = PulsedDevice(1e-6, 101e-6, 1e-6, "soft_bounds")
    assert (device.g_min_s, device.step, device.model) == (1e-6, "soft_bounds", "pulsed")
    with pytest.raises(DeviceSpecError, match=r"^up_down: must be less than 1 \(got 2.0\)$"):
        dataclasses.replace(device, up_down=2.0)
    with pytest.raises(SpecError, match=r"^layers\[0\]: 0 inputs; need at least 1$"):
        dataclasses.replace(CrossbarSpec(layers=(2, 2)), layers=(0, 2))


def test_nested_specs_name_the_whole_path():
    message = python_message(CrossbarSpec, {**LAYERS, "diode_model": {"is_a": -1.0}})
    assert message == "diode_model.is_a: must be greater than 0 (got -1.0)"


def test_the_shared_noise_part_alone_is_not_a_noise_model():
    with pytest.raises(NoiseSpecError, match="^model: missing; build JohnsonNoise or GibbsNoise"):
        NoiseSpec()
    assert isinstance(noise_spec("gibbs", t_eff_w=1e-9), GibbsNoise)


def test_several_problems_are_counted_on_the_one_line():
    message = python_message(PulsedDevice, {"c2c": -1.0, "gamma": -1.0})
    assert message.endswith("(and 1 more problem)") and message.startswith("gamma: ")


def test_valid_specs_keep_their_values_and_build_the_same_circuit():
    spec = CrossbarSpec(layers=[3, 4, 2], input_scale_v=2, diode_model=DiodeModel(is_a=1e-12, n=1.3))
    assert spec.layers == (3, 4, 2) and spec.input_scale_v == 2.0
    circuit = crossbar(spec)
    assert circuit.diode_model.card() == ".model dhidden D(IS=1e-12 N=1.3)"
    config = load_config(XOR)
    assert config.network == CrossbarSpec(layers=(2, 8, 2), diode_bias_v=(0.4, -0.4))
    assert config.device.device() == IdealDevice(1e-7, 1e-4)
