"""Run configuration: a TOML file, validated once, at the edge.

Every field has a unit in its name or description and a default; unknown keys
are refused.  :func:`load_config` turns the first problem into one line such as
``run.toml: device.g_min_s: must be below g_max_s (got 0.0001 >= 1e-05 S)``.

The sections that describe hardware are the domain objects' own schema, so a
value is refused with the same words from a config and from Python:

* ``[network]`` is a :class:`~eqspice.circuits.network.CrossbarSpec`, its
  ``[network.diode_model]`` a :class:`~eqspice.circuits.network.DiodeModel`;
* ``[device]`` is, by its ``model``, an
  :class:`~eqspice.learning.devices.models.IdealDevice` or a
  :class:`~eqspice.learning.devices.models.PulsedDevice` (each with only its
  own keys) plus the run's initial range and ``preset``; ``[device.drift]`` is
  a :class:`~eqspice.learning.devices.drift.RetentionDrift` plus the run's clock;
* ``[noise]`` is, by its ``model``, ``"none"``, a
  :class:`~eqspice.circuits.noise.JohnsonNoise` or a
  :class:`~eqspice.circuits.noise.GibbsNoise`, plus the sampler's settings.

Old keys (``noise.dt_s``, ``device.drift_nu``, ...) still load, with a
:class:`~eqspice.learning.run.legacy.DeprecatedKey` note each
(:mod:`eqspice.learning.run.legacy`).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Union

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from eqspice.circuits.network import CrossbarSpec
from eqspice.circuits.noise import NOISE_MODELS, GibbsNoise, JohnsonNoise, NoNoise
from eqspice.circuits.schema import (
    FieldError,
    domain_part,
    error_line,
    error_loc,
    one_line,
    spec,
    spec_defaults,
    spec_fields,
)
from eqspice.learning.devices.drift import RetentionDrift
from eqspice.learning.devices.models import DEVICE_MODELS, IdealDevice, PulsedDevice, Siemens
from eqspice.learning.devices.programming import Programming
from eqspice.learning.devices.presets import PRESETS, UnknownPreset, preset_values
from eqspice.learning.run.data import IMAGE_SIDES
from eqspice.learning.run.legacy import note, old_names, renamed, upgrade, upgrade_dotted


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line naming the field and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(_Section):
    name: Literal["xor", "iris", "digits", "fashion_mnist", "mnist"] = "digits"
    data_dir: str | None = Field(None, description="folder of IDX files (fashion_mnist, mnist)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share for iris and digits")
    limit_train: int | None = Field(None, ge=1, description="keep only the first N training samples")
    limit_test: int | None = Field(None, ge=1, description="keep only the first N test samples")
    augment_shift_px: int = Field(
        0, ge=0, le=4, description="move each training image by up to N pixels each way, drawn per image and epoch"
    )
    augment_flip: bool = Field(False, description="mirror half the training images left to right, drawn per image")

    @model_validator(mode="after")
    def _augment_needs_images(self) -> "DataConfig":
        if (self.augment_shift_px or self.augment_flip) and self.name not in IMAGE_SIDES:
            raise ValueError(
                f"augment_shift_px and augment_flip move image pixels, and {self.name} has no images; "
                f"drop them or use one of {', '.join(IMAGE_SIDES)}"
            )
        return self


@spec
class DriftConfig(RetentionDrift):
    """``[device.drift]``: the devices' retention drift, and the run clock it ages on.

    Parameters
    ----------
    batch_interval_sec : float
        Device time between two mini-batch updates, seconds; positive.
    eval_delay_sec : float
        Test accuracy is measured this long after the epoch's last update, seconds; zero or more.

    The drift itself is :class:`~eqspice.learning.devices.drift.RetentionDrift`'s
    ``nu_mean``, ``nu_std`` and ``t0_sec``; ``nu_mean = nu_std = 0`` drifts not at all.
    """

    batch_interval_sec: Annotated[float, Field(gt=0)] = 1.0
    eval_delay_sec: Annotated[float, Field(ge=0)] = 0.0

    def model(self) -> RetentionDrift | None:
        """The drift model, or None if every exponent is 0 (the run then draws no exponents)."""
        if self.nu_mean == 0 and self.nu_std == 0:
            return None
        return domain_part(self, RetentionDrift)


@spec
class _RunDevice:
    """What a run adds to a device model: the initial range, the preset it was filled from, the drift.

    Parameters
    ----------
    g_init_min_s, g_init_max_s : float or None
        Initial conductances are drawn uniformly from here to there, siemens
        (default: the device bounds); inside ``[g_min_s, g_max_s]``, low < high.
    preset : str or None
        Named published device (:mod:`eqspice.learning.devices.presets`) that
        filled the pulsed keys; keys written in ``[device]`` win over it.
    drift : DriftConfig or None
        Retention drift; None for none.
    """

    g_init_min_s: Siemens | None = None
    g_init_max_s: Siemens | None = None
    preset: str | None = None
    drift: DriftConfig | None = None

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str | None) -> str | None:
        if name is not None and name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
        return name

    @model_validator(mode="after")
    def _init_inside(self):
        lo, hi = self.init_range()
        if not self.g_min_s <= lo < self.g_max_s:
            raise FieldError(
                "g_init_min_s",
                f"must lie in [g_min_s, g_max_s) = [{self.g_min_s:g}, {self.g_max_s:g}) S (got {lo:g} S)",
            )
        if not lo < hi <= self.g_max_s:
            raise FieldError(
                "g_init_max_s", f"must lie in (g_init_min_s, g_max_s] = ({lo:g}, {self.g_max_s:g}] S (got {hi:g} S)"
            )
        return self

    def init_range(self) -> tuple[float, float]:
        """Low and high end of the initial conductances, siemens."""
        return (
            self.g_min_s if self.g_init_min_s is None else self.g_init_min_s,
            self.g_max_s if self.g_init_max_s is None else self.g_init_max_s,
        )


@spec
class IdealDeviceConfig(_RunDevice, IdealDevice):
    """``[device]`` with ``model = "ideal"``: an :class:`IdealDevice` and the run's additions."""

    def device(self) -> IdealDevice:
        return domain_part(self, IdealDevice)


