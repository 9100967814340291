"""Device models against hand calculations."""

import numpy as np
import pytest
from runs import whole_and_resumed

from eqspice.learning.devices.models import PulsedDevice
from eqspice.learning.run.config import load_config
from eqspice.learning.run.loop import train

G_MIN, G_MAX, DW = 1e-6, 101e-6, 1e-6  # a 100 uS window, 1 uS per pulse at mid-range


def fresh(device, n, rng):
    return device.init_state(n, rng)


def test_soft_bounds_step_at_three_quarters_of_the_range():
    rng = np.random.default_rng(0)
    device = PulsedDevice(G_MIN, G_MAX, DW, step="soft_bounds", up_down=0.2)
    state = fresh(device, 1, rng)
    g = np.array([G_MIN + 0.75 * 100e-6])
    # up: dw (1 + a) 2 (1 - x) = 1 uS * 1.2 * 0.5; down: dw (1 - a) 2 x = 1 uS * 0.8 * 1.5
    assert device.step_size(g, True, state)[0] == pytest.approx(0.6e-6)
    assert device.step_size(g, False, state)[0] == pytest.approx(1.2e-6)


def test_exponential_step_shrinks_towards_the_bound_it_moves_to():
    device = PulsedDevice(G_MIN, G_MAX, DW, step="exponential", gamma=2.0)
    state = fresh(device, 3, np.random.default_rng(0))
    g = G_MIN + np.array([0.0, 0.5, 1.0]) * 100e-6
    np.testing.assert_allclose(device.step_size(g, True, state), DW * np.exp(-2.0 * np.array([-0.5, 0, 0.5])))
    np.testing.assert_allclose(device.step_size(g, False, state), DW * np.exp(-2.0 * np.array([0.5, 0, -0.5])))


def test_linear_pulses_are_counted_and_applied_with_asymmetry():
    rng = np.random.default_rng(0)
    device = PulsedDevice(G_MIN, G_MAX, DW, step="linear", up_down=0.5)
    state = fresh(device, 2, rng)
    g0 = np.array([50e-6, 50e-6])
    # 4.5 uS up = 3 pulses of 1.5 uS; 2.5 uS down = 5 pulses of 0.5 uS: exact, no rounding
    g, pulses = device.update(g0, np.array([4.5e-6, -2.5e-6]), state, rng)
    np.testing.assert_array_equal(pulses, [3, -5])
    np.testing.assert_allclose(g, [54.5e-6, 47.5e-6])


def test_soft_bounds_pulses_follow_the_geometric_approach_to_the_bound():
    rng = np.random.default_rng(0)
    device = PulsedDevice(G_MIN, G_MAX, DW, step="soft_bounds")
    state = fresh(device, 1, rng)
    g0 = np.array([G_MIN + 0.5 * 100e-6])
    # requested 3 steps at the present state (1 uS each): each pulse moves 2 dw (1 - x)
    g, pulses = device.update(g0, np.array([3e-6]), state, rng)
    assert pulses[0] == 3
    x = 0.5
    for _ in range(3):
        x += 2 * DW * (1 - x) / 100e-6
    assert g[0] == pytest.approx(G_MIN + x * 100e-6, rel=1e-12)


def test_fraction_of_stuck_devices_and_their_values():
    rng = np.random.default_rng(1)
    device = PulsedDevice(G_MIN, G_MAX, DW, stuck_min=0.1, stuck_max=0.05)
    n = 20000
    state = fresh(device, n, rng)
    g = device.init(n, rng, G_MIN, G_MAX, state)
    low, high = state["stuck"] < 0, state["stuck"] > 0
    assert low.mean() == pytest.approx(0.1, abs=0.01)
    assert high.mean() == pytest.approx(0.05, abs=0.01)
    g2, pulses = device.update(g, np.full(n, 5e-6), state, rng)
    assert np.all(g2[low] == G_MIN) and np.all(g2[high] == G_MAX)
    assert np.all(pulses[low | high] == 0)
    assert np.all(pulses[~(low | high)] == 5)


def test_device_to_device_spread_of_the_step_has_the_requested_width():
    device = PulsedDevice(G_MIN, G_MAX, DW, d2d_step=0.2)
    state = fresh(device, 50000, np.random.default_rng(2))
    assert np.std(state["step_scale"]) == pytest.approx(0.2, rel=0.05)
    assert np.mean(state["step_scale"]) == pytest.approx(1.0, abs=0.01)


