"""Settling a layered crossbar by nonlinear block Gauss-Seidel over its layers.

In a layered crossbar every free node of layer k couples only to layers k-1 and
k+1, and the diodes join a hidden node to a fixed node.  Given its neighbouring
layers, layer k's nodes are therefore independent: each solves one scalar
equation,

    d_n v_n + sum_j s_j I_j(s_j (v_n - e_j)) = c_n,

``d_n`` its total conductance (the crossbar column below, the row above scaled
by the amplifier's ``A B``, the output load and the nudge), ``c_n`` the current
its neighbours push in, and ``I_j`` the ngspice law of each diode to a fixed
voltage ``e_j`` (``s_j = +1`` where the node is the anode, -1 the cathode).  The
output layer has no diodes: its update is ``c / d`` exactly.

A sweep updates the layers in order, each one exactly (the scalar equations by
Newton with SPICE's junction limiting, to machine precision), so it is block
Gauss-Seidel on the circuit's Kirchhoff equations.  For a conservative circuit
these are the stationarity conditions of a strictly convex co-content (in the
metric of the amplifiers' layer weights), so every sweep lowers it and the
sweeps converge; how fast depends on how strongly a layer couples to the next.
In the Fashion-MNIST classifiers a hidden node sees 1570 input rows and 20
output columns, and a sweep contracts the error about a hundredfold.

A sweep costs two products with each crossbar of size ``batch x rows x cols``
between free layers and one pass over the hidden nodes; the product with the
input crossbar is made once per batch of inputs.  Nothing of size ``n_free^2``
is formed, and a conductance update costs a column and a row sum.

Non-reciprocal couplings (``K_pq = G + a``, ``K_qp = G - a`` on the edge from row p
to column q; :func:`eqspice.circuits.network.with_nonreciprocal`) keep each node's
scalar equation and its total conductance ``d_n`` (the resistors ``G``); only the
currents its neighbours push in change, so the same sweeps settle them with the
crossbars ``G - a`` (into a column from its rows) and ``G + a`` (into a row from its
columns).  There is no co-content then, so nothing guarantees a sweep contracts; a
settle that does not converge reports so and the engine falls back to Newton.
``antisymmetric_sign = -1`` reverses ``a`` between free nodes (the learning phases of
asymmetric EP) and keeps it on the known rows, as the Newton path does.

References
----------
Scellier et al., "A fast algorithm to simulate nonlinear resistive networks",
2024 (exact layer-wise minimisation of the co-content).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from eqspice.circuits.network import Circuit
from eqspice.simulator.diode import diode_current, thermal_voltage
from eqspice.simulator.recycled import Recycled


@dataclass(frozen=True)
class Layer:
    """One layer of free nodes and the crossbar group whose columns they are.

    ``free`` indexes the layer's nodes among the free nodes; ``group`` is the edge
    slice of the crossbar below (``shape`` rows x cols, rows ``lower`` from the layer
    below first, then the known nodes ``known_rows``); ``gain_in`` the forward gain
    of each lower row (1 without amplifiers), ``gain_out`` and ``gain_back`` the
    forward and backward gains of this layer's own amplifiers (1 without).
    ``diode_other`` / ``diode_sign`` / ``diode_area`` ``[node, j]``: the fixed
    voltage at the far end of each node's diode j, +1 anode / -1 cathode / 0 none,
    and its area.
    """

    free: slice
    group: slice
    shape: tuple[int, int]
    lower: int
    known_rows: np.ndarray
    gain_in: np.ndarray
    gain_out: np.ndarray
    gain_back: np.ndarray
    diode_other: np.ndarray
    diode_sign: np.ndarray
    diode_area: np.ndarray

    @property
    def n(self) -> int:
        return self.free.stop - self.free.start


def layered_structure(circuit: Circuit) -> list[Layer] | str:
    """The circuit's layers, or a sentence saying why it is not a layered crossbar the sweeps can settle."""
    if circuit.wires is not None:
        return "resistive wires couple every node of a line"
    amps = circuit.amplifiers
    if amps is not None and not amps.conservative:
        return "amplifier gains that differ from node to node: no co-content to descend"
    if amps is not None and circuit.nonreciprocal is not None:
        return "non-reciprocal couplings with amplifiers"
    if amps is not None and amps.rails_v is not None:
        return "saturating amplifiers"
    k = len(circuit.input_nodes) + len(circuit.fixed_nodes)
    n_free = len(circuit.free_nodes)
    first_amp = k + n_free
    gain_of = np.ones(n_free)
    back_of = np.ones(n_free)
    amp_source = {}
    if amps is not None:
        gain_of[amps.source - k] = amps.forward_gain
        back_of[amps.source - k] = amps.backward_gain
        amp_source = {first_amp + j: int(s) for j, s in enumerate(amps.source)}
    if len(circuit.groups) == 0 or sum(g.stop - g.start for g in circuit.groups) != circuit.n_edges:
        return "edges outside crossbar groups"
    layers: list[Layer] = []
    start = k
    for group in circuit.groups:
        if group.rows is None or group.cols is None or len(group.shape) != 2:
            return f"group {group.name} is not a crossbar"
        cols = np.array(group.cols)
        if not np.array_equal(cols, np.arange(start, start + len(cols))):
            return f"the columns of {group.name} are not the next block of free nodes"
        rows = np.array([amp_source.get(int(r), int(r)) for r in group.rows])
        lower = 0 if not layers else layers[-1].n
        if lower:
            below = layers[-1].free
            if not np.array_equal(rows[:lower], np.arange(below.start, below.stop) + k):
                return f"the first rows of {group.name} are not the layer below, in order"
        if np.any(rows[lower:] >= k):
            return f"a row of {group.name} is a free node of another layer"
        known_rows = rows[lower:]
        free = slice(start - k, start - k + len(cols))
        gain_in = gain_of[layers[-1].free] if layers else np.ones(0)
        layers.append(
            Layer(free, group.slice, group.shape, lower, known_rows, gain_in, gain_of[free], back_of[free], *_EMPTY)
        )
        start += len(cols)
    if start != first_amp:
        return "free nodes outside the crossbars' columns"
    out = circuit.output_index - k
    last = layers[-1].free
    if not np.array_equal(out, np.arange(last.start, last.stop)):
        return "the output nodes are not the last layer"
    return _with_diodes(circuit, layers, k)


