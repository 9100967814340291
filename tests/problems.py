"""Circuits several test modules settle: built once here."""

import networkx as nx
import numpy as np

from eqspice.circuits import DiodeModel, circuit_from_graph, with_nonreciprocal


def diode_bridge_graph():
    """A random 9-node graph with a diode between two free nodes, non-reciprocal couplings:
    ``(circuit, g, inputs, targets)``, the case that needs the engine's dense step."""
    rng = np.random.default_rng(5)
    graph = nx.relabel_nodes(nx.gnm_random_graph(9, 22, seed=3), lambda i: f"n{i}")
    circuit = circuit_from_graph(graph, ["n0", "n1"], ["n7", "n8"], fixed={"n2": 0.3},
                                 diodes=[("n3", "n4"), ("n5", "0"), ("0", "n6")], diode_model=DiodeModel(n=1.3))  # fmt: skip
    circuit = with_nonreciprocal(circuit, rng.normal(0, 0.2, circuit.n_edges))
    g = 10 ** rng.uniform(-6, -4, circuit.n_edges)
    return circuit, g, rng.uniform(-1, 1, (3, 2)), rng.uniform(-0.2, 0.2, (3, 2))
