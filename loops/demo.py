"""``scalebridge demo``: the whole chain at a small size on the embedded defaults.

1. Campaign (a) (smoke size): active learning of a fibre composite's
   finite-strain law with the 2D FFT RVE oracle on a local process pool,
   results in a SQLite run store under ``runs/``, ending with a GP surrogate
   registered in MLflow (``mlflow.db`` in the working directory, or
   ``$MLFLOW_TRACKING_URI``).
2. FE² of a plate with a hole made of that composite, with the adaptive switch:
   the registered surrogate (loaded back from ``models:/name/version``) answers
   where it is sure, the same RVE oracle where it is not.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FE2_CONFIG = ROOT / "experiments" / "configs" / "fe2_plate_hole.toml"


def register(subparsers, name: str = "demo") -> None:
    p = subparsers.add_parser(name, help="run the end-to-end demo at a small size")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-fe2", action="store_true", help="stop after the campaign")
    p.set_defaults(func=run)


def _experiment_a():
    path = ROOT / "experiments" / "a_rve_active_learning.py"
    spec = importlib.util.spec_from_file_location("experiment_a", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _latest_version(tracking_uri: str, name: str) -> str | None:
    from mlflow import MlflowClient

    versions = MlflowClient(tracking_uri=tracking_uri).search_model_versions(f"name='{name}'")
    return max((v.version for v in versions), key=int, default=None)


def fe2_config_for(camp, model_uri: str, out_dir: Path):
    """The FE² plate-with-hole experiment, on the campaign's own RVE and surrogate."""
    from loops.fe2.config import parse_config

    data = tomllib.loads(FE2_CONFIG.read_text())
    oracle = camp.config.oracle.model_dump() if hasattr(camp.config.oracle, "model_dump") else {}
    grid = oracle.get("grid")
    if grid:  # the oracle the surrogate was trained on
        data["material"]["rve"]["grid"] = [int(grid)] * 2
    data["material"]["surrogate"] = {"uri": model_uri}
    data["output_dir"] = str(out_dir)
    data["load"]["n_steps"] = 4
    return parse_config(data, str(FE2_CONFIG))


def run(args: argparse.Namespace) -> int:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    mod = _experiment_a()
    argv = ["--smoke"] + (["--run-dir", args.run_dir] if args.run_dir else []) + (
        ["--no-progress"] if args.no_progress else [])
    camp = mod.main(argv)
    print()
    print(f"campaign status:  scalebridge status {camp.run_dir}")
    name = camp.store.get_meta("registered_model_name")
    if not args.no_fe2:
        version = _latest_version(uri, name) if name else None
        if version is None:
            print("no registered surrogate (MLflow unreachable?): FE² step skipped")
        else:
            from loops.fe2.run import run_fe2

            model_uri = f"models:/{name}/{version}"
            print(f"\nFE² of a plate with a hole, adaptive switch on {model_uri} ...")
            fe2 = run_fe2(fe2_config_for(camp, model_uri, Path(camp.run_dir) / "fe2"))
            s = fe2.summary
            print(f"FE² done: {s['n_gauss']} Gauss points, {s['n_surrogate_evaluations']} surrogate "
                  f"and {s['n_oracle_evaluations']} oracle evaluations "
                  f"(surrogate fraction {s['surrogate_fraction']:.3f}); outputs in {fe2.out_dir}")
    print(f"look at it:       mlflow ui --backend-store-uri {uri}")
    print("                  then open http://127.0.0.1:5000")
    return 0
