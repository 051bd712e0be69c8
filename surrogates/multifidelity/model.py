r"""Base class of the multi-fidelity models: data checks, scaling, noise,
posterior assembly, persistence and the cost model.

A model is fitted on a :class:`~surrogates.dataset.Dataset` whose
``fidelity`` holds the level of every row (``0`` cheapest, ``L - 1`` the one
that matters; ``X`` excludes the level). Inputs are scaled to the unit cube
(by ``bounds`` or the data's range); each level's outputs are standardized by
that level's own mean and scale (``level_mean``, ``level_std``), so every
prediction is equivariant under ``y -> a y + b`` (any ``a != 0``): the scale
carries the sign that makes the standardized outputs' sum of cubes
non-negative, so ``y`` and ``-y`` give the same standardized data, and nothing
else depends on the sign or offset of the data.

Noise is said explicitly by ``noise``:

* ``"known"``: ``Dataset.Yvar`` (``n x 1``, variances in output units) is the
  observation noise of every row, fixed and heteroskedastic (``Yvar = 0``:
  that row is interpolated). Precision-weighted fusion: a row with a small
  variance pulls harder than one with a large variance.
* ``"infer"``: one noise variance (nugget) per level is estimated; ``Yvar`` is
  not used.
* ``"known+infer"``: ``Yvar`` plus an estimated nugget per level.
* ``"none"``: noise-free data (``Yvar`` must be absent or zero). AR1 (one
  joint GP) interpolates every level's data. Recursive co-kriging
  interpolates a level's rows whose inputs the level below was observed at
  (nested designs); at a row the level below was not observed at, it carries
  the level below's predictive variance there as that row's noise, so its
  mean need not pass through it. NARGP interpolates every level's rows and
  takes the level below's posterior mean at them as exact: on a non-nested
  design its variance leaves out that mean's uncertainty (overconfident).
* ``"auto"`` (default): ``"known"`` when ``Yvar`` is given, else ``"infer"``.

Rows that are noise-free (every row under ``"none"``, those with ``Yvar = 0``
under ``"known"``) and repeat an input of their level with another value are
refused (:class:`NoiseFreeConflict`): no function interpolates both. Rows
marked unobserved (``Dataset.observed``) are refused too: drop them first.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch
from botorch.models.cost import AffineFidelityCostModel
from botorch.models.deterministic import GenericDeterministicModel
from botorch.models.model import FantasizeMixin, Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from linear_operator.operators import DenseLinearOperator, LinearOperator
from torch import Tensor

from surrogates.base import SurrogateMixin, UnitMultivariateNormal, check_flag, check_int  # noqa: F401  (re-exported)
from surrogates.dataset import CONSTANT_RTOL, DTYPE, Dataset
from surrogates.multifidelity.core import KERNELS, LOG_LS_BOUNDS, NOISE_FLOOR, independent_columns


class TooFewLevelPoints(ValueError):
    """A level has no more points than its trend has terms: the model cannot be
    fitted on these data (more results at that level, or :class:`AR1CoKriging`)."""


class DeferredJoint(NamedTuple):
    """Covariance of ``q`` points (standardized units) given by its diagonal
    ``diag`` (``batch x q``) now and by ``full()`` (``batch x q x q``, the same
    diagonal) when the joint matrix is needed."""

    diag: Tensor
    full: Callable[[], Tensor]


class DeferredCovariance(LinearOperator):
    """A covariance matrix whose diagonal is known and whose full matrix is
    computed on first use.

    A posterior's variances (BoTorch's ``posterior.variance``, qNIPV's
    integrated variance over hundreds of points, scalings by
    :class:`~botorch.acquisition.objective.ScalarizedPosteriorTransform`) read
    only the diagonal; sampling, log-densities and any other operation on the
    matrix evaluate ``dense_fn()`` once and act as a
    :class:`~linear_operator.operators.DenseLinearOperator` of it, through
    plain torch autograd.

    Args:
        diag: ``batch x q`` variances.
        dense_fn: returns the ``batch x q x q`` matrix (with diagonal ``diag``).
    """

    def __init__(self, diag: Tensor, dense_fn: Callable[[], Tensor]):
        super().__init__(diag, dense_fn=dense_fn)
        self._diag, self._dense_fn, self._dense = diag, dense_fn, None

    def _dense_op(self) -> DenseLinearOperator:
        if self._dense is None:
            self._dense = DenseLinearOperator(self._dense_fn())
        return self._dense

    def to_dense(self) -> Tensor:
        return self._dense_op().tensor

    def representation(self) -> tuple[Tensor, ...]:
        return self._dense_op().representation()

    def representation_tree(self):
        return self._dense_op().representation_tree()

    def _diagonal(self) -> Tensor:
        return self._diag

    def _size(self) -> torch.Size:
        return torch.Size((*self._diag.shape, self._diag.shape[-1]))

    def _transpose_nonbatch(self) -> LinearOperator:
        return self

    def detach_(self) -> LinearOperator:
        self._dense = DenseLinearOperator(self.to_dense().detach())
        self._diag = self._diag.detach()
        return self

    def __reduce__(self):  # a pickle holds the matrix, not the closure
        return DenseLinearOperator, (self.to_dense(),)


def _on_dense(name: str):
    def method(self, *args, **kwargs):
        return getattr(self._dense_op(), name)(*args, **kwargs)

    method.__name__ = name
    return method


# the operations on the matrix, and the copies and conversions (which LinearOperator would
# rebuild from the diagonal alone: the closure computes the matrix in the original dtype,
# device and graph), are the dense operator's
for _name in ("_matmul", "_expand_batch", "_get_indices", "_getitem", "_permute_batch", "_unsqueeze_batch",
              "_cholesky", "detach", "clone", "to", "type", "cpu", "cuda"):
    setattr(DeferredCovariance, _name, _on_dense(_name))
del _name


#: noise treatments (see the module docstring)
NOISE_MODES = ("auto", "known", "infer", "known+infer", "none")
#: version of the saved configuration and state of these models (3: each level
#: standardized by its own mean and scale)
FORMAT = 3


#: significant bits kept of the standardized targets and noise variances the
#: fits see (float64 has 53): a relative change of at most 2**-32 (about 2e-10)
TARGET_BITS = 32


#: outputs' scale (standard deviation, or magnitude of a constant) the models accept: its
#: square, the unit of every variance they report, stays inside double precision
OUTPUT_SCALE_RANGE = (1e-150, 1e150)


def _std(y: Tensor) -> Tensor:
    """Sample standard deviation of ``y`` (``n >= 2``) without overflow of the squares."""
    a = y.abs().max()
    return (y / a).std() * a if float(a) > 0 else a


def _varies(y: Tensor) -> bool:
    """Whether ``y`` (``n``) holds at least two values that differ by more than round-off
    (standard deviation above ``CONSTANT_RTOL`` times the magnitude of the mean)."""
    return y.numel() >= 2 and float(_std(y)) > CONSTANT_RTOL * float(y.mean().abs())


def round_significand(t: Tensor, bits: int = TARGET_BITS) -> Tensor:
    """``t`` with each value's significand rounded to ``bits`` bits.

    The standardized data of ``y`` and of ``a y + b`` differ by round-off
    (about 1e-16 of the spread, times ``|b| / |a|`` over the spread); a
    likelihood with a flat optimum can turn that into hyperparameters that
    differ by 1e-3. Rounded, they are the same numbers unless a value lies
    within that round-off of a rounding boundary (a chance of about 1e-6 per
    value for offsets up to 1e3 spreads), and so are the fits.
    """
    m, e = torch.frexp(t)
    return torch.ldexp(torch.round(m * 2.0**bits) / 2.0**bits, e.to(t.dtype))


def check_costs(costs: Any, L: int) -> list[float]:
    """``costs`` as ``L`` floats if it is a sequence of ``L`` positive finite numbers, else a ``ValueError``."""
    ok = isinstance(costs, (Sequence, Tensor)) and not isinstance(costs, (str, bytes))
    try:
        out = [float(c) for c in costs] if ok else []
    except (TypeError, ValueError):
        ok = False
    if not ok or len(out) != L or any(not math.isfinite(c) or c <= 0 for c in out):
        raise ValueError(f"costs must be {L} positive finite numbers (one per level), got {costs!r}")
    return out


class NoiseFreeConflict(ValueError):
    """Noise-free rows of one level that repeat an input with different values."""


#: noise-free rows at one input whose values differ by more than this many standard
#: deviations of the noise floor (``sqrt(NOISE_FLOOR)`` of the output scale) contradict
#: each other (:func:`check_interpolable`); closer ones are one value to the models' precision
CONFLICT_FLOORS = 10.0

#: rows of one level closer than this (Euclidean distance of the inputs scaled to the unit
#: box) are one input to the models: at the shortest lengthscale the models allow,
#: ``exp(LOG_LS_BOUNDS[0])``, their correlation differs from 1 by less than the noise floor
#: (``1 - r ~ (5/6) (dx / ls)^2`` for the Matern 5/2)
SAME_INPUT = math.exp(LOG_LS_BOUNDS[0]) * math.sqrt(NOISE_FLOOR)


def check_interpolable(dataset: Dataset, L: int, scale: float | Sequence[float], span: Tensor | None = None) -> None:
    """A :class:`NoiseFreeConflict` where noise-free rows (every row under ``noise="none"``, the
    rows with ``Yvar = 0`` under ``"known"``) at one level repeat an input with values more than
    :data:`CONFLICT_FLOORS` floor standard deviations apart (``scale``: the outputs' scale, one
    number or one per level): no function interpolates them, and a model that tried would be sure
    of a value between them. Values closer than that (a solver's round-off) are one observation
    to the models. Inputs closer than :data:`SAME_INPUT` in the unit box (``span``: the box's
    widths, ``d``; default 1) repeat one another: the models cannot tell them apart either, and
    fitted to both values they predict far outside the data's range."""
    from scipy.spatial import cKDTree

    yvar = dataset.Yvar
    free = torch.ones(dataset.n, dtype=torch.bool) if yvar is None else yvar[:, 0] <= 0
    scales = [float(scale)] * L if isinstance(scale, (int, float)) else [float(v) for v in scale]
    x = dataset.X if span is None else dataset.X / span
    for t in range(L):
        tol = CONFLICT_FLOORS * math.sqrt(NOISE_FLOOR) * scales[t]
        idx = ((dataset.fidelity == t) & free).nonzero().flatten()
        if len(idx) < 2:
            continue
        pairs = cKDTree(x[idx].numpy()).query_pairs(r=SAME_INPUT, output_type="ndarray")
        if not len(pairs):
            continue
        pairs = torch.as_tensor(idx.numpy()[pairs]).sort(-1).values
        y = dataset.Y[:, 0]
        bad = pairs[(y[pairs[:, 0]] - y[pairs[:, 1]]).abs() > tol]
        if len(bad):
            a, b = min(tuple(r) for r in bad.tolist())  # the first pair in row order
            gap = float((x[a] - x[b]).norm())
            where = "the same input" if gap == 0 else f"inputs {gap:.2g} apart in the unit box (one input to the models)"
            raise NoiseFreeConflict(
                f"rows {a} and {b} are noise-free observations of level {t} at {where} with different "
                f"values ({float(dataset.Y[a, 0])!r} and {float(dataset.Y[b, 0])!r}); no model interpolates both: "
                f"say their noise (Dataset.Yvar with noise='known', or noise='infer')"
            )


def refit_message(cls_name: str, what: str) -> str:
    return (
        f"{what}: this {cls_name} was saved by an older scalebridge whose multi-fidelity models had other "
        f"parameters; refit it with {cls_name}.from_dataset(dataset, ...) on its dataset.json"
    )


class MultiFidelityModel(Model, FantasizeMixin, SurrogateMixin):
    """Shared part of :class:`AR1CoKriging`, :class:`RecursiveCoKriging` and :class:`NARGP`.

    Args:
        dataset: training data with ``fidelity`` (``n``) and one output (``Y``: ``n x 1``).
        num_fidelities: number of levels ``L`` (default: highest level in the data + 1).
        bounds: ``2 x d`` input bounds for the unit-cube scaling (default: the data's range).
        costs: cost per point of each level (default ``1, 2, ..., L``), for :meth:`cost_model`.
        noise: noise treatment, one of :data:`NOISE_MODES`.
        kernel: correlation family, ``"matern52"`` (default) or ``"rbf"`` (GPyTorch
            kernels), or ``"auto"`` (:class:`AR1CoKriging`'s default): per level the one
            with the larger maximized restricted likelihood times prior (type-II maximum
            likelihood model choice).
        ard: one lengthscale per input dimension (True) or one shared (False).
        restarts: local optimizations per fit (default 1; :class:`AR1CoKriging`: 3), each from one of the best-scoring
            candidate starts (the prior mode, the recursive estimates, random draws).
        seed: seed of the random starting points (the fit is deterministic given it).

    Fantasies: :meth:`condition_on_observations` returns a copy conditioned on
    new observations (``batch x q x (d + 1)`` inputs, ``fantasy_batch x batch x
    q x 1`` outputs) with the hyperparameters and scaling fixed, by exact
    refactorisation of the augmented data (``fantasy_batch x batch`` training
    sets, padded per level with masked rows); BoTorch's
    :meth:`~botorch.models.model.FantasizeMixin.fantasize` builds on it.

    Subclasses implement :meth:`_build` (buffers for the hyperparameters),
    :meth:`_fit` (estimate them), :meth:`_condition` (factor the training data
    with them) and :meth:`_latent` (standardized latent mean ``... x q`` and
    covariance ``... x q x q`` at scaled inputs ``... x q x d`` and levels ``... x q``).
    """

    def __init__(
        self,
        dataset: Dataset,
        num_fidelities: int | None = None,
        bounds: Sequence[Sequence[float]] | Tensor | None = None,
        costs: Sequence[float] | None = None,
        noise: str = "auto",
        kernel: str = "matern52",
        ard: bool = True,
        restarts: int = 1,
        seed: int = 0,
    ):
        super().__init__()
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a surrogates.dataset.Dataset, got {type(dataset).__name__}")
        if dataset.fidelity is None:
            raise ValueError("a multi-fidelity model needs Dataset.fidelity (n integer levels), got None")
        if dataset.n == 0:
            raise ValueError("a multi-fidelity model needs training points at every level, got an empty Dataset")
        if dataset.m != 1:
            raise ValueError(f"multi-fidelity models take one output (Y n x 1), got Y with m = {dataset.m}")
        if dataset.d == 0:
            raise ValueError("a multi-fidelity model needs at least one input (Dataset.X n x d with d >= 1), "
                             f"got X of shape {tuple(dataset.X.shape)}")
        if not torch.isfinite(dataset.Y).all() or not torch.isfinite(dataset.X).all():
            raise ValueError("Dataset.X and Dataset.Y must be finite for a multi-fidelity model, got NaN or inf")
        if dataset.observed is not None:
            rows = (~dataset.observed[:, 0]).nonzero().flatten().tolist()
            raise ValueError(
                f"a multi-fidelity model needs every row observed, got Dataset.observed False at rows "
                f"{rows[:10]}{' ...' if len(rows) > 10 else ''}; drop them (dataset.subset(dataset.observed[:, 0]))"
            )
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
        if kernel not in (*KERNELS, "auto"):
            raise ValueError(f"kernel must be one of {(*KERNELS, 'auto')}, got {kernel!r}")
        check_flag("ard", ard)
        fid = dataset.fidelity.long()
        if (fid < 0).any():
            raise ValueError(f"fidelity levels must be >= 0, got {int(fid.min())}")
        L = int(fid.max()) + 1 if num_fidelities is None else check_int("num_fidelities", num_fidelities, 2)
        if (fid >= L).any():
            raise ValueError(f"fidelity levels must be < num_fidelities = {L}, got {int(fid.max())}")
        if L < 2:
            raise ValueError(f"a multi-fidelity model needs at least 2 levels, got num_fidelities = {L}")
        counts = torch.bincount(fid, minlength=L)
        if (counts == 0).any():
            missing = (counts == 0).nonzero().flatten().tolist()
            raise ValueError(f"every fidelity level needs data; levels {missing} have none")
        yvar = dataset.Yvar
        if yvar is not None and not torch.isfinite(yvar).all():
            raise ValueError("Dataset.Yvar must be finite (variances in output units), got NaN or inf")
        self.noise_option = noise
        if noise == "auto":
            noise = "known" if yvar is not None else "infer"
        if noise in ("known", "known+infer") and yvar is None:
            raise ValueError(f"noise={noise!r} needs Dataset.Yvar (n x 1 known variances), got None")
        if noise == "none" and yvar is not None and bool((yvar > 0).any()):
            raise ValueError(
                f"noise='none' says the data are noise-free but Dataset.Yvar has positive entries "
                f"(max {float(yvar.max()):.3g}); use noise='known' to use them"
            )
        self.noise = noise
        self.kernel, self.ard = kernel, ard
        self.train_dataset = dataset
        self.num_fidelities, self.d = L, dataset.d
        self.restarts, self.seed = check_int("restarts", restarts, 1), check_int("seed", seed)
        if bounds is None:
            lo, hi = dataset.X.amin(0), dataset.X.amax(0)
        else:
            try:
                b = torch.as_tensor(bounds, dtype=DTYPE)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"bounds must be 2 x {self.d} numbers (lower row, upper row), got {bounds!r}") from None
            if b.shape != (2, self.d):
                raise ValueError(f"bounds must be 2 x {self.d}, got shape {tuple(b.shape)}")
            if not torch.isfinite(b).all() or bool((b[1] <= b[0]).any()):
                raise ValueError(f"bounds must be finite with lower < upper in every input, got {b.tolist()}")
            lo, hi = b[0], b[1]
        self._bounds_option = None if bounds is None else torch.as_tensor(bounds, dtype=DTYPE).tolist()
        span = hi - lo
        if not torch.isfinite(span).all():
            j = int((~torch.isfinite(span)).nonzero()[0])
            raise ValueError(
                f"input {j} spans [{float(lo[j])!r}, {float(hi[j])!r}] ({'bounds' if bounds is not None else 'the data'}), "
                f"a width beyond double precision ({float(span[j])!r}); rescale that input to a finite width")
        span = torch.where(span > 0, span, torch.ones_like(span))
        self.register_buffer("x_lo", lo.clone())
        self.register_buffer("x_span", span.clone())
        y_all = dataset.Y[:, 0]
        y_top = y_all[fid == L - 1]
        y_ref = y_top if _varies(y_top) else y_all
        if _varies(y_ref):
            std = _std(y_ref)
        else:
            # one value everywhere (to round-off): its magnitude is the only scale in the
            # data (so the variances of y and a y are still a^2 apart); 1 when that value is 0
            std = y_ref.mean().abs() if float(y_ref.mean().abs()) > 0 else torch.ones((), dtype=DTYPE)
        # each level in its own units: its mean and standard deviation (a level
        # with one value, or constant to round-off, borrows the reference scale),
        # so the fit of a level and the bounds on its parameters do not depend
        # on how spread out another level's data are
        lmean = torch.stack([y_all[fid == t].mean() for t in range(L)])
        lstd = torch.stack([_std(y_all[fid == t]) if _varies(y_all[fid == t]) else std for t in range(L)])
        for v in (std, *lstd):
            if not (OUTPUT_SCALE_RANGE[0] <= float(v) <= OUTPUT_SCALE_RANGE[1]):
                raise ValueError(
                    f"the outputs' scale is {float(v):.3g}, outside [{OUTPUT_SCALE_RANGE[0]:g}, "
                    f"{OUTPUT_SCALE_RANGE[1]:g}]: variances in these units (its square) would leave double "
                    f"precision; multiply the outputs by a factor that brings them into that range (and Yvar "
                    f"by its square)")
        # signed scales: the sign makes the standardized data of y and -y the
        # same numbers (sum of cubes >= 0), so their fits are identical
        z = (y_all - lmean[fid]) / lstd[fid]
        if float(z.pow(3).sum()) < 0:
            lstd = -lstd
        self.register_buffer("level_mean", lmean.clone())
        self.register_buffer("level_std", lstd.clone())
        if noise == "none" or (noise == "known" and yvar is not None):
            check_interpolable(dataset, L, lstd.abs().tolist(), span)
        self.costs = check_costs([float(t + 1) for t in range(L)] if costs is None else costs, L)
        self.infer_nugget = noise in ("infer", "known+infer")
        self._build()
        self._conditioned = False
        # observations added by condition_on_observations (scaled inputs
        # B x q x d, levels B x q, standardized targets F x B x q, known noise B x q)
        self._fantasy: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    # ---------------------------------------------------------- contract
    @classmethod
    def from_dataset(cls, dataset: Dataset, **options: Any):
        """Build and fit on ``dataset`` (options: see the class)."""
        return cls(dataset, **options).fit()

    def get_config(self) -> dict[str, Any]:
        if self._fantasy is not None:
            raise ValueError(
                "a fantasy model (from condition_on_observations) cannot be saved: its added rows are not in "
                "train_dataset; save the base model, or fit one on the data with the new rows"
            )
        return {
            "format": FORMAT,
            "num_fidelities": self.num_fidelities,
            "bounds": self._bounds_option,
            "costs": list(self.costs),
            "noise": self.noise_option,
            "kernel": self.kernel,
            "ard": self.ard,
            "restarts": self.restarts,
            "seed": self.seed,
            **self._extra_config(),
        }

    def _extra_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any], dataset: Dataset):
        if config.get("format") != FORMAT:
            raise ValueError(refit_message(
                cls.__name__, f"config.json has multi-fidelity format {config.get('format')!r}, this version "
                f"reads format {FORMAT}"))
        if dataset is None:
            raise ValueError(f"{cls.__name__} needs its training data to be rebuilt, got dataset=None")
        config = {k: v for k, v in config.items() if k != "format"}
        return cls(dataset, **config)

    #: buffers added after the saved format was fixed, whose freshly built value (every input,
    #: every trend column) is what a save written before them used; a save without them loads so
    _FILLED_WHEN_MISSING: tuple[str, ...] = ()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        own = self.state_dict()
        state_dict = {**{k: own[k] for k in self._FILLED_WHEN_MISSING if k not in state_dict}, **state_dict}
        if set(state_dict) != set(own) or any(state_dict[k].shape != own[k].shape for k in own):
            raise ValueError(refit_message(type(self).__name__, "state.pt does not match"))
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._conditioned = False
        return out

    def _independent_basis(self, t: int, F: Tensor) -> Tensor:
        """At the fit: the columns of level ``t``'s full trend basis ``F`` (``n x p``,
        built with ``basis_keep[t]`` all True) that
        :func:`~surrogates.multifidelity.core.independent_columns` keeps, recorded
        in the ``basis_keep`` buffer for :meth:`_kept_basis`. The columns are in unit
        sizes (the unit-cube inputs and the standardized level below), so the
        residual is also measured against a column of ones."""
        keep = independent_columns(F, floor=math.sqrt(F.shape[-2]))
        self.basis_keep[t, : F.shape[-1]] = keep
        return F[..., keep]

    def _kept_basis(self, t: int, F: Tensor) -> Tensor:
        """Level ``t``'s full trend basis ``F`` (``... x p``) less the columns dropped at the fit."""
        keep = self.basis_keep[t, : F.shape[-1]]
        return F if bool(keep.all()) else F[..., keep]

    def fit(self):
        """Estimate the hyperparameters and condition on the data; returns ``self``."""
        if self._fantasy is not None:
            raise ValueError("a fantasy model (from condition_on_observations) keeps its hyperparameters; fit the base model")
        self._fit()
        self._conditioned = False
        self._ensure_conditioned()
        self.eval()
        return self

    def _ensure_conditioned(self) -> None:
        if not self._conditioned:
            # a fantasy model stays differentiable in its fantasy inputs and values
            with torch.no_grad() if self._fantasy is None else nullcontext():
                self._condition()
            self._conditioned = True

    @property
    def num_outputs(self) -> int:
        return 1

    def subset_output(self, idcs: list[int]) -> MultiFidelityModel:
        """BoTorch's ``subset_output``: the model has one output, so ``[0]`` gives a copy of it."""
        try:
            ok = [operator.index(i) for i in idcs] in ([0], [-1])
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"{type(self).__name__} has one output: subset_output takes [0], got {idcs!r}")
        return copy.deepcopy(self)

    #: BoTorch's fantasize looks for a fixed-noise likelihood; the noise of
    #: these models is handled by :meth:`condition_on_observations`
    likelihood = None

    #: results each level needs for a fit with the default options (a level
    #: with fewer than its trend needs raises :class:`TooFewLevelPoints`)
    min_level_points = 1

    @property
    def batch_shape(self) -> torch.Size:
        """``[]``; ``fantasy_batch x batch`` for a fantasy model."""
        if self._fantasy is None:
            return torch.Size([])
        return self._fantasy[2].shape[:-1]

    # ------------------------------------------------------------- data
    def _scale_x(self, x: Tensor) -> Tensor:
        return (x - self.x_lo) / self.x_span

    def _levels(self, fantasy: bool = True) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per level: scaled inputs ``n_t x d``, standardized targets ``n_t``
        and known noise variances ``n_t`` (standardized; the floor where noise
        is not known). A fantasy model (unless ``fantasy=False``) appends its
        ``q`` added rows to every level: ``B x (n_t + q) x d``,
        ``F x B x (n_t + q)``, ``B x (n_t + q)``; :meth:`_level_masks` says
        which rows belong."""
        ds = self.train_dataset
        xs = self._scale_x(ds.X)
        fid = ds.fidelity.long()
        # each level in its own units (level_mean, level_std), rounded to TARGET_BITS
        # significant bits: y and a y + b (any units) give the same numbers, so the
        # same fit (not one that round-off moved along a flat optimum)
        s = self.level_std[fid]
        ys = round_significand((ds.Y[:, 0] - self.level_mean[fid]) / s)
        if self.noise in ("known", "known+infer"):
            vs = round_significand(ds.Yvar[:, 0] / s**2)
        else:
            vs = torch.zeros_like(ys)
        vs = vs.clamp_min(NOISE_FLOOR)
        base = [(xs[fid == t], ys[fid == t], vs[fid == t]) for t in range(self.num_fidelities)]
        if self._fantasy is None or not fantasy:
            return base
        fx, _, fy, fv = self._fantasy
        B = fx.shape[:-2]
        return [
            (
                torch.cat([x.expand(*B, *x.shape), fx], -2),
                torch.cat([y.expand(*fy.shape[:-1], y.shape[-1]), fy], -1),
                torch.cat([v.expand(*B, v.shape[-1]), fv], -1),
            )
            for x, y, v in base
        ]

    def _level_masks(self) -> list[Tensor | None]:
        """Per level, the ``B x (n_t + q)`` row mask of a fantasy model (1: the
        row is at this level), or None for every level of a base model."""
        if self._fantasy is None:
            return [None] * self.num_fidelities
        _, flev, _, _ = self._fantasy
        counts = torch.bincount(self.train_dataset.fidelity.long(), minlength=self.num_fidelities)
        B = flev.shape[:-1]
        return [
            torch.cat([torch.ones(*B, int(counts[t]), dtype=DTYPE), (flev == t).to(DTYPE)], -1)
            for t in range(self.num_fidelities)
        ]

    def _train_all(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """All rows: scaled inputs ``n x d``, levels ``n``, targets ``n``, known
        noise ``n`` and row mask (None; ``B x n`` for a fantasy model, whose
        other tensors then carry the batch dimensions of :meth:`_levels`)."""
        lv = self._levels()
        x = torch.cat([a for a, _, _ in lv], -2)
        y = torch.cat([b for _, b, _ in lv], -1)
        v = torch.cat([c for _, _, c in lv], -1)
        lev = torch.cat([torch.full((a.shape[-2],), t, dtype=torch.long) for t, (a, _, _) in enumerate(lv)])
        masks = self._level_masks()
        w = None if masks[0] is None else torch.cat(masks, -1)
        return x, lev, y, v, w

    def _pointwise(self, fn: Callable[[Tensor], tuple[Tensor, ...]], x: Tensor) -> tuple[Tensor, ...]:
        """Evaluate ``fn`` (inputs ``... x 1 x d`` -> tensors ``... x 1``) at
        each row of ``x`` (``... x n x d``, batch dimensions aligned on the
        right with the model's) on its own; returns tensors ``... x n``
        broadcastable with ``batch_shape x n``."""
        n, d = x.shape[-2:]
        B = x.shape[:-2]
        pad = len(self.batch_shape) - len(B)
        xb = x.movedim(-2, 0).reshape(n, *([1] * pad), *B, 1, d)
        return tuple(o.squeeze(-1).movedim(0, -1) for o in fn(xb))

    def split_inputs(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Check ``X`` (``... x q x (d + 1)``, last column the level) and split it
        into scaled inputs ``... x q x d`` and integer levels ``... x q``."""
        if not torch.is_tensor(X):
            X = torch.as_tensor(X, dtype=DTYPE)
        if X.dim() < 2 or X.shape[-1] != self.d + 1:
            raise ValueError(
                f"inputs must be ... x q x {self.d + 1} ({self.d} features then the fidelity level), "
                f"got shape {tuple(X.shape)}"
            )
        X = X.to(DTYPE)
        if not torch.isfinite(X.detach()).all():
            raise ValueError("inputs must be finite, got NaN or inf")
        col = X[..., -1].detach()
        lev = col.round()
        bad = ((col - lev).abs() > 1e-6) | (lev < 0) | (lev > self.num_fidelities - 1)
        if bad.any():
            v = col[bad].flatten()[0].item()
            raise ValueError(f"fidelity column must hold an integer level in [0, {self.num_fidelities - 1}], got {v}")
        return self._scale_x(X[..., :-1]), lev.long()

    # ------------------------------------------------------- subclasses
    def _build(self) -> None:
        raise NotImplementedError

    def _fit(self) -> None:
        raise NotImplementedError

    def _condition(self) -> None:
        raise NotImplementedError

    def _latent(self, x: Tensor, level: Tensor) -> tuple[Tensor, Tensor | DeferredJoint]:
        """Means ``batch x q`` and covariance ``batch x q x q`` (or a :class:`DeferredJoint`)
        of the latent values at ``x`` on ``level`` (standardized units of each point's level)."""
        raise NotImplementedError

    def _nugget(self) -> Tensor:
        """``L`` inferred noise variances (each level's standardized units; zeros if not inferred)."""
        raise NotImplementedError

    def _level_ratio(self, t: int) -> Tensor:
        """``level_std[t] / level_std[t - 1]``: a scale factor between levels ``t - 1``
        and ``t`` in their standardized units times this ratio is the factor in output units."""
        return self.level_std[t] / self.level_std[t - 1]

    def noise_variance(self) -> Tensor:
        """Observation-noise variance per level (``L``, output units): the
        inferred nugget plus the mean known variance of the level's data."""
        mean_known = torch.stack([v.mean() for _, _, v in self._levels(fantasy=False)])
        if self.noise not in ("known", "known+infer"):
            mean_known = torch.zeros_like(mean_known)
        return (self._nugget() + mean_known) * self.level_std**2

    # --------------------------------------------------------- posterior
    def posterior(
        self,
        X: Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | Tensor = False,
        posterior_transform=None,
        **kwargs: Any,
    ) -> GPyTorchPosterior:
        """Posterior at ``X`` (``batch_shape x q x (d + 1)``, last column the level).

        Returns a :class:`GPyTorchPosterior` with ``batch_shape x q x 1`` mean
        and variance, joint over the ``q`` points (output units).
        ``observation_noise=True`` adds :meth:`noise_variance` of each point's
        level; a tensor (``batch_shape x q x 1``) adds that variance.
        """
        if output_indices is not None and list(output_indices) != [0]:
            raise ValueError(f"the model has one output; output_indices must be [0], got {output_indices}")
        self.eval()
        self._ensure_conditioned()
        x, level = self.split_inputs(X)
        if level.numel() == 0:  # no points: empty moments (the models' algebra needs some)
            shape = (*torch.broadcast_shapes(self.batch_shape, level.shape[:-1]), level.shape[-1])
            mean, cov = x.new_zeros(shape), x.new_zeros(*shape, level.shape[-1])
        else:
            mean, cov = self._latent(x, level)
        s, mu = self.level_std[level], self.level_mean[level]  # each point's level's units
        deferred = isinstance(cov, DeferredJoint)
        noise = None
        if observation_noise is not False:
            if torch.is_tensor(observation_noise):
                obs = observation_noise.to(mean)
                if not bool(torch.isfinite(obs.detach()).all()) or bool((obs.detach() < 0).any()):
                    raise ValueError("observation_noise must hold finite variances >= 0 (output units), got "
                                     f"values from {float(obs.detach().min())} to {float(obs.detach().max())}")
                try:  # BoTorch's shapes: batch x q x 1, or anything that broadcasts to it
                    obs = torch.broadcast_to(obs, (*mean.shape, 1))[..., 0]
                except RuntimeError:
                    raise ValueError(
                        f"observation_noise must broadcast to batch x q x 1 = {(*mean.shape, 1)}, got shape "
                        f"{tuple(observation_noise.shape)}"
                    ) from None
                noise = obs / s**2
            else:
                noise = (self.noise_variance() / self.level_std**2)[level]
        diag = cov.diag if deferred else cov.diagonal(dim1=-2, dim2=-1)
        if noise is not None:
            diag = diag + noise
        # jitter relative to the variance keeps rsample's Cholesky alive for
        # nearly duplicated points
        jitter = 1e-9 * diag.mean(-1, keepdim=True).clamp_min(1e-12)

        def full(c: Tensor) -> Tensor:
            if noise is not None:
                c = c + torch.diag_embed(noise)
            c = 0.5 * (c + c.transpose(-1, -2)) + torch.diag_embed(jitter.expand_as(mean))
            return c * s.unsqueeze(-1) * s.unsqueeze(-2)

        if deferred:  # the diagonal of full()
            op = DeferredCovariance((diag + jitter) * s * s, lambda: full(cov.full()))
        else:
            op = DenseLinearOperator(full(cov))
        mvn = UnitMultivariateNormal(mean * s + mu, op)
        mvn.scale2 = s.detach() ** 2
        post = GPyTorchPosterior(mvn)
        return posterior_transform(post) if posterior_transform is not None else post

    def condition_on_observations(self, X: Tensor, Y: Tensor, noise: Tensor | None = None, **kwargs: Any):
        """A copy of the model conditioned on new observations, hyperparameters fixed.

        Args:
            X: ``batch x q x (d + 1)`` inputs, last column the level.
            Y: ``fantasy_batch x batch x q x 1`` (or ``batch x q x 1``) values,
                output units.
            noise: observation-noise variances of the new rows, output units,
                broadcastable to ``batch x q x 1``: each row's whole noise,
                the level's inferred nugget included, as
                ``posterior(..., observation_noise=noise)`` adds it, and at
                least the level's nugget plus
                :data:`~surrogates.multifidelity.core.NOISE_FLOOR` of its
                variance, as any training row. Default: each row's level's
                :meth:`noise_variance` with that floor, as a training row of
                the level has it (``posterior(..., observation_noise=True)``
                adds :meth:`noise_variance` without the floor, which differs
                only for a noise-free level: by 1e-9 of its variance).

        Returns:
            A model of ``batch_shape`` ``fantasy_batch x batch`` whose posterior is
            that of the same model refactorised on the data plus ``(X, Y)``
            with the same hyperparameters and scaling (differentiable in ``X``
            and ``Y``). Conditioning a fantasy model again adds to its rows.
            For AR1, one joint GP, this is exact Gaussian conditioning of its
            posterior. Recursive co-kriging and NARGP plug in the level below's
            posterior mean and do not update a lower level from upper-level
            rows, so their fantasies are not the Gaussian conditioning of their
            own joint posterior (which the knowledge gradient assumes): prefer
            AR1 for qMFKG.
        """
        x, lev = self.split_inputs(X)
        Y = torch.as_tensor(Y, dtype=DTYPE)
        if Y.dim() < 2 or Y.shape[-1] != 1 or Y.shape[-2] != x.shape[-2]:
            raise ValueError(
                f"Y must be ... x {x.shape[-2]} x 1 (one value per input row), got shape {tuple(Y.shape)}"
            )
        if not torch.isfinite(Y.detach()).all():
            raise ValueError("Y must be finite, got NaN or inf")
        try:
            torch.broadcast_shapes(Y.shape[:-2], x.shape[:-2])
        except RuntimeError:
            raise ValueError(
                f"Y's batch shape {tuple(Y.shape[:-2])} does not broadcast with X's {tuple(x.shape[:-2])} "
                f"(Y: fantasy_batch x batch x q x 1, X: batch x q x (d + 1))"
            ) from None
        y = (Y[..., 0] - self.level_mean[lev]) / self.level_std[lev]
        nugget = self._nugget().to(DTYPE)
        if noise is None:
            known = self.noise_variance() / self.level_std**2 - nugget
            v = known[lev].clamp_min(NOISE_FLOOR)  # as a training row of the level
        else:
            noise = torch.as_tensor(noise, dtype=DTYPE)
            if (noise.detach() < 0).any() or not torch.isfinite(noise.detach()).all():
                raise ValueError("noise must hold finite variances >= 0 (output units)")
            want = (*lev.shape, 1)
            try:
                fits = torch.broadcast_shapes(noise.shape, want) == torch.Size(want)
            except RuntimeError:
                fits = False
            if not fits:
                raise ValueError(
                    f"noise must be broadcastable to batch x q x 1 = {want}, got shape {tuple(noise.shape)}"
                )
            if noise.dim() == 0:
                noise = noise.reshape(1)
            # every row's noise is its known part plus its level's nugget: a given noise below
            # the nugget is a negative known part (the total is what was asked, at least the floor)
            v = torch.maximum(noise[..., 0] / self.level_std[lev] ** 2 - nugget[lev], NOISE_FLOOR - nugget[lev])
        B = torch.broadcast_shapes(lev.shape, v.shape)
        x, lev, v = x.expand(*B, x.shape[-1]), lev.expand(B), v.expand(B)
        if self._fantasy is not None:
            ox, olev, oy, ov = self._fantasy
            Bb = torch.broadcast_shapes(ox.shape[:-2], B[:-1])
            x = torch.cat([ox.expand(*Bb, *ox.shape[-2:]), x.expand(*Bb, *x.shape[-2:])], -2)
            lev = torch.cat([olev.expand(*Bb, olev.shape[-1]), lev.expand(*Bb, lev.shape[-1])], -1)
            v = torch.cat([ov.expand(*Bb, ov.shape[-1]), v.expand(*Bb, v.shape[-1])], -1)
            Fb = torch.broadcast_shapes(oy.shape[:-1], y.shape[:-1])
            y = torch.cat([oy.expand(*Fb, oy.shape[-1]), y.expand(*Fb, y.shape[-1])], -1)
        else:
            y = y.expand(*torch.broadcast_shapes(y.shape[:-1], B[:-1]), y.shape[-1])
        new = copy.copy(self)
        new.__dict__ = dict(self.__dict__)
        # its own parameter tensors: load_state_dict, .to() or .float() on the fantasy
        # model must leave this one alone
        new._buffers = {k: None if b is None else b.clone() for k, b in self._buffers.items()}
        new._parameters, new._modules = dict(self._parameters), dict(self._modules)
        for cached in ("_krig", "_lv", "_f", "_x", "_lev"):
            new.__dict__.pop(cached, None)
        new._fantasy = (x, lev, y, v)
        new._conditioned = False
        return new

    def predict(self, X: Tensor, fidelity: int | None = None) -> tuple[Tensor, Tensor]:
        """Marginal latent mean and variance (``n``, ``n``; output units) at
        inputs ``X`` (``n x d``) at one ``fidelity`` (default: the highest).
        A fantasy model (``batch_shape`` not empty) gives ``batch_shape x n``."""
        X = torch.as_tensor(X, dtype=DTYPE)
        if X.dim() != 2 or X.shape[-1] != self.d:
            raise ValueError(f"predict takes n x d inputs with d = {self.d}, got shape {tuple(X.shape)}")
        try:
            f = self.num_fidelities - 1 if fidelity is None else operator.index(fidelity)
        except TypeError:
            f = None
        if f is None or isinstance(fidelity, bool) or not 0 <= f < self.num_fidelities:
            raise ValueError(f"fidelity must be an integer level in [0, {self.num_fidelities - 1}], got {fidelity!r}")
        Xf = torch.cat([X, torch.full_like(X[..., :1], float(f))], dim=-1)
        nb = len(self.batch_shape)  # a fantasy model's batch: each point against all of it
        out_m, out_v = [], []
        with torch.no_grad():
            for chunk in Xf.split(256):
                # one-point batches: marginals only
                post = self.posterior(chunk.reshape(chunk.shape[0], *([1] * nb), 1, chunk.shape[-1]))
                out_m.append(post.mean.reshape(chunk.shape[0], *self.batch_shape).movedim(0, -1))
                out_v.append(post.variance.reshape(chunk.shape[0], *self.batch_shape).movedim(0, -1))
        return torch.cat(out_m, -1), torch.cat(out_v, -1)

    # -------------------------------------------------------------- cost
    def cost_model(self, costs: Sequence[float] | None = None) -> Model:
        """BoTorch cost model over ``... x q x (d + 1)`` inputs: the cost of each
        point's level (``costs`` default to the model's ``costs``).

        Costs affine in the level give an :class:`AffineFidelityCostModel`;
        other costs a :class:`GenericDeterministicModel` looking the level up.
        """
        L = self.num_fidelities
        costs = check_costs(self.costs if costs is None else costs, L)
        c = torch.tensor(costs, dtype=DTYPE)
        steps = c[1:] - c[:-1]
        if torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-12, atol=0):
            return AffineFidelityCostModel(fidelity_weights={self.d: float(steps[0])}, fixed_cost=float(c[0]))

        def f(X: Tensor) -> Tensor:
            lev = X[..., -1].round().long().clamp(0, L - 1)
            return c.to(X)[lev].unsqueeze(-1)

        return GenericDeterministicModel(f, num_outputs=1)


