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


def _name_bbox_boundaries(mesh, keep=None):
    """Name the bounding-box faces of a 2D or 3D mesh (``back``/``front`` are z = min/max);
    ``keep``: named boundaries that stay, their names not taken by a face."""
    keep = dict(keep or {})
    lo, hi = mesh.p.min(axis=1), mesh.p.max(axis=1)
    tol = 1e-9 * float(np.max(hi - lo))
    names = [("left", "right"), ("bottom", "top"), ("back", "front")]
    tests = {}
    for i in range(mesh.dim()):
        tests[names[i][0]] = lambda x, i=i: np.abs(x[i] - lo[i]) < tol
        tests[names[i][1]] = lambda x, i=i: np.abs(x[i] - hi[i]) < tol
    tests = {k: v for k, v in tests.items() if k not in keep}
    return mesh.with_boundaries(tests) if tests else mesh


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


#: the cell types of a mesh file the macro solver takes (meshio name -> scikit-fem mesh)
_FILE_CELLS = {
    "triangle": skfem.MeshTri1, "triangle6": skfem.MeshTri2, "quad": skfem.MeshQuad1, "quad9": skfem.MeshQuad2,
    "tetra": skfem.MeshTet1, "tetra10": skfem.MeshTet2, "hexahedron": skfem.MeshHex1,
    "hexahedron27": skfem.MeshHex2,
}
#: what to use instead of a cell type the solver does not take
_INSTEAD = {
    "quad8": "quad9 (Gmsh: Mesh.SecondOrderIncomplete = 0) or quad",
    "hexahedron20": "hexahedron27 (Gmsh: Mesh.SecondOrderIncomplete = 0) or hexahedron",
}
#: facet cell types per mesh dimension and their number of corner nodes (the first ones)
_FACETS = {2: {"line": 2, "line3": 2}, 3: {"triangle": 3, "triangle6": 3, "quad": 4, "quad8": 4, "quad9": 4}}


def _cell_dim(cell_type: str) -> int:
    """The topological dimension of a meshio cell type (-1: unknown)."""
    if cell_type == "vertex":
        return 0
    for dim, prefixes in ((1, ("line",)), (2, ("triangle", "quad", "polygon")),
                          (3, ("tetra", "hexahedron", "wedge", "pyramid", "polyhedron"))):
        if cell_type.startswith(prefixes):
            return dim
    return -1


def _counts_text(blocks) -> str:
    counts: dict[str, int] = {}
    for b in blocks:
        counts[b.type] = counts.get(b.type, 0) + len(b.data)
    return ", ".join(f"{n} {t}" for t, n in counts.items()) or "none"


def _read_meshio(path: Path):
    """``meshio.read`` with what meshio prints (it prints and ``sys.exit``s on some
    failures) caught into one ``ValueError`` line."""
    import contextlib
    import io

    import meshio

    if path.stat().st_size == 0:
        raise ValueError(f"mesh file {path} is empty")
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            return meshio.read(str(path))
    except ModuleNotFoundError as e:  # meshio reads some formats with optional packages (XDMF: h5py)
        raise ValueError(f"reading mesh file {path} needs the Python package {e.name!r}, which is not "
                         f"installed (pip install {e.name})") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001  (meshio ends some failed reads with sys.exit)
        detail = " ".join(str(e).split()) if not isinstance(e, SystemExit) else ""
        printed = " ".join(said.getvalue().split())
        why = "; ".join(w for w in (f"{type(e).__name__}: {detail}" if detail else type(e).__name__, printed) if w)
        raise ValueError(f"cannot read mesh file {path} ({why}); expected a mesh format meshio reads "
                         "(gmsh .msh 2.2/4.1, .vtk, .vtu, .xdmf, ...)") from None