@spec
class PulsedDeviceConfig(_RunDevice, PulsedDevice):
    """``[device]`` with ``model = "pulsed"``: a :class:`PulsedDevice` and the run's additions."""

    def device(self) -> PulsedDevice:
        return domain_part(self, PulsedDevice)


DeviceConfig = Annotated[Union[IdealDeviceConfig, PulsedDeviceConfig], Field(discriminator="model")]

#: The members of ``[device]`` by their ``model`` tag.
DEVICE_MEMBERS = dict(zip(DEVICE_MODELS, (IdealDeviceConfig, PulsedDeviceConfig)))

#: Keys only a pulsed device has: in an old flat ``[device]`` they could sit next to ``model = "ideal"``.
PULSED_ONLY = tuple(k for k in spec_fields(PulsedDeviceConfig) if k not in spec_fields(IdealDeviceConfig))


def resolve_device(raw: dict) -> tuple[dict, list[str]]:
    """``[device]`` as its model reads it: preset values filled in, ``model`` set, foreign keys dropped.

    Parameters
    ----------
    raw : dict
        The section as written (today's keys).

    Returns
    -------
    dict
        A new dict.  Precedence: a key written in ``[device]`` (also inside
        ``[device.drift]``) > the preset's value > the model's default.
    list of str
        Notes on pulsed keys dropped from an ideal device (none for a key at
        its default, as an old run folder's recorded config has them all).

    Raises
    ------
    ValueError
        A pulsed key next to ``model = "ideal"`` with a value a pulsed device refuses.
    """
    out = _without_zero_drift(_with_preset(raw))
    out.setdefault("model", "ideal")
    if out["model"] != "ideal":
        return out, []
    written = [k for k in PULSED_ONLY if k in raw and raw[k] is not None]
    if written:
        _check_as_pulsed(out, written)
    defaults = spec_defaults(PulsedDevice)
    notes = [
        f"device.{key} is ignored by device.model = 'ideal'; remove it or set device.model = 'pulsed'"
        for key in written
        if raw[key] != defaults[key]
    ]
    return {k: v for k, v in out.items() if k not in PULSED_ONLY}, notes


