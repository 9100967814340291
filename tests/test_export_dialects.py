"""A subcircuit export, run in ngspice and in gnucap, holds the engine's voltages at every node.

The oracle is the native engine settled on the run's own circuit (its agreement
with ngspice is tested elsewhere); the exported text is read only by the two
simulators, run as programs on the files the ``eqspice export`` command wrote.
"""

import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from eqspice.circuits import DiodeModel, crossbar
from eqspice.circuits.export import design, export_texts
from eqspice.circuits.export.design import Block, ExportError
from eqspice.circuits.export.spice import SpiceWriter
from eqspice.learning.cli import load_source
from eqspice.learning.run.build import build_circuit
from eqspice.learning.run.config import load_config
from eqspice.learning.run.data import load_dataset
from eqspice.learning.run.loop import train
from eqspice.simulator.native import NativeEngine
from eqspice.simulator.ngspice.rawfile import read_rawfile

ROOT = Path(__file__).resolve().parents[1]
NGSPICE = shutil.which("ngspice")
GNUCAP = shutil.which("gnucap")
needs_ngspice = pytest.mark.skipif(NGSPICE is None, reason="needs the ngspice program")
needs_gnucap = pytest.mark.skipif(GNUCAP is None, reason="needs the gnucap program (make setup installs it)")

#: Small trainings of each example: trained enough that the conductances spread over their range.
RUNS = {
    "xor": ("xor.toml", {"training.epochs": 40}),
    "iris": ("iris.toml", {"training.epochs": 3}),
    "digits": ("digits.toml", {"training.epochs": 1, "network.layers": [64, 8, 10], "data.limit_train": 200, "data.limit_test": 40}),
    "fashion": (
        "fashion_mnist.toml",
        {"training.epochs": 1, "network.layers": [784, 3, 10], "data.limit_train": 16, "data.limit_test": 6},
    ),
}

#: gnucap's Boltzmann constant and elementary charge (CODATA 1973) against ngspice's (CODATA 2014):
#: gnucap's Vt = kT/q is this factor times ngspice's at the same temperature.
GNUCAP_VT_RATIO = (1.3806226e-23 / 1.6021918e-19) / (1.38064852e-23 / 1.6021766208e-19)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    made = {}
    for name, (toml, overrides) in RUNS.items():
        if name == "fashion" and not Path("/usr/share/datasets/fashion-mnist").is_dir():
            continue
        run_dir = tmp_path_factory.mktemp(name) / "run"
        train(load_config(ROOT / "examples" / toml, {"engine.backend": "native", **overrides}), run_dir, progress=False)
        made[name] = run_dir
    return made


def run_of(runs, name):
    if name not in runs:
        pytest.skip("Fashion-MNIST IDX files are not installed (dataset-fashion-mnist)")
    return runs[name]


def export(run_dir, out, dialect, *extra):
    result = subprocess.run(
        [sys.executable, "-m", "eqspice.learning.cli", "export", str(run_dir), "--subckt", "net", "-o", str(out),
         "--dialect", dialect, *extra],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    ext = ".scs" if dialect == "spectre" else ".cir"
    return out / f"net{ext}", out / f"net_tb{ext}"


def engine_voltages(run_dir, n_samples, n_scale=1.0):
    """Native-engine node voltages ``v[sample, node]`` of the first test samples; ``n_scale`` multiplies
    the diodes' emission coefficient (a simulator whose Vt is that factor times ngspice's)."""
    source = load_source(run_dir)
    circuit = build_circuit(source.config)
    if n_scale != 1.0:
        m = circuit.diode_model
        circuit = replace(circuit, diode_model=DiodeModel(is_a=m.is_a, n=m.n * n_scale, name=m.name))
    d = source.config.data
    data = load_dataset(
        d.name, data_dir=d.data_dir, seed=source.config.seed, test_fraction=d.test_fraction,
        limit_train=d.limit_train, limit_test=d.limit_test,
    )
    engine = NativeEngine()
    engine.load(circuit, source.state(build_circuit(source.config)).g_s)
    x = data.x_test[:n_samples]
    return circuit, engine.settle(x @ circuit.input_gain.T), data.y_test[:n_samples]


def top(k, node, n_samples):
    """The top-level node of ``node`` of sample k in a one-instance-per-sample testbench."""
    return f"s{k}_{node}" if n_samples > 1 else node


def ngspice_raw(netlist, tmp_path):
    raw = tmp_path / "out.raw"
    subprocess.run([NGSPICE, "-b", "-r", str(raw), str(netlist)], capture_output=True, check=True, cwd=tmp_path)
    return read_rawfile(raw)


SUFFIX = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "K": 1e3, "Meg": 1e6, "G": 1e9, "T": 1e12}


