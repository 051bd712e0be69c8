r"""Traction–separation (cohesive) laws in torch.

Each law maps separations ``delta`` (``... x 2``: normal opening ``dn``,
tangential slip ``dt``) to

* :meth:`CohesiveLaw.potential` ``...`` (energy per unit area),
* :meth:`CohesiveLaw.traction` ``... x 2`` (``Tn, Tt``), closed form, the
  gradient of the potential,
* :meth:`CohesiveLaw.tangent` ``... x 2 x 2`` (``dT_i / d delta_j``), by
  automatic differentiation of the traction,

and exposes its fracture energies ``(Gamma_n, Gamma_t)`` (work of separation
in pure mode I and II) and peak tractions ``(sigma_max, tau_max)``. All
functions are differentiable (no in-place writes, no NaN gradients at zero
opening), so laws can sit inside autograd graphs.

The laws are reversible (no unloading/damage history): they describe
monotonic loading, as used to calibrate parameters and compute ``K_Ic``.
Units are any consistent set; with tractions in GPa and separations in nm the
energies are in J/m² (1 GPa·nm = 1 J/m²).

Laws:

* :class:`BilinearLaw`: bilinear softening in an effective separation
  (Tvergaard 1990 style potential), one ``Gamma`` for every mode mix;
* :class:`ExponentialLaw`: Xu & Needleman (1993) exponential potential;
* :class:`PPRLaw`: Park, Paulino & Roesler (2009) unified potential.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from scipy.optimize import brentq
from torch import Tensor

from oracles.base import DTYPE
from oracles.exceptions import InvalidInput

__all__ = ["CohesiveLaw", "BilinearLaw", "ExponentialLaw", "PPRLaw", "make_law", "LAWS"]


def _number(name: str, v: Any) -> float:
    """``v`` as a float (a real number: bool and strings refused), else an ``InvalidInput`` naming ``name``."""
    try:
        if isinstance(v, (bool, str, bytes)) or v is None:
            raise TypeError
        return float(v)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number, got {v!r}") from None


def _positive(name: str, v: Any) -> float:
    try:
        f = _number(name, v)
    except InvalidInput:
        raise InvalidInput(f"{name} must be a positive number, got {v!r}") from None
    if not math.isfinite(f) or f <= 0:
        raise InvalidInput(f"{name} must be a positive number, got {v!r}")
    return f


def _safe_sqrt(s: Tensor) -> Tensor:
    """sqrt with a zero (not NaN) gradient at 0."""
    pos = s > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, s, torch.ones_like(s))), torch.zeros_like(s))



def _closing(dn: Tensor) -> Tensor:
    """``min(dn, 0)`` (the interpenetration a contact penalty acts on) with zero derivative at
    ``dn = 0``: the tangent of a closed interface is its opening branch's (``torch.clamp``
    passes a derivative of 1 at its bound, which had added the penalty's stiffness to it)."""
    return torch.where(dn < 0, dn, torch.zeros_like(dn))

