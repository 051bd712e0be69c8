"""Write ``experiments/benchmarks/README.md`` from ``results/*.json``.

The README is a table of every target a benchmark records (target, measured,
met) plus short method notes; it is generated, never edited by hand:

    python experiments/benchmarks/report.py [--check]

``--check`` exits with status 1 when the README differs from what the
results give (for CI).

Rows come from, in order of preference:

1. a top-level ``"report"`` list in the JSON, rows
   ``{"case", "target", "measured", "met"}`` written by the benchmark itself
   (the format new benchmarks should use);
2. a reader below for the benchmark's own layout;
3. every boolean under a key named ``meets_target`` (or ``target_met``),
   with its path as the case and the nearest ``target``/``targets`` entry.

A file whose layout a reader no longer understands falls back to 3, so a
changed benchmark shows up as rows without measured values rather than
disappearing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
#: ``--out`` of the benchmark scripts: the committed results by default; a ``--quick`` run writes a
#: scratch file instead (:func:`quick_out`), so that a smaller run does not replace the results the
#: generated table is checked against
OUT_HELP = "JSON to write (default: the committed results; with --quick, a file in the temporary directory)"


def quick_out(name: str) -> Path:
    """Where benchmark ``name``'s ``--quick`` run writes without ``--out``."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"scalebridge-{name}-quick.json"

Row = dict[str, Any]

NOTES = {
    "rve_solver": (
        "FFT homogenization (`oracles.rve.solver.FFTSolver`) against muSpectre on linear two-phase "
        "discs/spheres (full homogenized tangent, CG tolerance 1e-8) and the finite-strain cube "
        "inclusion of de Geus et al. (2017). Every (case, solver) pair runs in a fresh process, one "
        "thread; imports are not timed; peak memory is the process's VmHWM. The FFT-limit ratio is "
        "the CPU time of one CG iteration per right-hand side over one forward + inverse FFT pair "
        "of the same field. `--compare-tree` runs another checkout's solver in the same run."
    ),
    "atomistic": (
        "Elastic-constant oracle (Cu, EMT): fidelity-1 Langevin MD at 300 K on 500 atoms, standard "
        "error of C44 and wall time; MD speed of asap3 against ASE's EMT."
    ),
    "campaigns": (
        "Campaign engine: median simple regret over seeds on Branin and Hartmann-6 against Sobol and "
        "Ax's default strategy at fixed budgets; model-update plus acquisition time per iteration "
        "against the number of observations; parallel efficiency of asynchronous workers on a "
        "sleeping oracle. `campaigns_suite`: the default engine against Ax's default strategy on BoTorch "
        "test functions with seeded shifted bounds (optima off the centre), noisy and constrained variants; "
        "paired one-sided Wilcoxon tests at the final budget, development and held-out test problems apart."
    ),
    "fe2": (
        "FE² on a quarter plate with a hole: full FE² (RVE oracle at every Gauss point) against "
        "surrogate-only, the adaptive switch and single-scale FE, same mesh and load path; errors "
        "against full FE² at the final step."
    ),
    "fe2_3d": (
        "3D FE² (`fe2.py --dim 3`) on a clamped 2 x 1 x 1 bar of hex1 elements (`--box-n`), the RVE a "
        "stiff Neo-Hookean sphere in a soft one (`--grid3d`^3): full FE² against surrogate-only, the "
        "adaptive switch and single-scale FE, same mesh and load path; errors against full FE² at the "
        "final step."
    ),
    "gp_throughput": (
        "Stress-and-tangent evaluations per second of the GP surrogate (500 training points, 2D and "
        "3D) on batches of 1e4 and 1e5 points; judged on the measured wall-clock rate at the slowest batch "
        "size, with the projected two-core rate (2 n / CPU time of the single-threaded run) beside it."
    ),
    "surrogate_throughput": (
        "Stress-and-tangent evaluations per second of the neural and GP surrogates on batches of "
        "1e4 and 1e5 points, judged on the measured wall-clock rate (the stricter), with the projected "
        "two-core rate (2 n / CPU time of the single-threaded run) beside it."
    ),
    "mf_scaling": (
        "Co-kriging models (AR1, recursive, NARGP) on 200 and 1000 cheap plus 40 top-level points: CPU "
        "time of the fit, of `predict` at 2000 points and of one 512 x 1 batched posterior, and peak "
        "memory, each case in a fresh single-thread process, with the batch folded into one triangular "
        "solve (`core.solve_lower`) against torch's broadcast solve in the same run; and one qNIPV forward + "
        "backward pass per model (learn-mode campaigns), NARGP with its joint covariance deferred (as shipped) "
        "and built at once."
    ),
    "multifidelity": (
        "Co-kriging models against SMT, Emukit and BoTorch peers on literature multi-fidelity "
        "problems, a development split (defaults chosen there) and a held-out test split reported "
        "as it comes out: median nRMSE, NLPD, 95 % coverage and fit time over seeds."
    ),
    "mf_calibration": (
        "Co-kriging models and the peers of `multifidelity.py` on problems drawn from the two-level AR1 "
        "prior itself (Matérn-5/2 ARD, random lengthscales and rho; nested and non-nested, noise-free and 5 % "
        "noise, 1 and 3 inputs), where the model family is the truth: 95 % coverage, NLPD against the "
        "top-level-only GP and nRMSE; a held-out family, never used to choose a default."
    ),
    "mf_campaigns": (
        "Multi-fidelity campaigns (ours) against our single-fidelity campaign at the top level, Ax's "
        "default strategy, BoTorch's multi-fidelity knowledge gradient and Sobol, on literature problems "
        "(cost ratios 1:10, 1:100, 1:10:100) and two RVE problems: simple regret against cumulative cost "
        "and the cost to reach Ax's final result, dev and test problems apart. `mf_campaigns_learn`: "
        "the same in learn mode, top-level nRMSE against cost (report only)."
    ),
    "transport": (
        "Effective conductivity and Darcy permeability of periodic voxel images against closed forms "
        "(Perrins et al. 1979, Drummond & Tahir 1984, Zick & Homsy 1982): "
        "error, wall time, CG iterations, time per iteration over one FFT pair (both CPU seconds), peak "
        "memory; one process "
        "per case."
    ),
    "uq": (
        "Uncertainty propagation through FE² (reaction force of a stretched square with an aleatory "
        "fibre modulus): nested Monte Carlo through a GP trained on RVE answers against brute-force FE² "
        "with the RVE oracle at every Gauss point, and the cost of 100 function samples against one "
        "surrogate FE² run."
    ),
}


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.3g}"
    if v is None:
        return ""
    return str(v)


