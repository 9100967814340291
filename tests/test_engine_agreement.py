"""Both engines settle the same random circuits to the same voltages (property tests)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuits import CrossbarSpec, DiodeModel, crossbar
from simulator.native import NativeEngine

layer_sizes = st.lists(st.integers(1, 6), min_size=2, max_size=4).map(tuple)


@st.composite
def circuits(draw):
    spec = CrossbarSpec(
        layers=draw(layer_sizes),
        differential_inputs=draw(st.booleans()),
        differential_outputs=draw(st.booleans()),
        input_scale_v=draw(st.floats(0.2, 3.0)),
        bias_v=draw(st.sampled_from([0.0, 0.5, 1.0])),
        nonlinearity=draw(st.sampled_from(["diode_pair", "diode", "none"])),
        diode_bias_v=(draw(st.floats(-0.5, 0.5)), draw(st.floats(-0.5, 0.5))),
        diode_model=DiodeModel(is_a=10 ** draw(st.floats(-16, -9)), n=draw(st.floats(1.0, 2.0))),
        output_load_s=draw(st.sampled_from([0.0, 1e-6])),
    )
    seed = draw(st.integers(0, 2**32 - 1))
    beta = draw(st.sampled_from([0.0, 1e-6, 1e-5, -1e-6, -5e-6]))
    return crossbar(spec), seed, beta


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(circuits())
def test_native_and_ngspice_agree_within_a_microvolt(ngspice, case):
    circuit, seed, beta = case
    rng = np.random.default_rng(seed)
    g = 10 ** rng.uniform(-7, -4, circuit.n_edges)
    inputs = rng.uniform(0, 1, (3, circuit.n_features)) @ circuit.input_gain.T
    targets = rng.uniform(-0.5, 0.5, (3, len(circuit.output_nodes)))
    native = NativeEngine()
    native.load(circuit, g)
    ngspice.load(circuit, g)
    v_native = native.settle(inputs, targets, beta)
    v_ngspice = ngspice.settle(inputs, targets, beta)
    assert np.max(np.abs(v_native - v_ngspice)) <= 1e-6
