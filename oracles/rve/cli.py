r"""``scalebridge rve``: homogenize one RVE at a macro strain and print JSON.

Options (names as in the ``[oracle]`` settings of :mod:`loops.oracle_settings`)::

    --dim {2,3}              spatial dimension (default 2; 2 = plane strain)
    --grid N [N ...]         voxels per axis: one value (cubic grid) or dim values (default 63)
    --microstructure KIND    inclusion | cube_inclusion | laminate | random_fibres |
                             voronoi_polycrystal | FILE.npy | IMAGE (default inclusion);
                             a file sets dim and grid. An image (.png, .tif, ...) has one
                             phase per colour; a multi-page .tif stack is a 3D map, its
                             pages along the first axis
    --radius-fraction R      inclusion or fibre radius / N (default 0.25 inclusion, 0.1 fibres)
    --volume-fraction F      fibre volume fraction (default 0.3)
    --fraction F             laminate layer fraction (default 0.5)
    --size S                 cube inclusion edge in voxels (default N // 3)
    --n-grains G             number of Voronoi grains (default 8)
    --seed S                 seed of random microstructures (default 0)
    --finite                 finite strain (F in, first Piola-Kirchhoff P out)
    --law LAW                isotropic_elastic | cubic_elastic | st_venant_kirchhoff | neo_hookean
                             (default isotropic_elastic; st_venant_kirchhoff when --finite)
    --E E0 E1 ...            Young's moduli per phase (default 1 10), with --nu
    --nu NU0 NU1 ...         Poisson ratios per phase (default 0.3 per phase)
    --K K0 K1 ... --mu M0 M1 ...   bulk and shear moduli instead of E, nu
    --cubic C11 C12 C44      cubic constants of every grain (--law cubic_elastic; orientations
                             random per grain with --seed)
    --strain e11 e22 e12     small-strain macro strain, tensor components in Voigt order
                             (2D: 3 values; 3D: e11 e22 e33 e23 e13 e12) (default 0.01 0 0...)
    --F F11 F12 ...          finite-strain macro deformation gradient, row-major
                             (k*k values; default identity + 0.01 e11)
    --no-tangent             skip the consistent tangent
    --cg-tol T               CG tolerance (default 1e-8)
    --newton-tol T           Newton tolerance (default 1e-8)
    --device DEV             torch device (default cpu)
    --threads T              torch threads (default: torch's choice)

Examples::

    scalebridge rve --dim 2 --grid 63 --microstructure inclusion --radius-fraction 0.25 \
        --E 1 10 --nu 0.3 0.3 --strain 0.01 0 0
    scalebridge rve --dim 3 --grid 31 --microstructure cube_inclusion --size 9 --finite \
        --law st_venant_kirchhoff --K 0.833 8.33 --mu 0.386 3.86 --F 1 1 0 0 1 0 0 0 1

The JSON holds ``stress`` (``k x k``), ``tangent`` (``k x k x k x k``, or null),
``newton_iterations``, ``cg_iterations``, ``residual``, ``wall_time``, ``units`` and the
configuration. Bad options (a wrong value, an old spelling, a grid that
does not fit in memory, an image with more colours than phase laws) print one
line ``scalebridge rve: error: ...`` naming the value and what is allowed, and
return 2; nothing is computed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from oracles._cli import with_options
from oracles.exceptions import OracleError

if TYPE_CHECKING:
    import torch

# torch, numpy and pydantic are imported by the functions that compute, not here: `scalebridge rve
# --help` and its usage errors answer without them

__all__ = ["build", "register", "run"]


#: earlier option spellings -> current ones
_OLD_OPTIONS = {"--radius": "--radius-fraction", "--grains": "--n-grains"}
#: settings key (``loops.oracle_settings.RVESettings``) -> option
_OPTION_OF = {
    "microstructure.radius_fraction": "--radius-fraction", "microstructure.volume_fraction": "--volume-fraction",
    "microstructure.fraction": "--fraction", "microstructure.size": "--size", "microstructure.n_grains": "--n-grains",
    "microstructure.seed": "--seed", "microstructure": "--microstructure", "grid": "--grid", "dim": "--dim",
    "cg_tol": "--cg-tol", "newton_tol": "--newton-tol", "device": "--device",
}


class _Renamed(argparse.Action):
    """An option that was renamed: parsing it is an error naming the new spelling."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is now spelled {_OLD_OPTIONS[option_string]}")


def _one_line_error(prog: str):
    def error(message: str):
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    return error


