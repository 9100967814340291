"""Netlist rendering time for crossbars of growing size.

Run: ``python -m benchmarks.render [--json FILE]``.  Target: 784-100-10 in at most 2 s.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from eqspice.circuits import CrossbarSpec, crossbar, render_netlist

SIZES = [(2, 4, 1), (4, 16, 3), (64, 32, 10), (784, 100, 10)]


def measure(layers: tuple[int, ...], repeats: int = 3) -> dict:
    started = time.perf_counter()
    circuit = crossbar(CrossbarSpec(layers=layers))
    build_sec = time.perf_counter() - started
    g = np.random.default_rng(0).uniform(1e-7, 1e-4, circuit.n_edges)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        text = render_netlist(circuit, g)
        times.append(time.perf_counter() - started)
    return {
        "network": "-".join(map(str, layers)),
        "memristors": circuit.n_edges,
        "build_sec": round(build_sec, 4),
        "render_sec": round(min(times), 4),
        "netlist_mb": round(len(text) / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", default="benchmarks/render.json")
    args = parser.parse_args()
    rows = [measure(layers) for layers in SIZES]
    print(f"{'network':>12} {'memristors':>11} {'build s':>8} {'render s':>9} {'MB':>6}")
    for r in rows:
        print(f"{r['network']:>12} {r['memristors']:>11} {r['build_sec']:>8.4f} {r['render_sec']:>9.4f} {r['netlist_mb']:>6.2f}")
    with open(args.json, "w") as fh:
        json.dump(rows, fh, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