def _with_preset(raw: dict) -> dict:
    """``raw`` with its preset's values under the keys it does not set itself."""
    out = dict(raw)
    if out.get("preset") not in PRESETS:
        return out  # none, or unknown: the field validator names it
    defaults = spec_defaults(IdealDevice)
    window = [out.get(k, defaults[k]) for k in ("g_min_s", "g_max_s")]
    if not all(isinstance(g, (int, float)) and 0 < g < math.inf for g in window) or window[0] >= window[1]:
        return out  # the field validators report the bad window
    try:
        values = preset_values(out["preset"], *window)
    except UnknownPreset:
        return out
    drift = values.pop("drift", None)
    if drift is not None and isinstance(out.get("drift", {}), dict):
        out["drift"] = {**drift, **out.get("drift", {})}
    return {**values, **out}


def _without_zero_drift(section: dict) -> dict:
    """``section`` without a valid drift table whose exponents are all 0: it drifts not at all.

    One meaning, one value: an old run folder's recorded config writes every
    ``drift_*`` key at its default, and must equal the config that writes none.
    """
    drift = section.get("drift")
    if not isinstance(drift, dict) or drift.get("nu_mean", 0.0) != 0 or drift.get("nu_std", 0.0) != 0:
        return section
    try:
        _DRIFT.validate_python(drift)
    except ValidationError:
        return section  # the section's validation names the bad key
    return {k: v for k, v in section.items() if k != "drift"}


_DRIFT = TypeAdapter(DriftConfig)


def _check_as_pulsed(section: dict, keys: list[str]) -> None:
    """Refuse pulsed ``keys`` of an ideal device as a pulsed device would (the old flat section did)."""
    trial = {k: v for k, v in section.items() if k in spec_fields(PulsedDevice)} | {"model": "pulsed"}
    try:
        _PULSED.validate_python(trial)
    except ValidationError as exc:
        for error in exc.errors():
            if error_loc(error)[:1] and error_loc(error)[0] in keys:
                raise ValueError(f"device.{error_line(error)}") from None


