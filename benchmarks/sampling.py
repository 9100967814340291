"""Speed of the native samplers in noisy training, side by side in one run.

The contrastive training step (free and nudged phases sampled, the update
computed and written to the devices) of ``examples/fashion_noise.toml`` (the
784-256-10 crossbar with gibbs noise, batch 32, 20 readings per phase), with
the Langevin sampler (Euler-Maruyama, ``dt = tau / 10``, burn-in 5 tau, window
40 tau: 450 steps per phase) and with the block Gibbs sampler (5 burn-in
sweeps, one sweep per reading: 25 sweeps per phase), on the same mini-batches
and conductances.  Also reported: the seconds per phase (one mini-batch, nudged)
spent in the sampler alone and the block Gibbs acceptance rate.  BLAS runs on one thread.

Run: ``python -m benchmarks.sampling [--config examples/fashion_noise.toml] [--batches 3]``.
Writes ``benchmarks/sampling.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks import write_json
from eqspice.learning.run.build import initial_state, open_session
from eqspice.learning.run.config import load_config
from eqspice.learning.run.loop import train_step
from eqspice.simulator.engine import Nudge
from eqspice.simulator.sampling.block_gibbs import block_gibbs_samples


def time_training(config, batches: int, limit: int) -> float:
    """Samples per second of ``train_step`` over ``batches`` mini-batches after one warm-up batch."""
    session = open_session(config.model_copy(update={"data": config.data.model_copy(update={"limit_train": limit})}))
    state = initial_state(config, session.circuit, session.device)
    session.engine.load(session.circuit, state.g_s)
    size = config.training.batch_size
    train_step(session, state, np.arange(size))  # warm-up: imports, caches
    started = time.perf_counter()
    for b in range(1, batches + 1):
        train_step(session, state, np.arange(b * size, (b + 1) * size))
    return batches * size / (time.perf_counter() - started)


def time_sampler(config, limit: int, repeats: int = 2) -> float:
    """Seconds per phase (one mini-batch, nudged) spent in the native sampler alone."""
    from eqspice.simulator.sampling.native import NativeSampler

    session = open_session(config.model_copy(update={"data": config.data.model_copy(update={"limit_train": limit})}))
    state = initial_state(config, session.circuit, session.device)
    ids = np.arange(config.training.batch_size)
    x, y = session.inputs_v(session.data.x_train[ids]), session.targets_v(session.data.y_train[ids])
    n = config.noise
    sampler = NativeSampler(n.spec(), n.native_sampler, n.burn_in_sweeps, n.sweeps_per_reading)
    rng = np.random.default_rng(0)
    nudge = Nudge(targets_v=y, beta_s=config.training.beta_s)
    sampler.sample(session.circuit, state.g_s, x, nudge, rng)  # warm-up: engine loaded
    started = time.perf_counter()
    for _ in range(repeats):
        sampler.sample(session.circuit, state.g_s, x, nudge, rng)
    return (time.perf_counter() - started) / repeats


def acceptance_rate(config, limit: int) -> float:
    """Fraction of accepted block Gibbs moves in the nudged phase of the first mini-batch."""
    session = open_session(config.model_copy(update={"data": config.data.model_copy(update={"limit_train": limit})}))
    state = initial_state(config, session.circuit, session.device)
    ids = np.arange(config.training.batch_size)
    x, y = session.inputs_v(session.data.x_train[ids]), session.targets_v(session.data.y_train[ids])
    out: dict = {}
    block_gibbs_samples(session.circuit, state.g_s, config.noise.spec(), x, y, config.training.beta_s,
                        np.random.default_rng(0), acceptance=out)  # fmt: skip
    return out["rate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join("examples", "fashion_noise.toml"))
    parser.add_argument("--batches", type=int, default=3, help="timed mini-batches per sampler")
    parser.add_argument("--json", default=os.path.join("benchmarks", "sampling.json"))
    args = parser.parse_args()
    base = load_config(args.config)
    limit = (args.batches + 2) * base.training.batch_size
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for sampler in ("langevin", "block_gibbs"):
            config = base.model_copy(update={"noise": dataclasses.replace(base.noise, native_sampler=sampler)})
            n = config.noise
            steps = int(round(n.run_sec / n.dt_sec)) if sampler == "langevin" else n.burn_in_sweeps + n.samples * n.sweeps_per_reading
            rows.append(
                dict(
                    network="-".join(map(str, config.network.layers)),
                    sampler=sampler,
                    batch=config.training.batch_size,
                    readings=n.samples,
                    steps_or_sweeps=steps,
                    samples_per_sec=time_training(config, args.batches, limit),
                    sampler_sec_per_phase=time_sampler(config, limit),
                )
            )
        rate = acceptance_rate(base, limit)
    for r in rows:
        r["speed_ratio"] = r["samples_per_sec"] / rows[0]["samples_per_sec"]
        r["sampler_speed_ratio"] = rows[0]["sampler_sec_per_phase"] / r["sampler_sec_per_phase"]
    rows[-1]["acceptance"] = rate
    print(
        f"{'network':>11} {'sampler':>12} {'batch':>6} {'readings':>9} {'steps':>6} {'train samples/s':>16} "
        f"{'x langevin':>11} {'sampler s/phase':>16} {'x langevin':>11}"
    )
    for r in rows:
        print(
            f"{r['network']:>11} {r['sampler']:>12} {r['batch']:>6} {r['readings']:>9} {r['steps_or_sweeps']:>6} "
            f"{r['samples_per_sec']:>16.1f} {r['speed_ratio']:>11.1f} {r['sampler_sec_per_phase']:>16.3f} "
            f"{r['sampler_speed_ratio']:>11.1f}"
        )
    print(f"block Gibbs acceptance rate (nudged phase, first mini-batch): {rate:.4f}")
    write_json(rows, args.json)


if __name__ == "__main__":
    main()
