"""The objects of a run, built from its config: circuit (with its frozen mismatch), engine, device, rule, optimizer.

:func:`open_session` is the one function that turns a :class:`~eqspice.learning.run.config.RunConfig`
into everything a training loop needs; nothing is written to disk.

Mismatch is drawn once from the run's seed, frozen, written into the netlist.

Each kind of mismatch has its own generator,
``default_rng([MISMATCH_STREAM, seed, kind])``, so the draw is the same every time the run (or a resumed run, or an export of it) builds
its circuit, and it leaves the training's random stream untouched: a run with
no mismatch trains exactly as before.

* ``diode_is`` = sigma: diode ``k`` has area ``exp(sigma xi_k)`` (log-normal,
  median 1), so its IS is ``IS exp(sigma xi_k)``: a relative spread of about
  sigma for small sigma.
* ``bias_v`` = s (volts): every fixed source (the +/- bias lines and, after
  :func:`eqspice.circuits.mismatch.split_diode_bias`, each hidden node's own diode-bias
  sources) sits at nominal + ``s xi``.
* ``input_gain`` = sigma: input line ``i``'s driver has gain ``1 + sigma xi_i``.

Kinds: 0 diode areas, 1 source volts, 2 input gains; separate generators, so
switching one kind on or off leaves the others' draws unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from eqspice.circuits.mismatch import split_diode_bias, with_mismatch
from eqspice.circuits.netlist import TIGHT_OPTIONS
from eqspice.circuits.network import Circuit, crossbar, nonreciprocal_draw, with_nonreciprocal
from eqspice.learning.devices.drift import RetentionDrift
from eqspice.learning.devices.models import DeviceModel
from eqspice.learning.rules.adjoint import ImplicitGradient
from eqspice.learning.rules.asymmetric import AsymmetricEquilibriumPropagation
from eqspice.learning.rules.equilibrium import (
    CrossEntropyPropagation,
    EquilibriumPropagation,
    LearningRule,
    cross_entropy,
    output_loss,
)
from eqspice.learning.rules.optimizers import SGD, Adam
from eqspice.learning.run.checkpoint import RunState, write_atomic
from eqspice.learning.run.config import ConfigError, RunConfig
from eqspice.learning.run.data import IMAGE_SIDES, Dataset, load_dataset
from eqspice.learning.run.report import SQUARED_LOSS_LABEL
from eqspice.simulator.engine import Engine
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.ngspice.engine import NgspiceEngine
from eqspice.simulator.wired import WireElimination

#: Second word of the mismatch generator's seed: ASCII "mism".
MISMATCH_STREAM = 0x6D69736D

#: File in the run folder that records the drawn values.
RECORD = "mismatch.json"


def mismatched_circuit(
    circuit: Circuit, diode_is: float, bias_v: float, input_gain: float, seed: int, amplifier_gain: float = 0.0
) -> Circuit:
    """``circuit`` with mismatch of the given spreads drawn from ``seed`` (see the module notes)."""
    if not (diode_is or bias_v or input_gain or amplifier_gain):
        return circuit
    if bias_v:
        circuit = split_diode_bias(circuit)
    normal = lambda kind, n: np.random.default_rng([MISMATCH_STREAM, seed, kind]).standard_normal(n)  # noqa: E731
    area = np.exp(diode_is * normal(0, len(circuit.diodes)))
    volts = np.asarray(circuit.fixed_volts, dtype=float) + bias_v * normal(1, len(circuit.fixed_nodes))
    gain = 1.0 + input_gain * normal(2, len(circuit.input_nodes))
    n_amplifiers = 0 if circuit.amplifiers is None else len(circuit.amplifiers.nodes)
    amplifier_scale = 1.0 + amplifier_gain * normal(3, n_amplifiers)
    return with_mismatch(
        circuit,
        diode_area=area if diode_is else None,
        fixed_volts=volts if bias_v else None,
        input_gain_scale=gain if input_gain else None,
        amplifier_gain_scale=amplifier_scale if amplifier_gain else None,
    )


#: Spawn key of the run seed's stream for the non-reciprocal mismatch: the draw is
#: fixed by the seed alone (same on --resume) and leaves the training stream untouched.
NONRECIPROCAL_STREAM = 0x4E52


def nonreciprocal_part(config: RunConfig, n_edges: int) -> np.ndarray | None:
    """``delta[edge]`` of the run (from ``mismatch.nonreciprocal_file`` or drawn from the seed), or None."""
    m = config.mismatch
    if m.nonreciprocal_file is not None:
        path = Path(m.nonreciprocal_file)
        try:
            if path.suffix == ".json":  # a run's mismatch.json
                delta = np.array(json.loads(path.read_text())["nonreciprocal_delta"], dtype=float)
            else:
                delta = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=1)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"mismatch.nonreciprocal_file {path}: cannot read ({exc})") from None
        delta = np.asarray(delta, dtype=float).ravel()
        if delta.size != n_edges or not np.all(np.isfinite(delta)):
            raise ConfigError(
                f"mismatch.nonreciprocal_file {path}: {delta.size} values (finite: {bool(np.all(np.isfinite(delta)))}); "
                f"the network has {n_edges} edges, give one finite relative value per edge"
            )
        return delta
    if m.nonreciprocal == 0:
        return None
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(NONRECIPROCAL_STREAM,)))
    return nonreciprocal_draw(n_edges, m.nonreciprocal, rng)


def build_circuit(config: RunConfig) -> Circuit:
    """The run's crossbar with its frozen mismatch: diodes, sources and drivers, and non-reciprocal couplings."""
    m = config.mismatch
    circuit = mismatched_circuit(crossbar(config.network), m.diode_is, m.bias_v, m.input_gain, config.seed, m.amplifier_gain)
    return with_nonreciprocal(circuit, nonreciprocal_part(config, circuit.n_edges))


