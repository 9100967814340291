"""The way back: `eqspice import` reads an exported subcircuit's values into a run, and refuses the rest."""

import contextlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from eqspice.circuits import circuit_from_graph
from eqspice.circuits.netlist import edge_names
from eqspice.learning.cli import load_source, main
from eqspice.learning.run.build import build_circuit
from eqspice.learning.run.checkpoint import CHECKPOINT, RunState
from eqspice.learning.run.config import load_config
from eqspice.learning.run.data import load_dataset
from eqspice.learning.run.loop import train
from eqspice.simulator.native import NativeEngine

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    """Run ``eqspice ARGS`` in this process (the command's exit code and both streams)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def trained_iris(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("iris") / "run"
    train(load_config(ROOT / "examples" / "iris.toml", {"engine.backend": "native", "training.epochs": 2}), run_dir, progress=False)
    return run_dir


@pytest.fixture
def run_and_export(trained_iris, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_iris, run_dir)
    result = cli("export", str(run_dir), "--subckt", "iris", "-o", str(tmp_path), "--dialect", "spice")
    assert result.returncode == 0, result.stderr
    return run_dir, tmp_path / "iris.cir"


def test_an_unedited_export_imports_back_to_the_same_conductances_bit_for_bit(run_and_export):
    run_dir, netlist = run_and_export
    before = RunState.load(run_dir).g_s.copy()
    result = cli("import", str(netlist), "--into", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert "0 of" in result.stdout
    np.testing.assert_array_equal(RunState.load(run_dir).g_s, before)


def test_edited_resistances_become_the_runs_conductances_and_eval_settles_them(run_and_export):
    run_dir, netlist = run_and_export
    source = load_source(run_dir)
    circuit = build_circuit(source.config)
    g_before = RunState.load(run_dir).g_s
    names = edge_names(circuit)
    edits = {3: 20e3, 17: 0.5e6, 40: 12.5e3}  # edge -> new ohms, inside the device's 10 kOhm..10 MOhm
    lines = netlist.read_text().splitlines()
    for e, ohm in edits.items():
        k = next(i for i, line in enumerate(lines) if line.split()[0] == names[e])
        a, b = lines[k].split()[1:3]
        lines[k] = f"{names[e]} {a} {b} {ohm / 1e3:g}k"  # as a designer writes it, with a scale suffix
    netlist.write_text("\n".join(lines) + "\n")
    result = cli("import", str(netlist), "--into", str(run_dir))
    assert result.returncode == 0, result.stderr
    expected = g_before.copy()
    for e, ohm in edits.items():
        expected[e] = 1.0 / ohm
    np.testing.assert_allclose(RunState.load(run_dir).g_s, expected, rtol=1e-15, atol=0)

    d = source.config.data
    data = load_dataset(d.name, data_dir=d.data_dir, seed=source.config.seed, test_fraction=d.test_fraction)
    engine = NativeEngine()
    engine.load(circuit, expected)
    v = engine.settle(data.x_test @ circuit.input_gain.T)
    correct = int(np.sum(np.argmax(v[:, circuit.output_index] @ circuit.readout.T, axis=1) == data.y_test))
    result = cli("eval", str(run_dir), "--backend", "native")
    assert result.returncode == 0, result.stderr
    assert f"({correct}/{len(data.y_test)})" in result.stdout

    further = train(
        load_config(run_dir / "config.toml", {"engine.backend": "native", "training.epochs": 3}), run_dir, resume=True, progress=False
    )
    assert further.epoch == 3 and not np.array_equal(further.g_s, expected)  # trained on from the imported values


REFUSALS = [
    (".control\nshell rm -rf /\n.endc", r":\d+: \.control block refused"),
    ("shell echo hi", r":\d+: 'shell' refused"),
    (".include other.cir", r":\d+: \.include refused"),
    (".lib models.lib tt", r":\d+: \.lib refused"),
    ("C1 h1_0 0 1e-12", r":\d+: element c1 outside the \.subckt"),
]

INSIDE = [
    ("C1 h1_0 0 1e-12", r":\d+: element c1 \(C\) is not one eqspice models"),
    ("Bx h1_0 0 V = 1", r":\d+: element bx \(B\) is not one eqspice models"),
    ("Rextra h1_0 h1_1 1e4", r":\d+: element rextra is not in the run's circuit"),
    ("Xsub h1_0 h1_1 other", r":\d+: element xsub \(X\) is not one eqspice models"),
]


@pytest.mark.parametrize("line, message", REFUSALS + [(f"@inside {a}", m) for a, m in INSIDE])
def test_import_refuses_in_one_line_naming_the_line_and_writes_nothing(run_and_export, line, message):
    run_dir, netlist = run_and_export
    text = netlist.read_text()
    if line.startswith("@inside "):
        text = text.replace("\n.ends", "\n" + line.removeprefix("@inside ") + "\n.ends")
    else:
        text = text + line + "\n"
    netlist.write_text(text)
    before = (run_dir / CHECKPOINT).read_bytes()
    result = cli("import", str(netlist), "--into", str(run_dir))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "nothing written" in result.stderr
    assert re.search(re.escape(str(netlist)) + message, result.stderr), result.stderr
    assert (run_dir / CHECKPOINT).read_bytes() == before


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: re.sub(r"^(R1_0_0) in_0 h1_0 ", r"\1 in_1 h1_0 ", t, flags=re.M), r"R1_0_0 joins in_1 h1_0; the run's joins in_0 h1_0"),
        (lambda t: re.sub(r"^R1_0_1 .*\n", "", t, flags=re.M), r"element R1_0_1 of the run is missing"),
        (lambda t: re.sub(r"^(D0_\S+ \S+ \S+ dhidden) area=\S+", r"\1 area=2.0", t, flags=re.M), r"area 2.0 differs"),
        (lambda t: t.replace("IS=1e-14", "IS=2e-14"), r"diode model IS = 2e-14 differs"),
        (lambda t: re.sub(r"^(R1_0_0 in_0 h1_0) \S+", r"\1 {1/g}", t, flags=re.M), r"'\{1/g\}' is not a number"),
        (lambda t: re.sub(r"^(R1_0_0 in_0 h1_0) \S+", r"\1 100", t, flags=re.M), r"R1_0_0 = 100.0 ohm is outside the device's range"),
        (lambda t: t.replace(".subckt iris in_0", ".subckt iris in_9"), r"ports of \.subckt iris are not the run's"),
    ],
)
def test_import_refuses_a_topology_or_value_the_run_does_not_have(run_and_export, edit, message):
    run_dir, netlist = run_and_export
    netlist.write_text(edit(netlist.read_text()))
    before = (run_dir / CHECKPOINT).read_bytes()
    result = cli("import", str(netlist), "--into", str(run_dir))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert re.search(message, result.stderr), result.stderr
    assert (run_dir / CHECKPOINT).read_bytes() == before


@pytest.mark.parametrize("name", ["h\n.control", "a b", "x=1", ".end", "0"])
def test_a_graph_node_name_that_could_inject_netlist_text_is_refused_when_the_circuit_is_built(name):
    with pytest.raises(ValueError, match="node name") as info:
        circuit_from_graph(nx.Graph([("x", name), (name, "y")]), inputs=["x"], outputs=["y"])
    assert "\n" not in str(info.value).replace("\\n", "")


def test_a_non_reciprocal_circuit_imports_only_with_its_coupling_gains_tied_to_the_resistors():
    """The VCCS gains are ``a = delta G``: editing a resistor alone is refused, editing both is read."""
    from eqspice.circuits import crossbar, with_nonreciprocal
    from eqspice.circuits.export import export_texts
    from eqspice.circuits.export.reader import NetlistRefused, conductances, read_subckt

    base = crossbar(layers=(2, 3, 2))
    circuit = with_nonreciprocal(base, np.random.default_rng(5).normal(0, 0.2, base.n_edges))
    g_s = np.random.default_rng(6).uniform(1e-6, 1e-4, circuit.n_edges)
    sub, _ = export_texts(circuit, g_s, "net", np.zeros((1, 4)), dialect="spice")
    np.testing.assert_array_equal(conductances(read_subckt(sub), circuit, g_s), g_s)
    e = 18  # R2_0_0: h1_0 to out_0, both ends free
    name = edge_names(circuit)[e]
    p, q = (circuit.node_names[i] for i in circuit.edges[e])
    new_g = 2.5e-5
    edited = re.sub(rf"^({name} {p} {q}) \S+", rf"\g<1> {1 / new_g!r}", sub, flags=re.M)
    with pytest.raises(NetlistRefused, match=rf"G[fb]{name[1:]} = .* ties it to delta G"):
        conductances(read_subckt(edited), circuit, g_s)
    a = float(circuit.nonreciprocal[e] * new_g)
    both = re.sub(rf"^(G[fb]{name[1:]} \S+ \S+ \S+ \S+) \S+", rf"\g<1> {a!r}", edited, flags=re.M)
    got = conductances(read_subckt(both), circuit, g_s)
    expected = g_s.copy()
    expected[e] = 1 / (1 / new_g)
    np.testing.assert_array_equal(got, expected)
