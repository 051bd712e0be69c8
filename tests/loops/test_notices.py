"""Library notices go to the debug log inside library_notices_to_debug; everything else is shown."""

import logging
import os
import warnings

from gpytorch.utils.warnings import NumericalWarning

from loops.notices import is_notice, library_notices_to_debug


def test_library_notices_go_to_the_debug_log_and_others_are_shown(caplog, monkeypatch):
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    shown = []
    monkeypatch.setattr(warnings, "showwarning", lambda m, c, *a, **k: shown.append((c, str(m))))
    with caplog.at_level(logging.DEBUG, logger="scalebridge.notices"), warnings.catch_warnings():
        warnings.simplefilter("always")
        with library_notices_to_debug():
            assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
            warnings.warn("A not p.d., added jitter of 1.0e-08 to the diagonal", NumericalWarning)
            warnings.warn("\x1b[33mAdd type hints to the `predict` method to enable ...\x1b[0m", UserWarning)
            warnings.warn("grid 600^3 needs about 40 GB", UserWarning)  # ours: shown
            warnings.warn("added jitter", RuntimeWarning)  # a notice's text, another category: shown
    assert [m for _, m in shown] == ["grid 600^3 needs about 40 GB", "added jitter"]
    assert sum("added jitter of 1.0e-08" in r.message for r in caplog.records) == 1
    assert sum("Add type hints" in r.message for r in caplog.records) == 1
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "scalebridge.notices")
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
    assert warnings.showwarning is not None and not is_notice(UserWarning, "something else")


def test_the_user_setting_of_the_progress_bar_is_kept(monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    with library_notices_to_debug():
        assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"


def test_our_warnings_are_one_line_on_stderr(capsys):
    from loops.tracking import TrackingWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with library_notices_to_debug():
            warnings.warn("MLflow start at http://127.0.0.1:9 failed (ConnectionError)", TrackingWarning)
    err = capsys.readouterr().err
    assert err == "TrackingWarning: MLflow start at http://127.0.0.1:9 failed (ConnectionError)\n"
