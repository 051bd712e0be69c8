"""(e) Multi-fidelity permeability design: Kozeny-Carman, coarse and fine FFT Stokes solves.

    python experiments/e_permeability_mf.py [--smoke]
"""

from pathlib import Path

from loops.experiment import experiment_parser, run_experiment

CONFIG = Path(__file__).parent / "configs" / "e_permeability_mf.toml"
SMOKE = {
    "oracle": {"levels": ["kozeny-carman", 8, 16]},
    "budget": {"cost": 4.0, "calls": 24},
    "initial": {"n": 3},
    "acquisition": {"num_fantasies": 8, "num_restarts": 2, "raw_samples": 32},
}


def main(argv=None):
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    camp = run_experiment(CONFIG, SMOKE, args)
    rows = camp.store.rows()
    levels = camp.oracle.levels
    for lev in range(camp.oracle.num_fidelities):
        mine = [r for r in rows if r["fidelity"] == lev]
        print(
            f"fidelity {lev} ({levels[lev]}): {len(mine)} calls, "
            f"{sum(r['status'] == 'failed' for r in mine)} failed, "
            f"cost {sum(r['cost'] or 0 for r in mine):.4g}"
        )
    done = [
        r for r in rows if r["fidelity"] == camp.oracle.highest_fidelity and r["status"] == "done"
    ]
    for r in sorted(done, key=lambda r: r["y"][-1])[:3]:
        print(
            f"  porosity {r['x'][0]:.3f}, radius {r['x'][1]:.3f} of the cell: log10 k = {r['y'][0]:.3f}"
        )
    return camp


if __name__ == "__main__":
    main()
