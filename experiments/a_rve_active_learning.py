"""(a) Active learning of a fibre composite's finite-strain law, ending with a registered surrogate.

    python experiments/a_rve_active_learning.py [--smoke]

The registered GP answers ``material_response(F)`` (stress and tangent), the
interface FE² material points use; the script checks it against the RVE oracle
at fresh deformation gradients.
"""

from pathlib import Path

from loops.demo import SMOKE_A as SMOKE
from loops.demo import check_material_model
from loops.experiment import experiment_parser, run_experiment

# ``scalebridge demo`` runs this experiment at its smoke size from a copy of this config inside
# the package (loops/demo_data/), with the smoke overrides and the check defined in loops/demo.py.
CONFIG = Path(__file__).parent / "configs" / "a_rve_active_learning.toml"
__all__ = ["CONFIG", "SMOKE", "check_material_model", "main"]


def main(argv=None):
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    camp = run_experiment(CONFIG, SMOKE, args)
    check_material_model(camp)
    return camp


if __name__ == "__main__":
    main()
