"""Cost of resistive crossbar lines, side by side in one run.

1. 64-32-10 with wires: seconds per sample of a free + nudged pair of phases,
   native engine (lines eliminated exactly, :mod:`eqspice.simulator.wired`)
   beside ngspice's sweep mode on the same wired netlist, their ratio and the
   largest voltage difference; plus the native elimination's cost per
   conductance update and the ideal crossbar's native pair for reference.
2. 784-100-10 with wires: time to evaluate (free phase) the Fashion-MNIST test
   images on one BLAS thread: one elimination plus the settles, measured on
   ``--fashion-images`` images (default all 10k) and extrapolated to 10k.
3. What in-situ training pays per conductance update, 64-32-10 and 784-100-10: the
   line elimination and the line voltages of one training batch (``--train-batch``
   samples x 3 phases), by the structured sweep (``WireElimination``'s default)
   beside the general sparse LU it replaced (``structured=False``), their ratio and
   their largest differences (reduced matrix, relative; line voltages, volts), in
   CPU seconds (process time on one BLAS thread: the work, whatever else the machine runs).

Run: ``python -m benchmarks.wires [--wire-ohm 1] [--driver-ohm 1] [--fashion-images 10000]
[--sections digits fashion update]``.  Writes ``benchmarks/wires.json``; the rows of
sections not run are kept from the file.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks import write_json
from eqspice.circuits import CrossbarSpec, crossbar
from eqspice.learning.run.data import load_dataset
from eqspice.simulator.engine import FREE, Nudge
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.ngspice.engine import NgspiceEngine
from eqspice.simulator.wired import WireElimination

BETA_S = 1e-5
FASHION_TEST = 10_000


def wired(layers, wire_ohm, driver_ohm, tile_rows=None):
    return crossbar(CrossbarSpec(layers=layers, diode_bias_v=(0.4, -0.4), wire_resistance_ohm=wire_ohm,
                                 driver_resistance_ohm=driver_ohm, tile_rows=tile_rows))  # fmt: skip


def pair_sec(engine, circuit, g, inputs, targets):
    """Seconds per sample of a free + nudged pair, after a warm-up, and the voltages."""
    engine.load(circuit, g)
    engine.settle_phases(inputs[:2], [FREE, Nudge(targets_v=targets[:2], beta_s=BETA_S)])
    started = time.perf_counter()
    v = engine.settle_phases(inputs, [FREE, Nudge(targets_v=targets, beta_s=BETA_S)])
    return (time.perf_counter() - started) / len(inputs), v


def elimination_sec(circuit, g, repeats=3):
    engine = NativeEngine()
    engine.load(circuit, g)
    started = time.perf_counter()
    for k in range(repeats):
        engine.set_conductances(g * (1 + 1e-3 * (k + 1)))
    return (time.perf_counter() - started) / repeats


def digits_rows(wire_ohm, driver_ohm, batch, workers):
    layers = (64, 32, 10)
    rng = np.random.default_rng(0)
    circuit = wired(layers, wire_ohm, driver_ohm)
    g = rng.uniform(1e-7, 1e-4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (batch, 64)) @ circuit.input_gain.T
    targets = rng.uniform(-0.05, 0.05, (batch, 10))
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        native_sec, v_native = pair_sec(NativeEngine(), circuit, g, inputs, targets)
        ideal_sec, _ = pair_sec(NativeEngine(), wired(layers, 0.0, 0.0), g, inputs, targets)
        update_sec = elimination_sec(circuit, g)
    spice = NgspiceEngine(mode="sweep", workers=workers)
    try:
        spice_sec, v_spice = pair_sec(spice, circuit, g, inputs, targets)
    finally:
        spice.close()
    dv = max(float(np.abs(a - b).max()) for a, b in zip(v_native, v_spice))
    name = "64-32-10"
    rows.append(dict(network=name, what=f"ngspice sweep x{workers}, wired", sec=spice_sec, per="sample (pair)", dv=0.0))
    rows.append(dict(network=name, what="native, wired", sec=native_sec, per="sample (pair)", dv=dv,
                     ngspice_ratio=spice_sec / native_sec))  # fmt: skip
    rows.append(dict(network=name, what="native, ideal wires", sec=ideal_sec, per="sample (pair)", dv=None))
    rows.append(dict(network=name, what="native line elimination", sec=update_sec, per="conductance update", dv=None))
    return rows


def fashion_rows(wire_ohm, driver_ohm, images, batch):
    data = load_dataset("fashion_mnist", limit_train=1, limit_test=images)
    circuit = wired((784, 100, 10), wire_ohm, driver_ohm)
    rng = np.random.default_rng(0)
    g = rng.uniform(1e-7, 1e-4, circuit.n_edges)
    engine = NativeEngine()
    with threadpool_limits(limits=1, user_api="blas"):
        started = time.perf_counter()
        engine.load(circuit, g)
        load_sec = time.perf_counter() - started
        started = time.perf_counter()
        for start in range(0, len(data.x_test), batch):
            engine.settle(data.x_test[start : start + batch] @ circuit.input_gain.T)
        settle_sec = time.perf_counter() - started
    n = len(data.x_test)
    total = load_sec + settle_sec * FASHION_TEST / n
    name = "784-100-10"
    return [
        dict(network=name, what="native line elimination (load)", sec=load_sec, per="conductance update", dv=None),
        dict(network=name, what=f"native free settle, {n} images", sec=settle_sec / n, per="sample", dv=None),
        dict(network=name, what="evaluate 10k test images" + ("" if n == FASHION_TEST else f" (from {n})"),
             sec=total, per="10k images", dv=None),  # fmt: skip
    ]


def update_rows(layers, wire_ohm, driver_ohm, train_batch, repeats=1):
    """CPU seconds per conductance update of the line elimination and of one batch's line voltages, both
    methods (process time: one BLAS thread, so the work itself, not the share of a busy machine)."""
    circuit = wired(layers, wire_ohm, driver_ohm)
    rng = np.random.default_rng(0)
    g = rng.uniform(1e-7, 1e-4, circuit.n_edges)
    v = rng.uniform(-1, 1, (3 * train_batch, len(circuit.node_names)))
    lines = {"sweep": WireElimination(circuit), "sparse LU": WireElimination(circuit, structured=False)}
    sec, out = {}, {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name, elim in lines.items():
            elim.reduce(g)  # first load
        for name, elim in lines.items():
            started = time.process_time()
            for k in range(repeats):
                reduced = elim.reduce(g * (1 + 1e-3 * (k + 1)))
            update = (time.process_time() - started) / repeats
            started = time.process_time()
            v_ext = elim.line_voltages(g * (1 + 1e-3 * repeats), v)
            sec[name] = (update, time.process_time() - started)
            out[name] = (reduced[0].copy(), reduced[1].copy(), v_ext)
    (ff, fk, ve), (ff0, fk0, ve0) = out["sweep"], out["sparse LU"]
    scale = np.abs(ff0).max()
    d_reduced = max(np.abs(ff - ff0).max(), np.abs(fk - fk0).max()) / scale
    d_lines = float(np.abs(ve - ve0).max())
    name = "-".join(map(str, layers))
    rows = []
    for what, i, per, diff in (("line elimination", 0, "conductance update", d_reduced),
                               (f"line voltages, {3 * train_batch} samples", 1, "training batch", d_lines)):  # fmt: skip
        rows.append(dict(network=name, what=f"{what}, sparse LU", sec=sec["sparse LU"][i], per=f"{per} (CPU)", dv=None))
        rows.append(dict(network=name, what=f"{what}, sweep", sec=sec["sweep"][i], per=f"{per} (CPU)", dv=diff,
                         speedup=sec["sparse LU"][i] / sec["sweep"][i]))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wire-ohm", type=float, default=1.0, help="resistance per line segment, ohms")
    parser.add_argument("--driver-ohm", type=float, default=1.0, help="driver output resistance, ohms")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="ngspice children of the sweep mode")
    parser.add_argument("--fashion-images", type=int, default=FASHION_TEST, help="test images timed (extrapolated to 10k)")
    parser.add_argument("--train-batch", type=int, default=32, help="training batch of the line-voltage timing")
    parser.add_argument("--sections", nargs="+", default=["digits", "fashion", "update"], choices=["digits", "fashion", "update"])
    parser.add_argument("--json", default=os.path.join("benchmarks", "wires.json"))
    args = parser.parse_args()
    rows = []
    if "digits" in args.sections:
        rows += digits_rows(args.wire_ohm, args.driver_ohm, args.batch, args.workers)
    if "fashion" in args.sections:
        rows += fashion_rows(args.wire_ohm, args.driver_ohm, args.fashion_images, args.batch)
    if "update" in args.sections:
        for layers in ((64, 32, 10), (784, 100, 10)):
            rows += update_rows(layers, args.wire_ohm, args.driver_ohm, args.train_batch)
    for r in rows:
        r.update(wire_resistance_ohm=args.wire_ohm, driver_resistance_ohm=args.driver_ohm)
    if os.path.exists(args.json):  # keep the rows of the sections not run
        with open(args.json) as fh:
            ran = {(r["network"], r["what"]) for r in rows}
            rows = [r for r in json.load(fh) if (r["network"], r["what"]) not in ran] + rows
    print(f"wires {args.wire_ohm:g} ohm per segment, drivers {args.driver_ohm:g} ohm; native on one BLAS thread")
    print(f"{'network':>11} {'what':>44} {'seconds':>10} {'per':>25} {'ratio':>12} {'max diff':>10}")
    for r in rows:
        ratio = f"{r['ngspice_ratio']:.0f}" if "ngspice_ratio" in r else (f"sweep {r['speedup']:.1f}x" if "speedup" in r else "")
        dv = "" if r["dv"] is None else f"{r['dv']:.1e}"
        print(f"{r['network']:>11} {r['what']:>44} {r['sec']:>10.4g} {r['per']:>25} {ratio:>12} {dv:>10}")
    write_json(rows, args.json)


if __name__ == "__main__":
    main()
