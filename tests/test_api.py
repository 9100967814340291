"""The library as a user meets it: one import name, a public API, a README quickstart that runs."""

from __future__ import annotations

import doctest
import importlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import eqspice

ROOT = Path(__file__).resolve().parents[1]


def readme_quickstart() -> str:
    """The first ```python block under the README's Quickstart heading."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## [^\n]*quickstart[^\n]*$(.*?)^## ", text, re.M | re.S | re.I)
    assert section, "README.md has no '## ... Quickstart' section"
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert block, "the Quickstart section has no ```python block"
    return block.group(1)


def test_the_readme_quickstart_runs_as_written_and_trains_xor(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # the quickstart names examples/ relative to a clone
    before = set(ROOT.iterdir())
    namespace: dict = {}
    exec(compile(readme_quickstart(), "README.md quickstart", "exec"), namespace)
    # what the quickstart claims to show, checked on the objects it made
    circuit, v_native, v_spice, state = (namespace[k] for k in ("circuit", "v_native", "v_spice", "state"))
    assert v_native.shape == (2, len(circuit.node_names))
    assert abs(v_native - v_spice).max() < 1e-6
    assert state.metrics[-1]["test_accuracy"] == 1.0
    assert set(ROOT.iterdir()) == before, "the quickstart wrote into the clone"


def test_every_public_name_resolves_to_an_eqspice_object():
    assert len(eqspice.__all__) == len(set(eqspice.__all__))
    for name in eqspice.__all__:
        value = getattr(eqspice, name)
        assert not name.startswith("_")
        module = getattr(value, "__module__", None) or type(value).__module__
        assert module.startswith("eqspice.") or isinstance(value, dict), (name, module)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        eqspice.nonsense  # noqa: B018


def test_importing_eqspice_is_quick_and_leaves_plotting_and_heavy_libraries_alone():
    code = "import sys, eqspice; print(sorted(m for m in ('matplotlib', 'scipy', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "module",
    ["eqspice", "eqspice.circuits.network", "eqspice.circuits.netlist", "eqspice.learning.rules.equilibrium", "eqspice.learning.rules.optimizers"],
)
def test_docstring_examples_of_the_public_modules(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_a_built_wheel_installs_only_the_eqspice_import_name(tmp_path):
    """The wheel's top-level entries are ``eqspice`` and its metadata; it holds every subpackage."""
    # built from a copy of the sources, so the build leaves nothing in the clone
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "runs", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("eqspice-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"eqspice", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    top_level = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["eqspice"]
    sources = {p.relative_to(ROOT).as_posix() for d in ("circuits", "simulator", "learning") for p in (ROOT / d).rglob("*.py")}
    assert {f"eqspice/{s}" for s in sources} <= set(names)
    # installed from the wheel alone (not this clone), the command line and the API import
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = "import eqspice, eqspice.learning.cli as c; print(eqspice.__file__); c.build_parser()"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path, env={"PYTHONPATH": str(target)}
    ).stdout
    assert out.strip() == str(target / "eqspice" / "__init__.py")


def test_a_crossbar_from_its_fields_is_the_crossbar_of_its_spec_and_refuses_bad_fields_alike():
    by_fields = eqspice.crossbar(layers=(3, 5, 2), nonlinearity="diode", diode_bias_v=(0.4, -0.5))
    by_spec = eqspice.crossbar(eqspice.CrossbarSpec(layers=(3, 5, 2), nonlinearity="diode", diode_bias_v=(0.4, -0.5)))
    assert by_fields.node_names == by_spec.node_names
    assert (by_fields.edges == by_spec.edges).all() and (by_fields.diodes == by_spec.diodes).all()
    with pytest.raises(eqspice.SpecError) as from_fields:
        eqspice.crossbar(layers=(3, 5, 2), nonlinearity="diodes")
    with pytest.raises(eqspice.SpecError) as from_spec:
        eqspice.CrossbarSpec(layers=(3, 5, 2), nonlinearity="diodes")
    assert str(from_fields.value) == str(from_spec.value) and "nonlinearity" in str(from_fields.value)
    with pytest.raises(TypeError, match="not both"):
        eqspice.crossbar(eqspice.CrossbarSpec(layers=(2, 2)), layers=(2, 2))
