"""Run configuration: a TOML file, validated once, at the edge.

Every field has a unit in its name or description and a default; unknown keys
are refused.  :func:`load_config` turns the first problem into one line such as
``device.g_min_s: must be below device.g_max_s (got 1e-4 >= 1e-5)``.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eqspice.circuits.network import CrossbarSpec, DiodeModel
from eqspice.circuits.noise import NoiseSpec, NoiseSpecError
from eqspice.learning.devices.presets import PRESETS, UnknownPreset, preset_values


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line naming the field and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    name: Literal["xor", "iris", "digits", "fashion_mnist", "mnist"] = "digits"
    data_dir: str | None = Field(None, description="folder of IDX files (fashion_mnist, mnist)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share for iris and digits")
    limit_train: int | None = Field(None, ge=1, description="keep only the first N training samples")
    limit_test: int | None = Field(None, ge=1, description="keep only the first N test samples")


class NetworkConfig(_Section):
    layers: list[int] = Field(description="[n_features, hidden..., n_classes]")
    differential_inputs: bool = True
    differential_outputs: bool = False
    input_scale_v: float = Field(1.0, gt=0, description="volts per unit feature on an input line")
    bias_v: float = Field(1.0, ge=0, description="volts of the +/- bias lines; 0 for none")
    nonlinearity: Literal["diode_pair", "diode", "none"] = "diode_pair"
    diode_bias_v: tuple[float, float] = Field(
        (0.3, -0.3),
        description="volts of the source at the lower diode's anode and at the upper diode's cathode; "
        "the node is clipped to about [first - 0.5, second + 0.5] V at microampere currents",
    )
    diode_is_a: float = Field(1e-14, gt=0, description="diode saturation current IS, amperes")
    diode_n: float = Field(1.0, gt=0, description="diode emission coefficient N")
    output_load_s: float = Field(0.0, ge=0, description="load conductance from each output to ground, siemens")

    @field_validator("layers")
    @classmethod
    def _layers(cls, layers: list[int]) -> list[int]:
        if len(layers) < 2:
            raise ValueError(f"{layers}: need at least [n_features, n_classes]")
        for k, n in enumerate(layers):
            if n < 1:
                what = "inputs" if k == 0 else "outputs" if k == len(layers) - 1 else "hidden nodes"
                raise ValueError(f"layers[{k}]: {n} {what}; need at least 1")
        return layers

    def spec(self) -> CrossbarSpec:
        return CrossbarSpec(
            layers=tuple(self.layers),
            differential_inputs=self.differential_inputs,
            differential_outputs=self.differential_outputs,
            input_scale_v=self.input_scale_v,
            bias_v=self.bias_v,
            nonlinearity=self.nonlinearity,
            diode_bias_v=tuple(self.diode_bias_v),
            diode_model=DiodeModel(is_a=self.diode_is_a, n=self.diode_n),
            output_load_s=self.output_load_s,
        )


class DeviceConfig(_Section):
    """The memristor model (learning/devices.py).

    ``preset`` fills the pulsed-model keys from a published device
    (learning/presets.py).  Precedence: a key written in ``[device]`` (or a
    sweep override/axis) > the preset's value > the default below.
    Retention drift (``drift_*``) runs on a clock of ``seconds_per_batch`` per
    mini-batch; test accuracy is read ``drift_eval_delay_s`` after each epoch.
    """

    model: Literal["ideal", "pulsed"] = Field("ideal", description="ideal: takes any change; pulsed: see below")
    g_min_s: float = Field(1e-7, gt=0, description="lowest device conductance, siemens")
    g_max_s: float = Field(1e-4, gt=0, description="highest device conductance, siemens")
    g_init_min_s: float | None = Field(None, gt=0, description="initial conductances drawn uniformly from here...")
    g_init_max_s: float | None = Field(None, gt=0, description="...to here (default: the device bounds)")
    levels: int = Field(
        0, ge=0, description="number of evenly spaced programmable levels in [g_min_s, g_max_s]; 0 for continuous"
    )
    dw_min_s: float = Field(1e-6, gt=0, description="pulsed: change of one pulse at mid-range, siemens")
    step: Literal["linear", "soft_bounds", "exponential"] = Field("linear", description="pulsed: step shape")
    up_down: float = Field(0.0, gt=-1, lt=1, description="pulsed: up/down asymmetry of the step")
    gamma: float = Field(3.0, ge=0, description="pulsed, exponential: state dependence of the step")
    d2d_step: float = Field(0.0, ge=0, description="pulsed: device-to-device relative spread of the step")
    d2d_bounds: float = Field(0.0, ge=0, description="pulsed: device-to-device relative spread of the bounds")
    c2c: float = Field(0.0, ge=0, description="pulsed: cycle-to-cycle relative spread of each pulse")
    stuck_min: float = Field(0.0, ge=0, le=1, description="pulsed: fraction of devices stuck at g_min_s")
    stuck_max: float = Field(0.0, ge=0, le=1, description="pulsed: fraction of devices stuck at g_max_s")
    max_pulses: int = Field(100, ge=1, description="pulsed: most pulses per device and update")
    read_noise: float = Field(
        0.0, ge=0, description="relative spread of the conductance seen in each mini-batch's phases"
    )
    preset: str | None = Field(
        None,
        description="named published device (learning/presets.py) filling the pulsed keys; "
        "keys written in [device] win over the preset",
    )
    c2c_additive: bool = Field(
        False, description="pulsed: c2c noise added independently of the state (aihwkit mult_noise = false)"
    )
    drift_nu: float = Field(0.0, ge=0, description="retention drift exponent: G(t) = G_prog ((t + t0) / t0)^-nu")
    drift_nu_std: float = Field(0.0, ge=0, description="device-to-device standard deviation of the drift exponent")
    drift_t0_s: float = Field(20.0, gt=0, description="drift reference time t0 after programming, seconds")
    seconds_per_batch: float = Field(
        1.0, gt=0, description="run clock: seconds of device time per mini-batch (drift between updates)"
    )
    drift_eval_delay_s: float = Field(
        0.0, ge=0, description="test accuracy is measured this long after the epoch's last update, seconds"
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str | None) -> str | None:
        if name is not None and name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
        return name

    @model_validator(mode="before")
    @classmethod
    def _fill_preset(cls, raw):
        """Keys of ``preset`` that the section does not set itself (explicit keys win)."""
        if not isinstance(raw, dict) or raw.get("preset") not in PRESETS:
            return raw
        fields = cls.model_fields
        window = [raw.get(k, fields[k].default) for k in ("g_min_s", "g_max_s")]
        if not all(isinstance(g, (int, float)) and g > 0 for g in window) or window[0] >= window[1]:
            return raw  # the field validators report the bad window
        try:
            values = preset_values(raw["preset"], *window)
        except UnknownPreset:
            return raw
        return {**values, **raw}

    @model_validator(mode="after")
    def _bounds(self) -> "DeviceConfig":
        if self.g_min_s >= self.g_max_s:
            raise ValueError(
                f"g_min_s must be below g_max_s (got {self.g_min_s:g} >= {self.g_max_s:g} S)"
            )
        lo, hi = self.init_range()
        if not (self.g_min_s <= lo < hi <= self.g_max_s):
            raise ValueError(
                f"initial range [{lo:g}, {hi:g}] S must lie inside [g_min_s, g_max_s] = "
                f"[{self.g_min_s:g}, {self.g_max_s:g}] S with low < high"
            )
        if self.levels == 1:
            raise ValueError("levels = 1 leaves no room to learn; use 0 (continuous) or at least 2")
        if self.stuck_min + self.stuck_max > 1:
            raise ValueError(f"stuck_min + stuck_max = {self.stuck_min + self.stuck_max:g}; at most 1")
        if self.dw_min_s >= self.g_max_s - self.g_min_s:
            raise ValueError(f"dw_min_s = {self.dw_min_s:g} S spans the whole range; make it smaller")
        return self

    def init_range(self) -> tuple[float, float]:
        return (
            self.g_min_s if self.g_init_min_s is None else self.g_init_min_s,
            self.g_max_s if self.g_init_max_s is None else self.g_init_max_s,
        )


class TrainingConfig(_Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=1)
    optimizer: Literal["adam", "sgd"] = Field("adam", description="controller's per-device update rule")
    learning_rate: float = Field(
        0.01,
        gt=0,
        description="adam: typical step of w = G / g_max_s per update; sgd: step per unit dL/dw (1/V^2)",
    )
    lr_schedule: Literal["constant", "cosine", "step"] = Field(
        "constant",
        description="constant; cosine: from learning_rate down to lr_final_fraction of it over the run; "
        "step: multiplied by lr_step_factor after each epoch listed in lr_step_epochs",
    )
    lr_final_fraction: float = Field(0.0, ge=0, le=1, description="cosine: learning rate at the end, as a fraction")
    lr_step_epochs: list[int] = Field(default_factory=list, description="step: epochs after which the rate drops")
    lr_step_factor: float = Field(0.1, gt=0, le=1, description="step: factor applied at each of lr_step_epochs")
    beta_s: float = Field(1e-5, gt=0, description="nudge strength, siemens")
    estimator: Literal["centred", "one_sided", "corrected", "contrastive", "path_integral", "loss_covariance"] = Field(
        "centred",
        description="centred: +beta/-beta EP; one_sided: +beta EP (both from expectations with noise); "
        "corrected: asymmetric EP, the exact gradient of a non-reciprocal circuit (mismatch.nonreciprocal; "
        "equals centred when reciprocal); contrastive: E_beta[dE/dG] - E_0[dE/dG] (noise); "
        "path_integral: -(1/T) int_0^beta Cov_b(L, dE/dG) db (gibbs); "
        "loss_covariance: -(1/T) Cov_0(L, dE/dG), the gradient of E_0[L] (gibbs)",
    )
    loss: Literal["squared", "cross_entropy"] = Field(
        "squared",
        description="squared: L = |v_out - y|^2 / 2, nudged by resistors to the targets; cross_entropy: "
        "softmax cross-entropy of the class scores, nudged by currents the controller computes "
        "from the free state (centred; with noise, a nudge towards targets computed from the free "
        "phase's time average, contrastive estimators only; centred then also nudges, through the "
        "same +beta, towards the mirror image of those targets about the free mean)",
    )
    softmax_scale_v: float = Field(
        0.01, gt=0, description="cross_entropy: volts of class score per unit of logit (the softmax temperature)"
    )
    reduce: Literal["mean", "sum"] = Field("mean", description="how updates combine over a mini-batch")
    readout_resolution_v: float = Field(
        0.0, ge=0, description="step of the controller's voltage readout (ADC), volts; 0 reads exactly"
    )
    target_high_v: float = Field(0.1, description="target voltage of the correct class's output")
    target_low_v: float = Field(0.0, description="target voltage of the other outputs")

    @model_validator(mode="after")
    def _targets(self) -> "TrainingConfig":
        if self.target_high_v == self.target_low_v:
            raise ValueError("target_high_v equals target_low_v: the nudge would carry no label")
        return self

    @model_validator(mode="after")
    def _schedule(self) -> "TrainingConfig":
        if self.lr_schedule == "step" and not self.lr_step_epochs:
            raise ValueError("lr_schedule = \"step\" needs lr_step_epochs, e.g. [5, 8]")
        bad = [e for e in self.lr_step_epochs if not 1 <= e < self.epochs]
        if bad:
            raise ValueError(f"lr_step_epochs {bad}: each must lie in 1..epochs-1 ({self.epochs - 1})")
        return self

    def lr_scale(self, step: int, steps_per_epoch: int) -> float:
        """Factor on ``learning_rate`` for optimizer step ``step`` (0-based) of the run."""
        if self.lr_schedule == "cosine":
            progress = min(step / max(self.epochs * steps_per_epoch - 1, 1), 1.0)
            f = self.lr_final_fraction
            return f + (1 - f) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.lr_schedule == "step":
            epoch = step // steps_per_epoch
            return self.lr_step_factor ** sum(epoch >= e for e in self.lr_step_epochs)
        return 1.0


class MismatchConfig(_Section):
    """Fabrication mismatch of the circuit, drawn once from the run's seed and frozen for the run
    (couplings: :mod:`eqspice.circuits.network`; diodes, sources, drivers: :mod:`eqspice.learning.run.build`)."""

    diode_is: float = Field(
        0.0, ge=0, le=2, description="spread of each diode's IS: SPICE area exp(diode_is N(0,1)), dimensionless"
    )
    bias_v: float = Field(
        0.0, ge=0, le=0.5, description="volts of spread of every bias source; each hidden node gets its own diode bias"
    )
    input_gain: float = Field(
        0.0, ge=0, le=0.5, description="relative spread of each input line driver's gain: 1 + input_gain N(0,1)"
    )

    nonreciprocal: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="relative spread sigma of every coupling's non-reciprocal part: delta_e ~ N(0, sigma) "
        "drawn from the run's seed, K_pq = G_e (1 + delta_e), K_qp = G_e (1 - delta_e); 0 for reciprocal",
    )
    nonreciprocal_file: str | None = Field(
        None,
        description="file of delta_e per edge in edge order (.npy, text with one number per line, or a "
        "run's mismatch.json), instead of the draw",
    )

    @model_validator(mode="after")
    def _one_source(self) -> "MismatchConfig":
        if self.nonreciprocal > 0 and self.nonreciprocal_file is not None:
            raise ValueError("give nonreciprocal (a spread to draw from) or nonreciprocal_file, not both")
        return self


class EngineConfig(_Section):
    backend: Literal["ngspice", "native"] = "ngspice"
    timeout_s: float = Field(30.0, gt=0, description="seconds one ngspice operating point may take")
    max_restarts: int = Field(3, ge=0, description="fresh ngspice children per mini-batch before giving up")
    workers: int = Field(2, ge=1, description="ngspice children settling samples in parallel")
    blas_threads: int = Field(
        1,
        ge=1,
        description="threads of numpy's BLAS in the controller and the native engine; its products are "
        "small enough that one thread is fastest, and more spin idle on cores other work is using",
    )
    ngspice_mode: Literal["sweep", "op"] = Field(
        "sweep",
        description="sweep: a mini-batch's samples and phases as the points of one DC sweep; "
        "op: one operating point per sample and phase, inputs changed by alter",
    )


class NoiseConfig(_Section):
    """Injected thermal noise (circuits/noise.py); expectations are averages over the readings."""

    model: Literal["none", "johnson", "gibbs"] = Field(
        "none", description="johnson: 4kTG across every conductance; gibbs: p(v) ~ exp(-E/T_eff)"
    )
    temperature_k: float = Field(300.0, description="johnson: physical temperature, kelvin")
    t_eff_w: float = Field(0.0, description="gibbs: effective temperature, watts (V^2 S), like the co-content")
    capacitance_f: float = Field(1e-12, description="capacitance from each free node to ground, farads")
    tau_s: float | None = Field(
        None, description="gibbs: if set, each node's capacitance is tau_s times its total conductance (nudge included), seconds"
    )
    dt_s: float = Field(1e-10, description="noise time step (ngspice trnoise NT, native step), seconds")
    run_s: float = Field(1e-8, description="length of the noisy transient of each phase, seconds")
    burn_in_s: float = Field(1e-9, description="time discarded at the start of each run, seconds")
    samples: int = Field(20, description="voltage readings per phase, equally spaced after the burn-in")
    native_sampler: Literal["langevin", "exact_gaussian", "block_gibbs"] = Field(
        "langevin",
        description="native engine: Euler-Maruyama dynamics; exact Gaussian draws (no diodes); or block_gibbs, "
        "an exact Markov chain on the gibbs density of a layered circuit (ignores dt_s, run_s, burn_in_s, tau_s)",
    )
    burn_in_sweeps: int = Field(5, ge=0, description="block_gibbs: sweeps discarded after the noiseless operating point")
    sweeps_per_reading: int = Field(1, ge=1, description="block_gibbs: sweeps between two of the `samples` readings")
    quadrature_points: int = Field(3, ge=1, description="path_integral: Gauss-Legendre nudges in (0, beta)")

    @model_validator(mode="after")
    def _spec(self) -> "NoiseConfig":
        if self.model != "none":
            try:
                self.spec()
            except NoiseSpecError as exc:
                raise ValueError(str(exc).removeprefix("noise.")) from None
        return self

    def spec(self) -> NoiseSpec:
        return NoiseSpec(
            model=self.model, dt_s=self.dt_s, run_s=self.run_s, burn_in_s=self.burn_in_s, samples=self.samples,
            temperature_k=self.temperature_k, t_eff_w=self.t_eff_w, capacitance_f=self.capacitance_f, tau_s=self.tau_s,
        )  # fmt: skip


class RunConfig(_Section):
    seed: int = Field(0, ge=0, description="seed of every random draw in the run")
    data: DataConfig = DataConfig()
    network: NetworkConfig
    device: DeviceConfig = DeviceConfig()
    training: TrainingConfig = TrainingConfig()
    engine: EngineConfig = EngineConfig()
    mismatch: MismatchConfig = MismatchConfig()
    noise: NoiseConfig = NoiseConfig()

    @model_validator(mode="after")
    def _noise_fits(self) -> "RunConfig":
        model, estimator = self.noise.model, self.training.estimator
        if estimator in ("path_integral", "loss_covariance") and model != "gibbs":
            raise ValueError(f"training.estimator = {estimator!r} needs the Gibbs density: set noise.model = 'gibbs'")
        if estimator == "contrastive" and model == "none":
            raise ValueError("training.estimator = 'contrastive' averages over noise: set noise.model, or use one_sided")
        if model != "none" and self.training.readout_resolution_v:
            raise ValueError("training.readout_resolution_v with noise: the noisy rules read exactly; set it to 0")
        if model != "none" and self.noise.native_sampler == "exact_gaussian" and self.network.nonlinearity != "none":
            raise ValueError("noise.native_sampler = 'exact_gaussian' needs a linear network (nonlinearity = 'none')")
        if model == "johnson" and self.noise.native_sampler == "block_gibbs":
            raise ValueError(
                "noise.native_sampler = 'block_gibbs' needs the Gibbs density, which johnson noise lacks when "
                "conductances differ: set noise.model = 'gibbs' or native_sampler = 'langevin'"
            )
        if self.training.loss == "cross_entropy":
            allowed = ("centred",) if model == "none" else ("centred", "one_sided", "contrastive")
            if estimator not in allowed:
                raise ValueError(
                    f"training.loss = 'cross_entropy' with noise.model = {model!r} needs training.estimator in "
                    f"{list(allowed)}, not {estimator!r}; or set loss = 'squared'"
                )
        if model != "none" and estimator == "corrected":
            raise ValueError("training.estimator = 'corrected' is noiseless asymmetric EP: set noise.model = 'none'")
        m = self.mismatch
        if model != "none" and (m.nonreciprocal or m.nonreciprocal_file or m.diode_is):
            raise ValueError(
                "noise with mismatch.nonreciprocal or mismatch.diode_is is not modelled by the samplers; "
                "set those to 0 or noise.model = 'none'"
            )
        return self

    @model_validator(mode="after")
    def _finite(self) -> "RunConfig":
        for section in ("network", "device", "training", "engine"):
            for key, value in getattr(self, section).model_dump().items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError(f"{section}.{key} is {value}; give a finite number")
        return self


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    kind, message = first["type"], first["msg"]
    if kind == "extra_forbidden":
        message = "unknown key; check its spelling against the documented config (examples/*.toml)"
    elif kind == "missing":
        message = "missing; this key is required"
    message = message.removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {message}{suffix}" if where else f"{message}{suffix}"


def parse_config(raw: dict, source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_one_line(exc)}") from None


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read and validate a TOML run configuration."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give a .toml file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for dotted, value in (overrides or {}).items():
        *section, key = dotted.split(".")
        target = raw
        for name in section:
            target = target.setdefault(name, {})
        target[key] = value
    return parse_config(raw, str(path))


def dump_config(config: RunConfig) -> str:
    """The resolved configuration (defaults filled in) as TOML text."""
    return tomli_w.dumps(config.model_dump(mode="json", exclude_none=True))
