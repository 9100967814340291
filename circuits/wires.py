"""Resistive row and column lines of a crossbar (IR drop): where the wires are and what they are.

An ideal crossbar puts every memristor directly between its row's driver and
its column's node.  On a chip, row ``i`` of crossbar k is a metal line that
runs past every column and column ``j`` a line that runs past every row; the
memristor at cell (i, j) joins the two lines at their crossing.  Each piece of
line between two neighbouring cells is a resistor ``r_w``
(``wire_resistance_ohm``), and each input and bias driver has an output
resistance ``r_d`` (``driver_resistance_ohm``).

Geometry (the same in the netlist, in both engines and in the docs):

* the **row driver** sits at column 0 of its row: source node -> ``r_d`` ->
  row-line node of cell (i, 0) -> ``r_w`` -> cell (i, 1) -> ... -> cell (i, C-1).
  A row driven by a hidden node (the rows of a later crossbar) has no driver
  resistance: the hidden node is the row line's column-0 end.
* the **column terminal** sits at the far end of each column line, past the
  last row: cell (0, j) -> ``r_w`` -> cell (1, j) -> ... -> cell (R-1, j) = the
  column's node (hidden node or output).  With ``tile_rows = T`` a column line
  spans at most T rows: rows ``tT .. tT + T - 1`` form tile t, whose column
  line ends on the column's node, so every tile's column j joins the same node.

The worst cell is (0, C-1): C-1 row segments from its driver and R-1 (or T-1)
column segments from its terminal.

Node and element names (netlist):

* ``row<k>_<i>_<j>``: row line of crossbar k (1-based, as ``R<k>_<i>_<j>``), row i, at cell (i, j);
  ``row<k>_<i>`` when the wire resistance is 0 (the whole row is one node behind its driver);
* ``col<k>_<i>_<j>``: column line of crossbar k at cell (i, j);
* ``Rrow<k>_<i>_<j>``: row-line segment between cells (i, j-1) and (i, j);
* ``Rcol<k>_<i>_<j>``: column-line segment between cells (i, j) and (i+1, j);
* ``Rdrv<k>_<i>``: output resistance of the driver of row i of crossbar k.

A wire or driver resistance of 0 is a zero-length connection: the nodes it
would join are one node.  Both 0 is today's ideal crossbar exactly (no wires in
the circuit at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import Field

from eqspice.circuits.schema import spec

if TYPE_CHECKING:
    from eqspice.circuits.network import Circuit


@spec
class Wires:
    """The parasitic resistances of a crossbar's lines.

    Parameters
    ----------
    wire_resistance_ohm : float
        Resistance of each row- or column-line segment between two neighbouring cells, ohms; >= 0.
    driver_resistance_ohm : float
        Output resistance of each input and bias driver, ohms; >= 0.
    tile_rows : int or None
        Longest column line, in rows (>= 1); a crossbar with more rows is split
        into tiles whose column lines each end on the column's node.  None: one tile.

    Raises
    ------
    SpecError
        A negative or non-finite resistance, or ``tile_rows`` < 1 (one line naming it).
    """

    wire_resistance_ohm: Annotated[float, Field(ge=0)] = 0.0
    driver_resistance_ohm: Annotated[float, Field(ge=0)] = 0.0
    tile_rows: Annotated[int, Field(ge=1)] | None = None

    @property
    def ideal(self) -> bool:
        """No resistance anywhere: the ideal crossbar, whatever the tiling."""
        return self.wire_resistance_ohm == 0 and self.driver_resistance_ohm == 0

    def comments(self) -> tuple[str, ...]:
        tiles = "one tile" if self.tile_rows is None else f"tiles of at most {self.tile_rows} rows"
        return (
            f"wires: {self.wire_resistance_ohm!r} ohm per row/column-line segment, "
            f"{self.driver_resistance_ohm!r} ohm per input/bias driver, {tiles}",
            "wires: row drivers at column 0 of each row, column terminals at the far end (last row) "
            "of each column line (of each tile)",
        )


@dataclass(frozen=True)
class WireNetwork:
    """The lines of every crossbar of a circuit, as plain arrays.

    Extended node indices run over ``circuit.node_names`` followed by
    ``internal_nodes`` (the line nodes that are not circuit nodes).

    Attributes
    ----------
    internal_nodes : tuple of str
        Names of the line nodes, in extended order after the circuit's nodes.
    device_ends : ndarray of int, shape (n_edges, 2)
        Extended indices of the row-line and column-line node every memristor joins.
    resistor_names : tuple of str
        Element name of every wire segment and driver resistor.
    resistor_ends : ndarray of int, shape (n_resistors, 2)
        Extended indices of their two nodes.
    resistor_s : ndarray, shape (n_resistors,)
        Their conductances, siemens.
    group_resistors : tuple of slice
        The resistors of each crossbar group, in group order.
    group_nodes : tuple of slice
        The line nodes of each crossbar group (positions in ``internal_nodes``).
    """

    internal_nodes: tuple[str, ...]
    device_ends: np.ndarray
    resistor_names: tuple[str, ...]
    resistor_ends: np.ndarray
    resistor_s: np.ndarray
    group_resistors: tuple[slice, ...]
    group_nodes: tuple[slice, ...] = ()


def wire_network(circuit: Circuit) -> WireNetwork:
    """Line nodes, device ends and wire resistors of ``circuit`` (see the module notes for the geometry).

    Parameters
    ----------
    circuit : Circuit
        A circuit whose groups are crossbars (``rows``/``cols`` set); ``circuit.wires``
        may be None (then the devices join their circuit nodes and there are no resistors).

    Returns
    -------
    WireNetwork

    Raises
    ------
    ValueError
        Wires on a group that is not a crossbar (a plain edge list has no lines).
    """
    wires = circuit.wires
    n_nodes = len(circuit.node_names)
    if wires is None or wires.ideal:
        none = tuple(slice(0, 0) for _ in circuit.groups)
        return WireNetwork((), circuit.edges.copy(), (), np.zeros((0, 2), int), np.zeros(0), none, none)
    r_w, r_d = wires.wire_resistance_ohm, wires.driver_resistance_ohm
    first_free = circuit.free_slice.start
    names: list[str] = []
    device_ends = np.empty_like(circuit.edges)
    res_names: list[str] = []
    res_ends: list[np.ndarray] = []
    res_s: list[np.ndarray] = []
    spans: list[slice] = []
    node_spans: list[slice] = []

    def new_nodes(labels: list[str]) -> np.ndarray:
        start = n_nodes + len(names)
        names.extend(labels)
        return np.arange(start, start + len(labels))

    for k, group in enumerate(circuit.groups, start=1):
        if group.rows is None or group.cols is None:
            raise ValueError(f"wires need crossbar groups; group {group.name!r} is a plain edge list")
        rows, cols = np.asarray(group.rows), np.asarray(group.cols)
        n_r, n_c = len(rows), len(cols)
        first, first_node = len(res_names), len(names)
        driven = (rows < first_free) & (r_d > 0)
        row_id = np.empty((n_r, n_c), dtype=int)
        if r_w > 0:
            own = np.zeros((n_r, n_c), dtype=bool)
            own[~driven, 0] = True  # an undriven row's column-0 end is the row's own node
            row_id[own] = rows[~driven]
            cells = np.argwhere(~own)
            row_id[~own] = new_nodes([f"row{k}_{a}_{j}" for a, j in cells.tolist()])
        else:
            start = rows.copy()
            start[driven] = new_nodes([f"row{k}_{i}" for i in np.flatnonzero(driven)])
            row_id[:] = start[:, None]
        if r_d > 0:
            res_names += [f"Rdrv{k}_{i}" for i in np.flatnonzero(driven)]
            res_ends.append(np.stack([rows[driven], row_id[driven, 0]], axis=1))
            res_s.append(np.full(int(driven.sum()), 1.0 / r_d))
        tile = n_r if wires.tile_rows is None else wires.tile_rows
        i = np.arange(n_r)
        terminal_row = np.minimum((i // tile + 1) * tile, n_r) - 1
        col_id = np.empty((n_r, n_c), dtype=int)
        if r_w > 0:
            inner = np.flatnonzero(i != terminal_row)
            col_id[inner] = new_nodes([f"col{k}_{a}_{j}" for a in inner.tolist() for j in range(n_c)]).reshape(len(inner), n_c)
            col_id[i == terminal_row] = cols[None, :]
            # row segments (i, j-1)-(i, j); column segments (i, j)-(i+1, j) inside a tile
            res_names += [f"Rrow{k}_{a}_{j}" for a in range(n_r) for j in range(1, n_c)]
            res_ends.append(np.stack([row_id[:, :-1].ravel(), row_id[:, 1:].ravel()], axis=1))
            res_names += [f"Rcol{k}_{a}_{j}" for a in inner.tolist() for j in range(n_c)]
            res_ends.append(np.stack([col_id[inner].ravel(), col_id[inner + 1].ravel()], axis=1))
            res_s.append(np.full(n_r * (n_c - 1) + len(inner) * n_c, 1.0 / r_w))
        else:
            col_id[:] = cols[None, :]
        device_ends[group.slice] = np.stack([row_id.ravel(), col_id.ravel()], axis=1)
        spans.append(slice(first, len(res_names)))
        node_spans.append(slice(first_node, len(names)))
    return WireNetwork(
        internal_nodes=tuple(names),
        device_ends=device_ends,
        resistor_names=tuple(res_names),
        resistor_ends=np.concatenate(res_ends).astype(int) if res_ends else np.zeros((0, 2), int),
        resistor_s=np.concatenate(res_s) if res_s else np.zeros(0),
        group_resistors=tuple(spans),
        group_nodes=tuple(node_spans),
    )


def with_wires(circuit: Circuit, wires: Wires | None) -> Circuit:
    """``circuit`` with resistive lines ``wires`` (None or all-zero resistances: the ideal crossbar)."""
    from dataclasses import replace

    if wires is None or wires.ideal:
        return replace(circuit, wires=None)
    for group in circuit.groups:
        if group.rows is None:
            raise ValueError(f"wires need crossbar groups; group {group.name!r} is a plain edge list")
    return replace(circuit, wires=wires, comments=circuit.comments + wires.comments())
