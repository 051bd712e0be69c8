r"""``scalebridge rve``: homogenize one RVE at a macro strain and print JSON.

Options::

    --dim {2,3}              spatial dimension (default 2; 2 = plane strain)
    --grid N [N ...]         voxels per axis: one value (cubic grid) or dim values (default 63)
    --microstructure KIND    inclusion | cube | laminate | fibres | voronoi | FILE.npy | IMAGE.png
                             (default inclusion)
    --radius R               inclusion radius / N, or fibre radius / N (default 0.25)
    --fraction F             laminate layer fraction or fibre volume fraction (default 0.3)
    --size S                 cube inclusion edge in voxels (default N // 3)
    --grains G               number of Voronoi grains (default 8)
    --seed S                 seed of random microstructures (default 0)
    --finite                 finite strain (F in, first Piola-Kirchhoff P out)
    --law {linear,cubic,svk,neohookean}
                             phase law (default linear; svk when --finite)
    --E E0 E1 ...            Young's moduli per phase (default 1 10), with --nu
    --nu NU0 NU1 ...         Poisson ratios per phase (default 0.3 0.3)
    --K K0 K1 ... --mu M0 M1 ...   bulk and shear moduli instead of E, nu
    --cubic C11 C12 C44      cubic constants of every grain (--law cubic; orientations
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

    scalebridge rve --dim 2 --grid 63 --microstructure inclusion --radius 0.25 \
        --E 1 10 --nu 0.3 0.3 --strain 0.01 0 0
    scalebridge rve --dim 3 --grid 31 --microstructure cube --size 9 --finite --law svk \
        --K 0.833 8.33 --mu 0.386 3.86 --F 1 1 0 0 1 0 0 0 1

The JSON holds ``stress`` (``k x k``), ``tangent`` (``k x k x k x k``, or null),
``newton_iterations``, ``cg_iterations``, ``residual``, ``wall_time`` and the
configuration. Bad options print ``error: ...`` and return 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from oracles.exceptions import OracleError

__all__ = ["register", "run"]


def register(subparsers, name: str = "rve") -> None:
    p = subparsers.add_parser(
        name,
        help="homogenize one RVE at a macro strain; prints JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dim", type=int, choices=(2, 3), default=2)
    p.add_argument("--grid", type=int, nargs="+", default=[63])
    p.add_argument("--microstructure", default="inclusion")
    p.add_argument("--radius", type=float, default=0.25)
    p.add_argument("--fraction", type=float, default=0.3)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--grains", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--finite", action="store_true")
    p.add_argument("--law", choices=("linear", "cubic", "svk", "neohookean"), default=None)
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


def _microstructure(args, grid):
    from oracles.rve import microstructure as ms

    kind = args.microstructure
    if Path(kind).suffix.lower() in {".npy", *ms._IMAGE_SUFFIXES}:
        return ms.PhaseMap(kind)  # a .npy array or a segmented image
    if kind == "inclusion":
        return ms.Inclusion(radius_fraction=args.radius)
    if kind == "cube":
        return ms.CubeInclusion(size=args.size or max(1, min(grid) // 3), centred=True)
    if kind == "laminate":
        return ms.Laminate(fraction=args.fraction)
    if kind == "fibres":
        return ms.RandomFibres(volume_fraction=args.fraction, radius_fraction=args.radius, seed=args.seed)
    if kind == "voronoi":
        return ms.VoronoiPolycrystal(n_grains=args.grains, seed=args.seed)
    raise ValueError(
        f"--microstructure must be inclusion, cube, laminate, fibres, voronoi or a .npy file, got {kind!r}"
    )


def _phases(args, n_phases: int):
    from oracles.rve import laws

    law = args.law or ("svk" if args.finite else "linear")
    if args.finite != (law in ("svk", "neohookean")):
        raise ValueError(f"--law {law} does not fit {'finite' if args.finite else 'small'} strain")
    if law == "cubic":
        C11, C12, C44 = args.cubic or (3.0, 1.5, 1.2)
        g = torch.Generator().manual_seed(args.seed)
        Rs = []
        for _ in range(n_phases):
            Q, R = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
            Q = Q * torch.sign(torch.diagonal(R))
            if torch.det(Q) < 0:
                Q[:, 0] = -Q[:, 0]
            Rs.append(Q)
        return laws.CubicElastic.grains(C11, C12, C44, torch.stack(Rs))
    cls = {"linear": laws.IsotropicElastic, "svk": laws.StVenantKirchhoff, "neohookean": laws.NeoHookean}[law]
    if args.K is not None or args.mu is not None:
        if args.K is None or args.mu is None or len(args.K) != len(args.mu):
            raise ValueError(f"--K and --mu need one value per phase each, got K={args.K}, mu={args.mu}")
        pairs = [dict(K=a, mu=b) for a, b in zip(args.K, args.mu, strict=True)]
    else:
        E = args.E or [1.0, 10.0]
        nu = args.nu or [0.3] * len(E)
        if len(E) != len(nu):
            raise ValueError(f"--E and --nu need one value per phase each, got E={E}, nu={nu}")
        pairs = [dict(E=a, nu=b) for a, b in zip(E, nu, strict=True)]
    return [cls(**p) for p in pairs]


def _load(args, k: int) -> torch.Tensor:
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
    from oracles.rve.oracle import RVEOracle

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        k = args.dim
        if len(args.grid) not in (1, k):
            raise ValueError(f"--grid needs 1 or {k} values, got {args.grid}")
        grid = tuple(args.grid) * k if len(args.grid) == 1 else tuple(args.grid)
        micro = _microstructure(args, grid)
        if isinstance(micro, np.ndarray):
            grid = tuple(micro.shape)
            k = len(grid)
        n_phases = int(micro.max()) + 1 if isinstance(micro, np.ndarray) else getattr(micro, "num_phases", 2)
        if args.microstructure == "voronoi":
            n_phases = args.grains
        phases = _phases(args, n_phases)
        oracle = RVEOracle(
            phases, micro, grid=grid, cg_tol=args.cg_tol, newton_tol=args.newton_tol, device=args.device
        )
        load = _load(args, k)
        t0 = time.perf_counter()
        res = oracle.homogenize(load, tangent=not args.no_tangent)
        wall = time.perf_counter() - t0
    except (OracleError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = {
        "dim": k,
        "grid": list(grid),
        "finite_strain": bool(args.finite),
        "microstructure": repr(micro) if not isinstance(micro, np.ndarray) else args.microstructure,
        "phases": [repr(p) for p in phases],
        "load": load.tolist(),
        "stress": res.stress[0].tolist(),
        "tangent": None if res.tangent is None else res.tangent[0].tolist(),
        "newton_iterations": res.newton_iterations,
        "cg_iterations": res.cg_iterations,
        "residual": float(res.residual.max()),
        "wall_time": wall,
    }
    if not all(math.isfinite(v) for v in res.stress.flatten().tolist()):
        print("error: non-finite stress", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=1))
    return 0
