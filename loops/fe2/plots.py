"""PNG plots of an FE² run (matplotlib, Agg backend).

* :func:`deformed_stress_plot`: the deformed mesh coloured by an element-mean stress;
* :func:`oracle_map_plot`: the reference mesh coloured by the share of
  Gauss-point evaluations the oracle answered (where the switch distrusted the surrogate);
* :func:`force_displacement_plot`: reaction force against the prescribed displacement,
  for one or several runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402


def _polygons(solver, u: np.ndarray | None = None) -> np.ndarray:
    """``nel x corners x 2`` element polygons (corner nodes), displaced by ``u`` if given."""
    p = solver.mesh.p.T.copy()
    if u is not None:
        nd = solver.basis.nodal_dofs  # 2 x n_vertices
        p = p + np.stack([u[nd[0]], u[nd[1]]], axis=1)
    # meshes are linear (MeshQuad1 / MeshTri1): every row of t is a corner
    return p[solver.mesh.t.T]


def element_mean(solver, values: np.ndarray) -> np.ndarray:
    """``nel`` weighted mean over each element's Gauss points of ``n_gauss`` values."""
    w = solver.gauss_weights().reshape(solver.nelems, solver.nqp)
    v = np.asarray(values, dtype=float).reshape(solver.nelems, solver.nqp)
    return (w * v).sum(1) / w.sum(1)


def _mesh_figure(polys, colours, label, title, path, cmap="viridis", vmin=None, vmax=None):
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    pc = PolyCollection(polys, array=colours, cmap=cmap, edgecolors="0.6", linewidths=0.3)
    if vmin is not None or vmax is not None:
        pc.set_clim(vmin, vmax)
    ax.add_collection(pc)
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    fig.colorbar(pc, ax=ax, label=label)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def deformed_stress_plot(
    solver, step, path, component: tuple[int, int] | None = (0, 0), title=None
):
    """Deformed mesh of ``step`` coloured by ``P[component]`` (or ``|P|`` with None)."""
    P = step.P
    vals = (
        np.linalg.norm(P.reshape(-1, 4), axis=1)
        if component is None
        else P[:, component[0], component[1]]
    )
    label = "|P|" if component is None else f"P{component[0] + 1}{component[1] + 1}"
    return _mesh_figure(
        _polygons(solver, step.u),
        element_mean(solver, vals),
        label,
        title or f"deformed mesh, load factor {step.load_factor:.3g}",
        path,
    )


def surface_stress_plot(
    solver,
    step,
    path,
    component: tuple[int, int] | None = (0, 0),
    title=None,
    values=None,
    label=None,
):
    """3D meshes: the deformed boundary surface of ``step``, each facet coloured by its element's
    mean ``P[component]`` (``|P|`` with None), or by ``values`` (``n_gauss``) when given."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    mesh, u = solver.mesh, step.u
    nd = solver.basis.nodal_dofs  # 3 x n_vertices
    p = mesh.p.T + np.stack([u[nd[i]] for i in range(3)], axis=1)
    if values is None:
        P = step.P
        values = (
            np.linalg.norm(P.reshape(len(P), -1), axis=1)
            if component is None
            else P[:, component[0], component[1]]
        )
        label = "|P|" if component is None else f"P{component[0] + 1}{component[1] + 1}"
    facets = mesh.boundary_facets()
    colours = element_mean(solver, values)[mesh.f2t[0, facets]]
    # facet corners: the first 3 (triangles) or 4 (quadrilaterals) vertices, in cyclic order
    polys = p[mesh.facets[:, facets].T]
    fig = plt.figure(figsize=(6.0, 4.8))
    ax = fig.add_subplot(projection="3d")
    pc = Poly3DCollection(polys, array=colours, cmap="viridis", edgecolors="0.5", linewidths=0.2)
    ax.add_collection3d(pc)
    lo, hi = p.min(0), p.max(0)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect(np.maximum(hi - lo, 1e-12))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.set_title(title or f"deformed surface, load factor {step.load_factor:.3g}")
    fig.colorbar(pc, ax=ax, label=label or "value", shrink=0.7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def oracle_map_plot(
    solver, oracle_calls: np.ndarray, surrogate_calls: np.ndarray, path, title=None
):
    """Reference mesh coloured by the share of evaluations the oracle answered."""
    total = np.maximum(oracle_calls + surrogate_calls, 1)
    share = element_mean(solver, oracle_calls / total)
    return _mesh_figure(
        _polygons(solver),
        share,
        "oracle share of evaluations",
        title or "where the oracle was called",
        path,
        cmap="magma",
        vmin=0.0,
        vmax=max(float(share.max()), 1e-12),  # scaled to the largest share so small ones show
    )


def force_displacement_plot(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path,
    xlabel="prescribed displacement",
    ylabel="reaction force",
):
    """One line per ``label -> (displacement, force)``, starting from the origin."""
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    styles = ["-o", "--s", ":^", "-.v", "-x"]
    for i, (label, (d, f)) in enumerate(curves.items()):
        ax.plot([0.0, *d], [0.0, *f], styles[i % len(styles)], ms=4, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)
