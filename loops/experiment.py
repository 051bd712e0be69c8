"""Run a campaign config as an experiment, with a ``--smoke`` size for CI.

``run_experiment(config_path, smoke_overrides)`` loads the TOML, applies the
smoke overrides (a nested dict merged into the config) when asked, runs the
campaign and prints a summary. The run store records the size (meta ``size``:
``smoke`` or ``full``), which the registered model version carries as its
``scalebridge.size`` tag. Library notices go to the debug log
(:func:`loops.notices.library_notices_to_debug`). A config the campaign
refuses, a run directory it cannot use and an executor that cannot start end
the script with a one-line message, as ``scalebridge run`` does. The experiment
scripts in ``experiments/`` are thin wrappers around it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loops.config import ConfigError, parse_config


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def experiment_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="a small size that runs in a few minutes on 2 cores (CI)")
    p.add_argument("--run-dir", default=None, help="run directory (default: runs/<name>-<time>)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--executor", choices=["process", "thread", "serial", "dask"], default=None)
    p.add_argument("--no-progress", action="store_true")
    return p


def run_experiment(config_path: str | Path, smoke_overrides: dict[str, Any], args) -> Any:
    """Load, override, run; returns the finished :class:`loops.engine.Campaign`."""
    from loops.config import tomllib
    from loops.engine import Campaign

    data = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
    if args.smoke:
        data = merge(data, smoke_overrides)
        data["name"] = data.get("name", "campaign") + "-smoke"
        reg = (data.get("tracking") or {}).get("registered_model_name")
        if reg:  # a smoke run must not become the latest version of the full-size model
            data = merge(data, {"tracking": {"registered_model_name": reg + "-smoke"}})
    if args.seed is not None:
        data["seed"] = args.seed
    if args.executor is not None:
        data = merge(data, {"executor": {"kind": args.executor}})
    try:
        config = parse_config(data, str(config_path))
    except ConfigError as e:
        raise SystemExit("\n".join(e.lines)) from None
    from loops.store import RunDirError

    try:
        camp = Campaign(config, run_dir=args.run_dir, progress=not args.no_progress)
    except RunDirError as e:
        raise SystemExit(str(e)) from None
    except (ValueError, ImportError) as e:  # a setting the oracle refuses, a missing optional package
        raise SystemExit(f"{config_path}: {e}") from None
    camp.store.set_meta("size", "smoke" if args.smoke else "full")
    print(f"run directory: {camp.run_dir}", flush=True)
    import shlex

    from loops.commands import run_campaign

    d = shlex.quote(str(camp.run_dir))
    res, status, message = run_campaign(camp, f"this script again with --run-dir {d}")
    if status:  # the executor could not start, or the run directory could not be written
        raise SystemExit(message)
    if res.stopped_by in ("SIGTERM", "SIGINT"):
        # the campaign let its store go: points in flight stay pending for a resume
        import signal

        print(f"stopped by {res.stopped_by} after {res.state.calls} calls; points in flight stay pending: "
              f"this script again with --run-dir {d}, or `scalebridge resume {d}`, continues", flush=True)
        raise SystemExit(128 + int(getattr(signal, res.stopped_by)))
    from loops.commands import closing_lines

    for line in closing_lines(res):
        print(line)
    return camp
