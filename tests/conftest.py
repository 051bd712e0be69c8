import os
import sys

import pytest
import torch

# Small dense linear algebra on 2 cores is much faster single-threaded.
torch.set_num_threads(int(os.environ.get("SCALEBRIDGE_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _mlflow_in_tmp(tmp_path, monkeypatch):
    """Keep MLflow stores, their artifacts and run directories of tests out of the checkout.

    Each test runs in its own temporary directory: a SQLite store's default
    artifact root is ``./mlruns`` of the working directory.

    MLflow also keeps process-global tracking and registry URIs once any code
    calls ``mlflow.set_tracking_uri``; reset them too, so a test never talks to
    the store of the test that ran before it in the same worker.
    """
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # mlflow.set_experiment keeps the active experiment id in a module global and in
    # MLFLOW_EXPERIMENT_ID; an id from another test's store does not exist in this one
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    if "mlflow" in sys.modules:
        import mlflow
        import mlflow.tracking.fluent as fluent

        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        monkeypatch.setattr(fluent, "_active_experiment_id", None)
    yield


@pytest.fixture
def figures(monkeypatch):
    """The figures :mod:`loops.plots` draws (kept instead of closed, and closed afterwards)."""
    import loops.plots as plots

    kept, close = [], plots.plt.close
    monkeypatch.setattr(plots.plt, "close", kept.append)
    yield kept
    for f in kept:
        close(f)
