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

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

_STRICT = ConfigDict(extra="forbid")


class OracleSpec(BaseModel):
    """Registry name of the oracle; every other key is a constructor kwarg."""

    model_config = ConfigDict(extra="allow")
    name: str

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from loops.registry import ORACLES

        if v not in ORACLES and ":" not in v:
            raise ValueError(
                f"unknown oracle {v!r}; allowed: {sorted(ORACLES)} or 'module:Class'"
            )
        return v

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def spec(self) -> dict[str, Any]:
        """Plain ``{"name": ..., **kwargs}`` (what workers rebuild the oracle from)."""
        return {"name": self.name, **self.kwargs}


class Budget(BaseModel):
    """When to stop spending: oracle calls, total cost, wall time (any that is set)."""

    model_config = _STRICT
    calls: int | None = Field(None, gt=0)
    cost: float | None = Field(None, gt=0)
    wall_time: float | None = Field(None, gt=0, description="seconds")

    @model_validator(mode="after")
    def _one_set(self) -> Budget:
        if self.calls is None and self.cost is None and self.wall_time is None:
            raise ValueError("budget needs at least one of calls, cost, wall_time")
        return self


class InitialDesign(BaseModel):
    """Initial design of ``n`` points: the centre of the bounds and scrambled Sobol points (per fidelity in
    ``fidelities``)."""

    model_config = _STRICT
    n: int = Field(5, ge=1)
    fidelities: list[int] | None = None
    center: bool = Field(
        True,
        description="the first initial point is the centre of the bounds, then n - 1 Sobol points (as Ax's "
        "default); false: n Sobol points. Default since it measured better at 4 of the 6 regret budgets of "
        "experiments/benchmarks/campaigns.py over 20 seeds (Hartmann6 at 50 calls: median 0.031 vs 0.18)",
    )


class Acquisition(BaseModel):
    """Acquisition function and its optimizer settings."""

    model_config = _STRICT
    name: Literal["qLogNEI", "qLogNEHVI", "qNIPV", "max_variance", "qMFKG", "qMFMES", "sobol"] = "qLogNEI"
    q: int = Field(1, ge=1)
    num_restarts: int = Field(8, ge=1)
    raw_samples: int = Field(256, ge=1)
    mc_points: int = Field(256, ge=8, description="integration points of qNIPV")
    num_fantasies: int = Field(16, ge=1, description="fantasies of qMFKG")
    maxiter: int = Field(100, ge=1)


class Constraint(BaseModel):
    """Outcome constraint ``lower <= output <= upper``."""

    model_config = _STRICT
    output: str
    lower: float | None = None
    upper: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> Constraint:
        if self.lower is None and self.upper is None:
            raise ValueError(f"constraint on {self.output!r} needs lower or upper")
        return self


class Objective(BaseModel):
    """Which outputs to optimize and in which sense."""

    model_config = _STRICT
    outputs: list[str] | None = Field(None, description="default: the first output")
    minimize: bool | list[bool] = True
    constraints: list[Constraint] = []
    ref_point: list[float] | None = Field(None, description="qLogNEHVI reference (in minimize/maximize sense of each output)")


class ModelSpec(BaseModel):
    """Surrogate factory name and options (see :mod:`loops.models`)."""

    model_config = _STRICT
    name: str = "singletask_gp"
    options: dict[str, Any] = {}
    refit_every: int = Field(1, ge=1, description="refit hyperparameters every k updates")
    refit_all_below: int = Field(200, ge=0, description="refit at every update while there are fewer observations")
    refit_growth: float = Field(0.1, ge=0, description="above that, refit when the data grew by this fraction (else reuse hyperparameters)")
    noise_free: bool | None = Field(
        None, description="fit the model as interpolating noise-free data (a noise floor of "
        "2e-6 of the output variance) instead of inferring a noise level; None: when the oracle is "
        "deterministic (Oracle.noisy is False)"
    )
    winsorize: bool = Field(
        True, description="optimize mode, one objective: clip the objective's bad tail at the Tukey fence "
        "(q1 - 1.5 IQR of the good-is-high values) before fitting, as Ax does"
    )


