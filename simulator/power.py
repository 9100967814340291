"""Static power of a settled phase: what every source delivers and every element dissipates.

A phase settles to a DC operating point ``v[batch, node]`` (either engine).
Every element of the circuit then carries a constant current, and its
absorbed power is ``p = V_element * I_element`` with the current entering the
element at the terminal the voltage is measured from (the passive sign
convention).  The element classes of a netlist
(:mod:`eqspice.circuits.netlist`) and their absorbed powers, watts:

* memristor ``R<k>_<r>_<c>`` of conductance G between a and b:
  ``G (v_a - v_b)^2 >= 0``;
* diode ``D..`` from anode a to cathode c: ``I_d(v_a - v_c) (v_a - v_c) >= 0``,
  with ngspice's DC diode current (:func:`eqspice.simulator.diode.diode_current`,
  GMIN and the instance area included);
* output load ``Rload_<out>``: ``G_load v_out^2 >= 0``;
* nudge ``Gnudge_<out>``, a VCCS ``beta (V(out) - V(tgt))`` from out to its target
  node: ``beta (v_out - y)^2``, a dissipation for ``beta > 0`` and a delivery
  (negative absorption) for ``beta < 0``, where only a controlled source can
  realise the negative conductance;
* voltage source ``V<node>`` holding node n at ``v_n`` (inputs, fixed sources,
  targets ``Vtgt_<out>``): ``-v_n J_n``, ``J_n`` the current it pushes into the
  circuit at n (the sum of the currents leaving n through the other elements);
* controller current source ``Iinj_<node>`` pushing ``I_n`` into node n: ``-v_n I_n``;
* antisymmetric VCCS pair of edge (p, q) with gain a: ``Gf`` injects ``a v_q`` into p
  (absorbs ``-a v_p v_q``), ``Gb`` injects ``-a v_p`` into q (absorbs ``+a v_p v_q``).

**Tellegen's theorem.**  For any voltages that satisfy Kirchhoff's voltage law
(node voltages) and any currents that satisfy Kirchhoff's current law, the sum
over all elements of ``V_element * I_element`` is zero.  At a settled state both
hold, so the power delivered by the sources equals the power dissipated:

    P_delivered = sum_sources (-p)  =  sum_passive p  = P_dissipated.

Conventions of :class:`PhasePower`: *delivered* terms are the power elements
put into the rest of the circuit (``-p``), *dissipated* terms the power
elements take from it (``p``); every term is signed, so a source that sinks
current (a bias source that absorbs power) contributes a negative delivery.
The nudge element is counted in ``dissipated["nudge"]`` when ``beta > 0`` and in
``delivered["nudge"]`` when ``beta < 0`` (then ``-beta (v_out - y)^2 >= 0``), so every
dissipated term is non-negative.  The antisymmetric pair of an edge delivers
``a v_p v_q - a v_q v_p = 0`` in total (``v^T A v = 0`` for antisymmetric A): a
non-reciprocal coupling does no net work at DC; ``delivered["antisymmetric"]``
is that net sum and ``antisymmetric_gross_w`` the sum of ``|a v_p v_q|`` over
both halves, the power its amplifiers move one way and the other.

Injected currents are taken at every free node, as the native engine applies
them; a netlist has a source only at ``circuit.injection_nodes``, so currents
elsewhere should be zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eqspice.circuits.netlist import TIGHT_OPTIONS, antisymmetric_gains, source_name, target_node
from eqspice.circuits.network import Circuit
from eqspice.simulator.diode import diode_current
from eqspice.simulator.engine import FREE, BatchPhase, Nudge
from eqspice.simulator.wired import eliminated

DELIVERED_TERMS = ("inputs", "fixed", "targets", "injected", "nudge", "antisymmetric")
DISSIPATED_TERMS = ("memristors", "lines", "diodes", "loads", "nudge")


@dataclass(frozen=True, eq=False)
class PhasePower:
    """Static power of one phase, per sample, watts.

    Attributes
    ----------
    delivered : dict of str to numpy.ndarray
        Power put into the circuit by each source class, ``[batch]`` W, signed:
        ``inputs`` (input sources), ``fixed`` (bias and diode-bias sources),
        ``targets`` (nudge target sources), ``injected`` (controller currents),
        ``nudge`` (the nudge VCCS when ``beta < 0``: ``-beta |v_out - y|^2``, else 0)
        and ``antisymmetric`` (the VCCS pairs of non-reciprocal couplings, net).
    dissipated : dict of str to numpy.ndarray
        Power taken by each element class, ``[batch]`` W: ``memristors``
        (``sum G dv^2``), ``diodes`` (``sum I_d V_d``), ``loads`` (``G_load sum v_out^2``)
        and ``nudge`` (``beta |v_out - y|^2`` when ``beta > 0``, else 0).
    source_names : tuple of str
        Element names of the voltage sources: inputs, fixed, targets (``Vin_0``, ``Vtgt_out_0``).
    source_current_a : numpy.ndarray
        ``[batch, source]`` current each voltage source pushes into its node,
        amperes (ngspice's ``i(vname)`` is its negative).
    source_power_w : numpy.ndarray
        ``[batch, source]`` power each voltage source delivers, ``v_n J_n``, watts.
    antisymmetric_gross_w : numpy.ndarray
        ``[batch]`` sum of ``|a v_p v_q|`` over both VCCS of every non-reciprocal pair, watts.
    """

    delivered: dict
    dissipated: dict
    source_names: tuple
    source_current_a: np.ndarray
    source_power_w: np.ndarray
    antisymmetric_gross_w: np.ndarray

    @property
    def delivered_w(self) -> np.ndarray:
        """Total delivered power ``[batch]``, watts."""
        return sum(self.delivered[k] for k in DELIVERED_TERMS)

    @property
    def dissipated_w(self) -> np.ndarray:
        """Total dissipated power ``[batch]``, watts; equal to :attr:`delivered_w` (Tellegen)."""
        return sum(self.dissipated[k] for k in DISSIPATED_TERMS)

    def table(self, reduce=np.mean) -> dict[str, float]:
        """Every term reduced over the batch (default: the mean), watts.

        Keys ``delivered.<term>``, ``dissipated.<term>``, ``delivered_w``,
        ``dissipated_w`` and ``antisymmetric_gross_w``.
        """
        out = {f"delivered.{k}": float(reduce(self.delivered[k])) for k in DELIVERED_TERMS}
        out |= {f"dissipated.{k}": float(reduce(self.dissipated[k])) for k in DISSIPATED_TERMS}
        out["delivered_w"] = float(reduce(self.delivered_w))
        out["dissipated_w"] = float(reduce(self.dissipated_w))
        out["antisymmetric_gross_w"] = float(reduce(self.antisymmetric_gross_w))
        return out


def _arrays(circuit: Circuit, g_s, v) -> tuple[np.ndarray, np.ndarray]:
    """``g_s[edge]`` and ``v[batch, node]`` as float arrays, their shapes checked against the circuit."""
    if circuit.amplifiers is not None:
        raise ValueError("the power of the amplifiers' supplies is not modelled; drop network.amplifier_gain")
    g_s = np.asarray(g_s, dtype=float)
    if g_s.shape != (circuit.n_edges,):
        raise ValueError(f"g_s has shape {list(g_s.shape)}; the circuit has {circuit.n_edges} edges")
    v = np.atleast_2d(np.asarray(v, dtype=float))
    n_nodes = len(circuit.node_names)
    if v.ndim != 2 or v.shape[1] != n_nodes:
        raise ValueError(f"v has shape {list(v.shape)}; give [batch, {n_nodes}] volts of circuit.node_names")
    return g_s, v


def phase_power(
    circuit: Circuit,
    g_s: np.ndarray,
    v: np.ndarray,
    nudge: Nudge = FREE,
    gmin_s: float = TIGHT_OPTIONS["gmin"],
) -> PhasePower:
    """Power delivered by every source and dissipated in every element at a settled state.

    Parameters
    ----------
    circuit : Circuit
        The network the voltages belong to.
    g_s : numpy.ndarray
        Conductance of every memristor ``[edge]``, siemens.
    v : numpy.ndarray
        Settled voltages ``[batch, node]`` (or ``[node]``) of ``circuit.node_names``, volts,
        from either engine.
    nudge : Nudge
        What the phase applied: targets ``y`` (V), ``beta_s`` (S), ``injected_a``
        (A into the free nodes) and ``antisymmetric_sign``; default :data:`FREE`.
    gmin_s : float
        GMIN across every junction, siemens (as the engine settled with).

    Returns
    -------
    PhasePower
        Per-sample terms in watts.  With ``J_n`` the current a voltage source pushes
        into its node n (the sum over memristors ``G (v_n - v_m)``, diodes
        ``+-I_d``, antisymmetric VCCS and the nudge leaving n):

        * ``delivered["inputs"] = sum_inputs v_n J_n``, likewise ``fixed`` and ``targets``
          (for a target, ``J = beta (y - v_out)``);
        * ``delivered["injected"] = sum_free v_n I_n``;
        * ``delivered["nudge"] = -min(beta, 0) sum_out (v_out - y)^2``;
        * ``delivered["antisymmetric"] = sum_e a_e (v_p v_q - v_q v_p)`` (zero);
        * ``dissipated["memristors"] = sum_e G_e (v_a - v_b)^2``, with resistive lines
          ``v_a``, ``v_b`` the line voltages at the device's cell;
        * ``dissipated["lines"] = sum_w g_w (v_u - v_w)^2`` over the wire segments and
          driver resistors (:mod:`eqspice.circuits.wires`; 0 for ideal wires);
        * ``dissipated["diodes"] = sum_d I_d(V_d) V_d``;
        * ``dissipated["loads"] = G_load sum_out v_out^2``;
        * ``dissipated["nudge"] = max(beta, 0) sum_out (v_out - y)^2``.

        At a state that satisfies Kirchhoff's current law, Tellegen's theorem
        (sum over all elements of ``V I`` = 0) makes ``delivered_w == dissipated_w``.

    Raises
    ------
    ValueError
        An array's shape does not fit the circuit.

    Examples
    --------
    >>> import numpy as np
    >>> from eqspice.circuits import crossbar
    >>> from eqspice.simulator.native import NativeEngine
    >>> circuit = crossbar(layers=(2, 3, 1))
    >>> g = np.full(circuit.n_edges, 2e-5)
    >>> engine = NativeEngine()
    >>> engine.load(circuit, g)
    >>> p = phase_power(circuit, g, engine.settle(np.array([[0.5, -0.2, -0.5, 0.2]])))
    >>> bool(np.isclose(p.delivered_w, p.dissipated_w, rtol=1e-9, atol=0)[0])
    True
    """
    g_s, v = _arrays(circuit, g_s, v)
    n_nodes = len(circuit.node_names)
    batch = len(v)
    n_in, n_fixed = len(circuit.input_nodes), len(circuit.fixed_nodes)
    phase = BatchPhase.of(circuit, v[:, :n_in], nudge)
    y, beta = np.asarray(phase.targets_v), float(phase.beta_s)

    # node voltages with ground appended, so index -1 reads 0 V; with resistive lines the
    # line nodes' voltages follow the circuit nodes' and every memristor sits between two of them
    lines = None if circuit.wires is None else eliminated(circuit)
    v_ext = v if lines is None else lines.line_voltages(g_s, v)
    v0 = np.hstack([v_ext, np.zeros((batch, 1))])
    leaving = np.zeros((batch, v_ext.shape[1] + 1))  # current leaving each node through the elements

    a, b = circuit.edges.T if lines is None else lines.network.device_ends.T
    dv = v0[:, a] - v0[:, b]
    i_r = g_s * dv
    np.add.at(leaving.T, a, i_r.T)
    np.add.at(leaving.T, b, -i_r.T)
    memristors = (i_r * dv).sum(axis=1)
    wires = np.zeros(batch)
    if lines is not None:  # wire segments and driver resistors
        u, w = lines.network.resistor_ends.T
        dv_w = v0[:, u] - v0[:, w]
        i_w = lines.network.resistor_s * dv_w
        np.add.at(leaving.T, u, i_w.T)
        np.add.at(leaving.T, w, -i_w.T)
        wires = (i_w * dv_w).sum(axis=1)

    diodes = np.zeros(batch)
    if len(circuit.diodes):
        anode, cathode = circuit.diodes.T
        vd = v0[:, anode] - v0[:, cathode]
        area = 1.0 if circuit.diode_area is None else circuit.diode_area
        i_d, _ = diode_current(vd, circuit.diode_model, gmin_s, area)
        np.add.at(leaving.T, anode, i_d.T)
        np.add.at(leaving.T, cathode, -i_d.T)
        diodes = (i_d * vd).sum(axis=1)

    antisymmetric = np.zeros(batch)
    gross = np.zeros(batch)
    if circuit.nonreciprocal is not None:
        gain = antisymmetric_gains(circuit, g_s, phase.antisymmetric_sign)
        into_p = gain * v0[:, b]  # Gf: a V(q) into p
        into_q = -gain * v0[:, a]  # Gb: -a V(p) into q
        np.add.at(leaving.T, a, -into_p.T)
        np.add.at(leaving.T, b, -into_q.T)
        fwd, bwd = v0[:, a] * into_p, v0[:, b] * into_q  # delivered: v_node * current pushed in
        antisymmetric = (fwd + bwd).sum(axis=1)
        gross = (np.abs(fwd) + np.abs(bwd)).sum(axis=1)

    out = circuit.output_index
    v_out = v[:, out]
    loads = circuit.output_load_s * (v_out**2).sum(axis=1)
    error = v_out - y
    i_nudge = beta * error  # from each output through Gnudge to its target node
    nudge_power = (i_nudge * error).sum(axis=1)
    target_current = -i_nudge  # what each target source pushes into its node

    free = circuit.free_slice
    injected = np.zeros(batch)
    if phase.injected_a is not None:
        injected = (v[:, free] * phase.injected_a).sum(axis=1)

    known = slice(0, n_in + n_fixed)
    source_current = np.hstack([leaving[:, known], target_current])
    source_volts = np.hstack([v[:, known], y])
    source_power = source_volts * source_current
    names = tuple(source_name(n) for n in circuit.input_nodes + circuit.fixed_nodes) + tuple(
        source_name(target_node(n)) for n in circuit.output_nodes
    )
    delivered = {
        "inputs": source_power[:, :n_in].sum(axis=1),
        "fixed": source_power[:, n_in : n_in + n_fixed].sum(axis=1),
        "targets": source_power[:, n_in + n_fixed :].sum(axis=1),
        "injected": injected,
        "nudge": -nudge_power if beta < 0 else np.zeros(batch),
        "antisymmetric": antisymmetric,
    }
    dissipated = {
        "memristors": memristors,
        "lines": wires,
        "diodes": diodes,
        "loads": loads,
        "nudge": nudge_power if beta > 0 else np.zeros(batch),
    }
    return PhasePower(delivered, dissipated, names, source_current, source_power, gross)


def static_power_w(
    circuit: Circuit,
    g_s: np.ndarray,
    v: np.ndarray,
    nudge: Nudge = FREE,
    gmin_s: float = TIGHT_OPTIONS["gmin"],
) -> np.ndarray:
    """Power the sources deliver at a settled state, ``[batch]`` watts, from the dissipation alone.

    By Tellegen's theorem :attr:`PhasePower.delivered_w` equals the dissipated sum

        P = sum_e G_e (v_a - v_b)^2 + sum_d I_d(V_d) V_d + G_load sum_out v_out^2 + max(beta, 0) |v_out - y|^2,

    plus ``sum_w g_w (v_u - v_w)^2`` over the resistive lines (and ``v_a``, ``v_b`` at each
    device's cell) when the circuit has them,

    which needs no source currents: the cheap form for a run's accounting
    (:func:`phase_power` scatters every element's current onto its nodes).
    Same parameters as :func:`phase_power`; the state must be settled.
    """
    g_s, v = _arrays(circuit, g_s, v)
    phase = BatchPhase.of(circuit, v[:, : len(circuit.input_nodes)], nudge)
    v0 = np.hstack([v, np.zeros((len(v), 1))])
    total = np.zeros(len(v))
    if circuit.wires is not None:  # resistive lines: each device at its cell, and the lines' own dissipation
        total += sum(eliminated(circuit).dissipated_w(g_s, v).values())
    for group in circuit.groups if circuit.wires is None else ():
        g = g_s[group.slice]
        if group.rows is not None:  # a crossbar: sum G (v_r - v_c)^2 as matrix products
            g = g.reshape(group.shape)
            v_r, v_c = v0[:, list(group.rows)], v0[:, list(group.cols)]
            total += (v_r**2) @ g.sum(axis=1) + (v_c**2) @ g.sum(axis=0) - 2 * ((v_r @ g) * v_c).sum(axis=1)
        else:
            a, b = circuit.edges[group.slice].T
            total += (v0[:, a] - v0[:, b]) ** 2 @ g
    if len(circuit.diodes):
        anode, cathode = circuit.diodes.T
        vd = v0[:, anode] - v0[:, cathode]
        area = 1.0 if circuit.diode_area is None else circuit.diode_area
        total += (diode_current(vd, circuit.diode_model, gmin_s, area)[0] * vd).sum(axis=1)
    v_out = v[:, circuit.output_index]
    total += circuit.output_load_s * (v_out**2).sum(axis=1)
    return total + max(float(phase.beta_s), 0.0) * ((v_out - np.asarray(phase.targets_v)) ** 2).sum(axis=1)
