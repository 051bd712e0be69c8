r"""Bounds and mean-field estimates of the effective elastic moduli of composites.

Pure functions (accepting numbers, NumPy arrays or tensors; returning torch
float64 tensors; broadcasting over leading batch dimensions) and
cheap :class:`~oracles.base.Oracle` wrappers that serve as low-fidelity
sources next to the FFT homogenization oracle (``oracles.rve``).

Notation
--------
Stiffness tensors are stored as matrices in **Mandel** notation, so that the
matrix and tensor share norms, products and inverses:

* 3D (``6 x 6``): strain vector ``[e11, e22, e33, sqrt2 e23, sqrt2 e13, sqrt2 e12]``;
* 2D plane strain (``3 x 3``): ``[e11, e22, sqrt2 e12]``.

An isotropic tensor has Mandel matrix ``3K J + 2G (I - J)`` in 3D (``J`` the
volumetric projector); the shear entries are ``2G`` (not ``G`` as in Voigt).

Two-dimensional moduli
----------------------
With ``dim=2`` the phases are 3D-isotropic materials in plane strain (or the
transverse plane of aligned fibres). The bulk modulus used in 2D is the
**plane-strain (area) bulk modulus** ``k = K + G/3`` (Hill's ``k_23``,
``sigma_11 + sigma_22 = 2 k (e11 + e22)``); the shear modulus is the in-plane
``G``. All ``dim=2`` functions take the 3D ``K, G`` of each phase and return
``k, G`` of the composite; :func:`plane_strain_bulk` does the conversion.

References
----------
* Z. Hashin, S. Shtrikman (1963), "A variational approach to the theory of the
  elastic behaviour of multiphase materials", J. Mech. Phys. Solids 11, 127-140.
* Z. Hashin (1965), "On elastic behaviour of fibre reinforced materials of
  arbitrary transverse phase geometry", J. Mech. Phys. Solids 13, 119-134.
* L. J. Walpole (1966), "On bounds for the overall elastic moduli of
  inhomogeneous systems", J. Mech. Phys. Solids 14, 151-162 (the form used here,
  which also holds for phases that are not well ordered).
* S. Torquato (2002), "Random Heterogeneous Materials", Springer, ch. 21.
* T. Mori, K. Tanaka (1973), Acta Metall. 21, 571-574; Y. Benveniste (1987),
  Mech. Mater. 6, 147-157.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from oracles.base import DTYPE, CostModel, Oracle, OracleResult, PointResult, make_bounds
from oracles.exceptions import InvalidInput

__all__ = [
    "HSBounds",
    "plane_strain_bulk",
    "isotropic_stiffness",
    "isotropic_moduli",
    "voigt_bound",
    "reuss_bound",
    "voigt_moduli",
    "reuss_moduli",
    "hashin_shtrikman_bounds",
    "hashin_shtrikman_multiphase",
    "E_nu_to_moduli",
    "mori_tanaka",
    "moduli_to_E_nu",
    "TwoPhaseModuliOracle",
    "VoigtOracle",
    "ReussOracle",
    "HashinShtrikmanOracle",
    "MoriTanakaOracle",
]

SQRT2 = 2.0**0.5


class HSBounds(NamedTuple):
    """Hashin–Shtrikman bounds (each a tensor of the broadcast batch shape)."""

    K_lower: Tensor
    K_upper: Tensor
    G_lower: Tensor
    G_upper: Tensor


# ----------------------------------------------------------------- helpers
def _t(x, name: str) -> Tensor:
    if isinstance(x, (bool, str, bytes)):
        raise InvalidInput(f"{name} must be numeric, got {x!r}")
    try:
        t = torch.as_tensor(x, dtype=DTYPE)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"{name} must be numeric, got {x!r}") from e
    if not torch.isfinite(t).all():
        raise InvalidInput(f"{name} must be finite, got {t.tolist()}")
    return t


def _check_dim(dim: int) -> int:
    if dim not in (2, 3):
        raise InvalidInput(f"dim must be 2 or 3, got {dim!r}")
    return dim


def _broadcast(**named: Tensor) -> list[Tensor]:
    try:
        return list(torch.broadcast_tensors(*named.values()))
    except RuntimeError:
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in named.items())
        raise InvalidInput(f"shapes do not broadcast: {shapes}") from None


def _nonnegative(t: Tensor, name: str) -> Tensor:
    if (t < 0).any():
        raise InvalidInput(f"{name} must be nonnegative, got {t.tolist()}")
    return t


def _positive(t: Tensor, name: str) -> Tensor:
    if (t <= 0).any():
        raise InvalidInput(f"{name} must be positive, got {t.tolist()}")
    return t


def _fraction(f: Tensor, name: str) -> Tensor:
    if ((f < 0) | (f > 1)).any():
        raise InvalidInput(f"{name} must lie in [0, 1], got {f.tolist()}")
    return f


def _fractions(fractions, p: int | None = None) -> Tensor:
    f = _fraction(_t(fractions, "fractions"), "fractions")
    if f.dim() == 0:
        raise InvalidInput(f"fractions must be a vector of length p (phases), got {f.tolist()}")
    if p is not None and f.shape[-1] != p:
        raise InvalidInput(f"fractions must have length {p} (one per phase), got shape {tuple(f.shape)}")
    s = f.sum(-1)
    if ((s - 1).abs() > 1e-9).any():
        raise InvalidInput(f"fractions must sum to 1, got sums {s.tolist()}")
    return f


def plane_strain_bulk(K, G) -> Tensor:
    """Plane-strain (area) bulk modulus ``k = K + G/3`` of a 3D-isotropic phase."""
    K, G = _nonnegative(_t(K, "K"), "K"), _nonnegative(_t(G, "G"), "G")
    return K + G / 3.0


def _bulk(K: Tensor, G: Tensor, dim: int) -> Tensor:
    return K if dim == 3 else K + G / 3.0


def _zeta(K: Tensor, G: Tensor, dim: int) -> Tensor:
    """Walpole's shear reference ``zeta(K, G)`` (``K`` the bulk modulus in ``dim``)."""
    if dim == 3:
        return G * (9.0 * K + 8.0 * G) / (6.0 * (K + 2.0 * G))
    return K * G / (K + 2.0 * G)


