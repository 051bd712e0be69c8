"""Macro meshes for FE²: rectangles, a quarter plate with a hole, or a file.

All meshes are scikit-fem meshes with named boundaries (``left``, ``right``,
``bottom``, ``top`` and, for the plate, ``hole``), which the solver's boundary
conditions refer to by name.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import skfem

#: the element families the macro solver knows, by the name used in configs
ELEMENTS = {
    "quad1": (skfem.MeshQuad, skfem.ElementQuad1),
    "quad2": (skfem.MeshQuad, skfem.ElementQuad2),
    "tri1": (skfem.MeshTri, skfem.ElementTriP1),
    "tri2": (skfem.MeshTri, skfem.ElementTriP2),
}


def _check_element(element: str) -> None:
    if element not in ELEMENTS:
        raise ValueError(f"element must be one of {sorted(ELEMENTS)}, got {element!r}")


def _name_box_boundaries(mesh, x0: float, x1: float, y0: float, y1: float, tol: float):
    return mesh.with_boundaries(
        {
            "left": lambda x: np.abs(x[0] - x0) < tol,
            "right": lambda x: np.abs(x[0] - x1) < tol,
            "bottom": lambda x: np.abs(x[1] - y0) < tol,
            "top": lambda x: np.abs(x[1] - y1) < tol,
        }
    )


def rectangle(
    width: float = 1.0, height: float = 1.0, nx: int = 4, ny: int = 4, element: str = "quad1"
):
    """A structured ``nx x ny`` mesh of ``[0, width] x [0, height]``.

    Triangular elements split each square cell in two.
    """
    _check_element(element)
    if nx < 1 or ny < 1:
        raise ValueError(f"nx and ny must be >= 1, got nx={nx}, ny={ny}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}, {height}")
    x = np.linspace(0.0, width, nx + 1)
    y = np.linspace(0.0, height, ny + 1)
    mesh = skfem.MeshQuad.init_tensor(x, y)
    if ELEMENTS[element][0] is skfem.MeshTri:
        mesh = mesh.to_meshtri()
    return _name_box_boundaries(mesh, 0.0, width, 0.0, height, 1e-9 * max(width, height))


def plate_with_hole(
    length: float = 1.0,
    radius: float = 0.3,
    n_theta: int = 8,
    n_radial: int = 6,
    grading: float = 1.0,
    element: str = "quad1",
):
    """A structured quarter of a square plate ``[0, L]^2`` with a hole of radius ``R`` at 0.

    The mesh is one logically rectangular grid: ``2 * n_theta`` cells around the
    quarter arc (the angle is uniform, the outer point slides along ``x = L``
    below 45° and along ``y = L`` above) and ``n_radial`` cells from the hole to
    the outer edge, geometrically graded towards the hole by ``grading`` (ratio
    of the outermost to the innermost cell size; 1 is uniform). Boundaries:
    ``hole``, ``left`` (x = 0, symmetry), ``bottom`` (y = 0, symmetry),
    ``right`` (x = L) and ``top`` (y = L).
    """
    _check_element(element)
    if not 0 < radius < length:
        raise ValueError(f"radius must be in (0, length={length}), got {radius}")
    if n_theta < 1 or n_radial < 1:
        raise ValueError(f"n_theta and n_radial must be >= 1, got {n_theta}, {n_radial}")
    if grading <= 0:
        raise ValueError(f"grading must be positive, got {grading}")
    theta = np.linspace(0.0, 0.5 * math.pi, 2 * n_theta + 1)
    if grading == 1.0:
        s = np.linspace(0.0, 1.0, n_radial + 1)
    else:
        q = grading ** (1.0 / max(n_radial - 1, 1))
        h = q ** np.arange(n_radial)
        s = np.concatenate([[0.0], np.cumsum(h) / h.sum()])
    inner = radius * np.stack([np.cos(theta), np.sin(theta)])
    # the outer edge point on the ray of angle theta (x = L below 45°, y = L above)
    with np.errstate(divide="ignore"):
        outer = np.where(
            theta <= 0.25 * math.pi + 1e-14,
            np.stack([np.full_like(theta, length), length * np.tan(theta)]),
            np.stack([length / np.tan(theta), np.full_like(theta, length)]),
        )
    outer[0, -1] = 0.0  # cot(pi/2) round-off
    nt = theta.size
    # node (i, j): i along the arc, j radial
    p = inner[:, :, None] * (1 - s)[None, None, :] + outer[:, :, None] * s[None, None, :]
    p = p.reshape(2, nt * (n_radial + 1))
    idx = np.arange(nt * (n_radial + 1)).reshape(nt, n_radial + 1)
    # counter-clockwise quads (radial is the first local direction)
    t = np.stack(
        [idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()]
    )
    mesh = skfem.MeshQuad(p, t)
    if ELEMENTS[element][0] is skfem.MeshTri:
        mesh = mesh.to_meshtri()
    tol = 1e-9 * length
    return mesh.with_boundaries(
        {
            # facet midpoints of the polygonal hole lie just inside the circle
            "hole": lambda x: np.hypot(x[0], x[1]) < radius * (1 + 1e-9),
            "left": lambda x: np.abs(x[0]) < tol,
            "bottom": lambda x: np.abs(x[1]) < tol,
            "right": lambda x: np.abs(x[0] - length) < tol,
            "top": lambda x: np.abs(x[1] - length) < tol,
        }
    )


def load_mesh(path: str | Path, boundaries: bool = True):
    """Read a mesh file through meshio (``skfem.Mesh.load``).

    With ``boundaries`` and a file without boundary tags, the bounding-box
    edges are named ``left``, ``right``, ``bottom`` and ``top``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mesh file {path} does not exist")
    mesh = skfem.Mesh.load(str(path))
    if mesh.dim() != 2:
        raise ValueError(f"the macro solver is 2D (plane strain); {path} is {mesh.dim()}D")
    if boundaries and not mesh.boundaries:
        lo, hi = mesh.p.min(axis=1), mesh.p.max(axis=1)
        tol = 1e-9 * float(np.max(hi - lo))
        mesh = _name_box_boundaries(mesh, lo[0], hi[0], lo[1], hi[1], tol)
    return mesh


def element_for(mesh, element: str):
    """The scikit-fem vector element of name ``element`` matching ``mesh``."""
    _check_element(element)
    mesh_type, elem = ELEMENTS[element]
    if not isinstance(mesh, mesh_type):
        raise ValueError(
            f"element {element!r} needs a {mesh_type.__name__}, got a {type(mesh).__name__}"
        )
    return skfem.ElementVector(elem())
