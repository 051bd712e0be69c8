r"""Porous microstructures on voxel grids: ``solid(shape) -> *grid bool``.

Every microstructure is a small dataclass (plain data, picklable) whose
lengths are fractions of the cell edge, so one instance gives the same
geometry on a coarse and a fine grid; ``solid(shape)`` returns True on solid
voxels.

* Closed-form cases: :class:`Slit`, :class:`CylinderArray` (square array,
  one cylinder per cell, along the last axis in 3D), :class:`SphereArray`
  (simple cubic, one sphere per cell).
* Random media from PoreSpy's generators (Gostick et al. 2019, JOSS 4):
  :class:`OverlappingSpheres`, :class:`PolydisperseSpheres`, :class:`Blobs`,
  :class:`Fibres`. PoreSpy images are True on pores; its sphere and fibre
  images are not periodic (the solvers treat the cell as periodic).
* :class:`PoreImage`: a user image (``.npy`` bool or 0/1 array, True or 1 on solid, or
  labels with ``pore_label``; 8/16-bit greyscale ``.png``, ``.tif`` stacks).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oracles.exceptions import InvalidInput, is_finite_real, is_real
from oracles.images import read_greyscale, read_npy

__all__ = [
    "Blobs",
    "CylinderArray",
    "Fibres",
    "MICROSTRUCTURES",
    "OverlappingSpheres",
    "PolydisperseSpheres",
    "PoreImage",
    "Slit",
    "SphereArray",
    "microstructure",
    "mirror",
    "solid_from_labels",
]


def _check_shape(shape, equal: int | None = None) -> tuple[int, ...]:
    """``shape`` as ints: 2 or 3 axes of at least 2 voxels; its first ``equal`` axes (default
    all) of one size. Sizes given as fractions of the cell mean the same length on every
    axis only on a square (cubic) grid of the solvers' cubic voxels."""
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 2:
        raise InvalidInput(f"grid must have 2 or 3 axes of at least 2 voxels, got {shape}")
    sub = shape[: len(shape) if equal is None else equal]
    if len(set(sub)) > 1:
        raise InvalidInput(
            f"grid {shape}: this microstructure's sizes are fractions of a square (cubic) cell, so its "
            f"{'axes' if equal is None else f'first {equal} axes'} need one size (a non-square cell: a .npy image)")
    return shape


def _centres(shape):
    return np.meshgrid(*[(np.arange(n) + 0.5) / n for n in shape], indexing="ij")


def _fraction(name: str, v: float, lo: float = 0.0, hi: float = 1.0) -> float:
    if not (is_real(v) and lo < v < hi):
        raise InvalidInput(f"{name} must lie in ({lo}, {hi}), got {v!r}")
    return float(v)


def _seed(seed) -> int | None:
    """``seed`` as PoreSpy takes it: ``None`` or a whole number in ``[0, 2**32 - 1]``."""
    if seed is None:
        return None
    if not (is_finite_real(seed) and float(seed).is_integer() and 0 <= seed < 2**32):
        raise InvalidInput(f"seed must be None or a whole number in [0, 2**32 - 1], got {seed!r}")
    return int(seed)


def _radius_voxels(radius_fraction: float, shape) -> int:
    return max(1, int(round(radius_fraction * min(shape))))


def _generate(name: str, **kwargs) -> np.ndarray:
    """Call ``porespy.generators.<name>``; its failures become one-line InvalidInput."""
    gen = getattr(_porespy().generators, name)
    try:
        return np.asarray(gen(**kwargs), dtype=bool)
    except (ValueError, OverflowError, ZeroDivisionError, IndexError) as e:
        shown = {k: v for k, v in kwargs.items() if k != "dist"}
        raise InvalidInput(
            f"porespy.generators.{name} failed for {shown}: {type(e).__name__}: {e}"
        ) from None


def _porespy():
    try:
        import porespy
    except ImportError as e:  # pragma: no cover - porespy is a dependency
        raise InvalidInput(f"PoreSpy microstructures need the porespy package ({e})") from e
    return porespy


