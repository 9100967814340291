"""An exported netlist is plain SPICE: `ngspice -b` alone reproduces the engine's voltages."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eqspice.circuits import crossbar
from eqspice.learning.run.checkpoint import RunState
from eqspice.learning.run.config import load_config
from eqspice.learning.run.loop import train
from eqspice.simulator.ngspice.engine import NgspiceEngine
from eqspice.simulator.ngspice.rawfile import read_rawfile

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained_xor(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("xor") / "run"
    config = load_config(ROOT / "examples" / "xor.toml", {"engine.backend": "native", "training.epochs": 40})
    train(config, run_dir, progress=False)
    return run_dir


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="needs the ngspice program")
def test_exported_netlist_runs_in_plain_ngspice_with_the_engines_voltages(trained_xor, tmp_path):
    netlist = tmp_path / "xor.cir"
    result = subprocess.run(
        [sys.executable, "-m", "eqspice.learning.cli", "export", str(trained_xor), "-o", str(netlist), "--input", "1,0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    text = netlist.read_text()
    assert ".control" not in text and "shell" not in text
    raw = tmp_path / "xor.raw"
    subprocess.run(["ngspice", "-b", "-r", str(raw), str(netlist)], capture_output=True, check=True, cwd=tmp_path)
    vectors = read_rawfile(raw)

    config = load_config(trained_xor / "config.toml")
    circuit = crossbar(config.network)
    with NgspiceEngine() as engine:
        engine.load(circuit, RunState.load(trained_xor).g_s)
        v = engine.settle(circuit.input_gain @ np.array([1.0, 0.0]))[0]
    for name, volts in zip(circuit.node_names, v):
        assert abs(vectors[f"v({name})"][0] - volts) < 1e-6, name


def test_netlist_names_say_layer_and_index(trained_xor, tmp_path):
    netlist = tmp_path / "x.cir"
    subprocess.run(
        [sys.executable, "-m", "eqspice.learning.cli", "export", str(trained_xor), "-o", str(netlist), "--sample", "3"],
        check=True,
        capture_output=True,
    )
    text = netlist.read_text()
    for fragment in ("Vin_0 in_0 0 dc", "Vinb_1 inb_1 0 dc", "R1_0_7 in_0 h1_7", "R2_7_1 h1_7 out_1", ".model", ".op"):
        assert fragment in text
    assert "test sample 3 of xor" in text


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="needs the ngspice program")
@pytest.mark.parametrize("name, winner", [("xor_trained.cir", "v(out_1)"), ("iris_trained.cir", "v(out_0)")])
def test_shipped_netlists_run_in_plain_ngspice_and_classify_their_input(tmp_path, name, winner):
    netlist = ROOT / "netlists" / name
    text = netlist.read_text()
    assert ".control" not in text and "shell" not in text and ".include" not in text
    raw = tmp_path / "out.raw"
    subprocess.run(["ngspice", "-b", "-r", str(raw), str(netlist)], capture_output=True, check=True, cwd=tmp_path)
    vectors = read_rawfile(raw)
    outputs = {k: v[0] for k, v in vectors.items() if k.startswith("v(out_")}
    assert max(outputs, key=outputs.get) == winner
