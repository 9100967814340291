"""The ``eqspice`` command line.

Every failure a user can cause (a mistyped config, missing data, a damaged
checkpoint, an unwritable folder, a simulator that keeps crashing) ends in one
line on stderr and a non-zero exit code:

- 2: bad input (config, data, flags, a damaged or mismatched checkpoint); nothing is written.
- 3: the run stopped (the simulator kept failing); its state is saved, the line says how to resume.
- 130 (Ctrl-C, SIGINT) and 143 (SIGTERM): the run was interrupted, 128 plus the
  signal's number as shells report it; ``train`` saves its last consistent state
  and prints how to continue (``--resume RUN_DIR``).

Flags that stand for config values (``--backend``, ``--data-dir``, ``--limit``,
``--set``) become dotted overrides in one place, :func:`cli_overrides`, and every
command reads its config (a file or a run directory) through :func:`load_source`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from eqspice.circuits.netlist import export_netlist
from eqspice.circuits.network import Circuit
from eqspice.learning.run.build import build_circuit, initial_state, make_device, make_engine, open_session
from eqspice.learning.run.checkpoint import CHECKPOINT, CheckpointError, RunState
from eqspice.learning.run.config import ConfigError, RunConfig, load_config
from eqspice.learning.run.data import DataError, load_dataset
from eqspice.learning.run.energy import eval_inference_cost
from eqspice.learning.run.legacy import DeprecatedKey
from eqspice.learning.run.loop import Interrupted, RunError, Stop, check_resumable, evaluate, interruptions_unwrapped, train
from eqspice.simulator.engine import EngineError

EXIT_BAD_INPUT = 2
EXIT_RUN_STOPPED = 3
#: An interrupted command exits with 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM.
EXIT_SIGNAL_BASE = 128

EPILOG = """\
exit codes:
  0    done
  2    bad input (config, data, flags, a damaged checkpoint); nothing written
  3    the run stopped (the simulator kept failing); state saved, resume with --resume RUN_DIR
  130  interrupted by Ctrl-C (SIGINT)  } train saves its state and prints
  143  terminated by SIGTERM           } how to continue: --resume RUN_DIR
"""

#: Flags that stand for a config value, and the value (``section.key``) each sets.
FLAG_OVERRIDES = {"backend": "engine.backend", "data_dir": "data.data_dir", "limit": "data.limit_test"}


def cli_overrides(args: argparse.Namespace) -> dict:
    """The config values a command's flags set, as dotted overrides for :func:`load_config`.

    ``--set`` values first, then the named flags (:data:`FLAG_OVERRIDES`), so
    ``--backend`` wins over ``--set engine.backend=...``.  Flags a command does
    not have, or that were not given, set nothing.
    """
    overrides = dict(_setting(text) for text in getattr(args, "set", None) or [])
    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: give at least 1 sample")
    for flag, key in FLAG_OVERRIDES.items():
        value = getattr(args, flag, None)
        if value not in (None, ""):
            overrides[key] = value
    return overrides


@dataclass
class Source:
    """What a command works on: a config file (untrained) or a run directory (trained)."""

    config: RunConfig
    #: The run directory, or None for a config file.
    run_dir: Path | None
    #: How the output names it, e.g. ``trained run runs/xor``.
    origin: str

    def state(self, circuit: Circuit | None = None) -> RunState:
        """The run's latest checkpoint, or the config's seeded initial state.

        ``circuit`` is the config's circuit if the caller has built it already.
        """
        circuit = build_circuit(self.config) if circuit is None else circuit
        fresh = initial_state(self.config, circuit, make_device(self.config))
        if self.run_dir is None:
            return fresh
        state = RunState.load(self.run_dir)
        check_resumable(self.run_dir, state, fresh)
        return state


def load_source(source: str | Path, overrides: dict | None = None) -> Source:
    """Read a config file, or a run directory's recorded ``config.toml``, with ``overrides`` applied."""
    path = Path(source)
    if path.is_dir():
        if not (path / CHECKPOINT).exists():
            raise ConfigError(f"{path}: no {CHECKPOINT}; give a run directory or a config file")
        return Source(load_config(path / "config.toml", overrides), path, f"trained run {path}")
    config = load_config(path, overrides)
    return Source(config, None, f"untrained config {path} (seed {config.seed})")


