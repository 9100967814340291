"""What the energy and time accounting costs a training run, side by side in one run.

For each case, a short ``eqspice train`` (native engine, BLAS on one thread)
with the run's accounting as configured (``energy.settling_samples`` sampled
samples per epoch, programming of every mini-batch) and without it
(``network.node_capacitance_f = 0``, ``energy.settling_samples = 0``: no
settling accounting; the programming count, two vector sums per mini-batch,
stays).  The two alternate ``--repeats`` times (each going first in turn) and the fastest of each is kept;
``overhead`` is ``with / without - 1`` of the epoch's training seconds
(``train_sec``); ``settling s`` and ``writes s`` are the seconds spent inside the
two accounting functions (measured by wrapping them in the run with accounting),
and ``share`` their sum over that run's ``train_sec``, which is less noisy on a
shared machine than the difference of two runs.

Cases: ``examples/digits.toml`` (64-32-10, 1437 samples, batch 8, 4 epochs: one
lasts under a second) and ``examples/fashion_mnist.toml`` at 784-256-10 on its first
3000 training images (batch 32, 1 epoch).  ``settled`` is samples settled per epoch.

Run: ``python -m benchmarks.energy_overhead [--repeats 2]``.  Writes ``benchmarks/energy_overhead.json``.
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks import write_json
from eqspice.learning.run import loop
from eqspice.learning.run.config import load_config
from eqspice.learning.run.loop import train

CASES = {
    "digits 64-32-10, 4 epochs": (os.path.join("examples", "digits.toml"), {"training.epochs": 4}),
    "fashion 784-256-10, 3000 images": (
        os.path.join("examples", "fashion_mnist.toml"),
        {"network.layers": [784, 256, 10], "data.limit_train": 3000, "data.limit_test": 500, "training.epochs": 1},
    ),
}


class _Timed:
    """Wraps a function of the loop module and adds up the seconds spent in it."""

    def __init__(self, name: str) -> None:
        self.name, self.inner, self.sec = name, getattr(loop, name), 0.0

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.sec += time.perf_counter() - started


def one_epoch(path: str, overrides: dict, accounting: bool) -> tuple[float, dict, dict]:
    """``train_sec`` of the run's epochs, seconds spent in each accounting function, the last epoch's metrics."""
    settings = {"engine.backend": "native", "engine.blas_threads": 1, **overrides}
    if not accounting:
        settings |= {"network.node_capacitance_f": 0.0, "energy.settling_samples": 0}
    config = load_config(path, settings)
    timers = [_Timed("account_phases"), _Timed("account_write")]
    for t in timers:
        setattr(loop, t.name, t)
    try:
        state = train(config, None, progress=False)
    finally:
        for t in timers:
            setattr(loop, t.name, t.inner)
    rows = state.metrics
    total = {"train_sec": sum(r["train_sec"] for r in rows), "samples": sum(int(round(r["samples_per_sec"] * r["train_sec"])) for r in rows)}
    return total["train_sec"], {t.name: t.sec for t in timers}, rows[-1] | total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs with and without accounting, alternating")
    parser.add_argument("--json", default=os.path.join("benchmarks", "energy_overhead.json"))
    args = parser.parse_args()
    rows = []
    for name, (path, overrides) in CASES.items():
        with_sec, without_sec, inside_sec, metrics = [], [], [], None
        for k in range(args.repeats):
            for accounting in (True, False) if k % 2 == 0 else (False, True):  # alternate which goes first
                sec, inside, last = one_epoch(path, overrides, accounting)
                if accounting:
                    with_sec.append(sec)
                    inside_sec.append(inside)
                    metrics = last
                else:
                    without_sec.append(sec)
        best = with_sec.index(min(with_sec))
        inside = inside_sec[best]
        rows.append(
            dict(
                case=name,
                samples=metrics["samples"],
                settling_samples=int(metrics["energy_samples"]),
                with_sec=min(with_sec),
                without_sec=min(without_sec),
                overhead=min(with_sec) / min(without_sec) - 1,
                settling_sec=inside["account_phases"],
                programming_sec=inside["account_write"],
                accounting_sec=sum(inside.values()),
                accounting_share=sum(inside.values()) / with_sec[best],
            )
        )
    print(
        f"{'case':>32} {'samples':>8} {'settled':>8} {'with s':>8} {'without s':>10} {'overhead':>9} "
        f"{'settling s':>11} {'writes s':>9} {'share':>7}"
    )
    for r in rows:
        print(
            f"{r['case']:>32} {r['samples']:>8} {r['settling_samples']:>8} {r['with_sec']:>8.2f} {r['without_sec']:>10.2f} "
            f"{100 * r['overhead']:>8.1f}% {r['settling_sec']:>11.3f} {r['programming_sec']:>9.3f} "
            f"{100 * r['accounting_share']:>6.1f}%"
        )
    write_json(rows, args.json)


if __name__ == "__main__":
    main()