def _leaves(o: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _leaves(v, f"{path}/{k}" if path else str(k))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, o


# ------------------------------------------------------------------ readers
def rows_generic(d: dict) -> list[Row]:
    """Every boolean under ``meets_target``/``target_met``, with the closest target text."""
    rows = []

    def walk(o: Any, path: str, target: Any) -> None:
        if isinstance(o, dict):
            t = o.get("target", o.get("targets", target))
            for k, v in o.items():
                p = f"{path}/{k}" if path else k
                if k in ("meets_target", "target_met"):
                    for lp, lv in _leaves(v, p):
                        if isinstance(lv, bool):
                            rows.append({"case": lp, "target": t, "measured": None, "met": lv})
                else:
                    walk(v, p, t)
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, f"{path}[{i}]", target)

    walk(d, "", d.get("targets", d.get("target")))
    return rows


#: largest relative difference of two solvers' answers for their timings to be compared
COMPARABLE_RTOL = 1e-4


def rows_rve_solver(d: dict) -> list[Row]:
    t = d["targets"]
    rows = []
    if "load_average_start" in d:
        load = ", ".join(f"{v:.1f}" for v in d["load_average_start"])
        rows.append({"case": "load average (1, 5, 15 min) at the start", "target": None, "measured": load,
                     "met": None})
    for case, e in d["cases"].items():
        dim = 3 if "3d" in case else 2
        m = e.get("meets_target", {})
        if "wall_ratio" not in e:
            rows.append({"case": case, "target": "solves", "measured": e.get("muspectre", {}).get("error"),
                         "met": False})
            continue
        wt = t["wall_ratio_3d"] if dim == 3 else t["wall_ratio_2d"]
        diff = e.get("max_rel_diff_vs_muspectre")
        if diff is not None and diff > COMPARABLE_RTOL:
            # the costs of two solves that reach different answers compare nothing
            rows.append({"case": f"{case}: same answer as muSpectre (for wall and RSS ratios)",
                         "target": f"rel. diff <= {COMPARABLE_RTOL:g}",
                         "measured": f"{diff:.3g}: wall and peak RSS ratios not comparable", "met": False})
        else:
            rows += [
                {"case": f"{case}: wall / muSpectre", "target": f"<= {wt}",
                 "measured": f"{e['wall_ratio']:.3g} (CPU time {e['cpu_ratio']:.3g})", "met": m.get("wall_time")},
                {"case": f"{case}: peak RSS / muSpectre", "target": f"<= {t['peak_memory_ratio']}",
                 "measured": e["peak_memory_ratio"], "met": m.get("peak_memory")},
            ]
        fft_ok = e["fft_limit_ratio"] <= t["cg_iteration_over_fft_pair"]
        rows.append({"case": f"{case}: CG iteration / FFT pair", "target": f"<= {t['cg_iteration_over_fft_pair']}",
                     "measured": e["fft_limit_ratio"], "met": m.get("fft_limit", fft_ok)})
        if "speed_vs_compare" in e:
            s = e["speed_vs_compare"]
            bar = t.get("time_over_compare_tree_max", 1.1)
            rows.append({"case": f"{case}: time / compared checkout (CPU)", "target": f"<= {bar}",
                         "measured": 1.0 / s["cpu"], "met": s["within_10_percent"]["cpu"]})
    return rows


