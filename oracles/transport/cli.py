r"""``scalebridge conductivity`` and ``scalebridge permeability``: one voxel
microstructure in, its effective tensor out as JSON.

Options (both)::

    --dim {2,3}              spatial dimension (default 3; a FILE.npy has its own)
    --grid N [N ...]         voxels per axis: one value (cubic grid) or dim values (default 32;
                             a FILE.npy has its own)
    --microstructure KIND    slit | cylinders | spheres | overlapping | polydisperse | blobs |
                             fibres | FILE.npy (default overlapping)
    --porosity P             pore fraction of the random media (default 0.5)
    --radius R               grain / cylinder / fibre radius as a fraction of the cell (default 0.1)
    --fraction F             slit channel fraction (default 0.5)
    --blobiness B            blobs: larger is finer (default 1)
    --spread S               polydisperse: relative spread of the radii (default 0.2)
    --seed S                 seed of the random media (default 0)
    --threads T              torch threads (default: torch's choice)

``conductivity``::

    --conductivity S0 S1 ...  conductivity per phase (default 1 0.1: pores, solid);
                              a FILE.npy is a phase map of integer ids 0..p-1
    --discretization {staggered,spectral}   (default staggered)
    --tortuosity             also the tortuosity factor of phase 0 in insulating solid
    --cg-tol T               relative CG tolerance (default 1e-8)

``permeability`` (a FILE.npy holds 1 or True on solid voxels)::

    --voxel-size H           voxel edge in m (default 1e-6)
    --viscosity MU           dynamic viscosity in Pa s (default 1e-3), for the mobility k / mu
    --wall {half,any}        which velocity nodes are no-slip (default half)
    --tol T                  relative CG tolerance of the slip velocity (default 1e-6)

Examples::

    scalebridge conductivity --dim 2 --grid 64 --microstructure cylinders --radius 0.3 \
        --conductivity 1 10
    scalebridge permeability --dim 3 --grid 32 --microstructure spheres --radius 0.3 --voxel-size 1e-6

The JSON holds ``tensor`` (``k x k``; permeability in m², with ``tensor_darcy``
beside it), ``iterations``, ``residual``, ``wall_time``, ``units``, the configuration, and
``porosity`` (permeability) or ``volume_fractions`` per phase (conductivity). Bad options
print one line ``scalebridge COMMAND: error: ...`` naming the option and its value, and
return 2. ``permeability`` of a pore space that does not percolate prints a zero tensor
with ``percolates: false`` and its message, and returns 0; ``conductivity --tortuosity``
of a phase that does not percolate along an axis prints ``scalebridge conductivity: error: ...``
and returns 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from oracles.exceptions import OracleError

__all__ = ["register", "run_conductivity", "run_permeability"]


def _common(p) -> None:
    p.add_argument("--dim", type=int, choices=(2, 3), default=None)
    p.add_argument("--grid", type=int, nargs="+", default=None)
    p.add_argument("--microstructure", default="overlapping")
    p.add_argument("--porosity", type=float, default=0.5)
    p.add_argument("--radius", type=float, default=0.1)
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--blobiness", type=float, default=1.0)
    p.add_argument("--spread", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)


def register(subparsers, name: str) -> None:
    if name == "conductivity":
        p = subparsers.add_parser(
            name,
            help="effective conductivity (and tortuosity) of a voxel microstructure; prints JSON",
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p)
        p.add_argument("--conductivity", type=float, nargs="+", default=[1.0, 0.1])
        p.add_argument("--discretization", choices=("staggered", "spectral"), default="staggered")
        p.add_argument("--tortuosity", action="store_true")
        p.add_argument("--cg-tol", type=float, default=1e-8)
        p.set_defaults(func=run_conductivity)
    elif name == "permeability":
        p = subparsers.add_parser(
            name,
            help="Darcy permeability of a voxel pore space (m² and darcy); prints JSON",
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p)
        p.add_argument("--voxel-size", type=float, default=1e-6)
        p.add_argument("--viscosity", type=float, default=1e-3)
        p.add_argument("--wall", choices=("half", "any"), default="half")
        p.add_argument("--tol", type=float, default=1e-6)
        p.set_defaults(func=run_permeability)
    else:
        raise ValueError(f"unknown transport command {name!r}")


#: units of the numbers in the JSON of ``permeability``
PERMEABILITY_UNITS = {"tensor": "m^2", "tensor_darcy": "darcy", "mobility": "m^2/(Pa s)", "voxel_size": "m",
                      "viscosity": "Pa s", "wall_time": "s"}

#: peak memory of a solve per voxel (bytes) by dimension, measured with ``/usr/bin/time`` on
#: 1e5-1e6 voxels (conductivity 2D 520, 3D 900-1010 on 32^3-96^3; permeability 2D 380, 3D 560-640): the
#: larger of the two
BYTES_PER_VOXEL = {2: 520.0, 3: 1000.0}


#: parameter name in the messages of :mod:`oracles.transport` -> option
_OPTION_OF = {
    "radius_fraction": "--radius", "porosity": "--porosity", "fraction": "--fraction", "blobiness": "--blobiness",
    "spread": "--spread", "seed": "--seed", "cg_tol": "--cg-tol", "tol": "--tol", "voxel_size": "--voxel-size",
    "grid": "--grid",
}


def _error(command: str, args, e: Exception) -> int:
    """Print ``e`` as one line ``scalebridge COMMAND: error: ...``, its parameter named by its option, and
    return 2. An image's own shape is not ``--grid``: with ``FILE.npy`` a grid message keeps its name."""
    msg = str(e)
    key = msg.split(" ", 1)[0]
    if key in _OPTION_OF and not (key == "grid" and args.microstructure.lower().endswith(".npy")):
        msg = _OPTION_OF[key] + msg[len(key):]
    print(f"scalebridge {command}: error: {msg}", file=sys.stderr)
    return 2