def _bulk_ref(G: Tensor, dim: int) -> Tensor:
    # the bulk reference 2 (d-1)/d * G: 4G/3 in 3D, G in 2D
    return 4.0 * G / 3.0 if dim == 3 else G


def _hs_mean(moduli: Tensor, fractions: Tensor, ref: Tensor) -> Tensor:
    """``[sum_i f_i / (M_i + ref)]^-1 - ref`` over the last (phase) dimension."""
    return 1.0 / (fractions / (moduli + ref.unsqueeze(-1))).sum(-1) - ref


# ------------------------------------------------------ isotropic tensors
def isotropic_stiffness(K, G, dim: int = 3) -> Tensor:
    """Mandel stiffness matrix of an isotropic material.

    Args:
        K: ``...`` 3D bulk modulus.
        G: ``...`` shear modulus.
        dim: 3 (``6 x 6``) or 2 (plane strain, ``3 x 3``).

    Returns:
        ``... x 6 x 6`` or ``... x 3 x 3`` Mandel matrix.
    """
    _check_dim(dim)
    K, G = _broadcast(K=_nonnegative(_t(K, "K"), "K"), G=_nonnegative(_t(G, "G"), "G"))
    lam = K - 2.0 * G / 3.0
    n, ns = (3, 3) if dim == 3 else (2, 1)
    C = torch.zeros(*K.shape, n + ns, n + ns, dtype=DTYPE)
    C[..., :n, :n] = lam[..., None, None]
    idx = torch.arange(n + ns)
    C[..., idx, idx] += 2.0 * G[..., None]
    return C


