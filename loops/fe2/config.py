"""FE² run configuration: TOML validated with pydantic (unknown keys are errors).

Example (see ``experiments/configs/fe2_plate_hole.toml``)::

    name = "plate-hole"
    [mesh]
    kind = "plate_with_hole"
    n_theta = 6
    n_radial = 5
    [[dirichlet]]
    boundary = "left"
    component = 0
    [[dirichlet]]
    boundary = "right"
    component = 0
    value = 0.1
    [load]
    n_steps = 5
    [material]
    provider = "adaptive"        # analytic | oracle | surrogate | adaptive
    [material.rve]
    phases = [{law = "neo_hookean", E = 1.0, nu = 0.35}, {law = "neo_hookean", E = 10.0, nu = 0.25}]
    microstructure = {kind = "random_fibres", volume_fraction = 0.3, radius_fraction = 0.12}
    grid = [15, 15]
    [material.surrogate]
    train_points = 48            # or uri = "models:/rve_gp/1" or a directory
    [material.adaptive]
    target_rel_error = 0.005     # or tolerance = 1e-6
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from loops.config import ConfigError, SBool, SFloat, SInt, read_toml  # noqa: F401  (ConfigError re-exported)
from loops.oracle_settings import (
    LAW_KINDS,
    MicrostructureSettings,
    RandomFibresSettings,
    build_microstructure,
    num_phases,
)
from loops.oracle_settings import SFloat as _SFloat
from loops.oracle_settings import format_errors as _settings_errors

_STRICT = ConfigDict(extra="forbid")


#: most elements of a generated mesh (a rectangle's nx, ny <= 500; a box's divisions)
MAX_ELEMENTS = 500 * 500


class MeshConfig(BaseModel):
    model_config = _STRICT
    kind: Literal["plate_with_hole", "rectangle", "box", "file"] = "plate_with_hole"
    #: 2D: quad1, quad2, tri1, tri2; 3D (box or a 3D file): hex1, hex2, tet1, tet2
    #: (default quad1; a mesh file: the element of its cells, quadratic for second-order cells)
    element: Literal["quad1", "quad2", "tri1", "tri2", "hex1", "hex2", "tet1", "tet2"] = "quad1"
    intorder: SInt | None = Field(None, ge=1, le=10)
    # plate with a hole
    length: SFloat = Field(1.0, gt=0)
    radius: SFloat = Field(0.3, gt=0)
    n_theta: SInt = Field(6, ge=1, le=200)
    n_radial: SInt = Field(5, ge=1, le=200)
    grading: SFloat = Field(2.0, gt=0)
    # rectangle
    width: SFloat = Field(1.0, gt=0)
    height: SFloat = Field(1.0, gt=0)
    nx: SInt = Field(4, ge=1, le=500)
    ny: SInt = Field(4, ge=1, le=500)
    # box [0, Lx] x [0, Ly] x [0, Lz] (3D; faces left/right, bottom/top, back/front)
    lengths: tuple[SFloat, SFloat, SFloat] = (2.0, 1.0, 1.0)
    divisions: tuple[SInt, SInt, SInt] = (2, 1, 1)
    # file (any format meshio reads); a relative path is taken from the config file's folder (load_config)
    path: str | None = None

    @property
    def dim(self) -> int:
        """2 or 3, from the element."""
        return 3 if self.element in ("hex1", "hex2", "tet1", "tet2") else 2

    #: the geometry keys of each kind (element and intorder apply to all)
    KIND_KEYS: ClassVar[dict[str, tuple[str, ...]]] = {
        "plate_with_hole": ("length", "radius", "n_theta", "n_radial", "grading"),
        "rectangle": ("width", "height", "nx", "ny"),
        "box": ("lengths", "divisions"),
        "file": ("path",),
    }

    @model_validator(mode="after")
    def _check(self):
        own = set(self.KIND_KEYS[self.kind])
        # a key of another kind given with a value other than its default (a full dump of a
        # config, which sets every key at its default, passes)
        stray = [k for keys in self.KIND_KEYS.values() for k in keys
                 if k not in own and k in self.model_fields_set and getattr(self, k) != type(self).model_fields[k].default]
        if stray:
            raise ValueError(f"mesh.{', mesh.'.join(stray)} does not apply to mesh.kind = {self.kind!r}; it takes "
                             f"{', '.join(self.KIND_KEYS[self.kind])} (and element, intorder)")
        if self.kind == "plate_with_hole" and not self.radius < self.length:
            raise ValueError(
                f"mesh.radius = {self.radius} must be below mesh.length = {self.length}"
            )
        if self.kind == "file" and not self.path:
            raise ValueError("mesh.kind = 'file' needs mesh.path")
        if self.kind == "file":
            # the file's own cell type (tri1 for triangles, tet2 for a tetra10 mesh, ...), not quad1;
            # a given element must fit the file's cells (the mesh is read once: load_mesh keeps it)
            from loops.fe2.mesh import ELEMENTS, default_element, load_mesh

            try:
                mesh = load_mesh(self.path, boundaries=False)
            except FileNotFoundError as e:
                raise ValueError(str(e)) from None
            own = default_element(mesh)
            if "element" not in self.model_fields_set:
                self.element = own
            elif not isinstance(mesh, ELEMENTS[self.element][0]):
                fits = [e for e, (m, _) in ELEMENTS.items() if isinstance(mesh, m)]
                raise ValueError(f"mesh.element = {self.element!r} does not fit the {mesh.dim()}D {own[:-1]} cells of "
                                 f"mesh file {self.path}; use one of {fits} (or leave mesh.element out)")
        if (self.kind == "box") != (self.dim == 3) and self.kind != "file":
            raise ValueError(
                f"mesh.element = {self.element!r} does not fit mesh.kind = {self.kind!r} "
                "(box: hex1, hex2, tet1, tet2; 2D kinds: quad1, quad2, tri1, tri2)"
            )
        if min(self.lengths) <= 0 or min(self.divisions) < 1:
            raise ValueError(f"mesh.lengths must be positive and mesh.divisions >= 1, got "
                             f"{list(self.lengths)}, {list(self.divisions)}")
        n = self.divisions[0] * self.divisions[1] * self.divisions[2]
        if n > MAX_ELEMENTS:
            raise ValueError(f"mesh.divisions = {list(self.divisions)} makes {n} elements, more than {MAX_ELEMENTS} "
                             f"(the rectangle's 500 x 500)")
        return self


class DirichletConfig(BaseModel):
    model_config = _STRICT
    boundary: str
    component: Literal[0, 1, 2]
    value: SFloat = 0.0


class TractionConfig(BaseModel):
    model_config = _STRICT
    boundary: str
    #: nominal traction, one component per mesh dimension (2 or 3)
    traction: list[SFloat]

    @field_validator("traction")
    @classmethod
    def _components(cls, v: list[float]) -> list[float]:
        if len(v) not in (2, 3):
            raise ValueError(f"expected 2 (2D) or 3 (3D) components, got {len(v)}")
        return v


class LoadConfig(BaseModel):
    model_config = _STRICT
    n_steps: SInt = Field(5, ge=1, le=10000)
    max_iter: SInt = Field(20, ge=1, le=200)
    #: Newton tolerance (free-dof residual norm relative to the force norm, MacroSolver.solve); the
    #: [uncertainty] solves use it when it is set, else ``loops.uq.propagate.UQ_RTOL``
    rtol: SFloat = Field(1e-9, gt=0, lt=1)
    max_cutbacks: SInt = Field(8, ge=0, le=50)
    #: the reaction plotted and tracked (boundary, component)
    reaction_boundary: str = "right"
    reaction_component: Literal[0, 1, 2] = 0


class PhaseConfig(BaseModel):
    """A finite-strain phase law (spelled as in campaign configs, :mod:`loops.oracle_settings`)."""

    model_config = _STRICT
    law: Literal["neo_hookean", "st_venant_kirchhoff"] = "neo_hookean"
    E: SFloat = Field(gt=0)
    nu: SFloat = Field(gt=-1, lt=0.5)

    @field_validator("law", mode="before")
    @classmethod
    def _spelling(cls, v):
        from loops.oracle_settings import _OLD_LAWS, FINITE_STRAIN_LAWS, respell

        return respell(v, _OLD_LAWS, list(FINITE_STRAIN_LAWS), "law")


class RVEConfig(BaseModel):
    """The micro scale: an RVE oracle with finite-strain phases (2D, plane strain)."""

    model_config = _STRICT
    phases: list[PhaseConfig] = Field(min_length=1)
    microstructure: MicrostructureSettings = Field(
        default_factory=lambda: RandomFibresSettings(kind="random_fibres", volume_fraction=0.3, radius_fraction=0.12)
    )
    #: 2 sizes (plane strain, 2D macro) or 3 (3D macro)
    grid: tuple[SInt, SInt] | tuple[SInt, SInt, SInt] = (15, 15)
    newton_tol: SFloat = Field(1e-8, gt=0)
    cg_tol: SFloat = Field(1e-8, gt=0)

    @model_validator(mode="after")
    def _check(self):
        if min(self.grid) < 3:
            raise ValueError(f"material.rve.grid = {list(self.grid)}: each size must be >= 3")
        n = num_phases(self.microstructure)
        if n is not None and len(self.phases) != n:
            raise ValueError(
                f"material.rve.microstructure {self.microstructure.kind!r} has {n} phases but "
                f"{len(self.phases)} phase laws are given"
            )
        from oracles.rve.microstructure import check_grid_memory

        try:
            check_grid_memory(self.grid, finite=True)
        except ValueError as e:
            raise ValueError(f"material.rve.{e}") from None
        return self

    def build(self):
        """The :class:`~oracles.rve.oracle.RVEOracle` of these settings."""
        from oracles.rve import laws
        from oracles.rve.oracle import RVEOracle

        phases = [getattr(laws, LAW_KINDS[p.law])(E=p.E, nu=p.nu) for p in self.phases]
        return RVEOracle(
            phases, build_microstructure(self.microstructure), grid=tuple(self.grid),
            newton_tol=self.newton_tol, cg_tol=self.cg_tol,
        )


class AnalyticConfig(BaseModel):
    model_config = _STRICT
    E: SFloat = Field(10.0, gt=0)
    nu: SFloat = Field(0.3, gt=-1, lt=0.5)


class SurrogateConfig(BaseModel):
    """A deployed surrogate (``uri``: directory or ``models:/name/version``), or one trained here."""

    model_config = _STRICT
    uri: str | None = None
    #: without ``uri``: train a GP learner on this many RVE answers ...
    train_points: SInt = Field(48, ge=4, le=5000)
    #: ... at F = I + H with H on a Sobol design in [-h_max, h_max]^4
    h_max: SFloat = Field(0.05, gt=0, lt=1)
    seed: SInt = 0
    #: refit the learner's hyperparameters every this many updates (0: re-condition only)
    refit_every: SInt = Field(0, ge=0)


class AdaptiveConfig(BaseModel):
    model_config = _STRICT
    #: variance tolerance; give this or ``target_rel_error``
    #: (``inf``: always the surrogate, as :class:`~loops.fe2.switch.AdaptiveSwitch` allows)
    tolerance: _SFloat | None = Field(None, ge=0)
    #: target relative error of the reaction force; the tolerance is derived from it
    target_rel_error: SFloat | None = Field(None, gt=0, lt=1)
    kappa: SFloat = Field(2.0, gt=0)
    learn: SBool = True
    max_learn: SInt = Field(64, ge=1)

    @field_validator("tolerance", mode="before")
    @classmethod
    def _inf_text(cls, v):
        # "inf": how config.json (strict JSON, no Infinity) writes an infinite tolerance
        return math.inf if isinstance(v, str) and v.strip().lower() in ("inf", "+inf", "infinity") else v

    @field_serializer("tolerance")
    def _inf_out(self, v):
        return "inf" if v is not None and math.isinf(v) else v

    @model_validator(mode="after")
    def _one(self):
        if (self.tolerance is None) == (self.target_rel_error is None):
            raise ValueError(
                "give exactly one of material.adaptive.tolerance and material.adaptive.target_rel_error"
            )
        return self


class MaterialConfig(BaseModel):
    model_config = _STRICT
    provider: Literal["analytic", "oracle", "surrogate", "adaptive"] = "analytic"
    analytic: AnalyticConfig = AnalyticConfig()
    rve: RVEConfig | None = None
    surrogate: SurrogateConfig = SurrogateConfig()
    adaptive: AdaptiveConfig | None = None

    @model_validator(mode="after")
    def _check(self):
        p = self.provider
        if p in ("oracle", "adaptive") and self.rve is None:
            raise ValueError(f"material.provider = {p!r} needs a [material.rve] table")
        if p == "surrogate" and self.surrogate.uri is None and self.rve is None:
            raise ValueError(
                "material.provider = 'surrogate' needs material.surrogate.uri or a [material.rve] to train on"
            )
        if p == "adaptive" and self.adaptive is None:
            raise ValueError("material.provider = 'adaptive' needs a [material.adaptive] table")
        return self


class ExecutorConfig(BaseModel):
    model_config = _STRICT
    kind: Literal["process", "thread", "serial", "dask"] = "process"
    workers: SInt = Field(2, ge=1, le=1024)
    chunk_size: SInt | None = Field(None, ge=1)
    address: str | None = None


class TrackingConfig(BaseModel):
    model_config = _STRICT
    enabled: SBool = True
    experiment: str = "fe2"
    tracking_uri: str | None = None


#: quantiles of a normal or lognormal random input at which its [material.rve] must be valid
#: (1e-6 and 1 - 1e-6: no draw of a nested Monte Carlo run goes beyond them in practice)
TAIL = 1e-6


class RandomInputConfig(BaseModel):
    """An aleatory input: a number of ``[material.rve]`` drawn per macro realization."""

    model_config = _STRICT
    #: dotted path into [material.rve], e.g. "phases.1.E" or "microstructure.volume_fraction"
    name: str = Field(min_length=1)
    distribution: Literal["uniform", "normal", "lognormal"] = "uniform"
    #: uniform: [low, high]; normal: mean, std; lognormal: mean and std of the logarithm
    low: SFloat | None = None
    high: SFloat | None = None
    mean: SFloat | None = None
    std: SFloat | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _params(self):
        if self.distribution == "uniform":
            if self.low is None or self.high is None or not self.low < self.high:
                raise ValueError(f"uniform input {self.name!r} needs low < high, got {self.low}, {self.high}")
            unused = [k for k in ("mean", "std") if getattr(self, k) is not None]
        else:
            if self.mean is None or self.std is None:
                raise ValueError(f"{self.distribution} input {self.name!r} needs mean and std")
            unused = [k for k in ("low", "high") if getattr(self, k) is not None]
        if unused:
            raise ValueError(f"{self.distribution} input {self.name!r} does not use {unused}: "
                             f"uniform takes low and high, normal and lognormal mean and std")
        return self


class DisplacementQoIConfig(BaseModel):
    """A displacement component at a reference point as a QoI (``[[uncertainty.displacement]]``)."""

    model_config = _STRICT
    #: the QoI's name in uncertainty.json, the histogram file and the MLflow metrics
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)
    #: reference coordinates (mesh units), inside the mesh
    point: list[SFloat] = Field(min_length=2, max_length=3)
    component: SInt = Field(0, ge=0, le=2)


class UncertaintyConfig(BaseModel):
    """Uncertainty propagation after the deterministic run (:mod:`loops.uq`)."""

    model_config = _STRICT
    #: joint posterior function samples per draw of the random inputs
    n_inner: SInt = Field(100, ge=2, le=100000)
    #: draws of the random inputs (with [[uncertainty.random]])
    n_outer: SInt = Field(20, ge=2, le=100000)
    n_anchors: SInt = Field(64, ge=1, le=5000)
    #: seeds the input draws, the training design and the function samples (numpy and scipy
    #: seeds are non-negative)
    seed: SInt = Field(0, ge=0)
    qoi: list[Literal["reaction", "max_stress"]] = Field(["reaction", "max_stress"], min_length=1)
    #: further QoIs: displacement components at points, after those of ``qoi``
    displacement: list[DisplacementQoIConfig] = []
    #: with random inputs: RVE answers for the GP over [H, inputs] at a Sobol design ...
    train_points: SInt = Field(64, ge=4, le=5000)
    #: ... with H in [-h_max, h_max]^4
    h_max: SFloat = Field(0.1, gt=0, lt=1)
    #: base sample of the first-order and total Sobol indices of the random inputs, for every QoI
    #: (0: none, else >= 8)
    sobol_n: SInt = Field(0, ge=0, le=65536)
    random: list[RandomInputConfig] = []

    @model_validator(mode="after")
    def _names(self):
        if 0 < self.sobol_n < 8:
            raise ValueError(f"uncertainty.sobol_n must be 0 (no Sobol indices) or >= 8, got {self.sobol_n}")
        names = list(self.qoi) + [d.name for d in self.displacement]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"uncertainty QoI names must be unique; repeated: {dup}")
        return self

    @property
    def qoi_names(self) -> list[str]:
        """All QoIs in order: ``qoi``, then the displacement QoIs."""
        return list(self.qoi) + [d.name for d in self.displacement]


class FE2Config(BaseModel):
    model_config = _STRICT
    #: the run directory is <output_dir>/<name>-<time>: a plain name, no path
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    seed: SInt = 0
    output_dir: str | None = None
    threads: SInt = Field(1, ge=1, le=256)
    mesh: MeshConfig = MeshConfig()
    dirichlet: list[DirichletConfig] = Field(min_length=1)
    traction: list[TractionConfig] = []
    load: LoadConfig = LoadConfig()
    material: MaterialConfig = MaterialConfig()
    executor: ExecutorConfig = ExecutorConfig()
    tracking: TrackingConfig = TrackingConfig()
    plots: SBool = True
    uncertainty: UncertaintyConfig | None = None

    @model_validator(mode="after")
    def _dims(self):
        k = self.mesh.dim
        if self.material.rve is not None and len(self.material.rve.grid) != k:
            raise ValueError(
                f"material.rve.grid = {list(self.material.rve.grid)} must have {k} sizes for a {k}D mesh"
            )
        for i, t in enumerate(self.traction):
            if len(t.traction) != k:
                raise ValueError(f"traction[{i}] must have {k} components for a {k}D mesh")
        if k == 2 and any(d.component == 2 for d in self.dirichlet):
            raise ValueError("dirichlet component 2 (z) needs a 3D mesh")
        if k == 2 and self.load.reaction_component == 2:
            raise ValueError("load.reaction_component = 2 (z) needs a 3D mesh")
        # with every entry of H within h_max, each eigenvalue of F = I + H lies within
        # k h_max of 1 (Gershgorin), and H = -h_max (all entries) has the eigenvalue
        # 1 - k h_max: det F > 0 over the whole training box iff k h_max < 1
        s = self.material.surrogate
        for where, h in (("material.surrogate.h_max", s.h_max if s is not None else None),
                         ("uncertainty.h_max", self.uncertainty.h_max if self.uncertainty else None)):
            if h is not None and k * h >= 1:
                raise ValueError(f"{where} = {h:g} must be below 1/{k} = {1 / k:.4g} for a {k}D mesh: beyond it the "
                                 f"training design in [-h_max, h_max]^{k * k} holds deformations F = I + H with det F <= 0")
        a = self.material.adaptive
        if self.material.provider == "adaptive" and a is not None and a.target_rel_error is not None and not any(
                d.boundary == self.load.reaction_boundary and d.component == self.load.reaction_component
                for d in self.dirichlet):
            raise ValueError(
                f"material.adaptive.target_rel_error sets the tolerance from the reaction at load.reaction_boundary = "
                f"{self.load.reaction_boundary!r} (component {self.load.reaction_component}), and no [[dirichlet]] "
                f"prescribes that boundary's displacement in that component, so the material does not move that "
                f"reaction; name a boundary with one (load.reaction_boundary, load.reaction_component) or give "
                f"material.adaptive.tolerance")
        for i, d in enumerate(self.uncertainty.displacement if self.uncertainty else []):
            if len(d.point) != k or d.component >= k:
                raise ValueError(
                    f"uncertainty.displacement[{i}] ({d.name!r}): point = {d.point} and component = "
                    f"{d.component} must have {k} coordinates and a component below {k} for a {k}D mesh"
                )
        return self

    @model_validator(mode="after")
    def _uq(self):
        u = self.uncertainty
        if u is not None and u.random and self.material.rve is None:
            raise ValueError("uncertainty.random needs a [material.rve] table (the inputs are its numbers)")
        if u is not None and u.random:
            from loops.uq.fe2 import distributions, rve_config_with

            names = [r.name for r in u.random]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"uncertainty.random names {twice} more than once (one distribution per input)")
            # each input's path, and the ends of its range (uniform) or its 1e-6 and 1 - 1e-6
            # quantiles (normal, lognormal: the draws reach them), must give a valid
            # [material.rve]: checked now, not after the deterministic solve
            dists = distributions(self)
            for r in u.random:
                qs = (0.0, 1.0) if r.distribution == "uniform" else (TAIL, 1.0 - TAIL)
                for q in qs:
                    v = float(dists[r.name].ppf(q))
                    try:
                        rve_config_with(self, {r.name: v})
                    except ValueError as e:
                        if r.distribution == "uniform":
                            raise
                        raise ValueError(f"{e} (the {q:g} quantile of its {r.distribution} distribution, which its "
                                         f"draws reach; a positive number wants a lognormal)") from None
        if u is not None and not u.random and self.material.provider not in ("surrogate", "adaptive"):
            raise ValueError(
                "[uncertainty] without random inputs propagates the surrogate's posterior: "
                "material.provider must be 'surrogate' or 'adaptive'"
            )
        return self

    @property
    def out_dir(self) -> Path:
        """The parent of this config's run directories (each run creates
        ``<name>-<time>`` in it: :func:`loops.fe2.run.fe2_run_dir`)."""
        return Path(self.output_dir or "runs/fe2")


def format_errors(err: ValidationError, source: str) -> list[str]:
    """One line per error: ``source: key = value: what is allowed`` (unknown keys list the allowed ones)."""
    return [f"{source}: {line}" for line in _settings_errors(err, FE2Config)]


#: top-level keys that only a campaign config has (``scalebridge run``)
CAMPAIGN_ONLY_KEYS = ("oracle", "budget", "initial", "acquisition", "objective", "fidelity", "mode")


def parse_config(data: dict[str, Any], source: str = "config") -> FE2Config:
    from loops.config import other_command_hint

    other_command_hint(data, CAMPAIGN_ONLY_KEYS, source, "run", "a campaign")
    try:
        cfg = FE2Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, source)) from None
    return cfg


def load_config(path: str | Path) -> FE2Config:
    """Read and validate a TOML file; :class:`ConfigError` with one line per problem.

    A relative ``mesh.path`` names a file next to the config file (looked up in
    the working directory only where no such file is there); it is stored as an
    absolute path, so the run's recorded config reads the same mesh from any
    directory."""
    data = read_toml(path)
    mesh = data.get("mesh")
    if isinstance(mesh, dict) and mesh.get("kind") == "file" and isinstance(mesh.get("path"), str):
        given = Path(mesh["path"]).expanduser()
        if not given.is_absolute():
            beside = Path(path).resolve().parent / given
            mesh["path"] = str(beside if beside.exists() or not given.exists() else given.resolve())
    return parse_config(data, str(path))
