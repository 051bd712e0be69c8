"""Stress-and-tangent throughput of the neural and GP constitutive surrogates.

Evaluations per second of ``material_response``-equivalent work (``P`` and
``dP/dF`` at a batch of deformation gradients) on batches of 1e4, 1e5 and 1e6
points, on the threads given by ``--threads`` (2 = the target machine):

* neural: :class:`surrogates.neural.HyperelasticEnsemble` fitted (briefly) to
  Neo-Hookean data, single network (M = 1) and ensemble (M = 5, with the
  calibrated variance), through its fast evaluator in float64 and float32;
* GP: :class:`surrogates.gp.GPSurrogate` (ARD Matern-5/2, one GP per stress
  component) on 500 training points H -> P, through its ``material_response``
  (posterior mean plus autograd Jacobian). GP batch sizes whose predicted time
  exceeds ``--gp-budget`` seconds are skipped and recorded as such.

Targets (issue 4): >= 1e6/s for a neural surrogate, >= 1e5/s for the GP.

    python experiments/benchmarks/surrogate_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from surrogates.dataset import Dataset
from surrogates.neural import HyperelasticEnsemble

RESULTS = Path(__file__).parent / "results" / "surrogate_throughput.json"
NEURAL_TARGET = 1e6
GP_TARGET = 1e5


def neo_hookean_P(F: torch.Tensor, mu=1.0, lam=2.0) -> torch.Tensor:
    """Closed-form plane-strain/3-D compressible Neo-Hooke stress."""
    FiT = torch.linalg.inv(F).transpose(-1, -2)
    J = torch.linalg.det(F)
    return mu * (F - FiT) + lam * torch.log(J)[:, None, None] * FiT


def sample_F(n: int, dim: int, seed: int, amplitude: float = 0.2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.eye(dim, dtype=torch.float64) + amplitude * (
        2 * torch.rand(n, dim, dim, generator=g, dtype=torch.float64) - 1
    )


def dataset(n: int, dim: int, seed: int) -> Dataset:
    F = sample_F(n, dim, seed)
    eye = torch.eye(dim, dtype=torch.float64)
    return Dataset(X=(F - eye).reshape(n, -1), Y=neo_hookean_P(F).reshape(n, -1))


def rate(fn, F: torch.Tensor, repeats: int = 1) -> float:
    fn(F[: min(len(F), 2048)])  # warm-up (allocations, caches)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(F)
        best = min(best, time.perf_counter() - t)
        assert torch.isfinite(out.tangent[:5]).all()
    return len(F) / best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="batches 1e4 and 1e5 only")
    ap.add_argument("--gp-budget", type=float, default=120.0,
                    help="skip GP batches predicted to take longer (s)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    results = {"threads": args.threads, "sizes": sizes, "platform": platform.platform(),
               "torch": torch.__version__, "neural": [], "gp": []}

    for dim in (2, 3):
        ds = dataset(400, dim, seed=dim)
        Fs = {n: sample_F(n, dim, seed=10 + n % 97) for n in sizes}
        for M in (1, 5):
            t = time.perf_counter()
            model = HyperelasticEnsemble.from_dataset(
                ds, num_members=M, hidden=(16, 16), calibration_fraction=0.2 if M > 1 else 0,
                training=dict(max_iter=4, inner_iter=20),
            )
            fit_s = time.perf_counter() - t
            Ft = Fs[sizes[0]][:2000]
            err = float((model.material_response(Ft).P - neo_hookean_P(Ft)).norm()
                        / neo_hookean_P(Ft).norm())
            for dtype in (torch.float64, torch.float32):
                ev = model.fast_evaluator(dtype=dtype, chunk=4096)
                for n in sizes:
                    r = rate(ev, Fs[n])
                    rec = {"dim": dim, "members": M, "dtype": str(dtype).split(".")[-1],
                           "hidden": [16, 16], "n": n, "evals_per_s": r,
                           "fit_s": fit_s, "rel_stress_err_heldout": err,
                           "meets_target": r >= NEURAL_TARGET}
                    results["neural"].append(rec)
                    print(json.dumps(rec), flush=True)

    try:
        from surrogates.gp import GPSurrogate

        gp_source = "surrogates.gp.GPSurrogate.material_response"
    except ImportError:  # pragma: no cover - the GP module is part of the project
        GPSurrogate, gp_source = None, "unavailable"
    results["gp_source"] = gp_source
    if GPSurrogate is not None:
        for dim in (2, 3):
            ds = dataset(500, dim, seed=100 + dim)
            t = time.perf_counter()
            gp = GPSurrogate.from_dataset(ds, n_restarts=1, maxiter=50)
            fit_s = time.perf_counter() - t
            Fs0 = sample_F(sizes[0], dim, seed=7)
            probe = 2000
            t = time.perf_counter()
            gp.material_response(Fs0[:probe])
            per_pt = (time.perf_counter() - t) / probe
            for n in sizes:
                rec = {"dim": dim, "train_points": 500, "n": n, "fit_s": fit_s}
                if per_pt * n > args.gp_budget:
                    rec.update(evals_per_s=None, skipped=f"predicted {per_pt * n:.0f} s > budget",
                               probe_evals_per_s=1.0 / per_pt, meets_target=(1.0 / per_pt) >= GP_TARGET)
                else:
                    r = rate(gp.material_response, sample_F(n, dim, seed=7))
                    rec.update(evals_per_s=r, meets_target=r >= GP_TARGET)
                results["gp"].append(rec)
                print(json.dumps(rec), flush=True)

    best_neural = max(r["evals_per_s"] for r in results["neural"])
    results["summary"] = {
        "best_neural_evals_per_s": best_neural,
        "neural_meets_target_any": any(r["meets_target"] for r in results["neural"]),
        "gp_meets_target_any": any(r.get("meets_target") for r in results["gp"]),
        "targets": {"neural": NEURAL_TARGET, "gp": GP_TARGET},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["summary"]))
    return results


if __name__ == "__main__":
    main()
