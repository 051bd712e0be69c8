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
import warnings
from collections import defaultdict, deque

import numpy as np
import scipy.ndimage

from oracles.exceptions import InvalidInput

__all__ = [
    "CONNECTIVITIES",
    "NonPeriodicWarning",
    "NotPercolating",
    "face_mismatch",
    "percolating_axes",
    "periodicity_message",
    "warn_if_not_periodic",
]

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


class NonPeriodicWarning(UserWarning):
    """A user image whose opposite faces do not match: the solvers, which treat every image as a
    periodic cell, join those faces (a micro-CT crop is not periodic)."""


#: an axis is reported as not periodic when the fraction of voxels that differ across its
#: periodic boundary exceeds this, :data:`MISMATCH_RATIO` times the mean over the interior
#: planes, and its two faces are not each of one phase (a crop of a random medium: about ``2 phi (1 - phi)`` at the boundary against a few
#: per cent inside; a periodic cell: the same at the boundary as inside)
MISMATCH_MIN = 0.02
MISMATCH_RATIO = 3.0


def face_mismatch(image, interior: str = "mean") -> list[tuple[float, float]]:
    """For each axis ``a`` of ``image`` (``*grid``, any dtype), the fraction of voxels of the
    first plane normal to ``a`` that differ from their neighbour on the last plane (across the
    periodic boundary), and the mean (``interior="mean"``) or the largest (``"max"``) of that
    fraction over the interior pairs of adjacent planes.

    A periodic cell has the two about equal; a crop of a larger sample has a boundary value
    near that of two unrelated planes."""
    img = np.asarray(image)
    out = []
    for a in range(img.ndim):
        n = img.shape[a]
        first, last = np.take(img, 0, axis=a), np.take(img, n - 1, axis=a)
        boundary = float(np.mean(first != last))
        if n > 1:
            d = np.diff(img, axis=a) != 0
            per_plane = d.mean(axis=tuple(b for b in range(img.ndim) if b != a))
            inner = float(per_plane.mean() if interior == "mean" else per_plane.max())
        else:
            inner = 0.0
        out.append((boundary, inner))
    return out


def periodicity_message(image, what: str = "image", pores=None) -> str | None:
    """One line naming the axes along which ``image`` is not periodic (see :func:`face_mismatch`),
    their mismatch fractions and what to do; ``None`` when every axis looks periodic.

    ``pores``: the conducting / pore voxels (``*grid`` bool), or a function of an image that
    returns them (the Stokes solver's fluid nodes), where known. An axis that they cross
    neither across the periodic boundary nor from face to face (the image followed by its
    mirror image along that axis, its other faces sealed) is not reported (its tensor is zero
    either way); one that they cross one way only is reported, whatever its mismatch, and named
    as such (the periodic tensor there is zero where the sample's is not, or the reverse)."""
    mism = face_mismatch(image)
    img = np.asarray(image)
    # two faces that are each of one phase (a laminate cut across a layer, a wall on the boundary)
    # join like an interface inside the image: the crop and the periodic cell agree
    uniform = [all(np.all(f == f.flat[0]) for f in (np.take(img, 0, axis=a), np.take(img, -1, axis=a)))
               for a in range(img.ndim)]
    bad = [(a, b, i) for a, (b, i) in enumerate(mism)
           if b > MISMATCH_MIN and b > MISMATCH_RATIO * i and not uniform[a]]
    notes = {}
    if pores is not None:
        pores_of = pores if callable(pores) else None
        pores = np.asarray(pores_of(img) if pores_of else pores, dtype=bool)
        periodic = percolating_axes(pores)
        flagged = {a for a, _, _ in bad}
        bad = []
        for a, (b, i) in enumerate(mism):
            if b == 0.0 or uniform[a]:
                continue
            if pores_of is None:
                twice = np.concatenate([pores, np.flip(pores, axis=a)], axis=a)
            else:
                twice = np.asarray(pores_of(np.concatenate([img, np.flip(img, axis=a)], axis=a)), dtype=bool)
            # sealed side walls: a closed plane across each other axis, so that a path from face to
            # face along a cannot use the periodic wrap of another axis
            for c in range(twice.ndim):
                if c != a:
                    twice = np.concatenate([twice, np.zeros_like(np.take(twice, [0], axis=c))], axis=c)
            face_to_face = percolating_axes(twice)[a]
            if periodic[a] != face_to_face:
                notes[a] = ("; the pores cross it from face to face but not across the periodic boundary: "
                            "the periodic tensor is zero there" if face_to_face else
                            "; the pores cross the periodic boundary only, not from face to face: "
                            "the sample's tensor is zero there")
            elif not (a in flagged and periodic[a]):
                continue
            bad.append((a, b, i))
    if not bad:
        return None
    parts = ", ".join(f"axis {a}: {100 * b:.3g}% of the face voxels differ across the boundary "
                      f"(adjacent interior planes: {100 * i:.2g}%){notes.get(a, '')}" for a, b, i in bad)
    axes = " ".join(str(a) for a, _, _ in bad)
    return (f"{what} is not periodic ({parts}); the solver treats it as a periodic cell and joins its "
            f"opposite faces, so the tensor along {'these axes' if len(bad) > 1 else 'this axis'} can be "
            f"badly wrong for a crop of a larger sample: mirror it (--mirror {axes}, or "
            "oracles.transport.porous.mirror) unless it is a periodic unit cell")


def warn_if_not_periodic(image, what: str = "image", pores=None, stacklevel: int = 3) -> str | None:
    """:func:`periodicity_message` as a :class:`NonPeriodicWarning`; returns the message."""
    msg = periodicity_message(image, what, pores)
    if msg is not None:
        warnings.warn(msg, NonPeriodicWarning, stacklevel=stacklevel)
    return msg