def isotropic_moduli(C, dim: int | None = None) -> tuple[Tensor, Tensor]:
    """Isotropic projection ``(K, G)`` of Mandel stiffness matrices.

    In 3D returns the 3D bulk and shear moduli of the isotropic part, which is
    the orientation average of the tensor: ``K = J::C / 9 = (sum of the normal
    3 x 3 block)/9`` and ``G = (tr C - 3K)/10``. In 2D (``3 x 3``) returns the
    plane-strain bulk ``k = (C11 + C22 + 2 C12)/4`` and the mean in-plane shear
    ``G = (C11 + C22 - 2 C12 + 2 C33)/8`` of the square-symmetric part, which is
    exact for isotropic in-plane behaviour.

    Args:
        C: ``... x 6 x 6`` or ``... x 3 x 3`` Mandel matrices.
        dim: optional check of the matrix size.
    """
    C = _t(C, "C")
    k = C.shape[-1]
    if C.dim() < 2 or C.shape[-2] != k or k not in (3, 6):
        raise InvalidInput(f"C must be ... x 6 x 6 (3D) or ... x 3 x 3 (2D), got {tuple(C.shape)}")
    if dim is not None and (6 if _check_dim(dim) == 3 else 3) != k:
        raise InvalidInput(f"C has shape {tuple(C.shape)}, which does not match dim={dim}")
    if k == 6:
        Cnn = C[..., :3, :3]
        sum_all = Cnn.sum((-1, -2))
        trace = torch.diagonal(C, dim1=-2, dim2=-1).sum(-1)
        K = sum_all / 9.0
        # tr(C) = 3K + 2G*5 for the isotropic part; J:C:J = 9K
        G = (trace - sum_all / 3.0) / 10.0
        return K, G
    kb = (C[..., 0, 0] + C[..., 1, 1] + 2.0 * C[..., 0, 1]) / 4.0
    G = (C[..., 0, 0] + C[..., 1, 1] - 2.0 * C[..., 0, 1] + 2.0 * C[..., 2, 2]) / 8.0
    return kb, G


# ------------------------------------------------------- Voigt and Reuss
def _check_tensors(C_phases, fractions) -> tuple[Tensor, Tensor]:
    C = _t(C_phases, "C_phases")
    if C.dim() < 3 or C.shape[-1] != C.shape[-2] or C.shape[-1] not in (3, 6):
        raise InvalidInput(
            f"C_phases must be ... x p x 6 x 6 (3D) or ... x p x 3 x 3 (2D) Mandel matrices, "
            f"got shape {tuple(C.shape)}"
        )
    asym = (C - C.transpose(-1, -2)).abs().amax()
    if asym > 1e-10 * C.abs().amax():
        raise InvalidInput(
            f"C_phases must be symmetric Mandel matrices (major symmetry of a stiffness), "
            f"got max |C - C^T| = {asym.item():.3g}"
        )
    f = _fractions(fractions, C.shape[-3])
    try:
        torch.broadcast_shapes(f.shape[:-1], C.shape[:-3])
    except RuntimeError:
        raise InvalidInput(
            f"batch shapes do not broadcast: fractions {tuple(f.shape)}, C_phases {tuple(C.shape)}"
        ) from None
    return C, f


def voigt_bound(C_phases, fractions) -> Tensor:
    r"""Voigt (arithmetic, uniform strain) upper bound ``sum_i f_i C_i``.

    Args:
        C_phases: ``... x p x s x s`` Mandel stiffness matrices (``s`` = 6 in 3D,
            3 in 2D plane strain).
        fractions: ``... x p`` volume fractions summing to one.

    Returns:
        ``... x s x s`` Mandel matrix. ``C_V - C_eff`` is positive semidefinite
        for every microstructure with these fractions.
    """
    C, f = _check_tensors(C_phases, fractions)
    return (f[..., None, None] * C).sum(-3)


def reuss_bound(C_phases, fractions) -> Tensor:
    r"""Reuss (harmonic, uniform stress) lower bound ``(sum_i f_i C_i^-1)^-1``.

    Phases with zero fraction are ignored, so a singular stiffness (a void
    with ``C = 0``) is allowed only where its fraction is zero.

    Args and returns as :func:`voigt_bound`.
    """
    C, f = _check_tensors(C_phases, fractions)
    eig = torch.linalg.eigvalsh(0.5 * (C + C.transpose(-1, -2)))
    used = (f > 0).unsqueeze(-1).expand_as(eig)
    if (eig[used] <= 0).any():
        raise InvalidInput("C_phases must be positive definite for every phase with a nonzero fraction")
    S = torch.linalg.inv(torch.where(used[..., None], C, torch.eye(C.shape[-1], dtype=DTYPE)))
    return torch.linalg.inv((f[..., None, None] * S).sum(-3))


