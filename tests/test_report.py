"""Importing the library leaves matplotlib alone; runs still draw their plots."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.toml"
PNG = b"\x89PNG\r\n\x1a\n"


def python(code):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_the_training_loop_and_cli_does_not_load_matplotlib_and_a_run_keeps_its_backend(tmp_path):
    run_dir = tmp_path / "run"
    out = python(
        f"""
        import sys
        import eqspice.learning.run.loop, eqspice.learning.cli, eqspice.learning.run.sweep
        print(sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"))
        import matplotlib
        matplotlib.use("svg")  # the user's choice, which a run must not change
        from eqspice.learning.run.config import load_config
        from eqspice.learning.run.loop import train
        train(load_config({str(XOR)!r}, {{"engine.backend": "native", "training.epochs": 2}}), {str(run_dir)!r}, progress=False)
        print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
        """
    )
    assert out.splitlines() == ["[]", "svg False"]
    for name in ("learning_curves.png", "conductances.png"):
        assert (run_dir / name).read_bytes()[:8] == PNG


def test_plots_do_not_become_pyplot_figures(tmp_path):
    out = python(
        f"""
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        plt.figure()  # the user's own figure
        from eqspice.learning.run.report import plot_comparison, plot_learning_curves
        rows = [dict(epoch=1, train_loss=0.2, train_accuracy=0.5, test_loss=0.3, test_accuracy=0.5),
                dict(epoch=2, train_loss=0.1, train_accuracy=0.75, test_loss=0.2, test_accuracy=0.75)]
        plot_learning_curves({str(tmp_path)!r}, rows)
        plot_comparison({str(tmp_path / "both.png")!r}, {{"a": rows, "b": rows}})
        print(plt.get_fignums(), matplotlib.get_backend())
        """
    )
    assert out.split() == ["[1]", "svg"]
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == PNG
    assert (tmp_path / "both.png").read_bytes()[:8] == PNG
