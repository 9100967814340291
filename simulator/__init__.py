"""How circuits settle: engines behind one interface."""

from eqspice.simulator.engine import FREE, ConvergenceError, Engine, EngineError, Nudge, SimulatorCrash, phase_name
from eqspice.simulator.ngspice.engine import NgspiceEngine

__all__ = ["FREE", "ConvergenceError", "Engine", "EngineError", "NgspiceEngine", "Nudge", "SimulatorCrash", "phase_name"]
