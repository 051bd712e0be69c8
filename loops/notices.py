"""Library notices that are not the user's business, sent to the debug log.

:func:`library_notices_to_debug` is a context manager for command-line entry
points (``scalebridge fe2``, the experiment scripts, the demo). Inside it:

* warnings whose category and message match :data:`NOTICES` (GPyTorch's jitter
  notices, MLflow's type-hint, input-example and pip-requirement notices) go to
  the ``scalebridge.notices`` logger at debug level instead of the terminal;
* MLflow's artifact download and upload progress bars are off
  (``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false`` unless the user set it);
* MLflow's and Alembic's INFO lines about creating and migrating the tracking
  database are raised to WARNING;
* MLflow's ERROR log of a tracking-database error, with its traceback, goes to
  the debug log: MLflow raises the error next, and the campaign's tracker
  reports it in one line (:class:`loops.tracking.TrackingWarning`).

scalebridge's own warnings (classes defined in ``loops``, ``oracles`` or
``surrogates``, such as :class:`loops.tracking.TrackingWarning`) are printed as
one line, ``Category: message``, on stderr; every other warning is shown as
usual.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator

log = logging.getLogger("scalebridge.notices")

#: ``(category name, message regex)`` of the notices sent to the debug log
NOTICES: tuple[tuple[str, str], ...] = (
    ("NumericalWarning", r"(?s).*added jitter"),
    ("NumericalWarning", r"(?s).*not p\.d\."),
    ("NumericalWarning", r"(?s).*Very small noise values detected"),
    ("UserWarning", r"(?s).*Add type hints to the `predict` method"),
    ("UserWarning", r"(?s).*An input example was not provided"),
    ("UserWarning", r"(?s).*Any type hint is inferred as AnyType"),
    ("UserWarning", r"(?s).*Encountered an unexpected error while inferring pip requirements"),
)

_OURS = ("loops", "oracles", "surrogates")
_QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration", "alembic")


class _RaisedNext(logging.Filter):
    """Sends a logged error that the library raises next (:data:`RAISED_NEXT`) to the debug log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if any(record.name == name and record.getMessage().startswith(start) for name, start in RAISED_NEXT):
            log.debug("%s: %s", record.name, record.getMessage().splitlines()[0])
            return False
        return True


#: ``(logger, message start)`` of errors a library logs (with a traceback) just before it raises them
RAISED_NEXT: tuple[tuple[str, str], ...] = (("mlflow.store.db.utils", "SQLAlchemy database error"),)


def is_notice(category: type[Warning], message: str) -> bool:
    """Whether a warning is one of :data:`NOTICES` (its category or a base class by name)."""
    names = {c.__name__ for c in category.__mro__}
    return any(cat in names and re.match(pat, message) for cat, pat in NOTICES)


@contextlib.contextmanager
def library_notices_to_debug() -> Iterator[None]:
    """Context manager: library notices to the debug log, no artifact progress bars (see module docs).

    It replaces :func:`warnings.showwarning` for its body rather than adding
    filters, because MLflow wraps its calls in its own ``catch_warnings`` that
    override filters set from outside.
    """
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if is_notice(category, str(message)):
            log.debug("%s: %s", category.__name__, message)
            return
        if category.__module__.split(".")[0] in _OURS:
            print(f"{category.__name__}: {message}", file=file or sys.stderr)
            return
        original(message, category, filename, lineno, file, line)

    env_added = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
    if env_added:
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    levels = {}
    for name in _QUIET_LOGGERS:
        lg = logging.getLogger(name)
        levels[name] = lg.level
        if lg.level < logging.WARNING:  # NOTSET included: MLflow sets INFO on its parent when imported
            lg.setLevel(logging.WARNING)
    raised_next = _RaisedNext()
    for name in {n for n, _ in RAISED_NEXT}:
        logging.getLogger(name).addFilter(raised_next)
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original
        for name in {n for n, _ in RAISED_NEXT}:
            logging.getLogger(name).removeFilter(raised_next)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if env_added:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
