"""Campaign configuration: TOML validated with pydantic.

A config is a TOML file whose tables map onto :class:`CampaignConfig`. Every
table forbids unknown keys, so a typo is caught before a single oracle call::

    name = "branin-bo"
    mode = "optimize"
    seed = 0
    oracle = {name = "branin"}
    [budget]
    calls = 30
    [initial]
    n = 5
    [acquisition]
    name = "qLogNEI"
    q = 1

:func:`load_config` reads a file; :func:`format_validation_error` turns a
pydantic ``ValidationError`` into one line per error naming the key, the value
and what is allowed.
"""

from __future__ import annotations

import numbers
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from loops.oracle_settings import SFloat as _SFloat
from loops.oracle_settings import SInt
from oracles.exceptions import InvalidInput

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

_STRICT = ConfigDict(extra="forbid")
# numbers of a config are what they say: no "31" -> 31, true -> 1 or 4.0 -> 4 (SInt, SFloat)

#: a finite number (int or float; no bool, no string, no inf or nan)
SFloat = Annotated[_SFloat, Field(allow_inf_nan=False)]
#: true or false only (no "yes", "off", 0 or 1)
SBool = StrictBool


class OracleSpec(BaseModel):
    """The oracle of a campaign: a registry name and its settings, or an instance.

    From TOML, ``name`` is a registry name (or ``"module:Class"`` of an Oracle
    subclass) and every other key is a setting, checked by that oracle's
    schema (:mod:`loops.oracle_settings`). From Python, ``oracle`` may also be
    an :class:`~oracles.base.Oracle` instance (kept in :attr:`instance`; its
    ``name`` is its class path) or a settings object of
    :mod:`loops.oracle_settings` (e.g. ``RVESettings(...)``).
    """

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)
    instance: Any = Field(None, exclude=True, description="an Oracle object given from Python (dumped as its repr)")
    name: str

    @field_validator("name")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        from loops.registry import ORACLES, oracle_class, unknown_oracle_message

        if info.data.get("instance") is not None:
            return v
        if v not in ORACLES and ":" not in v:
            raise ValueError(unknown_oracle_message(v).replace(f"oracle {v!r}", "oracle", 1))
        if ":" in v:
            try:
                oracle_class(v)  # imports the module; refuses anything but an Oracle subclass
            except InvalidInput as e:
                raise ValueError(str(e).replace(f"oracle {v!r} ", "", 1)) from None
        return v

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        d = handler(self)
        if self.instance is not None:
            d["instance"] = repr(self.instance)
        return d

    @model_validator(mode="before")
    @classmethod
    def _from_object(cls, v: Any) -> Any:
        from oracles.base import Oracle

        if isinstance(v, Oracle):
            return {"name": f"{type(v).__module__}:{type(v).__qualname__}", "instance": v}
        if isinstance(v, OracleSpec):
            return v
        if isinstance(v, BaseModel):
            from loops.oracle_settings import registry_name, settings_kwargs

            name = registry_name(v)
            if name is None:
                raise ValueError(f"oracle settings object {type(v).__name__} is not an oracle's schema")
            return {"name": name, **settings_kwargs(v)}
        if not isinstance(v, dict):
            raise ValueError(
                "oracle must be a table like {name = \"branin\", ...} or an Oracle instance, "
                f"got {type(v).__name__} {v!r}"
            )
        if isinstance(v.get("instance"), str) or v.get("instance") is True:
            raise ValueError(
                f"this campaign's oracle was a Python object ({v.get('name')}); pass the object again "
                "(Campaign(config, oracle=...) or oracle=<Oracle instance> in the config)"
            )
        return v

    @model_validator(mode="after")
    def _settings(self) -> OracleSpec:
        from loops.registry import check_kwargs

        if self.instance is not None:
            from oracles.base import Oracle

            if not isinstance(self.instance, Oracle):
                raise ValueError(f"oracle.instance must be an Oracle, got {type(self.instance).__name__}")
            if self.kwargs:
                raise ValueError(f"an oracle instance takes no settings, got {sorted(self.kwargs)}")
            return self
        try:
            check_kwargs(self.name, self.kwargs)
        except InvalidInput as e:
            raise ValueError(str(e)) from None
        return self

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def spec(self) -> dict[str, Any] | Any:
        """Plain ``{"name": ..., **kwargs}`` (what workers rebuild the oracle from),
        or the Oracle instance when one was given."""
        if self.instance is not None:
            return self.instance
        return {"name": self.name, **self.kwargs}


