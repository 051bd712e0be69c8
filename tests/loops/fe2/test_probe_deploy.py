"""Deploying a surrogate into FE² through the CLI: failures before anything is solved are one
line and leave no run directory; a valid run matches a homogeneous linear-elastic patch."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from loops.cli import main as scalebridge

CFG = """
name = "p"
output_dir = "{out}"
plots = false
[mesh]
kind = "rectangle"
nx = 1
ny = 1
[[dirichlet]]
boundary = "left"
component = 0
[[dirichlet]]
boundary = "bottom"
component = 1
[[dirichlet]]
boundary = "right"
component = 0
value = {value}
[load]
n_steps = 1
[material]
provider = "{provider}"
{material}
[tracking]
enabled = false
"""


def _cfg(tmp_path, provider="analytic", material="[material.analytic]\nE = 10.0\nnu = 0.3", value=0.001):
    p = tmp_path / "c.toml"
    p.write_text(textwrap.dedent(CFG.format(out=tmp_path / "o", value=value, provider=provider, material=material)))
    return p


def _gp(n_in: int, n_out: int, tmp_path, name: str):
    from surrogates import Dataset
    from surrogates.base import save_surrogate
    from surrogates.gp import GPSurrogate

    g = torch.Generator().manual_seed(0)
    X = 0.02 * (2 * torch.rand(10, n_in, generator=g, dtype=torch.float64) - 1)
    gp = GPSurrogate.from_dataset(Dataset(X=X, Y=10 * X[:, :n_out]), n_restarts=1, maxiter=10)
    return save_surrogate(gp, tmp_path / name)


@pytest.mark.parametrize("kind", ["missing", "not_constitutive", "wrong_dim"])
def test_a_bad_deployed_surrogate_is_one_line_and_leaves_no_run_directory(tmp_path, capsys, kind):
    """The run directory (config.json, failed.json) had been made before the model was loaded,
    so a URI without a model or a model of the wrong kind left one behind though nothing ran."""
    uri = {"missing": lambda: tmp_path / "nothing",
           "not_constitutive": lambda: _gp(3, 1, tmp_path, "plain"),
           "wrong_dim": lambda: _gp(9, 9, tmp_path, "gp3d")}[kind]()
    cfg = _cfg(tmp_path, "surrogate", f'[material.surrogate]\nuri = "{uri}"')
    assert scalebridge(["fe2", str(cfg), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fe2: ") and "Traceback" not in err[0], err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("value", [0.001, 0.0])
def test_homogeneous_patch_reaction_is_plane_strain_modulus_times_strain(tmp_path, capsys, value):
    """Uniaxial stress in plane strain on the unit square: R = E / (1 - nu^2) * strain * area."""
    assert scalebridge(["fe2", str(_cfg(tmp_path, value=value)), "--quiet"]) == 0
    R = json.loads(capsys.readouterr().out)["final_reaction"]
    expected = 10.0 / (1 - 0.3**2) * value * 1.0
    assert abs(R - expected) <= 2e-3 * abs(expected) + 1e-14