def rows_campaigns(d: dict) -> list[Row]:
    rows = []
    for fn, r in d.get("regret", {}).items():
        if not (isinstance(r, dict) and "meets_target" in r):
            continue
        measured = None
        try:
            last = str(r["budgets"][-1])
            ours, ax = r["regret"][r["default_method"]][last]["median"], r["regret"]["ax"][last]["median"]
            measured = f"median regret at {last} calls: ours {ours:.3g}, Ax {ax:.3g}"
        except (KeyError, IndexError, TypeError):
            pass
        rows.append({"case": f"regret {fn}", "target": r.get("target"), "measured": measured,
                     "met": r.get("meets_target")})

    def measured_of(part: str, r: dict) -> str | None:
        if part == "overhead" and "iteration_s_at_1000" in r:
            return f"{r['iteration_s_at_1000']:.3g} s per iteration"
        if part == "parallel" and r.get("rows"):
            return f"efficiency {min(row['efficiency'] for row in r['rows']):.3g} (lowest over worker counts)"
        if part == "asktell" and "with_model_1000" in r:
            return f"ask/tell / run() step time {r['with_model_1000']['ratio_asktell_over_run']:.3g}"
        if part == "chaos" and "wall_ratio" in r:
            return f"wall {r['wall_ratio']:.3g}x the undisturbed run, recorded once: {r.get('all_recorded_once')}"
        return None

    for part in ("overhead", "parallel", "asktell", "chaos"):
        r = d.get(part)
        if isinstance(r, dict) and "meets_target" in r:
            rows.append({"case": part, "target": r.get("target"), "measured": measured_of(part, r),
                         "met": r["meets_target"]})
    return rows


