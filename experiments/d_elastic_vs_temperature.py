"""(d) Multi-fidelity learning of elastic constants versus temperature: Cauchy-Born vs MD.

    python experiments/d_elastic_vs_temperature.py [--smoke]

The AR1 co-kriging model fuses the deterministic Cauchy-Born values (fidelity
0, ``Yvar = 0``) with the MD values (fidelity 1) weighted by their squared
block-average standard errors (``noise = "known"``): an MD point with a small
error bar pulls harder than one with a large one. The run prints every result
with its standard error and the fused MD-level prediction at the MD temperatures.
"""

import math
from pathlib import Path

import torch

from loops.experiment import experiment_parser, run_experiment

CONFIG = Path(__file__).parent / "configs" / "d_elastic_vs_temperature.toml"
SMOKE = {
    "oracle": {"size": 2, "n_steps": 120, "n_equil": 60, "n_lattice_iter": 1, "lattice_steps": 260,
               "n_blocks": 6, "sample_every": 4},
    "budget": {"calls": 8, "wall_time": 300},
    "initial": {"n": 2},
    "learn": {"n_validation": 2},
    "acquisition": {"num_restarts": 2, "raw_samples": 32},
}


def main(argv=None):
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    camp = run_experiment(CONFIG, SMOKE, args)
    rows = camp.store.rows(status="done")
    for r in sorted(rows, key=lambda r: (r["fidelity"], r["x"][0])):
        se = math.sqrt(r["yvar"][0]) if r.get("yvar") is not None else float("nan")
        print(f"  fidelity {r['fidelity']} T={r['x'][0]:7.1f} K  C11={r['y'][0]:.2f} +- {se:.2f} GPa  role={r['role']}")
    model = camp.model
    if model is not None and hasattr(model, "noise"):
        print(f"model {type(model).__name__}: noise={model.noise!r} (MD standard errors fused as known noise)")
        md = sorted((r for r in rows if r["fidelity"] == 1), key=lambda r: r["x"][0])
        if md:
            T = torch.tensor([[r["x"][0]] for r in md], dtype=torch.float64)
            mean, var = model.predict(T, fidelity=1)
            for r, m, v in zip(md, mean.tolist(), var.tolist(), strict=True):
                # validation points are held out: the model predicts them, it did not fuse them
                what = "held-out MD point, predicted" if r["role"] == "validation" else "fused MD level"
                print(f"  {what} at T={r['x'][0]:7.1f} K: C11 = {m:.2f} +- {math.sqrt(v):.2f} GPa "
                      f"(datum {r['y'][0]:.2f} +- {math.sqrt(r['yvar'][0]):.2f})")
    return camp


if __name__ == "__main__":
    main()
