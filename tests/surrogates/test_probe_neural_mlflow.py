"""Probe of the neural energy surrogates and the MLflow flavor / campaign tracking: input
checks that name the bad value, fitting settings that cannot invert the loss, and MLflow
calls that neither hang on a silent server nor fail inside the caller's own run."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import mlflow
import pytest
import torch

from oracles.exceptions import InvalidInput
from surrogates.dataset import Dataset
from surrogates.neural import (
    CubicElasticEnsemble,
    HyperelasticEnsemble,
    InvariantEnergy,
    SmallStrainEnsemble,
)

D = torch.float64


@pytest.mark.parametrize("bad", ["eye", None, [[1.0, "a"], [0.0, 1.0]]])
def test_evaluators_refuse_data_that_is_not_numbers_by_name(bad):
    """material_response, the fast evaluator, stress_tangent and stiffness had passed a string
    or None to torch.as_tensor: "new(): invalid data type 'str'" (TypeError) or "Could not
    infer dtype of NoneType" (RuntimeError), naming neither the argument nor what it takes."""
    he = HyperelasticEnsemble(dim=2, num_members=2, hidden=(4,))
    with pytest.raises(TypeError, match=r"^F must be an array of real numbers, got "):
        he.material_response(bad)
    with pytest.raises(TypeError, match=r"^F must be an array of real numbers, got "):
        he.fast_evaluator()(bad)
    ss = SmallStrainEnsemble(dim=2, num_members=2, hidden=(4,))
    with pytest.raises(TypeError, match=r"^eps must be an array of real numbers, got "):
        ss.stress_tangent(bad)
    ce = CubicElasticEnsemble(in_dim=1, num_members=2, hidden=(4,))
    with pytest.raises(TypeError, match=r"^X must be an array of real numbers, got "):
        ce.stiffness(bad)
    # numbers in any container still work: a nested list of F = I gives P = 0 exactly
    r = he.material_response([[[1.0, 0.0], [0.0, 1.0]]])
    assert r.P.shape == (1, 2, 2) and float(r.P.abs().max()) == 0.0


def _small_data(dim: int, n: int = 12):
    g = torch.Generator().manual_seed(0)
    k2 = dim * dim
    H = 0.05 * torch.randn(n, k2, generator=g, dtype=D)
    return Dataset(X=H, Y=2.0 * H)


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf"), "1", True, None])
def test_tangent_weight_must_be_a_finite_non_negative_number(weight):
    """A negative tangent_weight had been accepted: the loss then rewards tangent error
    (unbounded below), and training returned a model fitted to nothing, without a word;
    "1" gave torch's "only integer tensors of a single element can be converted to an index"
    and NaN "never reached a finite loss ... check the training data"."""
    tangent = torch.zeros(12, 2, 2, 2, 2, dtype=D)
    with pytest.raises(ValueError, match=r"^tangent_weight must be a finite number >= 0, got "):
        HyperelasticEnsemble.from_dataset(_small_data(2), tangent=tangent, tangent_weight=weight,
                                          num_members=1, hidden=(4,), training=dict(max_iter=1))
    Xs = 0.01 * torch.randn(12, 3, generator=torch.Generator().manual_seed(1), dtype=D)
    with pytest.raises(ValueError, match=r"^tangent_weight must be a finite number >= 0, got "):
        SmallStrainEnsemble.from_dataset(Dataset(X=Xs, Y=Xs), tangent=tangent, tangent_weight=weight,
                                         num_members=1, hidden=(4,), training=dict(max_iter=1))


def test_tangents_that_are_complex_non_finite_or_not_numbers_are_refused_by_name():
    """A complex tangent had been cut to its real part (a ComplexWarning only) and fitted; a
    NaN entry gave "training ... never reached a finite loss" after the fit had run; a string
    gave torch's "new(): invalid data type 'str'"."""
    ds = _small_data(2)
    Xs = ds.X[:, :3]
    ss_ds = Dataset(X=Xs, Y=Xs)
    opts = dict(num_members=1, hidden=(4,), training=dict(max_iter=1))
    complex_A = torch.zeros(12, 2, 2, 2, 2, dtype=torch.complex128) + 1j
    nan_A = torch.zeros(12, 2, 2, 2, 2, dtype=D)
    nan_A[3, 0, 1, 1, 0] = float("nan")
    for fit, data in ((HyperelasticEnsemble.from_dataset, ds), (SmallStrainEnsemble.from_dataset, ss_ds)):
        with pytest.raises(TypeError, match=r"^tangent must be real, got dtype torch.complex128"):
            fit(data, tangent=complex_A, **opts)
        with pytest.raises(InvalidInput, match=r"^tangent must be finite, got nan at index \(3, 0, 1, 1, 0\)"):
            fit(data, tangent=nan_A, **opts)
        with pytest.raises(TypeError, match=r"^tangent must be an array of real numbers, got str"):
            fit(data, tangent="A", **opts)