def gnucap_print(netlist, tmp_path):
    """``{probe: value}`` of the ``.print op`` table gnucap writes (engineering suffixes read back)."""
    out = subprocess.run([GNUCAP, "-b", str(netlist)], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    lines = out.splitlines()
    head = max(i for i, line in enumerate(lines) if line.startswith("#"))
    names = lines[head].lstrip("#").split()[0:]
    values = []
    for token in lines[head + 1].split()[1:]:
        match = re.fullmatch(r"([-+0-9.eE]+)(Meg|[a-zA-Z]?)", token)
        assert match, f"gnucap printed {token!r}"
        values.append(float(match.group(1)) * SUFFIX.get(match.group(2), 1.0))
    return dict(zip(names, values))


@needs_ngspice
@pytest.mark.parametrize("dialect", ["ngspice", "spice"])
@pytest.mark.parametrize("name", ["xor", "iris", "digits", "fashion"])
def test_exported_subckt_in_ngspice_holds_the_engines_voltage_at_every_node_within_1e9_volt(runs, name, dialect, tmp_path):
    run_dir = run_of(runs, name)
    n = 4
    _, bench = export(run_dir, tmp_path, dialect, "--samples", str(n))
    text = bench.read_text()
    assert ".control" not in text.lower() and "shell" not in text.lower()
    if dialect == "spice":
        assert not re.search(r"^B", text, re.M) and "pwl" not in text.lower()  # the portable form has no B sources
    circuit, v, _ = engine_voltages(run_dir, n)
    vectors = ngspice_raw(bench, tmp_path)
    hidden = set(circuit.free_nodes) - set(circuit.output_nodes)
    if dialect == "ngspice":
        flat = "\nXnet " not in text
        assert flat == (len(circuit.input_nodes) + len(circuit.output_nodes) + len(circuit.fixed_nodes) > 1000)
    worst = 0.0
    for k in range(n):
        for i, node in enumerate(circuit.node_names):
            if dialect == "ngspice":  # one instance (or, above ngspice's port limit, flat), swept: point k is sample k
                key, point = (f"v(xnet.{node})" if node in hidden and flat is False else f"v({node})"), k
            else:  # one instance (or flat copy) per sample, one operating point
                key, point = (f"v(x{k}.{node})" if node in hidden and f"\nX{k} " in text else f"v({top(k, node, n)})"), 0
                if node in circuit.fixed_nodes:
                    key = f"v({node})"
            worst = max(worst, abs(vectors[key][point] - v[k, i]))
    assert worst < 1e-9, worst


@needs_gnucap
@pytest.mark.parametrize("name", ["xor", "iris", "digits", "fashion"])
def test_spice_form_in_gnucap_differs_only_by_gnucaps_thermal_voltage(runs, name, tmp_path):
    """gnucap computes Vt = kT/q with CODATA-1973 constants, 2.8e-5 relative below ngspice's, which moves
    the free nodes by up to 1.5e-5 V (measured, XOR).  The engine with the diodes' N scaled by that ratio
    matches gnucap within 2e-8 V at every free node (measured at most 8.4e-9 V: gnucap's voltage sources
    have a small series resistance and its Newton stops at its own tolerances), and the deck with gnucap's
    temperature set so its kT/q is ngspice's at 27 degC matches the plain engine within the same bound."""
    run_dir = run_of(runs, name)
    n = 1 if name == "fashion" else 3  # gnucap takes ~20 s a Fashion-MNIST sample (1568 input lines)
    _, bench = export(run_dir, tmp_path, "spice", "--samples", str(n), "--probe-hidden")
    printed = gnucap_print(bench, tmp_path)
    circuit, v, _ = engine_voltages(run_dir, n)
    _, v_gnucap_constants, _ = engine_voltages(run_dir, n, n_scale=GNUCAP_VT_RATIO)
    free = range(circuit.free_slice.start, circuit.free_slice.stop)
    got = np.array([[printed[f"v({top(k, circuit.node_names[i], n)})"] for i in free] for k in range(n)])
    explained = np.max(np.abs(got - v_gnucap_constants[:, free]))
    shift = np.max(np.abs(v_gnucap_constants[:, free] - v[:, free]))
    assert explained < 2e-8, explained
    assert shift > 10 * explained  # the constants are the difference
    assert np.max(np.abs(got - v[:, free])) <= shift + 2e-8

    matched_c = (27.0 + 273.15) / GNUCAP_VT_RATIO - 273.15
    text = bench.read_text().replace(".temp 27.0", f".temp {matched_c!r}").replace("tnom=27 ", f"tnom={matched_c!r} ")
    matched = tmp_path / "matched_tb.cir"
    matched.write_text(text.replace("TNOM=27.0)", f"TNOM={matched_c!r})"))
    printed = gnucap_print(matched, tmp_path)
    got = np.array([[printed[f"v({top(k, circuit.node_names[i], n)})"] for i in free] for k in range(n)])
    assert np.max(np.abs(got - v[:, free])) < 2e-8


@needs_ngspice
@pytest.mark.parametrize("name", ["iris", "digits"])
def test_n_sample_testbench_in_plain_ngspice_classifies_every_test_sample_as_eval_does(runs, name, tmp_path):
    run_dir = run_of(runs, name)
    _, bench = export(run_dir, tmp_path, "ngspice", "--samples", "all")
    circuit, v, labels = engine_voltages(run_dir, None)
    vectors = ngspice_raw(bench, tmp_path)
    outputs = np.stack([vectors[f"v({n})"] for n in circuit.output_nodes], axis=1)
    assert outputs.shape == (len(labels), len(circuit.output_nodes))
    assert np.max(np.abs(outputs - v[:, circuit.output_index])) < 1e-6
    predicted = np.argmax(outputs @ circuit.readout.T, axis=1)
    assert np.array_equal(predicted, np.argmax(v[:, circuit.output_index] @ circuit.readout.T, axis=1))
    result = subprocess.run(
        [sys.executable, "-m", "eqspice.learning.cli", "eval", str(run_dir), "--backend", "native"],
        capture_output=True, text=True, check=True,
    )
    correct = int(re.search(r"\((\d+)/(\d+)\)", result.stdout).group(1))
    assert correct == int(np.sum(predicted == labels))


def _values(pattern, text):
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text, re.M)}