_EMPTY = (np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, 0)))


def _with_diodes(circuit: Circuit, layers: list[Layer], k: int) -> list[Layer] | str:
    n_free = len(circuit.free_nodes)
    fixed_v = np.array(circuit.fixed_volts, dtype=float)
    n_in = len(circuit.input_nodes)
    area = np.ones(len(circuit.diodes)) if circuit.diode_area is None else np.asarray(circuit.diode_area, dtype=float)
    ends = []  # (free node, far voltage, sign, area)
    for d, (anode, cathode) in enumerate(circuit.diodes):
        free_a, free_c = k <= anode < k + n_free, k <= cathode < k + n_free
        if free_a == free_c:
            return "a diode between two free nodes (or two known ones)"
        node, other, sign = (anode, cathode, 1.0) if free_a else (cathode, anode, -1.0)
        if 0 <= other < n_in:
            return "a diode to an input node"
        ends.append((node - k, 0.0 if other < 0 else fixed_v[other - n_in], sign, area[d]))
    per_node = np.bincount([e[0] for e in ends], minlength=n_free) if ends else np.zeros(n_free, dtype=int)
    if per_node[layers[-1].free].any():
        return "diodes on the output nodes"
    width = int(per_node.max()) if ends else 0
    other, sign, ar = np.zeros((n_free, width)), np.zeros((n_free, width)), np.ones((n_free, width))
    filled = np.zeros(n_free, dtype=int)
    for node, v, s, a in ends:
        j = filled[node]
        other[node, j], sign[node, j], ar[node, j] = v, s, a
        filled[node] += 1
    return [
        Layer(**{**layer.__dict__, "diode_other": other[layer.free], "diode_sign": sign[layer.free], "diode_area": ar[layer.free]})
        for layer in layers
    ]