def _check_moduli(K, G, fractions):
    K, G = _positive(_t(K, "K"), "K"), _positive(_t(G, "G"), "G")
    K, G = _broadcast(K=K, G=G)
    if K.dim() == 0:
        raise InvalidInput("K and G must hold one modulus per phase (last dimension p)")
    f = _fractions(fractions, K.shape[-1])
    K, G, f = _broadcast(K=K, G=G, fractions=f)
    return K, G, f


def voigt_moduli(K, G, fractions, dim: int = 3) -> tuple[Tensor, Tensor]:
    """Voigt bound of isotropic phases: ``(sum f_i k_i, sum f_i G_i)``.

    Args:
        K, G: ``... x p`` 3D bulk and shear moduli of the phases.
        fractions: ``... x p`` volume fractions.
        dim: 3, or 2 for plane strain (returns the plane-strain bulk ``k``).

    Returns:
        ``(K_V, G_V)``, each of shape ``...``.
    """
    _check_dim(dim)
    K, G, f = _check_moduli(K, G, fractions)
    return (f * _bulk(K, G, dim)).sum(-1), (f * G).sum(-1)


def reuss_moduli(K, G, fractions, dim: int = 3) -> tuple[Tensor, Tensor]:
    """Reuss bound of isotropic phases: harmonic means of ``k`` and ``G``.

    Arguments as :func:`voigt_moduli`.
    """
    _check_dim(dim)
    K, G, f = _check_moduli(K, G, fractions)
    return 1.0 / (f / _bulk(K, G, dim)).sum(-1), 1.0 / (f / G).sum(-1)


# ------------------------------------------------------- Hashin–Shtrikman
def _two_phase(K1, G1, K2, G2, f2):
    K1, G1 = _positive(_t(K1, "K1"), "K1"), _positive(_t(G1, "G1"), "G1")
    K2, G2 = _positive(_t(K2, "K2"), "K2"), _positive(_t(G2, "G2"), "G2")
    f2 = _fraction(_t(f2, "f2"), "f2")
    K1, G1, K2, G2, f2 = _broadcast(K1=K1, G1=G1, K2=K2, G2=G2, f2=f2)
    K = torch.stack([K1, K2], -1)
    G = torch.stack([G1, G2], -1)
    f = torch.stack([1.0 - f2, f2], -1)
    return K, G, f


def hashin_shtrikman_bounds(K1, G1, K2, G2, f2, dim: int = 3) -> HSBounds:
    r"""Hashin–Shtrikman bounds of an isotropic two-phase composite.

    Uses Walpole's (1966) form, which reduces to Hashin & Shtrikman (1963) for
    well-ordered phases (``(K2 - K1)(G2 - G1) >= 0``) and stays a rigorous
    bound otherwise:

    .. math::
        K_{L,U} = \Big[\sum_i \frac{f_i}{K_i + y}\Big]^{-1} - y,\quad
        y = \tfrac{2(d-1)}{d} G_{\min,\max},\qquad
        G_{L,U} = \Big[\sum_i \frac{f_i}{G_i + \zeta}\Big]^{-1} - \zeta,

    with ``zeta = G (9K + 8G) / (6 (K + 2G))`` in 3D (at ``K_min, G_min`` for
    the lower and ``K_max, G_max`` for the upper bound) and
    ``zeta = k G / (k + 2G)`` in 2D (Hashin 1965; Torquato 2002, eqs. 21.16-21.23).

    ``dim=2`` gives the bounds of the **plane-strain bulk modulus**
    ``k = K + G/3`` and the in-plane shear modulus of a transversely isotropic
    composite (aligned fibres, any transverse geometry), computed from the 3D
    ``K, G`` of the phases.

    Args:
        K1, G1: bulk and shear moduli of phase 1 (3D moduli).
        K2, G2: bulk and shear moduli of phase 2.
        f2: volume fraction of phase 2 in ``[0, 1]``.
        dim: 3 (spheres / 3D isotropic) or 2 (plane strain / fibres).
        All arguments broadcast.

    Returns:
        :class:`HSBounds` ``(K_lower, K_upper, G_lower, G_upper)``; in 2D the
        ``K_*`` entries are plane-strain bulk moduli ``k``.
    """
    _check_dim(dim)
    K, G, f = _two_phase(K1, G1, K2, G2, f2)
    kb = _bulk(K, G, dim)
    Gmin, Gmax = G.min(-1).values, G.max(-1).values
    kmin, kmax = kb.min(-1).values, kb.max(-1).values
    K_lo = _hs_mean(kb, f, _bulk_ref(Gmin, dim))
    K_up = _hs_mean(kb, f, _bulk_ref(Gmax, dim))
    G_lo = _hs_mean(G, f, _zeta(kmin, Gmin, dim))
    G_up = _hs_mean(G, f, _zeta(kmax, Gmax, dim))
    return HSBounds(K_lo, K_up, G_lo, G_up)


