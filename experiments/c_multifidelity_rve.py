"""(c) Multi-fidelity optimization over coarse and fine FFT grids with cost-aware acquisition.

    python experiments/c_multifidelity_rve.py [--smoke]
"""

from pathlib import Path

from loops.experiment import experiment_parser, run_experiment

CONFIG = Path(__file__).parent / "configs" / "c_multifidelity_rve.toml"
SMOKE = {
    "oracle": {"grids": [7, 15]},
    "budget": {"cost": 40.0},
    "initial": {"n": 3},
    "acquisition": {"num_fantasies": 8, "num_restarts": 2, "raw_samples": 32},
}


def main(argv=None):
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    camp = run_experiment(CONFIG, SMOKE, args)
    rows = camp.store.rows()
    for lev in range(camp.oracle.num_fidelities):
        n = sum(r["fidelity"] == lev for r in rows)
        print(f"fidelity {lev} (grid {camp.oracle.grids[lev]}): {n} calls, "
              f"cost {sum(r['cost'] or 0 for r in rows if r['fidelity'] == lev):.4g}")
    return camp


if __name__ == "__main__":
    main()
