"""Settling time and energy of a phase, with a capacitance from every free node to ground.

When a phase starts, its sources (inputs, targets, nudge, injected currents)
switch at once to the new values and the free nodes move from the previous
state ``v_start`` to the new steady state ``v_end``, at a rate set by the node
capacitances ``C`` (farads) and the circuit's conductances:

    C dv/dt = -R(v),

``R_n`` the current leaving free node n through the elements.  Near ``v_end``
the dynamics are linear: with ``x = v - v_end`` on the free nodes,

    C dx/dt = -J x,   x(t) = exp(-C^-1 J t) x0,   x0 = v_start - v_end,

``J = dR/dv`` the Kirchhoff-current-law Jacobian at ``v_end`` (memristors, output
loads, the nudge conductance ``beta`` at the outputs, the non-reciprocal VCCS
and the diodes' small-signal conductances).

**Settling criterion.**  With the reference ``m = max_n |x0_n|`` (the largest
step of a free node), a phase has settled at time ``t_s`` when, from ``t_s`` on,
every free node stays within ``tolerance * m`` of its new steady state:

    t_s = sup { t >= 0 : max_n |x_n(t)| > tolerance * m }

(0 if the step is zero).  A node that dips into the band and leaves it again
has not settled.  A single RC node (conductance G, capacitance C) gives
``t_s = tau ln(1 / tolerance)``, ``tau = C / G``.  ngspice's transient
(:func:`ngspice_settling_time`) is judged by the same criterion.

**Energy of a phase.**  With the new sources held constant, the sources deliver
the static power ``P_static`` (:func:`eqspice.simulator.power.phase_power` at
``v_end``) plus, over the whole transient, the switching energy

    E_switch = sum_n v_end_n C_n (v_end_n - v_start_n) = sum_n v_end_n dQ_n,

the charge ``dQ_n`` moved onto each node capacitor, delivered at the node's
final voltage.  Of it, ``sum_n C_n (v_end_n^2 - v_start_n^2) / 2`` is stored on
the capacitors and ``sum_n C_n (v_end_n - v_start_n)^2 / 2`` dissipated in the
conductances on top of the static power.  The energy of a phase that lasts
until it has settled is then

    E_phase = P_static t_s + E_switch.

Assumptions: capacitors from the free nodes to ground only (driven nodes are
held by ideal sources); a linear reciprocal network, where both statements are
exact (``integral x^T J x dt = x0^T C x0 / 2`` since ``J`` is symmetric); for
diodes, the small-signal (linearised) dynamics; ``E_switch`` counts the whole
transient, of which the part after ``t_s`` is of order ``tolerance`` of it.
``E_switch`` may be negative: capacitors that discharge towards 0 V give energy back.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

from eqspice.circuits.netlist import TIGHT_OPTIONS, antisymmetric_gains, render_netlist
from eqspice.circuits.network import Circuit
from eqspice.simulator.diode import diode_current
from eqspice.simulator.engine import FREE, BatchPhase, Nudge
from eqspice.simulator.ngspice.rawfile import read_rawfile
from eqspice.simulator.power import static_power_w
from eqspice.simulator.wired import eliminated

#: Time points of the grid on which the last exit from the band is first located.
GRID_POINTS = 4096

#: Times (geometric, ratio about 1.2) on which the modal bound first holds (the grid's end).
LADDER_POINTS = 80


def _states(circuit: Circuit, v_start, v_end) -> tuple[np.ndarray, np.ndarray]:
    n_nodes = len(circuit.node_names)
    out = []
    for name, v in (("v_start", v_start), ("v_end", v_end)):
        v = np.atleast_2d(np.asarray(v, dtype=float))
        if v.ndim != 2 or v.shape[1] != n_nodes:
            raise ValueError(f"{name} has shape {list(v.shape)}; give [batch, {n_nodes}] volts of circuit.node_names")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name} must be finite (volts)")
        out.append(v)
    if out[0].shape != out[1].shape:
        raise ValueError(f"v_start has shape {list(out[0].shape)} and v_end {list(out[1].shape)}; give the same batch")
    return out[0], out[1]


def _capacitances(circuit: Circuit, capacitance_f) -> np.ndarray:
    n_free = len(circuit.free_nodes)
    try:
        c = np.asarray(capacitance_f, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"capacitance_f = {capacitance_f!r}: give farads, a number or one per free node") from None
    if c.ndim == 0:
        c = np.full(n_free, float(c))
    if c.shape != (n_free,):
        raise ValueError(f"capacitance_f has shape {list(c.shape)}; give a number or [{n_free}] farads (one per free node)")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError("capacitance_f must be finite and > 0 (farads)")
    return c


def _tolerance(tolerance) -> float:
    try:
        tol = float(tolerance)
    except (TypeError, ValueError):
        raise ValueError(f"tolerance = {tolerance!r}: give a fraction in (0, 1)") from None
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tolerance = {tolerance!r}: give a fraction of the step in (0, 1)")
    return tol


def phase_jacobian(
    circuit: Circuit, g_s: np.ndarray, v: np.ndarray, nudge: Nudge = FREE, gmin_s: float = TIGHT_OPTIONS["gmin"]
) -> np.ndarray:
    """``J[batch, n, m] = dR_n / dv_m`` on the free nodes at ``v[batch, node]``, siemens.

    ``R_n`` is the current leaving free node n: memristors, output loads, the nudge
    ``beta_s`` at every output, the antisymmetric VCCS (``+a v_q`` into p, ``-a v_p``
    into q, the free-free ones times ``nudge.antisymmetric_sign``) and every diode's
    small-signal conductance ``dI_d/dV_d`` (GMIN and instance area included).

    With resistive lines (``circuit.wires``) the line nodes carry no capacitance
    (``network.node_capacitance_f`` sits on the circuit's free nodes), so the lines
    follow the free nodes instantly and their exact elimination
    (:class:`eqspice.simulator.wired.WireElimination`) gives the linear part.
    """
    if circuit.amplifiers is not None:
        raise ValueError("settling and the KCL Jacobian with amplifiers are not modelled; drop network.amplifier_gain")
    g_s = np.asarray(g_s, dtype=float)
    v = np.atleast_2d(np.asarray(v, dtype=float))
    n = len(circuit.node_names)
    free = np.arange(circuit.free_slice.start, circuit.free_slice.stop)
    n_free = len(free)
    position = np.full(n + 1, -1)  # index among the free nodes; -1 for driven nodes and ground (index -1 or n)
    position[free] = np.arange(n_free)
    p, q = position[circuit.edges.T]
    a_s = np.zeros(circuit.n_edges) if circuit.nonreciprocal is None else antisymmetric_gains(
        circuit, g_s, nudge.antisymmetric_sign
    )
    out = position[circuit.output_index]
    if circuit.wires is not None:  # resistive lines, capacitance-free: eliminated onto the free nodes
        if circuit.nonreciprocal is not None and nudge.antisymmetric_sign != 1:
            raise ValueError(
                "reversed antisymmetric couplings with resistive wires are not modelled; "
                "set the wire and driver resistances to 0"
            )
        y = eliminated(circuit).reduce(g_s)[0].copy()  # memristors, lines, loads and VCCS
        y[out, out] += nudge.beta_s
    else:
        # only the free-free block: an edge to a driven node adds its conductance to the diagonal alone
        y = np.zeros((n_free, n_free))
        y[np.diag_indices(n_free)] = np.bincount(p[p >= 0], g_s[p >= 0], n_free) + np.bincount(q[q >= 0], g_s[q >= 0], n_free)
        both = (p >= 0) & (q >= 0)
        np.add.at(y, (p[both], q[both]), -(g_s + a_s)[both])
        np.add.at(y, (q[both], p[both]), -(g_s - a_s)[both])
        y[out, out] += circuit.output_load_s + nudge.beta_s
    jac = np.broadcast_to(y, (len(v), n_free, n_free)).copy()
    if len(circuit.diodes):
        d = circuit.diodes.copy()
        d[d < 0] = n
        v_all = np.hstack([v, np.zeros((len(v), 1))])
        area = 1.0 if circuit.diode_area is None else circuit.diode_area
        _, g_d = diode_current(v_all[:, d[:, 0]] - v_all[:, d[:, 1]], circuit.diode_model, gmin_s, area)
        for k, (an, ca) in enumerate(d):
            i, j = position[an], position[ca]
            if i >= 0:
                jac[:, i, i] += g_d[:, k]
            if j >= 0:
                jac[:, j, j] += g_d[:, k]
            if i >= 0 and j >= 0:
                jac[:, i, j] -= g_d[:, k]
                jac[:, j, i] -= g_d[:, k]
    return jac


def _modes(jac: np.ndarray, c: np.ndarray, x0: np.ndarray):
    """Rates ``lam[k]`` (1/s), mode shapes ``V[n, k]`` and weights ``w[k]`` with ``x(t) = V (w exp(-lam t))``."""
    s = c**-0.5
    if np.allclose(jac, jac.T, rtol=1e-12, atol=0.0):
        # reciprocal: C^-1/2 J C^-1/2 is symmetric, real rates, orthogonal modes
        lam, u = np.linalg.eigh(s[:, None] * (0.5 * (jac + jac.T)) * s[None, :])
        shapes = s[:, None] * u
        weights = u.T @ (x0 / s)
        return lam, shapes, weights
    lam, shapes = np.linalg.eig(jac / c[:, None])
    weights = np.linalg.solve(shapes, x0.astype(complex))
    return lam, shapes, weights


def _settle_one(lam, shapes, weights, band, grid_points: int = GRID_POINTS) -> float:
    """The last time ``max_n |x_n(t)|`` exceeds ``band``, from the modal expansion."""
    rate = lam.real
    if np.any(rate <= 0):
        return float("inf")  # a mode that does not decay: the phase never settles
    amplitude = np.abs(shapes * weights[None, :])  # |V_nk w_k|

    def excess(t):
        x = shapes @ (weights * np.exp(-lam * t))
        return float(np.abs(x.real).max()) - band

    # max_n sum_k |V_nk w_k| exp(-Re lam_k t) >= max_n |x_n(t)| decreases in t; it is below the band
    # from t_top = ln(A / band) / min Re lam on (A its value at 0): the first time of a geometric
    # ladder up to t_top where it holds is a time beyond which the phase has settled for sure
    total = amplitude.sum(axis=1).max()
    if total <= band:
        return 0.0
    t_top = np.log(total / band) / rate.min()
    ladder = np.append(np.geomspace(1e-6 * t_top, t_top, LADDER_POINTS), 1.01 * t_top)  # the last holds for sure
    holds = (amplitude @ np.exp(-np.outer(rate, ladder))).max(axis=0) <= band
    t_hi = ladder[np.argmax(holds)] if holds.any() else ladder[-1]
    grid = np.linspace(0.0, t_hi, grid_points)
    x = (shapes * weights[None, :]) @ np.exp(-np.outer(lam, grid))  # [node, time], one matrix product
    outside = np.flatnonzero(np.abs(x.real).max(axis=0) > band)
    if len(outside) == 0:
        return 0.0
    last = outside[-1]
    if last == len(grid) - 1:
        return t_hi
    a, b = grid[last], grid[last + 1]
    if excess(a) <= 0 or excess(b) > 0:  # the grid's product and the exact sum differ in the last bits
        return float(b)
    return brentq(excess, a, b, xtol=1e-300, rtol=4 * np.finfo(float).eps)


def settling_time(
    circuit: Circuit,
    g_s: np.ndarray,
    v_start: np.ndarray,
    v_end: np.ndarray,
    capacitance_f,
    tolerance: float = 0.01,
    nudge: Nudge = FREE,
    gmin_s: float = TIGHT_OPTIONS["gmin"],
    grid_points: int = GRID_POINTS,
) -> np.ndarray:
    """Settling time of a phase under the linearised dynamics ``C dx/dt = -J x``, seconds per sample.

    Parameters
    ----------
    circuit : Circuit
        The network.
    g_s : numpy.ndarray
        Conductance of every memristor ``[edge]``, siemens.
    v_start : numpy.ndarray
        The state the phase starts from, ``[batch, node]`` (or ``[node]``) volts of
        ``circuit.node_names``: the previous sample's free state for a free phase,
        the free state for a nudged one.  Only its free nodes are read: the inputs
        and sources switch at once to the new phase's values.
    v_end : numpy.ndarray
        The new phase's steady state, ``[batch, node]`` volts, from either engine.
    capacitance_f : float or numpy.ndarray
        Capacitance from every free node to ground, farads: one number or ``[free]``.
    tolerance : float
        The band, a fraction in (0, 1) of the largest step of a free node.
    nudge : Nudge
        What the new phase applies (``beta_s`` enters ``J`` at the outputs,
        ``antisymmetric_sign`` the non-reciprocal couplings); default :data:`FREE`.
    gmin_s : float
        GMIN across every junction, siemens.
    grid_points : int
        Time points on which the last exit is first located (at least 2); fewer are
        faster and can miss an excursion out of the band shorter than the grid's step.

    Returns
    -------
    numpy.ndarray
        ``t_s[batch]``, seconds: with ``x = v - v_end`` on the free nodes and
        ``m = max_n |x_n(0)|``, the last time ``max_n |x_n(t)| > tolerance * m``;
        from then on every free node stays within the band.  0 for a zero step;
        ``inf`` if a mode does not decay (``J`` not stable, e.g. a large ``-beta``).

    Raises
    ------
    ValueError
        One line naming the parameter: ``capacitance_f`` not finite and > 0 or of the
        wrong shape, ``tolerance`` outside (0, 1), or states of the wrong shape.

    Notes
    -----
    ``x(t) = exp(-C^-1 J t) x0`` is evaluated through the eigen-decomposition of
    ``C^-1 J`` (of the symmetric ``C^-1/2 J C^-1/2`` for a reciprocal circuit).  The
    modal bound ``max_n sum_k |V_nk w_k| exp(-Re(lam_k) t)`` gives a time beyond which
    the band holds; the last exit before it is found on a grid of
    ``grid_points`` times (default :data:`GRID_POINTS`) and refined by Brent's method on the exact expression.

    Examples
    --------
    >>> import numpy as np
    >>> from eqspice.circuits import circuit_from_graph
    >>> import networkx as nx
    >>> rc = circuit_from_graph(nx.Graph([("in", "out")]), inputs=["in"], outputs=["out"])
    >>> t = settling_time(rc, np.array([1e-4]), [[1.0, 0.0]], [[1.0, 1.0]], 1e-12, tolerance=0.01)
    >>> bool(np.isclose(t[0], 1e-8 * np.log(100)))
    True
    """
    v_start, v_end = _states(circuit, v_start, v_end)
    c = _capacitances(circuit, capacitance_f)
    tol = _tolerance(tolerance)
    if int(grid_points) != grid_points or grid_points < 2:
        raise ValueError(f"grid_points = {grid_points!r}: give an integer of at least 2")
    g_s = np.asarray(g_s, dtype=float)
    if g_s.shape != (circuit.n_edges,):
        raise ValueError(f"g_s has shape {list(g_s.shape)}; the circuit has {circuit.n_edges} edges")
    if not isinstance(nudge, Nudge):
        raise TypeError(f"nudge: give a Nudge or FREE, not {type(nudge).__name__}")
    free = circuit.free_slice
    x0 = v_start[:, free] - v_end[:, free]
    jac = phase_jacobian(circuit, g_s, v_end, nudge, gmin_s)
    out = np.zeros(len(x0))
    for b in range(len(x0)):
        m = np.abs(x0[b]).max()
        if m == 0:
            continue
        lam, shapes, weights = _modes(jac[b], c, x0[b])
        out[b] = _settle_one(lam, shapes, weights, tol * m, grid_points)
    return out


def switching_energy_j(circuit: Circuit, capacitance_f, v_start: np.ndarray, v_end: np.ndarray) -> np.ndarray:
    """Energy the sources deliver beyond the static power to move the node charges, joules per sample.

    ``E_switch = sum_n v_end_n C_n (v_end_n - v_start_n)``, over the free nodes: the charge
    ``dQ_n = C_n (v_end_n - v_start_n)`` delivered at the final node voltage.  It splits
    into the change of the stored energy, ``sum_n C_n (v_end_n^2 - v_start_n^2) / 2``, and
    the extra dissipation of the transient, ``sum_n C_n (v_end_n - v_start_n)^2 / 2``.
    Exact for a linear reciprocal network with capacitors to ground (then independent
    of the conductances); for diodes, to first order in the step.  The energy of a
    phase is ``E = P_static * t_s + E_switch`` (:func:`settling_time`,
    :func:`eqspice.simulator.power.phase_power`).

    Parameters
    ----------
    circuit : Circuit
        The network.
    capacitance_f : float or numpy.ndarray
        Capacitance from every free node to ground, farads: one number or ``[free]``.
    v_start, v_end : numpy.ndarray
        States ``[batch, node]`` volts before and after the phase (as for :func:`settling_time`).

    Returns
    -------
    numpy.ndarray
        ``[batch]`` joules; negative when the capacitors give energy back.

    Examples
    --------
    Charging a capacitor C from 0 V to V takes ``C V^2`` from the source, half of it stored:

    >>> import numpy as np, networkx as nx
    >>> from eqspice.circuits import circuit_from_graph
    >>> rc = circuit_from_graph(nx.Graph([("in", "out")]), inputs=["in"], outputs=["out"])
    >>> float(switching_energy_j(rc, 1e-12, [[2.0, 0.0]], [[2.0, 2.0]])[0])
    4e-12
    """
    v_start, v_end = _states(circuit, v_start, v_end)
    c = _capacitances(circuit, capacitance_f)
    free = circuit.free_slice
    return (v_end[:, free] * c * (v_end[:, free] - v_start[:, free])).sum(axis=1)


@dataclass(frozen=True, eq=False)
class PhaseCost:
    """Time and energy of one phase that runs until it has settled, per sample.

    Attributes
    ----------
    settling_sec : numpy.ndarray
        ``t_s[batch]``, seconds (:func:`settling_time`).
    static_w : numpy.ndarray
        ``P_static[batch]``, the power the sources deliver at the new steady state, watts
        (:func:`eqspice.simulator.power.static_power_w`).
    switching_j : numpy.ndarray
        ``E_switch[batch]``, joules (:func:`switching_energy_j`).
    """

    settling_sec: np.ndarray
    static_w: np.ndarray
    switching_j: np.ndarray

    @property
    def energy_j(self) -> np.ndarray:
        """``E_phase = P_static t_s + E_switch`` per sample, joules."""
        return self.static_w * self.settling_sec + self.switching_j


def phase_cost(
    circuit: Circuit,
    g_s: np.ndarray,
    v_start: np.ndarray,
    v_end: np.ndarray,
    capacitance_f,
    tolerance: float = 0.01,
    nudge: Nudge = FREE,
    grid_points: int = GRID_POINTS,
) -> PhaseCost:
    """Settling time, static power and switching energy of a phase, per sample.

    ``E_phase = P_static t_s + E_switch``, with ``t_s`` from :func:`settling_time`,
    ``P_static`` the delivered power at ``v_end`` (:func:`eqspice.simulator.power.static_power_w`,
    equal to :func:`~eqspice.simulator.power.phase_power`'s ``delivered_w``) and ``E_switch`` from :func:`switching_energy_j`.

    Parameters
    ----------
    circuit, g_s, v_start, v_end, capacitance_f, tolerance, nudge, grid_points
        As for :func:`settling_time`.

    Returns
    -------
    PhaseCost
    """
    t_s = settling_time(circuit, g_s, v_start, v_end, capacitance_f, tolerance, nudge, grid_points=grid_points)
    static = static_power_w(circuit, g_s, v_end, nudge)
    return PhaseCost(t_s, static, switching_energy_j(circuit, capacitance_f, v_start, v_end))


def _fmt(x: float) -> str:
    return repr(float(x))


def settling_netlist(
    circuit: Circuit,
    g_s: np.ndarray,
    v_start: np.ndarray,
    inputs_v: np.ndarray,
    capacitance_f,
    stop_sec: float,
    step_sec: float,
    nudge: Nudge = FREE,
    targets_v: np.ndarray | None = None,
    injected_a: np.ndarray | None = None,
    options: dict | None = None,
) -> str:
    """The SPICE text of one sample's phase transient.

    The new phase's sources (``inputs_v``, the nudge), a capacitor ``C<node> <node> 0 <c>``
    at every free node, ``.ic v(<node>)=`` the free nodes of ``v_start[node]`` (held
    during the initial operating point, then released) and
    ``.tran step_sec stop_sec 0 step_sec``, the largest internal step ``step_sec``.
    """
    c = _capacitances(circuit, capacitance_f)
    free = circuit.free_nodes
    start = np.asarray(v_start, dtype=float)[circuit.free_slice]
    lines = ["* settling of a phase: node capacitors to ground, free nodes start at the previous state"]
    lines += [f"C{n} {n} 0 {_fmt(cn)}" for n, cn in zip(free, c)]
    lines += [".ic " + " ".join(f"v({n})={_fmt(v)}" for n, v in zip(free[i : i + 6], start[i : i + 6])) for i in range(0, len(free), 6)]
    lines.append(f".tran {_fmt(step_sec)} {_fmt(stop_sec)} 0 {_fmt(step_sec)}")
    opts = {"reltol": 1e-6, "abstol": 1e-15, "vntol": 1e-9, "gmin": TIGHT_OPTIONS["gmin"]} if options is None else options
    return render_netlist(
        circuit,
        g_s,
        inputs_v=inputs_v,
        targets_v=targets_v,
        beta_s=nudge.beta_s,
        analysis="\n".join(lines),
        options=opts,
        antisymmetric_sign=nudge.antisymmetric_sign,
        injected_a=injected_a,
    )


def band_exit_time(t: np.ndarray, x: np.ndarray, band: float) -> float:
    """Last time ``max_n |x[:, n]|`` is above ``band``, linearly interpolated between the time points ``t``.

    0 if it never is; ``inf`` if it still is at the last point.
    """
    excess = np.abs(x).max(axis=1) - band
    outside = np.flatnonzero(excess > 0)
    if len(outside) == 0:
        return 0.0
    k = outside[-1]
    if k == len(t) - 1:
        return float("inf")
    # the node that last leaves the band between t[k] and t[k+1] sets the crossing
    crossings = []
    for n in range(x.shape[1]):
        a, b = abs(x[k, n]) - band, abs(x[k + 1, n]) - band
        if a > 0 >= b:
            crossings.append(t[k] + (t[k + 1] - t[k]) * a / (a - b))
    return float(max(crossings)) if crossings else float(t[k + 1])


def ngspice_settling_time(
    circuit: Circuit,
    g_s: np.ndarray,
    v_start: np.ndarray,
    v_end: np.ndarray,
    capacitance_f,
    tolerance: float = 0.01,
    nudge: Nudge = FREE,
    stop_sec: float | None = None,
    points: int = 20000,
    ngspice: str = "ngspice",
    timeout_sec: float = 120.0,
) -> np.ndarray:
    """Settling time measured by an ngspice transient, seconds per sample, by the criterion of :func:`settling_time`.

    Each sample's netlist (:func:`settling_netlist`) runs as ``ngspice -b -r out.raw``; the
    free nodes' waveforms (read by :func:`~eqspice.simulator.ngspice.rawfile.read_rawfile`)
    minus ``v_end`` give ``x(t)``, with ``m = max_n |v_start_n - v_end_n|``, and the last exit
    of ``max_n |x_n|`` from ``tolerance * m`` is interpolated linearly between time points.

    Parameters
    ----------
    circuit, g_s, v_start, v_end, capacitance_f, tolerance, nudge
        As for :func:`settling_time`; the phase's input voltages are read from ``v_end``.
    stop_sec : float or None
        Length of the transient, seconds; None: three times the slowest time constant of the
        linearised dynamics times ``ln(1 / tolerance)``, and no shorter than twice the native
        settling time.
    points : int
        The largest internal step is ``stop_sec / points``.
    ngspice : str
        The ngspice executable.
    timeout_sec : float
        Longest wait for one run, seconds.

    Returns
    -------
    numpy.ndarray
        ``[batch]`` seconds; ``inf`` where the transient had not settled at ``stop_sec``.

    Raises
    ------
    ValueError
        Bad arguments (as :func:`settling_time`).
    RuntimeError
        ngspice is missing or fails.
    """
    v_start, v_end = _states(circuit, v_start, v_end)
    c = _capacitances(circuit, capacitance_f)
    tol = _tolerance(tolerance)
    exe = shutil.which(ngspice)
    if exe is None:
        raise RuntimeError(f"ngspice executable {ngspice!r} not found on PATH")
    n_in = len(circuit.input_nodes)
    phase = BatchPhase.of(circuit, v_end[:, :n_in], nudge)
    free = circuit.free_slice
    out = np.zeros(len(v_end))
    if stop_sec is None:
        native = settling_time(circuit, g_s, v_start, v_end, c, tol, nudge)
        jac = phase_jacobian(circuit, g_s, v_end, nudge)
    for b in range(len(v_end)):
        x0 = v_start[b, free] - v_end[b, free]
        m = np.abs(x0).max()
        if m == 0:
            continue
        stop = stop_sec
        if stop is None:
            rate = np.linalg.eigvals(jac[b] / c[:, None]).real.min()
            stop = 3.0 * np.log(1.0 / tol) / rate if rate > 0 else 1.0
            if np.isfinite(native[b]):
                stop = max(stop, 2.0 * native[b])
        step = stop / points
        text = settling_netlist(
            circuit,
            g_s,
            v_start[b],
            phase.inputs_v[b],
            c,
            stop,
            step,
            nudge,
            targets_v=phase.targets_v[b],
            injected_a=None if phase.injected_a is None else phase.injected_a[b],
        )
        with tempfile.TemporaryDirectory(prefix="eqspice-settling-") as tmp:
            cir, raw = Path(tmp) / "phase.cir", Path(tmp) / "phase.raw"
            cir.write_text(text)
            run = subprocess.run(
                [exe, "-b", "-r", str(raw), str(cir)], capture_output=True, text=True, timeout=timeout_sec
            )
            if run.returncode != 0 or not raw.exists():
                tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"ngspice transient of sample {b} failed: {tail[0]}")
            vectors = read_rawfile(raw)
        t = vectors["time"]
        x = np.stack([vectors[f"v({n.lower()})"] for n in circuit.free_nodes], axis=1) - v_end[b, free]
        out[b] = band_exit_time(t, x, tol * m)
    return out
