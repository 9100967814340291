"""eqspice: memristor crossbars settled by ngspice, trained by equilibrium propagation.

The public API, in the order a study uses it:

* describe the hardware: :class:`CrossbarSpec`, :func:`crossbar`,
  :func:`circuit_from_graph`, :class:`DiodeModel`, the noise models :class:`GibbsNoise` and
  :class:`JohnsonNoise` (or :func:`noise_spec` by name); every spec refuses a bad value
  with a one-line :class:`SpecError`;
  SPICE text with :func:`render_netlist` / :func:`export_netlist`;
* settle it: :class:`NativeEngine`, :class:`NgspiceEngine` (or :func:`make_engine`
  by name), each with ``load(circuit, g_s)`` and ``settle(inputs_v, ...)``;
  noisy phases with :class:`NativeSampler` / :class:`NgspiceSampler`; the static power
  of a settled phase with :func:`phase_power`, its settling time with node capacitances
  with :func:`settling_time` (ngspice: :func:`ngspice_settling_time`) and its capacitive
  switching energy with :func:`switching_energy_j`, all three with :func:`phase_cost`;
* learn: the rules :class:`EquilibriumPropagation`, :class:`CrossEntropyPropagation`,
  :class:`AsymmetricEquilibriumPropagation`, :class:`NoisyRule`, the optimizers
  :class:`SGD` / :class:`Adam`, the devices :class:`IdealDevice`, :class:`PulsedDevice`,
  :class:`RetentionDrift` and the named :data:`PRESETS`;
* run: :func:`load_config` / :func:`parse_config` give a validated :class:`RunConfig`,
  :func:`open_session` builds its objects, :func:`train` trains (with or without a
  run folder), :func:`evaluate` measures, :func:`load_dataset` reads the data.

Names are imported on first use, so ``import eqspice`` is quick and loads neither
scipy, pydantic nor matplotlib.  The physics conventions (units, energy, nudge,
update rules, noise) are in ``docs/physics.md``.

Examples
--------
>>> import numpy as np
>>> import eqspice as eq
>>> circuit = eq.crossbar(eq.CrossbarSpec(layers=(2, 4, 2)))
>>> engine = eq.NativeEngine()
>>> engine.load(circuit, np.full(circuit.n_edges, 5e-5))
>>> engine.settle(np.zeros((1, len(circuit.input_nodes)))).shape
(1, 14)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> the module (under ``eqspice.``) that defines it.
_LOCATION = {
    # circuits: what the hardware is
    "Circuit": "circuits.network",
    "CrossbarSpec": "circuits.network",
    "DiodeModel": "circuits.network",
    "crossbar": "circuits.network",
    "circuit_from_graph": "circuits.network",
    "with_nonreciprocal": "circuits.network",
    "render_netlist": "circuits.netlist",
    "export_netlist": "circuits.netlist",
    "NoiseSpec": "circuits.noise",
    "GibbsNoise": "circuits.noise",
    "JohnsonNoise": "circuits.noise",
    "noise_spec": "circuits.noise",
    "SpecError": "circuits.schema",
    # simulator: how it settles
    "Engine": "simulator.engine",
    "Nudge": "simulator.engine",
    "FREE": "simulator.engine",
    "EngineError": "simulator.engine",
    "ConvergenceError": "simulator.engine",
    "SimulatorCrash": "simulator.engine",
    "make_engine": "simulator",
    "NativeEngine": "simulator.native",
    "NgspiceEngine": "simulator.ngspice.engine",
    "NativeSampler": "simulator.sampling.native",
    "NgspiceSampler": "simulator.ngspice.sampler",
    "phase_power": "simulator.power",
    "PhasePower": "simulator.power",
    "settling_time": "simulator.settling",
    "ngspice_settling_time": "simulator.settling",
    "switching_energy_j": "simulator.settling",
    "phase_cost": "simulator.settling",
    # learning: what the controller decides
    "Phases": "learning.rules.equilibrium",
    "EquilibriumPropagation": "learning.rules.equilibrium",
    "CrossEntropyPropagation": "learning.rules.equilibrium",
    "AsymmetricEquilibriumPropagation": "learning.rules.asymmetric",
    "NoisyRule": "learning.rules.noisy",
    "adjoint_gradient": "learning.rules.adjoint",
    "SGD": "learning.rules.optimizers",
    "Adam": "learning.rules.optimizers",
    "IdealDevice": "learning.devices.models",
    "PulsedDevice": "learning.devices.models",
    "device_model": "learning.devices.models",
    "RetentionDrift": "learning.devices.drift",
    "PRESETS": "learning.devices.presets",
    # a run
    "RunConfig": "learning.run.config",
    "ConfigError": "learning.run.config",
    "load_config": "learning.run.config",
    "parse_config": "learning.run.config",
    "Session": "learning.run.build",
    "open_session": "learning.run.build",
    "RunState": "learning.run.checkpoint",
    "RunError": "learning.run.loop",
    "train": "learning.run.loop",
    "evaluate": "learning.run.loop",
    "Dataset": "learning.run.data",
    "load_dataset": "learning.run.data",
}

__all__ = sorted(_LOCATION)


def __getattr__(name: str):
    try:
        module = _LOCATION[name]
    except KeyError:
        raise AttributeError(f"module 'eqspice' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
