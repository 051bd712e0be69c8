"""FE² benchmark: full FE², surrogate-only, adaptive switch and single-scale FE.

All four run in one process on the same mesh (quarter plate with a hole,
Q1 elements) and the same displacement-controlled load path, with the macro
Newton tolerance the same for all. The micro scale is the fibre composite of
``experiments/configs/fe2_plate_hole.toml`` (the campaign experiment's: a
stiff Neo-Hookean fibre in a soft Neo-Hookean matrix) on a 63 x 63 FFT grid
(``--grid``; full FE² then takes minutes, as the issue asks; at 15 x 15 one
RVE solve is dominated by fixed per-call costs, as ``results/fe2_grid15.json``
records); the oracle is evaluated on a process pool of ``--workers``
workers, chunked over Gauss points.

The surrogate is the campaign's GP (:class:`surrogates.gp.GPSurrogate`, ARD
Matérn-5/2, noise-free answers) trained here on RVE answers at a Sobol design of ``H = F - I`` in
``[-h_max, h_max]^4``, with ``h_max`` below the strains reached at the hole,
so the surrogate alone extrapolates there. Its training is reported but not
counted in the FE² times (it is the deployed surrogate). The adaptive run
derives its variance tolerance from a 0.5 % target on the reaction force
(see ``loops.fe2.switch``) and learns on the fly; its time includes the
derivation (a surrogate-only solve), every oracle call and every update.
The surrogate-only, single-scale and adaptive times are each the best of
``--repeats`` runs (the trained GP is not changed by a run, and the oracle
keeps no answers between runs); the adaptive run's every time is recorded,
the first (cold) one included.

Errors are against full FE² at the final load step:
  reaction: ``|R - R_ref| / |R_ref|``;
  stress: ``max_g |P_g - P_ref,g|_F / max_g |P_ref,g|_F``.
The single-scale law is Neo-Hookean with the RVE's small-strain moduli.

    python experiments/benchmarks/fe2.py            # -> experiments/benchmarks/results/fe2.json (+ PNGs)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
#: which results chose defaults and which only report them
SPLIT = ("report only: the adaptive tolerance is derived from the reaction target in each run "
         "(tolerance_for_reaction); no library default was chosen on this problem")
sys.path.insert(0, str(ROOT))

from loops.fe2.config import load_config  # noqa: E402
from loops.fe2.providers import NeoHookean, OracleProvider, sobol_gradients  # noqa: E402
from loops.fe2.run import build_rve, make_solver, train_learner  # noqa: E402
from loops.fe2.switch import AdaptiveSwitch, tolerance_for_reaction  # noqa: E402


def _worker_init():
    torch.set_num_threads(1)


def errors(res, ref, boundary="right", comp=0):
    R, R0 = res.final.reactions[boundary][comp], ref.final.reactions[boundary][comp]
    dP = np.linalg.norm((res.final.P - ref.final.P).reshape(-1, 4), axis=1)
    P0 = np.linalg.norm(ref.final.P.reshape(-1, 4), axis=1)
    curve = np.abs(res.reaction(boundary, comp) - ref.reaction(boundary, comp)) / np.abs(
        ref.reaction(boundary, comp)
    )
    return {
        "reaction_rel_error": float(abs(R - R0) / abs(R0)),
        "reaction_rel_error_max_over_steps": float(curve.max()),
        "stress_max_rel_error": float(dP.max() / P0.max()),
        "stress_rms_rel_error": float(np.sqrt(np.mean(dP**2)) / np.sqrt(np.mean(P0**2))),
    }


def timed(fn, repeats=1, times=None):
    """Best wall time of ``repeats`` runs of ``fn`` and the last run's result;
    every run's time is appended to ``times`` when given (the first is cold)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        if times is not None:
            times.append(dt)
    return best, out


