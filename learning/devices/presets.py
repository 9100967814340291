"""Named device presets: published devices expressed in the pulsed model's parameters.

A preset is the published fit of a device, kept in the units of the source
(IBM aihwkit's normalised weights), plus the rule that converts it into
:class:`eqspice.learning.devices.models.PulsedDevice` parameters for any conductance window.
``device.preset = "reram_sb"`` in a run config fills every pulsed-model key the
preset defines; a key written in the same ``[device]`` section wins over the
preset, and the preset wins over the built-in defaults::

    explicit key in [device]  >  preset value  >  the device model's default

The same holds key by key inside the ``[device.drift]`` table a preset may fill.

How a normalised weight maps to a conductance
---------------------------------------------
aihwkit describes a device by a weight ``w`` in ``[w_min, w_max]`` and steps in
units of ``w``.  We map that range linearly onto the device's window,

    G = g_min_s + (w - w_min) / (w_max - w_min) * (g_max_s - g_min_s),

so a weight change ``dw`` is a conductance change
``dw / (w_max - w_min) * (g_max_s - g_min_s)`` and the position
``x = (G - g_min_s) / (g_max_s - g_min_s)`` of our step formulas is
``(w - w_min) / (w_max - w_min)``.  Then, parameter by parameter:

* ``dw_min`` (aihwkit, weight units) -> ``dw_min_s`` (siemens): the step of
  one pulse at mid-range (x = 1/2) of the same step curve, times the window.
  For a constant step that is ``dw_min / (w_max - w_min)`` of the window.
  aihwkit's soft bounds step up ``dw_min (1 + u) (1 - w / w_max)`` and down
  ``dw_min (1 - u) (1 - w / w_min)``; written in x these are
  ``c_up 2 (1 - x)`` and ``c_down 2 x`` with
  ``c_up = dw_min (1 + u) (w_max - w_min) / (2 w_max)`` and
  ``c_down = dw_min (1 - u) (w_max - w_min) / (2 |w_min|)``, which is our
  soft-bounds step with ``dw = (c_up + c_down) / 2`` and
  ``up_down = (c_up - c_down) / (c_up + c_down)`` exactly.
* ``up_down`` -> ``up_down`` (same definition: up steps ``(1 + a)``, down ``(1 - a)``),
  except for soft bounds where the asymmetric range adds to it (above).
* ``dw_min_dtod`` -> ``d2d_step``: the same relative device-to-device spread of the step.
* ``w_max_dtod`` (relative to ``|w_max|``) -> ``d2d_bounds``: aihwkit's spread
  of the upper bound is ``w_max_dtod |w_max| / (w_max - w_min)`` of the window;
  ours is ``d2d_bounds g_max_s``, so ``d2d_bounds`` is that fraction times
  ``(g_max_s - g_min_s) / g_max_s``.  Our lower bound spreads relative to
  ``g_min_s`` (nearly nothing for a wide window) and both bounds stay inside
  the nominal window: aihwkit's ``w_min_dtod`` is not reproduced.
* ``dw_min_std`` -> ``c2c``: the same relative cycle-to-cycle spread of one
  pulse.  With ``mult_noise = False`` aihwkit adds the noise independently of
  the state (``c2c_additive = true`` here), and it is relative to ``dw_min``,
  so ``c2c = dw_min_std dw_min / dw`` with ``dw`` the mid-range step above.

Programming pulses: every preset also sets ``pulse_energy_j`` and
``pulse_duration_sec``.  None of the three has a figure checked against its
source paper here, so each is marked illustrative in ``Preset.pulse_source``,
with the amplitude, current and width it assumes; set your own in ``[device]``.

Not mapped (say so when comparing with aihwkit): ``up_down_dtod``,
``write_noise_std``, ``reset*``, ``dw_min_std_add``/``dw_min_std_slope``,
aihwkit's reference-device subtraction, and the one-sided (pair with refresh)
use of PCM: our devices are bidirectional.

References
----------
M. J. Rasch et al., "A flexible and fast PyTorch toolkit for simulating
training and inference on analog crossbar arrays", AICAS 2021 (IBM aihwkit;
presets in ``aihwkit.simulator.presets.devices``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Preset:
    """A published device fit, in aihwkit's normalised units, and where it comes from.

    Parameters
    ----------
    name : the key users write in ``device.preset``.
    imitates : the device and the paper its values come from.
    source : the aihwkit class whose numbers these are.
    step : our step shape (``linear``, ``soft_bounds``, ``exponential``).
    dw_min, up_down, w_min, w_max, dw_min_dtod, w_max_dtod, dw_min_std,
    mult_noise : aihwkit's parameters of the same names (weight units).
    gamma : our exponential step's state dependence (fitted, see ``notes``).
    mid_step : the aihwkit step at mid-range in units of ``dw_min`` for shapes
        other than linear and soft bounds (fitted, see ``notes``).
    extra : our own keys set directly (e.g. the ``drift`` table), in our units.
    notes : how values that are not a one-to-one mapping were obtained.
    pulse_energy_j, pulse_duration_sec : energy (joules) and duration (seconds) of
        one programming pulse, written into ``device.pulse_energy_j`` and
        ``device.pulse_duration_sec``.
    pulse_source : where those two come from: a publication, or ``"illustrative: ..."``
        with the arithmetic when no checked figure exists.
    """

    name: str
    imitates: str
    source: str
    step: str
    dw_min: float
    up_down: float
    w_min: float
    w_max: float
    dw_min_dtod: float
    w_max_dtod: float
    dw_min_std: float
    mult_noise: bool
    gamma: float = 0.0
    mid_step: float = 1.0
    extra: dict = field(default_factory=dict)
    notes: str = ""
    pulse_energy_j: float = 1e-12
    pulse_duration_sec: float = 1e-8
    pulse_source: str = "illustrative"

    def step_fraction_and_asymmetry(self) -> tuple[float, float]:
        """Mid-range step as a fraction of the window, and our ``up_down``."""
        span = self.w_max - self.w_min
        if self.step == "soft_bounds":
            c_up = self.dw_min * (1 + self.up_down) * span / (2 * self.w_max)
            c_down = self.dw_min * (1 - self.up_down) * span / (2 * abs(self.w_min))
            return (c_up + c_down) / 2 / span, (c_up - c_down) / (c_up + c_down)
        return self.dw_min * self.mid_step / span, self.up_down

    def values(self, g_min_s: float, g_max_s: float) -> dict:
        """The pulsed-model config keys of this preset for the window ``[g_min_s, g_max_s]`` (siemens)."""
        window = g_max_s - g_min_s
        span = self.w_max - self.w_min
        fraction, asymmetry = self.step_fraction_and_asymmetry()
        c2c = self.dw_min_std * (1.0 if self.mult_noise else self.dw_min / (fraction * span))
        out = {
            "model": "pulsed",
            "step": self.step,
            "dw_min_s": fraction * window,
            "up_down": asymmetry,
            "d2d_step": self.dw_min_dtod,
            "d2d_bounds": self.w_max_dtod * abs(self.w_max) / span * window / g_max_s,
            "c2c": c2c,
            "c2c_additive": not self.mult_noise,
            "pulse_energy_j": self.pulse_energy_j,
            "pulse_duration_sec": self.pulse_duration_sec,
        }
        if self.step == "exponential":
            out["gamma"] = self.gamma
        return {**out, **self.extra}


def _pcm_mid_step_and_gamma() -> tuple[float, float]:
    """Least-squares fit of ``log(step)`` by a line in x to aihwkit's PCM up-step curve.

    aihwkit's ExpStep step is ``dw_min max(1 - A exp(gamma_es z), 0)`` with
    ``z = 2 a w / (w_max - w_min) + b``; for PCMPresetDevice (a = -1, b = 0,
    gamma_up = 2.5, A_up = -27.235, w in [0, 2]) that is
    ``1 + 27.235 exp(-5 x)`` in units of ``dw_min``.  Our exponential step is
    ``dw exp(-gamma (x - 1/2))``: the fitted line gives ``gamma`` (slope) and
    the step at x = 1/2.
    """
    x = np.linspace(0.0, 1.0, 201)
    slope, intercept = np.polyfit(x, np.log(1 + 27.235 * np.exp(-5 * x)), 1)
    return float(np.exp(intercept + slope / 2)), float(-slope)


_PCM_MID, _PCM_GAMMA = _pcm_mid_step_and_gamma()

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="idealized",
            imitates="symmetric device of Gokmen & Vlasov, Front. Neurosci. 10:333 (2016), "
            "10000 states (Rasch, Gokmen & Haensch, IEEE Design & Test 2019)",
            source="aihwkit IdealizedPresetDevice (ConstantStepDevice)",
            step="linear",
            dw_min=0.0002,
            up_down=0.0,
            w_min=-1.0,
            w_max=1.0,
            dw_min_dtod=0.3,
            w_max_dtod=0.3,
            dw_min_std=0.3,
            mult_noise=True,  # constant step: additive and multiplicative noise coincide
            pulse_energy_j=1e-13,
            pulse_duration_sec=1e-9,
            pulse_source="illustrative: a 1 ns pulse of 1 V at 100 uA (0.1 pJ); no checked figure",
        ),
        Preset(
            name="reram_sb",
            imitates="ReRAM of Gong et al., Nat. Commun. 9:2102 (2018), loose soft-bounds fit",
            source="aihwkit ReRamSBPresetDevice (SoftBoundsDevice)",
            step="soft_bounds",
            dw_min=0.002,
            up_down=0.0,
            w_min=-0.75,
            w_max=1.25,
            dw_min_dtod=0.3,
            w_max_dtod=0.3 / 1.25,
            dw_min_std=3.75,
            mult_noise=False,
            pulse_energy_j=5e-12,
            pulse_duration_sec=5e-8,
            pulse_source="illustrative: a 50 ns pulse of 1 V at 100 uA (5 pJ); no checked figure",
        ),
        Preset(
            name="pcm_gst",
            imitates="doped Ge2Sb2Te5 PCM of Nandakumar et al., Front. Neurosci. 14:406 (2020); "
            "drift of Nandakumar et al., ICECS 2019",
            source="aihwkit PCMPresetDevice (ExpStepDevice) and PCMLikeNoiseModel (drift)",
            step="exponential",
            dw_min=0.01,
            up_down=0.0,
            w_min=0.0,
            w_max=2.0,
            dw_min_dtod=0.2,
            w_max_dtod=0.1,
            dw_min_std=0.6,
            mult_noise=True,
            gamma=_PCM_GAMMA,
            mid_step=_PCM_MID,
            extra={"drift": {"nu_mean": 0.06, "nu_std": 0.023, "t0_sec": 20.0}},
            notes="step shape: our exponential fitted to aihwkit's up curve (gamma 3.26, mid-range "
            "step 3.98 dw_min); down pulses mirror it (aihwkit's PCM is one-sided); drift: "
            "aihwkit's PCMLikeNoiseModel gives nu ~ N(0.060, 0.023) at G = 0.1 g_max, t0 = 20 s",
            pulse_energy_j=2e-11,
            pulse_duration_sec=1e-7,
            pulse_source="illustrative: a 100 ns SET pulse of 1 V at 200 uA (20 pJ); no checked figure",
        ),
    )
}


class UnknownPreset(ValueError):
    pass


def preset_values(name: str, g_min_s: float, g_max_s: float) -> dict:
    """Config keys of preset ``name`` for the window ``[g_min_s, g_max_s]``; a one-line error if unknown."""
    if name not in PRESETS:
        raise UnknownPreset(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].values(g_min_s, g_max_s)