def test_dimension_given_as_a_whole_float_builds_the_same_model():
    """dim=3.0 (a TOML or JSON number) passed the check "dim in (2, 3)" and then failed deep in
    torch ("eye() received an invalid combination of arguments" for HyperelasticEnsemble,
    "ones(): argument 'size' ... must be tuple of ints, not float")."""
    F = torch.eye(3, dtype=D) + 0.1 * torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(2), dtype=D)
    a = HyperelasticEnsemble(dim=3.0, num_members=2, hidden=(4,))
    b = HyperelasticEnsemble(dim=3, num_members=2, hidden=(4,))
    assert a.get_config() == b.get_config()
    assert torch.equal(a.material_response(F).P, b.material_response(F).P)
    assert InvariantEnergy(dim=2.0).dim == 2
    eps = torch.tensor([[[1e-3, 2e-4], [2e-4, -5e-4]]], dtype=D)
    s_a, C_a = SmallStrainEnsemble(dim=2.0, num_members=1, hidden=(4,)).stress_tangent(eps)
    s_b, C_b = SmallStrainEnsemble(dim=2, num_members=1, hidden=(4,)).stress_tangent(eps)
    assert torch.equal(s_a, s_b) and torch.equal(C_a, C_b)
    for bad in (True, 2.5, "3"):
        with pytest.raises(ValueError, match=r"dim must be 2 or 3"):
            HyperelasticEnsemble(dim=bad)


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers (a hung tracking server)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


def test_log_and_load_fail_fast_on_a_server_that_accepts_connections_but_never_answers(
        silent_server, monkeypatch):
    """log_model had waited 240 s (120 s request timeout, one retry) before raising, load_model
    20 s: a server that accepts connections and never answers is now found by one short probe."""
    from surrogates.mlflow_flavor import TrackingServerUnreachable, load_model, log_model

    for var in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", silent_server)
    mlflow.set_tracking_uri(silent_server)
    mlflow.set_registry_uri(silent_server)
    model = HyperelasticEnsemble(dim=2, num_members=2, hidden=(4,))
    t0 = time.monotonic()
    with pytest.raises(TrackingServerUnreachable, match=rf"tracking server at {silent_server} did not answer "
                                                        r"\(timed out after 2 s\)") as err:
        log_model(model, name="nn", registered_model_name="silent")
    assert time.monotonic() - t0 < 10 and "\n" not in str(err.value)
    t0 = time.monotonic()
    with pytest.raises(TrackingServerUnreachable, match=rf"models:/silent/1: the tracking server at "
                                                        rf"{silent_server} did not answer"):
        load_model("models:/silent/1")
    assert time.monotonic() - t0 < 10


def _branin_config(tmp_path, name: str, calls: int):
    from loops.config import parse_config

    return parse_config({
        "name": name, "mode": "learn", "oracle": {"name": "branin"}, "budget": {"calls": calls},
        "initial": {"n": 6}, "executor": {"kind": "serial"}, "learn": {"n_validation": 8},
        "acquisition": {"name": "max_variance", "num_restarts": 2, "raw_samples": 32, "maxiter": 20},
        "tracking": {"registered_model_name": f"{name}-gp", "final_surrogate": "gp",
                     "final_surrogate_options": {"n_restarts": 1}},
        "run_dir": str(tmp_path / "runs"),
    })


