"""Render a :class:`~eqspice.circuits.network.Circuit` as readable SPICE text.

Element names follow the nodes they touch so that a netlist can be read and
changed by hand or by ``alter``:

* ``V<node>``: the source holding an input or fixed node (``Vin_3``, ``Vbias_p``);
* ``R<k>_<row>_<col>``: the memristor at row, column of crossbar group k
  (``R<k>_<e>`` for groups that are plain edge lists);
* ``D<j>_<anode>_<cathode>``: hidden-node diodes;
* ``Vtgt_<out>`` and ``Gnudge_<out>``: the nudge.  The nudge of strength beta
  (siemens) is a voltage-controlled current source ``beta (V(out) - V(tgt))``
  from the output node to its target source, i.e. a conductance beta that may
  be negative (the -beta phase of the centred estimator).
* ``Gf<k>_<row>_<col>`` and ``Gb<k>_<row>_<col>``: the antisymmetric part of a
  non-reciprocal coupling (:func:`eqspice.circuits.network.with_nonreciprocal`), two
  grounded VCCS: ``+a V(q)`` into p and ``-a V(p)`` into q;
* ``Eamp_<h>``, ``Vamp_<h>``, ``Famp_<h>``: the bidirectional amplifier after hidden
  node h (:mod:`eqspice.circuits.amplifiers`): a VCVS of gain A (or, with rails, a
  behavioural source ``Bamp_<h>``) drives ``amp_src_<h>``, the 0 V source ``Vamp_<h>``
  in series carries the current ``i_a`` into the next crossbar's node ``amp<k>_<j>``,
  and a CCCS draws ``B i_a`` out of h;
* ``Iinj_<node>``: a constant current into a free node from the controller: a
  current nudge at every output (e.g. of the cross-entropy) and, in
  non-reciprocal circuits, the correction current of the asymmetric learning
  phases at every free node; 0 A otherwise.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from eqspice.circuits.amplifiers import rail_constants
from eqspice.circuits.network import GROUND, Circuit, antisymmetric_coupling
from eqspice.circuits.wires import wire_network

#: Tolerances under which ngspice agrees with Kirchhoff's law to well below
#: 1e-12 A on diode networks; ngspice's defaults (RELTOL 1e-3, VNTOL 1e-6 V)
#: leave about 1e-7 V of slack on forward-biased diodes.
TIGHT_OPTIONS = {"reltol": 1e-9, "abstol": 1e-15, "vntol": 1e-12, "gmin": 1e-12}


def source_name(node: str) -> str:
    return f"V{node}"


def target_node(output: str) -> str:
    return f"tgt_{output}"


def nudge_name(output: str) -> str:
    return f"Gnudge_{output}"


def edge_names(circuit: Circuit) -> list[str]:
    """Element name of every programmable conductance, in edge order."""
    names: list[str] = []
    for k, group in enumerate(circuit.groups, start=1):
        count = group.stop - group.start
        if len(group.shape) == 2:
            rows, cols = np.unravel_index(np.arange(count), group.shape)
            names += [f"R{k}_{r}_{c}" for r, c in zip(rows.tolist(), cols.tolist())]
        else:
            names += [f"R{k}_{e}" for e in range(count)]
    return names


def antisymmetric_names(circuit: Circuit) -> list[tuple[str, str]]:
    """Names ``(Gf..., Gb...)`` of the two VCCS of every edge's antisymmetric part, in edge order."""
    return [("Gf" + name[1:], "Gb" + name[1:]) for name in edge_names(circuit)]


def free_free_edges(circuit: Circuit) -> np.ndarray:
    """Boolean mask of the edges that join two free nodes (the only ones in the KCL Jacobian)."""
    return np.all(circuit.edges >= circuit.free_slice.start, axis=1)


def injection_name(node: str) -> str:
    return f"Iinj_{node}"


def antisymmetric_gains(circuit: Circuit, g_s: np.ndarray, antisymmetric_sign: float = 1.0) -> np.ndarray:
    """Gain ``a_e`` (siemens) of both VCCS of every edge; ``antisymmetric_sign`` multiplies free-free ones."""
    a = antisymmetric_coupling(circuit, g_s)
    return np.where(free_free_edges(circuit), antisymmetric_sign * a, a)