def adaptive_record(t_full: float, times: list[float], sw, n_provider: int, errors: dict) -> dict:
    """The adaptive run's entry: best of its repeats (the same statistic as the
    surrogate-only and analytic runs), every repeat's time, its calls and errors."""
    t_ad = min(times)
    return {
        "wall_time_s": t_ad,
        "speedup_vs_full": t_full / t_ad,
        "wall_times_s": times,
        "speedup_vs_full_first_run": t_full / times[0],
        "oracle_evaluations": int(sw.n_oracle),
        "surrogate_evaluations": int(sw.n_surrogate),
        "surrogate_fraction": sw.n_surrogate / max(sw.n_surrogate + sw.n_oracle, 1),
        "oracle_evaluations_counted_by_provider": n_provider,
        "per_step": [
            {k: r[k] for k in ("load_factor", "n_oracle", "n_surrogate", "n_learned", "accepted")}
            for r in sw.step_log
        ],
        **errors,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "experiments/configs/fe2_plate_hole.toml"))
    ap.add_argument(
        "--grid", type=int, default=63, help="RVE grid (coarse keeps full FE² to minutes)"
    )
    ap.add_argument("--n-theta", type=int, default=4)
    ap.add_argument("--n-radial", type=int, default=4)
    ap.add_argument("--stretch", type=float, default=0.05)
    ap.add_argument("--n-steps", type=int, default=5)
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--train-points", type=int, default=48)
    ap.add_argument("--h-max", type=float, default=0.03)
    ap.add_argument(
        "--target", type=float, default=0.005, help="target relative reaction error of the switch"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--repeats", type=int, default=3, help="repeats of the fast runs (best time kept)"
    )
    ap.add_argument("--out", default=str(ROOT / "experiments/benchmarks/results/fe2.json"))
    # the 3D case (main_3d)
    ap.add_argument("--dim", type=int, choices=(2, 3), default=2, help="3: run the 3D case instead")
    ap.add_argument("--grid3d", type=int, default=9, help="3D RVE grid (N^3)")
    ap.add_argument("--box-n", type=int, nargs=3, default=[2, 1, 1], help="3D macro hexahedra")
    ap.add_argument("--stretch3d", type=float, default=0.04)
    ap.add_argument("--n-steps3d", type=int, default=2)
    ap.add_argument("--train3d", type=int, default=64)
    ap.add_argument("--h-max3d", type=float, default=0.03)
    ap.add_argument("--out3d", default=str(ROOT / "experiments/benchmarks/results/fe2_3d.json"))
    args = ap.parse_args(argv)
    if args.dim == 3:
        torch.set_num_threads(1)
        return main_3d(args)
    torch.set_num_threads(1)

    cfg = load_config(args.config)
    data = cfg.model_dump(mode="json")
    data["mesh"].update(n_theta=args.n_theta, n_radial=args.n_radial)
    for d in data["dirichlet"]:
        if d["boundary"] == "right" and d["component"] == 0:
            d["value"] = args.stretch
    data["material"]["rve"]["grid"] = [args.grid, args.grid]
    cfg = type(cfg).model_validate(data)
    kw = dict(n_steps=args.n_steps, rtol=args.rtol, max_iter=25)

    rve = build_rve(cfg)
    ctx = mp.get_context("forkserver")
    with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=_worker_init) as ex:
        oracle = OracleProvider(rve, executor=ex)
        # warm the pool (worker start-up is not FE² work)
        oracle.material_response(sobol_gradients(2 * args.workers, 0.01, seed=7))
        oracle.n_evaluations, oracle.eval_time = 0, 0.0

        # the deployed surrogate: GP on RVE answers inside |H| <= h_max
        t0 = time.perf_counter()
        gp = train_learner(oracle, args.train_points, args.h_max, seed=0)
        train_time = time.perf_counter() - t0
        oracle.n_evaluations, oracle.eval_time = 0, 0.0

        # single-scale law with the RVE's small-strain moduli
        A0 = rve.material_response(torch.eye(2, dtype=torch.float64)[None]).tangent[0]
        mu_eff = float(0.5 * (A0[0, 1, 0, 1] + A0[1, 0, 1, 0]))
        lam_eff = float(A0[0, 0, 1, 1])
        law = NeoHookean(mu=mu_eff, lam=lam_eff)

        # 1. full FE² (reference)
        t_full, full = timed(lambda: make_solver(cfg, oracle).solve(**kw))
        n_full = oracle.n_evaluations
        print(f"full FE2: {t_full:.1f} s, {n_full} RVE evaluations", flush=True)

        # 2. surrogate-only
        t_sur, sur = timed(lambda: make_solver(cfg, gp).solve(**kw), args.repeats)
        # 4. single-scale analytic
        t_ana, ana = timed(lambda: make_solver(cfg, law).solve(**kw), args.repeats)

        # 3. adaptive: tolerance from the reaction target, on-the-fly learning
        def adaptive():
            model = gp  # conditioning returns new models: the trained GP is not changed
            s = make_solver(cfg, model)
            pre = s.solve(**kw)
            A = model.material_response(torch.as_tensor(pre.final.F)).tangent.numpy()
            infl = s.reaction_influence(pre.final.u, A, "right", 0)
            tol = tolerance_for_reaction(infl, pre.final.reactions["right"][0], args.target)
            sw = AdaptiveSwitch(model, oracle, tol, learn=True, max_learn=32)
            return make_solver(cfg, sw).solve(**kw), sw, tol

        oracle.n_evaluations = 0
        ad_times = []
        t_ad, (ad, sw, tol) = timed(adaptive, args.repeats, ad_times)
        n_ad_oracle = oracle.n_evaluations // args.repeats
        print(
            f"adaptive: {t_ad:.2f} s, {sw.n_oracle} oracle / {sw.n_surrogate} surrogate", flush=True
        )

    n_g = full.n_gauss
    H_final = np.linalg.norm((full.final.F - np.eye(2)).reshape(-1, 4), axis=1)
    e_sur, e_ad, e_ana = errors(sur, full), errors(ad, full), errors(ana, full)
    result = {
        "benchmark": "fe2",
        "split": SPLIT,
        "command": "python experiments/benchmarks/fe2.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "setup": {
            "mesh": f"quarter plate with hole, Q1, n_theta={args.n_theta}, n_radial={args.n_radial}",
            "n_gauss": n_g,
            "n_steps": args.n_steps,
            "stretch": args.stretch,
            "macro_rtol": args.rtol,
            "rve": f"fibre composite {cfg.material.rve.microstructure}, grid {args.grid}x{args.grid}, "
            f"phases (E, nu) {[(p.E, p.nu) for p in cfg.material.rve.phases]}",
            "workers": args.workers,
            "surrogate": f"GPSurrogate on {args.train_points} RVE answers, |H_ij| <= {args.h_max}",
            "surrogate_train_time_s": train_time,
            "max_H_norm_at_final_step": float(H_final.max()),
            "fraction_of_gauss_points_outside_training_box": float(
                np.mean(np.abs(full.final.F - np.eye(2)).reshape(-1, 4).max(1) > args.h_max)
            ),
            "analytic_law": {"mu": mu_eff, "lam": lam_eff},
            "adaptive_target_rel_reaction_error": args.target,
            "adaptive_variance_tolerance": tol,
        },
        "full_fe2": {
            "wall_time_s": t_full,
            "oracle_evaluations": n_full,
            "material_calls": full.n_material_calls,
            "final_reaction": float(full.final.reactions["right"][0]),
        },
        "surrogate_only": {"wall_time_s": t_sur, "speedup_vs_full": t_full / t_sur, **e_sur},
        "adaptive": adaptive_record(t_full, ad_times, sw, n_ad_oracle, e_ad),
        "single_scale_analytic": {"wall_time_s": t_ana, "speedup_vs_full": t_full / t_ana, **e_ana},
        "surrogate_vs_analytic_time_ratio": t_sur / t_ana,
    }
    result["meets_target"] = {
        "surrogate_only_1000x": result["surrogate_only"]["speedup_vs_full"] >= 1000,
        "adaptive_100x": result["adaptive"]["speedup_vs_full"] >= 100,
        "adaptive_reaction_error_0.5pct": e_ad["reaction_rel_error"] <= 0.005,
        "adaptive_max_stress_error_2pct": e_ad["stress_max_rel_error"] <= 0.02,
        "surrogate_within_3x_of_analytic": result["surrogate_vs_analytic_time_ratio"] <= 3,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    try:
        from loops.fe2 import plots

        stem = out.with_suffix("")
        s = make_solver(cfg, law)
        disp = full.load_factors * args.stretch
        curves = {
            "full FE²": (disp, full.reaction("right", 0)),
            "surrogate only": (disp, sur.reaction("right", 0)),
            "adaptive": (disp, ad.reaction("right", 0)),
            "single scale (Neo-Hookean)": (disp, ana.reaction("right", 0)),
        }
        plots.force_displacement_plot(
            curves, f"{stem}_force_displacement.png", xlabel="u_x on the right edge"
        )
        plots.oracle_map_plot(s, sw.oracle_calls, sw.surrogate_calls, f"{stem}_oracle_map.png")
        plots.deformed_stress_plot(
            s, ad.final, f"{stem}_deformed_stress.png", title="adaptive FE², final step"
        )
    except Exception as e:  # noqa: BLE001  (the JSON is the result; plots are extras)
        print(f"plots failed: {e}", file=sys.stderr)
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("surrogate_only", "adaptive", "single_scale_analytic", "meets_target")
            },
            indent=1,
            default=str,
        )
    )
    return 0


