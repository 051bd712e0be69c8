r"""Periodic voxel microstructures for the FFT homogenization oracle.

Every microstructure is a frozen dataclass whose fields are its parameters, so
an oracle can vary one with :func:`dataclasses.replace`, and has

* ``phase_map(shape) -> np.ndarray``: ``int64`` array of ``shape`` (2 or 3
  axes, ``N0 x N1 [x N2]`` voxels) holding phase ids ``0 .. p-1``;
* ``num_phases``: ``p`` (for :class:`PhaseMap`, known once loaded).

Voxel ``i`` along an axis of ``N`` voxels covers ``[i, i+1)``; its centre is at
``i + 1/2``. The cell is periodic in every axis. Lengths given as fractions
(``radius_fraction``, ``min_gap``) are fractions of the shortest cell edge
``N = min(shape)`` in voxels.

Bad parameters or a grid that cannot hold the structure raise
:class:`~oracles.exceptions.InvalidInput` naming the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from oracles.exceptions import InvalidInput, is_integer
from oracles.images import read_npy, read_phase_ids

__all__ = [
    "Microstructure",
    "Laminate",
    "Inclusion",
    "CubeInclusion",
    "RandomFibres",
    "VoronoiPolycrystal",
    "PhaseMap",
    "check_grid",
    "check_grid_memory",
    "grid_memory_estimate",
    "RSA_JAMMING_FRACTION",
]

#: saturation (jamming) coverage of random sequential addition of equal discs
#: (2D, 0.5470; Hinrichsen, Feder, Jossang 1986) and spheres (3D, 0.3841;
#: Torquato, Uche, Stillinger 2006). Targets above these are unreachable.
RSA_JAMMING_FRACTION = {2: 0.5470, 3: 0.3841}


def check_grid(shape: Any) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of 2 or 3 positive ints, else raise InvalidInput."""
    try:
        if isinstance(shape, (str, bytes)) or any(isinstance(s, (bool, np.bool_, str, bytes)) for s in shape):
            raise TypeError
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"grid shape must be a tuple of 2 or 3 ints, got {shape!r}") from e
    if len(shp) not in (2, 3) or any(s < 1 for s in shp) or any(
        float(a) != b for a, b in zip(shape, shp, strict=True)
    ):
        raise InvalidInput(f"grid shape must be 2 or 3 positive ints, got {shape!r}")
    return shp


#: peak memory of one FFT homogenization with its tangent, bytes per voxel and macro load, by
#: (dimension, finite strain): measured as the growth of the peak resident set of
#: ``RVEOracle.homogenize(..., tangent=True)`` (float64, CPU, one load) on 63^2-511^2 and
#: 32^3-80^3 grids, rounded up (finite strain 3D: 2900-3900 measured, 4700 before the laws summed
#: their tangents in place and Newton freed the old tangent before the next)
BYTES_PER_VOXEL = {(2, False): 400, (2, True): 1400, (3, False): 850, (3, True): 4000}


def grid_memory_estimate(shape: Any, finite: bool = False, loads: int = 1) -> float:
    """Estimated peak memory (bytes) of homogenizing ``loads`` macro loads at once on grid
    ``shape`` (a nonlinear solve holds every load's fields; linear small strain does not)."""
    shp = check_grid(shape)
    return float(math.prod(shp)) * BYTES_PER_VOXEL[(len(shp), bool(finite))] * max(1, int(loads))


def check_grid_memory(shape: Any, finite: bool = False, memory: float | None = None,
                      loads: int = 1) -> tuple[int, ...]:
    """``shape`` as a tuple when its solve fits in ``memory`` bytes (default:
    :func:`oracles.memory.available_memory`, what this process can still allocate).

    Raises:
        InvalidInput: naming the grid, the estimate, the memory and the largest grid that
            fits, e.g. ``grid 600^3 needs about 184 GB (small strain); this machine has 23 GB
            available: use a coarser grid (about 300^3 fits)``.
    """
    from oracles import memory as mem

    shp = check_grid(shape)
    need = grid_memory_estimate(shp, finite, loads)
    have = mem.available_memory() if memory is None else float(memory)
    if need > have:
        k = len(shp)
        fit = int((have / (BYTES_PER_VOXEL[(k, bool(finite))] * max(1, int(loads)))) ** (1.0 / k))
        hint = f"about {fit}^{k} fits" if fit >= 3 else "not even a 3-voxel grid fits: free some memory"
        per = f", {int(loads)} loads at once" if loads > 1 else ""
        raise InvalidInput(
            f"grid {mem.grid_name(shp)} needs about {need / 1e9:.3g} GB ({'finite' if finite else 'small'} "
            f"strain{per}); this machine has {have / 1e9:.3g} GB available: use a coarser grid ({hint})"
        )
    return shp


