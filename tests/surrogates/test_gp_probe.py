"""Probe of GPSurrogate, Dataset and the MLflow flavor as a demanding user: predictions
against an independent exact-GP formula with the same hyperparameters, and bad inputs that
had been accepted silently, failed deep inside torch/BoTorch, or hung (a tracking server
that is down)."""

import math
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from oracles.exceptions import InvalidInput
from surrogates import Dataset
from surrogates.base import variance_in_output_units
from surrogates.gp import GPSurrogate

D = torch.float64


@pytest.fixture(scope="module")
def gp():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(12, 2, generator=g, dtype=D)
    Y = torch.stack([torch.sin(3 * X[:, 0]) + X[:, 1], 1e-9 * X.prod(-1)], -1)
    ds = Dataset(X, Y, input_names=("a", "b"), output_names=("u", "v"))
    return GPSurrogate.from_dataset(ds, n_restarts=1, maxiter=30)


def _reference(gp, Xq):
    """Exact GP mean and variance with ``gp``'s hyperparameters, written out: ARD
    Matérn-5/2 on the normalized inputs, targets standardized by the model's means and
    scales, ``mu = c + k* A^-1 (y - c)``, ``var = s - k* A^-1 k*^T``."""
    ds = gp.train_dataset
    off, coef = gp.input_transform._offset.reshape(-1), gp.input_transform._coefficient.reshape(-1)
    means, sds = gp.outcome_transform.means.reshape(-1), gp.outcome_transform.stdvs.reshape(-1)
    ls = gp.covar_module.base_kernel.lengthscale.detach().reshape(ds.m, ds.d)
    s = gp.covar_module.outputscale.detach().reshape(-1)
    c = gp.mean_module.constant.detach().reshape(-1)
    noise = gp.likelihood.noise.detach().reshape(-1)
    mus, vs = [], []
    for j in range(ds.m):
        def k(A, B, j=j):
            r = math.sqrt(5) * torch.cdist((A - off) / coef / ls[j], (B - off) / coef / ls[j])
            return s[j] * (1 + r + r**2 / 3) * torch.exp(-r)
        A = k(ds.X, ds.X) + noise[j] * torch.eye(ds.n, dtype=D)
        Ks = k(Xq, ds.X)
        y = (ds.Y[:, j] - means[j]) / sds[j]
        mus.append(means[j] + sds[j] * (c[j] + Ks @ torch.linalg.solve(A, y - c[j])))
        vs.append(sds[j] ** 2 * (s[j] - (Ks * torch.linalg.solve(A, Ks.T).T).sum(-1)))
    return torch.stack(mus, -1), torch.stack(vs, -1)


def test_posterior_matches_an_exact_gp_written_out(gp):
    Xq = torch.rand(7, 2, generator=torch.Generator().manual_seed(3), dtype=D)
    with torch.no_grad(), variance_in_output_units():
        post = gp.posterior(Xq)
    mu, var = _reference(gp, Xq)
    torch.testing.assert_close(post.mean, mu, rtol=1e-9, atol=0)
    torch.testing.assert_close(post.variance, var, rtol=1e-7, atol=0)


# ------------------------------------------------------------------------ Dataset


@pytest.mark.parametrize("field", ["X", "Y", "Yvar"])
def test_complex_data_is_refused_not_truncated(field):
    """A complex tensor had been cast to float64 with only a UserWarning: its imaginary
    part was dropped and the dataset accepted."""
    data = {"X": torch.rand(4, 2, dtype=D), "Y": torch.rand(4, 1, dtype=D), "Yvar": torch.rand(4, 1, dtype=D)}
    data[field] = data[field].to(torch.complex128) + 1j
    with pytest.raises(ValueError, match=rf"Dataset\.{field} must hold real numbers, got dtype torch.complex128"):
        Dataset(**data)


def test_non_numeric_data_names_the_field():
    with pytest.raises(ValueError, match=r"Dataset\.X must be an array of real numbers, got list"):
        Dataset([["a", "b"]] * 3, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"Dataset\.Y must be an array of real numbers, got ndarray"):
        Dataset(torch.rand(2, 1, dtype=D), np.array([1.0, None], dtype=object))
    # lists of Python floats keep float64 precision
    ds = Dataset([[0.1], [0.2]], [0.1, 0.3])
    assert ds.X[0, 0].item() == 0.1 and ds.Y[1, 0].item() == 0.3


def test_names_must_be_a_sequence_of_distinct_names():
    """A string had been split into one-letter names; repeated names make a pyfunc table's
    columns ambiguous."""
    X, Y = torch.rand(3, 2, dtype=D), torch.rand(3, 1, dtype=D)
    with pytest.raises(ValueError, match=r"input_names must be a sequence of 2 names, got the string 'ab'"):
        Dataset(X, Y, input_names="ab")
    with pytest.raises(ValueError, match=r"input_names must be distinct, got \('a', 'a'\) \(repeated: \['a'\]\)"):
        Dataset(X, Y, input_names=("a", "a"))


# ------------------------------------------------------------------- GPSurrogate inputs


def test_datasets_without_inputs_or_outputs_and_bad_options_are_named():
    X, Y = torch.rand(5, 2, dtype=D), torch.rand(5, 2, dtype=D)
    # had been IndexError "amax(): Expected reduction dim -1 ..." and "math domain error"
    with pytest.raises(ValueError, match=r"at least one input and one output column, got .* d = 2 .* m = 0"):
        GPSurrogate.from_dataset(Dataset(X, torch.zeros(5, 0, dtype=D)))
    with pytest.raises(ValueError, match=r"d = 0 inputs and m = 2 outputs"):
        GPSurrogate.from_dataset(Dataset(torch.zeros(5, 0, dtype=D), Y))
    # had been fitted, then RuntimeError "size of tensor a (2) must match ... (9)" in material_response
    with pytest.raises(ValueError, match=r"dim_F = 3 needs m = 9 outputs P and at least 9 inputs .* got d = 2 inputs and m = 2 outputs"):
        GPSurrogate.from_dataset(Dataset(X, Y), dim_F=3)
    # had been BoTorch's "Input data contains NaN values"
    with pytest.raises(ValueError, match=r"bounds must be a finite 2 x 2 tensor .* got \[\[-inf, 0.0\]"):
        GPSurrogate.from_dataset(Dataset(X, Y), bounds=[[-math.inf, 0.0], [1.0, 1.0]])