@dataclass(frozen=True)
class Slit:
    """Solid layers normal to axis ``axis``; pore channel ``fraction`` of the cell."""

    fraction: float = 0.5
    axis: int = -1

    def solid(self, shape) -> np.ndarray:
        shape = _check_shape(shape, equal=0)
        _fraction("fraction", self.fraction)
        ax = self.axis % len(shape)
        n = shape[ax]
        h = int(round(self.fraction * n))
        if not 0 < h < n:
            raise InvalidInput(
                f"slit fraction {self.fraction} gives {h} of {n} voxels; need 1..{n - 1}"
            )
        line = np.arange(n) >= h
        return np.broadcast_to(
            line.reshape([-1 if a == ax else 1 for a in range(len(shape))]), shape
        ).copy()


@dataclass(frozen=True)
class CylinderArray:
    """Square array of solid cylinders, radius ``radius_fraction`` of the cell;
    in 3D along the last axis (voxel centres inside the circle are solid)."""

    radius_fraction: float = 0.25

    def solid(self, shape) -> np.ndarray:
        shape = _check_shape(shape, equal=2)
        _fraction("radius_fraction", self.radius_fraction, 0.0, 1.0)
        X = _centres(shape[:2])
        s = (X[0] - 0.5) ** 2 + (X[1] - 0.5) ** 2 < self.radius_fraction**2
        if len(shape) == 3:
            s = np.repeat(s[:, :, None], shape[2], axis=2)
        return s

    def solid_fraction(self) -> float:
        return min(1.0, math.pi * self.radius_fraction**2)


@dataclass(frozen=True)
class SphereArray:
    """Simple cubic array of solid spheres (3D) or disks (2D), radius
    ``radius_fraction`` of the cell."""

    radius_fraction: float = 0.25

    def solid(self, shape) -> np.ndarray:
        shape = _check_shape(shape)
        _fraction("radius_fraction", self.radius_fraction, 0.0, 1.0)
        X = _centres(shape)
        return sum((x - 0.5) ** 2 for x in X) < self.radius_fraction**2


@dataclass(frozen=True)
class OverlappingSpheres:
    """Overlapping solid spheres of radius ``radius_fraction`` of the cell at
    the given ``porosity`` (``porespy.generators.overlapping_spheres``).

    The radius in voxels, ``radius_fraction * min(shape)`` (at least 1), is
    not rounded: a voxel is solid when its distance to a sphere centre is
    below it, so the image, and a permeability computed on it, change with
    the radius between whole voxels too (rounded, 16^3 voxels had given two
    grain sizes over radius fractions 0.06 to 0.15)."""

    porosity: float = 0.5
    radius_fraction: float = 0.1
    seed: int | None = 0

    def solid(self, shape) -> np.ndarray:
        shape = _check_shape(shape)
        _fraction("porosity", self.porosity)
        _fraction("radius_fraction", self.radius_fraction, 0.0, 0.5)
        seed = _seed(self.seed)
        ps = _porespy()
        r = max(1.0, float(self.radius_fraction) * min(shape))
        im = ps.generators.overlapping_spheres(list(shape), r=r, porosity=self.porosity, seed=seed)
        return ~np.asarray(im, dtype=bool)


@dataclass(frozen=True)
class PolydisperseSpheres:
    """Overlapping solid spheres with normally distributed radii (mean
    ``radius_fraction`` of the cell, relative spread ``spread``)
    (``porespy.generators.polydisperse_spheres``)."""

    porosity: float = 0.5
    radius_fraction: float = 0.1
    spread: float = 0.2
    seed: int | None = 0

    def solid(self, shape) -> np.ndarray:
        import scipy.stats

        shape = _check_shape(shape)
        _fraction("porosity", self.porosity)
        _fraction("radius_fraction", self.radius_fraction, 0.0, 0.5)
        _fraction("spread", self.spread, 0.0, 1.0)
        r = self.radius_fraction * min(shape)
        dist = scipy.stats.norm(loc=r, scale=self.spread * r)
        im = _generate(
            "polydisperse_spheres",
            shape=list(shape),
            porosity=self.porosity,
            dist=dist,
            nbins=5,
            r_min=1,
            seed=_seed(self.seed),
        )
        return ~im


@dataclass(frozen=True)
class Blobs:
    """Periodic Gaussian-random-field blobs of pore at ``porosity``; larger
    ``blobiness`` gives smaller blobs (``porespy.generators.blobs``)."""

    porosity: float = 0.5
    blobiness: float = 1.0
    seed: int | None = 0

    def solid(self, shape) -> np.ndarray:
        shape = _check_shape(shape)
        _fraction("porosity", self.porosity)
        if not (is_real(self.blobiness) and self.blobiness > 0):
            raise InvalidInput(f"blobiness must be positive, got {self.blobiness!r}")
        seed = _seed(self.seed)
        ps = _porespy()
        im = ps.generators.blobs(list(shape), porosity=self.porosity, blobiness=self.blobiness, seed=seed)
        return ~np.asarray(im, dtype=bool)


