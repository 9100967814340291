"""Circuit descriptions: plain data that both engines and the netlist writer read.

A :class:`Circuit` says what the hardware *is*: which nodes are driven by the
data (input sources), which are held at constant voltages (bias lines, diode
bias), which are free (hidden and output), which pairs of nodes carry a
programmable conductance (the memristors), where the diodes sit, and which
fixed loads hang on the outputs.  It holds no conductance values: those are the
state the controller changes, passed next to the circuit as a vector
``g[edge]`` in siemens.

Node voltages everywhere in eqspice are indexed by ``circuit.node_names``:
input nodes first, then fixed (bias) nodes, then free nodes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Annotated, Literal

import networkx as nx
import numpy as np
from pydantic import Field, field_validator, model_validator

from eqspice.circuits.amplifiers import Amplifiers, amplifier_node
from eqspice.circuits.schema import FieldError, show, spec
from eqspice.circuits.wires import Wires, with_wires

GROUND = "0"


@spec
class DiodeModel:
    """SPICE junction diode (``D`` element) used as the hidden nonlinearity.

    Parameters
    ----------
    is_a : float
        Saturation current IS, amperes; positive.
    n : float
        Emission coefficient N (ideality factor), dimensionless; positive.
    name : str
        Name of the ``.model`` card: a letter, then letters, digits or ``_``.

    Raises
    ------
    SpecError
        A field of the wrong type, out of range or not finite (one line naming it).

    Notes
    -----
    The DC current is ngspice's: ``I = IS (exp(V / (N Vt)) - 1) + GMIN V`` in
    forward bias and above ``-3 N Vt``, with ``Vt = k T / q`` at 27 degC, and
    GMIN (``.options gmin``, 1e-12 S by default) across every junction.
    """

    is_a: Annotated[float, Field(gt=0)] = 1e-14
    n: Annotated[float, Field(gt=0)] = 1.0
    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")] = "dhidden"

    def card(self) -> str:
        return f".model {self.name} D(IS={self.is_a!r} N={self.n!r})"


@dataclass(frozen=True)
class EdgeGroup:
    """A named block of edges, e.g. one crossbar layer of shape (rows, cols).

    For a crossbar, ``rows`` and ``cols`` are the node indices of its lines and
    edge ``start + i * len(cols) + j`` joins ``rows[i]`` to ``cols[j]``.
    """

    name: str
    start: int
    stop: int
    shape: tuple[int, ...]
    rows: tuple[int, ...] | None = None
    cols: tuple[int, ...] | None = None

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True)
class Circuit:
    """A resistive network with programmable conductances.

    Attributes
    ----------
    input_nodes : names of nodes held by data-driven voltage sources.
    fixed_nodes : names of nodes held by constant sources, with ``fixed_volts``.
    free_nodes : names of the nodes the circuit settles (hidden and output).
    output_nodes : the free nodes that are read out and nudged.
    edges : int array (n_edges, 2) of indices into ``node_names``; each edge is
        one programmable conductance (a memristor).
    groups : named blocks of edges (crossbar layers), in edge order.
    diodes : int array (n_diodes, 2) of (anode, cathode) indices into
        ``node_names``; -1 stands for ground.
    diode_model : the ``.model`` card every diode uses.
    output_load_s : fixed conductance from each output node to ground, siemens
        (0 for no load).
    input_gain : (n_inputs, n_features) map from data features to input source
        volts, e.g. +x and -x lines for differential inputs.
    readout : (n_classes, n_outputs) map from output voltages to class scores.
    target_gain : (n_outputs, n_classes) map from class targets (volts) to the
        target voltage of each output node.
    nonreciprocal : relative non-reciprocal part ``delta[edge]`` of every coupling,
        or None for a reciprocal network (see :func:`with_nonreciprocal`).
    diode_area : (n_diodes,) SPICE area factor of each diode (its IS is
        ``diode_model.is_a * area``), or None for 1 (see :mod:`eqspice.circuits.mismatch`).
    wires : resistive row and column lines (:mod:`eqspice.circuits.wires`), or None
        for ideal wires (every device directly between the nodes of ``edges``).
    amplifiers : bidirectional amplifiers after the hidden nodes
        (:mod:`eqspice.circuits.amplifiers`), whose output nodes follow the free
        nodes in ``node_names``; None for a passive network.
    """

    title: str
    input_nodes: tuple[str, ...]
    fixed_nodes: tuple[str, ...]
    fixed_volts: tuple[float, ...]
    free_nodes: tuple[str, ...]
    output_nodes: tuple[str, ...]
    edges: np.ndarray
    groups: tuple[EdgeGroup, ...]
    diodes: np.ndarray
    diode_model: DiodeModel
    output_load_s: float
    input_gain: np.ndarray
    readout: np.ndarray
    target_gain: np.ndarray
    comments: tuple[str, ...] = field(default=())
    nonreciprocal: np.ndarray | None = None
    diode_area: np.ndarray | None = None
    wires: Wires | None = None
    amplifiers: Amplifiers | None = None

    @cached_property
    def node_names(self) -> tuple[str, ...]:
        amplified = self.amplifiers.nodes if self.amplifiers is not None else ()
        return self.input_nodes + self.fixed_nodes + self.free_nodes + amplified

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def free_slice(self) -> slice:
        start = len(self.input_nodes) + len(self.fixed_nodes)
        return slice(start, start + len(self.free_nodes))

    @cached_property
    def output_index(self) -> np.ndarray:
        """Indices of the output nodes in ``node_names``."""
        index = {name: i for i, name in enumerate(self.node_names)}
        return np.array([index[name] for name in self.output_nodes], dtype=int)

    @property
    def conservative(self) -> bool:
        """The circuit has a co-content: reciprocal couplings and amplifiers whose ``B / A`` is their layer's."""
        return self.nonreciprocal is None and (self.amplifiers is None or self.amplifiers.conservative)

    @property
    def injection_nodes(self) -> tuple[str, ...]:
        """Free nodes with a controller current source: every free node of a non-conservative
        circuit (the corrections of asymmetric EP), else the outputs (current nudges)."""
        return self.output_nodes if self.conservative else self.free_nodes

    @cached_property
    def injection_columns(self) -> np.ndarray:
        """Indices of :attr:`injection_nodes` among the free nodes (columns of ``injected_a[batch, free]``)."""
        index = {name: k for k, name in enumerate(self.free_nodes)}
        return np.array([index[name] for name in self.injection_nodes], dtype=int)

    @property
    def n_features(self) -> int:
        return self.input_gain.shape[1]

    @property
    def n_classes(self) -> int:
        return self.readout.shape[0]

    def group(self, name: str) -> EdgeGroup:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(f"no edge group {name!r}; groups are {[g.name for g in self.groups]}")