def _check_conductivities(args, micro) -> None:
    """``--conductivity``: finite, non-negative, and one per phase (two for the generated media:
    pores, solid); ValueError naming the option and the values otherwise."""
    from oracles.transport.porous import PoreImage

    vals = list(args.conductivity)
    if not all(math.isfinite(v) and v >= 0 for v in vals):
        raise ValueError(f"--conductivity must be finite non-negative numbers, one per phase, got {vals}")
    if not isinstance(micro, PoreImage) and len(vals) != 2:
        raise ValueError(f"--conductivity needs 2 values (pores, solid) for --microstructure {args.microstructure}, "
                         f"got {len(vals)}: {vals}")


def _grid(args) -> tuple[int, ...]:
    k = 3 if args.dim is None else args.dim
    grid = [32] if args.grid is None else args.grid
    if len(grid) not in (1, k):
        raise ValueError(f"--grid needs 1 or {k} values, got {grid}")
    shape = tuple(grid) * k if len(grid) == 1 else tuple(grid)
    check_memory(shape, "--grid")
    return shape


def memory_estimate(shape: tuple[int, ...]) -> float:
    """Estimated peak memory (bytes) of a conductivity or permeability solve on ``shape``."""
    return math.prod(shape) * BYTES_PER_VOXEL[len(shape)]


def check_memory(shape: tuple[int, ...], what: str = "grid", memory: float | None = None) -> None:
    """ValueError naming the grid, the estimate, the memory available (default:
    :func:`oracles.memory.available_memory`) and the largest grid that fits,
    when a solve on ``shape`` would not fit."""
    from oracles import memory as mem

    k = len(shape)
    need = memory_estimate(shape)
    have = mem.available_memory() if memory is None else float(memory)
    if need > have:
        g = mem.grid_name(shape)
        fit = int((have / BYTES_PER_VOXEL[k]) ** (1.0 / k))
        raise ValueError(f"{what} {g} needs about {need / 1e9:.3g} GB; this machine has {have / 1e9:.3g} GB "
                         f"available: use a coarser grid (about {fit}^{k} fits)")


def _check_image(args, arr: np.ndarray) -> np.ndarray:
    """``arr``, the image of ``--microstructure FILE.npy``, after checking that
    ``--dim`` and ``--grid``, where given, describe it."""
    if args.dim is not None and args.dim != arr.ndim:
        raise ValueError(f"--dim {args.dim} does not apply to {args.microstructure!r}: the image is "
                         f"{arr.ndim}D (shape {arr.shape}); leave --dim out")
    if args.grid is not None:
        g = tuple(args.grid) * arr.ndim if len(args.grid) == 1 else tuple(args.grid)
        if g != arr.shape:
            raise ValueError(f"--grid {' '.join(map(str, args.grid))} does not apply to {args.microstructure!r}: "
                             f"the image has shape {arr.shape}; leave --grid out")
    if arr.ndim in (2, 3):
        check_memory(arr.shape, "image")
    return arr


def _micro(args):
    from oracles.transport import porous

    kind = args.microstructure
    if kind.lower().endswith(".npy"):
        return porous.PoreImage(kind)
    params = {
        "slit": {"fraction": args.fraction},
        "cylinders": {"radius_fraction": args.radius},
        "spheres": {"radius_fraction": args.radius},
        "overlapping": {
            "porosity": args.porosity,
            "radius_fraction": args.radius,
            "seed": args.seed,
        },
        "polydisperse": {
            "porosity": args.porosity,
            "radius_fraction": args.radius,
            "spread": args.spread,
            "seed": args.seed,
        },
        "blobs": {"porosity": args.porosity, "blobiness": args.blobiness, "seed": args.seed},
        "fibres": {"porosity": args.porosity, "radius_fraction": args.radius, "seed": args.seed},
    }
    if kind not in params:
        raise ValueError(
            f"--microstructure must be one of {sorted(params)} or a .npy file, got {kind!r}"
        )
    return porous.microstructure(kind, **params[kind])


