r"""Variance-based sensitivity: first-order and total Sobol indices by pick-freeze sampling.

For ``Y = f(X_1, ..., X_p)`` with independent inputs, the first-order index
:math:`S_i = \mathrm{Var}(E[Y | X_i]) / \mathrm{Var}(Y)` and the total index
:math:`S_{Ti} = E[\mathrm{Var}(Y | X_{\sim i})] / \mathrm{Var}(Y)` are
estimated from two independent sample matrices ``A``, ``B`` (``n x p``) and
the ``p`` matrices :math:`A_B^{(i)}` (``A`` with column ``i`` from ``B``),
``n (p + 2)`` evaluations in all, with Saltelli et al.'s first-order estimator
:math:`\frac{1}{n}\sum (f(B) - \bar f)(f(A_B^{(i)}) - f(A))` (centred on the
mean ``\bar f`` of ``f(A)`` and ``f(B)``: the same expectation, but its
variance no longer grows with the output's mean squared over its variance, as
it does for a reaction force of 0.5 varying by 1 %) and Jansen's total-effect
estimator :math:`\frac{1}{2n}\sum (f(A) - f(A_B^{(i)}))^2` (Saltelli et al.,
"Variance based sensitivity analysis of model output", Comput. Phys. Commun.
181, 2010, Table 2). Standard errors by randomized quasi-Monte Carlo: the
``n`` rows are ``R`` independently scrambled Sobol' blocks of ``n / R`` rows,
the indices are estimated on all rows, and their standard errors are the
spread of the ``R`` blocks' own estimates over ``sqrt(R)`` (Owen, "Monte Carlo
theory, methods and examples", 2013, ch. 17). A bootstrap over the rows
would treat a scrambled net as independent points and overstate the error
(3 to 7 times on the Ishigami function at ``n = 512``).

A failed evaluation (a non-finite value of ``f``) removes its row ``j`` (the
``p + 2`` evaluations at ``A_j``, ``B_j`` and every ``A_B^{(i)}_j``) from the
estimates; ``failed_rows`` counts them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import qmc

from oracles.exceptions import is_integer


def spawn_seeds(seed: int, n: int) -> list[int]:
    """``n`` seeds of independent streams derived from ``seed`` (NumPy's ``SeedSequence.spawn``):
    unlike ``seed + i``, the streams of ``seed`` and ``seed + 1`` share no draws."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


@dataclass
class SobolIndices:
    """First-order ``S1`` and total ``ST`` indices (``p``) with their standard errors
    (NaN with one replicate); ``replicates``: the independent scramblings;
    ``failed_rows``: base rows left out because one of their evaluations failed."""

    names: list[str]
    S1: np.ndarray
    S1_se: np.ndarray
    ST: np.ndarray
    ST_se: np.ndarray
    n_evaluations: int
    replicates: int = 1
    failed_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            name: {
                "S1": float(self.S1[i]),
                "S1_se": float(self.S1_se[i]),
                "ST": float(self.ST[i]),
                "ST_se": float(self.ST_se[i]),
            }
            for i, name in enumerate(self.names)
        } | {"n_evaluations": self.n_evaluations, "replicates": self.replicates, "failed_rows": self.failed_rows}


def _indices(fA, fB, fAB):
    both = np.concatenate([fA, fB])
    V = np.var(both, ddof=1)
    S1 = np.mean((fB - both.mean())[:, None] * (fAB - fA[:, None]), axis=0) / V
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
    replicates: int = 8,
) -> SobolIndices:
    """Sobol indices of ``f`` over independent inputs.

    Args:
        f: ``m x p`` inputs -> ``m`` outputs (called once with all ``n (p + 2)`` rows).
        distributions: name -> scipy.stats frozen distribution (with ``ppf``).
        n: base sample size (``n / R`` a power of two keeps each scrambled
            Sobol' block balanced; otherwise the blocks differ by at most a row).
        seed: seed of the scramblings.
        replicates: independent scramblings ``R`` for the standard errors; at most
            ``n // 8`` are used (blocks of at least 8 rows), and with one the
            standard errors are NaN.
    """
    names = list(distributions)
    p = len(names)
    if p < 1:
        raise ValueError("need at least one random input")
    for nm in names:
        if not callable(getattr(distributions[nm], "ppf", None)):
            raise TypeError(f"distribution of {nm!r} must be a scipy.stats frozen distribution (with ppf), "
                            f"got {type(distributions[nm]).__name__}")
    if not (is_integer(n) and n >= 8):
        raise ValueError(f"n must be an integer >= 8, got {n!r}")
    if not (is_integer(seed) and seed >= 0):
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    n = int(n)
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) or replicates < 1:
        raise ValueError(f"replicates must be an integer >= 1, got {replicates!r}")
    R = int(min(replicates, n // 8))
    edges = np.linspace(0, n, R + 1).round().astype(int)
    # one block is the scrambled sequence of ``seed`` itself
    seeds = [seed] if R == 1 else spawn_seeds(seed, R)
    U = np.concatenate([sobol_unit(2 * p, int(b - a), s) for a, b, s in zip(edges[:-1], edges[1:], seeds, strict=True)])
    U = np.clip(U, 1e-12, 1 - 1e-12)
    X = np.column_stack([distributions[nm].ppf(U[:, j]) for j, nm in enumerate(names)])
    Xb = np.column_stack([distributions[nm].ppf(U[:, p + j]) for j, nm in enumerate(names)])
    AB = np.repeat(X[None], p, axis=0)
    for i in range(p):
        AB[i, :, i] = Xb[:, i]
    Y = np.asarray(f(np.concatenate([X, Xb, AB.reshape(-1, p)])))
    if np.iscomplexobj(Y) or not (np.issubdtype(Y.dtype, np.number) or Y.dtype == bool):
        raise ValueError(f"f must return real numbers, got dtype {Y.dtype}")
    Y = Y.astype(float).reshape(-1)
    if Y.shape[0] != n * (p + 2):
        raise ValueError(f"f returned {Y.shape[0]} values for {n * (p + 2)} inputs")
    fA, fB, fAB = Y[:n], Y[n : 2 * n], Y[2 * n :].reshape(p, n).T
    ok = np.isfinite(fA) & np.isfinite(fB) & np.isfinite(fAB).all(1)
    if ok.sum() < 2:
        raise ValueError(f"Sobol indices: {n - int(ok.sum())} of {n} rows have a failed (non-finite) "
                         "evaluation; fewer than 2 rows are left")
    S1, ST = _indices(fA[ok], fB[ok], fAB[ok])
    blocks = [ok[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
    if R > 1 and all(k.sum() >= 2 for k in blocks):
        est = [_indices(fA[a:b][k], fB[a:b][k], fAB[a:b][k])
               for a, b, k in zip(edges[:-1], edges[1:], blocks, strict=True)]
        S1_se = np.array([e[0] for e in est]).std(0, ddof=1) / math.sqrt(R)
        ST_se = np.array([e[1] for e in est]).std(0, ddof=1) / math.sqrt(R)
    else:
        S1_se = ST_se = np.full(p, np.nan)
    return SobolIndices(names, S1, S1_se, ST, ST_se, int(Y.shape[0]), R, failed_rows=int(n - ok.sum()))