def wire_lines(circuit: Circuit) -> list[str]:
    """The row-line, column-line and driver resistors of every crossbar (none for ideal wires).

    Each memristor then joins its row line's and column line's node at its cell
    (``row<k>_<i>_<j>``, ``col<k>_<i>_<j>``; :mod:`eqspice.circuits.wires`).
    """
    wired = wire_network(circuit)
    if not wired.resistor_names:
        return []
    names = circuit.node_names + wired.internal_nodes
    lines = []
    for k, (group, span) in enumerate(zip(circuit.groups, wired.group_resistors), start=1):
        lines.append(f"* crossbar {group.name}: row-line (Rrow{k}_*), column-line (Rcol{k}_*) and driver (Rdrv{k}_*) resistors")
        lines += [
            f"{n} {names[a]} {names[b]} {_fmt(1.0 / g)}"
            for n, (a, b), g in zip(wired.resistor_names[span], wired.resistor_ends[span].tolist(), wired.resistor_s[span].tolist())
        ]
    return lines


def rail_expression(hidden: str, gain: float, rails_v: tuple[float, float]) -> str:
    """The saturating amplifier's output as a behavioural-source expression of ``V(hidden)``."""
    mid, half, k, t0 = rail_constants(gain, rails_v)
    return f"{_fmt(mid)} + {_fmt(half)} * tanh({_fmt(k)} * V({hidden}) - {_fmt(t0)})"


