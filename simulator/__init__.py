"""How circuits settle: engines behind one interface."""

from eqspice.simulator.engine import FREE, ConvergenceError, Engine, EngineError, Nudge, SimulatorCrash, phase_name
from eqspice.simulator.ngspice.engine import NgspiceEngine

__all__ = ["FREE", "ConvergenceError", "Engine", "EngineError", "NgspiceEngine", "Nudge", "SimulatorCrash", "make_engine", "phase_name"]


def make_engine(name: str = "native", **options) -> Engine:
    """An engine by name: ``"native"`` (:class:`~eqspice.simulator.native.NativeEngine`) or
    ``"ngspice"`` (:class:`~eqspice.simulator.ngspice.engine.NgspiceEngine`).

    Parameters
    ----------
    name : {"native", "ngspice"}
        Which engine.  Both settle the same circuits to the same voltages (within 1e-6 V).
    **options
        Constructor arguments of that engine (e.g. ``workers``, ``mode`` for ngspice).

    Raises
    ------
    ValueError
        ``name`` is neither engine.
    """
    if name == "native":
        from eqspice.simulator.native import NativeEngine

        return NativeEngine(**options)
    if name == "ngspice":
        return NgspiceEngine(**options)
    raise ValueError(f"engine {name!r}: use 'native' or 'ngspice'")