@pytest.mark.parametrize("dialect", ["spectre", "xyce"])
def test_dialects_without_a_simulator_here_follow_their_manuals_syntax_and_hold_every_value(runs, dialect, tmp_path):
    run_dir = runs["iris"]
    sub, bench = export(run_dir, tmp_path, dialect, "--samples", "3")
    text, tb = sub.read_text(), bench.read_text()
    source = load_source(run_dir)
    circuit = build_circuit(source.config)
    g_s = source.state(circuit).g_s
    from eqspice.circuits.netlist import edge_names

    names = edge_names(circuit)
    if dialect == "spectre":
        assert tb.splitlines()[0] == "simulator lang=spectre"
        body = [line for line in text.splitlines() if line and not line.startswith("//")]
        assert not any(line.startswith(".") for line in body)  # no SPICE dot cards in Spectre mode
        assert body[1].startswith("model dhidden diode ") and "is=" in body[1]
        element = re.compile(r"^\w+ \([\w ]+\) \w+( \w+=[-+0-9.e]+)*$")
        inside = body[body.index(next(line for line in body if line.startswith("subckt"))) :]
        for line in inside:
            if not line.startswith(("subckt", "ends", " ")) and not line.endswith("\\"):
                assert element.match(line), line
        resistance = _values(r"^(R\d+_\d+_\d+) \(\w+ \w+\) resistor r=([-+0-9.e]+)$", text)
        assert "dcOp dc" in tb and re.search(r"^eqspiceOptions options .*gmin=1e-12", tb, re.M)
    else:
        assert re.search(r"^\.OPTIONS DEVICE GMIN=1e-12 TNOM=27\.0 TEMP=27\.0$", tb, re.M)
        assert re.search(r"^\.OPTIONS NONLIN ", tb, re.M)
        sources = [line for line in tb.splitlines() if line.startswith("B")]
        assert sources and all(re.match(r"^B\w+ \w+ 0 V=\{table\(V\(sample_index\),$", s) for s in sources)
        assert tb.count("{") == tb.count("}") == len(sources)
        assert "trnoise" not in tb.lower() and ".control" not in tb.lower()
        resistance = _values(r"^(R\d+_\d+_\d+) \w+ \w+ ([-+0-9.e]+)$", text)
        assert re.search(r"^\.DC Vsample_index 0 2 1$", tb, re.M) and ".PRINT DC" in tb
    assert len(resistance) == circuit.n_edges
    np.testing.assert_array_equal([resistance[n] for n in names], 1.0 / g_s)  # every value, to the last bit


