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


def test_the_closing_lines_give_the_recommendation_with_its_standard_deviation():
    """``scalebridge run`` and the experiment scripts end with the recommendation, its predicted
    value and its posterior standard deviation (a user can tell a sure answer from a guess)."""
    from types import SimpleNamespace

    from loops.commands import closing_lines

    st = SimpleNamespace(calls=12, failed=1, cost=12.0, best=0.5, metrics={})
    rec = {"x": [0.25, 3.0], "predicted_value": 0.41, "predicted_sd": 0.0123, "fidelity": 0}
    res = SimpleNamespace(state=st, stopped_by="CallsBudget", recommendation=rec, input_names=("a", "b"))
    lines = closing_lines(res)
    assert lines[0] == "stopped by CallsBudget: 12 calls (1 failed), cost 12, best observed 0.5"
    assert lines[1] == "recommendation: a = 0.25, b = 3 (predicted 0.41, sd 0.0123)"
    lines[1].encode("ascii")  # plain text for any terminal


def test_a_tracking_database_error_that_mlflow_raises_next_is_not_printed_with_its_traceback():
    """A full disk under the MLflow SQLite store had printed MLflow's ERROR log, a 60-line
    traceback, before the one-line TrackingWarning that reports the same error."""
    import sys

    got = []

    class Keep(logging.Handler):
        def emit(self, record):
            got.append(record.getMessage())

    lg = logging.getLogger("mlflow.store.db.utils")
    h = Keep()
    lg.addHandler(h)
    try:
        with library_notices_to_debug():
            try:
                raise OSError("database or disk is full")
            except OSError as e:
                lg.exception("SQLAlchemy database error. The following exception is caught.\n%s", e)
            lg.error("another error")  # not one that is raised next: shown
        lg.error("SQLAlchemy database error. outside")  # outside the context: as MLflow logs it
    finally:
        lg.removeHandler(h)
    assert got == ["another error", "SQLAlchemy database error. outside"], got
    assert sys.exc_info() == (None, None, None)