_NO_EXP = np.empty((0, 0, 0))
INNER_TOL = 1e-14  # a node's Newton stops at a step this small relative to max(1 V, |v|)
#: Newton steps per node and sweep: one is fastest (measured on 784-1024-10: 2 or more per sweep
#: save one or two sweeps and cost more than they save), as the neighbours move meanwhile anyway.
STEPS_PER_SWEEP = 1
STAGNANT_V = 1e-12  # sweeps whose largest change stops falling below this have reached rounding


@numba.njit(cache=True, error_model="numpy", fastmath={"nsz", "arcp", "contract", "afn"})
def _diode_layer_solve(v, c, d, other, sign, is_a, vte, vcrit, gmin, tol_v, max_inner, cold, exp_start):
    """Newton steps on every node's scalar KCL of one hidden layer, in place; returns the largest change (V).

    ``v, c`` ``[batch, n]`` (V, A); ``d`` ``[n]`` (S); ``other, sign, is_a`` ``[n, j]``.
    At most ``max_inner`` steps per node, fewer once a step is below ``tol_v``
    (relative to 1 V or |v|).  ``exp_start`` ``[batch, n, j]``: ``exp(vj / Vte)`` of every
    junction at the starting ``v`` (not cold), for the first step, computed beforehand by
    whole-array (SIMD) arithmetic; an empty array to compute it here.

    With a junction forward-biased (``y > 0``) and conducting more than the rest of
    the node (its ``dI/dv`` above the node's other conductance), the step is Newton's on the same
    equation written for that junction's voltage, ``y = Vte log1p(N(y) / IS)``
    with ``N`` the current the rest of the node needs it to carry: nearly linear,
    where the exponential form crawls down by one ``Vte`` per step from above.
    Otherwise a plain Newton step, the junction limited as SPICE's pnjlim does.
    ``cold``: ignore ``v`` and start from the node's voltage with its diodes open;
    a junction forward-biased beyond Vcrit there starts instead where its current
    carries the excess at Vcrit (``IS exp(y / Vte) = s (c - d e) - d Vcrit + IS``).
    """
    batch, n = v.shape
    width = other.shape[1]
    knee = -3.0 * vte
    largest = 0.0
    for b in range(batch):
        for i in range(n):
            x0 = v[b, i]
            x = x0
            if cold:
                x = c[b, i] / d[i]
                for j in range(width):
                    s = sign[i, j]
                    if s != 0.0 and s * (x - other[i, j]) > vcrit:
                        excess = s * (c[b, i] - d[i] * other[i, j]) - d[i] * vcrit + is_a[i, j]
                        if excess > is_a[i, j]:  # one fixed-point step from Vcrit: within a few Vte of the root
                            x = other[i, j] + s * vte * np.log(excess / is_a[i, j])
            given = not cold and exp_start.shape[0] > 0
            for step_k in range(max_inner):
                f = d[i] * x - c[b, i]
                df = d[i]
                best, jb, cur_b, g_b = 0.0, -1, 0.0, 0.0  # the most forward-biased junction
                for j in range(width):
                    s = sign[i, j]
                    if s == 0.0:
                        continue
                    vj = s * (x - other[i, j])
                    if vj >= knee:
                        ev = exp_start[b, i, j] if given and step_k == 0 else np.exp(vj / vte)
                        cur = is_a[i, j] * (ev - 1.0)
                        g = is_a[i, j] * ev / vte
                    else:
                        ratio = 3.0 * vte / (vj * np.e)
                        arg = ratio * ratio * ratio
                        cur = -is_a[i, j] * (1.0 + arg)
                        g = is_a[i, j] * 3.0 * arg / vj
                    f += s * (cur + gmin * vj)
                    df += g + gmin
                    if vj > best:
                        best, jb, cur_b, g_b = vj, j, cur, g
                xn = x - f / df
                rest_slope = df - g_b  # S: how the rest of the node's current moves with x
                if jb >= 0 and g_b > rest_slope:
                    s, y, isb = sign[i, jb], best, is_a[i, jb]
                    need = cur_b - s * f  # the current that would balance the node at this x
                    if isb + need > 0.0:
                        gy = y - vte * np.log1p(need / isb)
                        yn = y - gy / (1.0 + vte * rest_slope / (isb + need))
                        room = (isb + need) / rest_slope  # N(y) > -IS holds for y below y + room
                        if yn - y >= room:
                            yn = y + 0.5 * room
                        xn = other[i, jb] + s * yn
                else:
                    for j in range(width):  # junction limiting (pnjlim) on each diode
                        s = sign[i, j]
                        if s == 0.0:
                            continue
                        old = s * (x - other[i, j])
                        new = s * (xn - other[i, j])
                        if new > vcrit and abs(new - old) > 2.0 * vte:
                            if old > 0.0:
                                arg = 1.0 + (new - old) / vte
                                new = old + vte * np.log(arg) if arg > 0.0 else vcrit
                            else:
                                new = vte * np.log(new / vte)
                            xn = other[i, j] + s * new
                step = abs(xn - x)
                x = xn
                if step <= tol_v * max(1.0, abs(x)):
                    break
            v[b, i] = x
            change = abs(x - x0)
            if change > largest:
                largest = change
    return largest