class CohesiveLaw(ABC):
    """Base class of the cohesive laws (see the module docstring)."""

    name: str = ""

    def _delta(self, delta: Any) -> Tensor:
        try:
            d = delta if isinstance(delta, Tensor) else torch.as_tensor(delta, dtype=DTYPE)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidInput(f"delta must be real numbers of shape ... x 2, got {delta!r}") from None
        if d.is_complex() or d.dtype == torch.bool:
            raise InvalidInput(f"delta must be real numbers of shape ... x 2, got a {d.dtype} tensor")
        if d.dim() == 0 or d.shape[-1] != 2:
            raise InvalidInput(
                f"delta must have shape ... x 2 (normal opening, tangential slip), got {tuple(d.shape)}"
            )
        if not torch.isfinite(d).all():
            raise InvalidInput("delta must be finite")
        return d.to(DTYPE) if d.dtype != DTYPE else d

    @abstractmethod
    def potential(self, delta) -> Tensor:
        """``...`` energy per unit area at separations ``... x 2``."""

    @abstractmethod
    def traction(self, delta) -> Tensor:
        """``... x 2`` tractions ``(Tn, Tt)`` at separations ``... x 2``."""

    def tangent(self, delta, create_graph: bool = False) -> Tensor:
        """``... x 2 x 2`` tangent ``dT_i/d delta_j`` by autograd of :meth:`traction`.

        Points are independent, so differentiating the sum of each traction
        component over the batch gives one row per component.
        """
        d = self._delta(delta)
        x = d if (create_graph and d.requires_grad) else d.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            T = self.traction(x)
            rows = [
                torch.autograd.grad(T[..., i].sum(), x, retain_graph=True, create_graph=create_graph)[0]
                for i in range(2)
            ]
        return torch.stack(rows, -2)

    @property
    @abstractmethod
    def fracture_energy(self) -> tuple[float, float]:
        """``(Gamma_n, Gamma_t)``: work of separation in pure mode I and pure mode II."""

    @property
    @abstractmethod
    def peak_traction(self) -> tuple[float, float]:
        """``(sigma_max, tau_max)``: peak normal (mode I) and shear (mode II) tractions."""

    @property
    @abstractmethod
    def peak_opening(self) -> float:
        """Normal opening at which the mode-I traction peaks."""

    @property
    @abstractmethod
    def critical_opening(self) -> float:
        """The law's characteristic normal separation ``delta_c`` (see each law)."""

    def params(self) -> dict[str, float]:
        """JSON-serializable parameters."""
        return {k: float(v) for k, v in vars(self).items() if isinstance(v, (int, float))}

    def __repr__(self) -> str:
        p = ", ".join(f"{k}={v:.6g}" for k, v in self.params().items())
        return f"{type(self).__name__}({p})"


# ------------------------------------------------------------------ bilinear
class BilinearLaw(CohesiveLaw):
    r"""Bilinear law from a potential of the effective separation.

    .. math::
        \lambda = \sqrt{\langle\Delta_n\rangle^2/\delta_{nc}^2 + \Delta_t^2/\delta_{tc}^2},\quad
        \phi = \Gamma\, h(\lambda),\quad h(\lambda) = \int_0^\lambda b(s)\,ds,

    with ``b`` the bilinear shape rising linearly to 2 at ``lambda0`` and
    falling linearly to 0 at ``lambda = 1`` (``int_0^1 b = 1``). Hence
    ``T = Gamma b(lambda)/lambda (dn/dnc^2, dt/dtc^2)`` (Tvergaard 1990, with a
    bilinear shape). Pure mode I gives the bilinear law with peak ``sigma_max``
    at ``lambda0 * dnc`` and full separation at ``dnc = 2 Gamma / sigma_max``;
    pure mode II the same with ``tau_max`` and ``dtc = 2 Gamma / tau_max``. The
    work of separation is ``Gamma`` along any path to full separation
    (``Gamma_n = Gamma_t = Gamma``). Compression (``dn < 0``) is resisted by a
    linear penalty with the initial stiffness.

    Args:
        Gamma: fracture energy.
        sigma_max: peak normal traction.
        tau_max: peak shear traction (default ``sigma_max``).
        peak_ratio: ``lambda0``, opening at peak over final opening, in (0, 1).
    """

    name = "bilinear"

    def __init__(self, Gamma: float, sigma_max: float, tau_max: float | None = None, peak_ratio: float = 0.1):
        self.Gamma = _positive("Gamma", Gamma)
        self.sigma_max = _positive("sigma_max", sigma_max)
        self.tau_max = self.sigma_max if tau_max is None else _positive("tau_max", tau_max)
        lam0 = _number("peak_ratio", peak_ratio)
        if not 0 < lam0 < 1:
            raise InvalidInput(f"peak_ratio must lie in (0, 1), got {peak_ratio!r}")
        self.peak_ratio = lam0
        self.delta_nc = 2 * self.Gamma / self.sigma_max
        self.delta_tc = 2 * self.Gamma / self.tau_max

    def _lambda(self, d: Tensor) -> tuple[Tensor, Tensor]:
        dn = torch.clamp(d[..., 0], min=0.0)
        lam = _safe_sqrt((dn / self.delta_nc) ** 2 + (d[..., 1] / self.delta_tc) ** 2)
        return lam, dn

    def _b_over_lambda(self, lam: Tensor) -> Tensor:
        l0 = self.peak_ratio
        lc = torch.clamp(lam, min=l0)  # keeps the unused branch finite at lam = 0
        soft = 2 * (1 - lc) / ((1 - l0) * lc)
        return torch.where(lam < l0, torch.full_like(lam, 2 / l0), torch.where(lam < 1, soft, torch.zeros_like(lam)))

    def _penalty(self) -> float:
        return self.Gamma * 2 / self.peak_ratio / self.delta_nc**2

    def potential(self, delta) -> Tensor:
        d = self._delta(delta)
        lam, _ = self._lambda(d)
        l0 = self.peak_ratio
        lc = torch.clamp(lam, max=1.0)
        h = torch.where(lam < l0, lam**2 / l0, l0 + ((1 - l0) ** 2 - (1 - lc) ** 2) / (1 - l0))
        comp = _closing(d[..., 0])
        return self.Gamma * h + 0.5 * self._penalty() * comp**2

    def traction(self, delta) -> Tensor:
        d = self._delta(delta)
        lam, dn = self._lambda(d)
        c = self.Gamma * self._b_over_lambda(lam)
        comp = _closing(d[..., 0])
        Tn = c * dn / self.delta_nc**2 + self._penalty() * comp
        Tt = c * d[..., 1] / self.delta_tc**2
        return torch.stack([Tn, Tt], -1)

    @property
    def fracture_energy(self):
        return (self.Gamma, self.Gamma)

    @property
    def peak_traction(self):
        return (self.sigma_max, self.tau_max)

    @property
    def peak_opening(self):
        return self.peak_ratio * self.delta_nc

    @property
    def critical_opening(self):
        """Final opening ``dnc = 2 Gamma / sigma_max`` (traction zero beyond)."""
        return self.delta_nc