def hashin_shtrikman_multiphase(K, G, fractions, dim: int = 3) -> HSBounds:
    """Hashin–Shtrikman–Walpole bounds of an isotropic ``p``-phase composite.

    The same formulas as :func:`hashin_shtrikman_bounds`, with the sums over
    ``p`` phases and the reference moduli at the smallest/largest phase moduli
    (Walpole 1966; Torquato 2002, §21.2).

    Args:
        K, G: ``... x p`` 3D bulk and shear moduli of the phases.
        fractions: ``... x p`` volume fractions summing to one.
        dim: 3, or 2 (plane-strain bulk ``k = K + G/3`` and in-plane shear).

    Returns:
        :class:`HSBounds`, each of shape ``...``.
    """
    _check_dim(dim)
    K, G, f = _check_moduli(K, G, fractions)
    kb = _bulk(K, G, dim)
    # phases with zero fraction do not bound anything
    inf = torch.full_like(G, float("inf"))
    used = f > 0
    Gmin, Gmax = torch.where(used, G, inf).min(-1).values, torch.where(used, G, -inf).max(-1).values
    kmin, kmax = torch.where(used, kb, inf).min(-1).values, torch.where(used, kb, -inf).max(-1).values
    return HSBounds(
        _hs_mean(kb, f, _bulk_ref(Gmin, dim)),
        _hs_mean(kb, f, _bulk_ref(Gmax, dim)),
        _hs_mean(G, f, _zeta(kmin, Gmin, dim)),
        _hs_mean(G, f, _zeta(kmax, Gmax, dim)),
    )


def E_nu_to_moduli(E, nu) -> tuple[Tensor, Tensor]:
    """3D bulk and shear moduli ``K = E/(3(1-2nu))``, ``G = E/(2(1+nu))``.

    Raises InvalidInput unless ``E > 0`` and ``-1 < nu < 1/2``.
    """
    E, nu = _positive(_t(E, "E"), "E"), _t(nu, "nu")
    if ((nu <= -1) | (nu >= 0.5)).any():
        raise InvalidInput(f"nu must lie in (-1, 0.5), got {nu.tolist()}")
    return E / (3 * (1 - 2 * nu)), E / (2 * (1 + nu))


def mori_tanaka(K_m, G_m, K_i, G_i, f_i, dim: int = 3) -> tuple[Tensor, Tensor]:
    r"""Mori–Tanaka estimate for spherical (3D) or aligned cylindrical (2D) inclusions.

    In Benveniste's (1987) form, with the matrix as reference medium:

    .. math::
        K_{MT} = \Big[\frac{f_m}{K_m + y_m} + \frac{f_i}{K_i + y_m}\Big]^{-1} - y_m,
        \quad G_{MT} = \Big[\frac{f_m}{G_m + \zeta_m} + \frac{f_i}{G_i + \zeta_m}\Big]^{-1} - \zeta_m,

    ``y_m = 4 G_m / 3`` (3D) or ``G_m`` (2D) and ``zeta_m = zeta(k_m, G_m)`` as in
    :func:`hashin_shtrikman_bounds`. It coincides with the HS lower bound when
    the matrix is the softer phase in both moduli, and with the upper bound when
    it is the stiffer one.

    Args:
        K_m, G_m: 3D moduli of the matrix.
        K_i, G_i: 3D moduli of the inclusions.
        f_i: inclusion volume fraction in ``[0, 1]``.
        dim: 3 (spheres) or 2 (cylinders, plane strain; returns ``k, G``).

    Returns:
        ``(K_eff, G_eff)``; in 2D ``K_eff`` is the plane-strain bulk modulus.
    """
    _check_dim(dim)
    K, G, f = _two_phase(K_m, G_m, K_i, G_i, f_i)
    kb = _bulk(K, G, dim)
    km, Gm = kb[..., 0], G[..., 0]
    return _hs_mean(kb, f, _bulk_ref(Gm, dim)), _hs_mean(G, f, _zeta(km, Gm, dim))


