r"""Closed-form and tabulated reference values of transport coefficients.

Conductivity (phases ``s1`` matrix, ``s2`` inclusions, inclusion fraction ``f``):

* :func:`hashin_shtrikman` bounds of isotropic two-phase media (Hashin and
  Shtrikman 1962, J. Appl. Phys. 33), ``k = 2, 3``.
* :func:`perrins_square_cylinders`: square array of circular cylinders, the
  Rayleigh multipole formula of Perrins, McKenzie and McPhedran (1979),
  Proc. R. Soc. A 369, eq. (6) (accurate to ~1e-3 up to ``f = 0.7``).

Permeability (solid fraction ``c``, cylinder or sphere radius ``a``):

* :func:`drummond_tahir_parallel` / :func:`drummond_tahir_transverse`: square
  arrays of cylinders, flow along and across (Drummond and Tahir 1984,
  Int. J. Multiphase Flow 10; the transverse series also Sangani and Acrivos
  1982, Int. J. Multiphase Flow 8), ``k / a^2``.
* :func:`sphere_array_permeability`: simple cubic array of spheres from the
  drag ``F = 6 pi mu a U K(c)``, ``k = L^3 / (6 pi a K)``, with ``K(c)`` from
  Hasimoto (1959, J. Fluid Mech. 5; with the ``c^2`` term of Sangani and
  Acrivos 1982) at low ``c`` or interpolated in Zick and Homsy's (1982,
  J. Fluid Mech. 115) table.
* :func:`kozeny_carman`: ``k = phi^3 d^2 / (180 (1 - phi)^2)`` for packed
  grains of diameter ``d`` (Carman 1937).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ZICK_HOMSY_SC",
    "drummond_tahir_parallel",
    "drummond_tahir_transverse",
    "hashin_shtrikman",
    "hasimoto_drag",
    "kozeny_carman",
    "perrins_square_cylinders",
    "slit_permeability",
    "sphere_array_permeability",
]

#: simple cubic sphere arrays: solid fraction -> dimensionless drag K (Zick and Homsy 1982, Table 2)
ZICK_HOMSY_SC = {
    0.027: 2.008,
    0.064: 2.810,
    0.125: 4.292,
    0.216: 7.442,
    0.343: 15.4,
    0.450: 28.1,
    0.5236: 42.1,
}


def _in_range(name: str, value, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a float in ``[lo, hi]`` (an end open where said), else a ``ValueError`` naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a number, got {value!r}") from e
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        raise ValueError(f"{name} must lie in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}, "
                         f"got {value!r}")
    return v


def hashin_shtrikman(s1: float, s2: float, f2: float, dim: int) -> tuple[float, float]:
    """Lower and upper Hashin-Shtrikman bounds of an isotropic two-phase medium
    (fraction ``f2`` of phase ``s2``), ``dim = 2, 3``; an insulating phase
    (conductivity 0) gives the lower bound 0."""
    s1, s2 = _in_range("s1", s1, 0.0, math.inf, hi_open=True), _in_range("s2", s2, 0.0, math.inf, hi_open=True)
    f2 = _in_range("f2", f2, 0.0, 1.0)
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")
    lo, hi = min(s1, s2), max(s1, s2)
    f_lo = 1.0 - f2 if s1 <= s2 else f2  # fraction of the low phase
    f_hi = 1.0 - f_lo

    def hs(sm, si, fi):  # matrix sm, inclusions si at fraction fi
        if fi == 0.0 or sm == 0.0:  # no inclusions, or an insulating matrix
            return sm
        return sm + fi / (1.0 / (si - sm) + (1.0 - fi) / (dim * sm)) if si != sm else sm

    return hs(lo, hi, f_hi), hs(hi, lo, f_lo)


def perrins_square_cylinders(s_matrix: float, s_cyl: float, f: float) -> float:
    """Effective conductivity of a square array of cylinders (fraction ``f``)."""
    s_matrix = _in_range("s_matrix", s_matrix, 0.0, math.inf, lo_open=True, hi_open=True)
    s_cyl = _in_range("s_cyl", s_cyl, 0.0, math.inf, hi_open=True)
    f = _in_range("f", f, 0.0, math.pi / 4)
    if s_cyl == s_matrix:
        return s_matrix
    T = (s_cyl + s_matrix) / (s_cyl - s_matrix)
    den = T - f - 0.305827 * f**4 * T / (T * T - 1.402958 * f**8) - 0.013362 * f**8
    return s_matrix * (1.0 + 2.0 * f / den)


def drummond_tahir_parallel(c: float) -> float:
    """``k / a^2`` for flow along a square array of cylinders, solid fraction ``c``."""
    c = _in_range("solid fraction c", c, 0.0, math.pi / 4, lo_open=True)
    return (-math.log(c) - 1.476 + 2.0 * c - 0.5 * c * c) / (4.0 * c)


def drummond_tahir_transverse(c: float) -> float:
    """``k / a^2`` for flow across a square array of cylinders, solid fraction ``c``.

    A low-concentration series: against :func:`~oracles.transport.permeability`
    on ``N = 64`` and ``128`` grids extrapolated linearly in ``1 / N``, it lies
    about 1 % off at ``c = 0.13`` and 7 % above at ``c = 0.28``; use it as a
    reference for ``c <~ 0.2``."""
    c = _in_range("solid fraction c", c, 0.0, math.pi / 4, lo_open=True)
    return (-math.log(c) - 1.476 + 2.0 * c - 1.774 * c**2 + 4.076 * c**3) / (8.0 * c)


def hasimoto_drag(c: float) -> float:
    """Dimensionless drag ``K = F / (6 pi mu a U)`` of a simple cubic sphere array
    at low solid fraction (Hasimoto 1959; ``c^2`` term of Sangani and Acrivos 1982)."""
    return 1.0 / (1.0 - 1.7601 * c ** (1.0 / 3.0) + c - 1.5593 * c * c)


def sphere_array_permeability(c: float, cell: float = 1.0, source: str = "zick-homsy") -> float:
    """Permeability of a simple cubic sphere array of cell edge ``cell``.

    ``source``: ``"zick-homsy"`` (log-linear interpolation of the drag in the
    table, ``0.027 <= c <= 0.5236``) or ``"hasimoto"`` (low ``c``).
    """
    if source not in ("zick-homsy", "hasimoto"):
        raise ValueError(f"source must be 'zick-homsy' or 'hasimoto', got {source!r}")
    c = _in_range("solid fraction c", c, 0.0, math.pi / 6, lo_open=True)
    a = cell * (3.0 * c / (4.0 * math.pi)) ** (1.0 / 3.0)
    if source == "hasimoto":
        K = hasimoto_drag(c)
    else:
        cs, Ks = np.array(list(ZICK_HOMSY_SC)), np.array(list(ZICK_HOMSY_SC.values()))
        if not cs[0] <= c <= cs[-1]:
            raise ValueError(f"Zick-Homsy table covers c in [{cs[0]}, {cs[-1]}], got {c}")
        K = float(np.exp(np.interp(c, cs, np.log(Ks))))
    return cell**3 / (6.0 * math.pi * a * K)


def slit_permeability(h: float, period: float) -> float:
    """Plane Poiseuille flow: slits of width ``h`` repeated every ``period``, ``h^3 / (12 period)``."""
    return h**3 / (12.0 * period)


def kozeny_carman(porosity, grain_diameter, constant: float = 180.0):
    """Kozeny-Carman permeability ``phi^3 d^2 / (C (1 - phi)^2)`` (``C = 180``)."""
    phi = np.asarray(porosity, dtype=float)
    if not (np.isfinite(phi).all() and (phi > 0).all() and (phi < 1).all()):
        raise ValueError(f"porosity must lie in (0, 1), got {porosity!r}")
    return phi**3 * np.asarray(grain_diameter, dtype=float) ** 2 / (constant * (1.0 - phi) ** 2)