class Executor(BaseModel):
    """Where oracle calls run."""

    model_config = _STRICT
    kind: Literal["process", "thread", "serial", "dask"] = "process"
    workers: int = Field(2, ge=1)
    address: str | None = Field(None, description="dask scheduler address")
    cluster: str | None = Field(None, description="dask-jobqueue class, e.g. 'SLURMCluster'")
    cluster_options: dict[str, Any] = {}
    local_processes: bool = Field(True, description="dask LocalCluster with processes")
    synchronous: bool = Field(False, description="wait for a whole batch (reproducible) instead of async")
    prefetch: int | Literal["auto"] = Field(
        "auto", description="async: points queued beyond the workers, so a worker that finishes starts at once "
        "while the driver proposes its next point; 'auto': as many as workers (workers that finish together "
        "all find a point waiting)"
    )
    timeout: float | None = Field(None, gt=0, description="seconds per oracle call")
    retries: int = Field(0, ge=0, description="re-attempts of a failed point")

    @field_validator("prefetch")
    @classmethod
    def _prefetch(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError("expected an integer >= 0 or 'auto'")
        return v


class Learn(BaseModel):
    """Learn mode: held-out validation set and target error."""

    model_config = _STRICT
    n_validation: int = Field(64, ge=2)
    target_nrmse: float | None = Field(None, gt=0, description="stop when RMSE/std(Y_val) falls below")


class Fidelity(BaseModel):
    """Multi-fidelity settings."""

    model_config = _STRICT
    target: int | None = Field(None, description="fidelity to optimize at (default: the highest)")


class Tracking(BaseModel):
    """MLflow tracking."""

    model_config = _STRICT
    enabled: bool = True
    tracking_uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    experiment: str = "scalebridge"
    registered_model_name: str | None = None
    final_surrogate: str | None = Field(None, description="model factory name of the logged surrogate (default: campaign model)")
    final_surrogate_options: dict[str, Any] = {}


class CampaignConfig(BaseModel):
    """A whole campaign."""

    model_config = _STRICT
    name: str = "campaign"
    mode: Literal["optimize", "learn"] = "optimize"
    seed: int = 0
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

    @model_validator(mode="after")
    def _consistent(self) -> CampaignConfig:
        acq = self.acquisition.name
        if self.mode == "learn" and acq in ("qLogNEI", "qLogNEHVI", "qMFKG", "qMFMES"):
            raise ValueError(
                f"acquisition.name = {acq!r} is an optimize-mode acquisition; learn mode allows "
                "'qNIPV', 'max_variance', 'sobol'"
            )
        if self.mode == "optimize" and acq in ("qNIPV", "max_variance"):
            raise ValueError(
                f"acquisition.name = {acq!r} is a learn-mode acquisition; optimize mode allows "
                "'qLogNEI', 'qLogNEHVI', 'qMFKG', 'qMFMES', 'sobol'"
            )
        return self


def format_validation_error(err: ValidationError, source: str = "config") -> list[str]:
    """One line per error: ``source: key = value: what is allowed``."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parent = ".".join(str(p) for p in e["loc"][:-1])
            allowed = _allowed_keys(parent)
            lines.append(f"{source}: unknown key {key!r}; allowed keys{' in ' + parent if parent else ''}: {allowed}")
            continue
        if e["type"] == "missing":
            lines.append(f"{source}: missing required key {key!r}")
            continue
        lines.append(f"{source}: {key} = {e.get('input')!r}: {msg}")
    return lines


def _allowed_keys(path: str) -> list[str]:
    model: Any = CampaignConfig
    for part in [p for p in path.split(".") if p]:
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        for cand in getattr(ann, "__args__", (ann,)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
                break
        else:
            return []
    return sorted(model.model_fields)


class ConfigError(ValueError):
    """A config that does not validate; ``lines`` holds one message per error."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


def parse_config(data: dict[str, Any], source: str = "config") -> CampaignConfig:
    """Validate a dict; raise :class:`ConfigError` with one line per problem."""
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
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None


def load_config(path: str | Path) -> CampaignConfig:
    """Read and validate a TOML config file."""
    return parse_config(read_toml(path), str(path))