class Budget(BaseModel):
    """When to stop spending: oracle calls, total cost, wall time (any that is set)."""

    model_config = _STRICT
    calls: SInt | None = Field(None, gt=0)
    cost: SFloat | None = Field(None, gt=0)
    wall_time: SFloat | None = Field(None, gt=0, description="seconds")

    @model_validator(mode="after")
    def _one_set(self) -> Budget:
        if self.calls is None and self.cost is None and self.wall_time is None:
            raise ValueError("budget needs at least one of calls, cost, wall_time")
        return self


#: largest initial design: an exact GP on more points than this does not fit in memory
MAX_INITIAL = 100_000


class InitialDesign(BaseModel):
    """Initial design of ``n`` points: the centre of the bounds and scrambled Sobol points (per fidelity in
    ``fidelities``)."""

    model_config = _STRICT
    n: SInt = Field(5, ge=1, le=MAX_INITIAL, description=f"points (at most {MAX_INITIAL})")
    fidelities: list[SInt] | None = Field(
        None,
        description="levels the n points are evaluated at, each level the same points (default: every level "
        "below the target fidelity for an acquisition that chooses levels by cost, qMFKG, qMFMES, qMFLogEI and "
        "max_variance, else the target fidelity); [] for no initial design (results told before the first "
        "ask); a level named twice replicates the design, for a noisy oracle only",
    )
    center: SBool = Field(
        True,
        description="the first initial point is the centre of the bounds, then n - 1 Sobol points (as Ax's "
        "default); false: n Sobol points",
    )


#: acquisitions that choose both the design and the fidelity level (multi-fidelity oracles only)
#: the campaign models that are BoTorch models (not saved as project surrogates)
BUILTIN_MODELS = ("singletask_gp", "mf_gp")
MULTI_FIDELITY_ACQUISITIONS = ("qMFKG", "qMFMES", "qMFLogEI")
#: acquisitions of each mode (``sobol`` serves both)
OPTIMIZE_ACQUISITIONS = ("qLogNEI", "qLogNEHVI", *MULTI_FIDELITY_ACQUISITIONS)
LEARN_ACQUISITIONS = ("qNIPV", "max_variance")
#: acquisitions that choose the level of each point on a multi-fidelity oracle by its cost
#: (``max_variance``: target-level variance removed per unit cost)
LEVEL_CHOOSING_ACQUISITIONS = (*MULTI_FIDELITY_ACQUISITIONS, "max_variance")


class Acquisition(BaseModel):
    """Acquisition function and its optimizer settings (``name``: ``qLogNEI`` by default,
    ``qNIPV`` in learn mode)."""

    model_config = _STRICT
    name: Literal["qLogNEI", "qLogNEHVI", "qNIPV", "max_variance", "qMFKG", "qMFMES", "qMFLogEI", "sobol"] = "qLogNEI"
    q: SInt = Field(1, ge=1, description="points per acquisition when executor.synchronous is true; an "
                                          "asynchronous campaign proposes one point per free worker")
    num_restarts: SInt = Field(8, ge=1)
    raw_samples: SInt = Field(256, ge=1)
    mc_points: SInt = Field(256, ge=8, description="integration points of qNIPV")
    num_fantasies: SInt = Field(16, ge=1, description="fantasies of qMFKG")
    maxiter: SInt = Field(100, ge=1)


