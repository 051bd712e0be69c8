"""``scalebridge demo``: the whole chain at a small size on the embedded defaults.

1. Campaign (a) (smoke size): active learning of a fibre composite's
   finite-strain law with the 2D FFT RVE oracle on a local process pool,
   results in a SQLite run store under ``runs/``, ending with a GP surrogate
   registered in MLflow (``mlflow.db`` in the working directory, or
   ``$MLFLOW_TRACKING_URI``).
2. FE² of a plate with a hole made of that composite, with the adaptive switch:
   the registered surrogate (loaded back from ``models:/name/version``) answers
   where it is sure and learns on the fly, the same RVE oracle where it is not;
   then the same problem with the oracle everywhere, and the adaptive run's
   surrogate fraction and reaction-force error against it.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from importlib.resources import as_file, files
from pathlib import Path

# The demo's configs ship inside the package (``loops/demo_data/``, package data in
# pyproject.toml), so that the demo runs from a wheel, where ``experiments/`` is absent.
# They are copies of ``experiments/configs/{a_rve_active_learning,fe2_plate_hole}.toml``
# (tests/loops/test_packaging.py checks that they stay the same).
DEMO_DATA = files("loops") / "demo_data"
CAMPAIGN_CONFIG = DEMO_DATA / "a_rve_active_learning.toml"
FE2_CONFIG = DEMO_DATA / "fe2_plate_hole.toml"

#: the smoke size of experiment (a), which the demo runs (``experiments/a_rve_active_learning.py --smoke``)
SMOKE_A = {
    "oracle": {"grid": 11},
    "budget": {"calls": 16, "wall_time": 300},
    "initial": {"n": 8},
    "learn": {"n_validation": 16},
    "acquisition": {"mc_points": 128, "num_restarts": 2, "raw_samples": 64},
}


def register(subparsers, name: str = "demo") -> None:
    p = subparsers.add_parser(name, help="run the end-to-end demo at a small size")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-fe2", action="store_true", help="stop after the campaign")
    p.set_defaults(func=run)


def check_material_model(camp) -> None:
    """Compare the final surrogate's stress with the oracle at random F (experiment (a)'s check)."""
    import torch

    model = getattr(camp, "final_model", None)
    if model is None or not hasattr(model, "material_response"):
        print("no material-model surrogate was produced")
        return
    g = torch.Generator().manual_seed(123)
    lo, hi = camp.oracle.bounds
    H = lo + (hi - lo) * torch.rand(8, 4, generator=g, dtype=torch.float64)
    F = torch.eye(2, dtype=torch.float64) + H.reshape(8, 2, 2)
    resp = model.material_response(F)
    P_true = camp.oracle.evaluate(H).Y.reshape(8, 2, 2)
    err = (resp.P - P_true).norm(dim=(1, 2)) / P_true.norm(dim=(1, 2))
    print(f"surrogate material_response: median relative stress error {err.median():.3g} "
          f"at 8 fresh F; tangent shape {tuple(resp.tangent.shape)}")
    name = camp.store.get_meta("registered_model_name")
    if name:
        # the version this run registered (the latest under the name can be another run's)
        version = camp.store.get_meta("registered_model_version") or "latest"
        print(f"registered model: models:/{name}/{version} (load with surrogates.mlflow_flavor.load_model)")


def _campaign_a(argv: list[str]):
    """Experiment (a) at its smoke size, on the packaged copy of its config."""
    from loops.experiment import experiment_parser, run_experiment

    args = experiment_parser("scalebridge demo").parse_args(argv)
    with as_file(CAMPAIGN_CONFIG) as path:
        camp = run_experiment(path, SMOKE_A, args)
    check_material_model(camp)
    return camp


def fe2_config_for(camp, model_uri: str, out_dir: Path, provider: str = "adaptive"):
    """The FE² plate-with-hole experiment, on the campaign's own RVE and surrogate
    (``provider="oracle"``: the same problem with the RVE at every Gauss point)."""
    from loops.fe2.config import parse_config

    data = tomllib.loads(FE2_CONFIG.read_text(encoding="utf-8"))
    oracle = camp.config.oracle.model_dump() if hasattr(camp.config.oracle, "model_dump") else {}
    grid = oracle.get("grid")
    if grid:  # the oracle the surrogate was trained on
        data["material"]["rve"]["grid"] = [int(grid)] * 2
    data["material"]["surrogate"] = {"uri": model_uri}
    data["material"]["provider"] = provider
    data["output_dir"] = str(out_dir)
    data["load"]["n_steps"] = 4
    return parse_config(data, "fe2_plate_hole.toml (scalebridge demo)")


def fe2_comparison(adaptive: dict, oracle: dict) -> str:
    """One line: the adaptive run's surrogate fraction and its reaction-force
    error against the oracle-only run (final load step and worst step), from
    the two runs' summaries."""
    R = [st["reaction"] for st in adaptive["steps"]]
    R0 = [st["reaction"] for st in oracle["steps"]]
    if len(R) != len(R0):
        return f"reaction comparison skipped: {len(R)} adaptive and {len(R0)} oracle load steps"
    errs = [abs(a - b) / abs(b) for a, b in zip(R, R0, strict=True) if b != 0]
    return (f"adaptive vs oracle-only FE²: surrogate fraction {adaptive['surrogate_fraction']:.3f}, "
            f"reaction force {R[-1]:.6g} vs {R0[-1]:.6g}: relative error {abs(R[-1] - R0[-1]) / abs(R0[-1]):.2e} "
            f"at the final step, {max(errs):.2e} at the worst step; "
            f"{oracle['n_oracle_evaluations']} RVE evaluations for the reference, "
            f"{adaptive['n_oracle_evaluations']} for the adaptive run")


def run(args: argparse.Namespace) -> int:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    argv = ["--smoke"] + (["--run-dir", args.run_dir] if args.run_dir else []) + (
        ["--no-progress"] if args.no_progress else [])
    camp = _campaign_a(argv)
    print()
    print(f"campaign status:  scalebridge status {camp.run_dir}")
    name = camp.store.get_meta("registered_model_name")
    if not args.no_fe2:
        # the version this campaign registered (the newest under the name could be another run's)
        version = camp.store.get_meta("registered_model_version") if name else None
        if version is None:
            print("no registered surrogate (MLflow unreachable?): FE² step skipped")
        else:
            from loops.fe2.run import run_fe2
            from loops.notices import library_notices_to_debug

            model_uri = f"models:/{name}/{version}"
            print(f"\nFE² of a plate with a hole, adaptive switch on {model_uri} ...")
            with library_notices_to_debug():  # as `scalebridge fe2`
                fe2 = run_fe2(fe2_config_for(camp, model_uri, Path(camp.run_dir) / "fe2"))
            s = fe2.summary
            print(f"FE² done: {s['n_gauss']} Gauss points, {s['n_surrogate_evaluations']} surrogate "
                  f"and {s['n_oracle_evaluations']} oracle evaluations "
                  f"(surrogate fraction {s['surrogate_fraction']:.3f}); outputs in {fe2.out_dir}")
            print("the same FE² problem with the RVE oracle at every Gauss point (reference) ...")
            with library_notices_to_debug():
                ref = run_fe2(fe2_config_for(camp, model_uri, Path(camp.run_dir) / "fe2_oracle", "oracle"))
            print(fe2_comparison(s, ref.summary))
    if uri.startswith(("http://", "https://")):
        print(f"look at it:       open {uri} in a browser (the tracking server's UI)")
    else:
        print(f"look at it:       mlflow ui --backend-store-uri {uri}")
    print("                  then open http://127.0.0.1:5000")
    return 0
