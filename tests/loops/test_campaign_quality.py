"""Statistics of campaigns against the Sobol baseline, and executor equivalence.

Each comparison runs several seeds and compares counts or medians with a
margin, so it holds for any base seed.
"""

import os

import pytest
import torch

from loops.config import parse_config
from loops.engine import Campaign
from loops.store import RunStore

BASE_SEED = int(os.environ.get("SCALEBRIDGE_SEED", "0"))
FAST_ACQ = {"num_restarts": 4, "raw_samples": 128, "maxiter": 100}


def _run(tmp_path, tag, **cfg):
    base = {"name": tag, "oracle": {"name": "branin"}, "executor": {"kind": "serial"},
            "tracking": {"enabled": False}, "run_dir": str(tmp_path)}
    base.update(cfg)
    camp = Campaign(parse_config(base), run_dir=tmp_path / tag)
    res = camp.run()
    return camp, res


@pytest.mark.slow
def test_bo_reaches_branin_optimum_more_often_than_sobol(tmp_path):
    hits = {"qLogNEI": 0, "sobol": 0}
    opt = 0.397887
    for k in range(6):
        seed = BASE_SEED + k
        for acq in hits:
            _, res = _run(tmp_path, f"{acq}-{seed}", seed=seed, budget={"calls": 25}, initial={"n": 5},
                          acquisition={"name": acq, **FAST_ACQ})
            hits[acq] += res.state.best - opt < 0.05
    # Sobol with 25 points almost never gets within 0.05 of the optimum; BO mostly does
    assert hits["qLogNEI"] >= 4 and hits["qLogNEI"] > hits["sobol"] + 2, hits


@pytest.mark.slow
def test_learn_mode_lowers_heldout_rmse_faster_than_sobol(tmp_path):
    # the held-out error along the learning curve (calls 8..18), averaged, per seed. qNIPV,
    # the learn-mode acquisition for global accuracy: it won 8 of 8 seeds when this was
    # written; max_variance (boundary-seeking) won 5 of 8 and is not held to this bar
    curves = {"qNIPV": [], "sobol": []}
    for k in range(6):
        seed = BASE_SEED + k
        for acq in curves:
            camp, _ = _run(tmp_path, f"{acq}-{seed}", seed=seed, mode="learn", budget={"calls": 18},
                           initial={"n": 6}, learn={"n_validation": 64},
                           acquisition={"name": acq, **FAST_ACQ})
            pts = [m["value"] for m in camp.store.metrics() if m["name"] == "nrmse" and m["step"] >= 8]
            curves[acq].append(sum(pts) / len(pts))
    med = {k: torch.tensor(v).median().item() for k, v in curves.items()}
    wins = sum(a < b for a, b in zip(curves["qNIPV"], curves["sobol"], strict=True))
    assert med["qNIPV"] < med["sobol"] and wins >= 5, curves


@pytest.mark.slow
def test_dask_localcluster_matches_process_pool(tmp_path):
    common = {"seed": BASE_SEED, "budget": {"calls": 11}, "initial": {"n": 5},
              "acquisition": {"name": "qLogNEI", "q": 2, **FAST_ACQ}}
    out = {}
    for kind, extra in [("process", {}), ("dask", {"local_processes": False})]:
        camp, _ = _run(tmp_path, kind, executor={"kind": kind, "workers": 2, "synchronous": True, **extra},
                       **common)
        rows = RunStore(camp.run_dir / "store.sqlite").rows()
        out[kind] = [(r["x"], r["y"]) for r in rows]
    assert len(out["process"]) == 11
    for (xa, ya), (xb, yb) in zip(out["process"], out["dask"], strict=True):
        assert torch.allclose(torch.tensor(xa), torch.tensor(xb), rtol=1e-9, atol=1e-9)
        assert torch.allclose(torch.tensor(ya), torch.tensor(yb), rtol=1e-9, atol=1e-9)
