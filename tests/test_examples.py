"""The example configs load and mean what their comments say; the noisy beta sweep's SNR estimator."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from eqspice.learning.run.config import load_config
from eqspice.learning.run.legacy import DeprecatedKey
from eqspice.learning.run.sweep import load_sweep

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SWEEPS = {"robustness_circuit.toml", "robustness_digits.toml"}


def noise_beta_sweep():
    spec = importlib.util.spec_from_file_location("noise_beta_sweep", EXAMPLES / "noise_beta_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_every_example_config_is_valid(name, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecatedKey)  # the examples are written in today's keys
        if name in SWEEPS:
            assert len(load_sweep(EXAMPLES / name, tmp_path / "out").cells()) == 24
        else:
            assert load_config(EXAMPLES / name).training.epochs >= 1


@pytest.mark.parametrize("name, beta_paper", [("fashion_noise.toml", 1.0), ("fashion_noise_ce.toml", 2.0)])
def test_noisy_fashion_configs_nudge_as_their_comments_say(name, beta_paper):
    """beta_s = beta_paper g_ref (g_ref an output's conductance at initialisation), 0.9 mV rms of noise on an output."""
    config = load_config(EXAMPLES / name)
    lo, hi = config.device.init_range()
    g_ref = (config.network.layers[-2] + 2) * (lo + hi) / 2  # hidden rows + the two bias rows
    assert config.training.beta_s == pytest.approx(beta_paper * g_ref, rel=0.01)
    assert noise_beta_sweep().reference_conductance(config) == pytest.approx(g_ref, rel=1e-12)
    assert np.sqrt(config.noise.t_eff_w / g_ref) == pytest.approx(0.9e-3, rel=0.05)


def test_snr_of_a_known_signal_in_gaussian_noise():
    """SNR = |s| / (sigma sqrt(n)) for repeats s + N(0, sigma^2 I); about 0 for noise alone."""
    snr = noise_beta_sweep().snr
    rng = np.random.default_rng(7)
    n, repeats, sigma = 20000, 6, 1.0
    direction = rng.normal(size=n)
    signal = 3.0 * sigma * np.sqrt(n) * direction / np.linalg.norm(direction)
    assert snr(signal + sigma * rng.normal(size=(repeats, n))) == pytest.approx(3.0, rel=0.05)
    # noise alone: |mean|^2 minus its noise floor, relative spread ~ (2/n)^(1/4) / sqrt(repeats) ~ 0.04
    assert snr(sigma * rng.normal(size=(repeats, n))) < 0.12
