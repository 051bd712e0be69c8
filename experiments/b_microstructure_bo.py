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


def main(argv=None):
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    camp = run_experiment(CONFIG, SMOKE, args)
    rows = [r for r in camp.store.rows(status="done") if r["y"][1] >= 3.0]
    if rows:
        best = max(rows, key=lambda r: r["y"][0])
        names = camp.oracle.input_names
        print("best feasible design: " + ", ".join(f"{n}={v:.4g}" for n, v in zip(names, best["x"], strict=True))
              + f" -> stiffness/density {best['y'][0]:.4g} (stiffness {best['y'][1]:.4g}, density {best['y'][2]:.4g})")
    return camp


if __name__ == "__main__":
    main()