def record(run_dir: str | Path, config, circuit: Circuit) -> None:
    """Write the drawn mismatch to ``run_dir/mismatch.json``, if any: diode areas, source
    volts, input gains, and the non-reciprocal part ``delta[edge]`` of every coupling
    (``K_pq = G (1 + delta)``, ``K_qp = G (1 - delta)``)."""
    m = config.mismatch
    if not (m.diode_is or m.bias_v or m.input_gain or m.amplifier_gain or circuit.nonreciprocal is not None):
        return
    gains = np.linalg.norm(circuit.input_gain, axis=1)
    data = {
        "diode_area": None if circuit.diode_area is None else dict(
            zip([f"D{k}" for k in range(len(circuit.diodes))], circuit.diode_area.tolist())
        ),
        "fixed_volts": dict(zip(circuit.fixed_nodes, circuit.fixed_volts)),
        "input_gain_v_per_unit": dict(zip(circuit.input_nodes, gains.tolist())),
        "nonreciprocal_delta": None if circuit.nonreciprocal is None else circuit.nonreciprocal.tolist(),
    }
    if circuit.amplifiers is not None:
        data["amplifier_forward_gain"] = dict(zip(circuit.amplifiers.nodes, circuit.amplifiers.forward_gain.tolist()))
    write_atomic(Path(run_dir) / RECORD, json.dumps(data, indent=1).encode())


