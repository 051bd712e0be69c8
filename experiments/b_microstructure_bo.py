"""(b) Bayesian optimization of a random-fibre microstructure for stiffness per density.

    python experiments/b_microstructure_bo.py [--smoke]
"""

from pathlib import Path

from loops.experiment import experiment_parser, run_experiment

CONFIG = Path(__file__).parent / "configs" / "b_microstructure_bo.toml"
SMOKE = {
    "oracle": {"grid": 15},
    "budget": {"calls": 12},
    "initial": {"n": 6},
    "acquisition": {"num_restarts": 2, "raw_samples": 64},
}


def report_best(camp) -> None:
    """Print the best observed design that meets the config's constraints (``[objective]``)."""
    best = camp.best(predicted=False)
    if best is None or best.row is None:
        print("no design met the constraints")
        return
    row = camp.store.row(best.row)
    y = dict(zip(camp.oracle.output_names, row["y"], strict=True))
    names = camp.oracle.input_names
    print("best feasible design: " + ", ".join(f"{n}={v:.4g}" for n, v in zip(names, row["x"], strict=True))
          + f" -> stiffness/density {y['stiffness_per_density']:.4g} (stiffness {y['stiffness']:.4g}, "
          f"density {y['density']:.4g})")


def main(argv=None):
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    camp = run_experiment(CONFIG, SMOKE, args)
    report_best(camp)
    return camp


if __name__ == "__main__":
    main()
