"""(a) Active learning of a fibre composite's finite-strain law, ending with a registered surrogate.

    python experiments/a_rve_active_learning.py [--smoke]

The registered GP answers ``material_response(F)`` (stress and tangent), the
interface FE² material points use; the script checks it against the RVE oracle
at fresh deformation gradients.
"""

from pathlib import Path

import torch

from loops.experiment import experiment_parser, run_experiment

CONFIG = Path(__file__).parent / "configs" / "a_rve_active_learning.toml"
SMOKE = {
    "oracle": {"grid": 11},
    "budget": {"calls": 16, "wall_time": 300},
    "initial": {"n": 8},
    "learn": {"n_validation": 16},
    "acquisition": {"mc_points": 128, "num_restarts": 2, "raw_samples": 64},
}


def check_material_model(camp) -> None:
    """Compare the final surrogate's stress with the oracle at random F."""
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


def main(argv=None):
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    camp = run_experiment(CONFIG, SMOKE, args)
    check_material_model(camp)
    return camp


if __name__ == "__main__":
    main()
