"""Material-point providers: anything that maps a batch of F to P and dP/dF.

Every provider implements :class:`oracles.material.MaterialModel`
(``material_response(F: n x k x k) -> MaterialResponse``), so the macro solver
does not know whether it talks to an analytic law, the RVE oracle spread over
worker processes, a deployed surrogate or the adaptive switch.
"""

from __future__ import annotations

import math
import pickle
import time
import uuid
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from oracles.exceptions import InvalidInput
from oracles.material import MaterialModel, MaterialResponse
from oracles.rve import laws

DTYPE = torch.float64


def _det(F: Tensor) -> Tensor:
    """Closed-form ``n`` determinants of ``n x k x k`` (k = 2, 3); cheaper than an LU per point."""
    if F.shape[-1] == 2:
        return F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]
    return (
        F[:, 0, 0] * (F[:, 1, 1] * F[:, 2, 2] - F[:, 1, 2] * F[:, 2, 1])
        - F[:, 0, 1] * (F[:, 1, 0] * F[:, 2, 2] - F[:, 1, 2] * F[:, 2, 0])
        + F[:, 0, 2] * (F[:, 1, 0] * F[:, 2, 1] - F[:, 1, 1] * F[:, 2, 0])
    )


def check_F(F: Tensor | Any, k: int | None = None) -> Tensor:
    """``F`` as an ``n x k x k`` float64 tensor with positive determinants."""
    if not isinstance(F, Tensor):
        try:
            F = torch.as_tensor(F, dtype=DTYPE)
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"F must be numeric, got {F!r}") from e
    F = F.to(DTYPE)
    if F.dim() != 3 or F.shape[-1] != F.shape[-2] or F.shape[-1] not in (2, 3):
        raise InvalidInput(f"F must have shape n x k x k with k in (2, 3), got {tuple(F.shape)}")
    if k is not None and F.shape[-1] != k:
        raise InvalidInput(f"F must be n x {k} x {k}, got {tuple(F.shape)}")
    if not torch.isfinite(F).all():
        raise InvalidInput("F contains non-finite entries")
    J = _det(F)
    if (J <= 0).any():
        i = int((J <= 0).nonzero()[0])
        raise InvalidInput(f"det F must be positive, got det F = {J[i].item():.6g} at point {i}")
    return F


class LawProvider:
    """A law with ``stress_tangent(F) -> (P, dP/dF)`` as a provider.

    For example a phase law of :mod:`oracles.rve.laws` (the one place each
    constitutive law is written). ``F`` is checked (``n x k x k``, ``k`` in
    2, 3, ``det F > 0``) before the law sees it.
    """

    def __init__(self, law):
        if not callable(getattr(law, "stress_tangent", None)):
            raise TypeError(f"law must have stress_tangent(F), got {type(law).__name__}")
        self.law = law

    def material_response(self, F: Tensor) -> MaterialResponse:
        P, A = self.law.stress_tangent(check_F(F))
        return MaterialResponse(P, A, None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.law!r})"


class NeoHookean(LawProvider):
    r"""The compressible Neo-Hookean law of :class:`oracles.rve.laws.NeoHookean` as a provider.

    :math:`\psi = \frac{\mu}{2}(I_1 - 3) - \mu \ln J + \frac{\lambda}{2} (\ln J)^2`,
    :math:`P = \mu (F - F^{-T}) + \lambda \ln J \, F^{-T}`: the RVE's phase law,
    so a homogeneous RVE of this material reproduces it. In plane strain
    (``k = 2``) ``F33 = 1`` and only the in-plane block is returned.

    Args:
        mu: shear modulus (> 0).
        lam: the 3D Lamé constant lambda (``lam + 2 mu / 3 > 0``).
    """

    def __init__(self, mu: float, lam: float):
        mu, lam = float(mu), float(lam)
        if not (math.isfinite(mu) and mu > 0):
            raise InvalidInput(f"shear modulus mu must be positive, got {mu}")
        if not (math.isfinite(lam) and lam + 2 * mu / 3 > 0):
            raise InvalidInput(
                f"lam must give a positive bulk modulus lam + 2 mu / 3, got lam={lam}"
            )
        super().__init__(laws.NeoHookean(K=lam + 2 * mu / 3, mu=mu))
        self.mu, self.lam = mu, lam

    @classmethod
    def from_young(cls, E: float, nu: float) -> NeoHookean:
        """From Young's modulus ``E > 0`` and Poisson ratio ``nu`` in (-1, 0.5)."""
        if not (E > 0 and -1 < nu < 0.5):
            raise InvalidInput(f"need E > 0 and -1 < nu < 0.5, got E={E}, nu={nu}")
        lam, mu = laws.lame_from(E=E, nu=nu)
        return cls(mu=mu, lam=lam)

    def __repr__(self) -> str:
        return f"NeoHookean(mu={self.mu:.6g}, lam={self.lam:.6g})"


def sobol_gradients(n: int, h_max: float, seed: int = 0, k: int = 2) -> Tensor:
    """``n x k x k`` deformation gradients ``I + H`` with ``H`` on a scrambled Sobol design in ``[-h_max, h_max]^(k*k)``."""
    if n < 1 or not (h_max > 0 and math.isfinite(h_max)) or k not in (2, 3):
        raise ValueError(f"need n >= 1, a positive finite h_max and k in (2, 3), got n={n}, h_max={h_max}, k={k}")
    sob = torch.quasirandom.SobolEngine(k * k, scramble=True, seed=seed)
    H = (2 * sob.draw(n, dtype=DTYPE) - 1) * h_max
    return torch.eye(k, dtype=DTYPE) + H.reshape(n, k, k)


