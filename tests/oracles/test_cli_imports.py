"""The oracle commands' ``--help`` and usage errors answer without importing torch, scipy or ASE
(before: 2-2.6 s each, most of it importing torch through ``oracles/__init__.py``); the
packages' names are imported on first use and are the objects of their submodules."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("torch", "scipy", "ase")
ORACLE_COMMANDS = ("rve", "elastic", "surface", "cohesive", "conductivity", "permeability")
PACKAGES = ("oracles", "oracles.analytic", "oracles.atomistic", "oracles.cohesive", "oracles.rve",
            "oracles.transport")


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; the JSON object it prints last."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv, status", [(["--help"], 0), (["--bogus"], 2)], ids=["help", "usage-error"])
@pytest.mark.parametrize("command", ORACLE_COMMANDS)
def test_oracle_command_help_and_usage_errors_import_no_heavy_module(command, argv, status):
    got = _child(f"""
        import contextlib, io, json, sys
        from loops.cli import main
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main({[command, *argv]!r})
            except SystemExit as e:
                rc = e.code
        print(json.dumps({{"rc": rc, "out": out.getvalue(), "err": err.getvalue(),
                          "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """)
    assert got["rc"] == status, got
    assert got["heavy"] == [], f"scalebridge {command} {' '.join(argv)} imported {got['heavy']}"
    if status == 0:
        assert f"usage: scalebridge {command}" in got["out"]
    else:
        assert got["err"].startswith(f"scalebridge {command}: error:"), got["err"]


def test_importing_the_oracle_packages_imports_no_heavy_module():
    got = _child(f"""
        import json, sys
        import {", ".join(PACKAGES)}
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """)
    assert got == []


@pytest.mark.parametrize("package", PACKAGES)
def test_package_names_are_the_submodules_objects(package):
    pkg = importlib.import_module(package)
    assert set(pkg.__all__) <= set(dir(pkg))
    for name in pkg.__all__:
        value = getattr(pkg, name)
        source = importlib.import_module(pkg._SOURCES[name])
        assert value is getattr(source, name), (package, name)
    with pytest.raises(AttributeError, match="no attribute 'bogus'"):
        pkg.bogus  # noqa: B018
    assert not hasattr(pkg, "bogus")


def test_package_attributes_and_submodule_imports_agree():
    import oracles
    import oracles.base
    import oracles.rve
    import oracles.rve.laws
    import oracles.rve.oracle
    import oracles.transport
    from oracles.rve import RVEOracle, laws
    from oracles.transport import permeability

    assert oracles.Oracle is oracles.base.Oracle
    assert RVEOracle is oracles.rve.oracle.RVEOracle
    assert laws is oracles.rve.laws  # a submodule, not in __all__: imported as before
    # `permeability` is the function, also once its submodule of the same name is imported (as
    # with the eager imports before)
    perm_module = sys.modules["oracles.transport.permeability"]
    assert permeability is perm_module.permeability
    assert oracles.transport.permeability is perm_module.permeability


def test_permeability_stays_the_function_whichever_is_imported_first():
    got = _child("""
        import json, types
        import oracles.transport.permeability as first
        from oracles.transport import permeability
        print(json.dumps([isinstance(first, types.FunctionType), isinstance(permeability, types.FunctionType)]))
    """)
    assert got == [True, True]


def test_star_import_gives_every_public_name():
    ns: dict = {}
    exec("from oracles.rve import *", ns)
    import oracles.rve

    assert {n for n in ns if not n.startswith("__")} == set(oracles.rve.__all__)
