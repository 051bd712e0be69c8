"""``scalebridge elastic`` / ``scalebridge surface`` print JSON."""

import json

import pytest

from loops.cli import main


def _run(capsys, argv):
    rc = main(argv)
    return rc, json.loads(capsys.readouterr().out)


def test_elastic_static(capsys):
    rc, out = _run(capsys, ["elastic", "--element", "Cu"])
    assert rc == 0 and not out["failed"]
    assert out["outputs"]["C44"] == pytest.approx(89.0, rel=0.01)
    assert out["units"]["C11"] == "GPa"


def test_elastic_md_small(capsys):
    rc, out = _run(capsys, ["elastic", "--temperature", "300", "--fidelity", "1", "--size", "2",
                            "--steps", "200", "--blocks", "5"])
    assert rc == 0 and out["variances"]["C44"] > 0


def test_surface(capsys):
    rc, out = _run(capsys, ["surface", "--miller", "1", "1", "1"])
    assert rc == 0
    o = out["outputs"]
    assert o["sigma_max"] == pytest.approx(10 * o["two_gamma"] / (2.718281828459045 * o["l"]), rel=1e-9)


def test_failures_are_reported(capsys):
    rc, out = _run(capsys, ["elastic", "--element", "Xx"])
    assert rc == 2 and out["failed"] and "Xx" in out["reason"]
    rc, out = _run(capsys, ["elastic", "--strain", "0.15"])
    assert rc == 1 and out["failed"] and "unstable" in out["reason"]
