import os

import pytest
import torch

# Small dense linear algebra on 2 cores is much faster single-threaded.
torch.set_num_threads(int(os.environ.get("SCALEBRIDGE_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _mlflow_in_tmp(tmp_path, monkeypatch):
    """Keep MLflow stores and run directories of tests out of the checkout."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield
