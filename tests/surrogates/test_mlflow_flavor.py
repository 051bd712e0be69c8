"""MLflow flavor: log -> register -> load through models:/ URIs (SQLite store in
a temp dir, set by tests/conftest.py), identical predictions, stress and tangent."""

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from surrogates import Dataset
from surrogates.gp import GPSurrogate
from surrogates.mlflow_flavor import (
    FLAVOR_NAME,
    SurrogatePythonModel,
    load_model,
    log_model,
    save_model,
)

D = torch.float64


@pytest.fixture(scope="module")
def constitutive_gp():
    g = torch.Generator().manual_seed(0)
    F = torch.eye(2, dtype=D) + 0.04 * (2 * torch.rand(14, 2, 2, generator=g, dtype=D) - 1)
    H = (F - torch.eye(2, dtype=D)).reshape(14, 4)
    # P of a small-strain law, row-major
    tr = H[:, 0] + H[:, 3]
    P = torch.stack([tr + H[:, 0], 0.5 * (H[:, 1] + H[:, 2]), 0.5 * (H[:, 1] + H[:, 2]), tr + H[:, 3]], -1)
    ds = Dataset(X=H, Y=P, input_names=("H11", "H12", "H21", "H22"))
    return GPSurrogate.from_dataset(ds, n_restarts=1, maxiter=50)


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    # one SQLite store for the module: creating its tables takes seconds
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def F():
    g = torch.Generator().manual_seed(1)
    return torch.eye(2, dtype=D) + 0.02 * torch.randn(3, 2, 2, generator=g, dtype=D)


def test_log_register_load_models_uri(constitutive_gp, F, tmp_path, tracking_uri):
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("flavor-test")
    with mlflow.start_run():
        info = log_model(constitutive_gp, name="gp", registered_model_name="rve_gp")
    assert info.registered_model_version == 1

    # native flavor
    native = load_model("models:/rve_gp/1")
    assert type(native) is GPSurrogate
    ref, got = constitutive_gp.material_response(F), native.material_response(F)
    torch.testing.assert_close(got.P, ref.P, rtol=0, atol=1e-13)
    torch.testing.assert_close(got.tangent, ref.tangent, rtol=0, atol=1e-12)

    # python_function flavor: stress and tangent through predict ...
    pyf = mlflow.pyfunc.load_model("models:/rve_gp/1")
    out = pyf.predict({"F": F.numpy()})
    np.testing.assert_allclose(out["P"], ref.P.numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(out["tangent"], ref.tangent.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["variance"], ref.variance.numpy(), rtol=1e-10, atol=1e-15)
    # ... and the native model behind unwrap_python_model()
    wrapped = pyf.unwrap_python_model()
    assert isinstance(wrapped, SurrogatePythonModel)
    r = wrapped.material_response(F)
    torch.testing.assert_close(r.tangent, ref.tangent, rtol=0, atol=1e-12)

    # posterior mean/variance from a DataFrame with named columns (any order)
    H = (F - torch.eye(2, dtype=D)).reshape(3, 4)
    df = pd.DataFrame(H.numpy(), columns=["H11", "H12", "H21", "H22"])[["H22", "H11", "H21", "H12"]]
    out = pyf.predict(df)
    with torch.no_grad():
        post = constitutive_gp.posterior(H)
    np.testing.assert_allclose(out["mean"], post.mean.numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(out["variance"], post.variance.numpy(), rtol=0, atol=1e-13)

    # the MLmodel carries both flavors and the surrogate directory
    local = mlflow.artifacts.download_artifacts("models:/rve_gp/1", dst_path=str(tmp_path / "dl"))
    mlmodel = mlflow.models.Model.load(local)
    assert FLAVOR_NAME in mlmodel.flavors and "python_function" in mlmodel.flavors
    conf = mlmodel.flavors[FLAVOR_NAME]
    assert conf["surrogate_class"] == "GPSurrogate" and conf["dim_F"] == 2
    assert sorted(p.name for p in (tmp_path / "dl" / conf["data"]).iterdir()) == [
        "config.json",
        "dataset.json",
        "state.pt",
    ]


def test_second_version_and_runs_uri(constitutive_gp, tracking_uri):
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        log_model(constitutive_gp, name="gp", registered_model_name="m")
    with mlflow.start_run() as run:
        info = log_model(constitutive_gp, name="gp", registered_model_name="m")
    assert info.registered_model_version == 2
    X = torch.zeros(1, 4, dtype=D)
    for uri in ("models:/m/2", info.model_uri, f"runs:/{run.info.run_id}/gp"):
        m = load_model(uri)
        with torch.no_grad():
            torch.testing.assert_close(m.posterior(X).mean, constitutive_gp.posterior(X).mean, rtol=0, atol=1e-13)


def test_local_save_and_bad_inputs(constitutive_gp, tmp_path):
    save_model(constitutive_gp, tmp_path / "local")
    pyf = mlflow.pyfunc.load_model(str(tmp_path / "local"))
    out = pyf.predict(np.zeros((2, 4)))
    assert out["mean"].shape == (2, 4) and out["variance"].shape == (2, 4)
    with torch.no_grad():
        np.testing.assert_allclose(out["mean"], constitutive_gp.posterior(torch.zeros(2, 4, dtype=D)).mean.numpy(), atol=1e-13)
    with pytest.raises(ValueError, match="'X' or 'F'"):
        pyf.predict({"stress": np.zeros((1, 4))})
    # an MLflow model without the scalebridge flavor is refused by name
    (tmp_path / "other").mkdir()
    mlflow.models.Model().save(str(tmp_path / "other" / "MLmodel"))
    with pytest.raises(ValueError, match="no 'scalebridge' flavor"):
        load_model(str(tmp_path / "other"))
