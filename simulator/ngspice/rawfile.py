"""Read the raw files that ``ngspice -b -r FILE`` writes (binary or ASCII)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_rawfile(path: str | Path) -> dict[str, np.ndarray]:
    """Vectors of the first plot in an ngspice raw file, by name (``v(out_0)``, ``i(vin_0)``).

    Only real-valued plots (``.op``, ``.tran``, ``.dc``) are read.
    """
    data = Path(path).read_bytes()
    names: list[str] = []
    n_vars = n_points = 0
    pos = 0
    while True:
        end = data.index(b"\n", pos)
        line = data[pos:end].decode("ascii", "replace")
        pos = end + 1
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "flags" and "complex" in value:
            raise ValueError(f"{path}: complex plots are not supported")
        if key == "no. variables":
            n_vars = int(value)
        elif key == "no. points":
            n_points = int(value)
        elif key == "variables":
            for _ in range(n_vars):
                end = data.index(b"\n", pos)
                names.append(data[pos:end].decode().split()[1].lower())
                pos = end + 1
        elif key == "binary":
            values = np.frombuffer(data, dtype="<f8", count=n_vars * n_points, offset=pos)
            break
        elif key == "values":
            tokens = data[pos:].decode().split()
            numbers = [float(t) for t in tokens if not t.isdigit() or "." in t]
            values = np.array(numbers[: n_vars * n_points])
            break
    table = values.reshape(n_points, n_vars)
    return {name: table[:, k] for k, name in enumerate(names)}
