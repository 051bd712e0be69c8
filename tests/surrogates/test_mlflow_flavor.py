"""MLflow flavor: log -> register -> load through models:/ URIs (SQLite store in
a temp dir, set by tests/conftest.py), identical predictions, stress and tangent."""

import json

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
    # a reversed view (negative strides) is a valid input: torch had refused it
    rev = np.arange(8.0).reshape(2, 4)[:, ::-1] * 0.01
    np.testing.assert_allclose(pyf.predict(rev)["mean"], pyf.predict(np.ascontiguousarray(rev))["mean"], rtol=0, atol=0)
    import pandas as pd

    from surrogates.mlflow_flavor import surrogate_input_names

    names = list(surrogate_input_names(constitutive_gp))
    # columns given in another order: selected back into the model's order, a view with negative
    # strides that torch had refused ("At least one stride in the given numpy array is negative")
    frame = pd.DataFrame({n: rev[:, j] for j, n in reversed(list(enumerate(names)))})
    np.testing.assert_allclose(pyf.predict(frame)["mean"], pyf.predict(np.ascontiguousarray(rev))["mean"], rtol=0,
                               atol=0)
    # an MLflow model without the scalebridge flavor is refused by name
    (tmp_path / "other").mkdir()
    mlflow.models.Model().save(str(tmp_path / "other" / "MLmodel"))
    with pytest.raises(ValueError, match="no 'scalebridge' flavor"):
        load_model(str(tmp_path / "other"))


# ----------------------------------------------------------------- what loading executes, tampering


@pytest.fixture
def saved(constitutive_gp, tmp_path):
    save_model(constitutive_gp, tmp_path / "model")
    return tmp_path / "model"


def _set_data_path(model_dir, data):
    import yaml

    f = model_dir / "MLmodel"
    doc = yaml.safe_load(f.read_text())
    doc["flavors"][FLAVOR_NAME]["data"] = data
    f.write_text(yaml.safe_dump(doc))


def test_native_loader_runs_no_code_from_the_model_directory(constitutive_gp, saved, tmp_path):
    """An edited pyfunc code file runs under mlflow.pyfunc.load_model (as documented) but not under load_model."""
    marker = tmp_path / "executed"
    code = saved / "scalebridge_pyfunc.py"
    assert code.exists()
    code.write_text(f"open({str(marker)!r}, 'w').write('x')\n" + code.read_text())
    native = load_model(str(saved))
    assert not marker.exists()
    X = torch.full((2, 4), 0.01, dtype=D)
    with torch.no_grad():
        torch.testing.assert_close(native.posterior(X).mean, constitutive_gp.posterior(X).mean, rtol=0, atol=1e-13)
    mlflow.pyfunc.load_model(str(saved))
    assert marker.exists()  # pyfunc imports the model's Python file: the module docs say so
    import surrogates.mlflow_flavor as flavor

    assert "imports and runs Python code from the model" in flavor.__doc__


