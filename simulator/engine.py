"""The interface every engine implements, what a phase applies, and the errors engines raise.

An engine holds one circuit with its conductances and settles it for a batch of
input voltages, optionally nudged towards target voltages:

* free phase: ``settle(inputs_v)``;
* nudged phase: ``settle(inputs_v, Nudge(targets_v=y, beta_s=beta))``, the
  circuit then minimises ``E(v) + beta * |v_out - y|^2 / 2`` (docs/physics.md, "The nudge");
* the -beta phase of the centred estimator: ``nudge.opposite()``;
* several phases of one batch: ``settle_phases(inputs_v, [FREE, plus, plus.opposite()])``.

It returns the voltage of every node of ``circuit.node_names``, shaped
``v[batch, node]``, in volts.
"""

from __future__ import annotations

import dataclasses
import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from eqspice.circuits.network import Circuit


class EngineError(RuntimeError):
    """An engine could not settle a sample; the message names sample and phase."""


class SimulatorCrash(EngineError):
    """The simulator process died or hung; the engine has started a fresh one."""


class ConvergenceError(EngineError):
    """The operating point did not converge, even with gmin and source stepping."""


def _frozen_array(value, field: str, per_sample: str, unit: str) -> np.ndarray | None:
    """``value`` as a read-only float array of at most two dimensions, or None; one-line errors."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.dtype == float and value.flags.owndata and not value.flags.writeable:
        array = value  # already frozen (e.g. passed on by Nudge.opposite): no copy
    else:
        try:
            array = np.array(value, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"Nudge.{field} is not an array of numbers ({unit})") from None
        array.flags.writeable = False
    if array.ndim > 2:
        raise ValueError(f"Nudge.{field} has {array.ndim} dimensions; give [batch, {per_sample}] or [{per_sample}] {unit}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"Nudge.{field} contains NaN or infinity; give finite {unit}")
    return array


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class Nudge:
    """What a phase applies to the circuit beyond its inputs.

    The free phase applies nothing (:data:`FREE`).  A nudged phase of
    equilibrium propagation connects every output to a target voltage through
    a conductance ``beta_s``; the controller may also drive constant currents
    into free nodes and, in a non-reciprocal circuit, reverse the
    antisymmetric couplings (asymmetric EP).  A nudge is frozen and its arrays
    read-only, so one nudge can serve several calls; nudges compare by
    identity.

    Parameters
    ----------
    targets_v : numpy.ndarray or None
        Target voltage of every output, ``[batch, output]`` or ``[output]``
        (the same for every sample), volts; None is 0 V.  Read only where
        ``beta_s`` is not 0.
    beta_s : float
        Nudge conductance from every output to its target, siemens: 0 in the
        free phase, positive in the +beta phase, negative in the -beta phase.
    injected_a : numpy.ndarray or None
        Constant current into every free node (``circuit.free_nodes``),
        ``[batch, free]`` or ``[free]``, amperes; None is no current.
    antisymmetric_sign : float
        +1, or -1 to reverse the antisymmetric (non-reciprocal) couplings
        between free nodes.  A reciprocal circuit ignores it.

    Raises
    ------
    ValueError
        A field that is not finite, an array of more than two dimensions, or a
        sign other than +1 or -1; the message names the field.

    Examples
    --------
    >>> plus = Nudge(targets_v=[[0.05, -0.05]], beta_s=1e-5)
    >>> plus.opposite().beta_s
    -1e-05
    >>> FREE.phase, plus.phase, plus.opposite().phase
    ('free', 'nudged (+beta)', 'nudged (-beta)')
    """

    targets_v: np.ndarray | None = None
    beta_s: float = 0.0
    injected_a: np.ndarray | None = None
    antisymmetric_sign: float = 1.0

    def __post_init__(self) -> None:
        try:
            beta_s = float(self.beta_s)
        except (TypeError, ValueError):
            raise ValueError(f"Nudge.beta_s = {self.beta_s!r}: give a conductance in siemens") from None
        if not math.isfinite(beta_s):
            raise ValueError(f"Nudge.beta_s = {beta_s!r}: give a finite conductance in siemens")
        if self.antisymmetric_sign not in (1, -1):
            raise ValueError(f"Nudge.antisymmetric_sign = {self.antisymmetric_sign!r}: use +1 or -1")
        # frozen: the normalised values go in through object.__setattr__
        object.__setattr__(self, "beta_s", beta_s)
        object.__setattr__(self, "antisymmetric_sign", float(self.antisymmetric_sign))
        object.__setattr__(self, "targets_v", _frozen_array(self.targets_v, "targets_v", "output", "volts"))
        object.__setattr__(self, "injected_a", _frozen_array(self.injected_a, "injected_a", "free", "amperes"))

    def opposite(self) -> Nudge:
        """The same nudge with ``-beta_s``: the other nudged phase of the centred estimator.

        Returns
        -------
        Nudge
            Targets, injected currents and sign unchanged, ``beta_s`` negated.
        """
        return dataclasses.replace(self, beta_s=-self.beta_s)

    @property
    def phase(self) -> str:
        """The phase's name in error messages: ``"free"``, ``"nudged (+beta)"`` or ``"nudged (-beta)"``."""
        return phase_name(self.beta_s)

    def __repr__(self) -> str:
        def shape(a):
            return None if a is None else list(a.shape)

        return (
            f"Nudge(targets_v={shape(self.targets_v)}, beta_s={self.beta_s!r}, "
            f"injected_a={shape(self.injected_a)}, antisymmetric_sign={self.antisymmetric_sign!r})"
        )


