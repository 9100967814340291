"""Studies over many training runs: the cells of a sweep, run on Dask.

A sweep file names a base run configuration and the values to try for any of
its fields (dotted names such as ``device.c2c`` or ``seed``), combined as a
cross product or as a list of cells.  Every cell is an independent training run
in its own folder; when it finishes, its result (the cell's values and its
final metrics) is written atomically to ``cells/<id>.json``.  The table
``results.csv`` is assembled from those files, so a sweep started again runs
only the cells without a result, and a worker that dies loses no finished cell
and duplicates none.

Example ``SWEEP.toml``::

    base = "digits.toml"          # relative to this file
    mode = "product"              # or "list": the i-th values of every axis form cell i
    out = "runs/robustness"       # relative to the working directory
    [axes]
    seed = [0, 1, 2]
    "device.c2c" = [0.0, 0.1, 0.3]
    [overrides]                   # fixed for every cell
    "engine.backend" = "native"

Arms: off-chip against in situ
------------------------------
With ``arms = ["in_situ", "off_chip"]`` every combination of the axes runs once
per arm, and the table gets an ``arm`` column:

* ``in_situ``: the cell's config trained on its own (non-ideal) chip;
* ``off_chip``: the cell's *software reference*
  (:func:`~eqspice.learning.run.deploy.software_reference`: the same run on the
  ideal device of the same window) trained once and deployed into the cell's
  chip (:func:`~eqspice.learning.run.deploy.deploy`, programmed as the cell's
  ``[deploy]`` says, write-verify by default);
* ``hw_aware``: as ``off_chip``, but the reference is trained with injected
  weight noise, ``hw_aware_noise = s`` in the sweep file
  (:func:`~eqspice.learning.run.deploy.hardware_aware_reference`: every
  mini-batch sees ``G (1 + s N(0, 1))``), hardware-aware training in software.  Cells that share a reference
  (the seeds of a device axis) share one training, in ``reference/``, or in the
  folder ``references = "..."`` of the sweep file names: sweeps of one base (the
  axes of an atlas) that name the same folder train each seed's reference once
  for all of them (run them one after another, not at the same time).  That
  folder also keeps an index of the in-situ runs by the digest of their config:
  an in-situ cell that is the same run as one another axis already trained
  (the most ideal value of every device axis is one run) takes its result.

Both arms report the chip's test accuracy as
:func:`~eqspice.learning.run.deploy.chip_evaluation` measures it (drift and
read noise at evaluation).  An off-chip row's ``train_*`` and ``train_sec``
are its reference's, ``pulses`` those of programming, and
``reference_accuracy`` the reference's own test accuracy.  List an axis from
its most ideal value: ``eqspice report`` measures each arm's drop from there.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from eqspice.learning.run.checkpoint import OLD_METRIC_NAMES, write_atomic, write_csv_atomic
from eqspice.learning.run.config import ConfigError, RunConfig, dump_config, load_config

RESULT_COLUMNS = ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "pulses", "epochs", "train_sec")

#: The arms a sweep may compare (``arms`` of a sweep file).
ARMS = ("in_situ", "off_chip", "hw_aware")
#: Arms that deploy a reference trained in software.
DEPLOYED_ARMS = ("off_chip", "hw_aware")

#: Column of an off-chip row: the software reference's own test accuracy.
REFERENCE_COLUMN = "reference_accuracy"


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: the values it sets, and where it lives."""

    values: dict
    config: RunConfig
    #: off_chip arm: the software reference it deploys; else None.
    reference: "Cell | None" = None

    @property
    def id(self) -> str:
        return hashlib.sha1(json.dumps(self.values, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Sweep:
    base: Path
    axes: dict[str, list]
    overrides: dict
    mode: str
    out: Path
    arms: tuple[str, ...] = ()
    #: where the off-chip arm's software references are trained and kept (default ``out/reference``)
    reference_dir: Path | None = None
    #: hw_aware arm: relative weight noise its references are trained with
    hw_aware_noise: float | None = None

    @property
    def references_at(self) -> Path:
        return self.reference_dir or self.out / "reference"

    def cells(self) -> list[Cell]:
        names = list(self.axes)
        if self.mode == "product":
            combos = itertools.product(*(self.axes[n] for n in names))
        else:
            combos = zip(*(self.axes[n] for n in names))
        cells = []
        for combo in combos:
            values = dict(zip(names, combo))
            if not self.arms:
                cells.append(Cell(values, load_config(self.base, {**self.overrides, **values})))
            for arm in self.arms:
                cells.append(arm_cell(arm, values, load_config(self.base, {**self.overrides, **values}), self.hw_aware_noise))
        return cells

    def references(self) -> list[Cell]:
        """The software references the off-chip cells deploy, each once."""
        return list({c.reference.id: c.reference for c in self.cells() if c.reference is not None}.values())


def arm_cell(arm: str, values: dict, config: RunConfig, hw_aware_noise: float | None = None) -> Cell:
    """The cell of ``values`` in ``arm``; a deployed one with its reference and a ``[deploy]`` section."""
    if arm == "in_situ":
        return Cell({"arm": arm, **values}, config)
    from eqspice.learning.run.deploy import hardware_aware_reference, software_reference

    if config.deploy is None:
        from eqspice.learning.devices.programming import Programming

        config = config.model_copy(update={"deploy": Programming()})
    reference = software_reference(config) if arm == "off_chip" else hardware_aware_reference(config, hw_aware_noise)
    digest = hashlib.sha1(dump_config(reference).encode()).hexdigest()[:12]
    return Cell({"arm": arm, **values}, config, Cell({"reference": digest}, reference))


def load_sweep(path: str | Path, out: str | Path | None = None) -> Sweep:
    """Read and check a sweep file; every cell's config is validated before anything runs."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such sweep file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(raw) - {"base", "mode", "out", "axes", "overrides", "arms", "references", "hw_aware_noise"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {sorted(unknown)[0]!r}; use base, mode, out, axes, overrides, arms, references, hw_aware_noise"
        )
    if "references" in raw and (not isinstance(raw["references"], str) or not raw["references"] or not raw.get("arms")):
        raise ConfigError(
            f"{path}: references = {raw['references']!r}; "
            "give the folder of the off-chip arm's software references (with arms)"
        )
    arms = raw.get("arms", [])
    if not isinstance(arms, list) or not arms and "arms" in raw or len(set(map(str, arms))) != len(arms):
        raise ConfigError(f"{path}: arms = {arms!r}; give a list of distinct arms from {list(ARMS)}")
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise ConfigError(f"{path}: arms: unknown arm {bad[0]!r}; use {', '.join(ARMS)}")
    if ("hw_aware" in arms) != ("hw_aware_noise" in raw):
        raise ConfigError(
            f"{path}: the hw_aware arm and hw_aware_noise go together; "
            + ("give hw_aware_noise = s, the relative weight noise its training injects" if "hw_aware" in arms
               else "add \"hw_aware\" to arms or remove hw_aware_noise")
        )  # fmt: skip
    if "base" not in raw:
        raise ConfigError(f"{path}: base is missing; name the run configuration the sweep varies")
    axes = raw.get("axes") or {}
    if not axes:
        raise ConfigError(f"{path}: [axes] is empty; give at least one field and its values")
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: axes.{name} is empty; give a list of at least one value")
    mode = raw.get("mode", "product")
    if mode not in ("product", "list"):
        raise ConfigError(f"{path}: mode {mode!r}; use 'product' or 'list'")
    if mode == "list" and len({len(v) for v in axes.values()}) > 1:
        raise ConfigError(f"{path}: mode 'list' needs axes of equal length, got {[len(v) for v in axes.values()]}")
    sweep = Sweep(
        base=(path.parent / raw["base"]).resolve(),
        axes=axes,
        overrides=raw.get("overrides") or {},
        mode=mode,
        out=Path(out or raw.get("out") or Path("runs") / path.stem),
        arms=tuple(arms),
        reference_dir=Path(raw["references"]) if "references" in raw else None,
        hw_aware_noise=raw.get("hw_aware_noise"),
    )
    for name in [*axes, *sweep.overrides]:
        if name != "seed" and (name.count(".") < 1 or "" in name.split(".")):
            raise ConfigError(
                f"{path}: {name!r} is not a config field; write section.key, e.g. device.c2c or device.drift.nu_mean"
            )
    try:
        sweep.cells()  # every cell validated up front
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return sweep


def shared_result_path(shared: str | Path, config: RunConfig) -> Path:
    """Where a shared folder keeps the result of an in-situ run of ``config`` (keyed by the config's digest)."""
    digest = hashlib.sha1(dump_config(config).encode()).hexdigest()[:12]
    return Path(shared) / "cells" / f"in_situ-{digest}.json"


def run_cell(cell: Cell, out: str, shared: str | None = None) -> dict:
    """Train one cell (resuming its own run if an earlier attempt stopped) and record its result.

    With a ``shared`` folder (the sweep file's ``references``), an in-situ cell
    whose config another sweep of that folder already trained (each axis's most
    ideal value is the same run) takes that run's result instead of training it
    again; a new training is entered there for the sweeps that follow.
    """
    from eqspice.learning.run.loop import train  # imported in the worker

    out = Path(out)
    run_dir = out / "runs" / cell.id
    result_path = out / "cells" / f"{cell.id}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    known = shared_result_path(shared, cell.config) if shared is not None else None
    if known is not None and known.exists():
        row = {"cell": cell.id, **cell.values, **json.loads(known.read_text())}
        write_atomic(result_path, json.dumps(row).encode())
        return row
    resume = (run_dir / "checkpoint.npz").exists()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)  # an attempt that died before its first checkpoint
    state = train(cell.config, run_dir, resume=resume, progress=False)
    last = state.metrics[-1]
    test_loss, test_accuracy = last["test_loss"], last["test_accuracy"]
    if cell.values.get("arm") == "in_situ":  # the chip read as the off-chip arm's is
        test_loss, test_accuracy = _chip_accuracy(cell.config, state)
    row = {
        "cell": cell.id,
        **cell.values,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "train_accuracy": last["train_accuracy"],
        "train_loss": last["train_loss"],
        "pulses": sum(m.get("pulses", 0) for m in state.metrics),
        "epochs": state.epoch,
        "train_sec": round(sum(m["train_sec"] for m in state.metrics), 2),
    }
    write_atomic(result_path, json.dumps(row).encode())
    if shared is not None:
        _enter_shared(shared, cell, out, row)
    return row


def _enter_shared(shared: str, cell: Cell, out: Path, row: dict) -> None:
    """Enter an in-situ run's result in the shared folder's index, unless it is there already."""
    known = shared_result_path(shared, cell.config)
    if not known.exists():
        result = {key: row[key] for key in RESULT_COLUMNS}
        write_atomic(known, json.dumps({**result, "run": row.get("run", str(out / "runs" / cell.id))}).encode())


def _chip_accuracy(config: RunConfig, state) -> tuple[float, float]:
    from eqspice.learning.run.build import open_session
    from eqspice.learning.run.deploy import chip_evaluation

    session = open_session(config)
    try:
        return chip_evaluation(session, state)
    finally:
        session.engine.close()


def run_reference(cell: Cell, references: str) -> dict:
    """Train a software reference once (in the folder ``references``); its row."""
    (Path(references) / "cells").mkdir(parents=True, exist_ok=True)
    return run_cell(cell, references)


def run_off_chip(cell: Cell, out: str, reference: dict, references: str) -> dict:
    """Deploy the cell's trained reference into the cell's chip (a run folder of its own) and record the row."""
    from eqspice.learning.run.checkpoint import RunState
    from eqspice.learning.run.deploy import deploy

    out = Path(out)
    result_path = out / "cells" / f"{cell.id}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    run_dir = out / "runs" / cell.id
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an attempt that died while writing it
    reference_dir = Path(references) / "runs" / cell.reference.id
    summary = deploy(RunState.load(reference_dir), cell.config, run_dir, source=str(reference_dir))
    row = {
        "cell": cell.id,
        **cell.values,
        "test_accuracy": summary["test_accuracy"],
        "test_loss": summary["test_loss"],
        "train_accuracy": reference["train_accuracy"],
        "train_loss": reference["train_loss"],
        "pulses": summary["pulses"],
        "epochs": reference["epochs"],
        "train_sec": reference["train_sec"],
        REFERENCE_COLUMN: reference["test_accuracy"],
    }
    write_atomic(result_path, json.dumps(row).encode())
    return row


def collect(sweep: Sweep) -> list[dict]:
    """Finished cells' rows, in the sweep's cell order."""
    rows = []
    for cell in sweep.cells():
        path = sweep.out / "cells" / f"{cell.id}.json"
        if path.exists():
            row = json.loads(path.read_text())
            rows.append({OLD_METRIC_NAMES.get(key, key): value for key, value in row.items()})
    return rows


def write_table(sweep: Sweep, rows: list[dict]) -> Path:
    arms = ["arm"] if sweep.arms else []
    extra = [REFERENCE_COLUMN] if set(DEPLOYED_ARMS) & set(sweep.arms) else []
    columns = ["cell", *arms, *sweep.axes, *RESULT_COLUMNS, *extra]
    return write_csv_atomic(sweep.out / "results.csv", columns, rows, extrasaction="ignore")


def plot_axes(sweep: Sweep, rows: list[dict]) -> list[Path]:
    """One plot per swept field: mean test accuracy against its values, one line per arm, error bars over the other cells."""
    from eqspice.learning.run.report import plot_atlas

    return [
        plot_atlas(sweep.out / f"accuracy_vs_{name.replace('.', '_')}.png", rows, name)
        for name in sweep.axes
        if name != "seed"
    ]


def connect(workers: int, scheduler: str | None):
    """A Dask client: a local cluster of single-threaded worker processes, or an existing scheduler."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="5s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--scheduler {scheduler}: cannot reach it ({exc}); check the address") from None
    # a free port of its own: two sweeps at once on one machine do not meet at 8787
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    return Client(cluster)


def recorded_rows(sweep: Sweep, table: str | Path, option: str) -> tuple[dict[str, dict], dict[str, Cell]]:
    """The rows of a recorded ``table`` (a ``results.csv`` of this sweep file, or its folder) by cell id, numbers
    parsed (:func:`~eqspice.learning.run.report.read_results`), and the sweep's cells by id; a one-line
    :class:`ConfigError` (naming ``option``) if the table is not this sweep's."""
    import csv

    from eqspice.learning.run.report import read_results

    table = Path(table)
    if table.is_dir():
        table = table / "results.csv"
    try:
        recorded = {row["cell"]: row for row in read_results(table)}
    except (OSError, UnicodeDecodeError, KeyError, csv.Error) as exc:
        raise ConfigError(f"{option} {table}: cannot read a results table with a cell column ({exc})") from None
    cells = {c.id: c for c in sweep.cells()}
    foreign = sorted(set(recorded) - set(cells))
    if foreign:
        raise ConfigError(
            f"{option} {table}: cell {foreign[0]} is not a cell of this sweep file (another file's table, "
            "or the file changed since); give the results.csv this sweep file wrote"
        )
    if not recorded:
        raise ConfigError(f"{option} {table}: the table has no rows; give a sweep's results.csv")
    return recorded, cells


def spot_check_cells(sweep: Sweep, table: str | Path, n: int, seed: int = 0) -> tuple[list[Cell], dict[str, dict]]:
    """``n`` cells of the recorded ``table`` (a ``results.csv`` of this sweep file), drawn by ``seed``, and
    the recorded rows by cell id; a one-line :class:`ConfigError` if the table is not this sweep's."""
    recorded, cells = recorded_rows(sweep, table, "--check")
    if n < 1:
        raise ConfigError(f"--cells {n}: give at least 1")
    order = [c for c in cells if c in recorded]
    picked = np.random.default_rng(seed).choice(len(order), size=min(n, len(order)), replace=False)
    return [cells[order[i]] for i in sorted(picked)], recorded


def take_known(sweep: Sweep, table: str | Path) -> int:
    """Enter the rows of a recorded ``table`` as finished cells of ``sweep.out`` (those without a result
    there yet), so that :func:`run_sweep` runs only the others: an axis extended by new values or arms
    after its run folders are gone.  Returns how many cells were entered."""
    recorded, cells = recorded_rows(sweep, table, "--known")
    (sweep.out / "cells").mkdir(parents=True, exist_ok=True)
    entered = 0
    for cell_id, was in recorded.items():
        path = sweep.out / "cells" / f"{cell_id}.json"
        if path.exists():
            continue
        row = {"cell": cell_id, **cells[cell_id].values}
        row.update({key: was[key] for key in (*RESULT_COLUMNS, REFERENCE_COLUMN) if was.get(key) not in (None, "")})
        write_atomic(path, json.dumps(row).encode())
        entered += 1
    return entered


def spot_check(
    sweep: Sweep, table: str | Path, n: int, out: str | Path, seed: int = 0, workers: int = 2,
    scheduler: str | None = None, progress: bool = True, tolerance: float = 0.0,
) -> list[dict]:
    """Run ``n`` recorded cells again from nothing in ``out`` (their software references too) and compare.

    Each returned row has the cell's values, the recorded and re-run test accuracy and loss, and
    ``agrees``: the accuracies differ by at most ``tolerance`` (a fraction; 0: the same test images
    right).  Nothing is taken from the sweep's own folder or its shared references.
    """
    cells, recorded = spot_check_cells(sweep, table, n, seed)
    fresh = replace(sweep, out=Path(out), reference_dir=None)  # references trained again, in ``out``
    if fresh.out.exists() and any(fresh.out.iterdir()):
        raise ConfigError(f"--out {fresh.out}: not an empty folder; a spot check re-runs its cells from nothing")
    run_sweep(fresh, workers, scheduler, progress, only={c.id for c in cells})
    rows = []
    for cell in cells:
        again = json.loads((fresh.out / "cells" / f"{cell.id}.json").read_text())
        was = recorded[cell.id]
        rows.append({
            "cell": cell.id, **cell.values,
            "recorded_accuracy": was["test_accuracy"], "rerun_accuracy": again["test_accuracy"],
            "recorded_loss": was["test_loss"], "rerun_loss": again["test_loss"],
            "agrees": abs(again["test_accuracy"] - was["test_accuracy"]) <= tolerance + 1e-12,
        })
    return rows


def run_sweep(
    sweep: Sweep, workers: int = 2, scheduler: str | None = None, progress: bool = True, only: set[str] | None = None
) -> list[dict]:
    """Run every cell without a result (of ``only``, if given: cell ids); return all rows (old and new) in cell order."""
    from concurrent.futures import CancelledError

    from dask.distributed import as_completed
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    from eqspice.learning.run.loop import RunError
    from eqspice.learning.run.progress import progress_bar

    client = connect(workers, scheduler)  # before anything is written
    try:
        (sweep.out / "cells").mkdir(parents=True, exist_ok=True)
        cells = sweep.cells()
        if only is not None:
            cells = [c for c in cells if c.id in only]
        todo = [c for c in cells if not (sweep.out / "cells" / f"{c.id}.json").exists()]
        shared = str(sweep.reference_dir) if sweep.reference_dir is not None and sweep.arms else None
        if shared is not None:
            (sweep.reference_dir / "cells").mkdir(parents=True, exist_ok=True)
            waiting = {c.id for c in todo}
            for cell in cells:  # runs finished before the index existed enter it too
                if cell.reference is None and cell.id not in waiting:
                    _enter_shared(shared, cell, sweep.out, json.loads((sweep.out / "cells" / f"{cell.id}.json").read_text()))
        references = {
            r.id: client.submit(run_reference, r, str(sweep.references_at), key=f"reference-{r.id}", retries=2)
            for r in {c.reference.id: c.reference for c in todo if c.reference is not None}.values()
        }
        futures = [
            client.submit(run_cell, c, str(sweep.out), shared, key=f"cell-{c.id}", retries=2)
            if c.reference is None
            else client.submit(
                run_off_chip, c, str(sweep.out), references[c.reference.id], str(sweep.references_at),
                key=f"cell-{c.id}", retries=2,
            )
            for c in todo
        ]
        bar = progress_bar(len(cells), initial=len(cells) - len(todo), desc="sweep", unit="run", enabled=progress)
        for future in as_completed(futures):
            try:
                future.result()
            except (KilledWorker, CancelledError, CommClosedError) as exc:
                done = sum(1 for c in cells if (sweep.out / "cells" / f"{c.id}.json").exists())
                raise RunError(
                    f"a Dask worker died running {future.key} ({type(exc).__name__}); {done} of {len(cells)} "
                    f"cells are finished and kept in {sweep.out / 'cells'}: run the same command again "
                    "to run only the missing ones"
                ) from None
            bar.update(1)
        bar.close()
    finally:
        client.close()
    rows = collect(sweep)
    write_table(sweep, rows)
    plot_axes(sweep, rows)
    return rows
