"""The reference engine: ngspice in supervised child processes, for DC phases and noisy transients."""

from eqspice.simulator.ngspice.engine import NgspiceEngine
from eqspice.simulator.ngspice.sampler import NgspiceSampler

__all__ = ["NgspiceEngine", "NgspiceSampler"]
