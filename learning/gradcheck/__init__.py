"""Gradient checks: the learning rules' estimates against exact gradients (``eqspice gradcheck``)."""