def errors3d(res, ref, boundary="right", comp=0):
    """Reaction and stress errors of a 3D run against the full FE² reference (final step)."""
    R, R0 = res.final.reactions[boundary][comp], ref.final.reactions[boundary][comp]
    dP = np.linalg.norm((res.final.P - ref.final.P).reshape(len(ref.final.P), -1), axis=1)
    P0 = np.linalg.norm(ref.final.P.reshape(len(ref.final.P), -1), axis=1)
    return {
        "reaction_rel_error": float(abs(R - R0) / abs(R0)),
        "stress_max_rel_error": float(dP.max() / P0.max()),
        "stress_rms_rel_error": float(np.sqrt(np.mean(dP**2)) / np.sqrt(np.mean(P0**2))),
    }


def main_3d(args) -> int:
    """The 3D case: a clamped bar of hexahedra (``--box-n``), a 3D RVE (sphere of stiff
    Neo-Hookean phase in a soft one on a ``--grid3d``^3 grid); full FE² vs surrogate-only
    vs adaptive vs single-scale FE with the RVE's small-strain moduli. Writes ``--out3d``."""
    from loops.fe2.mesh import box
    from loops.fe2.solver import DirichletBC, MacroSolver
    from oracles.rve.laws import NeoHookean as PhaseNH
    from oracles.rve.microstructure import Inclusion
    from oracles.rve.oracle import RVEOracle
    from surrogates.dataset import Dataset
    from surrogates.gp import GPSurrogate

    g = args.grid3d
    rve = RVEOracle(
        [PhaseNH(E=1.0, nu=0.35), PhaseNH(E=10.0, nu=0.25)],
        Inclusion(radius_fraction=0.3),
        grid=(g, g, g),
        newton_tol=1e-8,
        cg_tol=1e-8,
    )
    nx, ny, nz = args.box_n
    mesh = box((2.0, 1.0, 1.0), (nx, ny, nz), "hex1")
    bcs = [DirichletBC("left", c) for c in range(3)] + [DirichletBC("right", 0, args.stretch3d)]

    def solver(material):
        return MacroSolver(mesh, material, bcs, element="hex1")

    kw = dict(n_steps=args.n_steps3d, rtol=args.rtol, max_iter=25)
    eye = np.eye(3)
    ctx = mp.get_context("forkserver")
    with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=_worker_init) as ex:
        oracle = OracleProvider(rve, executor=ex)
        oracle.material_response(sobol_gradients(2 * args.workers, 0.01, seed=7, k=3))
        oracle.n_evaluations, oracle.eval_time = 0, 0.0
        t0 = time.perf_counter()
        F = sobol_gradients(args.train3d, args.h_max3d, seed=0, k=3)
        P = oracle.material_response(F).P.reshape(-1, 9)
        H = (F - torch.eye(3, dtype=torch.float64)).reshape(-1, 9)
        gp = GPSurrogate.from_dataset(Dataset(X=H, Y=P, Yvar=torch.zeros_like(P)), seed=0)
        train_time = time.perf_counter() - t0
        oracle.n_evaluations, oracle.eval_time = 0, 0.0
        A0 = rve.material_response(torch.eye(3, dtype=torch.float64)[None]).tangent[0]
        mu_eff = float((A0[0, 1, 0, 1] + A0[1, 2, 1, 2] + A0[0, 2, 0, 2]) / 3)
        lam_eff = float((A0[0, 0, 1, 1] + A0[1, 1, 2, 2] + A0[0, 0, 2, 2]) / 3)
        law = NeoHookean(mu=mu_eff, lam=lam_eff)

        t_full, full = timed(lambda: solver(oracle).solve(**kw))
        n_full = oracle.n_evaluations
        print(f"3D full FE2: {t_full:.1f} s, {n_full} RVE evaluations", flush=True)
        t_sur, sur = timed(lambda: solver(gp).solve(**kw), args.repeats)
        t_ana, ana = timed(lambda: solver(law).solve(**kw), args.repeats)

        def adaptive():
            s = solver(gp)
            pre = s.solve(**kw)
            A = gp.material_response(torch.as_tensor(pre.final.F)).tangent.numpy()
            infl = s.reaction_influence(pre.final.u, A, "right", 0)
            tol = tolerance_for_reaction(infl, pre.final.reactions["right"][0], args.target)
            sw = AdaptiveSwitch(gp, oracle, tol, learn=True, max_learn=32)
            return solver(sw).solve(**kw), sw, tol

        oracle.n_evaluations = 0
        ad_times = []
        t_ad, (ad, sw, tol) = timed(adaptive, args.repeats, ad_times)
        n_ad_oracle = oracle.n_evaluations // args.repeats
        print(f"3D adaptive: {t_ad:.2f} s, {sw.n_oracle} oracle / {sw.n_surrogate} surrogate", flush=True)

    e_sur, e_ad, e_ana = errors3d(sur, full), errors3d(ad, full), errors3d(ana, full)
    H_final = np.abs(full.final.F - eye).reshape(len(full.final.F), -1).max(1)
    result = {
        "benchmark": "fe2_3d",
        "split": SPLIT,
        "command": "python experiments/benchmarks/fe2.py --dim 3 "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k.endswith("3d") or k in ("box_n", "repeats", "workers", "rtol", "target")
        ),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "load_average": os.getloadavg(),
        "setup": {
            "mesh": f"box 2 x 1 x 1, hex1 {nx} x {ny} x {nz}",
            "n_gauss": full.n_gauss,
            "n_steps": args.n_steps3d,
            "stretch": args.stretch3d,
            "macro_rtol": args.rtol,
            "rve": f"sphere (radius fraction 0.3) E = 10 / nu = 0.25 in E = 1 / nu = 0.35, grid {g}^3",
            "workers": args.workers,
            "surrogate": f"GPSurrogate 9 -> 9 on {args.train3d} RVE answers, |H_ij| <= {args.h_max3d}",
            "surrogate_train_time_s": train_time,
            "max_abs_H_at_final_step": float(H_final.max()),
            "fraction_of_gauss_points_outside_training_box": float(np.mean(H_final > args.h_max3d)),
            "analytic_law": {"mu": mu_eff, "lam": lam_eff},
            "adaptive_target_rel_reaction_error": args.target,
            "adaptive_variance_tolerance": tol,
        },
        "full_fe2": {
            "wall_time_s": t_full,
            "oracle_evaluations": n_full,
            "material_calls": full.n_material_calls,
            "final_reaction": float(full.final.reactions["right"][0]),
        },
        "surrogate_only": {"wall_time_s": t_sur, "speedup_vs_full": t_full / t_sur, **e_sur},
        "adaptive": adaptive_record(t_full, ad_times, sw, n_ad_oracle, e_ad),
        "single_scale_analytic": {"wall_time_s": t_ana, "speedup_vs_full": t_full / t_ana, **e_ana},
        "surrogate_vs_analytic_time_ratio": t_sur / t_ana,
    }
    targets = {
        "surrogate_only_1000x": result["surrogate_only"]["speedup_vs_full"] >= 1000,
        "adaptive_100x": result["adaptive"]["speedup_vs_full"] >= 100,
        "adaptive_reaction_error_0.5pct": e_ad["reaction_rel_error"] <= 0.005,
        "adaptive_max_stress_error_2pct": e_ad["stress_max_rel_error"] <= 0.02,
        "surrogate_within_3x_of_analytic": result["surrogate_vs_analytic_time_ratio"] <= 3,
    }
    result["targets"] = targets
    result["meets_target"] = all(targets.values())
    out = Path(args.out3d)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("surrogate_only", "adaptive", "targets")}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