class Constraint(BaseModel):
    """Outcome constraint ``lower <= output <= upper``."""

    model_config = _STRICT
    output: str
    lower: SFloat | None = None
    upper: SFloat | None = None

    @model_validator(mode="after")
    def _bound(self) -> Constraint:
        if self.lower is None and self.upper is None:
            raise ValueError(f"constraint on {self.output!r} needs lower or upper")
        if self.lower is not None and self.upper is not None and not self.lower < self.upper:
            raise ValueError(f"constraint on {self.output!r} needs lower < upper, got lower = {self.lower:g}, "
                             f"upper = {self.upper:g}")
        return self


def named_once(v: list[str] | None, key: str, default: str, what: str) -> list[str] | None:
    """``v`` unchanged when None or a non-empty list of distinct names, else a ValueError: an empty
    list (which would silently mean ``default``, what leaving ``key`` out means) or a name given
    more than once."""
    if v is not None and not v:
        raise ValueError(f"name at least one output (or leave {key} out for {default})")
    if v is not None and len(set(v)) != len(v):
        twice = sorted({o for o in v if v.count(o) > 1})
        raise ValueError(f"names {twice} more than once; name each {what} once")
    return v


class Objective(BaseModel):
    """Which outputs to optimize and in which sense."""

    model_config = _STRICT
    outputs: list[str] | None = Field(None, description="default: the first output")
    minimize: bool | list[bool] = True
    constraints: list[Constraint] = []
    ref_point: list[SFloat] | None = Field(
        None, description="qLogNEHVI reference point in each objective output's own units: the worst acceptable value "
                          "of each (an upper bound for a minimized output, a lower bound for a maximized one), as Ax's "
                          "objective thresholds; default: inferred from the data")

    @field_validator("outputs")
    @classmethod
    def _distinct_outputs(cls, v: list[str] | None) -> list[str] | None:
        # an output named twice is one objective (optimized in two senses, or counted twice in the
        # hypervolume), and [] would silently mean the default (the first output)
        return named_once(v, "objective.outputs", "the first output", "objective output")

    @field_validator("minimize", mode="before")
    @classmethod
    def _strict_minimize(cls, v: Any) -> Any:
        ok = isinstance(v, bool) or (isinstance(v, list) and all(isinstance(b, bool) for b in v))
        if not ok:
            raise ValueError("expected true, false or a list of them (one per objective output)")
        return v


class ModelSpec(BaseModel):
    """Surrogate factory name and options (see :mod:`loops.models`)."""

    model_config = _STRICT
    name: str = "singletask_gp"
    options: dict[str, Any] = {}
    refit_every: SInt = Field(1, ge=1, description="refit hyperparameters every k updates")
    refit_all_below: SInt = Field(200, ge=0, description="refit at every update while there are fewer observations")
    refit_growth: SFloat = Field(0.1, ge=0, description="above that, refit when the data grew by this fraction (else reuse hyperparameters)")
    noise_free: SBool | None = Field(
        None, description="fit the model as interpolating noise-free data (a noise floor of "
        "2e-6 of the output variance) instead of inferring a noise level; None: when the oracle is "
        "deterministic (Oracle.noisy is False)"
    )
    bootstrap: Literal["mf_gp", "none"] = Field(
        "mf_gp", description="multi-fidelity co-kriging models (ar1, recursive, nargp), which need results at "
        "every level: the model fitted instead while a level has fewer than min(3, initial.n) results (3 for "
        "recursive and nargp), so an "
        "initial design may leave out the expensive level; 'none': no model until every level has them"
    )
    winsorize: SBool | None = Field(
        None, description="optimize mode, one objective: clip the objective's bad tail at the Tukey fence "
        "(q1 - 1.5 IQR of the good-is-high values) before fitting, as Ax does; with a multi-fidelity oracle "
        "each level at its own fence. None: on for a single-fidelity oracle, off for a multi-fidelity one "
        "(clipping one level's bad tail bends the relation between levels that co-kriging estimates)"
    )


