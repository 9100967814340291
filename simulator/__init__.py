"""How circuits settle: engines behind one interface."""

from simulator.engine import ConvergenceError, Engine, EngineError, SimulatorCrash, phase_name
from simulator.ngspice import NgspiceEngine

__all__ = ["ConvergenceError", "Engine", "EngineError", "NgspiceEngine", "SimulatorCrash", "phase_name"]
