"""Device models: what a memristor does with a requested conductance change.

A device model turns the controller's request ``dG`` into the conductance the
device ends up with.  Every model here keeps ``G`` within ``[g_min, g_max]``.
Per-device properties fixed at fabrication (device-to-device spread, stuck
devices) live in a state dictionary of arrays that the run checkpoints.
"""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

import numba
import numpy as np
from pydantic import Field, model_validator

from eqspice.circuits.schema import FieldError, SpecError, spec, tagged


class DeviceModel(Protocol):
    read_noise: float  # relative spread of the conductance seen while operating (see read_conductances)

    def init_state(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Per-device properties drawn once, at fabrication."""

    def init(self, n: int, rng: np.random.Generator, low_s: float, high_s: float, state: dict) -> np.ndarray:
        """Initial conductances, siemens."""

    def update(
        self, g_s: np.ndarray, dg_s: np.ndarray, state: dict, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """New conductances and the signed number of programming pulses each device took."""


#: Values of ``model`` (``device.model`` in a run config), in the order the messages list them.
DEVICE_MODELS = ("ideal", "pulsed")

#: A conductance bound, siemens.
Siemens = Annotated[float, Field(gt=0)]


class DeviceSpecError(SpecError):
    """A device model that cannot be built; the message is one line naming the parameter."""


def check_window(device) -> None:
    """Refuse bounds out of order and a single level (both device models have them).

    Raises
    ------
    FieldError
        ``g_min_s`` not below ``g_max_s``, or ``levels = 1``.
    """
    if device.g_min_s >= device.g_max_s:
        raise FieldError(
            "g_min_s", f"must be below g_max_s (got {device.g_min_s:g} >= {device.g_max_s:g} S)"
        )
    if device.levels == 1:
        raise FieldError("levels", "1 leaves no room to learn; use 0 (continuous) or at least 2")


@spec(error=DeviceSpecError)
class IdealDevice:
    """A device that takes any requested change, clipped to its bounds.

    Parameters
    ----------
    g_min_s, g_max_s : float
        Conductance bounds, siemens; positive, ``g_min_s < g_max_s``.
    levels : int
        Number of evenly spaced programmable levels in ``[g_min_s, g_max_s]``;
        0 for a continuous device, else at least 2.  With levels, a requested
        value between two levels is rounded stochastically (up with probability
        equal to its fractional position), so small updates are kept in
        expectation instead of being rounded away.
    read_noise : float
        Relative standard deviation of the conductance the circuit sees while
        it is operated (see :func:`read_conductances`); zero or more.
    model : {"ideal"}
        The tag of this device model (:func:`device_model`).
    pulse_energy_j : float
        Energy of one programming pulse, joules; zero or more, finite.  An ideal
        device is written in equivalent pulses: one per device whose conductance
        changes, or with ``levels`` one per level step
        (:func:`eqspice.learning.devices.programming.programming_pulses`).
        Default 1 pJ, illustrative.
    pulse_duration_sec : float
        Duration of one programming pulse, seconds; zero or more, finite.
        Default 10 ns, illustrative.

    Raises
    ------
    DeviceSpecError
        A field of the wrong type, out of range or not finite, or bounds out of order.
    """

    g_min_s: Siemens = 1e-7
    g_max_s: Siemens = 1e-4
    levels: Annotated[int, Field(ge=0)] = 0
    read_noise: Annotated[float, Field(ge=0)] = 0.0
    model: Literal["ideal"] = "ideal"
    pulse_energy_j: Annotated[float, Field(ge=0)] = 1e-12
    pulse_duration_sec: Annotated[float, Field(ge=0)] = 1e-8

    @model_validator(mode="after")
    def _window(self):
        check_window(self)
        return self

    @property
    def step_s(self) -> float:
        return (self.g_max_s - self.g_min_s) / (self.levels - 1) if self.levels else 0.0

    def quantise(self, g_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        position = (g_s - self.g_min_s) / self.step_s
        lower = np.floor(position)
        up = rng.random(g_s.shape) < position - lower
        return self.g_min_s + (lower + up) * self.step_s

    def init_state(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {}

    def init(self, n: int, rng: np.random.Generator, low_s: float, high_s: float, state: dict) -> np.ndarray:
        g = rng.uniform(low_s, high_s, n)
        return self.quantise(g, rng) if self.levels else g

    def update(self, g_s, dg_s, state, rng) -> tuple[np.ndarray, np.ndarray]:
        """``clip(G + dG)`` to the window (then to a level with ``levels``); no pulses (zeros)."""
        g_s, dg_s = np.asarray(g_s, dtype=float), np.asarray(dg_s, dtype=float)
        if self.levels or g_s.shape != dg_s.shape or g_s.ndim != 1:
            g = np.clip(np.add(g_s, dg_s), self.g_min_s, self.g_max_s)
            g = np.clip(self.quantise(g, rng), self.g_min_s, self.g_max_s) if self.levels else g
        else:
            g = _add_clipped(g_s, dg_s, self.g_min_s, self.g_max_s)
        return g, np.zeros(g.shape, dtype=np.int8)


@numba.njit(cache=True)
def _add_clipped(g, dg, low, high):
    """``min(max(g + dg, low), high)`` in one pass (``np.clip``'s arithmetic)."""
    out = np.empty_like(g)
    for i in range(len(g)):
        out[i] = min(max(g[i] + dg[i], low), high)
    return out


def read_conductances(g_s: np.ndarray, read_noise: float, rng: np.random.Generator) -> np.ndarray:
    """The conductances a circuit operates with: ``G (1 + read_noise * N(0, 1))``, at least 0.1% of G.

    One draw per device and mini-batch: the phases of one update are settled
    close together in time and see the same fluctuation.
    """
    if read_noise == 0:
        return g_s
    return g_s * np.maximum(1 + read_noise * rng.standard_normal(g_s.shape), 1e-3)


#: Shapes of a pulsed device's step (see :class:`PulsedDevice`).
STEP_SHAPES = ("linear", "soft_bounds", "exponential")


@spec(error=DeviceSpecError)
class PulsedDevice:
    """A memristor programmed by identical pulses whose effect depends on its state.

    Let ``x = (G - lo) / (hi - lo)`` be the device's position between its own
    bounds.  One pulse changes ``G`` by

    * ``linear``:      up ``dw (1 + a)``,              down ``dw (1 - a)``;
    * ``soft_bounds``: up ``dw (1 + a) 2 (1 - x)``,    down ``dw (1 - a) 2 x``;
    * ``exponential``: up ``dw (1 + a) exp(-g (x - 1/2))``, down ``dw (1 - a) exp(-g (1/2 - x))``,

    with ``dw`` the device's step (``dw_min_s`` at the centre of the range),
    ``a = up_down`` the up/down asymmetry and ``g = gamma``.  A requested change
    ``dG`` becomes ``n = dG / step`` pulses at the present state, rounded
    stochastically (so a request of 0.3 steps is one pulse 30% of the time)
    and capped at ``max_pulses``; the pulses are then applied one by one.

    Cycle-to-cycle noise makes one pulse's step ``step (1 + c2c N(0, 1))``, or
    with ``c2c_additive`` ``step + c2c dw N(0, 1)`` whatever the state (IBM
    aihwkit's ``mult_noise = False``).  Neither is clipped: the mean step is
    the noiseless one, and a very noisy pulse may move the wrong way.

    With ``levels``, the device holds only the ``levels`` evenly spaced values
    of ``[g_min_s, g_max_s]`` (spacing ``(g_max_s - g_min_s) / (levels - 1)``):
    after every pulse ``G`` is rounded to one of the two neighbouring levels,
    up with probability equal to its fractional position, so a pulse of 2.5
    spacings lands 2 or 3 levels away, half the time each, and a pulse keeps
    its mean effect.  A device's own bounds are rounded inwards to the grid.

    Parameters
    ----------
    g_min_s, g_max_s : float
        Nominal bounds, siemens; positive, ``g_min_s < g_max_s``.
    dw_min_s : float
        Conductance change of one pulse at the centre of the range, siemens;
        positive, below ``g_max_s - g_min_s``.
    step : {"linear", "soft_bounds", "exponential"}
        Shape of the step.
    up_down : float
        Asymmetry of up and down pulses, in (-1, 1).
    gamma : float
        State dependence of the exponential step, dimensionless; zero or more.
    d2d_step, d2d_bounds : float
        Device-to-device relative spread (standard deviation) of the step and
        of each bound, drawn once per device; zero or more.
    c2c : float
        Cycle-to-cycle relative spread of every single pulse's step; zero or more.
    stuck_min, stuck_max : float
        Fractions of devices stuck at g_min / g_max, in [0, 1], at most 1
        together; they ignore every pulse.
    max_pulses : int
        Most pulses one update may apply to one device; at least 1.
    read_noise : float
        Relative standard deviation of the conductance the circuit sees while
        it is operated (see :func:`read_conductances`); zero or more.
    levels : int
        Number of programmable levels; 0 for a continuous device, else at least 2.
    c2c_additive : bool
        Cycle-to-cycle noise independent of the state (see above).
    model : {"pulsed"}
        The tag of this device model (:func:`device_model`).
    pulse_energy_j : float
        Energy of one programming pulse, joules; zero or more, finite
        (a preset sets its own).  Default 1 pJ, illustrative.
    pulse_duration_sec : float
        Duration of one programming pulse, seconds; zero or more, finite.
        Default 10 ns, illustrative.

    Raises
    ------
    DeviceSpecError
        A field of the wrong type, out of range, not finite or not one of its
        choices, or fields that do not fit together (one line naming the field).
    """

    g_min_s: Siemens = 1e-7
    g_max_s: Siemens = 1e-4
    dw_min_s: Siemens = 1e-6
    step: Literal["linear", "soft_bounds", "exponential"] = "linear"
    up_down: Annotated[float, Field(gt=-1, lt=1)] = 0.0
    gamma: Annotated[float, Field(ge=0)] = 3.0
    d2d_step: Annotated[float, Field(ge=0)] = 0.0
    d2d_bounds: Annotated[float, Field(ge=0)] = 0.0
    c2c: Annotated[float, Field(ge=0)] = 0.0
    stuck_min: Annotated[float, Field(ge=0, le=1)] = 0.0
    stuck_max: Annotated[float, Field(ge=0, le=1)] = 0.0
    max_pulses: Annotated[int, Field(ge=1)] = 100
    read_noise: Annotated[float, Field(ge=0)] = 0.0
    levels: Annotated[int, Field(ge=0)] = 0
    c2c_additive: bool = False
    model: Literal["pulsed"] = "pulsed"
    pulse_energy_j: Annotated[float, Field(ge=0)] = 1e-12
    pulse_duration_sec: Annotated[float, Field(ge=0)] = 1e-8

    @model_validator(mode="after")
    def _fits(self):
        check_window(self)
        if self.stuck_min + self.stuck_max > 1:
            raise FieldError("stuck_min", f"stuck_min + stuck_max = {self.stuck_min + self.stuck_max:g}; at most 1")
        if self.dw_min_s >= self.g_max_s - self.g_min_s:
            raise FieldError(
                "dw_min_s",
                f"{self.dw_min_s:g} S spans the whole range g_max_s - g_min_s = "
                f"{self.g_max_s - self.g_min_s:g} S; make it smaller",
            )
        return self


    @property
    def level_spacing_s(self) -> float:
        return (self.g_max_s - self.g_min_s) / (self.levels - 1) if self.levels else 0.0

    def on_levels(self, g_s: np.ndarray, state: dict, rng: np.random.Generator) -> np.ndarray:
        """``g_s`` rounded stochastically to the level grid, within the device's own bounds rounded inwards."""
        if not self.levels:
            return g_s
        step = self.level_spacing_s
        position = (g_s - self.g_min_s) / step
        lower = np.floor(position)
        level = lower + (rng.random(g_s.shape) < position - lower)
        lo = np.ceil((state["lo"] - self.g_min_s) / step - 1e-9)
        hi = np.floor((state["hi"] - self.g_min_s) / step + 1e-9)
        return self.g_min_s + np.clip(level, lo, np.maximum(hi, lo)) * step

    def init_state(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        span = self.g_max_s - self.g_min_s
        lo = self.g_min_s * (1 + self.d2d_bounds * rng.standard_normal(n))
        hi = self.g_max_s * (1 + self.d2d_bounds * rng.standard_normal(n))
        lo = np.clip(lo, self.g_min_s, self.g_min_s + 0.45 * span)  # every device stays inside the
        hi = np.clip(hi, self.g_max_s - 0.45 * span, self.g_max_s)  # nominal window, lo < hi
        scale = np.maximum(1 + self.d2d_step * rng.standard_normal(n), 0.0)
        fate = rng.random(n)
        stuck = np.where(fate < self.stuck_min, -1, np.where(fate > 1 - self.stuck_max, 1, 0))
        return {"lo": lo, "hi": hi, "step_scale": scale, "stuck": stuck}

    def init(self, n: int, rng: np.random.Generator, low_s: float, high_s: float, state: dict) -> np.ndarray:
        g = np.clip(rng.uniform(low_s, high_s, n), state["lo"], state["hi"])
        return self._pin(self.on_levels(g, state, rng), state)

    def step_size(self, g_s: np.ndarray, up: bool, state: dict) -> np.ndarray:
        """Conductance change of one pulse (magnitude), siemens, at state ``g_s``."""
        x = (g_s - state["lo"]) / (state["hi"] - state["lo"])
        base = self.dw_min_s * state["step_scale"] * (1 + self.up_down if up else 1 - self.up_down)
        if self.step == "soft_bounds":
            return base * 2 * ((1 - x) if up else x)
        if self.step == "exponential":
            return base * np.exp(-self.gamma * ((x - 0.5) if up else (0.5 - x)))
        return base * np.ones_like(g_s)

    def update(self, g_s, dg_s, state, rng) -> tuple[np.ndarray, np.ndarray]:
        shape = STEP_SHAPES.index(self.step)
        lo, hi, scale, stuck = state["lo"], state["hi"], state["step_scale"], state["stuck"]
        factors = (self.dw_min_s, 1 + self.up_down, 1 - self.up_down, shape, self.gamma)
        count = _pulse_counts(g_s, dg_s, lo, hi, scale, stuck, *factors, self.max_pulses, rng.random(g_s.shape))
        if self.c2c or self.levels:
            # the draws every pulse takes, in the order of the pulse-by-pulse loop (update_reference): pulse k
            # draws for the devices with more than k pulses, in index order, c2c normals first, then level uniforms
            most = int(count.max(initial=0))
            active = np.cumsum(np.bincount(count, minlength=most + 1)[::-1])[::-1][1:]  # devices with > k pulses
            offsets = np.concatenate([[0], np.cumsum(active)])
            noise, uniforms = np.empty(offsets[-1]), np.empty(offsets[-1])
            for k in range(most):
                if self.c2c:
                    noise[offsets[k] : offsets[k + 1]] = rng.standard_normal(active[k])
                if self.levels:
                    uniforms[offsets[k] : offsets[k + 1]] = rng.random(active[k])
        else:
            offsets, noise, uniforms = np.zeros(1, dtype=np.int64), np.empty(0), np.empty(0)
        return _apply_pulses(
            g_s, dg_s > 0, count, lo, hi, scale, stuck, *factors, self.c2c, self.c2c_additive,
            noise, offsets, self.level_spacing_s, self.g_min_s, self.g_max_s, uniforms,
        )  # fmt: skip

    def update_reference(self, g_s, dg_s, state, rng) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`update` written as whole-array steps, one pulse at a time (the test's reference)."""
        up = dg_s > 0
        step = np.where(up, self.step_size(g_s, True, state), self.step_size(g_s, False, state))
        wanted = np.abs(dg_s) / np.maximum(step, 1e-300)
        count = np.floor(wanted) + (rng.random(g_s.shape) < wanted - np.floor(wanted))
        count = np.minimum(count, self.max_pulses).astype(int)
        count[state["stuck"] != 0] = 0
        g = g_s.copy()
        for k in range(int(count.max(initial=0))):
            active = count > k
            ga = g[active]
            sub = {key: value[active] for key, value in state.items()}
            ua = up[active]
            size = np.where(ua, self.step_size(ga, True, sub), self.step_size(ga, False, sub))
            if self.c2c and self.c2c_additive:
                size = size + self.c2c * self.dw_min_s * sub["step_scale"] * rng.standard_normal(size.shape)
            elif self.c2c:
                size = size * (1 + self.c2c * rng.standard_normal(size.shape))
            moved = np.clip(ga + np.where(ua, size, -size), sub["lo"], sub["hi"])
            g[active] = self.on_levels(moved, sub, rng)
        return self._pin(g, state), np.where(up, count, -count)

    def _pin(self, g_s: np.ndarray, state: dict) -> np.ndarray:
        stuck = state["stuck"]
        return np.where(stuck < 0, self.g_min_s, np.where(stuck > 0, self.g_max_s, g_s))


@numba.njit(cache=True, error_model="numpy", inline="always")
def _step(g, up, lo, hi, scale, dw, up_factor, down_factor, shape, gamma):
    """One pulse's conductance change (magnitude) at ``g`` (:meth:`PulsedDevice.step_size`'s arithmetic)."""
    x = (g - lo) / (hi - lo)
    base = dw * scale * (up_factor if up else down_factor)
    if shape == 1:
        return base * 2 * ((1 - x) if up else x)
    if shape == 2:
        return base * np.exp(-gamma * ((x - 0.5) if up else (0.5 - x)))
    return base


@numba.njit(cache=True, error_model="numpy")
def _pulse_counts(g, dg, lo, hi, scale, stuck, dw, up_factor, down_factor, shape, gamma, max_pulses, rounding):
    """Pulses per device for the requests ``dg``: ``|dg| / step`` rounded up with probability its fraction."""
    count = np.zeros(g.size, dtype=np.int64)
    for i in range(g.size):
        if stuck[i] != 0:
            continue
        up = dg[i] > 0
        wanted = abs(dg[i]) / max(_step(g[i], up, lo[i], hi[i], scale[i], dw, up_factor, down_factor, shape, gamma), 1e-300)
        whole = np.floor(wanted)
        count[i] = int(min(whole + (1.0 if rounding[i] < wanted - whole else 0.0), max_pulses))
    return count


@numba.njit(cache=True, error_model="numpy")
def _apply_pulses(g_s, up, count, lo, hi, scale, stuck, dw, up_factor, down_factor, shape, gamma,
                  c2c, additive, noise, offsets, level_s, g_min, g_max, uniforms):  # fmt: skip
    """Every device's pulses one after another, then stuck devices pinned; new conductances and signed counts.

    :meth:`PulsedDevice.update_reference`'s arithmetic.  ``shape`` indexes
    :data:`STEP_SHAPES`; pulse ``k`` of the ``r``-th device (in index order)
    among those with more than ``k`` pulses takes ``noise[offsets[k] + r]``
    and ``uniforms[offsets[k] + r]``.  Without draws (no c2c, no levels) every
    device runs its pulses in one go.
    """
    g = g_s.copy()
    if not (c2c or level_s):
        for i in range(g.size):
            gi = g[i]
            for _ in range(count[i]):
                size = _step(gi, up[i], lo[i], hi[i], scale[i], dw, up_factor, down_factor, shape, gamma)
                gi = min(max(gi + (size if up[i] else -size), lo[i]), hi[i])
            g[i] = gi
    else:
        order = np.flatnonzero(count > 0)
        m = order.size
        k = 0
        while m > 0:
            start = offsets[k]
            kept = 0
            for r in range(m):
                i = order[r]
                size = _step(g[i], up[i], lo[i], hi[i], scale[i], dw, up_factor, down_factor, shape, gamma)
                if c2c and additive:
                    size = size + c2c * dw * scale[i] * noise[start + r]
                elif c2c:
                    size = size * (1 + c2c * noise[start + r])
                moved = min(max(g[i] + (size if up[i] else -size), lo[i]), hi[i])
                if level_s:
                    position = (moved - g_min) / level_s
                    lower = np.floor(position)
                    level = lower + (1.0 if uniforms[start + r] < position - lower else 0.0)
                    low = np.ceil((lo[i] - g_min) / level_s - 1e-9)
                    high = max(np.floor((hi[i] - g_min) / level_s + 1e-9), low)
                    moved = g_min + min(max(level, low), high) * level_s
                g[i] = moved
                if count[i] > k + 1:
                    order[kept] = i
                    kept += 1
            m = kept
            k += 1
    signed = np.empty(g.size, dtype=np.int64)
    for i in range(g.size):
        if stuck[i] < 0:
            g[i] = g_min
        elif stuck[i] > 0:
            g[i] = g_max
        signed[i] = count[i] if up[i] else -count[i]
    return g, signed


#: Builds a device model, told apart by its ``model`` tag (``[device]`` of a run config).
_build_device = tagged(dict(zip(DEVICE_MODELS, (IdealDevice, PulsedDevice))), DeviceSpecError)


def device_model(model: str, **fields) -> IdealDevice | PulsedDevice:
    """The device model called ``model`` with ``fields``, checked as a run config's ``[device]`` is.

    Parameters
    ----------
    model : {"ideal", "pulsed"}
        Which model.
    **fields
        Its parameters (:class:`IdealDevice`, :class:`PulsedDevice`).

    Returns
    -------
    IdealDevice or PulsedDevice

    Raises
    ------
    DeviceSpecError
        An unknown model, or a parameter it lacks or refuses (one line).
    """
    return _build_device(model, **fields)
