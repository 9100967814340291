"""Old run-config keys: read into today's layout, with a one-line note each.

Two changes made keys obsolete.  Times are in ``_sec`` (``_s`` is siemens
only), and fields that belong to one object moved into that object's table
(``[device.drift]``, ``[network.diode_model]``).  A config file that uses an
old key still loads as the config it always meant; :func:`upgrade` moves the
key and warns with :class:`DeprecatedKey`, e.g.

    ``noise.dt_s is deprecated; write noise.dt_sec (seconds)``

========================  ==================================  ===========
old key                   new key                             unit
========================  ==================================  ===========
network.diode_is_a        network.diode_model.is_a            amperes
network.diode_n           network.diode_model.n               -
device.drift_nu           device.drift.nu_mean                -
device.drift_nu_std       device.drift.nu_std                 -
device.drift_t0_s         device.drift.t0_sec                 seconds
device.seconds_per_batch  device.drift.batch_interval_sec     seconds
device.drift_eval_delay_s device.drift.eval_delay_sec         seconds
engine.timeout_s          engine.timeout_sec                  seconds
noise.dt_s                noise.dt_sec                        seconds
noise.run_s               noise.run_sec                       seconds
noise.burn_in_s           noise.burn_in_sec                   seconds
noise.tau_s               noise.tau_sec                       seconds
========================  ==================================  ===========

Keys of the old flat sections that the chosen model does not have (a pulsed
key such as ``step`` in an ideal ``[device]``, ``t_eff_w`` under
``noise.model = "johnson"``) were accepted and unused; they are dropped with a
note (see :mod:`eqspice.learning.run.config`).
"""

from __future__ import annotations

import warnings

#: ``(section, old key) -> (path of the new key in the section, unit)``.
ALIASES: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("network", "diode_is_a"): (("diode_model", "is_a"), "amperes"),
    ("network", "diode_n"): (("diode_model", "n"), "dimensionless"),
    ("device", "drift_nu"): (("drift", "nu_mean"), "dimensionless"),
    ("device", "drift_nu_std"): (("drift", "nu_std"), "dimensionless"),
    ("device", "drift_t0_s"): (("drift", "t0_sec"), "seconds"),
    ("device", "seconds_per_batch"): (("drift", "batch_interval_sec"), "seconds"),
    ("device", "drift_eval_delay_s"): (("drift", "eval_delay_sec"), "seconds"),
    ("engine", "timeout_s"): (("timeout_sec",), "seconds"),
    ("noise", "dt_s"): (("dt_sec",), "seconds"),
    ("noise", "run_s"): (("run_sec",), "seconds"),
    ("noise", "burn_in_s"): (("burn_in_sec",), "seconds"),
    ("noise", "tau_s"): (("tau_sec",), "seconds"),
}


class DeprecatedKey(FutureWarning):
    """A config key that still loads but has a new name or place; the message names both."""


def note(message: str) -> None:
    """Warn about an obsolete key in one line."""
    warnings.warn(message, DeprecatedKey, stacklevel=3)


def renamed(section: str, old: str) -> str:
    """The note for old key ``section.old``: ``noise.dt_s is deprecated; write noise.dt_sec (seconds)``."""
    path, unit = ALIASES[section, old]
    return f"{section}.{old} is deprecated; write {'.'.join((section, *path))} ({unit})"


def upgrade(raw: dict) -> tuple[dict, dict[tuple[str, ...], str]]:
    """``raw`` with every old key of :data:`ALIASES` moved to its new place (a copy; ``raw`` is kept).

    Parameters
    ----------
    raw : dict
        A parsed run config (TOML tables as dicts).

    Returns
    -------
    dict
        The same config in today's keys.
    dict
        ``(section, *new path) -> old key`` of every key moved; the caller
        notes them (:func:`renamed`) once it knows which ones today's layout keeps.

    Raises
    ------
    ValueError
        An old key and its new key both given (one line naming both).
    """
    out, moved = dict(raw), {}
    for (section, old), (path, unit) in ALIASES.items():
        table = out.get(section)
        if not isinstance(table, dict) or old not in table:
            continue
        table = _copy_path(table, path[:-1])
        target = table
        for name in path[:-1]:
            target = target[name]
        if not isinstance(target, dict):
            continue  # e.g. ``drift = 5``: validation names the bad table
        out[section] = table
        new = ".".join((section, *path))
        if path[-1] in target:
            raise ValueError(f"{section}.{old} and {new} are both given; keep {new} ({unit})")
        target[path[-1]] = table.pop(old)
        moved[(section, *path)] = old
    return out, moved


def upgrade_dotted(dotted: str) -> str:
    """An override's ``section.key`` in today's keys (``noise.dt_s`` -> ``noise.dt_sec``), with a note if it was old.

    Overrides (``--set``, sweep axes) are moved before they are applied, so an
    old-key override still wins over the new key of the file it overrides.
    """
    section, _, key = dotted.partition(".")
    if (section, key) not in ALIASES:
        return dotted
    note(renamed(section, key))
    return ".".join((section, *ALIASES[section, key][0]))


def old_names(dotted: str) -> list[str]:
    """The old keys of today's ``section.key...`` in its section: ``device.drift.t0_sec`` -> ``["drift_t0_s"]``."""
    section, *path = dotted.split(".")
    return [old for (s, old), (new, _) in ALIASES.items() if s == section and list(new) == path]


def _copy_path(table: dict, path: tuple[str, ...]) -> dict:
    """A copy of ``table`` whose sub-tables along ``path`` are copies too (created if missing)."""
    table = dict(table)
    inner = table
    for name in path:
        child = inner.get(name)
        inner[name] = dict(child) if isinstance(child, dict) else {} if child is None else child
        inner = inner[name]
    return table