def amplifier_gains(circuit: Circuit, antisymmetric_sign: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward gain of every amplifier; for sign -1 of a non-conservative circuit the
    learning gains of asymmetric EP (:meth:`eqspice.circuits.amplifiers.Amplifiers.learning_gains`)."""
    amplifiers = circuit.amplifiers
    if antisymmetric_sign == -1 and not amplifiers.conservative:
        if amplifiers.rails_v is not None:
            raise ValueError("the learning phases of asymmetric EP with saturating amplifiers are not modelled; "
                             "drop network.amplifier_rails_v or the amplifier mismatch")
        return amplifiers.learning_gains()
    return amplifiers.forward_gain, amplifiers.backward_gain


def amplifier_gain_values(circuit: Circuit, antisymmetric_sign: float) -> dict:
    """``alter`` values ``{element: ("gain", value)}`` of the linear amplifiers' E and F sources."""
    amplifiers = circuit.amplifiers
    if amplifiers is None or amplifiers.conservative:
        return {}
    forward, backward = amplifier_gains(circuit, antisymmetric_sign)
    if amplifiers.rails_v is not None:
        return {}
    names = [circuit.node_names[h] for h in amplifiers.source.tolist()]
    values = {f"Eamp_{n}": ("gain", float(a)) for n, a in zip(names, forward.tolist())}
    return values | {f"Famp_{n}": ("gain", float(b)) for n, b in zip(names, backward.tolist())}


def amplifier_lines(circuit: Circuit, antisymmetric_sign: float = 1.0) -> list[str]:
    """The forward, sensing and backward sources of every amplifier (none without amplifiers)."""
    amplifiers = circuit.amplifiers
    if amplifiers is None:
        return []
    names = circuit.node_names
    forward, backward = amplifier_gains(circuit, antisymmetric_sign)
    lines = ["* bidirectional amplifiers: forward v(amp) = A v(h); backward B i(Vamp) drawn out of h"]
    if amplifiers.rails_v is not None:
        lo, hi = (_fmt(r) for r in amplifiers.rails_v)
        lines.append(f"* rails [{lo}, {hi}] V: v(amp) = mid + half tanh(k v(h) - t0), slope A at 0 V (docs/physics.md)")
    if forward is not amplifiers.forward_gain:
        lines.append("* learning phase of asymmetric EP: forward and backward gains A' = B / r, B' = A r")
    for out, h, a, b in zip(amplifiers.nodes, amplifiers.source.tolist(), forward.tolist(), backward.tolist()):
        hidden, src = names[h], f"amp_src_{names[h]}"
        if amplifiers.rails_v is None:
            lines.append(f"Eamp_{hidden} {src} 0 {hidden} 0 {_fmt(a)}")
        else:
            lines.append(f"Bamp_{hidden} {src} 0 V = {rail_expression(hidden, a, amplifiers.rails_v)}")
        lines.append(f"Vamp_{hidden} {src} {out} dc 0")
        lines.append(f"Famp_{hidden} {hidden} 0 Vamp_{hidden} {_fmt(b)}")
    return lines


def _fmt(x: float) -> str:
    # The shortest text that reads back as the same double: ngspice sees the
    # float we hold, and a person reads 0.2, not 0.20000000000000001.
    return repr(float(x))


#: The node whose voltage selects the sample in a batched netlist (see :func:`sample_source`).
SAMPLE_INDEX = "sample_index"


def sample_source(node: str, values: np.ndarray) -> str:
    """A behavioural source holding ``node`` at ``values[k]`` while V(sample_index) = k.

    A DC sweep of the ``Vsample_index`` source over 0, 1, ..., n-1 then settles
    n samples in one ngspice call, each point an operating point reached by
    Newton from the previous one with the matrix ordering kept.
    """
    return f"B{node} {node} 0 V = {_by_sample_index(values)}"


def _by_sample_index(values: np.ndarray, function: str = "pwl") -> str:
    """``pwl(V(sample_index), 0, values[0], 1, values[1], ...)``, eight numbers a line
    (``function`` another name for the same table, e.g. Xyce's ``table``)."""
    points = [_fmt(v) for pair in enumerate(np.asarray(values, dtype=float).tolist()) for v in pair]
    rows = [", ".join(points[i : i + 8]) for i in range(0, len(points), 8)]
    return f"{function}(V({SAMPLE_INDEX}),\n+ " + ",\n+ ".join(rows) + ")"


def sample_nudge(output: str, beta_s: np.ndarray) -> str:
    """The nudge of ``output`` as a behavioural current ``beta[k] (V(out) - V(tgt))`` at sample k."""
    t = target_node(output)
    return f"B{nudge_name(output)[1:]} {output} {t} I = (V({output}) - V({t})) * {_by_sample_index(beta_s)}"


def sample_injection(node: str, current_a: np.ndarray) -> str:
    """A behavioural current ``current_a[k]`` (amperes) into ``node`` at sample k."""
    return f"B{injection_name(node)[1:]} 0 {node} I = {_by_sample_index(current_a)}"


def render_netlist(
    circuit: Circuit,
    g_s: np.ndarray,
    inputs_v: np.ndarray | None = None,
    targets_v: np.ndarray | None = None,
    beta_s: float = 0.0,
    analysis: str = ".op",
    options: dict[str, float] | None = None,
    antisymmetric_sign: float = 1.0,
    injected_a: np.ndarray | None = None,
) -> str:
    """SPICE text of ``circuit`` with conductances ``g_s`` (siemens).

    Parameters
    ----------
    inputs_v : volts on the input sources (default 0 V).
    targets_v : volts on the nudge target sources (default 0 V).
    beta_s : nudge strength, siemens (0: free phase).
    analysis : the analysis card, e.g. ``.op``.
    options : ``.options`` values; default :data:`TIGHT_OPTIONS`.
    antisymmetric_sign : +1, or -1 to reverse the antisymmetric sources between two
        free nodes (the learning phases of asymmetric EP).
    injected_a : constant current into every free node, amperes (default 0 A);
        only ``circuit.injection_nodes`` have a source.
    """
    g_s = np.asarray(g_s, dtype=float)
    if g_s.shape != (circuit.n_edges,):
        raise ValueError(f"g_s has shape {g_s.shape}; circuit has {circuit.n_edges} edges")
    if not np.all(np.isfinite(g_s)) or np.any(g_s <= 0):
        raise ValueError("conductances must be finite and positive (siemens)")
    n_in, n_out = len(circuit.input_nodes), len(circuit.output_nodes)
    inputs_v = np.zeros(n_in) if inputs_v is None else np.asarray(inputs_v, dtype=float)
    targets_v = np.zeros(n_out) if targets_v is None else np.asarray(targets_v, dtype=float)
    names = circuit.node_names
    node = lambda i: GROUND if i < 0 else names[i]  # noqa: E731

    lines = [f"* {circuit.title}"]
    lines += [f"* {c}" for c in circuit.comments]
    lines += [
        "* units: volts, siemens, amperes; each memristor is a resistor R = 1/G",
        f"* {circuit.n_edges} programmable conductances, {len(circuit.free_nodes)} free nodes",
        "",
        "* input sources (driven by the data)",
    ]
    lines += [f"{source_name(n)} {n} 0 dc {_fmt(v)}" for n, v in zip(circuit.input_nodes, inputs_v)]
    if circuit.fixed_nodes:
        lines.append("* fixed sources (bias lines, diode bias)")
        lines += [
            f"{source_name(n)} {n} 0 dc {_fmt(v)}"
            for n, v in zip(circuit.fixed_nodes, circuit.fixed_volts)
        ]
    element = edge_names(circuit)
    resistance = 1.0 / g_s
    lines += wire_lines(circuit)
    wired = wire_network(circuit)
    names = names + wired.internal_nodes  # memristors and their VCCS sit on the line nodes
    edges = wired.device_ends
    for group in circuit.groups:
        lines.append(f"* crossbar {group.name}: {' x '.join(map(str, group.shape))} memristors")
        a, b = edges[group.slice].T
        lines += [
            f"{element[e]} {names[i]} {names[j]} {_fmt(r)}"
            for e, i, j, r in zip(
                range(group.start, group.stop), a.tolist(), b.tolist(), resistance[group.slice].tolist()
            )
        ]
    lines += amplifier_lines(circuit, antisymmetric_sign)
    if len(circuit.diodes):
        lines.append("* hidden nonlinearity: diodes (anode cathode model)")
        lines += [
            f"D{k}_{node(a)}_{node(c)} {node(a)} {node(c)} {circuit.diode_model.name}"
            for k, (a, c) in enumerate(circuit.diodes.tolist())
        ]
        if circuit.diode_area is not None:  # mismatch: ngspice scales IS (not GMIN) by the area
            first = len(lines) - len(circuit.diodes)
            for k, area in enumerate(circuit.diode_area.tolist()):
                lines[first + k] += f" area={_fmt(area)}"
        lines.append(circuit.diode_model.card())
    if circuit.nonreciprocal is not None:
        gains = antisymmetric_gains(circuit, g_s, antisymmetric_sign)
        lines.append("* non-reciprocal couplings: +a V(q) into p and -a V(p) into q (grounded VCCS)")
        for (fwd, bwd), (p, q), a in zip(antisymmetric_names(circuit), edges.tolist(), gains.tolist()):
            if a != 0:
                lines.append(f"{fwd} 0 {names[p]} {names[q]} 0 {_fmt(a)}")
                lines.append(f"{bwd} {names[q]} 0 {names[p]} 0 {_fmt(a)}")
    injected = np.zeros(len(circuit.free_nodes)) if injected_a is None else np.asarray(injected_a, float)
    current = dict(zip(circuit.free_nodes, injected.tolist()))
    lines.append("* controller currents into the free nodes (current nudges, asymmetric EP corrections)")
    lines += [f"{injection_name(n)} 0 {n} dc {_fmt(current[n])}" for n in circuit.injection_nodes]
    if circuit.output_load_s > 0:
        lines.append(f"* output loads: {circuit.output_load_s:g} S to ground")
        lines += [f"Rload_{n} {n} 0 {_fmt(1.0 / circuit.output_load_s)}" for n in circuit.output_nodes]
    lines.append(f"* nudge: conductance beta = {beta_s:g} S from each output to its target source")
    for n, y in zip(circuit.output_nodes, targets_v):
        t = target_node(n)
        lines.append(f"{source_name(t)} {t} 0 dc {_fmt(y)}")
        lines.append(f"{nudge_name(n)} {n} {t} {n} {t} {_fmt(beta_s)}")
    opts = TIGHT_OPTIONS if options is None else options
    if opts:
        lines.append(".options " + " ".join(f"{k}={v:g}" for k, v in opts.items()))
    lines += [analysis, ".end", ""]
    return "\n".join(lines)


def export_netlist(path, circuit: Circuit, g_s: np.ndarray, inputs_v: np.ndarray | None = None, *, header=(), **render) -> Path:
    """Write the netlist of :func:`render_netlist` to ``path``, runnable as it is by ``ngspice -b``.

    Parameters
    ----------
    path : str or path-like
        File to write (``.cir``).  It is written to a temporary file in the same
        folder and renamed, so a failure never leaves half a netlist.
    circuit : Circuit
        The network.
    g_s : ndarray, shape (n_edges,)
        Conductance of every memristor, siemens.
    inputs_v : ndarray, shape (n_inputs,), optional
        Volts on the input sources (default 0 V).
    header : sequence of str
        Comment lines put under the title (without the leading ``*``).
    **render
        Further arguments of :func:`render_netlist` (``targets_v``, ``beta_s``, ``options``, ...).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    OSError
        The folder does not exist or is not writable.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from eqspice.circuits.network import CrossbarSpec, crossbar
    >>> circuit = crossbar(CrossbarSpec(layers=(2, 2)))
    >>> out = export_netlist(pathlib.Path(tempfile.mkdtemp()) / "net.cir", circuit, np.full(circuit.n_edges, 1e-4))
    >>> out.read_text().splitlines()[0]
    '* eqspice crossbar 2-2'
    """
    path = Path(path)
    title, rest = render_netlist(circuit, g_s, inputs_v=inputs_v, **render).split("\n", 1)
    text = "\n".join([title, *(f"* {line}" for line in header), rest])
    write_text_atomic(path, text)
    return path


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file, not mkstemp's owner-only mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