def test_observation_noise_tensor_is_checked_and_added_in_output_units(gp):
    Xq = torch.rand(3, 2, generator=torch.Generator().manual_seed(4), dtype=D)
    # had been RuntimeError "expand(torch.DoubleTensor{[1, 3]}, size=[12]) ..."
    with pytest.raises(InvalidInput, match=r"observation_noise must be a batch x q x m = \.\.\. x 3 x 2 .* "
                                           r"got shape \(3,\)"):
        gp.posterior(Xq, observation_noise=torch.ones(3, dtype=D))
    # had given a variance below the latent one
    with pytest.raises(InvalidInput, match=r"finite variances >= 0 .* got \[-1.0"):
        gp.posterior(Xq, observation_noise=torch.tensor([[-1.0, 0.0]] * 3, dtype=D))
    noise = torch.tensor([[0.5, 2e-20]] * 3, dtype=D)
    with torch.no_grad(), variance_in_output_units():
        latent = gp.posterior(Xq).variance
        noisy = gp.posterior(Xq, observation_noise=noise).variance
        batched = gp.posterior(Xq.expand(2, 3, 2), observation_noise=noise).variance
    torch.testing.assert_close(noisy, latent + noise, rtol=1e-12, atol=0)
    torch.testing.assert_close(batched, noisy.expand(2, 3, 2), rtol=0, atol=0)


# ------------------------------------------------------------------------- MLflow


def test_pyfunc_table_with_wrong_columns_or_dtypes_is_refused(gp, tmp_path):
    """Without a signature, a table with other column names had been read by position and
    a column of numeric strings parsed silently."""
    from surrogates.mlflow_flavor import save_model

    save_model(gp, tmp_path / "m")
    pyf = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    Xq = torch.rand(4, 2, generator=torch.Generator().manual_seed(5), dtype=D)
    with torch.no_grad(), variance_in_output_units():
        want = gp.posterior(Xq)
    table = pd.DataFrame(Xq.numpy(), columns=["a", "b"])
    out = pyf.predict(table[["b", "a"]])
    assert np.array_equal(out["mean"], want.mean.numpy()) and np.array_equal(out["variance"], want.variance.numpy())
    assert np.array_equal(pyf.predict(pd.DataFrame(Xq.numpy()))["mean"], want.mean.numpy())  # unnamed: by position
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['a', 'b'\]: expected the columns \['a', 'b'\], "
                                         r"got \['x', 'y'\]"):
        pyf.predict(pd.DataFrame(Xq.numpy(), columns=["x", "y"]))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['b'\]"):
        pyf.predict(table[["a"]])
    with pytest.raises(ValueError, match=r"input column 'a' has dtype .*: expected real numbers"):
        pyf.predict(table.astype(str))
    with pytest.raises(ValueError, match=r"input column 'b' holds 'x' \(str, dtype object\)"):
        pyf.predict(table.assign(b=pd.Series([0.1, "x", 0.2, 0.3], dtype=object)))
    with pytest.raises(InvalidInput, match="nan or inf"):
        pyf.predict(table.assign(b=np.nan))


def test_log_model_to_a_server_that_is_down_fails_fast_and_by_name(gp, monkeypatch):
    """MLflow's default retries had held log_model for about 4 minutes before a bare
    MlflowException ("API request ... failed ... Max retries exceeded")."""
    from surrogates.mlflow_flavor import TrackingServerUnreachable, log_model

    for var in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    mlflow.set_tracking_uri("http://127.0.0.1:9")
    mlflow.set_registry_uri("http://127.0.0.1:9")
    t0 = time.monotonic()
    with pytest.raises(TrackingServerUnreachable, match=r"tracking server at http://127.0.0.1:9 did not answer "
                                                        r"\(Connection refused\)") as err:
        log_model(gp, name="gp", registered_model_name="down")
    assert time.monotonic() - t0 < 30 and "\n" not in str(err.value)
    assert mlflow.active_run() is None


def test_pyfunc_arrays_of_complex_or_non_numbers_are_refused_naming_the_input(gp):
    """numpy's cast to float64 had cut a complex array to its real part with only a
    ComplexWarning and predicted at it; a ragged list gave numpy's bare message."""
    from surrogates.mlflow_flavor import SurrogatePythonModel

    pym = SurrogatePythonModel()
    pym.surrogate = gp
    Xq = torch.rand(3, 2, generator=torch.Generator().manual_seed(6), dtype=D)
    with pytest.raises(ValueError, match=r"model_input must hold real numbers, got complex values"):
        pym.predict(None, Xq.numpy() + 0j)
    with pytest.raises(ValueError, match=r"model_input\['X'\] must hold real numbers"):
        pym.predict(None, {"X": (Xq + 0j).tolist()})
    with pytest.raises(ValueError, match=r"model_input\['F'\] must be an array of real numbers, got list"):
        pym.predict(None, {"F": [[1.0, 0.0], [0.0]]})
    with torch.no_grad(), variance_in_output_units():
        want = gp.posterior(Xq).mean.numpy()
    assert np.array_equal(pym.predict(None, Xq.tolist())["mean"], want)