def test_a_noisy_run_is_refused_in_one_line_or_exported_with_its_noise_named(tmp_path):
    config = tmp_path / "xor_noise.toml"  # an untrained config exports its seeded conductances
    text = (ROOT / "examples" / "xor.toml").read_text().replace('estimator = "centred"\n', "")
    config.write_text(text + '\n[noise]\nmodel = "gibbs"\nt_eff_w = 1e-12\n')
    run_dir = config
    cmd = [sys.executable, "-m", "eqspice.learning.cli", "export", str(run_dir), "--subckt", "net", "-o", str(tmp_path),
           "--dialect", "xyce"]
    refused = subprocess.run(cmd, capture_output=True, text=True)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "thermal noise" in refused.stderr and "--lossy" in refused.stderr
    assert not (tmp_path / "net.cir").exists()
    subprocess.run([*cmd, "--lossy"], capture_output=True, text=True, check=True)
    assert "NOT EXPRESSED in dialect xyce (--lossy): the run's thermal noise" in (tmp_path / "net_tb.cir").read_text()


def test_an_element_kind_a_dialect_has_no_writer_for_is_refused_not_dropped():
    circuit = crossbar(layers=(1, 1))
    d = design(circuit, np.full(circuit.n_edges, 1e-5), "net")
    amplifier = Block("vcvs", "an amplifier", ["E1"], (["out_0"], ["0"], ["in_0"], ["0"]), [2.0])
    with_amp = replace(d, blocks=(*d.blocks, amplifier))
    with pytest.raises(ExportError, match="dialect spice cannot express 1 vcvs elements"):
        SpiceWriter().subckt(with_amp)
    lossy = SpiceWriter(lossy=True)
    assert "* NOT EXPRESSED in dialect spice (--lossy): 1 vcvs elements (an amplifier)" in lossy.subckt(with_amp)
    assert lossy.lost == ["1 vcvs elements (an amplifier)"]


def test_export_refuses_a_subckt_name_that_is_not_a_plain_token():
    circuit = crossbar(layers=(1, 1))
    with pytest.raises(ExportError, match="--subckt"):
        export_texts(circuit, np.full(circuit.n_edges, 1e-5), "net\n.control", np.zeros((1, 2)))


@needs_ngspice
@pytest.mark.parametrize("dialect", ["ngspice", "spice"])
@pytest.mark.parametrize("name", ["xor", "iris", "digits"])
def test_shipped_testbenches_run_in_plain_ngspice_and_classify_like_their_run(name, dialect, tmp_path):
    """netlists/<dialect>/NAME_tb.cir runs as it is and its outputs classify the samples its comment labels
    as well as the trained runs did (XOR 4/4, Iris 96.7%, digits 92%; 5 digits samples here)."""
    bench = ROOT / "netlists" / dialect / f"{name}_tb.cir"
    text = bench.read_text()
    assert ".control" not in text.lower() and "shell" not in text.lower() and ".include" not in text.lower()
    labels = np.array([int(y) for line in text.splitlines() if line.startswith("* labels of the samples:")
                       for y in line.split(":")[1].split()])
    vectors = ngspice_raw(bench, tmp_path)
    n_out = 10 if name == "digits" else (2 if name == "xor" else 3)
    if dialect == "ngspice":
        outputs = np.stack([vectors[f"v(out_{j})"] for j in range(n_out)], axis=1)
    else:
        outputs = np.array([[vectors[f"v({top(k, f'out_{j}', len(labels))})"][0] for j in range(n_out)]
                            for k in range(len(labels))])
    accuracy = np.mean(np.argmax(outputs, axis=1) == labels)
    assert accuracy >= {"xor": 1.0, "iris": 0.9, "digits": 0.8}[name]


