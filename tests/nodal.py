"""Independent nodal analysis for the tests: no engine code."""

import numpy as np


def conductance_matrix(circuit, g):
    """The full nodal conductance matrix (Laplacian) of the programmable devices, siemens."""
    n = len(circuit.node_names)
    lap = np.zeros((n, n))
    for (a, b), ge in zip(circuit.edges, g):
        lap[a, a] += ge
        lap[b, b] += ge
        lap[a, b] -= ge
        lap[b, a] -= ge
    return lap
