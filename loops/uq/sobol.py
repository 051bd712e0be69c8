r"""Variance-based sensitivity: first-order and total Sobol indices by pick-freeze sampling.

For ``Y = f(X_1, ..., X_p)`` with independent inputs, the first-order index
:math:`S_i = \mathrm{Var}(E[Y | X_i]) / \mathrm{Var}(Y)` and the total index
:math:`S_{Ti} = E[\mathrm{Var}(Y | X_{\sim i})] / \mathrm{Var}(Y)` are
estimated from two independent sample matrices ``A``, ``B`` (``n x p``) and
the ``p`` matrices :math:`A_B^{(i)}` (``A`` with column ``i`` from ``B``),
``n (p + 2)`` evaluations in all, with Saltelli et al.'s first-order estimator
:math:`\frac{1}{n}\sum f(B)(f(A_B^{(i)}) - f(A))` and Jansen's total-effect
estimator :math:`\frac{1}{2n}\sum (f(A) - f(A_B^{(i)}))^2` (Saltelli et al.,
"Variance based sensitivity analysis of model output", Comput. Phys. Commun.
181, 2010, Table 2). Standard errors by bootstrap over the ``n`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import qmc


@dataclass
class SobolIndices:
    """First-order ``S1`` and total ``ST`` indices (``p``) with bootstrap standard errors."""

    names: list[str]
    S1: np.ndarray
    S1_se: np.ndarray
    ST: np.ndarray
    ST_se: np.ndarray
    n_evaluations: int

    def as_dict(self) -> dict[str, Any]:
        return {
            name: {
                "S1": float(self.S1[i]),
                "S1_se": float(self.S1_se[i]),
                "ST": float(self.ST[i]),
                "ST_se": float(self.ST_se[i]),
            }
            for i, name in enumerate(self.names)
        } | {"n_evaluations": self.n_evaluations}


def _indices(fA, fB, fAB):
    V = np.var(np.concatenate([fA, fB]), ddof=1)
    S1 = np.mean(fB[:, None] * (fAB - fA[:, None]), axis=0) / V
    ST = 0.5 * np.mean((fA[:, None] - fAB) ** 2, axis=0) / V
    return S1, ST


def sobol_unit(d: int, n: int, seed: int) -> np.ndarray:
    """The first ``n`` points (``n x d``, in ``[0, 1)^d``) of a scrambled Sobol'
    sequence (scipy's ``qmc.Sobol``), drawn as the smallest power-of-two block
    that holds them: the same points as ``random(n)``, without scipy's
    warning when ``n`` is not a power of two (the first ``n`` points of a
    balanced block are what a design of ``n`` points is)."""
    m = max(0, math.ceil(math.log2(max(n, 1))))
    return qmc.Sobol(d=d, scramble=True, seed=seed).random_base2(m)[:n]


def sobol_indices(
    f: Callable[[np.ndarray], np.ndarray],
    distributions: Mapping[str, Any],
    n: int = 1024,
    seed: int = 0,
    n_bootstrap: int = 200,
) -> SobolIndices:
    """Sobol indices of ``f`` over independent inputs.

    Args:
        f: ``m x p`` inputs -> ``m`` outputs (called once with all ``n (p + 2)`` rows).
        distributions: name -> scipy.stats frozen distribution (with ``ppf``).
        n: base sample size (a power of two keeps the scrambled Sobol' sequence balanced).
        seed: seed of the scrambled Sobol' sequence and of the bootstrap.
        n_bootstrap: bootstrap resamples for the standard errors.
    """
    names = list(distributions)
    p = len(names)
    if p < 1:
        raise ValueError("need at least one random input")
    if n < 8:
        raise ValueError(f"n must be >= 8, got {n}")
    U = sobol_unit(2 * p, n, seed)
    U = np.clip(U, 1e-12, 1 - 1e-12)
    X = np.column_stack([distributions[nm].ppf(U[:, j]) for j, nm in enumerate(names)])
    Xb = np.column_stack([distributions[nm].ppf(U[:, p + j]) for j, nm in enumerate(names)])
    AB = np.repeat(X[None], p, axis=0)
    for i in range(p):
        AB[i, :, i] = Xb[:, i]
    Y = np.asarray(f(np.concatenate([X, Xb, AB.reshape(-1, p)])), dtype=float).reshape(-1)
    if Y.shape[0] != n * (p + 2):
        raise ValueError(f"f returned {Y.shape[0]} values for {n * (p + 2)} inputs")
    fA, fB, fAB = Y[:n], Y[n : 2 * n], Y[2 * n :].reshape(p, n).T
    S1, ST = _indices(fA, fB, fAB)
    rng = np.random.default_rng(seed)
    boot = [_indices(fA[i], fB[i], fAB[i]) for i in rng.integers(0, n, (n_bootstrap, n))]
    S1b = np.array([b[0] for b in boot])
    STb = np.array([b[1] for b in boot])
    return SobolIndices(names, S1, S1b.std(0, ddof=1), ST, STb.std(0, ddof=1), int(Y.shape[0]))
