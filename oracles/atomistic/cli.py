"""``scalebridge elastic`` and ``scalebridge surface``: atomistic oracles on the command line.

Both print one JSON object (the oracle's record: inputs, outputs by name,
variances, cost, wall time, failure reason) on stdout.

Usage::

    scalebridge elastic --element Cu --temperature 0            # static, fidelity 0
    scalebridge elastic --element Cu --temperature 300 --fidelity 1 --size 5 --steps 500
    scalebridge elastic --element Cu --engine lj --lj-sigma 2.338 --lj-epsilon 0.409
    scalebridge surface --element Cu --miller 1 1 1             # gamma, UBER 2gamma, l, sigma_max
    scalebridge surface --element Cu --miller 1 0 0 --relax --strain 0.01

Exit status 0 on success, 1 when the point failed (the reason is in the JSON),
2 on bad arguments: the options are checked by the oracle's settings schema
(:class:`loops.oracle_settings.ElasticSettings`, :class:`~loops.oracle_settings.SurfaceSettings`:
lattice parameter guess near the element's, supercell size, slab thickness
above twice the lattice parameter, ...) before any work, and the problem is
printed as one line on stderr (and as ``{"failed": true, "reason": ...}`` on stdout).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from oracles._cli import with_options
from oracles.exceptions import InvalidInput, OracleError

#: settings key -> option
_OPTION_OF = {
    "a_guess": "--a-guess", "size": "--size", "n_steps": "--steps", "timestep": "--timestep",
    "md_strain": "--md-strain", "n_blocks": "--blocks", "seed": "--seed", "min_thickness": "--thickness",
    "max_opening": "--max-opening", "miller": "--miller", "element": "--element", "structure": "--structure",
    "engine_params.sigma": "--lj-sigma", "engine_params.epsilon": "--lj-epsilon", "engine_params.rc": "--lj-sigma",
    "engine": "--engine", "engine_params": "--lj-sigma/--lj-epsilon",
}


def _settings(command: str, data: dict[str, Any]):
    """``data`` checked by the command's settings schema; InvalidInput (one line, option names) otherwise."""
    from pydantic import ValidationError

    from loops.oracle_settings import ElasticSettings, SurfaceSettings, format_errors

    schema = ElasticSettings if command == "elastic" else SurfaceSettings
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        # --lj-sigma sets sigma and rc: one line for both
        raise InvalidInput("; ".join(with_options(format_errors(e, schema, data), _OPTION_OF))) from None


#: the oracle's wording of its inputs and settings in messages -> the options that set them
_OPTION_WORDS = (
    (re.compile(r"\binput temperature\b"), "--temperature"),
    (re.compile(r"\binput hydrostatic_strain\b"), "--strain"),
    (re.compile(r" of point 0\b"), ""),
    (re.compile(r"\bpass a_guess\b"), "pass --a-guess"),
    (re.compile(r"^(--[\w-]+) is (nan|-?inf)$"), r"\1 must be a finite number, got \2"),
)


def _bad_input(command: str, e: InvalidInput) -> int:
    msg = str(e)
    for pattern, option in _OPTION_WORDS:
        msg = pattern.sub(option, msg)
    print(f"scalebridge {command}: error: {msg}", file=sys.stderr)
    json.dump({"failed": True, "reason": f"InvalidInput: {msg}"}, sys.stdout)
    sys.stdout.write("\n")
    return 2


def _failed(command: str, e: OracleError) -> int:
    reason = f"{type(e).__name__}: {e}"
    print(f"scalebridge {command}: failed: {reason}", file=sys.stderr)
    json.dump({"failed": True, "reason": reason}, sys.stdout)
    sys.stdout.write("\n")
    return 1