def _error_left(largest: float, previous: float) -> float:
    """The error left after a sweep that moved no node by more than ``largest`` and one before it
    by ``previous``: converging linearly at the rate ``largest / previous``, ``largest^2 / (previous -
    largest)``; infinite after the first sweep (``previous`` infinite: no rate known yet, however small
    the change) and while not contracting."""
    if not largest < previous or previous == np.inf:
        return np.inf
    return largest * largest / (previous - largest)


class LayeredSweep:
    """Block Gauss-Seidel settling of a layered crossbar (see the module docstring).

    Parameters
    ----------
    circuit : a circuit for which :func:`layered_structure` returns layers.
    layers : those layers.
    gmin_s : conductance across every junction, siemens.
    tol_v : settled when the error left, estimated from the last two sweeps' largest
        changes, is below this, volts.
    max_sweeps : sweeps before :meth:`settle` gives up (``settled`` False) and
        :meth:`solve_linear` returns None.
    """

    def __init__(self, circuit: Circuit, layers: list[Layer], gmin_s: float, tol_v: float = 1e-16, max_sweeps: int = 400):
        self.circuit, self.layers = circuit, layers
        self.gmin_s, self.tol_v, self.max_sweeps = gmin_s, tol_v, max_sweeps
        model = circuit.diode_model
        self.vte = model.n * thermal_voltage()
        self.vcrit = self.vte * np.log(self.vte / (np.sqrt(2.0) * model.is_a))
        self.is_a = [model.is_a * layer.diode_area for layer in layers]
        self.n_free = len(circuit.free_nodes)
        self.sweeps = 0
        self.settled = False
        # contiguous known rows as slices: a view, not a gathered copy of the batch's inputs
        self._known_index = [
            slice(int(r[0]), int(r[-1]) + 1) if len(r) and np.array_equal(r, np.arange(r[0], r[-1] + 1)) else r
            for r in (layer.known_rows for layer in layers)
        ]
        self._unit_in = [bool(np.all(layer.gain_in == 1.0)) for layer in layers]
        self._unit_back = [bool(np.all(layer.gain_back == 1.0)) for layer in layers]
        self._drive_key: np.ndarray | None = None
        self._exp_scratch = Recycled(keep=4)  # the warm sweeps' exponentials, one array per batch shape in use

    def set_conductances(self, g_s: np.ndarray) -> None:
        """Views of each crossbar and each node's total conductance (no copies of ``g_s``)."""
        self.g = [g_s[layer.group].reshape(layer.shape) for layer in self.layers]
        up_t = [g[: layer.n].T for layer, g in zip(self.layers, self.g[1:])]  # [upper, this layer]
        #: per antisymmetric sign: the crossbars into each layer's columns from its rows, and into
        #: each layer's nodes from the layer above ([upper, this layer]); the resistors if reciprocal
        self._coupling = {1.0: (self.g, up_t)}
        delta = self.circuit.nonreciprocal
        if delta is not None:
            a = [(delta * g_s)[layer.group].reshape(layer.shape) for layer in self.layers]
            for sign in (1.0, -1.0):
                into_cols = []
                for layer, g, a_l in zip(self.layers, self.g, a):
                    k = g - a_l  # the known rows (inputs, bias lines) keep +a whatever the sign
                    k[: layer.lower] = g[: layer.lower] - sign * a_l[: layer.lower]
                    into_cols.append(k)
                into_rows_t = [(g[: layer.n] + sign * a_l[: layer.n]).T for layer, g, a_l in zip(self.layers, self.g[1:], a[1:])]
                self._coupling[sign] = (into_cols, into_rows_t)
        self._use_sign(1.0)
        self.degree = []
        for i, (layer, g) in enumerate(zip(self.layers, self.g)):
            d = g.sum(axis=0)
            if i + 1 < len(self.layers):
                d = d + layer.gain_out * layer.gain_back * self.g[i + 1][: layer.n].sum(axis=1)
            else:
                d = d + self.circuit.output_load_s
            self.degree.append(d)
        self._drive_key = None

    def _use_sign(self, antisymmetric_sign: float) -> None:
        self._g_in, self._g_up_t = self._coupling.get(antisymmetric_sign, self._coupling[1.0])

    def _known_drive(self, known: np.ndarray) -> list[np.ndarray]:
        """Current each layer's known rows push in ``[batch, n]``.  Kept while the known voltages
        repeat, also as a whole number of copies of the last batch (a rule's nudged phases settled
        in one call)."""
        key = self._drive_key
        if key is not None and key.shape[1:] == known.shape[1:] and len(known) % len(key) == 0:
            repeats = len(known) // len(key)
            if np.array_equal(known.reshape(repeats, *key.shape), np.broadcast_to(key, (repeats, *key.shape))):
                return self._drive if repeats == 1 else [np.tile(d, (repeats, 1)) for d in self._drive]
        self._drive = [known[:, rows] @ g[layer.lower :] for layer, rows, g in zip(self.layers, self._known_index, self._g_in)]
        self._drive_key = np.array(known)
        return self._drive

    def settle(self, known, beta_s: float, targets_v, injected_a, initial_free, out=None, antisymmetric_sign: float = 1.0) -> np.ndarray:
        """Free-node voltages ``[batch, free]`` after the sweeps, written into ``out`` if given (a view
        of the caller's node voltages); :attr:`settled` says whether they settled."""
        batch = len(known)
        self._use_sign(antisymmetric_sign)
        drive = self._known_drive(known)
        v = np.empty((batch, self.n_free)) if out is None else out
        if initial_free is None:
            v[...] = 0.0
        else:
            v[...] = initial_free
        views = [v[:, layer.free] for layer in self.layers]
        last = len(self.layers) - 1
        d_out = self.degree[last] + beta_s
        fixed_out = drive[last] if beta_s == 0 else drive[last] + beta_s * targets_v
        fixed = [*drive[:last], fixed_out]
        if injected_a is not None:
            fixed = [f + injected_a[:, layer.free] for f, layer in zip(fixed, self.layers)]
        c = [np.empty((batch, layer.n)) for layer in self.layers]  # each layer's inflow, reused every sweep
        previous = np.inf
        for sweep in range(self.max_sweeps):
            largest = 0.0
            for i in range(len(self.layers)):
                ci = self._inflow(i, views, fixed[i], c[i])
                if i < last:
                    largest = max(largest, self._hidden(i, views[i], ci, sweep == 0 and initial_free is None))
                else:
                    ci /= d_out
                    largest = max(largest, float(np.abs(ci - views[i]).max(initial=0.0)))
                    views[i][...] = ci
            # a change that no longer falls below 1e-12 V is rounding: the sweeps are done
            if (
                largest <= self.tol_v
                or (largest < 1e-9 and _error_left(largest, previous) <= self.tol_v)
                or (largest >= previous and largest <= STAGNANT_V)
            ):
                self.sweeps, self.settled = sweep + 1, True
                return v
            previous = largest
        self.sweeps, self.settled = self.max_sweeps, False
        return v

    def solve_linear(self, v_free: np.ndarray, rhs: np.ndarray, rtol: float = 1e-15) -> np.ndarray | None:
        """``x[batch, free]`` solving ``J x = rhs`` with ``J`` the free phase's Jacobian at ``v_free``.

        ``J = diag(d + diode conductances) - K`` is symmetric here (reciprocal devices, no
        amplifiers), so this is also ``J^T x = rhs``.  Linear block Gauss-Seidel over the
        layers, the same sweeps as :meth:`settle` with the diodes frozen at ``v_free``;
        stops when the error left is below ``rtol`` of the largest ``|x|``.  None with
        amplifiers (their ``J`` is not symmetric) or if the sweeps do not settle.
        """
        if self.circuit.amplifiers is not None or self.circuit.nonreciprocal is not None:
            return None
        self._use_sign(1.0)
        diag = []
        for layer, d in zip(self.layers, self.degree):
            total = np.broadcast_to(d, (len(rhs), layer.n)).copy()
            if layer.diode_sign.shape[1]:
                active = layer.diode_sign != 0
                vj = layer.diode_sign * (v_free[:, layer.free, None] - layer.diode_other)
                _, g = diode_current(vj, self.circuit.diode_model, self.gmin_s, layer.diode_area)
                total += np.where(active, g, 0.0).sum(axis=2)
            diag.append(total)
        x = [np.zeros((len(rhs), layer.n)) for layer in self.layers]
        fixed = [rhs[:, layer.free] for layer in self.layers]
        c = [np.empty((len(rhs), layer.n)) for layer in self.layers]
        previous = np.inf
        for sweep in range(self.max_sweeps):
            largest = 0.0
            for i in range(len(self.layers)):
                new = self._inflow(i, x, fixed[i], c[i]) / diag[i]
                largest = max(largest, float(np.abs(new - x[i]).max(initial=0.0)))
                x[i] = new
            tol = rtol * max(float(np.abs(xi).max(initial=0.0)) for xi in x)
            if largest <= tol or _error_left(largest, previous) <= tol:
                self.sweeps = sweep + 1
                return np.hstack(x)
            previous = largest
        return None

    def _inflow(self, i: int, v: list[np.ndarray], fixed: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Current into layer ``i``'s nodes from its neighbours ``v[i - 1]``, ``v[i + 1]`` (amplified
        as the circuit has it) and ``fixed`` (known rows, nudge, injected), written into ``out``."""
        layer, upper = self.layers[i], i + 1 < len(self.layers)
        if i > 0:
            below = v[i - 1] if self._unit_in[i] else v[i - 1] * layer.gain_in
            np.matmul(below, self._g_in[i][: layer.lower], out=out)
            out += fixed
            if upper:
                up = v[i + 1] @ self._g_up_t[i]
                out += up if self._unit_back[i] else layer.gain_back * up
        elif upper:
            np.matmul(v[1], self._g_up_t[0], out=out)
            if not self._unit_back[0]:
                out *= layer.gain_back
            out += fixed
        else:  # no hidden layer: the outputs see only known nodes
            out[...] = fixed
        return out

    def _hidden(self, i: int, v: np.ndarray, c: np.ndarray, cold: bool) -> float:
        layer = self.layers[i]
        if layer.diode_sign.shape[1] == 0:
            new = c / self.degree[i]
            change = float(np.abs(new - v).max(initial=0.0))
            v[...] = new
            return change
        if cold:
            exp_start = _NO_EXP
        else:  # the first step's exponentials, by whole-array arithmetic (numpy's SIMD exp), not one by one
            scratch = self._exp_scratch.lend((*v.shape, layer.diode_sign.shape[1]))
            exp_start = np.subtract(v[:, :, None], layer.diode_other, out=scratch)
            exp_start *= layer.diode_sign / self.vte
            with np.errstate(over="ignore"):  # inf, as the kernel's own exp gives
                np.exp(exp_start, out=exp_start)
        return _diode_layer_solve(
            v, c, self.degree[i], layer.diode_other, layer.diode_sign, self.is_a[i],
            self.vte, self.vcrit, self.gmin_s, INNER_TOL, STEPS_PER_SWEEP, cold, exp_start,
        )
