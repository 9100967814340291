"""Memristor models: what a device does with a requested conductance change, presets, drift."""
