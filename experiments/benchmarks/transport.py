"""Transport solvers: effective conductivity and Darcy permeability against
closed forms, with wall time, iterations, time per iteration against one FFT
pair of the unknown field, and peak memory above the imports.

    python experiments/benchmarks/transport.py [--quick] [--only NAME ...]

Cases (images made by :mod:`oracles.transport.porous`, one process per case
so that peak memory is the case's own):

* conductivity, 2D square array of cylinders (fraction 0.4, contrast 10)
  against Perrins et al. (1979); 3D the same array extruded along z: ``K_xx``
  against Perrins, ``K_zz`` against the exact arithmetic mean;
* permeability, 2D square array of cylinders (solid fraction 0.1) across,
  against Drummond and Tahir (1984); 3D simple cubic spheres (solid fraction
  0.216) against Zick and Homsy (1982).

The stated discretization errors are the tolerances of the unit tests
(``tests/oracles/transport``), fixed before this benchmark ran; no solver
option is tuned on these cases (they are all held-out test cases).

PuMA (NASA's ``pumapy``) is the peer of the issue. It is not installable from
PyPI here: the name ``pumapy`` on PyPI is an unrelated package. The JSON
records that, and the PuMA targets as not measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).parent / "results" / "transport.json"

PUMA = {
    "available": False,
    "tried": ".venv/bin/pip install -c constraints.txt pumapy",
    "error": (
        "pip installs pumapy 6.0.0, 'Puma - Programmable Utility for Mobile Automation' of the "
        "Netherlands Forensic Institute (requires appium-python-client, selenium, pytesseract), "
        "not NASA's PuMA; `import pumapy` then fails with ModuleNotFoundError. NASA's PuMA is "
        "distributed through conda and its own repository, which this machine cannot reach. "
        "The package was uninstalled again and the downgrades it made (Pillow, requests, urllib3, "
        "setuptools) reverted."
    ),
}

#: name -> (kind, dim, n, stated relative discretization error)
CASES = {
    "cond2d_128": ("conductivity", 2, 128, 0.01),
    "cond2d_256": ("conductivity", 2, 256, 0.01),
    "cond2d_512": ("conductivity", 2, 512, 0.01),
    "cond3d_50": ("conductivity", 3, 50, 0.01),
    "cond3d_100": ("conductivity", 3, 100, 0.01),
    "cond3d_200": ("conductivity", 3, 200, 0.01),
    "perm2d_64": ("permeability", 2, 64, 0.03),
    "perm2d_128": ("permeability", 2, 128, 0.03),
    "perm2d_256": ("permeability", 2, 256, 0.03),
    "perm3d_32": ("permeability", 3, 32, 0.06),
    "perm3d_64": ("permeability", 3, 64, 0.06),
    "perm3d_128": ("permeability", 3, 128, 0.06),
}
QUICK = ["cond2d_128", "cond3d_50", "perm2d_64", "perm3d_32"]

COND_F, COND_CONTRAST = 0.4, 10.0
PERM2D_C, PERM3D_C = 0.1, 0.216
TOL = 1e-6


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


#: solves shorter than this (s) are repeated ``SOLVE_REPEATS`` times and timed by the median
REPEAT_BELOW_S = 10.0
SOLVE_REPEATS = 5


def _timed_solves(solver, t0: float):
    """Solve once (cold: first call after the FFT plans), then, for a solve
    shorter than ``REPEAT_BELOW_S``, ``SOLVE_REPEATS - 1`` times more; the time per
    solve is the median, the statistic of the FFT pair it is compared with. Solve
    times are CPU seconds of this (one-thread) process, as the FFT pair's, so that
    other load on the machine does not enter their ratio.

    Returns ``(result, solve_s, all solve times, wall_s of image, set-up and first solve)``.
    """
    t1 = time.process_time()
    res = solver.solve()
    times = [time.process_time() - t1]
    wall = time.perf_counter() - t0
    if times[0] < REPEAT_BELOW_S:
        for _ in range(SOLVE_REPEATS - 1):
            t1 = time.process_time()
            solver.solve()
            times.append(time.process_time() - t1)
    return res, sorted(times)[len(times) // 2], times, wall


def run_case(name: str) -> dict:
    """One case in this process (called in a child process)."""
    import numpy as np
    import torch

    from oracles.transport import closed_forms as cf
    from oracles.transport.conductivity import ConductivitySolver
    from oracles.transport.permeability import StokesSolver
    from oracles.transport.porous import CylinderArray, SphereArray

    torch.set_num_threads(1)
    kind, dim, n, stated = CASES[name]
    base = _rss_mb()
    t0 = time.perf_counter()
    rec: dict = {"name": name, "kind": kind, "dim": dim, "grid": [n] * dim, "stated_error": stated}
    if kind == "conductivity":
        cyl = CylinderArray(radius_fraction=math.sqrt(COND_F / math.pi))
        pm = cyl.solid((n,) * dim).astype(np.int64)
        solver = ConductivitySolver(pm, [1.0, COND_CONTRAST], cg_tol=TOL)
        solver.fourier(torch.zeros(1, dim, *([n] * dim), dtype=torch.float64))  # FFT plans made
        res, solve, solve_times, wall = _timed_solves(solver, t0)
        f_vox = float(pm.mean())
        refs = {
            "K11 (Perrins 1979)": (
                res.tensor[0, 0].item(),
                cf.perrins_square_cylinders(1.0, COND_CONTRAST, COND_F),
            )
        }
        if dim == 3:
            refs["K33 (arithmetic mean, exact)"] = (
                res.tensor[2, 2].item(),
                1.0 + (COND_CONTRAST - 1.0) * f_vox,
            )
        fourier, unknown = (
            solver.fourier,
            (min(dim, solver.max_field_doubles // (dim * pm.size)), dim, *pm.shape),
        )
        rec["voxel_fraction"] = f_vox
    else:
        if dim == 2:
            geo = CylinderArray(radius_fraction=math.sqrt(PERM2D_C / math.pi))
            ref = cf.drummond_tahir_transverse(PERM2D_C) * geo.radius_fraction**2
            label = "k11 / L^2 (Drummond-Tahir 1984)"
        else:
            geo = SphereArray(radius_fraction=(3 * PERM3D_C / (4 * math.pi)) ** (1 / 3))
            ref = cf.sphere_array_permeability(PERM3D_C)
            label = "k11 / L^2 (Zick-Homsy 1982)"
        solid = geo.solid((n,) * dim)
        solver = StokesSolver(solid, 1.0 / n, tol=TOL)
        solver.fourier(torch.zeros(1, dim, *([n] * dim), dtype=torch.float64))  # FFT plans made
        res, solve, solve_times, wall = _timed_solves(solver, t0)
        refs = {label: (res.tensor[0, 0].item(), ref)}
        fourier, unknown = (
            solver.fourier,
            (min(dim, solver.max_field_doubles // (dim * solid.size)), dim, *solid.shape),
        )
        rec["asymmetry"] = res.asymmetry
        rec["porosity"] = res.porosity
    peak = _rss_mb() - base
    # one FFT pair (forward and inverse, with the multiplier) of the unknown field of one chunk
    x = torch.randn(*unknown, dtype=torch.float64)
    fourier(x)
    times = []
    for _ in range(5):
        t = time.process_time()
        fourier(x)
        times.append(time.process_time() - t)
    fft = sorted(times)[2]  # median of 5
    per_it = solve / max(1, res.iterations)
    rec.update(
        wall_s=wall,
        solve_s=solve,
        solve_times_s=solve_times,
        iterations=res.iterations,
        iterations_per_chunk=res.info.get("iterations_per_chunk"),
        s_per_iteration=per_it,
        fft_pair_s=fft,
        fft_pair_field_shape=list(unknown),
        iteration_over_fft_pair=per_it / fft,
        peak_rss_above_imports_mb=peak,
        comparisons={
            k: {"value": v, "reference": r, "rel_diff": abs(v / r - 1)}
            for k, (v, r) in refs.items()
        },
    )
    rec["meets_closed_form"] = all(c["rel_diff"] <= stated for c in rec["comparisons"].values())
    rec["meets_iteration_cost"] = rec["iteration_over_fft_pair"] <= 3.0
    return rec


def report_rows(cases: list[dict]) -> list[dict]:
    """Rows ``{case, target, measured, met}`` for ``experiments/benchmarks/report.py``."""
    rows = []
    for c in cases:
        if c.get("failed"):
            rows.append(
                {
                    "case": c["name"],
                    "target": "runs",
                    "measured": str(c.get("reason")),
                    "met": False,
                }
            )
            continue
        for label, cmp in c["comparisons"].items():
            rows.append(
                {
                    "case": f"{c['name']} {label}",
                    "target": f"rel. diff <= {c['stated_error']:g}",
                    "measured": round(cmp["rel_diff"], 5),
                    "met": cmp["rel_diff"] <= c["stated_error"],
                }
            )
        rows.append(
            {
                "case": f"{c['name']} time per iteration / FFT pair",
                "target": "<= 3",
                "measured": round(c["iteration_over_fft_pair"], 3),
                "met": c["meets_iteration_cost"],
            }
        )
        if c["dim"] == 3:
            rows.append(
                {
                    "case": f"{c['name']} wall vs PuMA",
                    "target": "<= 0.5",
                    "measured": f"not measured (PuMA not installable); ours {c['wall_s']:.3g} s",
                    "met": False,
                }
            )
    return rows


def main(argv=None) -> None:
    from report import OUT_HELP, quick_out  # the scripts' directory is on sys.path
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the smallest size of each kind only")
    p.add_argument("--only", nargs="+", default=None, help="case names")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=OUT_HELP)
    args = p.parse_args(argv)
    args.out = str(args.out or (quick_out("transport") if args.quick else OUT))
    if args.one:
        print(json.dumps(run_case(args.one)))
        return
    names = args.only or (QUICK if args.quick else list(CASES))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    results = []
    for name in names:
        load = os.getloadavg()
        r = subprocess.run(
            [sys.executable, __file__, "--one", name],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        if r.returncode:
            rec = {"name": name, "failed": True, "reason": r.stderr.strip().splitlines()[-1:]}
        else:
            rec = json.loads(r.stdout.strip().splitlines()[-1])
        rec["load_average_before"] = list(load)
        results.append(rec)
        print(
            json.dumps(
                {
                    k: rec.get(k)
                    for k in (
                        "name",
                        "wall_s",
                        "iterations",
                        "iteration_over_fft_pair",
                        "peak_rss_above_imports_mb",
                        "meets_closed_form",
                    )
                }
            ),
            flush=True,
        )
    ok = [r for r in results if not r.get("failed")]
    out = {
        "benchmark": "transport",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": 1},
        "tolerance": TOL,
        "cases_are": "held-out test cases: no option was tuned on them; stated errors are the unit-test tolerances",
        "peer_puma": PUMA,
        "timing": "wall_s: image, set-up and the first solve (wall clock); s_per_iteration: the median solve CPU time (with "
        f"its initial and final FFT pairs; {SOLVE_REPEATS} solves when the first takes under {REPEAT_BELOW_S:g} s, "
        "else the one solve; solve_times_s lists them, the first cold) over its iterations; fft_pair_s: "
        "median CPU time of 5 applications of the solver's Fourier operator (forward and inverse FFT with the "
        "multiplier) to a field of the unknown's shape; one core; load average before each case recorded",
        "targets": {
            "closed_form": "relative difference <= stated discretization error of each case",
            "wall_vs_puma": "wall <= 0.5x PuMA on every 3D case at equal tolerance",
            "iteration_cost": "time per iteration <= 3x one FFT pair of the unknown field",
        },
        "meets_target": {
            "closed_form": all(r["meets_closed_form"] for r in ok) if ok else None,
            "wall_vs_puma": None,
            "wall_vs_puma_reason": "PuMA not installable here (see peer_puma): not measured",
            "iteration_cost": all(r["meets_iteration_cost"] for r in ok) if ok else None,
        },
        "cases": results,
    }
    path = Path(args.out)
    old = json.loads(path.read_text()) if path.exists() and args.only else None
    if old:  # merge a partial run into the recorded one
        byname = {c["name"]: c for c in old.get("cases", [])}
        byname.update({c["name"]: c for c in results})
        out["cases"] = [byname[n] for n in CASES if n in byname]
        ok = [r for r in out["cases"] if not r.get("failed")]
        out["meets_target"]["closed_form"] = all(r["meets_closed_form"] for r in ok)
        out["meets_target"]["iteration_cost"] = all(r["meets_iteration_cost"] for r in ok)
    out["report"] = report_rows(out["cases"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
