"""Settling speed of every engine, side by side in one run.

For each network size: samples per second for a free + nudged pair of phases,
the ratio to the naive ngspice path (render and parse the netlist, one ``op``
per sample and phase), and the largest voltage difference from ngspice's
one-at-a-time path on the same samples.  The native engine runs with numpy's
BLAS on one thread (``engine.blas_threads``' default) and, for comparison, on two.

Run: ``python -m benchmarks.settle [--sizes 64-32-10 784-100-10] [--batch 256]``.
Writes ``benchmarks/settle.json``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks import write_json
from eqspice.circuits import CrossbarSpec, crossbar, render_netlist
from eqspice.simulator.engine import FREE, Nudge
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.ngspice.engine import NgspiceEngine
from eqspice.simulator.ngspice.worker import Worker

BETA_S = 1e-5


def problem(layers: tuple[int, ...], batch: int, seed: int = 0):
    circuit = crossbar(CrossbarSpec(layers=layers, diode_bias_v=(0.4, -0.4)))
    rng = np.random.default_rng(seed)
    g = rng.uniform(1e-7, 1e-4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (batch, layers[0])) @ circuit.input_gain.T
    targets = rng.uniform(-0.05, 0.05, (batch, len(circuit.output_nodes)))
    return circuit, g, inputs, targets


def naive_pair(circuit, g, inputs, targets) -> tuple[float, list[np.ndarray]]:
    """Seconds per sample for the naive path, and its voltages (free, nudged)."""
    worker = Worker()
    names = list(circuit.node_names)
    out = [np.empty((len(inputs), len(names))) for _ in range(2)]
    started = time.perf_counter()
    for b in range(len(inputs)):
        for k, beta in enumerate((0.0, BETA_S)):
            worker.load(render_netlist(circuit, g, inputs[b], targets[b], beta), names, {})
            out[k][b] = worker.operating_point()
    return (time.perf_counter() - started) / len(inputs), out


def timed_pair(engine, circuit, g, inputs, targets, blas_threads: int = 1) -> tuple[float, list[np.ndarray]]:
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        engine.load(circuit, g)
        pair = [FREE, Nudge(targets_v=targets, beta_s=BETA_S)]
        engine.settle_phases(inputs[:2], [FREE, Nudge(targets_v=targets[:2], beta_s=BETA_S)])  # warm-up: child start
        started = time.perf_counter()
        v = engine.settle_phases(inputs, pair)
    return (time.perf_counter() - started) / len(inputs), v


def max_dv(a: list[np.ndarray], b: list[np.ndarray], rows: int) -> float:
    return float(max(np.max(np.abs(x[:rows] - y[:rows])) for x, y in zip(a, b)))


def run(layers: tuple[int, ...], batch: int, naive_samples: int, workers: int) -> list[dict]:
    circuit, g, inputs, targets = problem(layers, batch)
    name = "-".join(map(str, layers))
    rows = []
    naive_sec, naive_v = naive_pair(circuit, g, inputs[:naive_samples], targets[:naive_samples])
    rows.append(dict(network=name, engine="ngspice naive (parse + op)", batch=1, sec_per_sample=naive_sec, dv=0.0))
    engines = [
        ("ngspice op (alter)", NgspiceEngine(mode="op", workers=1), naive_samples, 1),
        (f"ngspice sweep x{workers}", NgspiceEngine(mode="sweep", workers=workers), batch, 1),
        ("native", NativeEngine(), batch, 1),
        ("native, BLAS 2 threads", NativeEngine(), batch, 2),
    ]
    for label, engine, n, blas in engines:
        try:
            sec_per_sample, v = timed_pair(engine, circuit, g, inputs[:n], targets[:n], blas)
        finally:
            engine.close()
        rows.append(
            dict(network=name, engine=label, batch=n, sec_per_sample=sec_per_sample, dv=max_dv(v, naive_v, naive_samples))
        )
    for r in rows:
        r["pairs_per_sec"] = 1.0 / r["sec_per_sample"]
        r["ratio_to_naive"] = naive_sec / r["sec_per_sample"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["64-32-10", "784-100-10"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--naive-samples", type=int, default=3, help="samples timed on the slow paths")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=os.path.join("benchmarks", "settle.json"))
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        rows += run(tuple(int(n) for n in size.split("-")), args.batch, args.naive_samples, args.workers)
    header = f"{'network':>11} {'engine':>28} {'batch':>6} {'pairs/s':>10} {'x naive':>9} {'max|dv| V':>10}"
    print(header)
    for r in rows:
        print(
            f"{r['network']:>11} {r['engine']:>28} {r['batch']:>6} {r['pairs_per_sec']:>10.2f} "
            f"{r['ratio_to_naive']:>9.1f} {r['dv']:>10.1e}"
        )
    write_json(rows, args.json)


if __name__ == "__main__":
    main()
