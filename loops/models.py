"""Model updater: a small factory of surrogates by name.

``fit_model(name, X, Y, bounds, ...)`` returns a fitted BoTorch ``Model``.
Names:

* ``singletask_gp`` (default): BoTorch ``SingleTaskGP`` with ``Normalize`` on
  the bounds and ``UnitStandardize`` on the outputs, fitted by marginal likelihood.
* ``mf_gp``: BoTorch ``SingleTaskMultiFidelityGP`` over a trailing fidelity column.
* ``gp``: the project's GP from :mod:`surrogates.gp` when it imports.
* ``ar1``, ``recursive``, ``nargp``: the co-kriging models of
  :mod:`surrogates.multifidelity` when they import.
* ``"module:Class"``: any class with ``from_dataset(dataset, **options)``.

Project surrogates receive a :class:`surrogates.dataset.Dataset` (fidelity
kept apart from ``X``) and are expected to be BoTorch Models over inputs with a
trailing fidelity column when they are multi-fidelity.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from typing import Any

import gpytorch
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP, SingleTaskMultiFidelityGP
from botorch.models.model import Model
from botorch.models.transforms import Normalize
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from loops.config import BUILTIN_MODELS
from surrogates.base import UnitStandardize, variance_in_output_units
from surrogates.dataset import Dataset, floor_yvar

#: name -> import paths of project surrogates, tried in order
PROJECT_MODELS: dict[str, tuple[str, ...]] = {
    "gp": ("surrogates.gp:GPSurrogate", "surrogates.gp:ExactGPSurrogate", "surrogates.gp:GP"),
    "ar1": ("surrogates.multifidelity:AR1CoKriging",),
    "recursive": ("surrogates.multifidelity:RecursiveCoKriging",),
    "nargp": ("surrogates.multifidelity:NARGP",),
}
BUILTIN = BUILTIN_MODELS
#: exact Cholesky up to this many points (GPyTorch's default of 800 switches to CG, slower here)
MAX_CHOLESKY = 5000
#: floor of the observation noise of the BoTorch models, as a fraction of the output
#: variance: twice GPyTorch's smallest fixed noise in float64 (1e-6 of the standardized
#: outputs), so a noise-free oracle's data (Yvar = 0) are interpolated without its clamp
NOISE_FLOOR_REL = 2e-6
#: L-BFGS iterations of a warm-started refit
WARM_MAXITER = 30
_HYPER = ("likelihood.", "covar_module.", "mean_module.")


def model_class(name: str) -> type:
    paths = PROJECT_MODELS.get(name, (name,) if ":" in name else ())
    if not paths:
        raise ValueError(
            f"model.name = {name!r}; allowed: {sorted(BUILTIN + tuple(PROJECT_MODELS))} or 'module:Class'"
        )
    errors = []
    for path in paths:
        mod, _, attr = path.partition(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            errors.append(f"{path}: {e}")
    raise ImportError(f"model {name!r} is not available ({'; '.join(errors)})")


#: arguments of the BoTorch models that :func:`fit_model` sets itself
_SET_BY_FIT = {"self", "train_X", "train_Y", "train_Yvar", "input_transform", "outcome_transform", "data_fidelities"}


def _accepted_options(cls: Any) -> set[str] | None:
    """Option names that ``cls.from_dataset(dataset, **options)`` takes: a class's
    ``_defaults`` table where it has one (the project's GPs), else the keywords of
    ``from_dataset`` and, while a ``**options`` passes them on, of the constructors
    along the class's MRO; None where the last of these still takes ``**kwargs``."""
    defaults = getattr(cls, "_defaults", None)
    if isinstance(defaults, dict) and defaults:
        return set(defaults)
    fit = getattr(cls, "from_dataset", None)
    if fit is None:
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    inits = [c.__init__ for c in getattr(cls, "__mro__", ()) if c is not object and "__init__" in vars(c)]
    out: set[str] = set()
    for fn in (fit, *inits):
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            return None
        out |= {p.name for p in params if p.kind in named} - {"self", "cls", "dataset"}
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
            return out
    return None


def check_model_spec(name: str, options: dict[str, Any], d: int, num_fidelities: int) -> None:
    """Refuse, before any oracle call, a model ``name`` that does not exist or
    cannot be imported, a multi-fidelity model for a one-level oracle, and
    ``options`` that the model does not take: the BoTorch models by their
    constructors' arguments, the co-kriging models by building one (no fit) on
    placeholder data with ``d`` inputs and ``num_fidelities`` levels, whose
    constructor checks every option's name and value, and other surrogates by
    the option names they take (:func:`_accepted_options`)."""
    opts = {k: v for k, v in options.items() if k != "maxiter"}
    if name in BUILTIN:
        if name == "mf_gp" and num_fidelities < 2:
            raise ValueError("model.name = 'mf_gp' needs a multi-fidelity oracle; use 'singletask_gp'")
        cls = SingleTaskGP if name == "singletask_gp" else SingleTaskMultiFidelityGP
        allowed = set(inspect.signature(cls.__init__).parameters) - _SET_BY_FIT
        unknown = sorted(set(opts) - allowed)
        if unknown:
            raise ValueError(f"model.options {unknown} are not arguments of {cls.__name__}; allowed: {sorted(allowed)}")
        return
    try:
        cls = model_class(name)
    except ImportError as e:
        raise ValueError(str(e)) from None
    from surrogates.multifidelity import MultiFidelityModel

    if not (isinstance(cls, type) and issubclass(cls, MultiFidelityModel)):
        allowed = _accepted_options(cls)
        unknown = [] if allowed is None else sorted(set(opts) - allowed)
        if unknown:
            raise ValueError(f"model.options {unknown} are not options of {name!r} "
                             f"({getattr(cls, '__name__', cls)}); allowed: {sorted(allowed)}")
        return
    if num_fidelities < 2:
        raise ValueError(f"model.name = {name!r} is a multi-fidelity model and the oracle has one fidelity; "
                         f"use 'singletask_gp' or 'gp'")
    L, k = num_fidelities, 4
    g = torch.Generator().manual_seed(0)
    yvar = None if opts.get("noise") == "none" else torch.full((k * L, 1), 1e-6, dtype=torch.float64)
    ds = Dataset(X=torch.rand(k * L, d, generator=g, dtype=torch.float64),
                 Y=torch.rand(k * L, 1, generator=g, dtype=torch.float64), Yvar=yvar,
                 fidelity=torch.arange(L).repeat_interleave(k))
    # the built-in co-kriging models take exactly their constructors' keywords (a plugin
    # subclass may route **kwargs elsewhere: building it below checks its options)
    if cls.__module__.startswith("surrogates.multifidelity"):
        allowed = (_accepted_options(cls) or set()) - {"num_fidelities"}
        unknown = sorted(set(opts) - allowed)
        if unknown:
            raise ValueError(f"model.options {unknown} are not options of {name!r} ({cls.__name__}); "
                             f"allowed: {sorted(allowed)}")
    try:
        cls(ds, **{"num_fidelities": L, **opts})
    except TypeError as e:
        raise ValueError(f"model.options of {name!r}: {e}") from None
    except ValueError as e:
        raise ValueError(f"model.options of {name!r}: {e}") from None


def _fit(model: Model, warm: dict[str, Tensor] | None, refit: bool, maxiter: int) -> Model:
    if warm is not None:
        own = model.state_dict()
        hyper = {k: v for k, v in warm.items() if k.startswith(_HYPER) and k in own and own[k].shape == v.shape}
        model.load_state_dict(hyper, strict=False)
    if refit or warm is None:
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        # from warm hyperparameters a few L-BFGS steps suffice (the data changed by a point or two)
        iters = maxiter if warm is None else min(maxiter, WARM_MAXITER)
        with warnings.catch_warnings(), gpytorch.settings.max_cholesky_size(MAX_CHOLESKY):
            warnings.simplefilter("ignore")
            try:
                fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": iters}})
            except Exception:  # noqa: BLE001  (keep the warm-started hyperparameters)
                if warm is None:
                    raise
    model.eval()
    return model


def fit_model(
    name: str,
    X: Tensor,
    Y: Tensor,
    bounds: Tensor,
    *,
    Yvar: Tensor | None = None,
    fidelity_dim: int | None = None,
    options: dict[str, Any] | None = None,
    warm: dict[str, Tensor] | None = None,
    refit: bool = True,
    names: tuple[tuple[str, ...], tuple[str, ...]] | None = None,
) -> Model:
    """Build and fit a surrogate.

    Args:
        name: factory name (see module docstring).
        X: ``n x d`` inputs; with fidelities the last column is the level.
        Y: ``n x m`` outputs (finite).
        bounds: ``2 x d`` bounds of ``X`` (fidelity column included).
        Yvar: ``n x m`` observation variances or None; zeros mean noise-free data
            (the BoTorch models then hold the noise at ``NOISE_FLOOR_REL`` of the
            output variance, the project's models interpolate). The co-kriging
            models get ``noise="known"`` with a ``Yvar`` (fixed per-point noise)
            and ``"infer"`` without, unless ``options`` say otherwise.
        fidelity_dim: index of the fidelity column, or None.
        options: model options from the config.
        warm: a previous model's ``state_dict`` to start hyperparameters from.
        refit: when False and ``warm`` is given, reuse its hyperparameters as they are.

    Returns:
        A fitted BoTorch ``Model`` in eval mode.
    """
    options = dict(options or {})
    maxiter = int(options.pop("maxiter", 200))
    d, m = X.shape[-1], Y.shape[-1]
    if name in BUILTIN and Yvar is not None:
        Yvar = floor_yvar(Yvar, Y, NOISE_FLOOR_REL)
    if name == "singletask_gp":
        model = SingleTaskGP(
            X, Y, train_Yvar=Yvar, input_transform=Normalize(d, bounds=bounds),
            outcome_transform=UnitStandardize(m), **options,
        )
        return _fit(model, warm, refit, maxiter)
    if name == "mf_gp":
        if fidelity_dim is None:
            raise ValueError("model.name = 'mf_gp' needs a multi-fidelity oracle")
        model = SingleTaskMultiFidelityGP(
            X, Y, train_Yvar=Yvar, data_fidelities=[fidelity_dim],
            input_transform=Normalize(d, bounds=bounds),
            outcome_transform=UnitStandardize(m), **options,
        )
        return _fit(model, warm, refit, maxiter)
    cls = model_class(name)
    if fidelity_dim is not None:
        ds = Dataset(X=X[:, :fidelity_dim], Y=Y, Yvar=Yvar, fidelity=X[:, fidelity_dim].round().long())
    else:
        ds = Dataset(X=X, Y=Y, Yvar=Yvar)
    if names is not None:
        ds.input_names, ds.output_names = names
    opts = dict(options)
    if fidelity_dim is not None and "noise" not in opts:
        from surrogates.multifidelity import MultiFidelityModel

        if isinstance(cls, type) and issubclass(cls, MultiFidelityModel):
            # the oracle's word, said explicitly: its Yvar (zeros from a
            # deterministic oracle) is known noise; without Yvar, noise is inferred
            opts["noise"] = "known" if Yvar is not None else "infer"
    try:
        model = cls.from_dataset(ds, bounds=bounds[:, : ds.d], **opts)
    except TypeError:
        model = cls.from_dataset(ds, **opts)
    model.eval()
    return model


def winsorize_objective(Y: Tensor, idx: int, sign: float, groups: Tensor | None = None) -> Tensor:
    """Clip the bad tail of objective column ``idx`` at the Tukey fence.

    With ``Z = sign * Y[:, idx]`` (higher is better), values below
    ``q1 - 1.5 (q3 - q1)`` are raised to that fence (``q1``, ``q3``: lower and
    upper quartiles). A GP fitted to the clipped data spends its flexibility
    near the good values instead of on a far-away bad region (Branin spans
    0.4 to 300); the best observed values are unchanged. This is Ax's automatic
    winsorization of a single objective. With ``groups`` (the fidelity level of
    each row), each level is clipped at its own fence: levels of one
    multi-fidelity oracle differ in scale and offset, and one fence over all of
    them would clip one level's values where another's are untouched,
    distorting the relation between levels that co-kriging estimates.

    Args:
        Y: ``n x m`` outputs.
        idx: objective column.
        sign: ``+1`` to maximize, ``-1`` to minimize.
        groups: ``n`` integer group labels (fidelity levels), or None for one group.
            A group with fewer than 4 rows is left unclipped.

    Returns:
        A clipped copy of ``Y`` (``n x m``).
    """
    if groups is not None:
        if groups.shape != Y.shape[:1]:
            raise ValueError(f"groups must have one label per row of Y ({Y.shape[0]}), got shape {tuple(groups.shape)}")
        out = Y.clone()
        for g in torch.unique(groups):
            rows = groups == g
            out[rows] = winsorize_objective(Y[rows], idx, sign)
        return out
    if Y.shape[0] < 4:
        return Y
    z = sign * Y[:, idx]
    q1 = torch.quantile(z, 0.25, interpolation="lower")
    q3 = torch.quantile(z, 0.75, interpolation="higher")
    Y = Y.clone()
    Y[:, idx] = sign * z.clamp_min(q1 - 1.5 * (q3 - q1))
    return Y


def fit_from_dataset(name: str, dataset: Dataset, bounds: Tensor, options: dict[str, Any] | None = None) -> Model:
    """Fit factory model ``name`` on a :class:`Dataset` (single fidelity)."""
    return fit_model(
        name, dataset.X, dataset.Y, bounds, Yvar=dataset.Yvar, options=options,
        names=(dataset.input_names or (), dataset.output_names or ()),
    )


#: rows of one posterior call in :func:`predict`
PREDICT_CHUNK = 1024


def predict(model: Model, X: Tensor) -> tuple[Tensor, Tensor]:
    """Posterior mean and variance ``n x m`` (latent, original units) at ``n x d`` inputs.

    Marginals, in chunks of :data:`PREDICT_CHUNK` rows. A GPyTorch model with
    independent outputs (BoTorch's ``BatchedMultiOutputGPyTorchModel``: ``SingleTaskGP``,
    :class:`~surrogates.gp.GPSurrogate`) takes each chunk as one joint posterior
    (``chunk x d``), whose variances GPyTorch computes without the covariance:
    one-point batches there broadcast a multi-output GP's ``m x N x N`` cache once per
    point (22 s and 3.9 GB for 8192 points on 400 training points and 3 outputs,
    against 1 s and 130 MB). Other models take each point as its own batch
    (``n x 1 x d``), so no ``n x n`` covariance is formed (a co-kriging model's
    posterior is dense over its points: NARGP, one covariance per sampled path, had
    needed 2.5 GB for 1024 points; a multi-task GP's over points and tasks)."""
    from botorch.models.gpytorch import BatchedMultiOutputGPyTorchModel

    if X.dim() != 2:
        raise ValueError(f"predict takes n x d inputs, got shape {tuple(X.shape)}")
    pointwise = not isinstance(model, BatchedMultiOutputGPyTorchModel)
    means, variances = [], []
    with torch.no_grad(), variance_in_output_units():
        for chunk in X.split(PREDICT_CHUNK) if len(X) else [X]:
            post = model.posterior(chunk.unsqueeze(-2) if pointwise else chunk)
            mean, var = post.mean.detach(), post.variance.detach()
            if pointwise:
                mean, var = mean.squeeze(-2), var.squeeze(-2)
            means.append(mean)
            variances.append(var.clamp_min(0.0))
    return torch.cat(means), torch.cat(variances)


def noise_variance(model: Model, m: int) -> Tensor:
    """``m`` observation noise variances in original units (zeros when unknown)."""
    try:
        noise = model.likelihood.noise.detach()
        # one shared level, one per output, or fixed noise per point (its mean per output)
        noise = noise.reshape(1).expand(m) if noise.numel() == 1 else noise.reshape(m, -1).mean(-1)
        ot = getattr(model, "outcome_transform", None)
        if ot is not None and hasattr(ot, "stdvs"):
            noise = noise * ot.stdvs.reshape(-1)[:m] ** 2
        return noise.reshape(m).to(torch.float64)
    except Exception:  # noqa: BLE001
        return torch.zeros(m, dtype=torch.float64)