def moduli_to_E_nu(K, G, dim: int = 3) -> tuple[Tensor, Tensor]:
    """Young's modulus and Poisson ratio from bulk and shear moduli.

    3D: ``E = 9KG/(3K+G)``, ``nu = (3K-2G)/(2(3K+G))``. 2D (``K`` the
    plane-strain bulk modulus ``k``): the Young's modulus and Poisson ratio of
    the two-dimensional (plane-strain) elasticity tensor, ``E = 4kG/(k+G)``,
    ``nu = (k-G)/(k+G)``; for an isotropic material these are
    ``E_3D / (1 - nu_3D^2)`` and ``nu_3D / (1 - nu_3D)`` (a phase with
    ``E_3D = 2``, ``nu_3D = 0.3`` gives 2.198 and 0.429), not the 3D
    constants and not a fibre composite's transverse Young's modulus.
    """
    _check_dim(dim)
    K, G = _positive(_t(K, "K"), "K"), _positive(_t(G, "G"), "G")
    if dim == 3:
        return 9.0 * K * G / (3.0 * K + G), (3.0 * K - 2.0 * G) / (2.0 * (3.0 * K + G))
    return 4.0 * K * G / (K + G), (K - G) / (K + G)


# ----------------------------------------------------------------- oracles
class TwoPhaseModuliOracle(Oracle):
    """Base of the analytic two-phase oracles (subclasses define ``_moduli``).

    Inputs: ``f2`` (volume fraction of phase 2, the inclusion phase) and, with
    ``vary_moduli=True``, also ``K1, G1, K2, G2`` within ``moduli_bounds``.
    Outputs: ``K_eff, G_eff`` (``outputs="KG"``) or ``E_eff, nu_eff``
    (``outputs="Enu"``); in 2D the bulk output is the plane-strain ``k``
    and ``E_eff, nu_eff`` are the plane-strain constants of
    :func:`moduli_to_E_nu` (``E / (1 - nu^2)``, ``nu / (1 - nu)`` of an
    isotropic material), not the 3D ones.
    """

    def __init__(
        self,
        K1: float = 1.0,
        G1: float = 0.5,
        K2: float = 10.0,
        G2: float = 5.0,
        dim: int = 3,
        fraction_bounds: tuple[float, float] = (0.0, 1.0),
        vary_moduli: bool = False,
        moduli_bounds: Sequence[tuple[float, float]] | None = None,
        outputs: str = "KG",
        cost: float = 1.0,
    ):
        self.dim_space = _check_dim(dim)
        for name, v in zip(("K1", "G1", "K2", "G2"), (K1, G1, K2, G2), strict=True):
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")):
                raise InvalidInput(f"{name} must be a positive number (finite), got {v!r}")
        self.moduli = (float(K1), float(G1), float(K2), float(G2))
        try:
            lo, hi = (float(v) for v in fraction_bounds)
        except (TypeError, ValueError):
            raise InvalidInput(f"fraction_bounds must be two numbers (lo, hi), got {fraction_bounds!r}") from None
        if not 0.0 <= lo < hi <= 1.0:
            raise InvalidInput(f"fraction_bounds must satisfy 0 <= lo < hi <= 1, got {fraction_bounds}")
        if outputs not in ("KG", "Enu"):
            raise InvalidInput(f"outputs must be 'KG' or 'Enu', got {outputs!r}")
        self.outputs = outputs
        self.vary_moduli = bool(vary_moduli)
        lower, upper = [lo], [hi]
        names = ["f2"]
        if self.vary_moduli:
            if moduli_bounds is None:
                moduli_bounds = [(0.5 * v, 2.0 * v) for v in self.moduli]
            if len(moduli_bounds) != 4:
                raise InvalidInput(f"moduli_bounds needs 4 (lo, hi) pairs for K1, G1, K2, G2, got {moduli_bounds}")
            for name, (a, b) in zip(("K1", "G1", "K2", "G2"), moduli_bounds, strict=True):
                if not 0 < a < b:
                    raise InvalidInput(f"bounds of {name} must satisfy 0 < lo < hi, got ({a}, {b})")
                lower.append(float(a))
                upper.append(float(b))
                names.append(name)
        self.input_names = tuple(names)
        self.bounds = make_bounds(lower, upper)
        self.output_names = ("K_eff", "G_eff") if outputs == "KG" else ("E_eff", "nu_eff")
        self.cost_model = CostModel((cost,))

    def _split(self, X: Tensor):
        f2 = X[:, 0]
        if self.vary_moduli:
            return f2, X[:, 1], X[:, 2], X[:, 3], X[:, 4]
        K1, G1, K2, G2 = (torch.full_like(f2, v) for v in self.moduli)
        return f2, K1, G1, K2, G2

    def _moduli(self, f2, K1, G1, K2, G2) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _evaluate_batch(self, X: Tensor, fidelity: int):

        K, G = self._moduli(*self._split(X))
        if self.outputs == "Enu":
            K, G = moduli_to_E_nu(K, G, self.dim_space)
        n = X.shape[0]
        return OracleResult(
            X=X.clone(),
            Y=torch.stack([K, G], -1),
            failed=torch.zeros(n, dtype=torch.bool),
            reasons=[None] * n,
            cost=self.cost_model(X, fidelity),
            fidelity=fidelity,
            metadata=[{} for _ in range(n)],
        )

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        return PointResult(y=self._evaluate_batch(x.unsqueeze(0), fidelity).Y[0])

    def __repr__(self) -> str:
        K1, G1, K2, G2 = self.moduli
        return (
            f"{type(self).__name__}(K1={K1}, G1={G1}, K2={K2}, G2={G2}, dim={self.dim_space}, "
            f"inputs={list(self.input_names)}, outputs={list(self.output_names)})"
        )


