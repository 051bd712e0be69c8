"""A non-editable install (``pip install .``, a wheel) carries what the code needs at run time.

``scalebridge demo`` had read experiment (a)'s script and the FE² config from
``experiments/`` beside the installed ``loops/`` (``Path(__file__).parents[1]``): from a
wheel it ended in ``FileNotFoundError: .../site-packages/experiments/a_rve_active_learning.py``.
Files the code reads now live inside the packages, listed as package data in pyproject.toml.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.loops.test_experiment import _Stub

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("oracles", "surrogates", "loops")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def _source_files(pkg: str):
    for f in sorted((ROOT / pkg).rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo"):
            yield f


def test_every_package_directory_is_a_package_the_build_finds():
    """A folder of modules without ``__init__.py``, or one outside ``packages.find``'s include,
    is missing from the wheel while an editable install imports it from the checkout."""
    from setuptools import find_packages

    found = set(find_packages(str(ROOT), include=SETUPTOOLS["packages"]["find"]["include"]))
    for pkg in PACKAGES:
        for d in sorted({f.parent for f in _source_files(pkg) if f.suffix == ".py"}):
            name = ".".join(d.relative_to(ROOT).parts)
            assert (d / "__init__.py").is_file(), f"{name}: no __init__.py (left out of a wheel)"
            assert name in found, f"{name}: not matched by [tool.setuptools.packages.find] include"


def test_every_data_file_inside_the_packages_is_package_data():
    """A non-.py file in a package is installed only if [tool.setuptools.package-data] names it."""
    patterns = SETUPTOOLS.get("package-data", {})
    for pkg in PACKAGES:
        for f in _source_files(pkg):
            if f.suffix == ".py":
                continue
            rel = f.relative_to(ROOT)
            owners = [p for p in patterns if rel.parts[: len(p.split("."))] == tuple(p.split("."))]
            ok = any(rel.relative_to(Path(*o.split("."))).match(g) for o in owners for g in patterns[o])
            assert ok, f"{rel}: not listed in [tool.setuptools.package-data]; a wheel leaves it out"


def test_the_packages_locate_no_file_by_the_checkout_layout():
    """``Path(__file__).parents[...]`` reaches the repository only in a checkout; data the code
    reads belongs inside its package, found with ``importlib.resources.files``."""
    offenders = [f"{f.relative_to(ROOT)}:{i}" for pkg in PACKAGES for f in _source_files(pkg) if f.suffix == ".py"
                 for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"__file__", line) and not line.lstrip().startswith("#")]
    assert not offenders, offenders


def test_the_demo_configs_ship_in_the_package_and_match_the_experiment_configs():
    from loops import demo

    for packaged in (demo.CAMPAIGN_CONFIG, demo.FE2_CONFIG):
        assert packaged.is_file(), packaged
        original = ROOT / "experiments" / "configs" / packaged.name
        assert packaged.read_text(encoding="utf-8") == original.read_text(encoding="utf-8"), (
            f"loops/demo_data/{packaged.name} differs from {original.relative_to(ROOT)}: copy the edit")


def test_the_experiment_script_runs_the_demo_smoke_size():
    spec = importlib.util.spec_from_file_location("exp_a", ROOT / "experiments" / "a_rve_active_learning.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from loops import demo

    assert mod.SMOKE is demo.SMOKE_A and mod.check_material_model is demo.check_material_model


def test_the_demo_reads_its_configs_from_the_package(monkeypatch, tmp_path):
    import loops.engine as engine
    from loops import demo

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(engine, "Campaign", _Stub)
    with pytest.raises(SystemExit) as stop:
        demo._campaign_a(["--smoke", "--run-dir", str(tmp_path / "r"), "--no-progress"])
    assert stop.value.code == 130
    cfg = _Stub.seen[-1]
    assert cfg.name == "a-rve-learn-smoke" and cfg.budget.calls == demo.SMOKE_A["budget"]["calls"]
    camp = SimpleNamespace(config=SimpleNamespace(oracle=cfg.oracle))
    fe2 = demo.fe2_config_for(camp, "models:/m/1", tmp_path / "fe2")
    assert fe2.material.provider == "adaptive" and fe2.load.n_steps == 4


def test_a_wheel_carries_the_packages_and_their_data(tmp_path):
    """Build the wheel (setuptools, no build isolation: a few seconds) from a copy of the
    sources, check its file list, and read the demo's configs from the unpacked wheel alone."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("the build needs setuptools>=77")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=ignore)
    dist = tmp_path / "dist"
    code = ("import sys; from setuptools import build_meta as b; "
            f"print(b.build_wheel({str(dist)!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = dist / out.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(f.relative_to(ROOT).as_posix()) for pkg in PACKAGES for f in _source_files(pkg)}
    assert not expected - names, f"left out of the wheel: {sorted(expected - names)}"
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    check = ("import sys, tomllib, loops, loops.demo as d; "
             f"assert loops.__file__.startswith({str(site)!r}), loops.__file__; "
             "[tomllib.loads(p.read_text(encoding='utf-8')) for p in (d.CAMPAIGN_CONFIG, d.FE2_CONFIG)]; "
             "print('ok')")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", check], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
