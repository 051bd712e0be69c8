"""``scalebridge fe2 CONFIG``: run a two-scale simulation from a TOML file."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path


def register(subparsers, name: str = "fe2") -> None:
    p = subparsers.add_parser(
        name,
        help="two-scale FE with a surrogate, the oracle or the adaptive switch",
        description=(
            "Quasi-static finite-strain FE (plane strain or 3D) whose Gauss points ask an analytic law, "
            "the RVE oracle, a deployed surrogate or the adaptive surrogate-or-oracle switch "
            "for stress and tangent. Writes config.json, summary.json, results.npz and PNGs to a "
            "new run directory <output_dir>/<name>-<time> and tracks the run in MLflow. An "
            "[uncertainty] section adds the propagated distribution of the reaction force, "
            "maximum stress and displacements at points with its aleatory/epistemic split (uncertainty.json, uq_*.png)."
        ),
    )
    p.add_argument("config", help="TOML config (see experiments/configs/fe2_*.toml)")
    p.add_argument(
        "--output-dir",
        help="parent of the run directory (overrides output_dir of the config; default runs/fe2)",
    )
    p.add_argument(
        "--provider",
        choices=["analytic", "oracle", "surrogate", "adaptive"],
        help="override material.provider",
    )
    p.add_argument(
        "--no-mlflow",
        action="store_true",
        help="do not track in MLflow (no tracking store is touched)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-step progress lines")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from loops.fe2.config import ConfigError, load_config, parse_config

    if Path(args.config).is_dir():
        print(f"{args.config}: is a directory, not a TOML config", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config)
        if args.output_dir or args.provider or args.no_mlflow:
            data = cfg.model_dump(mode="json")
            if args.output_dir:
                data["output_dir"] = args.output_dir
            if args.provider:
                data["material"]["provider"] = args.provider
            if args.no_mlflow:
                data["tracking"]["enabled"] = False
            cfg = parse_config(data, args.config)
    except ConfigError as e:
        for line in e.lines:
            print(line, file=sys.stderr)
        return 2
    out = cfg.out_dir
    # the first existing path on the way must be a directory: a file there would fail after the training
    for up in (out, *out.parents):
        if up.exists():
            if not up.is_dir():
                where = "--output-dir" if args.output_dir else f"{args.config}: output_dir"
                print(f"fe2: NotADirectoryError: {where} {str(out)!r} cannot be made: {str(up)!r} is a file, "
                      "not a directory", file=sys.stderr)
                return 2  # a bad setting, found before any work, as a bad config is
            break

    from loops.fe2.run import run_fe2
    from oracles.exceptions import OracleError

    def progress(step) -> None:
        if not args.quiet:
            info = step.provider
            extra = (
                f"  oracle {info['n_oracle']} surrogate {info['n_surrogate']}"
                if "n_oracle" in info
                else ""
            )
            print(
                f"load {step.load_factor:7.4f}  newton {step.iterations:2d}  "
                f"time {step.wall_time:7.2f}s{extra}",
                file=sys.stderr,
            )

    from loops.notices import library_notices_to_debug

    def stop(signum, frame):  # SIGTERM ends the run like Ctrl-C: its run directory keeps the converged steps
        raise SystemExit(128 + signum)

    old_term = signal.signal(signal.SIGTERM, stop)
    try:
        with library_notices_to_debug():
            run = run_fe2(cfg, progress=progress)
    # RuntimeError: an executor that could not start (an unreachable Dask scheduler);
    # OSError: an output directory that cannot be made (a file in its place, no permission)
    except (OracleError, ValueError, TypeError, RuntimeError, OSError) as e:
        where = getattr(e, "fe2_run_dir", None)
        kept = ""
        if where is not None:
            steps = Path(where) / "steps.jsonl"
            kept = (f" (converged steps in {steps})" if steps.is_file()
                    else f" (no load step completed; config and failure in {where})")
        print(f"fe2: {type(e).__name__}: {e}{kept}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, old_term)
    s = run.summary
    print(
        json.dumps(
            {
                "output_dir": str(run.out_dir),
                "wall_time": s["wall_time"],
                "final_reaction": s["steps"][-1]["reaction"],
                "n_oracle_evaluations": s["n_oracle_evaluations"],
                "n_surrogate_evaluations": s["n_surrogate_evaluations"],
                "surrogate_fraction": s["surrogate_fraction"],
                "mlflow_run_id": s.get("mlflow_run_id"),
            }
        )
    )
    return 0