def _image(args, micro) -> np.ndarray:
    from oracles.transport.porous import PoreImage

    if isinstance(micro, PoreImage):
        return _check_image(args, micro.load())
    return micro.solid(_grid(args))


def run_conductivity(args) -> int:
    from oracles.transport.conductivity import ConductivitySolver, tortuosity
    from oracles.transport.porous import PoreImage

    if args.threads is not None:
        if args.threads < 1:
            return _error("conductivity", args, ValueError(f"--threads must be a positive integer, got {args.threads}"))
        import torch

        torch.set_num_threads(args.threads)
    try:
        micro = _micro(args)
        _check_conductivities(args, micro)
        if isinstance(micro, PoreImage):
            from oracles.rve.microstructure import read_npy

            pm = _check_image(args, read_npy(micro.path, "phase map"))
            if pm.dtype == bool:
                pm = pm.astype(np.int64)
        else:
            pm = micro.solid(_grid(args)).astype(np.int64)
        t0 = time.perf_counter()
        res = ConductivitySolver(
            pm, list(args.conductivity), discretization=args.discretization, cg_tol=args.cg_tol
        ).solve()
        tort = None
        if args.tortuosity:
            tr = tortuosity(pm == 0, discretization=args.discretization, cg_tol=args.cg_tol)
            tort = tr.tau.tolist()
        wall = time.perf_counter() - t0
    except (OracleError, ValueError) as e:
        return _error("conductivity", args, e)
    except (MemoryError, RuntimeError) as e:
        from oracles.memory import out_of_memory, out_of_memory_message

        if not out_of_memory(e):
            raise
        return _error("conductivity", args, MemoryError(out_of_memory_message(e)))
    out = {
        "dim": pm.ndim,
        "grid": list(pm.shape),
        "microstructure": args.microstructure if isinstance(micro, PoreImage) else repr(micro),
        "conductivities": list(args.conductivity),
        "discretization": args.discretization,
        "volume_fractions": res.info["volume_fractions"],
        "tensor": res.tensor.tolist(),
        "tortuosity": tort,
        "iterations": res.iterations,
        "residual": float(res.residual.max()),
        "wall_time": wall,
        "units": {"tensor": "as --conductivity", "wall_time": "s"},
    }
    print(json.dumps(out, indent=1))
    return 0


def run_permeability(args) -> int:
    from oracles.transport.permeability import DARCY, StokesSolver
    from oracles.transport.porous import PoreImage
    from oracles.transport.topology import NotPercolating

    if args.threads is not None:
        if args.threads < 1:
            return _error("permeability", args, ValueError(f"--threads must be a positive integer, got {args.threads}"))
        import torch

        torch.set_num_threads(args.threads)
    try:
        if not (math.isfinite(args.viscosity) and args.viscosity > 0):
            raise ValueError(f"--viscosity must be a positive finite number (Pa s), got {args.viscosity}")
        micro = _micro(args)
        solid = _image(args, micro)
        if solid.ndim in (2, 3) and min(solid.shape) < 2:
            raise ValueError(f"{args.microstructure!r} needs at least 2 voxels per axis, got shape {solid.shape}")
        base = {
            "dim": solid.ndim,
            "grid": list(solid.shape),
            "microstructure": args.microstructure if isinstance(micro, PoreImage) else repr(micro),
            "voxel_size": args.voxel_size,
            "viscosity": args.viscosity,
            "wall": args.wall,
            "porosity": float(1.0 - solid.mean()),
        }
        t0 = time.perf_counter()
        try:
            res = StokesSolver(solid, args.voxel_size, tol=args.tol, wall=args.wall).solve()
        except NotPercolating as e:
            zero = [[0.0] * solid.ndim for _ in range(solid.ndim)]
            print(
                json.dumps(
                    {
                        **base,
                        "tensor": zero,
                        "tensor_darcy": zero,
                        "percolates": False,
                        "message": str(e),
                        "units": PERMEABILITY_UNITS,
                    },
                    indent=1,
                )
            )
            return 0
        wall = time.perf_counter() - t0
    except (OracleError, ValueError) as e:
        return _error("permeability", args, e)
    except (MemoryError, RuntimeError) as e:
        from oracles.memory import out_of_memory, out_of_memory_message

        if not out_of_memory(e):
            raise
        return _error("permeability", args, MemoryError(out_of_memory_message(e)))
    out = {
        **base,
        "tensor": res.tensor.tolist(),
        "tensor_darcy": (res.tensor / DARCY).tolist(),
        "mobility": (res.tensor / args.viscosity).tolist(),
        "percolates": True,
        "percolating_axes": res.info["percolating_axes"],
        "iterations": res.iterations,
        "residual": float(res.residual.max()),
        "asymmetry": res.asymmetry,
        "wall_time": wall,
        "units": PERMEABILITY_UNITS,
    }
    print(json.dumps(out, indent=1))
    return 0