#: draws of PoreSpy's ``cylinders`` (with derived seeds) a :class:`Fibres` image may take
FIBRE_ATTEMPTS = 8
#: a draw whose porosity is within this of the target is taken
FIBRE_POROSITY_TOL = 0.1


@dataclass(frozen=True)
class Fibres:
    """Straight solid fibres (cylinders) of radius ``radius_fraction`` of the
    cell at ``porosity``, at most ``phi_max`` degrees out of the plane
    normal to the last axis (``porespy.generators.cylinders``; 3D only).
    PoreSpy 3.2's ``cylinders`` overflows for ``phi_max`` below a few
    degrees, hence the default of 10; its porosity control is loose
    (a few per cent on small grids). It takes a whole number of voxels for
    the radius: ``radius_fraction * min(shape)`` is rounded (at least 1), so
    the image changes in steps of one voxel of radius."""

    porosity: float = 0.8
    radius_fraction: float = 0.05
    phi_max: float = 10.0
    theta_max: float = 90.0
    seed: int | None = 0

    def solid(self, shape) -> np.ndarray:
        shape = _check_shape(shape)
        if len(shape) != 3:
            raise InvalidInput(f"Fibres need a 3D grid, got {shape}")
        _fraction("porosity", self.porosity)
        _fraction("radius_fraction", self.radius_fraction, 0.0, 0.5)
        r = _radius_voxels(self.radius_fraction, shape)
        kw = dict(shape=list(shape), r=r, porosity=self.porosity, phi_max=self.phi_max, theta_max=self.theta_max)
        # PoreSpy 3.2's cylinders divides by the solid volume its first batch of fibres added,
        # which is zero when that batch misses a small grid (an OverflowError for seeds 0, 3, 6,
        # 7 at 32^3), and an unlucky first batch can leave the porosity far from the target
        # (0.16 for 0.8): such a draw is made again with seeds derived from this one (the first
        # within FIBRE_POROSITY_TOL of the target, else the closest), so a seed gives one image
        seeds = [_seed(self.seed)] + [None if self.seed is None else
                                      int(np.random.SeedSequence([int(self.seed), k]).generate_state(1)[0])
                                      for k in range(1, FIBRE_ATTEMPTS)]
        best, err = None, None
        for k, sd in enumerate(seeds):
            try:
                pores = _generate("cylinders", **kw, seed=sd)
            except InvalidInput:
                if k == len(seeds) - 1 and best is None:
                    raise
                continue
            miss = abs(float(pores.mean()) - self.porosity)
            if best is None or miss < err:
                best, err = pores, miss
            if miss <= FIBRE_POROSITY_TOL:
                break
        return ~best


#: file types :class:`PoreImage` reads: numpy arrays, and greyscale images read with Pillow
#: (a multi-page TIFF is a 3D stack, its pages along the first axis)
PORE_IMAGE_SUFFIXES = (".npy", ".png", ".tif", ".tiff")