# --------------------------------------------------------------- exponential
class ExponentialLaw(CohesiveLaw):
    r"""Xu & Needleman (1993) exponential potential.

    .. math::
        \phi = \phi_n + \phi_n e^{-\Delta_n/\delta_n}\Big\{\Big[1 - r + \frac{\Delta_n}{\delta_n}\Big]
            \frac{1-q}{r-1} - \Big[q + \frac{r-q}{r-1}\frac{\Delta_n}{\delta_n}\Big]
            e^{-\Delta_t^2/\delta_t^2}\Big\},

    ``q = phi_t/phi_n``, ``phi_n = e sigma_max delta_n``,
    ``phi_t = sqrt(e/2) tau_max delta_t``; ``r`` is the normal opening after
    complete shear separation at zero normal traction (``r != 1``; default 0).
    Tractions decay exponentially and vanish only asymptotically (below
    ``1e-15 sigma_max`` beyond ``~40 delta_n``).

    X.-P. Xu, A. Needleman (1993), "Void nucleation by inclusion debonding in a
    crystal matrix", Modelling Simul. Mater. Sci. Eng. 1, 111-132.

    Args:
        Gamma_n: mode-I fracture energy ``phi_n``.
        sigma_max: peak normal traction (reached at ``dn = delta_n``).
        Gamma_t: mode-II fracture energy ``phi_t`` (default ``Gamma_n``).
        tau_max: peak shear traction (default ``sigma_max``), reached at
            ``dt = delta_t / sqrt(2)``.
        r: coupling parameter.
    """

    name = "exponential"

    def __init__(
        self,
        Gamma_n: float,
        sigma_max: float,
        Gamma_t: float | None = None,
        tau_max: float | None = None,
        r: float = 0.0,
    ):
        self.Gamma_n = _positive("Gamma_n", Gamma_n)
        self.sigma_max = _positive("sigma_max", sigma_max)
        self.Gamma_t = self.Gamma_n if Gamma_t is None else _positive("Gamma_t", Gamma_t)
        self.tau_max = self.sigma_max if tau_max is None else _positive("tau_max", tau_max)
        self.r = _number("r", r)
        if not math.isfinite(self.r) or self.r == 1.0:
            raise InvalidInput(f"r must be a finite number other than 1, got {r!r}")
        self.q = self.Gamma_t / self.Gamma_n
        self.delta_n = self.Gamma_n / (math.e * self.sigma_max)
        self.delta_t = self.Gamma_t / (math.sqrt(math.e / 2) * self.tau_max)

    def potential(self, delta) -> Tensor:
        d = self._delta(delta)
        a, q, r = d[..., 0] / self.delta_n, self.q, self.r
        et = torch.exp(-((d[..., 1] / self.delta_t) ** 2))
        brace = (1 - r + a) * (1 - q) / (r - 1) - (q + (r - q) / (r - 1) * a) * et
        return self._finite(self.Gamma_n + self.Gamma_n * torch.exp(-a) * brace, d)

    def _finite(self, out: Tensor, d: Tensor) -> Tensor:
        """``out`` (computed at separations ``d``, ``... x 2``), or an InvalidInput naming the
        deepest interpenetration where it overflowed float64 (the law's compressive response grows
        as ``exp(-dn / delta_n)``: past about 700 ``delta_n`` of interpenetration, or sooner in
        large units)."""
        bad = ~torch.isfinite(out)
        if bad.any():
            bad = bad.reshape(*bad.shape[: d.dim() - 1], -1).any(-1) if out.dim() == d.dim() else bad
            dn = float(d[..., 0][bad].min())
            raise InvalidInput(
                f"the exponential (Xu-Needleman) law overflows float64 at normal opening dn = {dn:.6g} "
                f"({dn / self.delta_n:.4g} delta_n): its compressive response grows as exp(-dn/delta_n), "
                "so interpenetration this deep is outside the law"
            )
        return out

    def traction(self, delta) -> Tensor:
        d = self._delta(delta)
        a, q, r = d[..., 0] / self.delta_n, self.q, self.r
        b = d[..., 1] / self.delta_t
        et, en = torch.exp(-(b**2)), torch.exp(-a)
        Tn = self.Gamma_n / self.delta_n * en * (a * et + (1 - q) / (r - 1) * (1 - et) * (r - a))
        Tt = 2 * self.Gamma_n / self.delta_t * b * (q + (r - q) / (r - 1) * a) * en * et
        return self._finite(torch.stack([Tn, Tt], -1), d)

    @property
    def fracture_energy(self):
        return (self.Gamma_n, self.Gamma_t)

    @property
    def peak_traction(self):
        return (self.sigma_max, self.tau_max)

    @property
    def peak_opening(self):
        return self.delta_n

    @property
    def critical_opening(self):
        """Characteristic length ``delta_n = Gamma_n / (e sigma_max)`` (= the peak opening)."""
        return self.delta_n


