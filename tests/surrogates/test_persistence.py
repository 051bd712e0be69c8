"""save_surrogate / load_surrogate: identical predictions, hyperparameters and
training data travel, tensors-only state, clear errors."""

import json

import pytest
import torch

from surrogates import Dataset, load_surrogate, save_surrogate
from surrogates.gp import GPSurrogate, ICMGPSurrogate

D = torch.float64


def _data(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=D)
    Y = torch.stack([torch.sin(5 * X[:, 0]) + X[:, 1], X[:, 0] * X[:, 1]], -1)
    return X, Y


@pytest.fixture(scope="module")
def gp():
    X, Y = _data()
    Yvar = torch.linspace(1e-4, 1e-2, 20, dtype=D).reshape(10, 2)
    ds = Dataset(X=X, Y=Y, Yvar=Yvar, input_names=("a", "b"), output_names=("u", "v"))
    return GPSurrogate.from_dataset(ds, n_restarts=1, maxiter=60, bounds=[[0, 0], [1, 1]])


@pytest.fixture(scope="module")
def icm():
    X, Y = _data(seed=1)
    obs = torch.ones_like(Y, dtype=torch.bool)
    obs[1::3, 0] = False
    return ICMGPSurrogate.from_dataset(Dataset(X=X, Y=Y, observed=obs), n_restarts=1, maxiter=60)


def _assert_same_predictions(a, b, X):
    with torch.no_grad():
        pa, pb = a.posterior(X), b.posterior(X)
        ca, cb = pa.distribution.covariance_matrix, pb.distribution.covariance_matrix
    torch.testing.assert_close(pb.mean, pa.mean, rtol=0, atol=1e-13)
    torch.testing.assert_close(cb, ca, rtol=0, atol=1e-13)


@pytest.mark.parametrize("which", ["gp", "icm"])
def test_round_trip_identical(which, request, tmp_path):
    model = request.getfixturevalue(which)
    save_surrogate(model, tmp_path / "m")
    clone = load_surrogate(tmp_path / "m")
    assert type(clone) is type(model) and not clone.training
    X = torch.rand(2, 5, 2, generator=torch.Generator().manual_seed(3), dtype=D)
    _assert_same_predictions(model, clone, X)
    # the fitted hyperparameters (and transforms) travel
    sa, sb = model.state_dict(), clone.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=0, atol=0, msg=k)
    # and so does the training data, mask and names included
    da, db = model.train_dataset, clone.train_dataset
    for f in ("X", "Y", "Yvar", "observed"):
        va, vb = getattr(da, f), getattr(db, f)
        assert (va is None) == (vb is None), f
        if va is not None:
            assert torch.equal(va, vb), f
    assert db.input_names == da.input_names and db.output_names == da.output_names
    assert clone.get_config() == model.get_config()