def _boundary_facets_of_file(m, dim: int, node_map: np.ndarray, mesh) -> dict[str, np.ndarray]:
    """Named facet sets of a meshio mesh: Gmsh physical groups (by name, or by their tag number
    where the group has no name) and cell sets of the facet cells, as facet indices of ``mesh``
    (``node_map``: file node -> mesh node, -1 for a dropped node)."""
    kinds = _FACETS[dim]
    names_of = {}  # Gmsh physical tag of dimension dim - 1 -> name
    for name, (tag, tdim) in ((k, v[:2]) for k, v in (m.field_data or {}).items() if len(v) >= 2):
        if int(tdim) == dim - 1:
            names_of[int(tag)] = str(name)
    members: dict[str, list[np.ndarray]] = {}  # name -> corner-node rows (file numbering)
    physical = (m.cell_data or {}).get("gmsh:physical")
    for i, block in enumerate(m.cells):
        if block.type not in kinds:
            continue
        corners = np.asarray(block.data)[:, : kinds[block.type]]
        if physical is not None:
            tags = np.asarray(physical[i]).astype(int)
            for tag in np.unique(tags):
                if tag > 0:  # 0: an element in no physical group (Gmsh Mesh.SaveAll)
                    members.setdefault(names_of.get(int(tag), str(int(tag))), []).append(corners[tags == tag])
        for name, sets in (m.cell_sets or {}).items():
            if name.startswith("gmsh:") or i >= len(sets) or sets[i] is None or len(sets[i]) == 0:
                continue
            rows = corners[np.asarray(sets[i]).astype(int)]
            if not any(len(r) == len(rows) and np.array_equal(r, rows) for r in members.get(name, [])):
                members.setdefault(str(name), []).append(rows)
    if not members:
        return {}
    # facets of the mesh by their sorted corner nodes; a file node is found among the mesh's
    # vertices by its coordinates (a second-order mesh numbers its vertices apart from the
    # file's nodes), exact as no two nodes coincide
    from scipy.spatial import cKDTree

    facet_keys = {tuple(f): j for j, f in enumerate(np.sort(mesh.facets, axis=0).T.tolist())}
    vertices = mesh.p[:, : int(mesh.t.max()) + 1].T
    file_p = np.asarray(m.points, dtype=float)[:, :dim]
    out = {}
    for name, rows in members.items():
        rows = np.concatenate(rows)
        rows = rows[(node_map[rows] >= 0).all(axis=1)]  # facets of nodes of no cell: no facet of the mesh
        dist, idx = cKDTree(vertices).query(file_p[rows.ravel()])
        scale = float(np.ptp(vertices, axis=0).max())
        rows = np.where(dist <= 1e-10 * scale, idx, -1).reshape(rows.shape)
        found = [facet_keys.get(tuple(r)) for r in np.sort(rows, axis=1).tolist()]
        missing = sum(f is None for f in found)
        if missing:
            raise ValueError(f"boundary {name!r}: {missing} of its {len(found)} facet cells are no facet of the "
                             f"mesh's {dim}D cells (a tagged boundary that does not share the cells' nodes)")
        out[name] = np.unique(np.array(found, dtype=np.int64))
    return out


def check_jacobians(detJ: np.ndarray, where: str = "the mesh") -> None:
    """A ``ValueError`` naming the first element of zero size (a degenerate element: collinear or
    coplanar nodes, repeated nodes) or whose Jacobian changes sign inside it (a self-intersecting,
    "bow-tie" element) from its Jacobian determinants at quadrature points (``nel x nqp``).
    A uniformly clockwise element is fine (scikit-fem integrates with ``|det J|``)."""
    detJ = np.asarray(detJ, dtype=float)
    scale = float(np.abs(detJ).max(initial=0.0))
    tiny = np.abs(detJ) <= 1e-12 * scale
    bad = np.flatnonzero(tiny.any(axis=1) | ((detJ.min(axis=1) < 0) & (detJ.max(axis=1) > 0)) |
                         ~np.isfinite(detJ).all(axis=1))
    if scale == 0 or bad.size:
        e = int(bad[0]) if bad.size else 0
        what = "zero size (collinear or coplanar nodes)" if scale == 0 or tiny[e].any() else \
            "a Jacobian that changes sign inside it (a self-intersecting element)"
        raise ValueError(f"{where}: {max(bad.size, 1)} degenerate element(s); element {e} has {what}")