def register(subparsers, name: str = "rve") -> None:
    p = subparsers.add_parser(
        name,
        help="homogenize one RVE at a macro strain; prints JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.error = _one_line_error("scalebridge rve")
    p.add_argument("--dim", type=int, choices=(2, 3), default=None, help="2 or 3 (default 2; an image sets its own)")
    p.add_argument("--grid", type=int, nargs="+", default=None, help="voxels per side (default 63; an image sets its own)")
    p.add_argument("--microstructure", default="inclusion")
    p.add_argument("--radius-fraction", type=float, default=None)
    p.add_argument("--volume-fraction", type=float, default=None)
    p.add_argument("--fraction", type=float, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--n-grains", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    for old in _OLD_OPTIONS:
        p.add_argument(old, action=_Renamed, nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--finite", action="store_true")
    p.add_argument("--law", default=None)
    p.add_argument("--E", type=float, nargs="+", default=None)
    p.add_argument("--nu", type=float, nargs="+", default=None)
    p.add_argument("--K", type=float, nargs="+", default=None)
    p.add_argument("--mu", type=float, nargs="+", default=None)
    p.add_argument("--cubic", type=float, nargs=3, default=None)
    p.add_argument("--strain", type=float, nargs="+", default=None)
    p.add_argument("--F", type=float, nargs="+", default=None)
    p.add_argument("--no-tangent", action="store_true")
    p.add_argument("--cg-tol", type=float, default=1e-8)
    p.add_argument("--newton-tol", type=float, default=1e-8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run)


def _is_file(kind: str) -> bool:
    from oracles.rve.microstructure import _IMAGE_SUFFIXES

    return Path(kind).suffix.lower() in {".npy", *_IMAGE_SUFFIXES}


def _microstructure_settings(args, grid: tuple[int, ...]) -> dict:
    """The ``microstructure`` settings table of the options (or a phase-map file)."""
    from loops.oracle_settings import _OLD_MICRO, MICROSTRUCTURE_KINDS, respell

    kind = args.microstructure
    if _is_file(kind):
        if Path(kind).is_dir():
            raise ValueError(f"--microstructure {kind!r} is a directory, not a .npy/image file")
        return {"kind": "phase_map", "source": kind}
    kinds = [k for k in MICROSTRUCTURE_KINDS if k != "phase_map"]
    respell(kind, _OLD_MICRO, kinds, "--microstructure")
    if kind not in kinds:
        raise ValueError(f"--microstructure {kind!r} is not one of {kinds} or a .npy/image file")
    given = {
        "radius_fraction": args.radius_fraction, "volume_fraction": args.volume_fraction,
        "fraction": args.fraction, "size": args.size, "n_grains": args.n_grains,
    }
    fields = {
        "inclusion": ("radius_fraction",), "cube_inclusion": ("size",), "laminate": ("fraction",),
        "random_fibres": ("volume_fraction", "radius_fraction"), "voronoi_polycrystal": ("n_grains",),
    }[kind]
    stray = [k for k, v in given.items() if v is not None and k not in fields]
    if stray:
        opts = ", ".join("--" + k.replace("_", "-") for k in stray)
        allowed = ", ".join("--" + k.replace("_", "-") for k in fields)
        raise ValueError(f"{opts} does not apply to --microstructure {kind}; it takes {allowed}")
    spec: dict = {"kind": kind, **{k: given[k] for k in fields if given[k] is not None}}
    if kind == "cube_inclusion" and args.size is None:
        spec["size"] = max(1, min(grid) // 3)
    if kind in ("random_fibres", "voronoi_polycrystal"):
        spec["seed"] = args.seed
    return spec


def _law_name(args) -> str:
    from loops.oracle_settings import _OLD_LAWS, FINITE_STRAIN_LAWS, LAW_KINDS, respell

    law = args.law or ("st_venant_kirchhoff" if args.finite else "isotropic_elastic")
    respell(law, _OLD_LAWS, list(LAW_KINDS), "--law")
    if law not in LAW_KINDS:
        raise ValueError(f"--law {law!r} is not one of {list(LAW_KINDS)}")
    if args.finite != (law in FINITE_STRAIN_LAWS):
        allowed = list(FINITE_STRAIN_LAWS) if args.finite else [k for k in LAW_KINDS if k not in FINITE_STRAIN_LAWS]
        raise ValueError(f"--law {law} does not fit {'finite' if args.finite else 'small'} strain; use one of {allowed}")
    return law


def _phase_settings(args, law: str, n_phases: int | None) -> list[dict]:
    """One phase settings table per phase (``n_phases`` None: as many as moduli given)."""
    isotropic = [o for o, v in (("--E", args.E), ("--nu", args.nu), ("--K", args.K), ("--mu", args.mu)) if v is not None]
    if law == "cubic_elastic" and isotropic:
        raise ValueError(f"{', '.join(isotropic)} does not apply to --law cubic_elastic; it takes --cubic C11 C12 C44")
    if law != "cubic_elastic" and args.cubic is not None:
        raise ValueError(f"--cubic applies to --law cubic_elastic only; --law {law} takes --E/--nu or --K/--mu")
    if (args.E is not None or args.nu is not None) and (args.K is not None or args.mu is not None):
        raise ValueError("give the phases' moduli as --E/--nu or as --K/--mu, not both")
    if law == "cubic_elastic":
        C11, C12, C44 = args.cubic or (3.0, 1.5, 1.2)
        return [{"law": law, "C11": C11, "C12": C12, "C44": C44}] * (n_phases or 1)
    if args.K is not None or args.mu is not None:
        if args.K is None or args.mu is None or len(args.K) != len(args.mu):
            raise ValueError(f"--K and --mu need one value per phase each, got K={args.K}, mu={args.mu}")
        pairs = [{"K": a, "mu": b} for a, b in zip(args.K, args.mu, strict=True)]
        given = "--K/--mu"
    else:
        E = args.E or [1.0, 10.0]
        nu = args.nu or [0.3] * len(E)
        if len(E) != len(nu):
            raise ValueError(f"--E and --nu need one value per phase each, got E={E}, nu={nu}")
        pairs = [{"E": a, "nu": b} for a, b in zip(E, nu, strict=True)]
        given = "--E/--nu" if args.E else "the default --E 1 10"
    if n_phases is not None and len(pairs) != n_phases:
        has = (f"image {args.microstructure!r} has {n_phases} colours (phases)" if _is_file(args.microstructure)
               else f"--microstructure {args.microstructure} has {n_phases} phases")
        raise ValueError(f"{has} but {given} gives {len(pairs)}; give one per phase")
    return [{"law": law, **p} for p in pairs]


def _settings_error(lines: list[str]) -> str:
    """Settings errors with the CLI's option names."""
    out = []
    for line in with_options(lines, _OPTION_OF):
        line = re.sub(r"^phases\.(\d+)\.(\w+)", lambda m: f"--{m.group(2)} (phase {m.group(1)})", line)
        # a whole phase's error (the cubic constants given once for every phase): name the option, once
        line = re.sub(r"^phases\.\d+: (C11 = )", r"--cubic: \1", line)
        line = re.sub(r"^--(C11|C12|C44) \(phase \d+\)", r"--cubic (\1)", line)
        if line not in out:
            out.append(line)
    return "; ".join(out)


def build(args):
    """The :class:`RVEOracle` of parsed options, checked by :class:`loops.oracle_settings.RVESettings`.

    Raises:
        InvalidInput: one line naming the option, its value and what is allowed.
    """
    import torch
    from pydantic import ValidationError

    from loops.oracle_settings import RVESettings, format_errors, settings_kwargs
    from oracles.exceptions import InvalidInput
    from oracles.rve import laws
    from oracles.rve.microstructure import PhaseMap, check_grid_memory
    from oracles.rve.oracle import RVEOracle

    given_dim = args.dim
    k = args.dim = args.dim or 2
    given_grid = args.grid
    args.grid = args.grid or [63]
    if len(args.grid) not in (1, k):
        raise InvalidInput(f"--grid needs 1 or {k} values, got {args.grid}")
    grid = tuple(args.grid) * k if len(args.grid) == 1 else tuple(args.grid)
    try:
        micro = _microstructure_settings(args, grid)
        law = _law_name(args)
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    n_phases = None
    if micro["kind"] == "phase_map":
        pm = PhaseMap(micro["source"])
        if given_grid is not None:
            raise InvalidInput(f"--grid does not apply to an image microstructure: {micro['source']!r} sets the grid "
                               f"({'x'.join(map(str, pm.shape))}); resample the image for another grid")
        if given_dim is not None and given_dim != len(pm.shape):
            raise InvalidInput(f"--dim {given_dim} does not apply to {micro['source']!r}: the image is "
                               f"{len(pm.shape)}D ({'x'.join(map(str, pm.shape))})")
        grid, k, n_phases = pm.shape, len(pm.shape), pm.num_phases
        check_grid_memory(grid, finite=args.finite)
    elif micro["kind"] == "voronoi_polycrystal":
        n_phases = micro.get("n_grains", 8)
        if isinstance(n_phases, int) and n_phases < 1:
            raise InvalidInput(f"--n-grains must be >= 1, got {n_phases}")
    else:
        n_phases = 2
    try:
        phases = _phase_settings(args, law, n_phases)
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    if micro["kind"] == "phase_map" and n_phases is not None and len(phases) != n_phases:
        raise InvalidInput(f"image {micro['source']!r} has {n_phases} colours (phases) but {len(phases)} phase laws are given")
    data = {"phases": phases, "microstructure": micro, "grid": list(grid), "dim": k,
            "cg_tol": args.cg_tol, "newton_tol": args.newton_tol, "device": args.device}
    try:
        cfg = RVESettings.model_validate(data)
    except ValidationError as e:
        raise InvalidInput(_settings_error(format_errors(e, RVESettings, data))) from None
    if law == "cubic_elastic":
        g = torch.Generator().manual_seed(args.seed)
        Rs = []
        for _ in range(len(phases)):
            Q, R = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
            Q = Q * torch.sign(torch.diagonal(R))
            if torch.det(Q) < 0:
                Q[:, 0] = -Q[:, 0]
            Rs.append(Q)
        C = phases[0]
        kw = settings_kwargs(cfg)
        return RVEOracle(
            laws.CubicElastic.grains(C["C11"], C["C12"], C["C44"], torch.stack(Rs)),
            pm if micro["kind"] == "phase_map" else cfg.build().microstructure,
            grid=grid, cg_tol=kw["cg_tol"], newton_tol=kw["newton_tol"], device=args.device,
        )
    return cfg.build()


def _load(args, k: int) -> torch.Tensor:
    import torch

    if args.finite and args.strain is not None:
        raise ValueError("--strain is the small-strain load; with --finite give the deformation gradient --F")
    if not args.finite and args.F is not None:
        raise ValueError("--F is the finite-strain load (with --finite); at small strain give --strain")
    if args.finite:
        vals = args.F
        if vals is None:
            F = torch.eye(k, dtype=torch.float64)
            F[0, 0] += 0.01
            return F
        if len(vals) != k * k:
            raise ValueError(f"--F needs {k * k} values (row-major) in {k}D, got {len(vals)}")
        return torch.tensor(vals, dtype=torch.float64).reshape(k, k)
    comps = [(0, 0), (1, 1), (0, 1)] if k == 2 else [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    vals = args.strain or [0.01] + [0.0] * (len(comps) - 1)
    if len(vals) != len(comps):
        raise ValueError(f"--strain needs {len(comps)} values in {k}D, got {len(vals)}")
    eps = torch.zeros(k, k, dtype=torch.float64)
    for v, (i, j) in zip(vals, comps, strict=True):
        eps[i, j] = eps[j, i] = v
    return eps


def run(args) -> int:
    import numpy as np
    import torch

    from oracles.rve.microstructure import PhaseMap

    if args.threads is not None:
        if args.threads < 1:
            print(f"scalebridge rve: error: --threads must be a positive integer, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    try:
        oracle = build(args)
        micro, grid, k = oracle.microstructure, oracle.grid, oracle.k
        phases = oracle.phases
        load = _load(args, k)
        n_vox = math.prod(grid)
        if n_vox > 2_000_000:
            from oracles.rve.microstructure import grid_memory_estimate

            gb = grid_memory_estimate(grid, args.finite) / 1e9
            print(f"scalebridge rve: {n_vox:.3g} voxels (about {gb:.2g} GB): this solve takes minutes", file=sys.stderr)
        t0 = time.perf_counter()
        res = oracle.homogenize(load, tangent=not args.no_tangent)
        wall = time.perf_counter() - t0
    except (OracleError, ValueError) as e:
        print(f"scalebridge rve: error: {e}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        from oracles.memory import out_of_memory, out_of_memory_message

        if not out_of_memory(e):
            raise
        print(f"scalebridge rve: error: {out_of_memory_message(e)}", file=sys.stderr)
        return 2
    micro = args.microstructure if isinstance(micro, (np.ndarray, PhaseMap)) else micro
    out = {
        "dim": k,
        "grid": list(grid),
        "finite_strain": bool(args.finite),
        "microstructure": micro if isinstance(micro, str) else repr(micro),
        "phases": [repr(p) for p in phases],
        "load": load.tolist(),
        "stress": res.stress[0].tolist(),
        "tangent": None if res.tangent is None else res.tangent[0].tolist(),
        "newton_iterations": res.newton_iterations,
        "cg_iterations": res.cg_iterations,
        "residual": float(res.residual.max()),
        "wall_time": wall,
        "units": {"stress": "as the moduli", "tangent": "as the moduli", "wall_time": "s"},
    }
    if not all(math.isfinite(v) for v in res.stress.flatten().tolist()):
        option, values = ("--F", args.F) if args.finite else ("--strain", args.strain)
        print(f"scalebridge rve: error: the stress at {option} {' '.join(f'{v:g}' for v in values or [])} is not "
              "finite (it overflows float64): use a smaller load", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1))
    return 0