class VoigtOracle(TwoPhaseModuliOracle):
    """Voigt bound of a two-phase isotropic composite as an oracle (see :class:`TwoPhaseModuliOracle`)."""

    def _moduli(self, f2, K1, G1, K2, G2):
        f = torch.stack([1 - f2, f2], -1)
        return voigt_moduli(torch.stack([K1, K2], -1), torch.stack([G1, G2], -1), f, self.dim_space)


class ReussOracle(TwoPhaseModuliOracle):
    """Reuss bound of a two-phase isotropic composite as an oracle."""

    def _moduli(self, f2, K1, G1, K2, G2):
        f = torch.stack([1 - f2, f2], -1)
        return reuss_moduli(torch.stack([K1, K2], -1), torch.stack([G1, G2], -1), f, self.dim_space)


class HashinShtrikmanOracle(TwoPhaseModuliOracle):
    """Hashin–Shtrikman bound (``bound="lower"``, ``"upper"`` or ``"mean"``) as an oracle.

    ``"mean"`` is the arithmetic mean of the two bounds, a common cheap
    estimate for a random isotropic microstructure.
    """

    def __init__(self, *args, bound: str = "lower", **kwargs):
        if bound not in ("lower", "upper", "mean"):
            raise InvalidInput(f"bound must be 'lower', 'upper' or 'mean', got {bound!r}")
        self.bound = bound
        super().__init__(*args, **kwargs)

    def _moduli(self, f2, K1, G1, K2, G2):
        b = hashin_shtrikman_bounds(K1, G1, K2, G2, f2, self.dim_space)
        if self.bound == "lower":
            return b.K_lower, b.G_lower
        if self.bound == "upper":
            return b.K_upper, b.G_upper
        return 0.5 * (b.K_lower + b.K_upper), 0.5 * (b.G_lower + b.G_upper)


class MoriTanakaOracle(TwoPhaseModuliOracle):
    """Mori–Tanaka estimate with phase 1 the matrix and phase 2 the inclusions."""

    def _moduli(self, f2, K1, G1, K2, G2):
        return mori_tanaka(K1, G1, K2, G2, f2, self.dim_space)