def _parse_input(text: str, n_features: int) -> np.ndarray:
    try:
        x = np.array([float(v) for v in text.replace(" ", "").split(",") if v], dtype=float)
    except ValueError:
        raise ConfigError(f"--input {text!r}: give comma-separated numbers, e.g. --input 0,1") from None
    if x.size != n_features:
        raise ConfigError(f"--input has {x.size} values; the network has {n_features} inputs")
    if not np.all(np.isfinite(x)):
        raise ConfigError("--input holds NaN or inf; give finite numbers")
    return x


def _setting(text: str) -> tuple[str, object]:
    """``section.key=value`` (or ``seed=N``) from ``--set``; the value is read as TOML (a bare word as a string)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or ("." not in key and key != "seed") or not value.strip():
        raise ConfigError(f"--set {text!r}: give section.key=value or seed=N, e.g. --set training.epochs=2")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()


def _without_epochs(config: RunConfig) -> dict:
    raw = config.model_dump()
    raw["training"].pop("epochs")
    return raw


def cmd_train(args) -> int:
    overrides = cli_overrides(args)
    config = load_source(args.config, overrides).config
    if args.resume:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise ConfigError(f"--resume {run_dir}: no such run directory")
        if not (run_dir / CHECKPOINT).exists():
            raise ConfigError(f"--resume {run_dir}: no {CHECKPOINT} there; start a new run instead")
        recorded = load_source(run_dir, overrides).config
        if _without_epochs(recorded) != _without_epochs(config):
            raise ConfigError(f"{args.config} differs from the config recorded in {run_dir} (only epochs may change)")
    else:
        stem = Path(args.config).stem
        run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / stem
    state = train(config, run_dir, resume=bool(args.resume), progress=not args.quiet)
    last = state.metrics[-1] if state.metrics else {}
    print(
        f"run {run_dir}: {state.epoch} epochs, test accuracy {last.get('test_accuracy', float('nan')):.4f}, "
        f"train accuracy {last.get('train_accuracy', float('nan')):.4f}"
    )
    return 0


def cmd_settle(args) -> int:
    source = load_source(args.source, cli_overrides(args))
    config = source.config
    circuit = build_circuit(config)
    g_s = source.state(circuit).g_s
    x = _parse_input(args.input, circuit.n_features)
    engine = make_engine(config)
    try:
        engine.load(circuit, g_s)
        v = engine.settle((x @ circuit.input_gain.T)[None, :])[0]
    finally:
        engine.close()
    print(f"# {source.origin}, engine {engine.name}, input {','.join(f'{a:g}' for a in x)}")
    for name, volts in zip(circuit.output_nodes, v[circuit.output_index]):
        print(f"V({name}) = {volts:.9f} V")
    scores = circuit.readout @ v[circuit.output_index]
    print(f"predicted class {int(np.argmax(scores))}")
    return 0


def cmd_export(args) -> int:
    source = load_source(args.source, cli_overrides(args))
    config = source.config
    circuit = build_circuit(config)
    g_s = source.state(circuit).g_s
    if args.subckt is not None:
        return _export_subckt(args, source, circuit, g_s)
    if args.dialect != "ngspice" or args.samples is not None or args.lossy:
        raise ConfigError("--dialect, --samples and --lossy need --subckt NAME (a subcircuit and its testbench)")
    if args.input is not None:
        x = _parse_input(args.input, circuit.n_features)
        what = f"input {','.join(f'{a:g}' for a in x)}"
    else:
        d = config.data
        data = load_dataset(
            d.name, data_dir=d.data_dir, seed=config.seed, test_fraction=d.test_fraction
        )
        if not 0 <= args.sample < len(data.x_test):
            raise ConfigError(f"--sample {args.sample}: the test set has {len(data.x_test)} samples")
        x = data.x_test[args.sample]
        what = f"test sample {args.sample} of {data.name} (label {data.y_test[args.sample]})"
    out = Path(args.output)
    header = (f"exported from {source.origin}", f"applied: {what}", f"run with: ngspice -b {out.name}")
    try:
        export_netlist(out, circuit, g_s, circuit.input_gain @ x, header=header)
    except OSError as exc:
        raise ConfigError(f"-o {out}: cannot write ({exc.strerror})") from None
    print(f"wrote {out}: {circuit.n_edges} memristors, {what}")
    return 0


def _export_subckt(args, source: Source, circuit: Circuit, g_s: np.ndarray) -> int:
    """``eqspice export --subckt NAME``: the subcircuit and its testbench in ``-o`` (a folder)."""
    from eqspice.circuits.export import ExportError, export_texts, write_export

    config = source.config
    labels = None
    if args.input is not None:
        x = _parse_input(args.input, circuit.n_features)[None, :]
        what = f"input {','.join(f'{a:g}' for a in x[0])}"
    else:
        d = config.data  # the test set eval uses, limits included
        data = load_dataset(
            d.name, data_dir=d.data_dir, seed=config.seed, test_fraction=d.test_fraction,
            limit_train=d.limit_train, limit_test=d.limit_test,
        )
        n_test = len(data.x_test)
        if args.samples is not None:
            n = n_test if args.samples == "all" else _count(args.samples, n_test)
            index = np.arange(n)
            what = f"test samples 0..{n - 1} of {data.name}"
        else:
            if not 0 <= args.sample < n_test:
                raise ConfigError(f"--sample {args.sample}: the test set has {n_test} samples")
            index = np.array([args.sample])
            what = f"test sample {args.sample} of {data.name}"
        x, labels = data.x_test[index], data.y_test[index]
    noise = config.noise.model
    lacking = [f"the run's thermal noise (noise.model = {noise!r}): the testbench is a DC one"] if noise != "none" else []
    out = Path(args.output)
    if not out.is_dir():
        raise ConfigError(f"-o {out}: with --subckt give an existing folder for NAME{{,_tb}} files")
    notes = (f"exported from {source.origin}", f"testbench applies: {what}")
    try:
        texts = export_texts(
            circuit, g_s, args.subckt, x @ circuit.input_gain.T, dialect=args.dialect, labels=labels, notes=notes,
            lossy=args.lossy, not_expressed=lacking, probe_hidden=args.probe_hidden,
        )
        paths = write_export(out, args.subckt, args.dialect, texts)
    except ExportError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"-o {out}: cannot write ({exc.strerror})") from None
    print(f"wrote {paths[0]} and {paths[1]}: {circuit.n_edges} memristors, dialect {args.dialect}, {what}")
    return 0


def _count(text: str, n_test: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ConfigError(f"--samples {text!r}: give a number of test samples or all") from None
    if not 1 <= n <= n_test:
        raise ConfigError(f"--samples {n}: give 1 to {n_test} (the test set's size) or all")
    return n


def cmd_import(args) -> int:
    """``eqspice import FILE --into RUN_DIR``: the device values of an exported subcircuit become the run's."""
    from eqspice.circuits.export.reader import NetlistRefused, conductances, read_subckt
    from eqspice.circuits.netlist import edge_names

    run_dir = Path(args.into)
    if not (run_dir / CHECKPOINT).exists():
        raise ConfigError(f"--into {run_dir}: no {CHECKPOINT}; give a run directory written by eqspice train")
    source = load_source(run_dir)
    circuit = build_circuit(source.config)
    state = source.state(circuit)
    path = Path(args.netlist)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        g_s = conductances(read_subckt(text, str(path)), circuit, state.g_s, str(path))
    except NetlistRefused as exc:
        raise ConfigError(f"{exc}; nothing written") from None
    device = source.config.device
    outside = np.flatnonzero((g_s < device.g_min_s * (1 - 1e-12)) | (g_s > device.g_max_s * (1 + 1e-12)))
    if outside.size:
        e = int(outside[0])
        raise ConfigError(
            f"{path}: {edge_names(circuit)[e]} = {float(1 / g_s[e])!r} ohm is outside the device's range "
            f"[{1 / device.g_max_s:g}, {1 / device.g_min_s:g}] ohm ({outside.size} such); nothing written"
        )
    changed = int(np.sum(g_s != state.g_s))
    state.g_s = g_s
    state.save(run_dir)
    print(f"imported {path} into {run_dir}: {changed} of {circuit.n_edges} conductances changed")
    return 0