@spec
class CrossbarSpec:
    """A layered crossbar network, as a user describes it (the ``[network]`` section of a run config).

    Parameters
    ----------
    layers : tuple of int
        Sizes ``[n_features, hidden..., n_classes]``, e.g. ``[64, 32, 10]``; each at least 1.
    differential_inputs : bool
        Drive +x and -x lines for every feature (signed weights from positive conductances).
    differential_outputs : bool
        Two output nodes per class; score = V(o+) - V(o-).
    input_scale_v : float
        Volts on an input line per unit of feature; positive.
    bias_v : float
        Volts on the bias lines (+bias_v and -bias_v) that form extra rows of
        every crossbar; 0 for no bias lines.
    nonlinearity : {"diode_pair", "diode", "none"}
        ``diode_pair``: diodes to a high and a low bias source, a soft clip;
        ``diode``: one diode from the node to a bias source; ``none``: linear.
    diode_bias_v : tuple of float, or one such pair per hidden layer
        Volts of the source at the lower diode's anode and of the source at the
        upper diode's cathode (``diode_pair``; ``diode`` uses the second).  The
        node is softly clipped to about [first - 0.5, second + 0.5] V at
        microampere currents.  One pair: sources ``vd_dn``, ``vd_up`` shared by
        every hidden layer; one pair per hidden layer (``[[lo, hi], [lo, hi]]``):
        layer k's diodes go to its own sources ``vd_dn_k``, ``vd_up_k``, so each
        layer's knee can sit where its voltages are.
    diode_model : DiodeModel
        The diode ``.model`` card (``[network.diode_model]`` in a config).
    output_load_s : float
        Conductance from each output node to ground, siemens; 0 for none.
    node_capacitance_f : float
        Capacitance from every free node to ground, farads, that sets how fast a
        phase settles (:mod:`eqspice.simulator.settling`); zero or more, finite.
        0 leaves settling time and settling energy out of a run's accounting.
        The default, 10 fF, is an illustrative order of magnitude for a
        crossbar line with its driver and sense node, not a measured figure.
    wire_resistance_ohm : float
        Resistance of each row- or column-line segment between neighbouring cells, ohms;
        0 (default) is the ideal crossbar (:mod:`eqspice.circuits.wires`).
    driver_resistance_ohm : float
        Output resistance of each input and bias driver, ohms; 0 for ideal drivers.
    tile_rows : int or None
        Longest column line in rows: longer crossbars are tiles whose column lines
        each end on the column's node; None for one tile.
    amplifier_gain : float, tuple of float or None
        Forward voltage gain ``A`` of a bidirectional amplifier after every hidden
        node (:mod:`eqspice.circuits.amplifiers`), one number for all hidden layers
        or one per hidden layer; positive.  None (default): no amplifiers.
    amplifier_backward_gain : float, tuple of float or None
        Backward current gain ``B``, one number or one per hidden layer; positive.
        None (default): ``1 / A``, the choice that keeps the upper crossbar's load on
        the hidden node as without an amplifier (docs/physics.md, "Amplifiers").
    amplifier_rails_v : (float, float) or None
        Output rails (low, high) of the forward amplifiers, volts, low < 0 < high:
        a smooth saturation (:func:`eqspice.circuits.amplifiers.amplified_voltage`);
        None (default): linear.

    Raises
    ------
    SpecError
        A field of the wrong type, out of range, not finite or not one of its
        choices, e.g. ``layers[1]: 0 hidden nodes; need at least 1``.
    """

    layers: tuple[int, ...]
    differential_inputs: bool = True
    differential_outputs: bool = False
    input_scale_v: Annotated[float, Field(gt=0)] = 1.0
    bias_v: Annotated[float, Field(ge=0)] = 1.0
    nonlinearity: Literal["diode_pair", "diode", "none"] = "diode_pair"
    diode_bias_v: tuple[float, float] | tuple[tuple[float, float], ...] = (0.3, -0.3)
    diode_model: DiodeModel = DiodeModel()
    output_load_s: Annotated[float, Field(ge=0)] = 0.0
    node_capacitance_f: Annotated[float, Field(ge=0)] = 1e-14
    wire_resistance_ohm: Annotated[float, Field(ge=0)] = 0.0
    driver_resistance_ohm: Annotated[float, Field(ge=0)] = 0.0
    tile_rows: Annotated[int, Field(ge=1)] | None = None
    amplifier_gain: float | tuple[float, ...] | None = None
    amplifier_backward_gain: float | tuple[float, ...] | None = None
    amplifier_rails_v: tuple[float, float] | None = None

    @field_validator("layers")
    @classmethod
    def _layers(cls, layers: tuple[int, ...]) -> tuple[int, ...]:
        if len(layers) < 2:
            raise FieldError((), f"need at least [n_features, n_classes] (got {show(layers)})")
        for k, n in enumerate(layers):
            if n < 1:
                what = "inputs" if k == 0 else "outputs" if k == len(layers) - 1 else "hidden nodes"
                raise FieldError((k,), f"{n} {what}; need at least 1")
        return layers

    @field_validator("amplifier_gain", "amplifier_backward_gain", mode="before")
    @classmethod
    def _gains(cls, value):
        if value is None:
            return None
        many = isinstance(value, (list, tuple))
        for k, gain in enumerate(value if many else [value]):
            where = (k,) if many else ()
            if isinstance(gain, bool) or not isinstance(gain, (int, float)):
                raise FieldError(where, f"{show(gain)} is not a number; give a positive gain (V/V or A/A)")
            if not math.isfinite(gain) or gain <= 0:
                raise FieldError(where, f"gain {gain!r}; give a positive finite gain (V/V or A/A)")
        return tuple(float(g) for g in value) if many else float(value)

    @field_validator("diode_bias_v", mode="before")
    @classmethod
    def _diode_bias(cls, value):
        pairs = isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, (list, tuple)) for v in value)
        for k, pair in enumerate(value if pairs else [value]):
            where = (k,) if pairs else ()
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise FieldError(where, f"{show(pair)}; give two volts [low source, high source], or one such pair per hidden layer")
            for v in pair:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise FieldError(where, f"{show(pair)}: {show(v)} is not a finite number of volts")
        return tuple((float(a), float(b)) for a, b in value) if pairs else (float(value[0]), float(value[1]))

    @field_validator("amplifier_rails_v")
    @classmethod
    def _rails(cls, rails: tuple[float, float] | None) -> tuple[float, float] | None:
        if rails is not None and not rails[0] < 0 < rails[1]:
            raise FieldError((), f"{show(rails)} does not contain 0 V; give [low, high] volts with low < 0 < high")
        return rails

    @model_validator(mode="after")
    def _amplifiers(self):
        n_hidden = len(self.layers) - 2
        for name in ("amplifier_gain", "amplifier_backward_gain"):
            value = getattr(self, name)
            if isinstance(value, tuple) and len(value) != n_hidden:
                raise FieldError(name, f"{len(value)} gains for {n_hidden} hidden layers; give one number or one per hidden layer")
        if self.per_layer_diode_bias and len(self.diode_bias_v) != n_hidden:
            raise FieldError(
                "diode_bias_v", f"{len(self.diode_bias_v)} pairs for {n_hidden} hidden layers; give one pair or one per hidden layer"
            )
        if self.amplifier_gain is None and (self.amplifier_backward_gain is not None or self.amplifier_rails_v is not None):
            raise FieldError("amplifier_gain", "not set; the backward gain and rails need amplifiers (set amplifier_gain)")
        if self.amplifier_gain is not None and n_hidden == 0:
            raise FieldError("amplifier_gain", "amplifiers sit between layers; the network has no hidden layer")
        if self.amplifier_gain is not None and (self.wire_resistance_ohm or self.driver_resistance_ohm):
            raise FieldError("amplifier_gain", "amplifiers with resistive wires are not modelled; set wire_resistance_ohm and driver_resistance_ohm to 0")
        return self

    @property
    def per_layer_diode_bias(self) -> bool:
        return isinstance(self.diode_bias_v[0], tuple)

    def diode_sources(self) -> list[tuple[tuple[str, float], tuple[str, float]]]:
        """Per hidden layer, the (name, volts) of its lower (anode) and upper (cathode) diode source."""
        n_hidden = len(self.layers) - 2
        if self.per_layer_diode_bias:
            return [((f"vd_dn_{k + 1}", lo), (f"vd_up_{k + 1}", hi)) for k, (lo, hi) in enumerate(self.diode_bias_v)]
        lo, hi = self.diode_bias_v
        return [(("vd_dn", lo), ("vd_up", hi))] * n_hidden

    def amplifier_gains(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Forward and backward gain of each hidden layer's amplifiers, or None without amplifiers."""
        if self.amplifier_gain is None:
            return None
        n_hidden = len(self.layers) - 2
        per_layer = lambda g: np.broadcast_to(np.asarray(g, dtype=float), (n_hidden,)).copy()  # noqa: E731
        forward = per_layer(self.amplifier_gain)
        backward = 1.0 / forward if self.amplifier_backward_gain is None else per_layer(self.amplifier_backward_gain)
        return forward, backward


def crossbar(spec: CrossbarSpec | None = None, **fields) -> Circuit:
    """Build the :class:`Circuit` of a layered crossbar.

    Every node of layer k-1 (plus the bias lines) connects to every node of
    layer k through one programmable conductance; group ``"L{k}"`` holds those
    edges in row-major order, shape (rows, cols), so ``g[group.slice]`` reshapes
    to the crossbar's conductance matrix.

    Parameters
    ----------
    spec : CrossbarSpec, optional
        The network as a user describes it.
    **fields
        Or the fields of a :class:`CrossbarSpec` (``layers=...``, ...), validated the same way.

    Returns
    -------
    Circuit
        Nodes ordered inputs, fixed sources, free nodes (hidden layers, then outputs).

    Raises
    ------
    SpecError
        A field is out of range, of the wrong type or not finite (one line naming it).
    TypeError
        Both a spec and fields were given.

    Examples
    --------
    >>> c = crossbar(layers=(2, 4, 2))
    >>> c.n_edges, len(c.free_nodes), c.groups[0].shape
    (36, 6, (6, 4))
    """
    if spec is None:
        spec = CrossbarSpec(**fields)
    elif fields:
        raise TypeError(f"crossbar: give a CrossbarSpec or its fields ({', '.join(fields)}), not both")
    n_features, *hidden, n_classes = spec.layers
    if spec.differential_inputs:
        input_nodes = tuple(f"in_{i}" for i in range(n_features)) + tuple(
            f"inb_{i}" for i in range(n_features)
        )
        input_gain = np.vstack([np.eye(n_features), -np.eye(n_features)]) * spec.input_scale_v
    else:
        input_nodes = tuple(f"in_{i}" for i in range(n_features))
        input_gain = np.eye(n_features) * spec.input_scale_v

    fixed_nodes: list[str] = []
    fixed_volts: list[float] = []
    if spec.bias_v:
        fixed_nodes += ["bias_p", "bias_n"]
        fixed_volts += [spec.bias_v, -spec.bias_v]
    sources = spec.diode_sources()
    used = sources if spec.per_layer_diode_bias else sources[:1]  # shared sources: listed once
    for low, high in used if spec.nonlinearity != "none" else []:
        for name, volts in (low, high) if spec.nonlinearity == "diode_pair" else (high,):
            fixed_nodes.append(name)
            fixed_volts.append(volts)
    bias_nodes = [n for n in ("bias_p", "bias_n") if n in fixed_nodes]

    hidden_layers = [tuple(f"h{k + 1}_{j}" for j in range(n)) for k, n in enumerate(hidden)]
    if spec.differential_outputs:
        output_nodes = tuple(f"out_{j}" for j in range(n_classes)) + tuple(
            f"outb_{j}" for j in range(n_classes)
        )
        readout = np.hstack([np.eye(n_classes), -np.eye(n_classes)])
        target_gain = 0.5 * readout.T
    else:
        output_nodes = tuple(f"out_{j}" for j in range(n_classes))
        readout = np.eye(n_classes)
        target_gain = np.eye(n_classes)

    free_nodes = tuple(n for layer in hidden_layers for n in layer) + output_nodes
    gains = spec.amplifier_gains()
    amplified = tuple(amplifier_node(n) for layer in hidden_layers for n in layer) if gains is not None else ()
    node_names = input_nodes + tuple(fixed_nodes) + free_nodes + amplified
    index = {name: i for i, name in enumerate(node_names)}

    edge_rows: list[np.ndarray] = []
    groups: list[EdgeGroup] = []
    previous = list(input_nodes)
    start = 0
    for k, layer in enumerate([*hidden_layers, output_nodes], start=1):
        drivers = previous if gains is None or k == 1 else [amplifier_node(n) for n in previous]
        rows = np.array([index[n] for n in drivers + bias_nodes])
        cols = np.array([index[n] for n in layer])
        a, b = np.meshgrid(rows, cols, indexing="ij")
        edge_rows.append(np.stack([a.ravel(), b.ravel()], axis=1))
        groups.append(
            EdgeGroup(f"L{k}", start, start + a.size, (len(rows), len(cols)), tuple(rows.tolist()), tuple(cols.tolist()))
        )
        start += a.size
        previous = list(layer)

    diodes: list[tuple[int, int]] = []
    for layer, ((low, _), (high, _)) in zip(hidden_layers, sources):
        for name in layer:
            if spec.nonlinearity == "diode_pair":
                diodes.append((index[name], index[high]))
                diodes.append((index[low], index[name]))
            elif spec.nonlinearity == "diode":
                diodes.append((index[name], index[high]))

    sizes = "-".join(str(n) for n in spec.layers)
    comments = (
        f"layered crossbar {sizes}",
        "inputs: " + ("differential (+x on in_i, -x on inb_i)" if spec.differential_inputs else "single-ended"),
        f"hidden nonlinearity: {spec.nonlinearity}",
        "outputs: " + ("differential (score = V(out_j) - V(outb_j))" if spec.differential_outputs else "single-ended"),
    )
    amplifiers = None
    if gains is not None:
        forward, backward = gains
        sizes_h = [len(layer) for layer in hidden_layers]
        # w_k / w_L = prod over the amplifier layers at or above hidden layer k of A / B
        ratio = forward / backward
        weights = tuple(float(np.prod(ratio[k:])) for k in range(len(hidden_layers))) + (1.0,)
        amplifiers = Amplifiers(
            nodes=amplified,
            source=np.array([index[n] for layer in hidden_layers for n in layer], dtype=int),
            forward_gain=np.repeat(forward, sizes_h),
            backward_gain=np.repeat(backward, sizes_h),
            rails_v=spec.amplifier_rails_v,
            layer_weights=weights,
            nominal_ratio=np.repeat(backward / forward, sizes_h),
        )
        comments += (
            "amplifiers after every hidden node: forward gain "
            + ", ".join(f"{a:g}" for a in forward) + ", backward current gain " + ", ".join(f"{b:g}" for b in backward)
            + ("" if spec.amplifier_rails_v is None else f", rails {list(spec.amplifier_rails_v)} V"),
        )
    circuit = Circuit(
        title=f"eqspice crossbar {sizes}",
        input_nodes=input_nodes,
        fixed_nodes=tuple(fixed_nodes),
        fixed_volts=tuple(fixed_volts),
        free_nodes=free_nodes,
        output_nodes=output_nodes,
        edges=np.concatenate(edge_rows).astype(int),
        groups=tuple(groups),
        diodes=np.array(diodes, dtype=int).reshape(-1, 2),
        diode_model=spec.diode_model,
        output_load_s=spec.output_load_s,
        input_gain=input_gain,
        readout=readout,
        target_gain=target_gain,
        comments=comments,
        amplifiers=amplifiers,
    )
    return with_wires(circuit, Wires(spec.wire_resistance_ohm, spec.driver_resistance_ohm, spec.tile_rows))


def circuit_from_graph(
    graph: nx.Graph,
    inputs: list[str],
    outputs: list[str],
    fixed: dict[str, float] | None = None,
    diodes: list[tuple[str, str]] | None = None,
    diode_model: DiodeModel = DiodeModel(),
    title: str = "eqspice network",
) -> Circuit:
    """Build a :class:`Circuit` from any networkx graph.

    Every graph edge is one programmable conductance (group ``"edges"``);
    ``inputs`` are driven one-to-one by the features, ``fixed`` nodes sit at
    constant volts, every other node is free.

    Parameters
    ----------
    graph : networkx.Graph
        Nodes are node names; every edge is one memristor.
    inputs : list of str
        Nodes held by the data-driven sources, one per feature.
    outputs : list of str
        Free nodes that are read out and nudged.
    fixed : dict of str to float, optional
        Nodes held at constant volts (bias lines).
    diodes : list of (str, str), optional
        (anode, cathode) pairs of node names, ``"0"`` for ground.
    diode_model : DiodeModel
        The ``.model`` card every diode uses.
    title : str
        First line of the netlist.

    Returns
    -------
    Circuit

    Raises
    ------
    ValueError
        An output is not a free node of the graph, or a node name is not a plain
        netlist token (see :func:`check_node_names`).

    Examples
    --------
    >>> import networkx as nx
    >>> c = circuit_from_graph(nx.Graph([("x", "h"), ("h", "y"), ("x", "y")]), inputs=["x"], outputs=["y"])
    >>> c.free_nodes, c.n_edges
    (('h', 'y'), 3)
    """
    fixed = dict(fixed or {})
    check_node_names([*graph.nodes, *inputs, *outputs, *fixed])
    free = [n for n in graph.nodes if n not in inputs and n not in fixed]
    missing = [n for n in outputs if n not in free]
    if missing:
        raise ValueError(f"outputs {missing} are not free nodes of the graph")
    node_names = tuple(str(n) for n in [*inputs, *fixed, *free])
    index = {name: i for i, name in enumerate(node_names)}
    index[GROUND] = -1
    edges = np.array([(index[str(a)], index[str(b)]) for a, b in graph.edges], dtype=int)
    diode_rows = np.array([(index[str(a)], index[str(c)]) for a, c in diodes or []], dtype=int)
    n_out = len(outputs)
    return Circuit(
        title=title,
        input_nodes=tuple(str(n) for n in inputs),
        fixed_nodes=tuple(str(n) for n in fixed),
        fixed_volts=tuple(float(v) for v in fixed.values()),
        free_nodes=tuple(str(n) for n in free),
        output_nodes=tuple(str(n) for n in outputs),
        edges=edges.reshape(-1, 2),
        groups=(EdgeGroup("edges", 0, len(edges), (len(edges),)),),
        diodes=diode_rows.reshape(-1, 2),
        diode_model=diode_model,
        output_load_s=0.0,
        input_gain=np.eye(len(inputs)),
        readout=np.eye(n_out),
        target_gain=np.eye(n_out),
        comments=("network from a graph",),
    )


def with_nonreciprocal(circuit: Circuit, delta: np.ndarray | None) -> Circuit:
    """``circuit`` whose couplings are non-reciprocal by the relative amounts ``delta[edge]``.

    Edge e joins p = ``edges[e, 0]`` to q = ``edges[e, 1]`` and carries the
    conductance ``G_e`` (siemens).  With ``a_e = delta_e G_e`` the coupling is

        K_pq = G_e + a_e   (current into p per volt on q),
        K_qp = G_e - a_e   (current into q per volt on p),

    i.e. ``K = S + A``: the symmetric part S is the resistor ``G_e``, the
    antisymmetric part A is a pair of voltage-controlled current sources to
    ground, ``+a_e V(q)`` into p and ``-a_e V(p)`` into q.  Kirchhoff's law at a
    free node n then reads ``sum_m G_nm (v_n - v_m) - sum_m A_nm v_m + ... = 0``.
    ``delta`` is a property of the fabricated device pair, so a reprogrammed
    device keeps its relative mismatch.  None or all zeros: reciprocal.
    """
    if delta is None:
        return replace(circuit, nonreciprocal=None)
    delta = np.array(delta, dtype=float).ravel()
    if delta.shape != (circuit.n_edges,):
        raise ValueError(f"non-reciprocal part has {delta.size} values; the circuit has {circuit.n_edges} edges")
    if not np.all(np.isfinite(delta)):
        raise ValueError("non-reciprocal part holds NaN or inf; give finite relative values")
    return replace(circuit, nonreciprocal=delta if np.any(delta) else None)


def nonreciprocal_draw(n_edges: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Relative non-reciprocal parts ``delta[edge] ~ N(0, sigma)`` of fabricated device pairs."""
    return rng.normal(0.0, sigma, n_edges) if sigma > 0 else np.zeros(n_edges)


def antisymmetric_coupling(circuit: Circuit, g_s: np.ndarray) -> np.ndarray:
    """``a[edge] = delta_e G_e``, siemens (zeros for a reciprocal circuit)."""
    if circuit.nonreciprocal is None:
        return np.zeros(circuit.n_edges)
    return circuit.nonreciprocal * np.asarray(g_s, dtype=float)


#: A node name every netlist dialect reads as one plain token.
NODE_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def check_node_names(names) -> None:
    """Refuse a node name that could change a netlist's meaning when written into it.

    A name with a space, ``=``, parentheses, a newline (which would start a new
    card, e.g. ``.control``) or a leading dot is not one token in SPICE; ``0`` is
    ground.  Allowed: letters, digits and ``_``.

    Raises
    ------
    ValueError
        One line naming the first bad name.
    """
    for name in names:
        text = str(name)
        if text == GROUND:
            raise ValueError("node name '0' is ground in every netlist; rename the graph node")
        if not NODE_NAME.match(text):
            raise ValueError(f"node name {text!r} is not a plain netlist token; use letters, digits and _ only")
