"""What a run shows a person: metrics table and plots, written atomically.

The plots are drawn on :class:`matplotlib.figure.Figure` objects of their own,
with matplotlib imported only when one is drawn: importing the training loop
neither loads matplotlib nor changes its backend or pyplot's figures in the
process of whoever imports it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from eqspice.circuits.network import Circuit
from eqspice.learning.run.checkpoint import OLD_METRIC_NAMES, write_atomic, write_csv_atomic
from eqspice.learning.run.energy import ENERGY_COLUMNS

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "train_sec",
    "samples_per_sec",
    "engine_restarts",
    "pulses",
    *ENERGY_COLUMNS,
)

#: Columns written only by runs that measure them (``training.measure_gradient_cosine``: the epoch's
#: mean cosine and relative error of the rule's gradient estimate against the exact gradient).
OPTIONAL_COLUMNS = ("gradient_cosine", "gradient_relative_error")


def write_metrics(run_dir: str | Path, rows: list[dict]) -> None:
    """``metrics.csv``: one row per completed epoch; losses in V^2 (squared error) or nats
    (cross-entropy), accuracies in [0, 1], ``train_sec``: seconds spent on the epoch's
    mini-batches, ``pulses``: programming pulses applied in the epoch (0 for an ideal device),
    ``gradient_cosine``, ``gradient_relative_error`` (only if measured): mean cosine and relative
    error ``|g - g_exact| / |g_exact|`` of the rule's estimate against the exact gradient."""
    optional = tuple(k for k in OPTIONAL_COLUMNS if any(k in row for row in rows))
    write_csv_atomic(Path(run_dir) / "metrics.csv", METRIC_COLUMNS + optional, rows)


def new_figure(figsize: tuple[float, float]):
    """A figure outside pyplot, drawn by the Agg canvas whatever backend the process uses."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG, atomically (a reader never sees half an image)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    path = Path(path)
    write_atomic(path, buffer.getvalue())
    return path


#: Axis label of the squared-error loss the runs report unless they train the cross-entropy.
SQUARED_LOSS_LABEL = "|v_out - y|^2 / 2 (V^2)"


def plot_learning_curves(
    run_dir: str | Path, rows: list[dict], title: str = "", loss_label: str = SQUARED_LOSS_LABEL
) -> Path:
    """``learning_curves.png``: loss and accuracy against epoch, train and test."""
    epochs = [r["epoch"] for r in rows]
    fig = new_figure((10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for split, style in (("train", "-o"), ("test", "-s")):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in rows], style, label=split)
        ax_acc.plot(epochs, [100 * r[f"{split}_accuracy"] for r in rows], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel=f"loss {loss_label}", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_png(fig, Path(run_dir) / "learning_curves.png")


def plot_conductance_histograms(
    run_dir: str | Path, circuit: Circuit, g_s: np.ndarray, g_min_s: float, g_max_s: float
) -> Path:
    """``conductances.png``: histogram of device conductances for each crossbar layer."""
    groups = circuit.groups
    fig = new_figure((4.5 * len(groups), 3.5))
    axes = fig.subplots(1, len(groups), squeeze=False)
    bins = np.linspace(g_min_s, g_max_s, 41) * 1e6
    for ax, group in zip(axes[0], groups):
        ax.hist(g_s[group.slice] * 1e6, bins=bins, color="tab:blue")
        ax.set(title=f"{group.name} ({' x '.join(map(str, group.shape))})", xlabel="G (uS)", ylabel="devices")
        ax.grid(alpha=0.3)
    return save_png(fig, Path(run_dir) / "conductances.png")


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run's ``metrics.csv`` with numbers parsed (missing cells -> NaN), in today's column names."""
    path = Path(run_dir) / "metrics.csv"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {OLD_METRIC_NAMES.get(key, key): float(value) if value not in ("", None) else float("nan") for key, value in row.items()}
        for row in rows
    ]


