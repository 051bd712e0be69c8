"""Percolation of a phase on a periodic voxel grid.

A set of voxels percolates along axis ``a`` when one of its face-connected
clusters wraps around the periodic cell along ``a`` (a path leaves the cell
through one face and comes back through the opposite one, without closing on
itself in the cell). Clusters are labelled by :func:`scipy.ndimage.label`
without the periodic wrap; the labels touching across each periodic face are
then joined with the cell shift ``e_a``, and a cluster wraps along ``a`` when
two paths give one label positions differing along ``a`` (the winding
criterion of periodic percolation, e.g. Livraghi et al. 2021, J. Chem. Inf.
Model. 61).
"""

from __future__ import annotations

from collections import defaultdict, deque

import numpy as np
import scipy.ndimage

from oracles.exceptions import InvalidInput

__all__ = ["NotPercolating", "percolating_axes"]


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


def percolating_axes(mask) -> tuple[bool, ...]:
    """Whether the ``True`` voxels of ``mask`` (``*grid``, 2D or 3D) percolate
    along each axis of the periodic cell (face connectivity).

    Returns:
        ``k`` bools.
    """
    mask = np.asarray(mask, dtype=bool)
    k = mask.ndim
    if k not in (2, 3):
        raise InvalidInput(f"mask must be 2D or 3D, got shape {mask.shape}")
    labels, n = scipy.ndimage.label(mask)
    if n == 0:
        return (False,) * k
    edges: dict[int, list[tuple[int, tuple[int, ...]]]] = defaultdict(list)
    for a in range(k):
        last = np.take(labels, -1, axis=a)
        first = np.take(labels, 0, axis=a)
        both = (last > 0) & (first > 0)
        pairs = np.unique(np.stack([last[both], first[both]], axis=1), axis=0)
        shift = tuple(1 if b == a else 0 for b in range(k))
        neg = tuple(-s for s in shift)
        for u, v in pairs.tolist():
            edges[u].append((v, shift))  # from the last slice to the first: + e_a
            edges[v].append((u, neg))
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
