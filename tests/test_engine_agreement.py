"""Both engines settle the same random circuits to the same voltages (property tests)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nodal import conductance_matrix

from eqspice.circuits import CrossbarSpec, DiodeModel, crossbar
from eqspice.simulator.engine import Nudge
from eqspice.simulator.native import NativeEngine

layer_sizes = st.lists(st.integers(1, 6), min_size=2, max_size=4).map(tuple)


@st.composite
def circuits(draw):
    layers = draw(layer_sizes)
    pair = lambda: (draw(st.floats(-0.5, 0.5)), draw(st.floats(-0.5, 0.5)))  # noqa: E731
    # one pair of diode sources for every hidden layer, or each layer its own
    diode_bias_v = tuple(pair() for _ in layers[1:-1]) if len(layers) > 2 and draw(st.booleans()) else pair()
    spec = CrossbarSpec(
        layers=layers,
        differential_inputs=draw(st.booleans()),
        differential_outputs=draw(st.booleans()),
        input_scale_v=draw(st.floats(0.2, 3.0)),
        bias_v=draw(st.sampled_from([0.0, 0.5, 1.0])),
        nonlinearity=draw(st.sampled_from(["diode_pair", "diode", "none"])),
        diode_bias_v=diode_bias_v,
        diode_model=DiodeModel(is_a=10 ** draw(st.floats(-16, -9)), n=draw(st.floats(1.0, 2.0))),
        output_load_s=draw(st.sampled_from([0.0, 1e-6])),
    )
    seed = draw(st.integers(0, 2**32 - 1))
    # beta as a fraction of the nudge the network can take: a -beta phase stronger
    # than stability_limit leaves no stable state to settle into
    beta_fraction = draw(st.sampled_from([0.0, 0.1, 1.0, 5.0, -0.1, -0.5]))
    # the Schur complement from stored pair products, or formed anew in every step
    pair_products_max = draw(st.sampled_from([0, 10**6]))
    return crossbar(spec), seed, beta_fraction, pair_products_max


def stability_limit(circuit, g):
    """Largest |beta| of a negative nudge that keeps the linear network's co-content convex.

    With ``L`` the conductance matrix of the free nodes, ``L - |beta| P_out`` stays
    positive definite while ``|beta| < 1 / lambda_max((L^-1)_out,out)``; diodes only add
    positive conductance.
    """
    lap = conductance_matrix(circuit, g)
    free = np.arange(circuit.free_slice.start, circuit.free_slice.stop)
    l_ff = lap[np.ix_(free, free)]
    out = circuit.output_index - circuit.free_slice.start
    inverse_out = np.linalg.inv(l_ff)[np.ix_(out, out)]
    return 1.0 / np.linalg.eigvalsh(inverse_out).max()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(circuits())
def test_native_and_ngspice_agree_within_a_microvolt(ngspice, case):
    circuit, seed, beta_fraction, pair_products_max = case
    rng = np.random.default_rng(seed)
    g = 10 ** rng.uniform(-7, -4, circuit.n_edges)
    beta = beta_fraction * stability_limit(circuit, g)
    inputs = rng.uniform(0, 1, (3, circuit.n_features)) @ circuit.input_gain.T
    targets = rng.uniform(-0.5, 0.5, (3, len(circuit.output_nodes)))
    native = NativeEngine(pair_products_max=pair_products_max)
    native.load(circuit, g)
    ngspice.load(circuit, g)
    nudge = Nudge(targets_v=targets, beta_s=beta)
    v_native = native.settle(inputs, nudge)
    v_ngspice = ngspice.settle(inputs, nudge)
    assert np.max(np.abs(v_native - v_ngspice)) <= 1e-6


@pytest.mark.parametrize(
    "wires",
    [{}, {"network.wire_resistance_ohm": 5.0, "network.driver_resistance_ohm": 20.0, "network.tile_rows": 64,
          "network.layers": [64, 4, 10]}],  # fmt: skip
    ids=["ideal wires", "resistive wires"],
)
def test_training_on_digits_gives_the_same_conductances_with_either_engine(tmp_path, wires):
    from eqspice.learning.run.config import load_config
    from eqspice.learning.run.loop import train

    overrides = {
        "network.layers": [64, 8, 10],
        "data.limit_train": 200,
        "data.limit_test": 50,
        "training.epochs": 4,
        "training.batch_size": 4,  # 200 steps
        **wires,  # with wires the update reads each device's own voltage (training.device_voltage)
    }
    runs = {}
    for backend in ("native", "ngspice"):
        config = load_config("examples/digits.toml", {**overrides, "engine.backend": backend})
        runs[backend] = train(config, tmp_path / backend, progress=False)
    native, spice = runs["native"], runs["ngspice"]
    relative = np.abs(native.g_s - spice.g_s) / np.abs(native.g_s)
    assert relative.max() < 1e-6
    assert native.metrics[-1]["test_accuracy"] == spice.metrics[-1]["test_accuracy"]
    # the run learned, so agreement is about a trajectory of 200 updates, not a start
    assert native.metrics[-1]["train_loss"] < 0.9 * native.metrics[0]["train_loss"]


def test_eval_gives_the_same_accuracy_in_ngspice_as_in_the_native_engine(tmp_path):
    import subprocess
    import sys

    from eqspice.learning.run.config import load_config
    from eqspice.learning.run.loop import train

    config = load_config(
        "examples/digits.toml",
        {"engine.backend": "native", "network.layers": [64, 8, 10], "data.limit_train": 300, "training.epochs": 2},
    )
    train(config, tmp_path / "run", progress=False)
    lines = {}
    for backend in ("native", "ngspice"):
        out = subprocess.run(
            [sys.executable, "-m", "eqspice.learning.cli", "eval", str(tmp_path / "run"), "--backend", backend, "--limit", "120"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        lines[backend] = out.split(": ", 1)[1].split(", ", 1)[1]
    assert "120 test samples" in lines["native"]
    assert lines["native"].split(", loss")[0] == lines["ngspice"].split(", loss")[0]
    loss = {k: float(v.split("loss ")[1].split()[0]) for k, v in lines.items()}
    assert abs(loss["native"] - loss["ngspice"]) < 1e-6 * loss["native"]
