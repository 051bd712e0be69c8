"""Co-kriging models on many cheap points: time and peak memory of fit, prediction and a
batched posterior, with the batch folded into one triangular solve against the broadcast
solve (issue 15).

Data: two levels on ``[0, 1]^2``, ``f_1(x) = sin(6 x_1) cos(3 x_2)`` (top, 40 points) and
``f_0(x) = 0.8 f_1(x) + 0.1 x_1`` (cheap, ``n0`` points, a scrambled Sobol design whose first
40 points are the top level's: nested). For each model (AR1, recursive co-kriging, NARGP;
defaults), each ``n0`` and each solve path, a fresh process with one thread:

* ``fit_cpu_s``: ``from_dataset`` (fit included);
* ``predict_cpu_s``: ``model.predict`` at 2000 Sobol points (chunks of 256 one-point
  posteriors, the marginals);
* ``posterior_cpu_s``: one ``model.posterior`` of a ``512 x 1 x (d + 1)`` batch (BoTorch's
  ``raw_samples`` evaluation of an acquisition);
* ``peak_rss_mb``: the process's VmHWM after the fit and at the end (imports included).

Paths: ``fold`` is the code as it is (``surrogates.multifidelity.core.solve_lower`` folds a
batch into the columns of one solve past ``FOLD_ELEMENTS``); ``broadcast`` sets
``FOLD_ELEMENTS`` so high that torch broadcasts the unbatched factor over the batch (one copy
per batch element). The largest difference of the two paths' predictive means, relative to the
top level's spread, is recorded. No target: the report rows are measurements.

``--parts acq`` times the acquisition that learn-mode campaigns use: one forward and backward
pass of BoTorch's ``qNegIntegratedPosteriorVariance`` (``ACQ_MC`` integration points at the top
level) over ``ACQ_BATCH`` one-point candidates at mixed levels, each model fitted on the data
above with ``n0 = 200`` (``acq_cpu_s``). Paths: ``deferred`` is the code as it is (a posterior of
``q`` points builds its ``q x q`` covariance only when the matrix is used: NARGP's variances
come from per-point propagations); ``eager`` builds NARGP's joint covariance at once, for
comparison. The largest difference of the two paths' acquisition values is recorded.

    python experiments/benchmarks/mf_scaling.py [--parts scaling acq] [--n0 200 1000] [--out results/mf_scaling.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("AR1CoKriging", "RecursiveCoKriging", "NARGP")
N_TOP, N_PREDICT, BATCH = 40, 2000, 512
ACQ_N0, ACQ_MC, ACQ_BATCH = 200, 256, 16


def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return float("nan")


def f1(x):
    import torch

    return torch.sin(6 * x[:, 0]) * torch.cos(3 * x[:, 1])


def _data(n0: int):
    import torch
    from scipy.stats import qmc

    from surrogates.dataset import Dataset

    x0 = torch.as_tensor(qmc.Sobol(2, seed=0).random(n0), dtype=torch.float64)
    x1 = x0[:N_TOP]
    X = torch.cat([x0, x1])
    Y = torch.cat([0.8 * f1(x0) + 0.1 * x0[:, 0], f1(x1)]).unsqueeze(-1)
    fid = torch.cat([torch.zeros(n0), torch.ones(N_TOP)])
    return Dataset(X=X, Y=Y, fidelity=fid)


def child_acq(model: str, path: str) -> dict:
    """One qNIPV forward + backward (see the module docstring) in this process."""
    import torch
    from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
    from scipy.stats import qmc

    import surrogates.multifidelity as mf
    from surrogates.multifidelity.model import DeferredJoint

    torch.set_num_threads(1)
    cls = getattr(mf, model)
    if path == "eager":
        latent = cls._latent

        def eager(self, x, level):
            mean, cov = latent(self, x, level)
            return mean, cov.full() if isinstance(cov, DeferredJoint) else cov

        cls._latent = eager
    m = cls.from_dataset(_data(ACQ_N0))
    mc = torch.as_tensor(qmc.Sobol(2, seed=2).random(ACQ_MC), dtype=torch.float64)
    mc = torch.cat([mc, torch.ones(ACQ_MC, 1, dtype=torch.float64)], -1)
    torch.manual_seed(0)  # qNIPV's fantasy sampler seeds itself from the global generator: alike on both paths
    acq = qNegIntegratedPosteriorVariance(m, mc_points=mc)
    X = torch.as_tensor(qmc.Sobol(2, seed=3).random(ACQ_BATCH), dtype=torch.float64)
    X = torch.cat([X, (torch.arange(ACQ_BATCH) % 2).to(torch.float64).unsqueeze(-1)], -1).unsqueeze(-2)
    X.requires_grad_(True)
    t = time.process_time()
    val = acq(X)
    val.sum().backward()
    return {"acq_cpu_s": time.process_time() - t, "values": val.tolist(),
            "finite_gradient": bool(torch.isfinite(X.grad).all())}


def child(model: str, n0: int, path: str) -> dict:
    """One (model, n0, path) case in this process; returns its measurements."""
    import torch
    from scipy.stats import qmc

    import surrogates.multifidelity as mf
    from surrogates.multifidelity import core

    torch.set_num_threads(1)
    if path == "broadcast":
        core.FOLD_ELEMENTS = 10**18
    rss0 = _vmhwm_mb()
    t = time.process_time()
    m = getattr(mf, model).from_dataset(_data(n0))
    fit = time.process_time() - t
    rss_fit = _vmhwm_mb()
    xt = torch.as_tensor(qmc.Sobol(2, seed=1).random(N_PREDICT), dtype=torch.float64)
    t = time.process_time()
    mean, var = m.predict(xt)
    pred = time.process_time() - t
    xb = torch.cat([xt[:BATCH].unsqueeze(-2), torch.ones(BATCH, 1, 1, dtype=torch.float64)], -1)
    t = time.process_time()
    with torch.no_grad():
        post = m.posterior(xb)
        _ = post.mean.sum() + post.variance.sum()
    postt = time.process_time() - t
    return {"fit_cpu_s": fit, "predict_cpu_s": pred, "posterior_cpu_s": postt,
            "peak_rss_mb": {"after_imports": rss0, "after_fit": rss_fit, "end": _vmhwm_mb()},
            "nrmse_top": float((mean - f1(xt)).pow(2).mean().sqrt() / f1(xt).std()),
            "mean": mean.tolist()}


def _run_child(args: list[str], env: dict) -> dict:
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def part_scaling(n0s: list[int], env: dict) -> tuple[dict, list]:
    cases: dict = {}
    report = []
    for n0 in n0s:
        for model in MODELS:
            out = {}
            for path in ("fold", "broadcast"):
                out[path] = _run_child(["--child", model, str(n0), path], env)
                print(f"{model} n0={n0} {path}: " + ", ".join(
                    f"{k} {v:.3g}" for k, v in out[path].items() if isinstance(v, float)), flush=True)
            fm, bm = out["fold"].pop("mean"), out["broadcast"].pop("mean")
            spread = max(fm) - min(fm)
            out["max_mean_difference_rel"] = max(abs(p - q) for p, q in zip(fm, bm, strict=True)) / spread
            cases[f"{model}_{n0}"] = out
            fo, br = out["fold"], out["broadcast"]
            report.append({
                "case": f"{model}, {n0} + {N_TOP} points: {BATCH} x 1 posterior / predict {N_PREDICT} points, "
                        "CPU s, folded vs broadcast solve (peak RSS MB at the end)",
                "target": "report only",
                "measured": f"{fo['posterior_cpu_s']:.3g} vs {br['posterior_cpu_s']:.3g} / "
                            f"{fo['predict_cpu_s']:.3g} vs {br['predict_cpu_s']:.3g} "
                            f"({fo['peak_rss_mb']['end']:.0f} vs {br['peak_rss_mb']['end']:.0f}); "
                            f"means agree to {out['max_mean_difference_rel']:.1e} of the spread",
                "met": None,
            })
    return cases, report


def part_acq(env: dict) -> tuple[dict, list]:
    cases: dict = {}
    report = []
    for model in MODELS:
        out = {}
        for path in ("deferred", "eager") if model == "NARGP" else ("deferred",):
            out[path] = _run_child(["--child-acq", model, path], env)
            print(f"{model} qNIPV {path}: {out[path]['acq_cpu_s']:.3g} CPU s", flush=True)
        if "eager" in out:
            a, b = out["deferred"]["values"], out["eager"]["values"]
            out["max_value_difference_rel"] = max(abs(p - q) for p, q in zip(a, b, strict=True)) / max(map(abs, b))
        cases[model] = out
        de = out["deferred"]
        report.append({
            "case": f"{model}, {ACQ_N0} + {N_TOP} points: qNIPV ({ACQ_MC} integration points) forward + backward "
                    f"over {ACQ_BATCH} x 1 candidates, CPU s" + (", deferred vs eager joint covariance"
                                                                  if "eager" in out else ""),
            "target": "report only",
            "measured": (f"{de['acq_cpu_s']:.3g} vs {out['eager']['acq_cpu_s']:.3g}; values agree to "
                         f"{out['max_value_difference_rel']:.1e}" if "eager" in out else f"{de['acq_cpu_s']:.3g}"),
            "met": None,
        })
    return cases, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", choices=("scaling", "acq"), default=["scaling", "acq"],
                    help="parts to run; the others keep their stored results in --out")
    ap.add_argument("--n0", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "mf_scaling.json")
    ap.add_argument("--child", nargs=3, metavar=("MODEL", "N0", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--child-acq", nargs=2, metavar=("MODEL", "PATH"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if not a.child and min(a.n0) < N_TOP:
        ap.error(f"--n0 must be >= {N_TOP} (the top level's points are the first {N_TOP} cheap ones), got {a.n0}")
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), a.child[2])))
        return 0
    if a.child_acq:
        print(json.dumps(child_acq(*a.child_acq)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    old = json.loads(a.out.read_text()) if a.out.exists() else {}
    if "scaling" in a.parts:
        cases, report = part_scaling(a.n0, env)
    else:
        cases = old.get("cases", {})
        report = [r for r in old.get("report", []) if "qNIPV" not in r["case"]]
    if "acq" in a.parts:
        acq_cases, acq_report = part_acq(env)
    else:
        acq_cases = old.get("acquisition", {})
        acq_report = [r for r in old.get("report", []) if "qNIPV" in r["case"]]
    res = {"benchmark": "mf_scaling", "command": "python experiments/benchmarks/mf_scaling.py "
           + " ".join(argv if argv is not None else sys.argv[1:]),
           "data": f"two levels on [0, 1]^2, n0 cheap Sobol points, the first {N_TOP} also at the top",
           "split": {"report_only": sorted(cases) + [f"acquisition {m}" for m in sorted(acq_cases)],
                     "dev": [], "why": "a measurement of the solve paths and of the deferred joint covariance; "
                                       "no default is chosen on it (FOLD_ELEMENTS is set from memory, 64 MiB of "
                                       "broadcast copies)"},
           "threads": 1, "load_average": list(os.getloadavg()),
           "platform": {"python": platform.python_version(), "machine": platform.machine()},
           "cases": cases, "acquisition": acq_cases, "report": report + acq_report}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
