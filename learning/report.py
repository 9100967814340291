"""What a run shows a person: metrics table and plots, written atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from circuits.network import Circuit  # noqa: E402
from learning.checkpoint import write_atomic  # noqa: E402

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "seconds",
    "samples_per_s",
    "engine_restarts",
    "pulses",
)


def write_metrics(run_dir: str | Path, rows: list[dict]) -> None:
    """``metrics.csv``: one row per completed epoch; losses in V^2, accuracies in [0, 1],
    ``pulses``: programming pulses applied in the epoch (0 for an ideal device)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(run_dir) / "metrics.csv", text.getvalue().encode())


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def plot_learning_curves(run_dir: str | Path, rows: list[dict], title: str = "") -> Path:
    """``learning_curves.png``: loss and accuracy against epoch, train and test."""
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("test", "-s")):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in rows], style, label=split)
        ax_acc.plot(epochs, [100 * r[f"{split}_accuracy"] for r in rows], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss |v_out - y|^2 / 2 (V^2)", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    path = Path(run_dir) / "learning_curves.png"
    _save(fig, path)
    return path


def plot_conductance_histograms(
    run_dir: str | Path, circuit: Circuit, g_s: np.ndarray, g_min_s: float, g_max_s: float
) -> Path:
    """``conductances.png``: histogram of device conductances for each crossbar layer."""
    groups = circuit.groups
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.5), squeeze=False)
    bins = np.linspace(g_min_s, g_max_s, 41) * 1e6
    for ax, group in zip(axes[0], groups):
        ax.hist(g_s[group.slice] * 1e6, bins=bins, color="tab:blue")
        ax.set(title=f"{group.name} ({' x '.join(map(str, group.shape))})", xlabel="G (uS)", ylabel="devices")
        ax.grid(alpha=0.3)
    path = Path(run_dir) / "conductances.png"
    _save(fig, path)
    return path