# ----------------------------------------------------------------------- PPR
class PPRLaw(CohesiveLaw):
    r"""Park–Paulino–Roesler (2009) unified potential-based law.

    .. math::
        \Psi = \min(\phi_n, \phi_t)
            + \Big[\Gamma_n \big(1 - \tfrac{\Delta_n}{\delta_n}\big)^\alpha
                   \big(\tfrac{m}{\alpha} + \tfrac{\Delta_n}{\delta_n}\big)^m + \langle\phi_n - \phi_t\rangle\Big]
              \Big[\Gamma_t \big(1 - \tfrac{|\Delta_t|}{\delta_t}\big)^\beta
                   \big(\tfrac{n}{\beta} + \tfrac{|\Delta_t|}{\delta_t}\big)^n + \langle\phi_t - \phi_n\rangle\Big],

    with ``m = alpha (alpha-1) lambda_n^2 / (1 - alpha lambda_n^2)`` (``n`` alike),
    the energy constants ``Gamma_n, Gamma_t`` and final separations
    ``delta_n, delta_t`` of the paper's eqs. (9)-(12), and ``lambda_n,
    lambda_t`` the peak openings over the final ones. Tractions are the
    gradient of ``Psi`` inside the softening region; following the paper, the
    normal traction is zero for ``dn >= delta_n`` or ``|dt| >= conj_t`` and the
    shear traction for ``|dt| >= delta_t`` or ``dn >= conj_n``, with the
    conjugate separations ``conj_n, conj_t`` where the other traction reaches zero.
    Compression (``dn < 0``) adds a linear penalty ``0.5 K dn^2`` (``K`` the secant
    stiffness to the mode-I peak by default) and uses ``dn = 0`` in the
    tangential part.

    K. Park, G. H. Paulino, J. R. Roesler (2009), "A unified potential-based
    cohesive model of mixed-mode fracture", J. Mech. Phys. Solids 57, 891-908.

    Args:
        Gamma_n, Gamma_t: mode I and II fracture energies ``phi_n, phi_t``.
        sigma_max, tau_max: peak tractions.
        alpha, beta: softening shape exponents (> 1; about 2 is near linear
            softening, larger is more convex).
        lambda_n, lambda_t: initial slope indicators in (0, 1) with
            ``alpha lambda_n^2 < 1``, ``beta lambda_t^2 < 1``.
        penalty: compression stiffness, or None for the default.
    """

    name = "ppr"

    def __init__(
        self,
        Gamma_n: float,
        sigma_max: float,
        Gamma_t: float | None = None,
        tau_max: float | None = None,
        alpha: float = 3.0,
        beta: float = 3.0,
        lambda_n: float = 0.1,
        lambda_t: float = 0.1,
        penalty: float | None = None,
    ):
        self.phi_n = _positive("Gamma_n", Gamma_n)
        self.sigma_max = _positive("sigma_max", sigma_max)
        self.phi_t = self.phi_n if Gamma_t is None else _positive("Gamma_t", Gamma_t)
        self.tau_max = self.sigma_max if tau_max is None else _positive("tau_max", tau_max)
        alpha, beta = _number("alpha", alpha), _number("beta", beta)
        lambda_n, lambda_t = _number("lambda_n", lambda_n), _number("lambda_t", lambda_t)
        for nm, v in (("alpha", alpha), ("beta", beta)):
            if not (math.isfinite(float(v)) and float(v) > 1):
                raise InvalidInput(f"{nm} must be a number above 1, got {v!r}")
        self.alpha, self.beta = float(alpha), float(beta)
        for nm, lam, ex in (("lambda_n", lambda_n, self.alpha), ("lambda_t", lambda_t, self.beta)):
            if not (0 < float(lam) < 1 and ex * float(lam) ** 2 < 1):
                raise InvalidInput(
                    f"{nm} must lie in (0, 1) with exponent * {nm}^2 < 1, got {nm}={lam!r} (exponent {ex})"
                )
        self.lambda_n, self.lambda_t = float(lambda_n), float(lambda_t)
        a, b, ln, lt = self.alpha, self.beta, self.lambda_n, self.lambda_t
        self.m = a * (a - 1) * ln**2 / (1 - a * ln**2)
        self.n = b * (b - 1) * lt**2 / (1 - b * lt**2)
        m, n = self.m, self.n
        dphi = self.phi_n - self.phi_t
        if dphi == 0:
            self.Gn = -self.phi_n * (a / m) ** m
            self.Gt = (b / n) ** n
        elif dphi > 0:
            self.Gn = -self.phi_n * (a / m) ** m
            self.Gt = (b / n) ** n
        else:
            self.Gn = (a / m) ** m
            self.Gt = -self.phi_t * (b / n) ** n
        self.delta_n = (
            self.phi_n / self.sigma_max * a * ln * (1 - ln) ** (a - 1) * (a / m + 1) * (a / m * ln + 1) ** (m - 1)
        )
        self.delta_t = (
            self.phi_t / self.tau_max * b * lt * (1 - lt) ** (b - 1) * (b / n + 1) * (b / n * lt + 1) ** (n - 1)
        )
        # conjugate separations: where the factor multiplying the other traction vanishes
        self.conj_n = self.delta_n
        self.conj_t = self.delta_t
        if dphi > 0:
            g = lambda x: self.Gn * (1 - x) ** a * (m / a + x) ** m + dphi  # noqa: E731
            self.conj_n = self.delta_n * brentq(g, 0.0, 1.0, xtol=1e-15)
        elif dphi < 0:
            g = lambda x: self.Gt * (1 - x) ** b * (n / b + x) ** n - dphi  # noqa: E731
            self.conj_t = self.delta_t * brentq(g, 0.0, 1.0, xtol=1e-15)
        self.penalty = (
            self.sigma_max / (self.lambda_n * self.delta_n) if penalty is None else _positive("penalty", penalty)
        )

    def _factors(self, d: Tensor):
        """Normal and tangential factors, the normal factor's derivative in the clamped opening,
        and the tangential factor's derivative over the slip: ``dft(y) sign(dt) = st * dt`` with
        ``st = -(n + beta) Gt / delta_t^2 (1 - y)^(beta - 1) (n / beta + y)^(n - 1)``, written
        without ``sign(dt)`` so that autograd's derivative at ``dt = 0`` is the limit (through
        ``sign`` and ``abs`` it is 0: a closed interface's shear stiffness had come out zero)."""
        a, b, m, n = self.alpha, self.beta, self.m, self.n
        x = torch.clamp(d[..., 0] / self.delta_n, 0.0, 1.0)
        y = torch.clamp(d[..., 1].abs() / self.delta_t, max=1.0)
        fn = self.Gn * (1 - x) ** a * (m / a + x) ** m + max(self.phi_n - self.phi_t, 0.0)
        ft = self.Gt * (1 - y) ** b * (n / b + y) ** n + max(self.phi_t - self.phi_n, 0.0)
        dfn = self.Gn / self.delta_n * (
            m * (1 - x) ** a * (m / a + x) ** (m - 1) - a * (1 - x) ** (a - 1) * (m / a + x) ** m
        )
        st = -(n + b) * self.Gt / self.delta_t**2 * (1 - y) ** (b - 1) * (n / b + y) ** (n - 1)
        return fn, ft, dfn, st

    def potential(self, delta) -> Tensor:
        d = self._delta(delta)
        fn, ft, _, _ = self._factors(d)
        comp = _closing(d[..., 0])
        return min(self.phi_n, self.phi_t) + fn * ft + 0.5 * self.penalty * comp**2

    def traction(self, delta) -> Tensor:
        d = self._delta(delta)
        fn, ft, dfn, st = self._factors(d)
        dn, adt = d[..., 0], d[..., 1].abs()
        zero = torch.zeros_like(dn)
        open_n = (dn >= 0) & (dn < self.delta_n) & (adt < self.conj_t)
        Tn = torch.where(open_n, dfn * ft, zero) + self.penalty * _closing(dn)
        open_t = (adt < self.delta_t) & (dn < self.conj_n)
        Tt = torch.where(open_t, st * d[..., 1] * fn, zero)
        return torch.stack([Tn, Tt], -1)

    @property
    def fracture_energy(self):
        return (self.phi_n, self.phi_t)

    @property
    def peak_traction(self):
        return (self.sigma_max, self.tau_max)

    @property
    def peak_opening(self):
        return self.lambda_n * self.delta_n

    @property
    def critical_opening(self):
        """Final normal opening ``delta_n`` (mode-I traction zero beyond)."""
        return self.delta_n