class Executor(BaseModel):
    """Where oracle calls run."""

    model_config = _STRICT
    kind: Literal["process", "thread", "serial", "dask"] = "process"
    workers: SInt = Field(2, ge=1)
    address: str | None = Field(None, description="dask scheduler address")
    cluster: str | None = Field(None, description="dask-jobqueue class, e.g. 'SLURMCluster'")
    cluster_options: dict[str, Any] = {}
    local_processes: SBool = Field(True, description="dask LocalCluster with processes")
    synchronous: SBool = Field(False, description="wait for a whole batch (reproducible) instead of async")
    prefetch: SInt | Literal["auto"] = Field(
        "auto", description="async: points queued beyond the workers, so a worker that finishes starts at once "
        "while the driver proposes its next point; 'auto': as many as workers (workers that finish together "
        "all find a point waiting)"
    )
    timeout: SFloat | None = Field(None, gt=0, description="seconds per oracle call")
    retries: SInt = Field(0, ge=0, description="re-attempts of a failed point (dask: after distributed's own "
                          "re-runs of a task whose worker died, distributed.scheduler.allowed-failures)")

    @model_validator(mode="after")
    def _thread_timeout(self) -> Executor:
        if self.kind == "thread" and self.timeout is not None:
            warnings.warn(
                f"executor.kind = 'thread' with timeout = {self.timeout:g}: a thread cannot be stopped, so a call "
                "past its timeout is recorded as failed but keeps its worker until it returns (later points wait, "
                "and the run waits for it at exit); kind = 'process' kills such calls",
                UserWarning, stacklevel=2,
            )
        return self

    @field_validator("prefetch", mode="before")
    @classmethod
    def _prefetch_kind(cls, v: Any) -> Any:
        # one message for the union (not one per member, named by pydantic's internal validators)
        if (isinstance(v, str) and v == "auto") or (isinstance(v, numbers.Integral) and not isinstance(v, bool)):
            return v
        raise ValueError("expected an integer >= 0 or 'auto'")

    @field_validator("prefetch")
    @classmethod
    def _prefetch(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError("expected an integer >= 0 or 'auto'")
        return v


class Learn(BaseModel):
    """Learn mode: held-out validation set and target error."""

    model_config = _STRICT
    n_validation: SInt = Field(64, ge=2, description="held-out Sobol points evaluated at the target fidelity to "
                                                     "score the model; outside the calls and cost budgets (their "
                                                     "cost is reported as validation_cost)")
    target_nrmse: SFloat | None = Field(None, gt=0, description="stop when RMSE/std(Y_val) falls below")


class Fidelity(BaseModel):
    """Multi-fidelity settings."""

    model_config = _STRICT
    target: SInt | None = Field(None, description="fidelity to optimize at (default: the highest)")
    cost_source: Literal["oracle", "recorded", "wall_time"] = Field(
        "recorded", description="cost per level weighed by the cost-aware acquisitions: 'oracle': the oracle's "
        "cost model; 'recorded': per level, the mean of the costs recorded for finished points (what the oracle "
        "or tell() reported) with the oracle's cost counted as one more record; 'wall_time': per level, the mean "
        "measured wall time of a call (levels not yet measured: the oracle's cost times the mean ratio of "
        "measured to oracle cost of the measured levels)"
    )


class Tracking(BaseModel):
    """MLflow tracking."""

    model_config = _STRICT
    enabled: SBool = True
    tracking_uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    experiment: str = "scalebridge"
    registered_model_name: str | None = None
    final_surrogate: str | None = Field(None, description="model factory name of the logged surrogate (default: campaign model)")
    final_surrogate_options: dict[str, Any] = {}

    @field_validator("registered_model_name")
    @classmethod
    def _model_name(cls, v: str | None) -> str | None:
        # MLflow's rule for registered model names, checked before the campaign spends its budget
        if v is not None and (not v.strip() or "/" in v or ":" in v):
            raise ValueError("a registered model name must be non-empty, without '/' or ':'")
        return v


class CampaignConfig(BaseModel):
    """A whole campaign."""

    model_config = _STRICT
    name: str = "campaign"
    mode: Literal["optimize", "learn"] = "optimize"
    seed: SInt = 0
    run_dir: str = "runs"
    oracle: OracleSpec
    outputs: list[str] | None = Field(None, description="oracle outputs the model learns (default: all)")
    budget: Budget
    initial: InitialDesign = InitialDesign()
    acquisition: Acquisition = Acquisition()
    objective: Objective = Objective()
    model: ModelSpec = ModelSpec()
    executor: Executor = Executor()
    learn: Learn = Learn()
    fidelity: Fidelity = Fidelity()
    tracking: Tracking = Tracking()

    @field_validator("outputs")
    @classmethod
    def _distinct_outputs(cls, v: list[str] | None) -> list[str] | None:
        # [] would silently mean every output, and an output named twice would be modeled twice
        return named_once(v, "outputs", "all of the oracle's outputs", "output")

    @model_validator(mode="before")
    @classmethod
    def _learn_default_acquisition(cls, data: Any) -> Any:
        # the default acquisition follows the mode: learn mode without an acquisition name
        # gets qNIPV (integrated variance), not optimize mode's qLogNEI, which it refuses
        if isinstance(data, dict) and data.get("mode") == "learn":
            acq = data.get("acquisition")
            if acq is None:
                data = {**data, "acquisition": {"name": "qNIPV"}}
            elif isinstance(acq, dict) and "name" not in acq:
                data = {**data, "acquisition": {**acq, "name": "qNIPV"}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> CampaignConfig:
        acq = self.acquisition.name
        if self.mode == "learn" and acq in OPTIMIZE_ACQUISITIONS:
            allowed = ", ".join(repr(a) for a in (*LEARN_ACQUISITIONS, "sobol"))
            raise ValueError(f"acquisition.name = {acq!r} is an optimize-mode acquisition; learn mode allows {allowed}")
        if self.mode == "optimize" and acq in LEARN_ACQUISITIONS:
            allowed = ", ".join(repr(a) for a in (*OPTIMIZE_ACQUISITIONS, "sobol"))
            raise ValueError(f"acquisition.name = {acq!r} is a learn-mode acquisition; optimize mode allows {allowed}")
        if self.mode == "optimize" and self.learn.target_nrmse is not None:
            # the validation error is measured in learn mode only: the stopping rule would never apply
            warnings.warn(f"learn.target_nrmse = {self.learn.target_nrmse:g} stops learn-mode campaigns only and "
                          "this campaign has mode = 'optimize' (no validation set is evaluated): it is ignored",
                          UserWarning, stacklevel=2)
        if self.mode == "learn":
            # learn mode models the outputs everywhere in the bounds: no sense, no feasible region
            o = self.objective
            ignored = []
            if o.outputs is not None:
                ignored.append(f"objective.outputs = {o.outputs} (the model learns the top-level outputs)")
            if o.minimize is not True:
                ignored.append(f"objective.minimize = {o.minimize!r}")
            if o.constraints:
                ignored.append(f"objective.constraints on {[k.output for k in o.constraints]}")
            if ignored:
                warnings.warn(f"mode = 'learn' learns the outputs over the whole bounds and ignores {'; '.join(ignored)}; "
                              "use mode = 'optimize' to optimize or constrain them", UserWarning, stacklevel=2)
        b = self.budget
        levels = self.initial.fidelities
        first = self.initial.n * (len(levels) if levels is not None else 1)
        if b.calls is not None and first >= b.calls and acq != "sobol":
            # the cost budget refuses such a design before any call (check_cost_budget); calls are
            # a limit the initial design simply fills
            what = f"is cut to its first {b.calls}" if first > b.calls else "takes all of them"
            warnings.warn(f"the initial design ({first} points: initial.n = {self.initial.n}"
                          f"{f' at levels {levels}' if levels is not None else ''}) {what} and leaves none of "
                          f"budget.calls = {b.calls} to acquisition {acq!r}; use initial.n < budget.calls",
                          UserWarning, stacklevel=2)
        if b.cost is None and b.wall_time is None and self.fidelity.cost_source != "recorded":
            warnings.warn(f"fidelity.cost_source = {self.fidelity.cost_source!r} has no effect with a budget of calls "
                          "alone: every level's call counts as one; set budget.cost or budget.wall_time to weigh "
                          "the levels by their cost", UserWarning, stacklevel=2)
        t = self.tracking
        if t.registered_model_name and t.final_surrogate is None and self.model.name in BUILTIN_MODELS:
            raise ValueError(
                f"tracking.registered_model_name = {t.registered_model_name!r} registers the final surrogate, but the "
                f"campaign model {self.model.name!r} is a BoTorch model that is not saved as a surrogate; set "
                "tracking.final_surrogate (e.g. 'gp', the project's GP refitted on all data)"
            )
        return self


def format_validation_error(err: ValidationError, source: str = "config") -> list[str]:
    """One line per error: ``source: key = value: what is allowed``."""
    from loops.oracle_settings import OracleSettingsError

    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top>"
        msg = e["msg"].removeprefix("Value error, ")
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, OracleSettingsError):
            lines.extend(f"{source}: {line}" for line in cause.lines)
            continue
        if e["type"] == "extra_forbidden":
            parent = ".".join(str(p) for p in e["loc"][:-1])
            allowed = _allowed_keys(parent)
            lines.append(f"{source}: unknown key {key!r}; allowed keys{' in ' + parent if parent else ''}: {allowed}")
            continue
        if e["type"] == "missing":
            lines.append(f"{source}: missing required key {key!r}")
            continue
        if isinstance(e.get("input"), (dict, list)) or tuple(e["loc"]) == ("oracle",):
            lines.append(f"{source}: {key}: {msg}")
            continue
        lines.append(f"{source}: {key} = {e.get('input')!r}: {msg}")
    return lines


def _allowed_keys(path: str) -> list[str]:
    model: Any = CampaignConfig
    for part in [p for p in path.split(".") if p]:
        if part.isdigit():  # an item of a list of tables (objective.constraints.0)
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _table_model(field.annotation)
        if model is None:
            return []
    return sorted(model.model_fields)


def _table_model(ann: Any) -> Any:
    """The pydantic model inside an annotation (``M``, ``M | None``, ``list[M]``), or None."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for cand in getattr(ann, "__args__", ()):
        found = _table_model(cand)
        if found is not None:
            return found
    return None


class ConfigError(ValueError):
    """A config that does not validate; ``lines`` holds one message per error."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


#: top-level keys that only an FE² config has (``scalebridge fe2``)
FE2_ONLY_KEYS = ("mesh", "dirichlet", "traction", "load", "material", "uncertainty")


def other_command_hint(data: Any, keys: tuple[str, ...], source: str, command: str, kind: str) -> None:
    """Raise one :class:`ConfigError` line when the top level of ``data`` has ``keys`` of
    another command's config (an FE² config given to ``run``, or a campaign's to ``fe2``)."""
    found = [k for k in keys if isinstance(data, dict) and k in data]
    if found:
        raise ConfigError([f"{source}: keys {found} belong to {kind} config; run it with `scalebridge {command}`"])


def parse_config(data: dict[str, Any], source: str = "config") -> CampaignConfig:
    """Validate a dict; raise :class:`ConfigError` with one line per problem (one line
    naming ``scalebridge fe2`` for an FE² config)."""
    other_command_hint(data, FE2_ONLY_KEYS, source, "fe2", "an FE²")
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """The dict of a TOML file; :class:`ConfigError` when missing or not TOML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: no such config file"])
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                           "TOML files are UTF-8"]) from None


def load_config(path: str | Path) -> CampaignConfig:
    """Read and validate a TOML config file."""
    return parse_config(read_toml(path), str(path))
