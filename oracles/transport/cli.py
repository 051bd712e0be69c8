r"""``scalebridge conductivity`` and ``scalebridge permeability``: one voxel
microstructure in, its effective tensor out as JSON.

Options (both)::

    --dim {2,3}              spatial dimension (default 3; a FILE has its own)
    --grid N [N ...]         voxels per axis: one value (cubic grid) or dim values (default 32;
                             a FILE has its own)
    --microstructure KIND    slit | cylinders | spheres | overlapping | polydisperse | blobs |
                             fibres | FILE (.npy, .png, .tif; default overlapping)
    --porosity P             pore fraction of the random media (default 0.5)
    --radius R               grain / cylinder / fibre radius as a fraction of the cell (default 0.1)
    --fraction F             slit channel fraction (default 0.5)
    --blobiness B            blobs: larger is finer (default 1)
    --spread S               polydisperse: relative spread of the radii (default 0.2)
    --seed S                 seed of the random media (default 0)
    --threads T              torch threads (default: torch's choice)
    --pore-label V           a FILE's value on pores, every other value solid (default: the file
                             holds 0 on pores and 1 on solid, or bools True on solid)
    --mirror AXIS [AXIS ...] follow a FILE by its mirror image along these axes (a crop of a
                             larger sample is not periodic; the solvers treat every image as a
                             periodic cell, and warn where a FILE's opposite faces do not match)

FILE: a .npy array (2D or 3D), an 8- or 16-bit greyscale .png (2D) or a .tif (one page: 2D;
a multi-page stack: 3D, its pages along the first axis). Voxels are cubes.

``conductivity``::

    --conductivity S0 S1 ...  conductivity per phase (default 1 0.1: pores, solid);
                              a FILE is a phase map of integer ids 0..p-1 (with --pore-label:
                              0 on pores, 1 on solid)
    --discretization {staggered,spectral}   (default staggered)
    --tortuosity             also the tortuosity factor of phase 0 in insulating solid
    --cg-tol T               relative CG tolerance (default 1e-8)

``permeability`` (a FILE holds 1 or True on solid voxels, 0 on pores, or use --pore-label)::

    --voxel-size H           voxel edge, in m or with a unit: 2.5e-6, 2.5um, 2.5µm, 0.0025mm (default
                             1e-6 m); one value: voxels are cubes (anisotropic voxels are refused)
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
and returns 2. For a FILE whose opposite faces do not match (a crop of a larger sample,
:func:`oracles.transport.topology.periodicity_message`), one line ``scalebridge COMMAND:
warning: ...`` on stderr names the axes and their mismatch fractions; the JSON holds it as
``periodicity_warning`` (null otherwise).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from typing import TYPE_CHECKING

from oracles._cli import with_options
from oracles.exceptions import OracleError

if TYPE_CHECKING:
    import numpy as np

# numpy, scipy and torch are imported by the functions that compute, not here: `scalebridge
# conductivity --help`, `scalebridge permeability --help` and their usage errors answer without them

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
    p.add_argument("--pore-label", type=float, default=None)
    p.add_argument("--mirror", type=int, nargs="+", default=None)


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
        p.add_argument("--voxel-size", nargs="+", default=["1e-6"])
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
    option_of = {k: v for k, v in _OPTION_OF.items() if not (k == "grid" and _is_file(args.microstructure))}
    msg = with_options(str(e), option_of)[0]
    print(f"scalebridge {command}: error: {msg}", file=sys.stderr)
    return 2


def _is_file(kind: str) -> bool:
    from oracles.transport.porous import PORE_IMAGE_SUFFIXES

    return kind.lower().endswith(PORE_IMAGE_SUFFIXES)


#: metres per unit of ``--voxel-size``
_LENGTH_UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "μm": 1e-6, "micron": 1e-6, "microns": 1e-6,
                 "nm": 1e-9}


def voxel_size(values) -> float:
    """``--voxel-size`` in m: one length, a number (m) or a number with a unit (``2.5um``); several
    values are anisotropic voxels, refused unless they are equal."""
    import re

    out = []
    for v in values:
        m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([a-zA-Zµμ]*)\s*", str(v))
        unit = m.group(2) if m else None
        try:
            x = float(m.group(1)) * _LENGTH_UNITS[unit or "m"]
        except (AttributeError, ValueError, KeyError):
            raise ValueError(f"--voxel-size must be a length in m or with a unit ({', '.join(_LENGTH_UNITS)}), "
                             f"got {v!r}") from None
        if not (math.isfinite(x) and x > 0):
            raise ValueError(f"--voxel-size must be a positive length, got {v!r}")
        out.append(x)
    if len(set(out)) > 1:
        raise ValueError(f"--voxel-size {' '.join(map(str, values))}: anisotropic voxels are not supported (the "
                         "solvers take cubic voxels); resample the image to cubic voxels first")
    return out[0]


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


def _periodicity(args, micro, image, command: str, pores=None) -> str | None:
    """For a user image, the line of :func:`~oracles.transport.topology.periodicity_message`
    printed as ``scalebridge COMMAND: warning: ...`` on stderr; None otherwise."""
    from oracles.transport.porous import PoreImage
    from oracles.transport.topology import periodicity_message

    if not isinstance(micro, PoreImage):
        return None
    msg = periodicity_message(image, repr(args.microstructure), pores)
    if msg is not None:
        print(f"scalebridge {command}: warning: {msg}", file=sys.stderr)
    return msg


def _micro(args):
    from oracles.transport import porous

    kind = args.microstructure
    if _is_file(kind):
        return porous.PoreImage(kind, pore_label=args.pore_label, mirror=tuple(args.mirror or ()))
    if args.pore_label is not None or args.mirror is not None:
        opt = "--pore-label" if args.pore_label is not None else "--mirror"
        raise ValueError(f"{opt} applies to an image file, not to --microstructure {kind}")
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
            f"--microstructure must be one of {sorted(params)} or a .npy, .png or .tif file, got {kind!r}"
        )
    return porous.microstructure(kind, **params[kind])


def _image(args, micro) -> np.ndarray:
    from oracles.transport.porous import PoreImage

    if isinstance(micro, PoreImage):
        return _check_image(args, micro.load())
    return micro.solid(_grid(args))


def run_conductivity(args) -> int:
    import numpy as np

    from oracles.transport.conductivity import ConductivitySolver, tortuosity
    from oracles.transport.porous import PoreImage
    from oracles.transport.topology import NonPeriodicWarning

    if args.threads is not None:
        if args.threads < 1:
            return _error("conductivity", args, ValueError(f"--threads must be a positive integer, got {args.threads}"))
        import torch

        torch.set_num_threads(args.threads)
    try:
        micro = _micro(args)
        _check_conductivities(args, micro)
        if isinstance(micro, PoreImage):
            from oracles.transport.porous import mirror, solid_from_labels

            pm = micro.raw()
            if micro.pore_label is not None:
                pm = solid_from_labels(pm, micro.pore_label, "phase map")
            if pm.dtype == bool:
                pm = pm.astype(np.int64)
            if micro.mirror:
                pm = mirror(pm, micro.mirror)
            pm = _check_image(args, pm)
        else:
            pm = micro.solid(_grid(args)).astype(np.int64)
        note = _periodicity(args, micro, pm, "conductivity", pm == 0 if args.tortuosity else None)
        t0 = time.perf_counter()
        res = ConductivitySolver(
            pm, list(args.conductivity), discretization=args.discretization, cg_tol=args.cg_tol
        ).solve()
        tort = None
        if args.tortuosity:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NonPeriodicWarning)  # told once above
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
        "periodicity_warning": note,
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
        h = voxel_size(args.voxel_size)
        micro = _micro(args)
        solid = _image(args, micro)
        if solid.ndim in (2, 3) and min(solid.shape) < 2:
            raise ValueError(f"{args.microstructure!r} needs at least 2 voxels per axis, got shape {solid.shape}")
        from oracles.transport.permeability import solid_nodes

        note = _periodicity(args, micro, solid, "permeability", lambda im: ~solid_nodes(im, args.wall))
        base = {
            "dim": solid.ndim,
            "grid": list(solid.shape),
            "microstructure": args.microstructure if isinstance(micro, PoreImage) else repr(micro),
            "voxel_size": h,
            "viscosity": args.viscosity,
            "wall": args.wall,
            "porosity": float(1.0 - solid.mean()),
            "periodicity_warning": note,
        }
        t0 = time.perf_counter()
        try:
            res = StokesSolver(solid, h, tol=args.tol, wall=args.wall).solve()
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
