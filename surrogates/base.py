"""The surrogate contract.

Every surrogate is a BoTorch :class:`~botorch.models.model.Model` (so BoTorch's
acquisitions work on it: ``posterior(X)``, ``num_outputs``; those that fantasize
need ``condition_on_observations``, which :class:`~surrogates.gp.ICMGPSurrogate`
refuses) and adds:

* ``fit(dataset) -> self`` as a classmethod-like builder :meth:`from_dataset`;
* persistence: :meth:`get_config` (JSON-serializable) plus the torch
  ``state_dict``; :func:`save_surrogate` / :func:`load_surrogate` write and read
  a directory (``config.json``, ``state.pt`` loaded with ``weights_only=True``,
  ``dataset.json``) through a registry of classes by name. No pickle.

Constitutive surrogates (stress from deformation) also implement
:class:`MaterialModel`, the interface FE² material points use.
"""

from __future__ import annotations

import contextlib
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gpytorch
import torch
from botorch.models.transforms.outcome import Standardize
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from torch import Tensor

from oracles.material import MaterialModel, MaterialResponse  # noqa: F401  (re-exported)
from surrogates.dataset import Dataset, output_scales

_REGISTRY: dict[str, type] = {}

#: ``min_stdv`` of BoTorch's ``Standardize`` in this project's models. BoTorch's
#: default (1e-8, absolute) leaves outputs whose spread is below it unscaled, so
#: a GP of outputs in small units (a permeability in m², a compliance in 1/Pa)
#: is fitted on raw values against a noise bound meant for standardized ones;
#: this floor only keeps constant outputs (spread 0) from a division by zero.
STANDARDIZE_MIN_STDV = 1e-300


@contextlib.contextmanager
def variance_in_output_units() -> Iterator[None]:
    """Read posterior variances without GPyTorch's absolute floor.

    ``MultivariateNormal.variance`` rounds variances below ``min_variance``
    (1e-10 in float64, 1e-6 in float32, in output units) up to it, which
    replaces every variance of outputs in small units. Inside this context the
    floor is the dtype's smallest positive normal number, so only round-off
    below zero is rounded up.
    """
    with gpytorch.settings.min_variance(
        float_value=torch.finfo(torch.float32).tiny, double_value=torch.finfo(torch.float64).tiny,
        half_value=torch.finfo(torch.float16).tiny,
    ):
        yield


class _OutputScaledVariance:
    """Mixin of a GPyTorch normal in output units: ``variance`` is floored at
    GPyTorch's ``min_variance`` times ``scale2`` (each output's squared scale,
    broadcast against the variance), not at the absolute ``1e-10`` (float64),
    which would replace every variance of outputs in small units (m², 1/Pa)."""

    scale2: Tensor | float = 1.0

    @property
    def variance(self) -> Tensor:
        floor = gpytorch.settings.min_variance.value(self.loc.dtype)
        with variance_in_output_units():
            v = super().variance
        return torch.maximum(v, floor * torch.as_tensor(self.scale2, dtype=v.dtype, device=v.device))


class UnitMultivariateNormal(_OutputScaledVariance, MultivariateNormal):
    """A :class:`~gpytorch.distributions.MultivariateNormal` with the variance floor
    of :class:`_OutputScaledVariance` (``scale2``: a number). Distributions derived
    from it (indexing, ``expand``) fall back to GPyTorch's floor."""


class UnitMultitaskMultivariateNormal(_OutputScaledVariance, MultitaskMultivariateNormal):
    """A :class:`~gpytorch.distributions.MultitaskMultivariateNormal` with the variance
    floor of :class:`_OutputScaledVariance` (``scale2``: ``m`` squared output scales)."""


def with_output_scale(posterior, scale: Tensor):
    """``posterior`` (a :class:`~botorch.posteriors.gpytorch.GPyTorchPosterior` in
    output units) whose variances are floored relative to the outputs' ``scale``
    (``m``) instead of absolutely; other posteriors are returned as they are."""
    if type(posterior) is not GPyTorchPosterior:
        return posterior
    d = posterior.distribution
    scale2 = scale.reshape(-1).pow(2)
    if isinstance(d, MultitaskMultivariateNormal):
        out = UnitMultitaskMultivariateNormal(d.mean, d.lazy_covariance_matrix, interleaved=d._interleaved)
    elif type(d) is MultivariateNormal:
        out = UnitMultivariateNormal(d.mean, d.lazy_covariance_matrix)
        scale2 = scale2.max() if scale2.numel() > 1 else scale2.reshape(())
    else:
        return posterior
    out.scale2 = scale2
    return GPyTorchPosterior(out)


class UnitStandardize(Standardize):
    """BoTorch's :class:`~botorch.models.transforms.outcome.Standardize` with the
    scales of :func:`~surrogates.dataset.output_scales`: an output that is constant
    (to round-off), zero throughout, or observed once is scaled by a magnitude in
    its own units, not by 1, so fits and variances are equivariant under ``y -> a y``;
    posteriors floor their variances relative to those scales (:func:`with_output_scale`)."""

    def __init__(self, m: int, **kwargs: Any):
        # BoTorch's subset_output passes min_stdv back
        kwargs.setdefault("min_stdv", STANDARDIZE_MIN_STDV)
        super().__init__(m=m, **kwargs)

    def forward(self, Y: Tensor, Yvar: Tensor | None = None, X: Tensor | None = None):
        if not self.training:
            return super().forward(Y, Yvar, X)
        if self._outputs is not None:
            raise NotImplementedError("UnitStandardize does not select outputs")
        super().forward(Y, Yvar, X)  # validates the data and sets the means
        n = Y.shape[-2]
        sd = Y.std(dim=-2, keepdim=True) if n > 1 else torch.zeros_like(self.means)
        self.stdvs = output_scales(self.means, sd, n)
        self._stdvs_sq = self.stdvs.pow(2)
        return (Y - self.means) / self.stdvs, None if Yvar is None else Yvar / self._stdvs_sq

    def untransform_posterior(self, posterior, X: Tensor | None = None):
        return with_output_scale(super().untransform_posterior(posterior, X), self.stdvs)