def cmd_eval(args) -> int:
    source = load_source(args.source, cli_overrides(args))
    config, state = source.config, source.state()
    session = open_session(config)
    g_s = state.g_s
    if session.drift is not None and source.run_dir is not None:  # as the run measured it: drifted
        from eqspice.learning.run.loop import conductances_at_evaluation

        g_s = conductances_at_evaluation(session, state)
    try:
        with threadpool_limits(limits=config.engine.blas_threads, user_api="blas"):
            if config.deploy is not None and source.run_dir is not None:  # a deployed chip, read as deploy read it
                from eqspice.learning.run.deploy import chip_evaluation

                loss, accuracy = chip_evaluation(session, state)
            else:
                session.engine.load(session.circuit, g_s)
                loss, accuracy = evaluate(session, session.data.x_test, session.data.y_test, batch=256)
            cost = eval_inference_cost(session, g_s)
    finally:
        session.engine.close()
    n = len(session.data.x_test)
    print(
        f"{source.origin}: {session.engine.name} engine, {n} test samples of {session.data.name}: "
        f"accuracy {accuracy:.4f} ({round(accuracy * n)}/{n}), loss {loss:.6g} ({session.loss_label})"
    )
    if session.circuit.amplifiers is not None:
        print("per inference: energy and latency are not modelled with amplifiers (network.amplifier_gain)")
    elif cost is not None:
        energy_j, latency_sec, samples = cost
        print(
            f"per inference: energy {energy_j:.4g} J, latency {latency_sec:.4g} s (free phase from the previous "
            f"sample's state, mean over the first {samples} test samples, "
            f"{config.network.node_capacitance_f:g} F per node)"
        )
    return 0