def test_data_path_outside_the_model_directory_is_refused(saved, tmp_path):
    import shutil

    from surrogates.mlflow_flavor import UnsafeModelError

    shutil.copytree(saved / "artifacts" / "surrogate", tmp_path / "elsewhere")
    _set_data_path(saved, "../elsewhere")
    with pytest.raises(UnsafeModelError, match="outside the model directory"):
        load_model(str(saved))
    _set_data_path(saved, str(tmp_path / "elsewhere"))
    with pytest.raises(UnsafeModelError, match="absolute path"):
        load_model(str(saved))
    # a link inside the directory that leads out of it
    (saved / "artifacts" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    _set_data_path(saved, "artifacts/link")
    with pytest.raises(UnsafeModelError, match="outside the model directory"):
        load_model(str(saved))
    # a file of the surrogate linked to a file outside
    _set_data_path(saved, "artifacts/surrogate")
    (saved / "artifacts" / "surrogate" / "dataset.json").unlink()
    (saved / "artifacts" / "surrogate" / "dataset.json").symlink_to(tmp_path / "elsewhere" / "dataset.json")
    with pytest.raises(UnsafeModelError, match="dataset.json"):
        load_model(str(saved))


@pytest.mark.parametrize("damage", ["truncated_state", "bad_json", "unknown_class", "bad_dataset", "bad_mlmodel"])
def test_tampered_surrogate_directory_gives_one_line_error(saved, damage):
    from surrogates.mlflow_flavor import SurrogateLoadError

    sdir = saved / "artifacts" / "surrogate"
    if damage == "truncated_state":
        (sdir / "state.pt").write_bytes((sdir / "state.pt").read_bytes()[:100])
    elif damage == "bad_json":
        (sdir / "config.json").write_text((sdir / "config.json").read_text()[:-20])
    elif damage == "unknown_class":
        (sdir / "config.json").write_text((sdir / "config.json").read_text().replace("GPSurrogate", "os.system"))
    elif damage == "bad_dataset":
        ds = json.loads((sdir / "dataset.json").read_text())
        ds["X"] = "not a table"
        (sdir / "dataset.json").write_text(json.dumps(ds))
    else:
        (saved / "MLmodel").write_text("flavors: [unclosed\n")
    with pytest.raises(SurrogateLoadError) as err:
        load_model(str(saved))
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 500, msg


def test_missing_registered_model_names_the_store(tmp_path, tracking_uri):
    from surrogates.mlflow_flavor import ModelNotFoundError

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with pytest.raises(ModelNotFoundError) as err:
        load_model("models:/no-such-model/3")
    msg = str(err.value)
    assert "\n" not in msg and tracking_uri in msg and "MLFLOW_TRACKING_URI" in msg and "no-such-model" in msg
    # a store that does not exist is named, and not created
    absent = tmp_path / "absent" / "mlflow.db"
    (tmp_path / "absent").mkdir()
    mlflow.set_tracking_uri(f"sqlite:///{absent}")
    mlflow.set_registry_uri(f"sqlite:///{absent}")
    with pytest.raises(ModelNotFoundError, match="MLFLOW_TRACKING_URI") as err:
        load_model("models:/rve_gp/1")
    assert str(absent) in str(err.value) and not absent.exists()


def test_server_down_is_not_reported_as_a_missing_model(tmp_path):
    """A tracking server that refuses connections had given 'models:/m/1 not found'; and a
    local path that does not exist had given MLflow's 'No such artifact' naming its last part."""
    from surrogates.mlflow_flavor import ModelNotFoundError, TrackingServerUnreachable

    prev = mlflow.get_tracking_uri()
    try:
        mlflow.set_tracking_uri("http://127.0.0.1:1")
        mlflow.set_registry_uri("http://127.0.0.1:1")
        with pytest.raises(TrackingServerUnreachable, match=r"tracking server at http://127.0.0.1:1 did not "
                           r"answer \(Connection refused\)") as err:
            load_model("models:/m/1")
        assert "\n" not in str(err.value) and isinstance(err.value, ModelNotFoundError)
    finally:
        mlflow.set_tracking_uri(prev)
        mlflow.set_registry_uri(prev)
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(ModelNotFoundError, match=f"no MLflow model at {missing} \\(no such file or directory\\)"):
        load_model(str(missing))


def test_signature_describes_the_table_of_inputs(constitutive_gp, tmp_path):
    from surrogates.mlflow_flavor import surrogate_signature

    names = ("H11", "H12", "H21", "H22")
    save_model(constitutive_gp, tmp_path / "m", signature=surrogate_signature(names, ("P11", "P12", "P21", "P22")))
    sig = mlflow.models.Model.load(str(tmp_path / "m")).signature
    assert sig.inputs.input_names() == list(names)
    assert [s.name for s in sig.outputs.inputs] == ["mean", "variance"]
    assert all(s.shape == (-1, 4) for s in sig.outputs.inputs)
    pyf = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    H = 0.01 * torch.arange(8, dtype=D).reshape(2, 4)
    out = pyf.predict(pd.DataFrame(H.numpy(), columns=names))
    with torch.no_grad():
        np.testing.assert_allclose(out["mean"], constitutive_gp.posterior(H).mean.numpy(), atol=1e-13)


def test_constitutive_signature_takes_deformation_gradients(constitutive_gp, F, tmp_path):
    from surrogates.mlflow_flavor import surrogate_signature

    sig = surrogate_signature(("H11", "H12", "H21", "H22"), ("P11", "P12", "P21", "P22"), dim_F=2)
    save_model(constitutive_gp, tmp_path / "m", signature=sig)
    loaded = mlflow.models.Model.load(str(tmp_path / "m")).signature
    assert [(t.name, t.shape) for t in loaded.inputs.inputs] == [("F", (-1, 2, 2))]
    assert [t.name for t in loaded.outputs.inputs] == ["P", "tangent", "variance"]
    out = mlflow.pyfunc.load_model(str(tmp_path / "m")).predict({"F": F.numpy()})
    ref = constitutive_gp.material_response(F)
    np.testing.assert_allclose(out["P"], ref.P.numpy(), rtol=0, atol=1e-13)
    assert out["tangent"].shape == (3, 2, 2, 2, 2) and out["variance"].shape == (3,)


def test_multi_fidelity_table_has_a_fidelity_column_and_observation_noise_is_a_parameter(tmp_path):
    """A co-kriging model's pyfunc table is its input names then ``fidelity`` (the level its
    posterior takes as a last column), and ``params={"observation_noise": True}`` reaches the
    posterior: the predictions equal the native model's, latent and noisy."""
    from surrogates.mlflow_flavor import surrogate_input_names, surrogate_signature
    from surrogates.multifidelity import AR1CoKriging

    g = torch.Generator().manual_seed(0)
    X = torch.rand(14, 2, generator=g, dtype=D)
    fid = torch.tensor([0] * 9 + [1] * 5)
    Y = (torch.sin(4 * X[:, :1]) + 0.2 * X[:, 1:] * (1 + fid.unsqueeze(-1))
         + 0.05 * torch.randn(14, 1, generator=g, dtype=D))
    ds = Dataset(X=X, Y=Y, fidelity=fid, input_names=("a", "b"), output_names=("y",))
    model = AR1CoKriging.from_dataset(ds, noise="infer", bounds=[[0, 0], [1, 1]]).eval()
    names = surrogate_input_names(model)
    assert names == ("a", "b", "fidelity")
    save_model(model, tmp_path / "m", signature=surrogate_signature(names, ("y",)))
    pyf = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    Xq = torch.tensor([[0.2, 0.3, 1.0], [0.7, 0.9, 0.0]], dtype=D)
    table = pd.DataFrame(Xq.numpy(), columns=list(names))
    with torch.no_grad():
        latent, noisy = model.posterior(Xq), model.posterior(Xq, observation_noise=True)
    out = pyf.predict(table)
    np.testing.assert_allclose(out["mean"], latent.mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(out["variance"], latent.variance.numpy(), rtol=1e-10)
    out = pyf.predict(table, params={"observation_noise": True})
    np.testing.assert_allclose(out["variance"], noisy.variance.numpy(), rtol=1e-10)
    assert (noisy.variance > latent.variance).all()


def test_a_model_saved_without_a_signature_takes_observation_noise(constitutive_gp, tmp_path):
    """MLflow passes predict only the parameters a signature declares: save_model without a
    signature had dropped params={"observation_noise": True} (latent variance returned, 78 % low)."""
    save_model(constitutive_gp, tmp_path / "m")
    pyf = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    X = 0.01 * torch.arange(8.0, dtype=D).reshape(2, 4)
    with torch.no_grad():
        want = constitutive_gp.posterior(X, observation_noise=True).variance.numpy()
        latent = constitutive_gp.posterior(X).variance.numpy()
    got = pyf.predict(X.numpy(), params={"observation_noise": True})["variance"]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert (want > latent).all()
    np.testing.assert_allclose(pyf.predict(X.numpy())["variance"], latent, rtol=1e-10)