def _from_file(path: Path):
    """The scikit-fem mesh of a mesh file, checked and cleaned (see :func:`load_mesh`)."""
    m = _read_meshio(path)
    blocks = [b for b in m.cells if len(b.data)]
    dim = max((_cell_dim(b.type) for b in blocks), default=-1)
    if dim not in (2, 3):
        raise ValueError(f"mesh file {path} has no 2D or 3D cells (cells: {_counts_text(blocks)}); the macro "
                         "solver needs triangles or quadrilaterals (2D) or tetrahedra or hexahedra (3D)")
    cells = [b for b in blocks if _cell_dim(b.type) == dim]
    types = sorted({b.type for b in cells})
    if len(types) > 1:
        raise ValueError(f"mesh file {path} mixes {dim}D cell types ({_counts_text(cells)}); the macro solver "
                         "takes one type per mesh: mesh with triangles only or quadrilaterals only (Gmsh: "
                         "Mesh.RecombineAll = 1 with Mesh.SubdivisionAlgorithm = 1 gives all quadrilaterals)")
    ctype = types[0]
    if ctype not in _FILE_CELLS:
        instead = _INSTEAD.get(ctype, ", ".join(t for t in _FILE_CELLS if _cell_dim(t) == dim))
        raise ValueError(f"mesh file {path} has {ctype} cells, which the macro solver does not take; "
                         f"use {instead}")
    t = np.concatenate([np.asarray(b.data) for b in cells]).astype(np.int64)
    points = np.asarray(m.points, dtype=float)
    if points.ndim != 2 or points.shape[1] < dim or not np.isfinite(points).all():
        raise ValueError(f"mesh file {path}: node coordinates must be finite with {dim} or more components, "
                         f"got an array of shape {points.shape}")
    if t.min(initial=0) < 0 or t.max(initial=0) >= len(points):
        raise ValueError(f"mesh file {path}: cells refer to nodes beyond its {len(points)} nodes")
    # nodes of no cell (Gmsh's geometry points, leftovers of a deleted region) are dropped:
    # they would take part in the bounding box of the named faces and the rigid-motion check
    used = np.unique(t)
    node_map = np.full(len(points), -1, dtype=np.int64)
    node_map[used] = np.arange(used.size)
    p, t = points[used], node_map[t]
    extent = float(np.ptp(p, axis=0).max()) if len(p) else 0.0
    if dim == 2 and p.shape[1] > 2:
        # Gmsh and VTK write z = 0 for a 2D mesh; a mesh in another plane, or a curved surface, is no plane-strain mesh
        off = float(np.ptp(p[:, 2:], axis=0).max())
        if off > 1e-9 * extent:
            raise ValueError(f"mesh file {path} has 2D cells whose nodes do not lie in one plane z = const (z "
                             f"spans {off:.6g} of the mesh size {extent:.6g}); a 2D (plane-strain) mesh must lie in "
                             "the x-y plane, and a 3D run needs tetrahedra or hexahedra")
    p = p[:, :dim]
    # coincident nodes: a mesh of regions that do not share nodes (Gmsh: no Coherence or
    # BooleanFragments) is cracked along their interface, each side a separate body
    from scipy.spatial import cKDTree

    pairs = cKDTree(p).query_pairs(r=1e-10 * extent, output_type="ndarray") if len(p) > 1 else np.zeros((0, 2))
    if len(pairs):
        a = int(pairs[0][0])
        raise ValueError(f"mesh file {path}: {len(pairs)} pair(s) of distinct nodes at the same point (first at "
                         f"{np.round(p[a], 12).tolist()}): regions that do not share their nodes are cracked along "
                         "their interface; merge them (Gmsh: Coherence Mesh, or BooleanFragments of the geometry)")
    import meshio
    from skfem.io.meshio import from_meshio

    # the cells alone, with scikit-fem's own encoded boundaries (a file written by Mesh.save)
    own = {k: [np.concatenate([np.asarray(v[i]) for i, b in enumerate(m.cells) if b in cells])]
           for k, v in (m.cell_data or {}).items() if k.startswith("skfem:")}
    mesh = from_meshio(meshio.Mesh(p, [(ctype, t)], cell_data=own))
    with np.errstate(divide="ignore", invalid="ignore"):  # a degenerate element: named just below
        geometry = skfem.CellBasis(mesh, mesh.elem(), intorder=2)
        detJ = geometry.mapping.detDF(geometry.X)
    check_jacobians(detJ, f"mesh file {path}")
    named = _boundary_facets_of_file(m, dim, node_map, mesh)
    return mesh.with_boundaries(named) if named else mesh


#: the last meshes read (path, size, mtime) -> mesh: a run reads its file once, though the
#: config's validation (the file's element) and the run both ask for it
_READ_CACHE: dict[tuple, object] = {}


def load_mesh(path: str | Path, boundaries: bool = True):
    """Read a 2D or 3D mesh file through meshio (gmsh .msh 2.2 and 4.1, VTK, VTU, XDMF, ...).

    The file's cells of the highest dimension make the mesh: triangles, quadrilaterals,
    tetrahedra or hexahedra, linear or second order (triangle6, quad9, tetra10,
    hexahedron27), one type per file; lower-dimensional cells (Gmsh's boundary lines,
    surface triangles, points) only name boundaries. Boundary names are the Gmsh physical
    groups of facets (a group without a name by its tag number, ``"3"``), or the file's cell
    sets of facets, or scikit-fem's own (a file written by ``Mesh.save``). With ``boundaries``,
    the bounding-box faces are also named ``left``, ``right``, ``bottom``, ``top`` and, in 3D,
    ``back`` and ``front`` where the file does not use those names. A 2D mesh must lie in a
    plane ``z = const`` (Gmsh writes ``z = 0``). Nodes of no cell are dropped. No units are
    assumed: coordinates, forces and moduli must be in one consistent system.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: meshio cannot read the file, it is empty, it has no 2D/3D cells, it mixes
            cell types or has one the solver does not take, a 2D mesh off its plane, distinct
            nodes at one point, a degenerate element, or a tagged facet that is no facet of the cells.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mesh file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"mesh file {path} is a directory")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    mesh = _READ_CACHE.get(key)
    if mesh is None:
        mesh = _from_file(path)
        _READ_CACHE.clear()
        _READ_CACHE[key] = mesh
    if boundaries:
        mesh = _name_bbox_boundaries(mesh, keep=mesh.boundaries)
    return mesh


def default_element(mesh) -> str:
    """The element name of ``mesh``'s cell type: ``quad1``, ``tri1``, ``hex1``, ``tet1``, and for a
    second-order mesh (a file's triangle6, quad9, tetra10, hexahedron27) the quadratic element."""
    for cls, name in ((skfem.MeshQuad2, "quad2"), (skfem.MeshTri2, "tri2"), (skfem.MeshHex2, "hex2"),
                      (skfem.MeshTet2, "tet2")):
        if isinstance(mesh, cls):
            return name
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
