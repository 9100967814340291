"""Bidirectional amplifiers between the layers of a deep crossbar.

A passive resistive layer attenuates: every hidden voltage is a weighted
average of the previous layer's, so signals and nudges fade with depth.  After
every hidden node ``h`` of a deep crossbar sits an amplifier that drives the
next crossbar from its own output node ``a``:

* forward, a voltage amplifier (VCVS) of gain ``A``: ``v_a = A v_h``
  (or, with output rails, the smooth saturation :func:`amplified_voltage`);
* backward, a current amplifier (CCCS) of gain ``B``: the current ``i_a`` that
  the amplifier delivers into the next crossbar is drawn, times ``B``, out of
  ``h``.

Kirchhoff's law at ``h`` then reads ``dE_lower/dv_h + (B / A) dE_upper/dv_h = 0``
(``dE_upper/dv_h = A i_a``): the circuit is the stationary point of
``E_lower + (B / A) E_upper``, energy-based for any gain pair that is the same
on every node of a layer, with layer weight ``B / A``.  ``B = A`` is the ideal
transformer (weight 1), but the upper crossbar then loads ``h`` ``A^2`` times
harder and pins the hidden nodes; the default ``B = 1 / A`` (weight ``1 / A^2``)
lets the forward signal be amplified while the upper crossbar loads ``h`` as it
would without an amplifier.  Equilibrium propagation stays exact when each
crossbar's local update is scaled by its layer's weight relative to the output
layer's (:func:`edge_energy_weights`).

Names (netlist): ``amp<k>_<j>`` is the output node of the amplifier after
``h<k>_<j>``; ``Eamp_<h>`` its forward source, ``Vamp_<h>`` the 0 V source in
series at its output that measures ``i_a``, ``Famp_<h>`` the backward source.

References
----------
Kendall et al., "Training End-to-End Analog Neural Networks with Equilibrium
Propagation", 2020 (bidirectional amplifiers between resistive layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Amplifiers:
    """The amplifiers of a circuit, one per amplified hidden node.

    Attributes
    ----------
    nodes : names of the amplifier output nodes; they follow the free nodes in
        ``circuit.node_names``.
    source : int array, index in ``circuit.node_names`` of the hidden node each amplifier reads.
    forward_gain : float array, voltage gain ``A`` of each amplifier (V/V).
    backward_gain : float array, current gain ``B`` of each amplifier (A/A).
    rails_v : (low, high) output rails in volts (low < 0 < high), or None for a linear amplifier.
    layer_weights : weight of each crossbar group's co-content in the circuit's energy
        relative to the output crossbar's (nominal gains): ``prod (A / B)`` over the
        amplifier layers between the group and the outputs.
    """

    nodes: tuple[str, ...]
    source: np.ndarray
    forward_gain: np.ndarray
    backward_gain: np.ndarray
    rails_v: tuple[float, float] | None
    layer_weights: tuple[float, ...]
    nominal_ratio: np.ndarray

    @property
    def conservative(self) -> bool:
        """Every amplifier's ``B / A`` is its layer's nominal ratio: the circuit has a co-content."""
        return bool(np.allclose(self.backward_gain / self.forward_gain, self.nominal_ratio, rtol=1e-12, atol=0))

    def learning_gains(self) -> tuple[np.ndarray, np.ndarray]:
        """Forward and backward gains of the learning phases of asymmetric EP, ``(A', B')``.

        In the metric of the layer weights ``W`` the coupling between a hidden node h and a
        node m of the next layer is ``W_h B G`` one way and ``W_m A G`` the other; reversing
        its antisymmetric part swaps them: ``A' = B / r`` and ``B' = A r`` with ``r`` the
        layer's nominal ``B / A`` (``A' B' = A B``: the node's own conductance is kept).  The
        learning circuit's Jacobian is then ``W^-1 J^T W``.  Nominal gains: ``A' = A``, ``B' = B``.
        """
        return self.backward_gain / self.nominal_ratio, self.forward_gain * self.nominal_ratio


def amplifier_node(hidden: str) -> str:
    """``h2_5`` -> ``amp2_5``: the output node of the amplifier after a hidden node."""
    return "amp" + hidden[1:]


def rail_constants(gain, rails_v: tuple[float, float]) -> tuple[float, float, np.ndarray, float]:
    """``(mid, half, k, t0)`` of the saturation ``v_a = mid + half tanh(k v_h - t0)`` (see :func:`amplified_voltage`)."""
    lo, hi = rails_v
    mid, half = (hi + lo) / 2, (hi - lo) / 2
    m = mid / half
    return mid, half, np.asarray(gain, dtype=float) / (half * (1 - m * m)), float(np.arctanh(m))


def amplified_voltage(v_h: np.ndarray, gain: np.ndarray, rails_v: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Output voltage of the forward amplifier and its derivative ``dv_a/dv_h``.

    Linear: ``v_a = A v_h``.  With rails ``(lo, hi)``, ``lo < 0 < hi``:

        v_a = mid + half tanh(k v_h - t0),   mid = (hi + lo) / 2,  half = (hi - lo) / 2,
        t0 = atanh(mid / half),               k = A / (half (1 - (mid / half)^2)),

    one analytic function that is 0 at 0 V with slope ``A`` there and approaches
    each rail (for symmetric rails ``hi tanh(A v_h / hi)``).  The netlist writes the same
    expression as a behavioural source, so both engines settle the same amplifier.
    """
    if rails_v is None:
        return gain * v_h, np.broadcast_to(gain, np.shape(v_h)).astype(float)
    mid, half, k, t0 = rail_constants(gain, rails_v)
    t = np.tanh(k * v_h - t0)
    return mid + half * t, half * k * (1.0 - t * t)


def edge_energy_weights(circuit) -> np.ndarray | None:
    """Weight of every edge's co-content term relative to the output crossbar's, or None (all 1).

    With amplifiers, the steady state is stationary for ``sum_k w_k E_k + w_L beta L``
    (``E_k`` the co-content of crossbar k); the loss gradient of a device of crossbar k
    is ``(w_k / w_L) dE_k/dG`` contrasted across phases.
    """
    amplifiers = circuit.amplifiers
    if amplifiers is None:
        return None
    weights = np.ones(circuit.n_edges)
    for group, w in zip(circuit.groups, amplifiers.layer_weights):
        weights[group.slice] = w
    return weights
