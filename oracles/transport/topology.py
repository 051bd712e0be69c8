"""Percolation of a phase on a periodic voxel grid.

A set of voxels percolates along axis ``a`` when one of its clusters (voxels
joined through faces, or through faces, edges and corners) wraps around the
periodic cell along ``a`` (a path leaves the cell through one face and comes
back through the opposite one, without closing on itself in the cell).
Clusters are labelled by :func:`scipy.ndimage.label` without the periodic
wrap; the labels of neighbours across the periodic boundary are then joined
with the cell shift of the wrap (``e_a``, or a sum of them across an edge or
corner of the cell), and a cluster wraps along ``a`` when two paths give one
label positions differing along ``a`` (the winding criterion of periodic
percolation, e.g. Livraghi et al. 2021, J. Chem. Inf. Model. 61).
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque

import numpy as np
import scipy.ndimage

from oracles.exceptions import InvalidInput

__all__ = ["CONNECTIVITIES", "NotPercolating", "percolating_axes"]

#: which voxels :func:`percolating_axes` joins: sharing a face, or a face, an edge or a corner
CONNECTIVITIES = ("face", "full")


class NotPercolating(InvalidInput):
    """The conducting phase or pore space has no cluster that crosses the
    periodic cell along the axes asked for (tortuosity undefined,
    permeability zero).

    Attributes:
        axes: ``k`` bools, the axes along which the phase percolates.
    """

    def __init__(self, message: str, axes: tuple[bool, ...] = ()):
        super().__init__(message)
        self.axes = tuple(axes)


def percolating_axes(mask, connectivity: str = "face") -> tuple[bool, ...]:
    """Whether the ``True`` voxels of ``mask`` (``*grid``, 2D or 3D) percolate
    along each axis of the periodic cell.

    ``connectivity``: ``"face"`` (default): voxels sharing a face are joined;
    ``"full"``: voxels sharing a face, an edge or a corner are joined (the
    ``3^k - 1`` neighbours; the nodes of one voxel in the Stokes solver's
    rotated scheme, whose divergence couples all ``2^k`` corners of a voxel).

    Returns:
        ``k`` bools.
    """
    if connectivity not in CONNECTIVITIES:
        raise InvalidInput(f"connectivity must be one of {CONNECTIVITIES}, got {connectivity!r}")
    mask = np.asarray(mask, dtype=bool)
    k = mask.ndim
    if k not in (2, 3):
        raise InvalidInput(f"mask must be 2D or 3D, got shape {mask.shape}")
    full = connectivity == "full"
    labels, n = scipy.ndimage.label(mask, scipy.ndimage.generate_binary_structure(k, k if full else 1))
    if n == 0:
        return (False,) * k
    # neighbour offsets d (one of each pair d, -d): a voxel x joined to x + d across the
    # periodic boundary gives an edge between their labels with the cell shift of the wrap
    if full:
        offsets = [d for d in itertools.product((-1, 0, 1), repeat=k) if d > (0,) * k]
    else:
        offsets = [tuple(1 if b == a else 0 for b in range(k)) for a in range(k)]
    edges: dict[int, list[tuple[int, tuple[int, ...]]]] = defaultdict(list)
    for d in offsets:
        rows = []
        for a in (a for a in range(k) if d[a]):
            # the slab of voxels x whose neighbour x + d lies across the face normal to a
            x_a = mask.shape[a] - 1 if d[a] > 0 else 0
            here = np.take(labels, x_a, axis=a)
            there = np.take(labels, (x_a + d[a]) % mask.shape[a], axis=a)
            others = [b for b in range(k) if b != a]
            there = np.roll(there, tuple(-d[b] for b in others), axis=tuple(range(k - 1)))
            coords = np.ogrid[tuple(slice(0, mask.shape[b]) for b in others)]
            wrap = []
            for b in range(k):
                if b == a:
                    wrap.append(np.full(here.shape, d[a]))
                else:
                    c = coords[others.index(b)]
                    wrap.append(np.broadcast_to((c + d[b]) // mask.shape[b], here.shape))
            both = (here > 0) & (there > 0)
            if both.any():
                rows.append(np.stack([here[both], there[both]] + [w[both] for w in wrap], axis=1))
        if not rows:
            continue
        for row in np.unique(np.concatenate(rows), axis=0).tolist():
            u, v, shift = row[0], row[1], tuple(row[2:])
            edges[u].append((v, shift))  # from x to x + d: the cell shift of the wrap
            edges[v].append((u, tuple(-s for s in shift)))
    wraps = [False] * k
    pos: dict[int, tuple[int, ...]] = {}
    for start in list(edges):
        if start in pos:
            continue
        pos[start] = (0,) * k
        queue = deque([start])
        while queue:
            u = queue.popleft()
            pu = pos[u]
            for v, s in edges[u]:
                pv = tuple(p + q for p, q in zip(pu, s, strict=True))
                if v not in pos:
                    pos[v] = pv
                    queue.append(v)
                else:
                    for a in range(k):
                        if pos[v][a] != pv[a]:
                            wraps[a] = True
    return tuple(wraps)