def test_files_are_json_and_tensors_only(gp, tmp_path):
    path = save_surrogate(gp, tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "dataset.json", "state.pt"]
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["class"] == "GPSurrogate" and cfg["format_version"] == 1
    assert cfg["config"]["bounds"] == [[0.0, 0.0], [1.0, 1.0]]
    state = torch.load(path / "state.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    # a fitted hyperparameter is there under its GPyTorch name
    assert any("lengthscale" in k for k in state)


@pytest.mark.parametrize("shared", [False, True])
def test_constitutive_round_trip(tmp_path, shared):
    g = torch.Generator().manual_seed(4)
    H = 0.03 * torch.randn(12, 4, generator=g, dtype=D)
    P = 2.0 * H + H[:, [0]] + H[:, [3]]
    gp = GPSurrogate.from_dataset(Dataset(X=H, Y=P), n_restarts=1, maxiter=40, shared_lengthscale=shared)
    clone = load_surrogate(save_surrogate(gp, tmp_path / "c"))
    assert clone.get_config()["shared_lengthscale"] is shared
    assert clone.covar_module.base_kernel.lengthscale.shape == ((1, 4) if shared else (4, 1, 4))
    F = torch.eye(2, dtype=D) + 0.02 * torch.randn(3, 2, 2, generator=g, dtype=D)
    ra, rb = gp.material_response(F), clone.material_response(F)
    torch.testing.assert_close(rb.P, ra.P, rtol=0, atol=1e-13)
    torch.testing.assert_close(rb.tangent, ra.tangent, rtol=0, atol=1e-12)


def test_load_errors_are_clear(gp, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_surrogate(tmp_path / "nothing")
    path = save_surrogate(gp, tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())

    bad = dict(cfg, format_version=99)
    (path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="format 99"):
        load_surrogate(path)

    bad = dict(cfg, **{"class": "NoSuchSurrogate"})
    (path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="NoSuchSurrogate"):
        load_surrogate(path)

    (path / "config.json").write_text(json.dumps(cfg))
    state = torch.load(path / "state.pt", weights_only=True)
    key = next(k for k in state if "lengthscale" in k)
    state[key] = torch.zeros(7, dtype=D)
    torch.save(state, path / "state.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_surrogate(path)


def test_a_corrupt_save_is_refused_naming_the_file(gp, tmp_path):
    """Damaged files give one error naming the file, not a decoder's or torch's traceback."""
    path = save_surrogate(gp, tmp_path / "m")
    good_cfg, good_state = (path / "config.json").read_text(), (path / "state.pt").read_bytes()

    (path / "config.json").write_text(good_cfg[: len(good_cfg) // 2])
    with pytest.raises(ValueError, match=r"config.json is not valid JSON"):
        load_surrogate(path)
    (path / "config.json").write_text(json.dumps(dict(json.loads(good_cfg), format_version="2")))
    with pytest.raises(ValueError, match=r"config.json is not a saved surrogate's config \(format_version '2'\)"):
        load_surrogate(path)
    (path / "config.json").write_text(good_cfg)

    (path / "state.pt").write_bytes(good_state[: len(good_state) // 2])
    with pytest.raises(ValueError, match=r"state.pt cannot be read \(truncated"):
        load_surrogate(path)
    (path / "state.pt").write_bytes(good_state)
    state = torch.load(path / "state.pt", weights_only=True)
    key = next(k for k in state if "lengthscale" in k)
    state[key] = torch.full_like(state[key], float("nan"))
    torch.save(state, path / "state.pt")
    with pytest.raises(ValueError, match=rf"state.pt holds NaN or inf in \['{key}'\]"):
        load_surrogate(path)
    # an infinite lengthscale had loaded and predicted a constant everywhere
    state[key] = torch.full_like(state[key], float("inf"))
    torch.save(state, path / "state.pt")
    with pytest.raises(ValueError, match=rf"state.pt holds NaN or inf in \['{key}'\]"):
        load_surrogate(path)
    torch.save(torch.zeros(3), path / "state.pt")
    with pytest.raises(ValueError, match=r"state.pt holds a Tensor, not a state dict"):
        load_surrogate(path)
    (path / "state.pt").write_bytes(good_state)
    good_ds = (path / "dataset.json").read_text()
    (path / "dataset.json").write_text(json.dumps({k: v for k, v in json.loads(good_ds).items() if k != "Y"}))
    with pytest.raises(ValueError, match=r"dataset.json is not a saved dataset \(KeyError"):
        load_surrogate(path)
    (path / "dataset.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"dataset.json is not a saved dataset"):
        load_surrogate(path)
    (path / "dataset.json").write_text(good_ds)
    (path / "config.json").write_text(json.dumps({**json.loads(good_cfg), "config": {
        **json.loads(good_cfg)["config"], "bounds": "abc"}}))
    with pytest.raises(ValueError, match=r"config.json does not rebuild a GPSurrogate"):
        load_surrogate(path)
    (path / "config.json").write_text(good_cfg)
    load_surrogate(path)  # the intact save still loads