@dataclass
class Session:
    """What a run works with: config, data, circuit, engine, device and rule (built by :func:`open_session`).

    Parameters
    ----------
    config : RunConfig
    data : Dataset
    circuit : Circuit
        The run's crossbar with its frozen mismatch.
    engine : Engine
        Not yet loaded: :func:`~eqspice.learning.run.loop.train` loads it with the run's conductances.
    device : DeviceModel
    rule : LearningRule
    optimizer : SGD or Adam
    drift : RetentionDrift or None
    lines : WireElimination or None
        The resistive lines the controller reads each device's own voltage through
        (``training.device_voltage = "device"`` with wires), else None.
    """

    config: RunConfig
    data: Dataset
    circuit: Circuit
    engine: Engine
    device: DeviceModel
    rule: LearningRule
    optimizer: SGD | Adam
    drift: RetentionDrift | None = None
    lines: WireElimination | None = None

    @cached_property
    def _input_lines(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Feature and gain of every input line if each line has at most one gain (every crossbar), else None."""
        gain = self.circuit.input_gain
        if np.any(np.count_nonzero(gain, axis=1) > 1):
            return None
        feature = np.argmax(gain != 0, axis=1)
        return feature, gain[np.arange(len(gain)), feature]

    def inputs_v(self, x: np.ndarray) -> np.ndarray:
        """Input line voltages ``x @ input_gain.T`` (volts); with one gain per line, a gather and a
        scale instead of a dense product over all features, to the same numbers."""
        if self._input_lines is None:
            return x @ self.circuit.input_gain.T
        feature, scale = self._input_lines
        # take, not x[:, feature]: a row-major result (the fancy index gives column-major, which
        # every later row-wise copy and product then pays for); + 0.0: the dense product's +0 where a feature is 0
        return x.take(feature, axis=1) * scale + 0.0

    def targets_v(self, labels: np.ndarray) -> np.ndarray:
        t = self.config.training
        classes = np.full((len(labels), self.circuit.n_classes), t.target_low_v)
        classes[np.arange(len(labels)), labels] = t.target_high_v
        return classes @ self.circuit.target_gain.T

    def scores(self, v: np.ndarray) -> np.ndarray:
        return v[:, self.circuit.output_index] @ self.circuit.readout.T

    def loss(self, v: np.ndarray, targets_v: np.ndarray) -> np.ndarray:
        """The trained loss per sample: squared error (V^2) or cross-entropy (nats)."""
        t = self.config.training
        if t.loss == "cross_entropy":
            return cross_entropy(self.circuit, v, targets_v, t.softmax_scale_v)
        return output_loss(self.circuit, v, targets_v)

    @property
    def loss_label(self) -> str:
        return "cross-entropy (nats)" if self.config.training.loss == "cross_entropy" else SQUARED_LOSS_LABEL


def check_sizes(config: RunConfig, data: Dataset) -> None:
    layers = config.network.layers
    if layers[0] != data.n_features:
        raise ConfigError(
            f"network.layers[0] = {layers[0]} but {data.name} has {data.n_features} features; "
            f"set layers = [{data.n_features}, ..., {data.n_classes}]"
        )
    if layers[-1] != data.n_classes:
        raise ConfigError(
            f"network.layers[-1] = {layers[-1]} but {data.name} has {data.n_classes} classes; "
            f"set layers = [{data.n_features}, ..., {data.n_classes}]"
        )
    d = config.data
    side = IMAGE_SIDES.get(d.name)
    if (d.augment_shift_px or d.augment_flip) and (side is None or data.n_features != side * side):
        raise ConfigError(
            f"data.augment_shift_px/augment_flip need {d.name} images of {side} x {side} pixels but the data has "
            f"{data.n_features} features per sample; turn augmentation off for this data"
        )


def make_rule(config: RunConfig) -> LearningRule:
    """The controller's learning rule: EP, asymmetric EP, (with noise) a rule on sampled expectations,
    or the exact gradient (``implicit``, the baseline)."""
    t = config.training
    if config.noise.model != "none":
        from eqspice.learning.rules.noisy import make_noisy_rule

        return make_noisy_rule(config)
    if t.estimator == "implicit":
        return exact_gradient_rule(config)
    if t.estimator == "corrected":
        return AsymmetricEquilibriumPropagation(t.beta_s, t.softmax_scale_v if t.loss == "cross_entropy" else None)
    if t.loss == "cross_entropy":
        return CrossEntropyPropagation(t.beta_s, t.softmax_scale_v)
    return EquilibriumPropagation(t.beta_s, centred=t.estimator == "centred")


def exact_gradient_rule(config: RunConfig) -> ImplicitGradient:
    """The exact gradient of the run's loss, in the units its EP rule estimates (``training.estimator = "implicit"``)."""
    t = config.training
    return ImplicitGradient(t.loss, t.softmax_scale_v)


def make_engine(config: RunConfig) -> Engine:
    e = config.engine
    if e.backend == "native":
        return NativeEngine()
    options = {**TIGHT_OPTIONS, "reltol": e.ngspice_reltol, "vntol": e.ngspice_vntol_v, "abstol": e.ngspice_abstol_a}
    return NgspiceEngine(timeout_sec=e.timeout_sec, workers=e.workers, mode=e.ngspice_mode, options=options)


def make_device(config: RunConfig) -> DeviceModel:
    """The run's device model (an :class:`IdealDevice` or :class:`PulsedDevice`, by ``device.model``)."""
    return config.device.device()


def make_drift(config: RunConfig) -> RetentionDrift | None:
    """The run's retention drift, or None without ``[device.drift]`` or with zero exponents."""
    drift = config.device.drift
    return None if drift is None else drift.model()


def initial_state(config: RunConfig, circuit: Circuit, device: DeviceModel) -> RunState:
    """The seeded start of a run: fabrication (device state), initial conductances, optimizer."""
    rng = np.random.default_rng(config.seed)
    low, high = config.device.init_range()
    device_state = device.init_state(circuit.n_edges, rng)
    state = RunState(g_s=device.init(circuit.n_edges, rng, low, high, device_state), rng=rng)
    drift = make_drift(config)
    if drift is not None:  # drawn after everything else: runs without drift keep their random stream
        device_state.update(drift.init_state(circuit.n_edges, rng, device_state.get("stuck")))
    state.device = device_state
    state.optimizer = make_optimizer(config).init_state(circuit.n_edges)
    return state


def make_optimizer(config: RunConfig) -> SGD | Adam:
    t = config.training
    return Adam(t.learning_rate) if t.optimizer == "adam" else SGD(t.learning_rate)


def open_session(config: RunConfig, data: Dataset | None = None) -> Session:
    """Every object of a run, built from its config; nothing is written to disk.

    Parameters
    ----------
    config : RunConfig
        A validated run configuration (:func:`~eqspice.learning.run.config.load_config`).
    data : Dataset, optional
        The data to use instead of the one ``config.data`` names.

    Returns
    -------
    Session

    Raises
    ------
    ConfigError
        The network's sizes do not fit the data, or a mismatch file cannot be read.
    DataError
        The data set cannot be loaded.
    """
    if data is None:
        d = config.data
        data = load_dataset(
            d.name,
            data_dir=d.data_dir,
            seed=config.seed,
            test_fraction=d.test_fraction,
            limit_train=d.limit_train,
            limit_test=d.limit_test,
        )
    check_sizes(config, data)
    circuit = build_circuit(config)
    device = make_device(config)
    rule = make_rule(config)
    engine = make_engine(config)
    lines = None
    if circuit.wires is not None and config.training.device_voltage == "device":
        lines = WireElimination(circuit)
    return Session(config, data, circuit, engine, device, rule, make_optimizer(config), make_drift(config), lines)
