"""Macro meshes for FE²: rectangles, a quarter plate with a hole, boxes, or a file.

All meshes are scikit-fem meshes with named boundaries (``left``, ``right``,
``bottom``, ``top``; in 3D also ``back`` (z = min) and ``front`` (z = max);
for the plate, ``hole``), which the solver's boundary conditions refer to by
name.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import skfem

from oracles.exceptions import is_finite_real, is_integer

#: the element families the macro solver knows, by the name used in configs
ELEMENTS = {
    "quad1": (skfem.MeshQuad, skfem.ElementQuad1),
    "quad2": (skfem.MeshQuad, skfem.ElementQuad2),
    "tri1": (skfem.MeshTri, skfem.ElementTriP1),
    "tri2": (skfem.MeshTri, skfem.ElementTriP2),
    "hex1": (skfem.MeshHex, skfem.ElementHex1),
    "hex2": (skfem.MeshHex, skfem.ElementHex2),
    "tet1": (skfem.MeshTet, skfem.ElementTetP1),
    "tet2": (skfem.MeshTet, skfem.ElementTetP2),
}

#: element names per mesh dimension
ELEMENTS_2D = ("quad1", "quad2", "tri1", "tri2")
ELEMENTS_3D = ("hex1", "hex2", "tet1", "tet2")


def _check_element(element: str, allowed: tuple[str, ...] | None = None) -> None:
    allowed = tuple(sorted(ELEMENTS)) if allowed is None else allowed
    if element not in allowed:
        raise ValueError(f"element must be one of {list(allowed)}, got {element!r}")


def _sizes(**sizes) -> None:
    """A ``ValueError`` naming the first size that is not a positive finite real number."""
    for name, v in sizes.items():
        if not (is_finite_real(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")


def _counts(**counts) -> None:
    """A ``ValueError`` naming the first cell count that is not an integer >= 1."""
    for name, v in counts.items():
        if not (is_integer(v) and v >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def _name_box_boundaries(mesh, x0: float, x1: float, y0: float, y1: float, tol: float):
    return mesh.with_boundaries(
        {
            "left": lambda x: np.abs(x[0] - x0) < tol,
            "right": lambda x: np.abs(x[0] - x1) < tol,
            "bottom": lambda x: np.abs(x[1] - y0) < tol,
            "top": lambda x: np.abs(x[1] - y1) < tol,
        }
    )


def _name_bbox_boundaries(mesh):
    """Name the bounding-box faces of a 2D or 3D mesh (``back``/``front`` are z = min/max)."""
    lo, hi = mesh.p.min(axis=1), mesh.p.max(axis=1)
    tol = 1e-9 * float(np.max(hi - lo))
    names = [("left", "right"), ("bottom", "top"), ("back", "front")]
    tests = {}
    for i in range(mesh.dim()):
        tests[names[i][0]] = lambda x, i=i: np.abs(x[i] - lo[i]) < tol
        tests[names[i][1]] = lambda x, i=i: np.abs(x[i] - hi[i]) < tol
    return mesh.with_boundaries(tests)


def rectangle(
    width: float = 1.0, height: float = 1.0, nx: int = 4, ny: int = 4, element: str = "quad1"
):
    """A structured ``nx x ny`` mesh of ``[0, width] x [0, height]``.

    Triangular elements split each square cell in two.
    """
    _check_element(element, ELEMENTS_2D)
    _counts(nx=nx, ny=ny)
    _sizes(width=width, height=height)
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
    _check_element(element, ELEMENTS_2D)
    _sizes(length=length, radius=radius, grading=grading)
    if not 0 < radius < length:
        raise ValueError(f"radius must be in (0, length={length}), got {radius}")
    _counts(n_theta=n_theta, n_radial=n_radial)
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


def box(
    lengths: tuple[float, float, float] = (1.0, 1.0, 1.0),
    n: tuple[int, int, int] = (2, 2, 2),
    element: str = "hex1",
):
    """A structured ``nx x ny x nz`` mesh of ``[0, Lx] x [0, Ly] x [0, Lz]``.

    Tetrahedral elements split each hexahedral cell into six (scikit-fem's
    ``MeshTet.init_tensor``). Boundaries ``left``/``right`` (x), ``bottom``/``top``
    (y), ``back``/``front`` (z).
    """
    _check_element(element, ELEMENTS_3D)
    lengths, n = tuple(lengths), tuple(n)
    if len(lengths) != 3 or not all(is_finite_real(v) and v > 0 for v in lengths):
        raise ValueError(f"box lengths must be 3 positive finite numbers, got {lengths}")
    if len(n) != 3 or not all(is_integer(v) and v >= 1 for v in n):
        raise ValueError(f"box divisions must be 3 integers >= 1, got {n}")
    lengths, n = tuple(float(v) for v in lengths), tuple(int(v) for v in n)
    axes = [np.linspace(0.0, L, m + 1) for L, m in zip(lengths, n, strict=True)]
    mesh = ELEMENTS[element][0].init_tensor(*axes)
    return _name_bbox_boundaries(mesh)


def load_mesh(path: str | Path, boundaries: bool = True):
    """Read a 2D or 3D mesh file through meshio (``skfem.Mesh.load``; gmsh, VTK, XDMF, ...).

    With ``boundaries`` and a file without boundary tags, the bounding-box
    faces are named ``left``, ``right``, ``bottom``, ``top`` and, in 3D,
    ``back`` and ``front``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: meshio cannot read the file, or it is not a 2D/3D mesh.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mesh file {path} does not exist")
    try:
        mesh = skfem.Mesh.load(str(path))
    except (Exception, SystemExit) as e:  # noqa: BLE001  (meshio ends some failed reads with sys.exit)
        detail = f": {e}" if not isinstance(e, SystemExit) and str(e) else ""
        raise ValueError(
            f"cannot read mesh file {path} ({type(e).__name__}{detail}); expected a mesh format meshio reads"
        ) from None
    if mesh.dim() not in (2, 3):
        raise ValueError(f"the macro solver needs a 2D or 3D mesh; {path} is {mesh.dim()}D")
    if boundaries and not mesh.boundaries:
        mesh = _name_bbox_boundaries(mesh)
    return mesh


def default_element(mesh) -> str:
    """The linear element name of ``mesh``'s cell type (``quad1``, ``tri1``, ``hex1``, ``tet1``)."""
    for name in ("quad1", "tri1", "hex1", "tet1"):
        if isinstance(mesh, ELEMENTS[name][0]):
            return name
    raise ValueError(f"no macro element for a {type(mesh).__name__}; known: {sorted(ELEMENTS)}")


def element_for(mesh, element: str):
    """The scikit-fem vector element of name ``element`` matching ``mesh``."""
    _check_element(element)
    mesh_type, elem = ELEMENTS[element]
    if not isinstance(mesh, mesh_type):
        raise ValueError(
            f"element {element!r} needs a {mesh_type.__name__}, got a {type(mesh).__name__}"
        )
    return skfem.ElementVector(elem())