def cmd_deploy(args) -> int:
    """``eqspice deploy RUN_DIR --out DIR``: the trained conductances programmed into a chip."""
    from eqspice.learning.run.config import PULSED_ONLY
    from eqspice.learning.run.deploy import DEPLOYMENT, deploy

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory; give the folder of a run written by eqspice train")
    if not (run_dir / CHECKPOINT).exists():
        raise ConfigError(f"{run_dir}: no {CHECKPOINT}; give the folder of a run written by eqspice train")
    overrides = cli_overrides(args)
    if not any(key.startswith("deploy.") for key in overrides):
        overrides["deploy.scheme"] = "write_verify"  # the default scheme, recorded in the chip's config
    trained = load_source(run_dir).state()
    chip = load_source(run_dir, overrides).config
    for key in overrides:
        section, _, name = key.partition(".")
        if section == "device" and name in PULSED_ONLY and chip.device.model == "ideal":
            raise ConfigError(f"--set {key}: an ideal device has no {name}; add --set device.model=pulsed")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty folder; pick another")
    summary = deploy(trained, chip, out, source=str(run_dir))
    print(
        f"deployed {run_dir} into {out}: {summary['scheme']}, {summary['writes']} writes, {summary['pulses']} pulses, "
        f"{summary['within_tolerance']}/{summary['devices']} devices within {summary['tolerance_s']:.3g} S, "
        f"{summary['stuck_min']} stuck at g_min, {summary['stuck_max']} at g_max; test accuracy on the chip "
        f"{summary['test_accuracy']:.4f} (details in {out / DEPLOYMENT}; eqspice eval {out})"
    )
    return 0