def _respond(model: MaterialModel, F: Tensor) -> tuple[Tensor, Tensor]:
    # module level so process pools can pickle it
    r = model.material_response(F)
    return r.P, r.tangent


#: models unpickled in this (worker) process, by the key of their OracleProvider
_WORKER_MODELS: dict[str, MaterialModel] = {}


def _respond_cached(key: str, payload: bytes, F: Tensor) -> tuple[Tensor, Tensor]:
    # an oracle rebuilds its solver (phase map, FFT operators) after unpickling;
    # keeping one copy per worker process makes that a once-per-worker cost
    model = _WORKER_MODELS.get(key)
    if model is None:
        model = pickle.loads(payload)
        if len(_WORKER_MODELS) > 8:
            _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = model
    return _respond(model, F)


class OracleProvider:
    """An expensive material model (the RVE oracle) evaluated in parallel over Gauss points.

    The batch is cut into chunks of ``chunk_size`` points (default: one chunk
    per worker); each chunk is one task on ``executor`` (any :class:`concurrent.futures.Executor`: a
    process pool, the campaign engine's executors, or a Dask client's
    ``get_executor()``). Without an executor the chunks run in this process.
    The model must pickle for process executors (oracles hold plain data); it
    is pickled once and each worker process keeps its unpickled copy (and the
    solver the copy builds) for the following tasks.

    Attributes:
        n_evaluations: material points evaluated so far.
        eval_time: wall seconds spent in :meth:`material_response`.
    """

    def __init__(
        self, model: MaterialModel, executor: Executor | None = None, chunk_size: int | None = None
    ):
        if not isinstance(model, MaterialModel):
            raise TypeError(f"model must have material_response(F), got {type(model).__name__}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.model = model
        self.executor = executor
        self.chunk_size = chunk_size
        self.n_evaluations = 0
        self.eval_time = 0.0
        # process workers keep one unpickled copy of the model per provider
        self._key = uuid.uuid4().hex
        self._payload: bytes | None = None
        if executor is not None and not isinstance(executor, ThreadPoolExecutor):
            try:
                self._payload = pickle.dumps(model)
            except Exception:  # noqa: BLE001  (unpicklable models go by reference, e.g. Dask)
                self._payload = None

    def _chunks(self, n: int) -> list[slice]:
        if self.chunk_size is not None:
            size = self.chunk_size
        elif self.executor is not None:
            # one task per worker: a batched oracle (the FFT RVE solves all its
            # points in one vectorized Newton) costs a fixed amount per call plus
            # a little per point, so splitting finer only adds calls
            size = max(1, math.ceil(n / self.workers))
        else:
            size = max(n, 1)
        return [slice(i, min(i + size, n)) for i in range(0, n, size)]

    @property
    def workers(self) -> int:
        """Points evaluated at the same time: the executor's worker count
        (2 for an executor that does not say, e.g. a Dask client's), 1 without one."""
        if self.executor is None:
            return 1
        return int(getattr(self.executor, "_max_workers", None) or 2)

    def material_response(self, F: Tensor) -> MaterialResponse:
        F = check_F(F)
        t0 = time.perf_counter()
        n = F.shape[0]
        chunks = self._chunks(n)
        if self.executor is None:
            parts = [_respond(self.model, F[s]) for s in chunks]
        else:
            if self._payload is not None:
                futures = [
                    self.executor.submit(_respond_cached, self._key, self._payload, F[s].clone())
                    for s in chunks
                ]
            else:
                futures = [self.executor.submit(_respond, self.model, F[s].clone()) for s in chunks]
            try:
                parts = [f.result() for f in futures]
            except BaseException:
                # the batch has failed (or was stopped): chunks not yet started would only
                # keep the workers busy ahead of the retry
                for f in futures:
                    f.cancel()
                raise
        P = torch.cat([p for p, _ in parts]) if parts else F.new_zeros(0, *F.shape[1:])
        A = torch.cat([a for _, a in parts]) if parts else F.new_zeros(0, *F.shape[1:] * 2)
        self.n_evaluations += n
        self.eval_time += time.perf_counter() - t0
        return MaterialResponse(P.to(DTYPE), A.to(DTYPE), None)


def load_material(spec: str | Path) -> MaterialModel:
    """A deployed surrogate as a provider: a directory or an MLflow URI.

    Args:
        spec: a directory written by :func:`surrogates.base.save_surrogate`, or
            ``models:/name/version`` (or any MLflow model URI) loaded through
            the scalebridge MLflow flavor.

    Raises:
        FileNotFoundError: no surrogate at the path.
        TypeError: the loaded model does not answer ``material_response``.
    """
    spec = str(spec)
    if "://" in spec or spec.startswith("models:/") or spec.startswith("runs:/"):
        from surrogates.mlflow_flavor import load_model

        model = load_model(spec)
    else:
        from surrogates.base import load_surrogate

        model = load_surrogate(spec)
    if not isinstance(model, MaterialModel):
        raise TypeError(
            f"the model at {spec} ({type(model).__name__}) has no material_response(F); "
            "FE² needs a constitutive surrogate"
        )
    return model
