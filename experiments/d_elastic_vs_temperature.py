"""(d) Multi-fidelity learning of elastic constants versus temperature: Cauchy-Born vs MD.

    python experiments/d_elastic_vs_temperature.py [--smoke]
"""

from pathlib import Path

from loops.experiment import experiment_parser, run_experiment

CONFIG = Path(__file__).parent / "configs" / "d_elastic_vs_temperature.toml"
SMOKE = {
    "oracle": {"size": 2, "n_steps": 120, "n_equil": 60, "n_lattice_iter": 1, "lattice_steps": 60,
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
        print(f"  fidelity {r['fidelity']} T={r['x'][0]:7.1f} K  C11={r['y'][0]:.2f} GPa  role={r['role']}")
    return camp


if __name__ == "__main__":
    main()