LAWS: dict[str, type[CohesiveLaw]] = {"bilinear": BilinearLaw, "exponential": ExponentialLaw, "ppr": PPRLaw}


def make_law(
    law: str,
    Gamma_n: float,
    sigma_max: float,
    Gamma_t: float | None = None,
    tau_max: float | None = None,
    **options: Any,
) -> CohesiveLaw:
    """Build a law by name from mode-I (and optionally mode-II) energy and strength.

    ``options`` go to the law's constructor (``peak_ratio`` for bilinear, ``r``
    for exponential, ``alpha, beta, lambda_n, lambda_t`` for PPR). The bilinear
    law has one ``Gamma`` for all modes, so ``Gamma_t`` other than ``Gamma_n``
    is rejected for it.
    """
    if law not in LAWS:
        raise InvalidInput(f"law must be one of {sorted(LAWS)}, got {law!r}")
    if law == "bilinear":
        if Gamma_t is not None and _number("Gamma_t", Gamma_t) != _number("Gamma_n", Gamma_n):
            raise InvalidInput(
                f"the bilinear law has a single Gamma for all modes; got Gamma_t={Gamma_t} != Gamma_n={Gamma_n}"
            )
        return BilinearLaw(Gamma_n, sigma_max, tau_max, **options)
    return LAWS[law](Gamma_n, sigma_max, Gamma_t, tau_max, **options)