def _require_phases(ms: Microstructure, pm: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``pm`` when every phase of ``ms`` has a voxel, else InvalidInput (grid too coarse)."""
    counts = np.bincount(pm.ravel(), minlength=ms.num_phases)
    empty = np.flatnonzero(counts == 0).tolist()
    if empty:
        raise InvalidInput(
            f"grid {shape} is too coarse for {ms!r}: phase {empty[0]} gets no voxel; use a finer grid"
        )
    return pm


def _voxel_centres(shape: tuple[int, ...]) -> np.ndarray:
    """``prod(shape) x d`` voxel centres in voxel units, C order."""
    axes = [np.arange(n) + 0.5 for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(shape))


def _check_fraction(name: str, v: float, lo_open: bool = False, hi_open: bool = False) -> float:
    if isinstance(v, (bool, np.bool_, str, bytes)):
        raise InvalidInput(f"{name} must be a number, got {type(v).__name__} {v!r}")
    try:
        v = float(v)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"{name} must be a number, got {v!r}") from e
    bad = not math.isfinite(v) or v < 0 or v > 1 or (lo_open and v == 0) or (hi_open and v == 1)
    if bad:
        interval = ("(" if lo_open else "[") + "0, 1" + (")" if hi_open else "]")
        raise InvalidInput(f"{name} must lie in {interval}, got {v!r}")
    return v


def _set_fraction(ms: Microstructure, name: str, **kw) -> float:
    """Check the fraction field ``name`` of ``ms`` (see :func:`_check_fraction`) and store it as a float."""
    v = _check_fraction(name, getattr(ms, name), **kw)
    object.__setattr__(ms, name, v)
    return v


def _check_seed(seed: Any) -> int:
    """``seed`` when it is a non-negative int (what ``numpy.random.default_rng`` takes), else InvalidInput."""
    if not is_integer(seed) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative int, got {type(seed).__name__} {seed!r}")
    return int(seed)


class Microstructure:
    """Base class: a periodic voxel phase map generator."""

    num_phases: int = 2

    def phase_map(self, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def volume_fractions(self, shape: tuple[int, ...]) -> np.ndarray:
        """``p`` voxel fractions of the phases on this grid."""
        pm = self.phase_map(shape)
        return np.bincount(pm.ravel(), minlength=self.num_phases) / pm.size


# ------------------------------------------------------------------ laminate
@dataclass(frozen=True)
class Laminate(Microstructure):
    """Grid-aligned two-phase laminate with layer normal ``normal_axis``.

    Phase 1 fills the layers ``0 .. n1 - 1`` along ``normal_axis`` with
    ``n1 = floor(fraction * N + 1/2)`` (``N = shape[normal_axis]``); phase 0
    the rest. The voxel fraction equals ``fraction`` exactly when
    ``fraction * N`` is an integer (e.g. 0.25 on 8, 16, 32... layers, or
    ``k/N`` in general); otherwise it is the nearest ``k/N``.
    """

    fraction: float = 0.5
    normal_axis: int = 0

    def __post_init__(self):
        _set_fraction(self, "fraction")
        if not is_integer(self.normal_axis) or self.normal_axis not in (0, 1, 2):
            raise InvalidInput(f"normal_axis must be 0, 1 or 2, got {self.normal_axis!r}")

    def phase_map(self, shape: tuple[int, ...]) -> np.ndarray:
        shape = check_grid(shape)
        if self.normal_axis >= len(shape):
            raise InvalidInput(f"normal_axis={self.normal_axis} does not exist on a {len(shape)}D grid {shape}")
        N = shape[self.normal_axis]
        n1 = int(math.floor(self.fraction * N + 0.5))
        layers = (np.arange(N) < n1).astype(np.int64)
        view = [1] * len(shape)
        view[self.normal_axis] = N
        pm = np.broadcast_to(layers.reshape(view), shape).copy()
        # fraction 0 or 1 asks for one phase; in between, both need a layer
        return _require_phases(self, pm, shape) if 0 < self.fraction < 1 else pm


# ----------------------------------------------------------------- inclusions
@dataclass(frozen=True)
class Inclusion(Microstructure):
    """Centred disc (2D) or sphere (3D) of phase 1 in a phase-0 matrix.

    The radius is ``radius_fraction * N`` voxels (``N = min(shape)``); a voxel
    belongs to the inclusion when its centre lies within the radius of the cell
    centre ``shape / 2``. On a square/cubic grid the map has the full square/
    cubic symmetry (90° rotations and reflections). ``radius_fraction`` must be
    below 1/2 so the inclusion does not touch its periodic images.
    """

    radius_fraction: float = 0.25

    def __post_init__(self):
        r = _set_fraction(self, "radius_fraction", lo_open=True)
        if r >= 0.5:
            raise InvalidInput(f"radius_fraction must be below 0.5 (inclusion inside the cell), got {r}")

    def phase_map(self, shape: tuple[int, ...]) -> np.ndarray:
        shape = check_grid(shape)
        r = self.radius_fraction * min(shape)
        # squared distances by broadcasting open grids (no N^d x d coordinate array)
        r2 = sum(
            ((np.arange(n) + 0.5 - n / 2) ** 2).reshape([-1 if a == i else 1 for a in range(len(shape))])
            for i, n in enumerate(shape)
        )
        # tiny slack: voxels exactly on the sphere count in, independent of round-off
        pm = (r2 <= r * r * (1 + 1e-12)).astype(np.int64)
        if not pm.any():
            raise InvalidInput(f"radius_fraction={self.radius_fraction} gives no inclusion voxel on grid {shape}")
        return _require_phases(self, pm, shape)


@dataclass(frozen=True)
class CubeInclusion(Microstructure):
    """A square (2D) or cube (3D) of ``size`` voxels per edge of phase 1.

    Centred when ``centred`` (exactly for ``N - size`` even), otherwise at the
    cell's corner (the layout of de Geus et al. 2017, "Finite strain FFT-based
    non-linear solvers made simple": a 9³ cube in a 31³ cell).
    """

    size: int = 9
    centred: bool = True

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise InvalidInput(f"size must be a positive number of voxels, got {self.size!r}")

    def phase_map(self, shape: tuple[int, ...]) -> np.ndarray:
        shape = check_grid(shape)
        if self.size > min(shape):
            raise InvalidInput(f"size={self.size} voxels does not fit in grid {shape}")
        pm = np.zeros(shape, dtype=np.int64)
        start = [(n - self.size) // 2 if self.centred else 0 for n in shape]
        pm[tuple(slice(s, s + self.size) for s in start)] = 1
        return _require_phases(self, pm, shape)


# -------------------------------------------------------------- random fibres
@dataclass(frozen=True)
class RandomFibres(Microstructure):
    """Random non-overlapping periodic discs (2D: fibre cross-sections) or spheres (3D).

    Centres are placed by random sequential addition (RSA) in the periodic
    cell: uniform candidates are accepted when their centre distance to every
    accepted particle (minimum image) is at least ``2 r + gap``. The number of
    particles is the one whose continuum volume fraction ``n v_1 / V`` is
    closest to ``volume_fraction``; the achieved **voxel** fraction differs by
    the discretization error and is returned by :meth:`achieved_fraction`.

    Args (fields):
        volume_fraction: target fraction of phase 1 in ``(0, 1)``.
        radius_fraction: radius ``r`` as a fraction of ``N = min(shape)``.
        seed: seed of the generator (``numpy.random.default_rng``).
        min_gap: minimum surface-to-surface gap as a fraction of ``N``.
        max_attempts: candidates tried before giving up.

    RSA approaches jamming slowly: in practice about 0.5 (2D) and 0.3 (3D)
    are reached within the default attempts; denser packings need a
    different algorithm (e.g. Lubachevsky–Stillinger), which this is not.

    Raises:
        InvalidInput: when the target (with radius enlarged by half the gap)
            is above the RSA jamming fraction (:data:`RSA_JAMMING_FRACTION`),
            when a particle does not fit in the cell, or when RSA stalls.
    """

    volume_fraction: float = 0.3
    radius_fraction: float = 0.1
    seed: int = 0
    min_gap: float = 0.0
    max_attempts: int = 1_000_000

    def __post_init__(self):
        _set_fraction(self, "volume_fraction", lo_open=True, hi_open=True)
        _set_fraction(self, "radius_fraction", lo_open=True)
        _set_fraction(self, "min_gap")
        if self.radius_fraction >= 0.25:
            raise InvalidInput(
                f"radius_fraction must be below 0.25 (a particle must not meet its own images), "
                f"got {self.radius_fraction}"
            )
        _check_seed(self.seed)
        if not is_integer(self.max_attempts) or self.max_attempts < 1:
            raise InvalidInput(f"max_attempts must be a positive int, got {self.max_attempts!r}")

    def _sizes(self, shape: tuple[int, ...]) -> tuple[float, float, int]:
        d = len(shape)
        N = min(shape)
        r = self.radius_fraction * N
        gap = self.min_gap * N
        v1 = math.pi * r**2 if d == 2 else 4.0 / 3.0 * math.pi * r**3
        V = float(np.prod(shape))
        n = max(1, int(round(self.volume_fraction * V / v1)))
        reff = r + gap / 2
        veff = math.pi * reff**2 if d == 2 else 4.0 / 3.0 * math.pi * reff**3
        jam = RSA_JAMMING_FRACTION[d]
        if n * veff / V > jam:
            raise InvalidInput(
                f"volume_fraction={self.volume_fraction} with radius_fraction={self.radius_fraction} "
                f"and min_gap={self.min_gap} needs a packing fraction {n * veff / V:.3f} above the "
                f"{d}D random-sequential-addition jamming limit {jam}"
            )
        return r, gap, n

    def centres(self, shape: tuple[int, ...]) -> np.ndarray:
        """``n x d`` particle centres in voxel units, in ``[0, shape)``."""
        shape = check_grid(shape)
        r, gap, n = self._sizes(shape)
        L = np.asarray(shape, dtype=float)
        dmin2 = (2 * r + gap) ** 2
        rng = np.random.default_rng(self.seed)
        acc = np.empty((n, len(shape)))
        k = 0  # accepted so far
        tried = 0
        while k < n:
            if tried >= self.max_attempts:
                raise InvalidInput(
                    f"random sequential addition placed only {k} of {n} particles in "
                    f"{self.max_attempts} attempts (volume_fraction={self.volume_fraction}, "
                    f"radius_fraction={self.radius_fraction}); lower the fraction or the radius"
                )
            batch = rng.random((min(1024, self.max_attempts - tried), len(shape))) * L
            tried += len(batch)
            if k:
                # periodic nearest accepted centre; reject anything closer than 2r + gap
                dist, _ = cKDTree(acc[:k], boxsize=L).query(batch, k=1)
                batch = batch[dist * dist >= dmin2]
            # accept survivors in order, each checked against those taken from this batch
            k0 = k
            for c in batch:
                if k >= n:
                    break
                if k > k0:
                    dx = c - acc[k0:k]
                    dx -= L * np.round(dx / L)
                    if ((dx**2).sum(-1) < dmin2).any():
                        continue
                acc[k] = c
                k += 1
        return acc

    def labels(self, shape: tuple[int, ...]) -> np.ndarray:
        """Voxel map of particle indices (``-1`` in the matrix), periodic wrap."""
        shape = check_grid(shape)
        r, _, _ = self._sizes(shape)
        lab = np.full(shape, -1, dtype=np.int64)
        reach = int(math.ceil(r)) + 1
        for k, c in enumerate(self.centres(shape)):
            base = np.floor(c).astype(int)
            idx = [np.arange(b - reach, b + reach + 1) for b in base]
            grids = np.meshgrid(*idx, indexing="ij")
            d2 = sum((g + 0.5 - ci) ** 2 for g, ci in zip(grids, c, strict=True))
            inside = d2 <= r * r
            wrapped = tuple(np.mod(g[inside], n) for g, n in zip(grids, shape, strict=True))
            lab[wrapped] = k
        return lab

    def phase_map(self, shape: tuple[int, ...]) -> np.ndarray:
        return _require_phases(self, (self.labels(shape) >= 0).astype(np.int64), shape)

    def achieved_fraction(self, shape: tuple[int, ...]) -> float:
        """Voxel fraction of phase 1 on this grid."""
        return float(self.phase_map(shape).mean())


# ------------------------------------------------------------ polycrystal
@dataclass(frozen=True)
class VoronoiPolycrystal(Microstructure):
    """Periodic Voronoi tessellation of ``n_grains`` uniformly random seeds.

    Each voxel takes the id of the nearest seed under the periodic (minimum
    image) metric, computed with :class:`scipy.spatial.cKDTree` and
    ``boxsize=shape``. Grain ids are ``0 .. n_grains-1``; a grid so coarse that a
    grain gets no voxel raises InvalidInput (ids must be contiguous).
    """

    n_grains: int = 8
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.n_grains, bool) or not isinstance(self.n_grains, (int, np.integer)) or self.n_grains < 1:
            raise InvalidInput(f"n_grains must be a positive int, got {self.n_grains!r}")
        _check_seed(self.seed)

    @property
    def num_phases(self) -> int:  # type: ignore[override]
        return int(self.n_grains)

    def seeds(self, shape: tuple[int, ...]) -> np.ndarray:
        """``n_grains x d`` seed points in voxel units."""
        shape = check_grid(shape)
        rng = np.random.default_rng(self.seed)
        return rng.random((self.n_grains, len(shape))) * np.asarray(shape, dtype=float)

    def phase_map(self, shape: tuple[int, ...]) -> np.ndarray:
        shape = check_grid(shape)
        tree = cKDTree(self.seeds(shape), boxsize=np.asarray(shape, dtype=float))
        # query slab by slab along axis 0 to bound the memory of the coordinate arrays
        pm = np.empty(shape, dtype=np.int64)
        rest = shape[1:]
        for i in range(shape[0]):
            pts = np.concatenate([np.full((int(np.prod(rest)), 1), i + 0.5), _voxel_centres(rest)], 1)
            pm[i] = tree.query(pts)[1].reshape(rest)
        counts = np.bincount(pm.ravel(), minlength=self.n_grains)
        if (counts == 0).any():
            empty = np.flatnonzero(counts == 0).tolist()
            raise InvalidInput(
                f"grains {empty} of n_grains={self.n_grains} (seed={self.seed}) get no voxel on "
                f"grid {shape}; use a finer grid or fewer grains"
            )
        return pm

    def orientations(self) -> np.ndarray:
        """``n_grains x 3 x 3`` uniformly random (Haar) rotation matrices, one per grain.

        From :meth:`scipy.spatial.transform.Rotation.random` seeded with ``seed``.
        For 2D (plane) use, the in-plane block of each matrix is not a rotation;
        take a rotation about the 3-axis instead.
        """
        return Rotation.random(int(self.n_grains), random_state=self.seed).as_matrix()


# ---------------------------------------------------------- user phase map
_IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".bmp", ".gif", ".jpg", ".jpeg"}


@dataclass(frozen=True, eq=False)
class PhaseMap(Microstructure):
    """A user phase map: an integer array, a ``.npy`` file or a segmented image.

    * Arrays and ``.npy`` files must hold integer ids ``0 .. p-1``, every id
      present (floats are accepted when they are whole numbers).
    * Images (PNG, TIFF, ...) are read with Pillow
      (:func:`oracles.images.read_phase_ids`); each distinct colour is a phase,
      ids ``0 .. p-1`` in increasing grey level. One page is a 2D map
      (``rows x columns``); a multi-page TIFF stack is a 3D map, page ``i`` at
      index ``i`` of the first axis, with one id per colour over all pages.
      Use lossless formats: JPEG artefacts create spurious colours.

    ``phase_map(shape)`` checks that ``shape`` equals the map's shape.
    """

    source: Any

    def __post_init__(self):
        object.__setattr__(self, "_array", self._load())

    def _load(self) -> np.ndarray:
        src = self.source
        if isinstance(src, (str, Path)):
            path = Path(src)
            if not path.is_file():
                where = "" if path.is_absolute() else (
                    f" (looked for {path.resolve()}: a relative path is read from the working directory)")
                raise InvalidInput(f"phase map file {str(path)!r} does not exist{where}")
            suffix = path.suffix.lower()
            if suffix == ".npy":
                arr = read_npy(path, "phase map file")
            elif suffix in _IMAGE_SUFFIXES:
                return read_phase_ids(path)
            else:
                raise InvalidInput(
                    f"phase map file {str(path)!r} has suffix {suffix!r}; expected .npy or an image "
                    f"({', '.join(sorted(_IMAGE_SUFFIXES))})"
                )
        else:
            arr = np.asarray(src)
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise InvalidInput(f"phase map must be a non-empty 2D or 3D array, got shape {arr.shape}")
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
                raise InvalidInput("phase map holds non-integer values; expected integer phase ids 0..p-1")
        elif arr.dtype.kind not in "iub":
            raise InvalidInput(f"phase map must hold integer phase ids, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        ids = np.unique(arr)
        if ids[0] != 0 or ids[-1] != len(ids) - 1:
            missing = sorted(set(range(int(ids[-1]) + 1)) - set(ids.tolist()))[:10]
            raise InvalidInput(
                f"phase ids must be contiguous 0..p-1; got ids {ids.tolist()[:10]}"
                + (f" (missing {missing})" if ids[0] >= 0 and missing else "")
            )
        return arr

    @property
    def num_phases(self) -> int:  # type: ignore[override]
        return int(self._array.max()) + 1

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    def phase_map(self, shape: tuple[int, ...] | None = None) -> np.ndarray:
        if shape is not None and check_grid(shape) != self.shape:
            raise InvalidInput(f"phase map has shape {self.shape} but the grid is {tuple(shape)}")
        return self._array.copy()
