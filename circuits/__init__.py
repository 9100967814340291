"""What the hardware is: networks of programmable conductances, rendered as SPICE."""

from eqspice.circuits.netlist import TIGHT_OPTIONS, edge_names, render_netlist
from eqspice.circuits.network import (
    Circuit,
    CrossbarSpec,
    DiodeModel,
    EdgeGroup,
    antisymmetric_coupling,
    circuit_from_graph,
    crossbar,
    nonreciprocal_draw,
    with_nonreciprocal,
)

__all__ = [
    "Circuit",
    "CrossbarSpec",
    "DiodeModel",
    "EdgeGroup",
    "TIGHT_OPTIONS",
    "circuit_from_graph",
    "crossbar",
    "edge_names",
    "render_netlist",
    "antisymmetric_coupling",
    "nonreciprocal_draw",
    "with_nonreciprocal",
]