def rows_fe2(d: dict) -> list[Row]:
    # per target: the 2D file holds them under meets_target, the 3D files under targets
    m = d["meets_target"] if isinstance(d["meets_target"], dict) else d["targets"]
    def pct(v: float | None) -> str | None:
        return None if v is None else f"{100 * v:.3g} %"

    def times(v: float | None) -> str | None:
        return None if v is None else f"{v:.3g}x"

    # case key -> (target, measured), each with its unit
    table = {
        "surrogate_only_1000x": ("surrogate-only FE² >= 1000x faster than the oracle at every Gauss point",
                                 times(d["surrogate_only"]["speedup_vs_full"])),
        "adaptive_100x": ("adaptive FE² >= 100x faster than the oracle at every Gauss point",
                          times(d["adaptive"]["speedup_vs_full"])),
        "adaptive_reaction_error_0.5pct": ("adaptive reaction force within 0.5 % of the oracle run's",
                                           pct(d["adaptive"].get("reaction_rel_error"))),
        "adaptive_max_stress_error_2pct": ("adaptive largest stress error <= 2 % of the oracle run's largest stress",
                                           pct(d["adaptive"].get("stress_max_rel_error"))),
        "surrogate_within_3x_of_analytic": ("surrogate FE² time <= 3x that of the analytic law",
                                            times(d.get("surrogate_vs_analytic_time_ratio"))),
    }
    return [{"case": k, "target": table.get(k, (k.replace("_", " "),))[0], "measured": table.get(k, (None, None))[1],
             "met": v} for k, v in m.items()]


def rows_uq(d: dict) -> list[Row]:
    """The three targets of the propagation benchmark, each with what it compares."""
    ref, runs, cost, t = d["oracle_reference"], d["propagation_by_training_size"], d["cost"], d["targets"]
    last = runs[-1]
    q = last["quantiles"]
    return [
        {"case": f"oracle mean inside the propagated 95 % interval ({last['n_train']} training points)",
         "target": "inside at every training size",
         "measured": f"oracle {ref['mean']:.4g} +- {ref['mean_se']:.2g} (s.e.), interval "
                     f"[{q['0.025']:.4g}, {q['0.975']:.4g}]; inside at "
                     f"{sum(r['oracle_mean_inside_95'] for r in runs)} of {len(runs)} sizes",
         "met": t["oracle_mean_inside_propagated_95_interval"]},
        {"case": "epistemic variance shrinks with the training size",
         "target": "decreasing in n_train",
         "measured": ", ".join(f"{r['n_train']}: {r['epistemic']:.3g}" for r in runs),
         "met": t["epistemic_variance_shrinks_with_training_size"]},
        {"case": f"{cost['n_samples']} function samples against one surrogate FE² run",
         "target": f"<= {cost['target_ratio_for_100_samples']:g}x the time",
         "measured": f"{cost['ratio']:.3g}x",
         "met": t["propagation_100_samples_within_50x_of_one_run"]},
    ]


def rows_atomistic(d: dict) -> list[Row]:
    f = d["fidelity1_target"]
    t = f["target"]
    return [{
        "case": f"fidelity 1, {f['n_atoms']} atoms, {f['temperature']:g} K",
        "target": f"C44 s.e. <= {t['C44_se_max_GPa']} GPa in <= {t['wall_max_s']} s",
        "measured": f"{f['standard_errors']['C44']:.3g} GPa in {f['wall_s']:.3g} s",
        "met": f["target_met"],
    }]


_MF_FLAGS = (("nrmse_le_best_peer", "nRMSE <= best peer"), ("nrmse_within_10pct_of_best_peer", "within 10 %"),
             ("nlpd_le_hf_gp", "NLPD <= hf_gp"), ("coverage_in_0.85_0.99", "coverage in [0.85, 0.99]"),
             ("fit_time_le_2x_fastest_peer", "fit time <= 2x fastest peer"))


