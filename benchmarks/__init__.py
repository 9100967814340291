"""Speed benchmarks: each prints a table and writes JSON."""

import json
import os
import tempfile


def write_json(rows: list[dict], path: str) -> None:
    """Write the table's rows as JSON through a temporary file and a rename (never half a file)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(rows, fh, indent=2)
    os.replace(tmp, path)
    print(f"wrote {path}")