#: The free phase: no nudge conductance, no injected current, the couplings as built.
FREE = Nudge()


def phase_name(beta_s: float) -> str:
    """``"free"`` for ``beta_s == 0``, else ``"nudged (+beta)"`` or ``"nudged (-beta)"`` by its sign."""
    if beta_s == 0:
        return "free"
    return "nudged (+beta)" if beta_s > 0 else "nudged (-beta)"


def _per_sample(array: np.ndarray | None, batch: int, columns: int, field: str, what: str, unit: str):
    """``array`` broadcast to ``[batch, columns]`` (a read-only view), or None; one-line errors."""
    if array is None:
        return None
    try:
        return np.broadcast_to(array, (batch, columns))
    except ValueError:
        raise ValueError(
            f"{field} has shape {list(array.shape)}; the circuit has {columns} {what}: give "
            f"[{batch}, {columns}] or [{columns}] {unit} for {batch} samples"
        ) from None


@dataclass(frozen=True)
class BatchPhase:
    """One phase of one batch as an engine settles it: the nudge broadcast to the batch.

    Built by :meth:`of`, the one place where engines' arguments are checked.

    Attributes
    ----------
    name : str
        The phase's name in error messages.
    inputs_v : numpy.ndarray
        Input voltages ``[batch, input]``, volts.
    targets_v : numpy.ndarray
        Target voltages ``[batch, output]``, volts (0 V where the nudge has none).
    beta_s : float
        Nudge conductance, siemens.
    injected_a : numpy.ndarray or None
        Currents into the free nodes ``[batch, free]``, amperes, or None.
    antisymmetric_sign : float
        +1, or -1 with the antisymmetric couplings between free nodes reversed.
    sample_ids : numpy.ndarray
        The samples' numbers in error messages, ``[batch]``.
    """

    name: str
    inputs_v: np.ndarray
    targets_v: np.ndarray
    beta_s: float
    injected_a: np.ndarray | None
    antisymmetric_sign: float
    sample_ids: np.ndarray

    @classmethod
    def of(
        cls,
        circuit: Circuit | None,
        inputs_v,
        nudge: Nudge = FREE,
        name: str | None = None,
        sample_ids=None,
    ) -> BatchPhase:
        """Check ``inputs_v[batch, input]`` and ``nudge`` against ``circuit`` and broadcast them to the batch.

        Parameters
        ----------
        circuit : Circuit or None
            The loaded circuit; None (nothing loaded) is an error.
        inputs_v : array_like
            Input voltages ``[batch, input]`` (or ``[input]``: one sample), volts.
        nudge : Nudge
            What the phase applies beyond the inputs.
        name : str or None
            The phase's name in error messages; None takes ``nudge.phase``.
        sample_ids : array_like or None
            The samples' numbers in error messages, ``[batch]``; None numbers them from 0.

        Returns
        -------
        BatchPhase

        Raises
        ------
        EngineError
            No circuit is loaded.
        TypeError
            ``nudge`` is not a :class:`Nudge`.
        ValueError
            An array's shape does not fit the circuit or the batch.
        """
        if circuit is None:
            raise EngineError("no circuit loaded; call load(circuit, g_s) first")
        if not isinstance(nudge, Nudge):
            raise TypeError(
                f"nudge: give a Nudge (e.g. Nudge(targets_v=y, beta_s=1e-5)) or FREE, not {type(nudge).__name__}"
            )
        inputs_v = np.atleast_2d(np.asarray(inputs_v, dtype=float))
        n_inputs = len(circuit.input_nodes)
        if inputs_v.ndim != 2 or inputs_v.shape[1] != n_inputs:
            raise ValueError(f"inputs_v has shape {list(inputs_v.shape)}; the circuit takes [batch, {n_inputs}] volts")
        batch = len(inputs_v)
        ids = np.arange(batch) if sample_ids is None else np.asarray(sample_ids)
        if ids.shape != (batch,):
            raise ValueError(f"sample_ids has shape {list(ids.shape)}; give one number per sample ({batch})")
        n_out, n_free = len(circuit.output_nodes), len(circuit.free_nodes)
        targets_v = nudge.targets_v if nudge.targets_v is not None else np.zeros(n_out)
        return cls(
            name=nudge.phase if name is None else name,
            inputs_v=inputs_v,
            targets_v=_per_sample(targets_v, batch, n_out, "Nudge.targets_v", "outputs", "volts"),
            beta_s=nudge.beta_s,
            injected_a=_per_sample(nudge.injected_a, batch, n_free, "Nudge.injected_a", "free nodes", "amperes"),
            antisymmetric_sign=nudge.antisymmetric_sign,
            sample_ids=ids,
        )


