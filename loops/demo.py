"""``scalebridge demo``: experiment (a) at a small size on the embedded defaults.

Local process pool, SQLite run store under ``runs/``, MLflow tracking in
``mlflow.db`` of the working directory (or ``$MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path


def register(subparsers, name: str = "demo") -> None:
    p = subparsers.add_parser(name, help="run the end-to-end demo at a small size")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _experiment_a():
    root = Path(__file__).resolve().parents[1]
    path = root / "experiments" / "a_rve_active_learning.py"
    spec = importlib.util.spec_from_file_location("experiment_a", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(args: argparse.Namespace) -> int:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    mod = _experiment_a()
    argv = ["--smoke"] + (["--run-dir", args.run_dir] if args.run_dir else []) + (
        ["--no-progress"] if args.no_progress else [])
    camp = mod.main(argv)
    print()
    print(f"campaign status:  scalebridge status {camp.run_dir}")
    print(f"look at it:       mlflow ui --backend-store-uri {uri}")
    print("                  then open http://127.0.0.1:5000 (experiment 'scalebridge-experiments')")
    return 0