def metrics_table(name: str, rows: list[dict]) -> str:
    """A run's metrics as aligned text: one line per epoch, accuracies in percent."""
    lines = [f"{name}", f"{'epoch':>5} {'train loss':>11} {'train %':>8} {'test loss':>11} {'test %':>7} {'s':>7} {'pulses':>10}"]
    for r in rows:
        lines.append(
            f"{int(r['epoch']):>5} {r['train_loss']:>11.4g} {100 * r['train_accuracy']:>8.2f} "
            f"{r['test_loss']:>11.4g} {100 * r['test_accuracy']:>7.2f} {r['train_sec']:>7.1f} {r.get('pulses', 0):>10.4g}"
        )
    if rows:
        best = max(rows, key=lambda r: r["test_accuracy"])
        lines.append(f"best test accuracy {100 * best['test_accuracy']:.2f}% at epoch {int(best['epoch'])}")
        lines += [line for line in [energy_summary(rows)] if line]
    return "\n".join(lines)


def plot_comparison(path: str | Path, runs: dict[str, list[dict]], title: str = "") -> Path:
    """Test accuracy and training loss against epoch for several runs, one line each."""
    fig = new_figure((10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, rows in runs.items():
        epochs = [r["epoch"] for r in rows]
        ax_loss.plot(epochs, [r["train_loss"] for r in rows], "-o", label=name)
        ax_acc.plot(epochs, [100 * r["test_accuracy"] for r in rows], "-s", label=name)
    ax_loss.set(xlabel="epoch", ylabel="train loss (V^2 or nats, as trained)", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_png(fig, path)


#: Panels of ``energy.png``: (title, y label, metric columns, their labels); energies in J, times in s.
ENERGY_PANELS = (
    (
        "training energy per epoch",
        "J",
        ("sampled_epoch_settling_energy_j", "epoch_programming_energy_j"),
        ("settling (sampled)", "programming"),
    ),
    ("energy per inference", "J", ("sampled_inference_energy_j",), ("free phase (sampled)",)),
    (
        "settling time per phase",
        "s",
        ("sampled_free_settling_sec", "sampled_plus_settling_sec", "sampled_minus_settling_sec"),
        ("free", "+beta", "-beta"),
    ),
    ("on-chip time per epoch", "s", ("sampled_epoch_chip_sec", "epoch_write_sec"), ("settling + writing", "writing")),
)


def plot_energy(path: str | Path, runs: dict[str, list[dict]], title: str = "") -> Path | None:
    """Energy and time of training on the chip against epoch, one line style per column, one colour per run.

    Runs whose metrics lack the energy columns (older runs) are left out; None if none has them.
    """
    runs = {name: rows for name, rows in runs.items() if rows and "epoch_programming_energy_j" in rows[0]}
    if not runs:
        return None
    fig = new_figure((18, 4))
    axes = fig.subplots(1, len(ENERGY_PANELS))
    styles = ("-o", "--s", ":^", "-.v")
    for ax, (panel, unit, columns, labels) in zip(axes, ENERGY_PANELS):
        drawn = False
        for k, (name, rows) in enumerate(runs.items()):
            epochs = [r["epoch"] for r in rows]
            for column, label, style in zip(columns, labels, styles):
                values = [_number(r.get(column)) for r in rows]
                if np.all(~np.isfinite(values)) or not np.any(np.asarray(values) > 0):
                    continue
                prefix = f"{name}: " if len(runs) > 1 else ""
                ax.plot(epochs, values, style, color=f"C{k}", label=prefix + label, markersize=4)
                drawn = True
        ax.set(title=panel, xlabel="epoch", ylabel=unit)
        ax.grid(alpha=0.3)
        if drawn:
            ax.set_yscale("log")
            ax.legend(fontsize=7)
        else:  # e.g. energy.settling_samples = 0: nothing sampled
            ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center", transform=ax.transAxes, color="0.4")
    fig.suptitle(title)
    return save_png(fig, path)


def _number(value) -> float:
    return float("nan") if value is None or value == "" else float(value)


def energy_summary(rows: list[dict]) -> str:
    """One line on the last epoch's energy and time, or "" for a run without the energy columns."""
    if not rows or "epoch_programming_energy_j" not in rows[-1]:
        return ""
    r = {k: _number(v) for k, v in rows[-1].items()}
    return (
        f"epoch {int(r['epoch'])}: {r['sampled_inference_energy_j']:.3g} J and {r['sampled_free_settling_sec']:.3g} s "
        f"per inference (sampled), training {r['sampled_epoch_settling_energy_j']:.3g} J settling (sampled) + "
        f"{r['epoch_programming_energy_j']:.3g} J programming, on chip {r['sampled_epoch_chip_sec']:.3g} s "
        f"({r['epoch_write_sec']:.3g} s writing)"
    )


def read_results(path: str | Path) -> list[dict]:
    """The rows of a sweep's ``results.csv``: numbers parsed where a cell holds one, text kept otherwise (and in ``cell``)."""

    def parse(value: str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
        return value

    with open(path, newline="") as handle:
        return [
            {key: value if key == "cell" else parse(value) for key, value in row.items()} for row in csv.DictReader(handle)
        ]


def atlas_points(rows: list[dict], field: str) -> dict[str, list[tuple[str, float, float, int]]]:
    """Test accuracy against ``field``, per arm: ``(value, mean %, std % over the cells, cells)`` in the axis's order.

    Rows without an ``arm`` (a sweep without arms) form one arm called ``all``.
    The standard deviation is over the cells sharing the arm and value (the
    seeds, and any other axis), with ``ddof = 1``; 0 for a single cell.
    """
    values = list(dict.fromkeys(str(r[field]) for r in rows))
    arms = list(dict.fromkeys(str(r.get("arm", "all")) for r in rows))
    points = {}
    for arm in arms:
        line = []
        for value in values:
            acc = np.array(
                [100 * float(r["test_accuracy"]) for r in rows if str(r.get("arm", "all")) == arm and str(r[field]) == value]
            )
            if acc.size:
                line.append((value, float(acc.mean()), float(acc.std(ddof=1)) if acc.size > 1 else 0.0, int(acc.size)))
        points[arm] = line
    return points


def failure_levels(line: list[tuple[str, float, float, int]], drops=(1.0, 5.0)) -> dict[float, str | None]:
    """For each drop (accuracy points), the first axis value whose mean accuracy is that far below the first value's.

    The first value of the axis is the arm's ideal (list axes from their most
    ideal value); None where the axis never drops that far.
    """
    if not line:
        return {d: None for d in drops}
    ideal = line[0][1]
    return {d: next((v for v, mean, _, _ in line[1:] if ideal - mean >= d), None) for d in drops}


def atlas_table(rows: list[dict], field: str) -> str:
    """The atlas as text: mean +- std test accuracy per arm and value, and each arm's 1- and 5-point failure levels."""
    points = atlas_points(rows, field)
    lines = [f"test accuracy (%) against {field}, mean +- std over seeds (cells)"]
    for arm, line in points.items():
        cells = ", ".join(f"{v}: {m:.1f} +- {s:.1f} ({n})" for v, m, s, n in line)
        lines.append(f"  {arm}: {cells}")
    for arm, line in points.items():
        levels = failure_levels(line)
        said = "; ".join(
            f"-{d:g} points at {field} = {v}" if v is not None else f"never -{d:g} points in this range"
            for d, v in levels.items()
        )
        lines.append(f"  {arm}: ideal {line[0][1]:.1f}% at {field} = {line[0][0]}; {said}")
    return "\n".join(lines)


def plot_atlas(path: str | Path, rows: list[dict], field: str, title: str = "") -> Path:
    """Test accuracy against ``field``: one line per arm, error bars over seeds (:func:`atlas_points`).

    The axis values are evenly spaced categories in the order swept; an
    off-chip arm's software reference (``reference_accuracy``) is a dashed line.
    """
    fig = new_figure((5.5, 3.8))
    ax = fig.subplots()
    _draw_atlas(ax, rows, field, legend_size=8)
    ax.set_title(title or f"accuracy against {field} (mean, std over seeds)")
    return save_png(fig, path)


def _draw_atlas(ax, rows: list[dict], field: str, legend_size: float) -> None:
    points = atlas_points(rows, field)
    values = list(dict.fromkeys(str(r[field]) for r in rows))
    for k, (arm, line) in enumerate(points.items()):
        x = [values.index(v) for v, *_ in line]
        ax.errorbar(x, [m for _, m, _, _ in line], yerr=[s for _, _, s, _ in line], fmt="-o", capsize=4,
                    color=f"C{k}", label=arm.replace("_", " ") if len(points) > 1 else None)
    reference = [100 * float(r["reference_accuracy"]) for r in rows if _number(r.get("reference_accuracy")) >= 0]
    if reference:
        ax.axhline(np.mean(reference), color="0.4", linestyle="--", linewidth=1, label="software reference")
    ax.set_xticks(range(len(values)), values)
    ax.set(xlabel=field, ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)
    if len(points) > 1 or reference:
        ax.legend(fontsize=legend_size)


#: Columns of the atlas's tidy table (:func:`atlas_rows`): one row per sweep, arm, value and seed.
ATLAS_COLUMNS = ("sweep", "field", "value", "arm", "seed", "test_accuracy", "reference_accuracy", "train_sec")


def atlas_rows(sweeps: dict[str, tuple[list[dict], str]]) -> list[dict]:
    """The results of several one-field sweeps as one tidy table (:data:`ATLAS_COLUMNS`).

    ``sweeps`` maps a sweep's name to its results rows and its swept field.
    """
    return [
        {
            "sweep": name, "field": field, "value": r[field], "arm": r.get("arm", "all"), "seed": r.get("seed", ""),
            "test_accuracy": r["test_accuracy"], "reference_accuracy": r.get("reference_accuracy", ""),
            "train_sec": r.get("train_sec", ""),
        }  # fmt: skip
        for name, (rows, field) in sweeps.items()
        for r in rows
    ]


def write_atlas_table(path: str | Path, sweeps: dict[str, tuple[list[dict], str]]) -> Path:
    """:func:`atlas_rows` as a CSV file, written atomically."""
    return write_csv_atomic(path, ATLAS_COLUMNS, atlas_rows(sweeps))


def atlas_summary(sweeps: dict[str, tuple[list[dict], str]]) -> str:
    """A Markdown table: per sweep and arm, the ideal accuracy and the first values 1 and 5 points below it."""
    lines = ["| sweep | field | arm | ideal (%) | -1 point at | -5 points at |", "| --- | --- | --- | --- | --- | --- |"]
    for name, (rows, field) in sweeps.items():
        for arm, line in atlas_points(rows, field).items():
            levels = failure_levels(line)
            said = [v if v is not None else "not reached" for v in levels.values()]
            lines.append(f"| {name} | {field} | {arm.replace('_', ' ')} | {line[0][1]:.1f} | {said[0]} | {said[1]} |")
    return "\n".join(lines)


def plot_atlas_grid(path: str | Path, sweeps: dict[str, tuple[list[dict], str]], columns: int = 4) -> Path:
    """One panel per sweep (accuracy against its field, one line per arm, error bars over seeds)."""
    n = len(sweeps)
    columns = min(columns, n)
    rows_n = -(-n // columns)
    fig = new_figure((3.6 * columns, 2.9 * rows_n))
    axes = np.atleast_1d(fig.subplots(rows_n, columns, squeeze=False)).ravel()
    for ax, (name, (rows, field)) in zip(axes, sweeps.items()):
        _draw_atlas(ax, rows, field, legend_size=6)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_png(fig, path)
