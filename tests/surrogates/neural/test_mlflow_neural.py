"""The hyperelastic ensemble through the scalebridge MLflow flavor (SQLite store)."""

from __future__ import annotations

import mlflow
import numpy as np
import torch

from surrogates.mlflow_flavor import load_model, log_model
from surrogates.neural import HyperelasticEnsemble
from tests.surrogates.neural.laws import neo_hookean_energy, random_F
from tests.surrogates.neural.test_hyperelastic import law_dataset


def test_log_register_load_hyperelastic(tmp_path):
    ds, *_ = law_dataset(neo_hookean_energy, 40, 2, 0.2, 0)
    model = HyperelasticEnsemble.from_dataset(
        ds, num_members=3, hidden=(4, 4), training=dict(max_iter=3, inner_iter=10)
    )
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("neural-flavor")
    with mlflow.start_run():
        info = log_model(model, name="nn", registered_model_name="rve_nn")
    F = random_F(7, 2, 0.2, torch.Generator().manual_seed(1))
    ref = model.material_response(F)
    native = load_model(f"models:/rve_nn/{info.registered_model_version}")
    assert type(native) is HyperelasticEnsemble
    got = native.material_response(F)
    assert torch.equal(got.P, ref.P) and torch.equal(got.tangent, ref.tangent)
    pyf = mlflow.pyfunc.load_model(f"models:/rve_nn/{info.registered_model_version}")
    out = pyf.predict({"F": F.numpy()})
    np.testing.assert_array_equal(out["P"], ref.P.numpy())
    np.testing.assert_array_equal(out["tangent"], ref.tangent.numpy())
    np.testing.assert_allclose(out["variance"], ref.variance.numpy(), rtol=1e-14)
