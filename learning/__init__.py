"""The host-side controller: what it reads from the circuit and what it writes back.

Rooms: :mod:`~eqspice.learning.rules` (EP and its relatives, optimizers),
:mod:`~eqspice.learning.devices` (memristor models, presets, drift),
:mod:`~eqspice.learning.run` (config, build, loop, checkpoint, data, sweep,
report), :mod:`~eqspice.learning.gradcheck` (rules against exact gradients) and
:mod:`~eqspice.learning.cli` (the ``eqspice`` command).
"""
