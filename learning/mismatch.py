"""Circuit mismatch of a run: drawn once from the run's seed, frozen, written into the netlist.

Each kind of mismatch has its own generator,
``default_rng([MISMATCH_STREAM, seed, kind])``, so the draw is the same every time the run (or a resumed run, or an export of it) builds
its circuit, and it leaves the training's random stream untouched: a run with
no mismatch trains exactly as before.

* ``diode_is`` = sigma: diode ``k`` has area ``exp(sigma xi_k)`` (log-normal,
  median 1), so its IS is ``IS exp(sigma xi_k)``: a relative spread of about
  sigma for small sigma.
* ``bias_v`` = s (volts): every fixed source (the +/- bias lines and, after
  :func:`circuits.mismatch.split_diode_bias`, each hidden node's own diode-bias
  sources) sits at nominal + ``s xi``.
* ``input_gain`` = sigma: input line ``i``'s driver has gain ``1 + sigma xi_i``.

Kinds: 0 diode areas, 1 source volts, 2 input gains; separate generators, so
switching one kind on or off leaves the others' draws unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from circuits.mismatch import split_diode_bias, with_mismatch
from circuits.network import Circuit, crossbar
from learning.checkpoint import write_atomic

#: Second word of the mismatch generator's seed: ASCII "mism".
MISMATCH_STREAM = 0x6D69736D

#: File in the run folder that records the drawn values.
RECORD = "mismatch.json"


def mismatched_circuit(circuit: Circuit, diode_is: float, bias_v: float, input_gain: float, seed: int) -> Circuit:
    """``circuit`` with mismatch of the given spreads drawn from ``seed`` (see the module notes)."""
    if not (diode_is or bias_v or input_gain):
        return circuit
    if bias_v:
        circuit = split_diode_bias(circuit)
    normal = lambda kind, n: np.random.default_rng([MISMATCH_STREAM, seed, kind]).standard_normal(n)  # noqa: E731
    area = np.exp(diode_is * normal(0, len(circuit.diodes)))
    volts = np.asarray(circuit.fixed_volts, dtype=float) + bias_v * normal(1, len(circuit.fixed_nodes))
    gain = 1.0 + input_gain * normal(2, len(circuit.input_nodes))
    return with_mismatch(
        circuit,
        diode_area=area if diode_is else None,
        fixed_volts=volts if bias_v else None,
        input_gain_scale=gain if input_gain else None,
    )


def build_circuit(config) -> Circuit:
    """The run's circuit: the configured crossbar with the run's mismatch."""
    m = config.mismatch
    return mismatched_circuit(crossbar(config.network.spec()), m.diode_is, m.bias_v, m.input_gain, config.seed)


def record(run_dir: str | Path, config, circuit: Circuit) -> None:
    """Write the drawn mismatch to ``run_dir/mismatch.json``, if any: diode areas, source
    volts, input gains, and the non-reciprocal part ``delta[edge]`` of every coupling
    (``K_pq = G (1 + delta)``, ``K_qp = G (1 - delta)``)."""
    m = config.mismatch
    if not (m.diode_is or m.bias_v or m.input_gain or circuit.nonreciprocal is not None):
        return
    gains = np.linalg.norm(circuit.input_gain, axis=1)
    data = {
        "diode_area": None if circuit.diode_area is None else dict(
            zip([f"D{k}" for k in range(len(circuit.diodes))], circuit.diode_area.tolist())
        ),
        "fixed_volts": dict(zip(circuit.fixed_nodes, circuit.fixed_volts)),
        "input_gain_v_per_unit": dict(zip(circuit.input_nodes, gains.tolist())),
        "nonreciprocal_delta": None if circuit.nonreciprocal is None else circuit.nonreciprocal.tolist(),
    }
    write_atomic(Path(run_dir) / RECORD, json.dumps(data, indent=1).encode())