def test_stochastic_pulse_rounding_keeps_the_request_in_expectation():
    rng = np.random.default_rng(3)
    device = PulsedDevice(G_MIN, G_MAX, DW)
    n = 40000
    state = fresh(device, n, rng)
    g, pulses = device.update(np.full(n, 50e-6), np.full(n, 0.3e-6), state, rng)
    assert set(np.unique(pulses)) == {0, 1}
    assert pulses.mean() == pytest.approx(0.3, abs=0.01)


def test_pulsed_run_records_pulses_and_resumes_exactly(tmp_path):
    overrides = {
        "engine.backend": "native",
        "training.epochs": 4,
        "device.model": "pulsed",
        "device.dw_min_s": 1e-6,
        "device.step": "soft_bounds",
        "device.d2d_step": 0.1,
        "device.c2c": 0.1,
        "device.stuck_min": 0.05,
    }
    config = load_config("examples/xor.toml", overrides)
    whole, resumed = whole_and_resumed(config, tmp_path)
    assert all(m["pulses"] > 0 for m in whole.metrics)
    np.testing.assert_array_equal(resumed.g_s, whole.g_s)
    np.testing.assert_array_equal(resumed.device["stuck"], whole.device["stuck"])
    assert [m["pulses"] for m in resumed.metrics] == [m["pulses"] for m in whole.metrics]


def test_read_noise_has_the_requested_spread_and_leaves_the_programmed_value_alone():
    from eqspice.learning.devices.models import read_conductances

    rng = np.random.default_rng(4)
    g = np.full(50000, 40e-6)
    seen = read_conductances(g, 0.05, rng)
    assert np.std(seen / g - 1) == pytest.approx(0.05, rel=0.03)
    assert np.all(g == 40e-6)
    assert read_conductances(g, 0.0, rng) is g


def test_training_under_read_noise_uses_noisy_phases_but_keeps_programmed_values(tmp_path):
    overrides = {"engine.backend": "native", "training.epochs": 3}
    clean = train(load_config("examples/xor.toml", overrides), tmp_path / "clean", progress=False)
    noisy = train(load_config("examples/xor.toml", {**overrides, "device.read_noise": 0.05}), tmp_path / "noisy", progress=False)
    assert not np.array_equal(clean.g_s, noisy.g_s)  # the noise reached the updates
    assert np.all((noisy.g_s >= 1e-7) & (noisy.g_s <= 1e-4))


@pytest.mark.parametrize(
    "fields",
    [
        {"step": "linear"},
        {"step": "soft_bounds", "up_down": 0.4},
        {"step": "linear", "c2c": 0.5},
        {"step": "soft_bounds", "c2c": 0.3, "c2c_additive": True, "levels": 16},
        {"step": "linear", "levels": 5, "stuck_max": 0.1},
        {"step": "exponential", "c2c": 0.2, "levels": 8},
        {"step": "exponential"},
    ],
    ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()),
)
def test_the_compiled_pulse_loop_is_the_whole_array_loop(fields):
    """Same draws in the same order, same arithmetic: the same conductances and pulse counts (exp to its last bits)."""
    device = PulsedDevice(d2d_step=0.3, d2d_bounds=0.2, stuck_min=0.05, **fields)
    rng = np.random.default_rng(3)
    state = device.init_state(20_000, rng)
    g = device.init(20_000, rng, 1e-7, 5e-5, state)
    dg = rng.normal(0, 4e-6, 20_000)  # up to ~15 pulses, some devices driven into their bounds
    after, pulses = device.update(g, dg, state, np.random.default_rng(9))
    reference, reference_pulses = device.update_reference(g, dg, state, np.random.default_rng(9))
    assert np.abs(pulses).max() >= 10
    if fields["step"] == "exponential" and "levels" not in fields:  # the compiled exp may differ in the last bit
        np.testing.assert_allclose(after, reference, rtol=1e-13, atol=0)
        assert np.mean(pulses == reference_pulses) > 0.999
    else:
        np.testing.assert_array_equal(after, reference)
        np.testing.assert_array_equal(pulses, reference_pulses)