def conditions_on_observations(model: Any) -> bool:
    """Whether ``model`` can be conditioned on new observations without a refit: it has
    ``condition_on_observations`` and does not say ``supports_conditioning = False``
    (as :class:`~surrogates.gp.ICMGPSurrogate` does, whose method refuses)."""
    return callable(getattr(model, "condition_on_observations", None)) and getattr(model, "supports_conditioning", True)


def check_flag(name: str, value: Any) -> bool:
    """``value`` if it is a bool, else a ``ValueError`` naming the option."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) ``>= minimum``, else a ``ValueError``."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        ok, value = True, int(value)
    if not ok or (minimum is not None and value < minimum):
        more = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an integer{more}, got {value!r}")
    return int(value)


def register_surrogate(cls: type) -> type:
    """Class decorator: make ``cls`` loadable by :func:`load_surrogate`."""
    _REGISTRY[cls.__name__] = cls
    return cls


def surrogate_class(name: str) -> type:
    if name not in _REGISTRY:
        # import the packages that register classes, then retry
        import importlib

        for mod in ("surrogates.gp", "surrogates.multifidelity", "surrogates.neural"):
            try:
                importlib.import_module(mod)
            except ImportError:
                pass
    if name not in _REGISTRY:
        raise ValueError(f"unknown surrogate class {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


class SurrogateMixin:
    """Mixed into a BoTorch Model to give the scalebridge surrogate contract.

    A subclass implements :meth:`from_dataset` (build and fit) and
    :meth:`get_config` / :meth:`from_config` (rebuild the same architecture,
    unfitted-but-shaped, from config and training data so a ``state_dict`` can
    be loaded into it).
    """

    #: the training data (set by from_dataset)
    train_dataset: Dataset | None = None

    @classmethod
    def from_dataset(cls, dataset: Dataset, **options: Any):
        """Build and fit on ``dataset``; returns the fitted model."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """JSON-serializable constructor options (not the weights)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any], dataset: Dataset):
        """Rebuild the (unfitted) architecture for ``load_state_dict``."""
        raise NotImplementedError


#: version of the on-disk layout written by :func:`save_surrogate`
FORMAT_VERSION = 1


def save_surrogate(model, path: str | Path) -> Path:
    """Write ``model`` to directory ``path``.

    Layout: ``config.json`` (class name, format version, the model's
    :meth:`~SurrogateMixin.get_config`), ``state.pt`` (the torch ``state_dict``:
    tensors only, so it loads with ``weights_only=True``; the fitted
    hyperparameters and transforms live here) and ``dataset.json`` (the
    training data, needed to rebuild an exact GP). Returns ``path``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "class": type(model).__name__,
        "format_version": FORMAT_VERSION,
        "config": model.get_config(),
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    # clone so that views into larger tensors do not drag their storage along
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, path / "state.pt")
    ds = getattr(model, "train_dataset", None)
    if ds is not None:
        (path / "dataset.json").write_text(json.dumps(ds.to_dict()))
    return path


def _read_json(file: Path):
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err}): the save is corrupt or was edited") from None


def load_surrogate(path: str | Path):
    """Read a model written by :func:`save_surrogate`."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no surrogate at {path} (config.json missing)")
    config = _read_json(path / "config.json")
    version = config.get("format_version", 1) if isinstance(config, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or not isinstance(config.get("config"), dict):
        raise ValueError(f"{path / 'config.json'} is not a saved surrogate's config (format_version {version!r})")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written with surrogate format {version}; this scalebridge reads <= {FORMAT_VERSION}"
        )
    cls = surrogate_class(config["class"])
    ds_file = path / "dataset.json"
    try:
        dataset = Dataset.from_dict(_read_json(ds_file)) if ds_file.exists() else None
    except (KeyError, TypeError, AttributeError, IndexError, RuntimeError) as err:
        raise ValueError(f"{ds_file} is not a saved dataset ({type(err).__name__}: {err}): the save is corrupt "
                         "or was edited") from None
    try:
        model = cls.from_config(config["config"], dataset)
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"{path / 'config.json'} does not rebuild a {config['class']} ({type(err).__name__}: "
                         f"{err}): the save is corrupt or was edited") from None
    # weights_only: the file holds tensors only; refuse anything else
    try:
        state = torch.load(path / "state.pt", weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise FileNotFoundError(f"no state.pt in {path}: the save is incomplete") from None
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        raise ValueError(f"{path / 'state.pt'} cannot be read (truncated or not written by torch.save): {err}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path / 'state.pt'} holds a {type(state).__name__}, not a state dict: the save is corrupt")
    # NaN anywhere, or inf other than a constraint's open bound, is a corrupt save
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and (
        bool(v.isnan().any()) or (not k.endswith("_bound") and bool(v.isinf().any())))]
    if bad:
        raise ValueError(f"{path / 'state.pt'} holds NaN or inf in {bad}: the save is corrupt; refit the model")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(
            f"state.pt in {path} does not fit the {config['class']} rebuilt from config.json: {err}"
        ) from err
    model.eval()
    return model