@needs_ngspice
@pytest.mark.parametrize("dialect", ["ngspice", "spice"])
def test_mismatch_and_non_reciprocal_couplings_are_exported_as_the_engine_settles_them(dialect, tmp_path):
    """Diode areas, per-node bias rails and the VCCS pairs of non-reciprocal couplings: every node within 1e-9 V
    in ngspice, and in gnucap (spice form) within 2e-8 V of the engine with gnucap's Vt."""
    config = tmp_path / "xor_mismatch.toml"  # untrained: the seeded conductances, the seed's mismatch draws
    config.write_text(
        (ROOT / "examples" / "xor.toml").read_text()
        + "\n[mismatch]\ndiode_is = 0.3\nbias_v = 0.02\ninput_gain = 0.05\nnonreciprocal = 0.2\n"
    )
    n = 3
    _, bench = export(config, tmp_path, dialect, "--samples", str(n), "--probe-hidden")
    text = bench.read_text()
    assert re.search(r"^Gf1_0_0 0 in_0 h1_0 0 ", text, re.M) and re.search(r"^Gb2_0_0 out_0 0 h1_0 0 ", text, re.M)
    assert "area=1.0\n" not in text  # mismatched areas
    circuit, v, _ = engine_voltages(config, n)
    assert circuit.nonreciprocal is not None and circuit.diode_area is not None
    vectors = ngspice_raw(bench, tmp_path)
    for k in range(n):
        for i, node in enumerate(circuit.node_names):
            key, point = (f"v({node})", k) if dialect == "ngspice" else (f"v({node})" if node in circuit.fixed_nodes else f"v({top(k, node, n)})", 0)
            assert abs(vectors[key][point] - v[k, i]) < 1e-9, (node, k)
    if dialect == "spice" and GNUCAP is not None:
        printed = gnucap_print(bench, tmp_path)
        _, vg, _ = engine_voltages(config, n, n_scale=GNUCAP_VT_RATIO)
        free = range(circuit.free_slice.start, circuit.free_slice.stop)
        got = np.array([[printed[f"v({top(k, circuit.node_names[i], n)})"] for i in free] for k in range(n)])
        assert np.max(np.abs(got - vg[:, free])) < 2e-8


@needs_ngspice
@pytest.mark.parametrize("dialect", ["ngspice", "spice"])
def test_a_wired_crossbar_is_exported_with_its_lines_and_holds_the_engines_voltages(dialect, tmp_path):
    """Wire segments and driver resistors in the subcircuit: every circuit node within 1e-9 V in ngspice."""
    config = tmp_path / "xor_wired.toml"  # untrained: the seeded conductances
    config.write_text((ROOT / "examples" / "xor.toml").read_text().replace(
        "[network]\n", "[network]\nwire_resistance_ohm = 2000.0\ndriver_resistance_ohm = 500.0\ntile_rows = 2\n", 1))  # fmt: skip
    n = 3
    net, bench = export(config, tmp_path, dialect, "--samples", str(n), "--probe-hidden")
    circuit, v, _ = engine_voltages(config, n)
    assert circuit.wires is not None
    assert re.search(r"^R?Rcol1_0_0 col1_0_0 ", net.read_text(), re.M) and re.search(r"^R?Rdrv1_0 ", net.read_text(), re.M)
    vectors = ngspice_raw(bench, tmp_path)
    _, v_ideal, _ = engine_voltages(ROOT / "examples" / "xor.toml", n)
    assert np.abs(v - v_ideal).max() > 1e-4  # the lines matter at these resistances
    for k in range(n):
        for i, node in enumerate(circuit.node_names):
            key, point = (f"v({node})", k) if dialect == "ngspice" else (f"v({node})" if node in circuit.fixed_nodes else f"v({top(k, node, n)})", 0)
            assert abs(vectors[key][point] - v[k, i]) < 1e-9, (node, k)