def cmd_sweep(args) -> int:
    from eqspice.learning.run.sweep import load_sweep, run_sweep

    sweep = load_sweep(args.sweep, out=None if args.check else args.out)
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give at least 1")
    if args.check:
        return _spot_check(sweep, args)
    if args.known:
        from eqspice.learning.run.sweep import take_known

        print(f"{take_known(sweep, args.known)} cells taken from {args.known}; running the others")
    rows = run_sweep(sweep, workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
    print(f"sweep {sweep.out}: {len(rows)} cells in results.csv, plots accuracy_vs_*.png")
    return 0


def _spot_check(sweep, args) -> int:
    """``eqspice sweep FILE --check RESULTS``: re-run a few recorded cells from nothing; 1 if any differs."""
    from eqspice.learning.run.sweep import spot_check

    out = Path(args.out) if args.out else sweep.out.with_name(sweep.out.name + "_check")
    rows = spot_check(
        sweep, args.check, args.cells, out, workers=args.workers, scheduler=args.scheduler, progress=not args.quiet
    )
    fields = [k for k in rows[0] if k not in ("cell", "recorded_accuracy", "rerun_accuracy", "recorded_loss", "rerun_loss", "agrees")]
    print("| cell | " + " | ".join(fields) + " | recorded accuracy | re-run | recorded loss | re-run | same |")
    print("| --- " * (len(fields) + 6) + "|")
    for r in rows:
        values = " | ".join(str(r[f]) for f in fields)
        print(
            f"| {r['cell']} | {values} | {r['recorded_accuracy']:.4f} | {r['rerun_accuracy']:.4f} | "
            f"{r['recorded_loss']:.6g} | {r['rerun_loss']:.6g} | {'yes' if r['agrees'] else 'NO'} |"
        )
    differ = [r["cell"] for r in rows if not r["agrees"]]
    if differ:
        print(f"error: {len(differ)} of {len(rows)} cells re-ran to another test accuracy ({', '.join(differ)}); runs in {out}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"{len(rows)} cells re-ran to their recorded test accuracy (runs in {out})")
    return 0


def _results_table(source: str) -> Path | None:
    """A sweep's ``results.csv`` named by ``source`` (the file, or the sweep's folder), or None for a run directory."""
    path = Path(source)
    if path.is_file() and path.suffix == ".csv":
        return path
    if path.is_dir() and (path / "results.csv").is_file() and not (path / "metrics.csv").is_file():
        return path / "results.csv"
    return None


def _sweep_results(table: Path) -> tuple[list[dict], list[str]]:
    """A sweep's results rows and its swept fields (besides seed), or a one-line ConfigError."""
    from eqspice.learning.run.report import read_results
    from eqspice.learning.run.sweep import REFERENCE_COLUMN, RESULT_COLUMNS

    try:
        rows = read_results(table)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{table}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if not rows or "test_accuracy" not in rows[0] or "cell" not in rows[0]:
        raise ConfigError(f"{table}: not a sweep's results table (no cell and test_accuracy columns); give results.csv")
    fields = [k for k in rows[0] if k not in ("cell", "arm", "seed", REFERENCE_COLUMN, *RESULT_COLUMNS)]
    if not fields:
        raise ConfigError(f"{table}: no swept field besides seed; nothing to plot against")
    return rows, fields


def cmd_report_atlas(tables: list[Path], output: str | None) -> int:
    """``eqspice report SWEEP_DIR SWEEP_DIR ...``: the atlas of one-field sweeps, one panel each,
    their drops as a table, and all their rows in one tidy CSV beside the figure."""
    from eqspice.learning.run.report import atlas_summary, plot_atlas_grid, write_atlas_table

    sweeps = {}
    for table in tables:
        rows, fields = _sweep_results(table)
        if len(fields) > 1:
            raise ConfigError(f"{table}: sweeps {', '.join(fields)}; an atlas panel needs a sweep of one field besides seed")
        name = table.parent.name
        if name in sweeps:
            raise ConfigError(f"two sweeps named {name}; give each sweep folder once")
        sweeps[name] = (rows, fields[0])
    if output is not None and not output.endswith(".png"):
        raise ConfigError(f"--output {output}: give a .png file name")
    path = Path(output) if output else tables[0].parent.parent / "atlas.png"
    print(atlas_summary(sweeps))
    plot_atlas_grid(path, sweeps)
    write_atlas_table(path.with_suffix(".csv"), sweeps)
    print(f"wrote {path} and {path.with_suffix('.csv')}")
    return 0


def cmd_report_sweep(table: Path, output: str | None) -> int:
    """``eqspice report SWEEP_DIR``: the atlas of a sweep, accuracy against each swept field, one line per arm."""
    from eqspice.learning.run.report import atlas_table, plot_atlas

    rows, fields = _sweep_results(table)
    if output and (not output.endswith(".png") or len(fields) > 1):
        raise ConfigError(f"--output {output}: give a .png file name (and a sweep of one field; else leave it out)")
    for field in fields:
        print(atlas_table(rows, field))
        path = output or table.parent / f"atlas_{field.replace('.', '_')}.png"
        plot_atlas(path, rows, field)
        print(f"wrote {path}")
    return 0


def cmd_report(args) -> int:
    from eqspice.learning.run.report import metrics_table, plot_comparison, plot_energy, read_metrics

    tables = [_results_table(source) for source in args.run_dirs]
    if any(tables):
        if not all(tables):
            raise ConfigError("give either sweep folders (an atlas) or run folders, not both")
        if len(tables) > 1:
            return cmd_report_atlas(tables, args.output)
        return cmd_report_sweep(tables[0], args.output)
    runs = {}
    for source in args.run_dirs:
        path = Path(source)
        if not (path / "metrics.csv").is_file():
            raise ConfigError(f"{path}: no metrics.csv; give a run directory written by eqspice train")
        runs[str(path)] = read_metrics(path)
    if args.output and not args.output.endswith(".png"):
        raise ConfigError(f"--output {args.output}: give a .png file name")
    for name, rows in runs.items():
        print(metrics_table(name, rows))
        print()
    if args.output:
        plot_comparison(args.output, runs, title="test accuracy and training loss")
        print(f"wrote {args.output}")
        energy = plot_energy(args.output.removesuffix(".png") + "_energy.png", runs, title="energy and time on the chip")
        if energy is not None:
            print(f"wrote {energy}")
    return 0


GRADCHECKS = {
    "nonreciprocal": "eqspice.learning.gradcheck.nonreciprocal",
    "noise": "eqspice.learning.gradcheck.noise",
    "exact": "eqspice.learning.gradcheck.exact",
    "amplifiers": "eqspice.learning.gradcheck.amplifiers",
}


def cmd_gradcheck(args) -> int:
    """Dispatch to one gradient check; each module parses its own options."""
    import importlib

    return importlib.import_module(GRADCHECKS[args.what]).main(args.options)


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one config value (or seed=N), e.g. --set training.epochs=2 --set seed=3",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eqspice",
        description="Memristor crossbars settled by ngspice, trained by equilibrium propagation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train",
        help="train a network described by a TOML config",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="TOML run configuration (see examples/)")
    p.add_argument("--backend", choices=["ngspice", "native"], help="override engine.backend")
    p.add_argument("--run-dir", help="where to write the run (default runs/<config name>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    p.add_argument("--data-dir", help="folder of IDX files (fashion_mnist, mnist)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_set(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("settle", help="print the output voltages for one input")
    p.add_argument("source", metavar="CONFIG|RUN_DIR")
    p.add_argument("--input", required=True, help="comma-separated features, e.g. 0,1")
    p.add_argument("--backend", choices=["ngspice", "native"])
    _add_set(p)
    p.set_defaults(func=cmd_settle)

    p = sub.add_parser("export", help="write the circuit as a SPICE netlist, or a subcircuit and testbench (--subckt)")
    p.add_argument("source", metavar="CONFIG|RUN_DIR")
    p.add_argument("-o", "--output", required=True, help="netlist file to write (.cir)")
    p.add_argument("--input", help="comma-separated features (default: a test sample)")
    p.add_argument("--sample", type=int, default=0, help="index of the test sample to apply")
    p.add_argument("--subckt", metavar="NAME", help="write a .subckt NAME with named ports and a testbench; -o is a folder")
    p.add_argument("--dialect", choices=["ngspice", "spice", "spectre", "xyce"], default="ngspice", help="with --subckt")
    p.add_argument("--samples", metavar="N|all", help="with --subckt: a testbench of the first N test samples")
    p.add_argument("--lossy", action="store_true", help="write what the dialect cannot express as comments")
    p.add_argument("--probe-hidden", action="store_true", help="hidden nodes as extra ports (gnucap prints them)")
    _add_set(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="read the device values of an exported subcircuit back into a run")
    p.add_argument("netlist", metavar="FILE.cir", help="a subcircuit file written by eqspice export --subckt")
    p.add_argument("--into", required=True, metavar="RUN_DIR", help="the run whose conductances it replaces")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("eval", help="test accuracy of a (trained) circuit with either engine")
    p.add_argument("source", metavar="CONFIG|RUN_DIR")
    p.add_argument("--backend", choices=["ngspice", "native"], help="override engine.backend")
    p.add_argument("--limit", type=int, help="evaluate only the first N test samples")
    p.add_argument("--data-dir", help="folder of IDX files (fashion_mnist, mnist)")
    _add_set(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "deploy",
        help="program a trained run's conductances into a (non-ideal) chip, e.g. --set device.stuck_min=0.1",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run written by eqspice train (the software reference)")
    p.add_argument("--out", required=True, metavar="DIR", help="new run folder of the programmed chip")
    p.add_argument("--backend", choices=["ngspice", "native"], help="override engine.backend for the evaluation")
    p.add_argument("--data-dir", help="folder of IDX files (fashion_mnist, mnist)")
    _add_set(p)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("sweep", help="many training runs over a grid of config values, on Dask")
    p.add_argument("sweep", metavar="SWEEP.toml")
    p.add_argument("--workers", type=int, default=2, help="local Dask workers (default 2)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--out", help="folder of the study (default: the sweep file's out; with --check, that name + _check)")
    p.add_argument(
        "--check", metavar="RESULTS.csv",
        help="spot check: re-run --cells recorded cells of this table (and their references) from nothing and "
        "compare their test accuracy; exit 1 if any differs",
    )  # fmt: skip
    p.add_argument("--cells", type=int, default=3, help="with --check: how many cells, drawn by seed 0 (default 3)")
    p.add_argument(
        "--known", metavar="RESULTS.csv",
        help="take the cells of this recorded table as finished (their run folders gone) and run only the "
        "others: new values or arms of an axis",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "report",
        help="print the metrics of runs and plot them side by side; or a sweep's atlas (SWEEP_DIR or results.csv)",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR|SWEEP_DIR")
    p.add_argument(
        "-o", "--output", help="plot to write (.png): runs side by side, or the sweep's accuracy against its field"
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "gradcheck",
        help="compare the learning rules' gradients with exact ones (eqspice gradcheck WHAT --help)",
    )
    p.add_argument("what", choices=sorted(GRADCHECKS), help="which check")
    p.add_argument("options", nargs=argparse.REMAINDER, help="options of that check")
    p.set_defaults(func=cmd_gradcheck)
    return parser


def _note(message, category, filename, lineno, line=None) -> str:
    """An old config key as one line on stderr, like the errors (other warnings as Python shows them)."""
    if issubclass(category, DeprecatedKey):
        return f"eqspice: note: {message}\n"
    return _python_warning(message, category, filename, lineno, line)


_python_warning = warnings.formatwarning


def _terminate(signum, frame) -> None:
    raise Stop(signum)  # a terminated run saves its state as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    warnings.formatwarning = _note
    try:
        with interruptions_unwrapped():
            return args.func(args)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"eqspice: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as exc:
        print(f"eqspice: {exc}", file=sys.stderr)
        return EXIT_SIGNAL_BASE + exc.signum
    except (RunError, EngineError) as exc:
        print(f"eqspice: error: {exc}", file=sys.stderr)
        return EXIT_RUN_STOPPED
    except BrokenPipeError:  # the reader of stdout went away (eqspice report ... | head): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return EXIT_SIGNAL_BASE + signal.SIGPIPE
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        what = " before the run's first checkpoint; nothing was written" if args.command == "train" else ""
        print(f"eqspice: interrupted ({signal.Signals(signum).name}){what}", file=sys.stderr)
        return EXIT_SIGNAL_BASE + signum


if __name__ == "__main__":
    sys.exit(main())