def _engine_args(p: argparse.ArgumentParser) -> None:
    def error(message: str):  # argparse's errors as one line
        print(f"{p.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    p.error = error
    p.add_argument("--element", default="Cu", help="chemical symbol (default Cu)")
    p.add_argument("--structure", default="fcc", choices=["fcc", "bcc", "sc", "diamond"])
    p.add_argument("--engine", default="default", choices=["default", "asap", "emt", "lj", "lammps"],
                   help="asap3 EMT when installed (default), ASE EMT, Lennard-Jones, LAMMPS")
    p.add_argument("--lj-sigma", type=float, default=None, help="Lennard-Jones sigma (A)")
    p.add_argument("--lj-epsilon", type=float, default=None, help="Lennard-Jones epsilon (eV)")
    p.add_argument("--a-guess", type=float, default=None, help="lattice parameter guess (A)")


def _engine_params(args: argparse.Namespace) -> dict[str, Any]:
    """The engine's parameters from ``--lj-sigma``/``--lj-epsilon``: both are needed with
    ``--engine lj`` (the calculator's reduced-unit defaults, 1 A and 1 eV, are no element)
    and refused with any other engine, which would ignore them."""
    given = [f for f, v in (("--lj-sigma", args.lj_sigma), ("--lj-epsilon", args.lj_epsilon)) if v is not None]
    if args.engine != "lj":
        if given:
            raise InvalidInput(f"{' and '.join(given)} apply only with --engine lj, got --engine {args.engine}")
        return {}
    if len(given) < 2:
        raise InvalidInput(
            "--engine lj needs --lj-sigma (A) and --lj-epsilon (eV) for the element, "
            "e.g. --lj-sigma 2.338 --lj-epsilon 0.409 for Cu"
        )
    return {"sigma": args.lj_sigma, "rc": 3.0 * args.lj_sigma, "epsilon": args.lj_epsilon}


def _record(oracle, res) -> dict[str, Any]:
    rec = res.to_records()[0]
    rec["inputs"] = dict(zip(oracle.input_names, rec["x"], strict=True))
    if rec["y"] is not None:
        rec["outputs"] = dict(zip(oracle.output_names, rec["y"], strict=True))
    if rec["yvar"] is not None:
        rec["variances"] = dict(zip(oracle.output_names, rec["yvar"], strict=True))
    return rec


def _emit(obj: dict[str, Any]) -> None:
    json.dump(obj, sys.stdout, indent=2, default=float)
    sys.stdout.write("\n")


def run_elastic(args: argparse.Namespace) -> int:
    from oracles.atomistic.elastic import ElasticConstantsOracle

    try:
        cfg = _settings("elastic", dict(
            element=args.element, structure=args.structure, engine=args.engine,
            engine_params=_engine_params(args) or None, a_guess=args.a_guess, size=args.size,
            timestep=args.timestep, n_steps=args.steps, md_strain=args.md_strain, n_blocks=args.blocks,
            seed=args.seed,
        ))
        oracle = ElasticConstantsOracle(**cfg.model_dump(exclude_unset=True))
        res = oracle.evaluate([[args.temperature, args.strain]], fidelity=args.fidelity)
    except InvalidInput as e:
        return _bad_input("elastic", e)
    except OracleError as e:  # the engine found no stable lattice for these settings
        return _failed("elastic", e)
    rec = _record(oracle, res)
    rec["units"] = {n: oracle.units[n] for n in (*oracle.output_names, "temperature")}
    _emit(rec)
    return 1 if rec["failed"] else 0


def run_surface(args: argparse.Namespace) -> int:
    from oracles.atomistic.surface import SurfaceOracle

    try:
        cfg = _settings("surface", dict(
            element=args.element, miller=list(args.miller), structure=args.structure, engine=args.engine,
            engine_params=_engine_params(args) or None, a_guess=args.a_guess, min_thickness=args.thickness,
            max_opening=args.max_opening,
        ))
        oracle = SurfaceOracle(**cfg.model_dump(exclude_unset=True))
        res = oracle.evaluate([[args.strain]], fidelity=1 if args.relax else 0)
    except InvalidInput as e:
        return _bad_input("surface", e)
    except OracleError as e:
        return _failed("surface", e)
    rec = _record(oracle, res)
    rec["miller"] = list(oracle.miller)
    rec["units"] = {n: oracle.units[n] for n in oracle.output_names}
    _emit(rec)
    return 1 if rec["failed"] else 0


#: the examples of ``--help``
_EXAMPLES = {
    "elastic": """examples:
  scalebridge elastic --element Cu --temperature 0            # static, fidelity 0
  scalebridge elastic --element Cu --temperature 300 --fidelity 1 --size 5 --steps 500
  scalebridge elastic --element Cu --engine lj --lj-sigma 2.338 --lj-epsilon 0.409

exit status 0 on success, 1 when the point failed (the reason is in the JSON), 2 on bad options""",
    "surface": """examples:
  scalebridge surface --element Cu --miller 1 1 1             # gamma, UBER 2gamma, l, sigma_max
  scalebridge surface --element Cu --miller 1 0 0 --relax --strain 0.01

exit status 0 on success, 1 when the point failed (the reason is in the JSON), 2 on bad options""",
}


def register(subparsers, name: str) -> None:
    """Add the ``elastic`` or ``surface`` parser (called once per name)."""
    if name == "elastic":
        p = subparsers.add_parser(name, help="elastic constants of a cubic crystal; prints JSON",
                                  description="C11, C12, C44 (GPa) and a (A) at a temperature.",
                                  epilog=_EXAMPLES[name], formatter_class=argparse.RawDescriptionHelpFormatter)
        _engine_args(p)
        p.add_argument("--temperature", type=float, default=0.0, help="K (default 0)")
        p.add_argument("--strain", type=float, default=0.0, help="hydrostatic strain (default 0)")
        p.add_argument("--fidelity", type=int, default=0, choices=[0, 1],
                       help="0: static Cauchy-Born; 1: Langevin MD")
        p.add_argument("--size", type=int, default=5, help="MD supercell, conventional cells per side (2 to 40)")
        p.add_argument("--steps", type=int, default=500, help="MD sampled steps per strained run")
        p.add_argument("--timestep", type=float, default=5.0, help="MD time step (fs)")
        p.add_argument("--md-strain", type=float, default=0.005, help="MD +- strain amplitude")
        p.add_argument("--blocks", type=int, default=None,
                       help="blocks for the standard error (default: min(20, steps / 4 samples))")
        p.add_argument("--seed", type=int, default=0)
        p.set_defaults(func=run_elastic)
    elif name == "surface":
        p = subparsers.add_parser(name, help="surface energy and UBER decohesion fit; prints JSON",
                                  description="gamma, 2gamma, l, sigma_max of an (hkl) surface.",
                                  epilog=_EXAMPLES[name], formatter_class=argparse.RawDescriptionHelpFormatter)
        _engine_args(p)
        p.add_argument("--miller", type=int, nargs=3, default=[1, 1, 1], metavar=("H", "K", "L"))
        p.add_argument("--strain", type=float, default=0.0, help="hydrostatic strain (default 0)")
        p.add_argument("--relax", action="store_true", help="relax the surface (fidelity 1)")
        p.add_argument("--thickness", type=float, default=12.0,
                       help="minimum slab thickness (A), at least twice the lattice parameter")
        p.add_argument("--max-opening", type=float, default=8.0, help="largest opening (A)")
        p.set_defaults(func=run_surface)
    else:
        raise ValueError(f"oracles.atomistic.cli registers 'elastic' and 'surface', got {name!r}")