@pytest.mark.slow
def test_a_campaign_inside_the_callers_active_run_registers_its_model(tmp_path):
    """Tracker.finish had made the campaign's run the active one (mlflow.start_run(run_id=...)):
    inside a caller's own `with mlflow.start_run():` that failed with "Run with UUID ... is
    already active", so nothing was registered and the campaign's run stayed RUNNING."""
    from mlflow.tracking import MlflowClient

    from loops.engine import Campaign

    cfg = _branin_config(tmp_path, "inside", 7)
    mlflow.set_experiment("caller")
    with mlflow.start_run() as outer:
        camp = Campaign(cfg, run_dir=Path(tmp_path) / "run")
        camp.run()
        # the caller's run is still the active one, and untouched
        assert mlflow.active_run().info.run_id == outer.info.run_id
    client = MlflowClient()
    versions = client.search_model_versions("name='inside-gp'")
    assert [str(v.version) for v in versions] == ["1"]
    campaign_run = camp.store.get_meta("mlflow_run_id")
    assert versions[0].run_id == campaign_run != outer.info.run_id
    assert client.get_run(campaign_run).info.status == "FINISHED"
    assert not client.list_artifacts(outer.info.run_id)


def test_save_model_prints_no_download_progress_bar(tmp_path, capfd):
    """save_model (a local directory, no tracking store) had drawn MLflow's "Downloading
    artifacts: 100%|...| 2/2" progress bar on stderr while copying the surrogate's files."""
    from surrogates.mlflow_flavor import load_model, save_model

    model = HyperelasticEnsemble(dim=2, num_members=2, hidden=(4,))
    save_model(model, tmp_path / "m")
    err = capfd.readouterr().err
    assert "Downloading artifacts" not in err and "it/s" not in err
    F = torch.eye(2, dtype=D) + 0.1 * torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(4), dtype=D)
    assert torch.equal(load_model(str(tmp_path / "m")).material_response(F).P, model.material_response(F).P)


@pytest.mark.slow
def test_a_failure_after_registering_does_not_make_the_resume_register_the_same_data_again(
        tmp_path, monkeypatch):
    """The server failing between the registration and the version's description had left the
    run store without the model's data key: the resume registered version 2 of the same data and
    left version 1 without description and tags. Now the resume describes version 1."""
    from mlflow.tracking import MlflowClient

    from loops.engine import Campaign

    real = MlflowClient.update_model_version
    failures = iter([ConnectionError("the server went away")])

    def flaky(self, *args, **kwargs):
        err = next(failures, None)
        if err is not None:
            raise err
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "update_model_version", flaky)
    with pytest.warns(UserWarning, match="the server went away"):
        Campaign(_branin_config(tmp_path, "flaky-registry", 7), run_dir=tmp_path / "run").run()
    client = MlflowClient()
    [v1] = client.search_model_versions("name='flaky-registry-gp'")
    assert not v1.description and not v1.tags
    camp = Campaign.resume(tmp_path / "run")
    camp.run()
    versions = client.search_model_versions("name='flaky-registry-gp'")
    assert [str(v.version) for v in versions] == ["1"]
    v1 = versions[0]
    assert "flaky-registry" in v1.description
    assert v1.tags["scalebridge.campaign"] == "flaky-registry" and v1.tags["scalebridge.calls"] == "7"
    assert client.get_run(camp.store.get_meta("mlflow_run_id")).info.status == "FINISHED"


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(polyconvex="no"), r"polyconvex must be True or False, got 'no'"),
        (dict(polyconvex=1), r"polyconvex must be True or False, got 1"),
        (dict(growth="1"), r"growth must be a number >= 0.*got '1'"),
        (dict(growth=True), r"growth must be a number >= 0.*got True"),
    ],
)
def test_energy_options_of_the_wrong_type_are_named(kw, match):
    """Before: polyconvex='no' is truthy and built the input-convex network the user declined;
    growth='1' raised a bare TypeError comparing a str with 0."""
    from surrogates.neural.energy import InvariantEnergy

    with pytest.raises(ValueError, match=match):
        InvariantEnergy(dim=2, **kw)


@pytest.mark.parametrize("order", ["1", True, 3, -1])
def test_energy_order_must_be_0_1_or_2(order):
    from surrogates.neural.energy import InvariantEnergy

    F = torch.eye(2, dtype=torch.float64).expand(3, 2, 2)
    with pytest.raises(ValueError, match=r"order must be 0, 1 or 2"):
        InvariantEnergy(dim=2)(F, order=order)