def assemble_levels(means: list[Tensor], covs: list[Tensor], gains: list[Tensor], level: Tensor):
    """Joint mean and covariance of points at mixed levels from per-level moments.

    For the autoregressive structure ``f_t = rho_t f_{t-1} + delta_t`` with
    independent ``delta_t``: ``Cov(f_s(a), f_t(b)) = prod_{j=s+1}^{t} rho_j(x_b)
    Cov(f_s(a), f_s(b))`` for ``s <= t``.

    Args:
        means: per level ``0..T``, mean ``... x q`` at all points.
        covs: per level, covariance ``... x q x q``.
        gains: per level ``t >= 1`` (index ``t - 1``), ``rho_t`` at the points ``... x q``.
        level: ``... x q`` level of each point.

    Returns:
        Mean ``... x q`` and covariance ``... x q x q``.
    """
    T = len(means) - 1
    if bool((level == level.reshape(-1)[0]).all()):
        t = int(level.reshape(-1)[0])
        return means[t], covs[t]

    def block(s: int, t: int) -> Tensor:
        g = torch.ones_like(means[0])
        for j in range(s + 1, t + 1):
            g = g * gains[j - 1]
        return covs[s] * g.unsqueeze(-2)  # column b scaled by prod rho(x_b)

    return mix_levels(means, block, level.clamp_max(T))


def mix_levels(means: list[Tensor], block, level: Tensor) -> tuple[Tensor, Tensor]:
    """Joint mean and covariance of points at mixed levels.

    Args:
        means: per level ``0..T``, mean ``... x q`` at all points.
        block: ``block(s, t)`` for ``s <= t``: ``Cov(f_s(a), f_t(b))``, ``... x q x q``.
        level: ``... x q`` level of each point (``<= T``).

    Returns:
        Mean ``... x q`` (point ``a`` takes its level's mean) and covariance
        ``... x q x q`` (entry ``a, b`` the block of their levels; symmetric).
    """
    T = len(means) - 1
    mean = torch.zeros_like(means[0])
    cov: Tensor | float = 0.0
    for s in range(T + 1):
        ms = (level == s).to(mean)
        mean = mean + ms * means[s]
        for t in range(s, T + 1):
            mt = (level == t).to(mean)
            part = ms.unsqueeze(-1) * block(s, t) * mt.unsqueeze(-2)
            cov = cov + part
            if t > s:
                cov = cov + part.transpose(-1, -2)
    return mean, cov