def rows_multifidelity(d: dict) -> list[Row]:
    """Per split and model, on how many problems each target holds; judged (``met``) only for the
    default model on the test split, as the issue asks (the dev split chose the defaults)."""
    rows = []
    default = d.get("default_model")
    for split, models in d["overall"].items():
        for model, r in models.items():
            flags = [p["meets_target"][model] for p in d["results"].values()
                     if p["problem"].get("split", split) == split and model in p["meets_target"]]
            n = len(flags)
            counts = ", ".join(f"{label} {sum(bool(f[k]) for f in flags)}/{n}" for k, label in _MF_FLAGS)
            judged = split == "test" and model == default
            rows.append({
                "case": f"{split} split: {model}{' (default)' if model == default else ''}",
                "target": d.get("targets") if judged else "reported, not judged",
                "measured": counts,
                "met": r["meets_target"] if judged else None,
            })
    # a peer with no result on a problem (it failed on every seed) is absent from that problem's
    # best and fastest peer: say so
    for split in d["overall"]:
        missing = []
        for name, p in d["results"].items():
            if p["problem"].get("split", split) != split:
                continue
            for model, r in p["models"].items():
                if model not in (d.get("peers") or ()) and model.startswith("ours"):
                    continue
                if (r.get("nrmse") or {}).get("median") is None:
                    missing.append(f"{model} on {name}")
        if missing:
            rows.append({"case": f"{split} split: peers with no result (failed on every seed; not in best/fastest "
                                 "peer there)", "target": None, "measured": ", ".join(missing), "met": None})
    return rows


READERS: dict[str, Callable[[dict], list[Row]]] = {
    "rve_solver": rows_rve_solver,
    "campaigns": rows_campaigns,
    "fe2": rows_fe2,
    "atomistic": rows_atomistic,
    "multifidelity": rows_multifidelity,
    "uq": rows_uq,
}


def reader_for(stem: str) -> Callable[[dict], list[Row]] | None:
    """The reader of a results file: by its name, or by the name before its first ``_`` suffix
    that names a reader (``fe2_grid15`` -> ``fe2``)."""
    if stem in READERS:
        return READERS[stem]
    parts = stem.split("_")
    for i in range(len(parts) - 1, 0, -1):
        if "_".join(parts[:i]) in READERS:
            return READERS["_".join(parts[:i])]
    return None


def rows_for(path: Path) -> tuple[list[Row], str]:
    """``(rows, how)`` of one results file; ``how`` says which reader made them."""
    d = json.loads(path.read_text())
    if isinstance(d.get("report"), list):
        return d["report"], "report"
    reader = reader_for(path.stem)
    if reader is not None:
        try:
            return reader(d), "reader"
        except (AttributeError, IndexError, KeyError, TypeError, ValueError, ZeroDivisionError):
            pass  # a layout the reader does not know: the generic rows below
    return rows_generic(d), "generic"


def notes_for(stem: str) -> str | None:
    for key in sorted(NOTES, key=len, reverse=True):
        if stem == key or stem.startswith(key + "_"):
            return NOTES[key]
    return None


def render(results: Path = RESULTS) -> str:
    files = sorted(results.glob("*.json"))
    out = [
        "# Benchmarks: targets and measurements",
        "",
        "Generated by `python experiments/benchmarks/report.py` from `results/*.json`; do not edit by hand.",
        "Each benchmark script writes its JSON with its targets and `meets_target` flags; the method of",
        "each is in its script's docstring. Timings come from a shared 2-core machine: only ratios",
        "measured within one run are compared, and the JSON records the load where it matters.",
        "",
        "| results file | case | target | measured | met |",
        "|---|---|---|---|---|",
    ]
    notes = []
    for f in files:
        rows, _ = rows_for(f)
        if not rows:
            out.append(f"| `{f.name}` | (no target recorded) | | | |")
        for r in rows:
            target = r.get("target")
            if isinstance(target, dict):
                target = ", ".join(f"{k} {v}" for k, v in target.items())
            cells = [f"`{f.name}`", _fmt(r.get("case")), _fmt(target), _fmt(r.get("measured")), _fmt(r.get("met"))]
            out.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        n = notes_for(f.stem)
        if n and n not in [x for _, x in notes]:
            notes.append((f.stem.split("_")[0] if f.stem not in NOTES else f.stem, n))
    out += ["", "## Methods", ""]
    for stem, n in notes:
        out += [f"* `{stem}`: {n}"]
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md is not up to date")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--out", type=Path, default=README)
    args = ap.parse_args(argv)
    text = render(args.results)
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python experiments/benchmarks/report.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