def solid_from_labels(arr: np.ndarray, pore_label=None, what: str = "pore image") -> np.ndarray:
    """The solid mask (``*grid`` bool) of a segmented image.

    ``pore_label=None`` (default): ``arr`` must be bool or hold 0 and 1 only, 1 (True) on solid.
    Otherwise the voxels equal to ``pore_label`` are pores and every other voxel is solid (0/255
    images, label images whose pore label is not 0, images with pores 1 and solid 0).
    """
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise InvalidInput(f"{what} must be 2D or 3D, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise InvalidInput(f"{what} must hold 0/1 (1 = solid) or bools, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        raise InvalidInput(f"{what} has {bad} non-finite (NaN or inf) voxels; expected a segmented image "
                           "of 0/1 (1 = solid) or of labels with --pore-label")
    if pore_label is not None:
        if not (is_finite_real(pore_label)):
            raise InvalidInput(f"pore_label must be a number (the value of the pore voxels), got {pore_label!r}")
        pores = arr == pore_label
        if not pores.any():
            vals = np.unique(arr)[:6].tolist()
            raise InvalidInput(f"{what} has no voxel equal to the pore label {pore_label!r}; its values are "
                               f"{vals}{' ...' if np.unique(arr).size > 6 else ''}")
        return ~pores
    if arr.dtype == bool:
        return arr
    if not np.isin(arr, (0, 1)).all():
        vals = np.unique(arr)
        raise InvalidInput(
            f"{what} must hold 0/1 (1 = solid) or bools, got values {vals[:5].tolist()}"
            f"{' ...' if vals.size > 5 else ''}: name the value of the pores with --pore-label "
            "(pore_label=), every other value is then solid"
        )
    return arr.astype(bool)


def mirror(image, axes=None) -> np.ndarray:
    """``image`` followed by its mirror image along each of ``axes`` (default all): a periodic
    cell (twice as long along each axis) made of a non-periodic crop, whose opposite faces then
    match. Its tensor describes the crop and its mirror in series along each mirrored axis (the
    off-diagonal terms between a mirrored axis and another vanish by symmetry)."""
    arr = np.asarray(image)
    k = arr.ndim
    axes = range(k) if axes is None else axes
    seen = []
    for a in axes:
        if not (is_real(a) and int(a) == a and -k <= int(a) < k):
            raise InvalidInput(f"mirror axes must be integers in [0, {k - 1}], got {a!r}")
        a = int(a) % k
        if a in seen:
            raise InvalidInput(f"mirror axis {a} is named twice")
        seen.append(a)
        arr = np.concatenate([arr, np.flip(arr, axis=a)], axis=a)
    return arr


@dataclass(frozen=True)
class PoreImage:
    """A user image: ``path`` to a ``.npy`` array, an 8- or 16-bit greyscale ``.png`` (2D) or a
    ``.tif`` (one page: 2D; a multi-page stack: 3D, pages along the first axis), by default
    True or 1 on solid voxels and 0 on pores; with ``pore_label`` the voxels of that value are
    pores and all others solid. ``mirror``: axes along which the image is followed by its mirror
    image (see :func:`mirror`). Its own grid; ``solid(shape)`` checks that ``shape`` matches.
    Voxels are cubes."""

    path: str
    pore_label: float | None = None
    mirror: tuple[int, ...] = ()

    def raw(self) -> np.ndarray:
        """The file's array as stored (no label conversion)."""
        p = Path(self.path)
        suffix = p.suffix.lower()
        if suffix not in PORE_IMAGE_SUFFIXES:
            raise InvalidInput(f"pore image must be a {', '.join(PORE_IMAGE_SUFFIXES)} file, got {self.path!r}")
        if not p.is_file():
            where = "" if p.is_absolute() else f" (looked for {p.resolve()})"
            raise InvalidInput(f"pore image {self.path!r} does not exist{where}")
        if suffix == ".npy":
            return read_npy(p, "pore image")
        return read_greyscale(p, "pore image")

    def load(self) -> np.ndarray:
        arr = solid_from_labels(self.raw(), self.pore_label)
        return mirror(arr, self.mirror) if self.mirror else arr

    def solid(self, shape=None) -> np.ndarray:
        arr = self.load()
        if shape is not None and tuple(shape) != arr.shape:
            raise InvalidInput(
                f"pore image {self.path!r} has shape {arr.shape}, grid {tuple(shape)} was asked"
            )
        return arr


#: CLI / config names of the microstructures
MICROSTRUCTURES = {
    "slit": Slit,
    "cylinders": CylinderArray,
    "spheres": SphereArray,
    "overlapping": OverlappingSpheres,
    "polydisperse": PolydisperseSpheres,
    "blobs": Blobs,
    "fibres": Fibres,
}


def microstructure(name: str, **params):
    """A microstructure by name (:data:`MICROSTRUCTURES`) or a ``.npy`` path."""
    if str(name).lower().endswith(PORE_IMAGE_SUFFIXES):
        return PoreImage(str(name))
    if name not in MICROSTRUCTURES:
        raise InvalidInput(
            f"microstructure must be one of {sorted(MICROSTRUCTURES)} or a .npy/.png/.tif file, got {name!r}"
        )
    cls = MICROSTRUCTURES[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(params) - fields)
    if bad:
        raise InvalidInput(f"{name} has no parameters {bad}; it takes {sorted(fields)}")
    return cls(**params)
