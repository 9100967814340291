"""Shared fixtures: small circuits and an ngspice engine per test module."""

import numpy as np
import pytest

from eqspice.simulator.ngspice.engine import NgspiceEngine


@pytest.fixture(scope="module")
def ngspice():
    engine = NgspiceEngine(timeout_sec=20)
    yield engine
    engine.close()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