def batch_arrays(circuit: Circuit | None, inputs_v, targets_v, sample_ids):
    """``inputs_v[batch, input]``, ``targets_v[batch, output]`` (0 V if None) and sample ids, as arrays.

    The checks of :meth:`BatchPhase.of`, for code that takes targets without a nudge.
    """
    phase = BatchPhase.of(circuit, inputs_v, Nudge(targets_v=targets_v), sample_ids=sample_ids)
    return phase.inputs_v, phase.targets_v, phase.sample_ids


class Engine(Protocol):
    """An engine: one loaded circuit, settled for batches of inputs under any :class:`Nudge`.

    Engines subclass this protocol and implement :meth:`load`,
    :meth:`set_conductances` and :meth:`_settle` (one phase of one batch); an
    engine that settles several phases at once (ngspice's sweep mode) also
    overrides :meth:`_settle_phases`.  :meth:`settle` and
    :meth:`settle_phases` are written here, once: they check the arguments
    and name the phases.

    Attributes
    ----------
    name : str
        ``"native"`` or ``"ngspice"``.
    circuit : Circuit or None
        The loaded circuit.
    g_s : numpy.ndarray
        Its conductances ``g_s[edge]``, siemens.
    """

    name: str
    circuit: Circuit | None
    g_s: np.ndarray

    @abstractmethod
    def load(self, circuit: Circuit, g_s: np.ndarray) -> None:
        """Take ``circuit`` with conductances ``g_s[edge]`` (siemens)."""

    @abstractmethod
    def set_conductances(self, g_s: np.ndarray) -> None:
        """Write new conductances ``g_s[edge]`` (siemens) into the loaded circuit."""

    def settle(
        self,
        inputs_v: np.ndarray,
        nudge: Nudge = FREE,
        *,
        phase: str | None = None,
        sample_ids: np.ndarray | None = None,
        initial_v: np.ndarray | None = None,
    ) -> np.ndarray:
        """Steady-state node voltages of one phase.

        Parameters
        ----------
        inputs_v : numpy.ndarray
            Input voltages ``[batch, input]``, volts.
        nudge : Nudge
            What the phase applies beyond the inputs; default :data:`FREE`.
        phase : str or None
            The phase's name in error messages; default ``nudge.phase``.
        sample_ids : numpy.ndarray or None
            The samples' numbers in error messages, ``[batch]``; default 0, 1, ...
        initial_v : numpy.ndarray or None
            Node voltages ``[batch, node]`` (e.g. the free state before a
            nudged phase) that an engine may start from; never changes the answer.

        Returns
        -------
        numpy.ndarray
            ``v[batch, node]``, volts, for every node of ``circuit.node_names``.

        Raises
        ------
        ConvergenceError
            A sample did not settle; the message names sample and phase.
        SimulatorCrash
            The simulator died or hung; a fresh one has been started.
        ValueError
            An array's shape does not fit the circuit or the batch.
        """
        return self._settle(BatchPhase.of(self.circuit, inputs_v, nudge, phase, sample_ids), initial_v)

    def settle_phases(
        self,
        inputs_v: np.ndarray,
        nudges: Sequence[Nudge],
        *,
        phases: Sequence[str] | None = None,
        sample_ids: np.ndarray | None = None,
        initial_v: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """Steady-state node voltages of several phases of one batch, one ``v[batch, node]`` per nudge.

        Parameters
        ----------
        inputs_v : numpy.ndarray
            Input voltages ``[batch, input]``, volts, the same in every phase.
        nudges : sequence of Nudge
            One per phase, e.g. ``[FREE, plus, plus.opposite()]``.
        phases : sequence of str or None
            The phases' names in error messages, one per nudge; default each ``nudge.phase``.
        sample_ids : numpy.ndarray or None
            As in :meth:`settle`.
        initial_v : numpy.ndarray or None
            A state every phase may start from, as in :meth:`settle`; without
            it the first phase with ``beta_s == 0`` may start the later ones.

        Returns
        -------
        list of numpy.ndarray
            ``v[batch, node]`` (volts) of each phase, in the order of ``nudges``.

        Raises
        ------
        ConvergenceError, SimulatorCrash, ValueError
            As in :meth:`settle`.
        """
        nudges = list(nudges)
        if phases is not None and len(phases) != len(nudges):
            raise ValueError(f"phases: {len(phases)} names for {len(nudges)} nudges")
        names = [None] * len(nudges) if phases is None else list(phases)
        batch = [BatchPhase.of(self.circuit, inputs_v, n, name, sample_ids) for n, name in zip(nudges, names)]
        return self._settle_phases(batch, initial_v)

    @abstractmethod
    def _settle(self, phase: BatchPhase, initial_v: np.ndarray | None) -> np.ndarray:
        """Node voltages ``v[batch, node]`` (volts) of one checked phase."""

    def _settle_phases(self, phases: list[BatchPhase], initial_v: np.ndarray | None) -> list[np.ndarray]:
        """One phase after another, each started from ``initial_v`` or else from the first unnudged state."""
        out: list[np.ndarray] = []
        start = initial_v
        for phase in phases:
            v = self._settle(phase, start)
            if phase.beta_s == 0 and start is None:
                start = v
            out.append(v)
        return out

    def close(self) -> None:
        """Release the engine's resources."""


def free_end_incidence(ends: np.ndarray, first_free: int, n_free: int) -> sp.csr_matrix:
    """``(n_free, len(ends))`` signed incidence of two-terminal elements on the free nodes.

    Element e runs from node ``ends[e, 0]`` (entry +1) to ``ends[e, 1]`` (entry -1);
    ends outside the free nodes ``first_free .. first_free + n_free - 1`` (known
    nodes, ground) have no entry.
    """
    ends = np.asarray(ends).reshape(-1, 2)
    free = (ends >= first_free) & (ends < first_free + n_free)
    rows, cols, signs = [], [], []
    for col, sign in ((0, 1.0), (1, -1.0)):
        hit = np.flatnonzero(free[:, col])
        rows.append(ends[hit, col] - first_free)
        cols.append(hit)
        signs.append(np.full(hit.size, sign))
    return sp.csr_matrix(
        (np.concatenate(signs), (np.concatenate(rows), np.concatenate(cols))), shape=(n_free, len(ends))
    )
