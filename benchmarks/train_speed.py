"""Settling and training speed on the Fashion-MNIST circuit, as fractions of the machine's roofline.

The circuit is the one of ``examples/fashion_mnist.toml`` (10 V differential
inputs, half-wave diodes, devices in the lower quarter of their range), at two
hidden sizes.  Per size:

* **settle**: free phase, cold start, the first 256 Fashion-MNIST test images,
  in batches of 1, 32 and 256: microseconds per sample (the engine's conductances
  are set again, untimed, before every repeat, so no repeat reuses an input drive
  the one before left in a cache);
* **train**: mini-batches of 32 of the example's training step (centred EP,
  cross-entropy, Adam): milliseconds per sample, the whole step (phases,
  update, optimizer, device write, engine update, and the loop's copy of
  the consistent state), the fastest of several;
* **exact**: the same step with the exact gradient (``training.estimator = "implicit"``).

Everything runs on one BLAS thread and is timed in CPU seconds of this process
(``time.process_time``: on a busy machine the time other processes take is not
counted; cache and memory contention still are, hence the fastest of several
repeats of every measurement).  The roofline is measured in the same run:
the rate of a float64 dgemm (``2 n^3`` FLOP, best of several) on that thread.
Each figure is also given as the time that dgemm rate needs for the step's
*necessary* arithmetic divided by the measured time (the fraction of the
roofline reached), with the FLOP count per sample

* drive: ``2 n_drive`` (every device from a driven node, once per sample);
* a Newton iteration: ``6 n_coupled`` (residual, Schur right-hand side and
  back-substitution over the devices between free nodes), counted
  ``NEWTON_ITERATIONS`` times per cold settle and ``WARM_ITERATIONS`` times per
  warm-started nudged phase, whatever the engine needs;
* the contrast (or the exact gradient's contraction): ``4 n_devices`` (two crossbar products);

the optimizer and the device update are elementwise (memory-bound) and
counted as nothing.  ``x recorded`` is the recorded figure of the previous
implementation on this machine kind divided by today's (above 1: faster).  With
``--baseline-python`` (the interpreter of another checkout's environment, e.g.
``../main/.venv/bin/python``) the same measurements of that checkout run in a
child process right after each size's own, and ``x baseline`` is its time
divided by today's: a ratio measured side by side, on the same machine load.

Run: ``python -m benchmarks.train_speed [--quick] [--baseline-python PYTHON]``.
Writes ``benchmarks/train_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks import write_json
from eqspice.learning.run.build import initial_state, open_session
from eqspice.learning.run.config import ConfigError, load_config
from eqspice.learning.run.loop import _Consistent, train_step

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "fashion_mnist.toml"
SIZES = ("784-100-10", "784-1024-10")
#: Previous implementation, this machine kind, one BLAS thread (settle at batch 256, us/sample; training, ms/sample).
RECORDED = {("784-100-10", "settle", 256): 167.0, ("784-1024-10", "settle", 256): 1339.0, ("784-1024-10", "train", 32): 6.2}
NEWTON_ITERATIONS = 8  # the recorded cold settle's count
WARM_ITERATIONS = 4  # a nudged phase started from the free state
REPEATS = 3  # each settle sweep is timed this often, each training step once: the fastest counts


def dgemm_flops_per_sec(n: int, repeats: int) -> float:
    """Best float64 ``n x n`` matrix product rate on the current BLAS threads, FLOP/s."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    out = np.empty((n, n))
    np.matmul(a, b, out=out)
    best = min(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2.0 * n**3 / best


def _timed(action) -> float:
    started = time.process_time()
    action()
    return time.process_time() - started


def counts(circuit) -> dict:
    """Devices from a driven node, devices between free nodes, all devices."""
    k = circuit.free_slice.start
    a, b = circuit.edges.T
    free = (a >= k) & (b >= k)
    return {"drive": int(np.sum(~free)), "coupled": int(np.sum(free)), "devices": int(circuit.n_edges)}


def settle_flops(n: dict) -> float:
    return 2.0 * n["drive"] + NEWTON_ITERATIONS * 6.0 * n["coupled"]


def train_flops(n: dict, nudged_phases: int) -> float:
    """Per sample: drive once, a cold free phase, warm nudged phases (or the adjoint, one iteration), the contraction."""
    return settle_flops(n) + nudged_phases * WARM_ITERATIONS * 6.0 * n["coupled"] + 4.0 * n["devices"]


def session_for(size: str, estimator: str, n_train: int, n_test: int):
    layers = [int(v) for v in size.split("-")]
    config = load_config(CONFIG, {
        "network.layers": layers, "training.estimator": estimator,
        "data.limit_train": n_train, "data.limit_test": n_test,
    })  # fmt: skip
    session = open_session(config)
    state = initial_state(config, session.circuit, session.device)
    session.engine.load(session.circuit, state.g_s)
    return session, state


def settle_rows(size: str, n_images: int, batches: tuple[int, ...], rate: float) -> list[dict]:
    session, _ = session_for(size, "centred", 32, n_images)
    x = session.inputs_v(session.data.x_test[:n_images])
    n = counts(session.circuit)
    rows = []
    engine, g_s = session.engine, session.engine.g_s.copy()
    for batch in batches:
        engine.settle(x[:batch])  # warm-up (first BLAS call, compiled kernels)
        sweep = lambda: [engine.settle(x[s : s + batch]) for s in range(0, n_images, batch)]  # noqa: E731
        times = []
        for _ in range(REPEATS):
            engine.set_conductances(g_s)  # untimed: no repeat reuses a drive cached by the one before
            times.append(_timed(sweep))
        sec = min(times) / n_images
        rows.append(row(size, "settle", batch, sec * 1e6, "us", settle_flops(n), rate, session.engine.iterations))
    return rows


def train_rows(size: str, n_batches: int, rate: float) -> list[dict]:
    rows = []
    for estimator, label, nudged in (("centred", "train", 2), ("implicit", "exact", 1)):
        try:
            session, state = session_for(size, estimator, 32 * (n_batches + 1), 32)
        except ConfigError:  # a baseline without the exact gradient
            continue
        batches = np.arange(32 * (n_batches + 1)).reshape(n_batches + 1, 32)
        train_step(session, state, batches[0])  # warm-up
        consistent = _Consistent(state)  # the loop's copy of the last consistent state, taken after every step
        step = lambda ids: (train_step(session, state, ids), consistent.mark(state))  # noqa: E731
        sec = min(_timed(lambda: step(ids)) for ids in batches[1:]) / 32
        flops = train_flops(counts(session.circuit), nudged)
        rows.append(row(size, label, 32, sec * 1e3, "ms", flops, rate, session.engine.iterations))
    return rows


def row(size: str, what: str, batch: int, value: float, unit: str, flops: float, rate: float, iterations: int) -> dict:
    sec = value * (1e-6 if unit == "us" else 1e-3)
    recorded = RECORDED.get((size, what, batch))
    return {
        "network": size, "what": what, "batch": batch, f"per_sample_{unit}": value,
        "flop_per_sample": flops, "roofline_fraction": flops / rate / sec,
        "x_recorded": None if recorded is None else recorded / value, "recorded": recorded,
        "last_newton_iterations": iterations,
    }  # fmt: skip


def measure(sizes, n_images, batches, n_train, rate) -> list[dict]:
    rows = []
    for size in sizes:
        rows += settle_rows(size, n_images, batches, rate)
        rows += train_rows(size, n_train, rate)
    return rows


def baseline_rows(python: str, size: str, quick: bool) -> list[dict]:
    """This benchmark's rows for ``size`` measured by another checkout's interpreter (its own eqspice)."""
    command = [python, "-m", "benchmarks.train_speed", "--rows-only", "--sizes", size] + (["--quick"] if quick else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this file and its package; eqspice is the interpreter's own
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long run: 32 images, batches 1 and 32, 2 mini-batches")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES))
    parser.add_argument("--baseline-python", help="interpreter of another checkout's environment, measured side by side")
    parser.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)  # a baseline child: rows as JSON
    parser.add_argument("--json", default=os.path.join("benchmarks", "train_speed.json"))
    args = parser.parse_args()
    n_images, batches, n_train = (32, (1, 32), 2) if args.quick else (256, (1, 32, 256), 6)
    rows, base = [], {}
    with threadpool_limits(limits=1, user_api="blas"):
        rate = dgemm_flops_per_sec(512 if args.quick else 1024, 3 if args.quick else 5)
        for size in args.sizes:
            rows += measure([size], n_images, batches, n_train, rate)
            if args.baseline_python:
                for r in baseline_rows(args.baseline_python, size, args.quick):
                    base[(r["network"], r["what"], r["batch"])] = r
    for r in rows:
        r["dgemm_flop_per_sec"] = rate
        b = base.get((r["network"], r["what"], r["batch"]))
        key = "per_sample_us" if "per_sample_us" in r else "per_sample_ms"
        r["baseline"] = None if b is None else b[key]
        r["x_baseline"] = None if b is None else b[key] / r[key]
    if args.rows_only:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    print(f"roofline: float64 dgemm on one BLAS thread, {rate / 1e9:.1f} GFLOP/s")
    print(f"{'network':>12} {'what':>7} {'batch':>6} {'per sample':>12} {'MFLOP':>7} {'roofline':>9} "
          f"{'x recorded':>11} {'x baseline':>11}")  # fmt: skip
    for r in rows:
        unit = "us" if "per_sample_us" in r else "ms"
        ratio = lambda x: "" if x is None else f"{x:.2f}"  # noqa: E731
        print(
            f"{r['network']:>12} {r['what']:>7} {r['batch']:>6} {r['per_sample_' + unit]:>9.1f} {unit} "
            f"{r['flop_per_sample'] / 1e6:>7.2f} {100 * r['roofline_fraction']:>8.1f}% "
            f"{ratio(r['x_recorded']):>11} {ratio(r['x_baseline']):>11}"
        )
    write_json(rows, args.json)


if __name__ == "__main__":
    main()