_PULSED = TypeAdapter(PulsedDevice)


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
    estimator: Literal[
        "centred", "one_sided", "corrected", "contrastive", "path_integral", "loss_covariance", "implicit"
    ] = Field(
        "centred",
        description="centred: +beta/-beta EP; one_sided: +beta EP (both from expectations with noise); "
        "corrected: asymmetric EP, the exact gradient of a non-reciprocal circuit (mismatch.nonreciprocal; "
        "equals centred when reciprocal); contrastive: E_beta[dE/dG] - E_0[dE/dG] (noise); "
        "path_integral: -(1/T) int_0^beta Cov_b(L, dE/dG) db (gibbs); "
        "loss_covariance: -(1/T) Cov_0(L, dE/dG), the gradient of E_0[L] (gibbs); "
        "implicit: the exact gradient at the free state by implicit differentiation (adjoint of Kirchhoff's "
        "law; not a local rule, the baseline EP is measured against; beta_s unused)",
    )
    measure_gradient_cosine: int = Field(
        0,
        ge=0,
        description="every N mini-batches, the cosine and relative error of the rule's gradient estimate "
        "against the exact gradient (estimator 'implicit') on that mini-batch, averaged per epoch into "
        "metrics.csv's gradient_cosine and gradient_relative_error; 0 never",
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
    device_voltage: Literal["device", "terminals"] = Field(
        "device",
        description="voltage the update reads with resistive wires: device: across each device at its cell "
        "(exact gradient of the wired circuit); terminals: row driver's source minus column node, "
        "what a controller reads at the array's edge (the same with ideal wires)",
    )

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

    amplifier_gain: float = Field(
        0.0, ge=0, le=0.5, description="relative spread of each amplifier's forward gain: A (1 + amplifier_gain N(0,1)); "
        "the backward gains stay nominal, so the circuit is non-conservative (use rule corrected)"
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
    timeout_sec: float = Field(30.0, gt=0, description="seconds one ngspice operating point may take")
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
    ngspice_reltol: float = Field(
        1e-9, gt=0, le=1e-2, description="ngspice's relative convergence tolerance (.options reltol)"
    )
    ngspice_vntol_v: float = Field(
        1e-12, gt=0, lt=1e-3, description="ngspice's absolute voltage tolerance, volts (.options vntol)"
    )
    ngspice_abstol_a: float = Field(
        1e-15, gt=0, lt=1e-6, description="ngspice's absolute current tolerance, amperes (.options abstol)"
    )


@spec
class _Sampler:
    """How a run samples its noise, beyond the noise model's own times.

    Parameters
    ----------
    native_sampler : {"langevin", "exact_gaussian", "block_gibbs"}
        Native engine: Euler-Maruyama dynamics; exact Gaussian draws (no
        diodes); or block_gibbs, an exact Markov chain on the gibbs density of
        a layered circuit (ignores dt_sec, run_sec, burn_in_sec, tau_sec).
    burn_in_sweeps : int
        block_gibbs: sweeps discarded after the noiseless operating point; zero or more.
    sweeps_per_reading : int
        block_gibbs: sweeps between two of the ``samples`` readings; at least 1.
    quadrature_points : int
        path_integral: Gauss-Legendre nudges in (0, beta); at least 1.
    """

    native_sampler: Literal["langevin", "exact_gaussian", "block_gibbs"] = "langevin"
    burn_in_sweeps: Annotated[int, Field(ge=0)] = 5
    sweeps_per_reading: Annotated[int, Field(ge=1)] = 1
    quadrature_points: Annotated[int, Field(ge=1)] = 3


@spec
class JohnsonNoiseConfig(_Sampler, JohnsonNoise):
    """``[noise]`` with ``model = "johnson"``: a :class:`JohnsonNoise` and its sampler."""

    def spec(self) -> JohnsonNoise:
        return domain_part(self, JohnsonNoise)


@spec
class GibbsNoiseConfig(_Sampler, GibbsNoise):
    """``[noise]`` with ``model = "gibbs"``: a :class:`GibbsNoise` and its sampler."""

    def spec(self) -> GibbsNoise:
        return domain_part(self, GibbsNoise)


NoiseConfig = Annotated[Union[NoNoise, JohnsonNoiseConfig, GibbsNoiseConfig], Field(discriminator="model")]

#: Defaults of the old flat ``[noise]`` section, whose keys every model accepted.
_OLD_NOISE_DEFAULTS = {**spec_defaults(JohnsonNoiseConfig), **spec_defaults(GibbsNoiseConfig), "t_eff_w": 0.0}

#: The members of ``[noise]`` by their ``model`` tag.

#: Keys of the old flat ``[noise]`` section: any model accepted all of them.
_NOISE_KEYS = {k for cls in (JohnsonNoiseConfig, GibbsNoiseConfig) for k in spec_fields(cls)} - {"model"}

NOISE_MEMBERS = dict(zip(NOISE_MODELS, (NoNoise, JohnsonNoiseConfig, GibbsNoiseConfig)))


def resolve_noise(raw: dict, moved: dict) -> tuple[dict, list[str], set]:
    """``[noise]`` as its model reads it: ``model`` set, keys of other models dropped.

    Parameters
    ----------
    raw : dict
        The section in today's keys.
    moved : dict
        The old keys :func:`~eqspice.learning.run.legacy.upgrade` moved, to name them as written.

    Returns
    -------
    dict
        A new dict.  ``tau_sec`` stays under johnson, to be refused: matched
        capacitances need the gibbs density, and dropping the key would
        silently change the physics.
    list of str
        Notes on the keys dropped (none for a key at the old flat section's
        default, as an old run folder's recorded config has them all).
    set
        ``("noise", key)`` of every key dropped.
    """
    out = {"model": "none", **raw}
    member = NOISE_MEMBERS.get(out["model"]) if isinstance(out["model"], str) else None
    if member is None:
        return out, [], set()  # the union names the bad model
    kept = {"tau_sec"} if out["model"] == "johnson" and out.get("tau_sec") is not None else set()
    foreign = sorted(k for k in _NOISE_KEYS - set(spec_fields(member)) - kept if k in out)
    notes = [
        f"noise.{moved.get(('noise', key), key)} is ignored by noise.model = {out['model']!r}; remove it"
        for key in foreign
        if out[key] != _OLD_NOISE_DEFAULTS[key]
    ]
    return {k: v for k, v in out.items() if k not in foreign}, notes, {("noise", k) for k in foreign}


class EnergyConfig(_Section):
    """``[energy]``: how a run accounts for the energy and time of training on the chip.

    The node capacitance is hardware and sits in ``network.node_capacitance_f``, the
    pulse energy and duration in ``[device]``; this section holds the accounting's own
    choices (:mod:`eqspice.learning.run.energy`).
    """

    settling_tolerance: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="a phase has settled when every free node stays within this fraction of its "
        "largest step of its new steady state",
    )
    settling_samples: int = Field(
        4,
        ge=0,
        description="training samples per epoch whose phases are settled exactly (from evenly spaced "
        "mini-batches); the sampled_* metrics average over them; 0 for no settling accounting",
    )
    write_scheme: Literal["row_parallel", "device_by_device"] = Field(
        "row_parallel",
        description="row_parallel: one crossbar row at a time, its devices at once, up then down pulses; "
        "device_by_device: one device at a time",
    )


class RunConfig(_Section):
    seed: int = Field(0, ge=0, description="seed of every random draw in the run")
    data: DataConfig = DataConfig()
    network: CrossbarSpec
    device: DeviceConfig = IdealDeviceConfig()
    training: TrainingConfig = TrainingConfig()
    engine: EngineConfig = EngineConfig()
    mismatch: MismatchConfig = MismatchConfig()
    noise: NoiseConfig = NoNoise()
    energy: EnergyConfig = EnergyConfig()
    deploy: Programming | None = Field(
        None, description="how a deployed run's conductances were written into its chip (eqspice deploy); "
        "None for a run trained on its chip"
    )

    @model_validator(mode="before")
    @classmethod
    def _today(cls, raw):
        """Old keys moved to their new places, presets filled in, the union members' ``model`` tags set."""
        if not isinstance(raw, dict):
            return raw
        raw, moved = upgrade(raw)
        notes, dropped = [], set()
        if isinstance(raw.get("device", {}), dict):
            raw["device"], said = resolve_device(raw.get("device", {}))
            notes += said
        if isinstance(raw.get("noise", {}), dict):
            raw["noise"], said, dropped = resolve_noise(raw.get("noise", {}), moved)
            notes += said
        kept = [renamed(section, old) for (section, *path), old in moved.items() if (section, path[0]) not in dropped]
        for message in kept + notes:
            note(message)
        return raw

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
        exact = estimator == "implicit" or self.training.measure_gradient_cosine > 0
        what = "training.estimator = 'implicit'" if estimator == "implicit" else "training.measure_gradient_cosine"
        if exact and model != "none":
            raise ValueError(f"{what} (the exact gradient at the free steady state) is noiseless: set noise.model = 'none'")
        if exact and self.training.readout_resolution_v and estimator == "implicit":
            raise ValueError("training.estimator = 'implicit' is no controller readout: set training.readout_resolution_v to 0")
        if self.training.loss == "cross_entropy":
            allowed = ("centred", "corrected", "implicit") if model == "none" else ("centred", "one_sided", "contrastive")
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
        amplified = self.network.amplifier_gain is not None
        if m.amplifier_gain and not amplified:
            raise ValueError("mismatch.amplifier_gain needs amplifiers: set network.amplifier_gain or the spread to 0")
        if amplified and (estimator == "implicit" or self.training.measure_gradient_cosine > 0):
            raise ValueError("training.estimator = 'implicit' and measure_gradient_cosine with amplifiers are not modelled "
                             "(the adjoint has no amplifier layers); use 'centred' or drop network.amplifier_gain")
        if amplified and model != "none":
            raise ValueError("noise with amplifiers is not modelled by the samplers; set noise.model = 'none' or drop network.amplifier_gain")
        if amplified and (m.nonreciprocal or m.nonreciprocal_file):
            raise ValueError("mismatch.nonreciprocal with amplifiers is not modelled; set it to 0 or drop network.amplifier_gain")
        if amplified and m.amplifier_gain and estimator == "corrected" and self.network.amplifier_rails_v is not None:
            raise ValueError("training.estimator = 'corrected' with mismatched saturating amplifiers is not modelled; "
                             "drop network.amplifier_rails_v or mismatch.amplifier_gain")
        if amplified and self.energy.settling_samples and self.network.node_capacitance_f:
            raise ValueError("settling energy with amplifiers is not modelled; set energy.settling_samples = 0 "
                             "(programming energy is still counted) or drop network.amplifier_gain")
        if m.diode_is and self.network.nonlinearity == "none":
            raise ValueError("mismatch.diode_is spreads the diodes, but network.nonlinearity = 'none' has none; "
                             "set mismatch.diode_is = 0 or choose a diode nonlinearity")
        wired = self.network.wire_resistance_ohm > 0 or self.network.driver_resistance_ohm > 0
        if wired and model != "none":
            raise ValueError("noise with resistive wires is not modelled by the samplers; set noise.model = 'none' "
                             "or network.wire_resistance_ohm and driver_resistance_ohm to 0")
        if wired and exact:
            raise ValueError(f"{what} with resistive wires is not modelled (its adjoint ignores the lines); "
                             "set network.wire_resistance_ohm and driver_resistance_ohm to 0")
        if wired and estimator == "corrected":
            raise ValueError("training.estimator = 'corrected' (asymmetric EP) with resistive wires is not modelled; "
                             "use 'centred' or set network.wire_resistance_ohm and driver_resistance_ohm to 0")
        return self


#: The union members pydantic names in an error's location (left out of the messages).
UNION_TAGS = {("device",): DEVICE_MEMBERS, ("noise",): NOISE_MEMBERS}


def parse_config(raw: dict, source: str = "config") -> RunConfig:
    """Validate a parsed run configuration (TOML tables as dicts; old keys accepted with a note).

    Parameters
    ----------
    raw : dict
        The configuration.
    source : str
        What to name in the message: the file, or a description.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        ``source: section.key: what is wrong (got value)``, one line.
    """
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {one_line(exc, UNION_TAGS)}") from None


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read and validate a TOML run configuration.

    Parameters
    ----------
    path : str or Path
        The TOML file.
    overrides : dict, optional
        ``{"section.key": value}`` set before validation (``section.table.key`` for a nested table).

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        A missing or unreadable file, or :func:`parse_config`'s one line.
    """
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
        dotted = upgrade_dotted(dotted)
        *section, key = dotted.split(".")
        for old in old_names(dotted):  # the override wins over the file's key in either spelling
            if isinstance(raw.get(section[0]), dict):
                raw[section[0]].pop(old, None)
        target = raw
        for name in section:
            target = target.setdefault(name, {})
        target[key] = value
    return parse_config(raw, str(path))


def dump_config(config: RunConfig) -> str:
    """The resolved configuration (defaults filled in, today's keys) as TOML text."""
    return tomli_w.dumps(_model_first(config.model_dump(mode="json", exclude_none=True)))


def _model_first(table: dict) -> dict:
    """``table`` with every union member's ``model`` tag as the first key of its section (easier to read)."""
    out = {"model": table["model"]} if "model" in table else {}
    for key, value in table.items():
        out.setdefault(key, _model_first(value) if isinstance(value, dict) else value)
    return out
