"""Progress output: a bar on a terminal, a few whole lines anywhere else."""

import io
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

from eqspice.learning.run import progress
from eqspice.learning.run.progress import LOG_EVERY_SEC, LineProgress, progress_bar

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.toml"


def test_training_into_a_file_writes_a_line_per_epoch_not_a_redraw_per_batch(tmp_path):
    epochs, batches_per_epoch = 20, 4  # xor's 4 samples, one per mini-batch
    log = tmp_path / "log.txt"
    with log.open("w") as out:  # stdout and stderr a file, as `make demo > log 2>&1`
        result = subprocess.run(
            [sys.executable, "-m", "eqspice.learning.cli", "train", str(XOR), "--backend", "native",
             "--run-dir", str(tmp_path / "run"), "--set", f"training.epochs={epochs}", "--set", "training.batch_size=1"],
            stdout=out, stderr=subprocess.STDOUT, timeout=300,
        )
    text = log.read_text()
    assert result.returncode == 0, text
    assert "\r" not in text  # no redraws kept in the file
    lines = text.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == epochs  # each epoch's summary, still there
    assert len(lines) <= epochs + 2 < epochs * batches_per_epoch
    assert len(text) < 120 * len(lines)


def test_line_progress_writes_at_most_one_line_per_interval(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    bar = LineProgress(1000, desc="epoch 1/1", unit="sample", file=out, every_sec=30.0)
    for _ in range(1000):  # 100 s of updates, ten a second
        now[0] += 0.1
        bar.update(1)
        bar.set_postfix(train_acc="0.500")
    bar.close()
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # at 30, 60 and 90 s, and on closing (once)
    assert lines[-1] == "epoch 1/1: 1000/1000 samples, 100 s, train_acc=0.500"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_tqdm_bar_and_a_file_gets_lines(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = progress_bar(10, desc="x")
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = progress_bar(10, desc="x")
    assert isinstance(bar, LineProgress) and bar.every_sec == LOG_EVERY_SEC
    bar.update(10)
    bar.close()
    assert sys.stderr.getvalue() == "x: 10/10 its, 0 s\n"
    quiet = progress_bar(10, enabled=False)
    quiet.update(10)
    quiet.close()
    assert sys.stderr.getvalue() == "x: 10/10 its, 0 s\n"
