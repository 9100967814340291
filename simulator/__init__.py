"""How circuits settle: engines behind one interface."""

from eqspice.simulator.engine import ConvergenceError, Engine, EngineError, SimulatorCrash, phase_name
from eqspice.simulator.ngspice.engine import NgspiceEngine

__all__ = ["ConvergenceError", "Engine", "EngineError", "NgspiceEngine", "SimulatorCrash", "phase_name"]
