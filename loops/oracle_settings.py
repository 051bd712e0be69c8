r"""Validated settings of every registered oracle (pydantic schemas).

One schema per registry name checks the ``[oracle]`` table of a campaign, the
``[material.rve]`` table of an FE² run, the keyword arguments of the Python
API and the options of the ``scalebridge rve | elastic | surface`` commands::

    [oracle]
    name = "rve"
    grid = 31
    phases = [{law = "neo_hookean", E = 1.0, nu = 0.3}, {law = "neo_hookean", E = 10.0, nu = 0.25}]
    microstructure = {kind = "inclusion", radius_fraction = 0.3}

Every schema forbids unknown keys and coerces nothing (``grid = "31"`` and
``size = 4.0`` are errors, ``true`` is not a number); ranges are physical
(Poisson ratio in ``(-1, 1/2)``, fractions in ``(0, 1)``, ...).

Spellings: laws and microstructures are named by the snake_case of their
Python class (``NeoHookean`` -> ``neo_hookean``, ``RandomFibres`` ->
``random_fibres``) and a microstructure's type by the key ``kind``, everywhere.
An earlier spelling is refused with a message naming the current one.

:func:`validate_settings` checks the settings of a registry name and returns
the validated settings (:func:`settings_kwargs` gives the constructor's keyword
arguments); :func:`format_errors` turns a pydantic error into one line per
problem. From Python, a schema can also be built directly and handed to a
campaign: ``CampaignConfig(oracle=RVESettings(phases=[...], microstructure=...), ...)``.

Units: moduli in any consistent unit (the stress comes out in it), lengths of
atomistic settings in A, energies in eV, temperatures in K.
"""

from __future__ import annotations

import math
import numbers
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "LAW_KINDS",
    "MICROSTRUCTURE_KINDS",
    "SCHEMAS",
    "OracleSettingsError",
    "PhaseSettings",
    "MicrostructureSettings",
    "RVESettings",
    "StiffnessDensitySettings",
    "TwoGridStiffnessSettings",
    "ElasticSettings",
    "SurfaceSettings",
    "build_law",
    "build_microstructure",
    "expected_lattice_parameter",
    "format_errors",
    "num_phases",
    "registry_name",
    "settings_kwargs",
    "validate_settings",
]

_STRICT = ConfigDict(extra="forbid")

# scalars are strict (no str -> number, no bool -> number, no 4.0 -> 4);
# containers stay lax so Python callers may pass tuples for lists
def _plain_int(v: Any) -> Any:
    """NumPy and other integral scalars as Python ints (bools stay bools, and are refused)."""
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, (bool, int)) else v


def _not_nan(v: Any) -> Any:
    """NaN refused as not finite before any bound is checked (NaN fails ``gt=0`` too, and
    "should be greater than 0" would name the wrong fault); infinities are left to the
    field (``allow_inf_nan``: an infinite tolerance can mean "always")."""
    if isinstance(v, float) and math.isnan(v):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return v


SInt = Annotated[int, Strict(), BeforeValidator(_plain_int)]
SFloat = Annotated[float, Strict(), BeforeValidator(_not_nan), BeforeValidator(_plain_int)]
SBool = Annotated[bool, Strict()]
#: finite floats (``inf`` and ``nan`` are refused)
Finite = Annotated[SFloat, Field(allow_inf_nan=False)]
Positive = Annotated[SFloat, Field(gt=0, allow_inf_nan=False)]
Fraction01 = Annotated[SFloat, Field(gt=0, lt=1, allow_inf_nan=False)]

#: law name -> class in :mod:`oracles.rve.laws`
LAW_KINDS = {
    "isotropic_elastic": "IsotropicElastic",
    "cubic_elastic": "CubicElastic",
    "st_venant_kirchhoff": "StVenantKirchhoff",
    "neo_hookean": "NeoHookean",
}
FINITE_STRAIN_LAWS = ("st_venant_kirchhoff", "neo_hookean")
#: microstructure kind -> class in :mod:`oracles.rve.microstructure`
MICROSTRUCTURE_KINDS = {
    "inclusion": "Inclusion",
    "cube_inclusion": "CubeInclusion",
    "laminate": "Laminate",
    "random_fibres": "RandomFibres",
    "voronoi_polycrystal": "VoronoiPolycrystal",
    "phase_map": "PhaseMap",
}
#: earlier spellings -> current ones
_OLD_LAWS = {
    "isotropic": "isotropic_elastic", "linear": "isotropic_elastic", "cubic": "cubic_elastic",
    "svk": "st_venant_kirchhoff", "neohookean": "neo_hookean",
    **{cls: name for name, cls in LAW_KINDS.items()},
}
_OLD_MICRO = {
    "cube": "cube_inclusion", "fibres": "random_fibres", "voronoi": "voronoi_polycrystal",
    **{cls: name for name, cls in MICROSTRUCTURE_KINDS.items()},
}


class OracleSettingsError(ValueError):
    """Settings that do not validate; ``lines`` holds one message per problem."""

    def __init__(self, lines: list[str]):
        super().__init__("; ".join(lines))
        self.lines = lines


class _OracleSchema(BaseModel):
    """An oracle's settings schema (a value of :data:`SCHEMAS`, never nested in another model).

    Built from Python (``RVESettings(grid=31, ...)``), bad settings raise
    :class:`OracleSettingsError` with one line per problem, as from TOML, instead
    of pydantic's report of its internal validators.
    """

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise OracleSettingsError(format_errors(e, type(self), data)) from None

    # pydantic's mark of a base constructor: validation from a dict (model_validate, a nested
    # table) keeps pydantic's errors with their keys instead of calling this constructor
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


def respell(value: Any, old: dict[str, str], current: list[str], what: str) -> Any:
    """``value`` unchanged, or a ValueError naming the current spelling of an old one."""
    if isinstance(value, str) and value not in current and value in old:
        raise ValueError(f"{what} {value!r} is now spelled {old[value]!r}")
    return value


# ------------------------------------------------------------------ laws
class _Moduli(BaseModel):
    """Isotropic moduli: ``E`` and ``nu``, or ``K`` and ``mu`` (3D values)."""

    model_config = _STRICT
    E: Positive | None = Field(None, description="Young's modulus")
    nu: Annotated[SFloat, Field(gt=-1, lt=0.5, allow_inf_nan=False)] | None = Field(None, description="Poisson ratio")
    K: Positive | None = Field(None, description="bulk modulus")
    mu: Positive | None = Field(None, description="shear modulus")

    @model_validator(mode="after")
    def _one_pair(self):
        en, km = (self.E, self.nu), (self.K, self.mu)
        given = [p for p in (en, km) if any(v is not None for v in p)]
        if len(given) != 1 or any(v is None for v in given[0]):
            raise ValueError("give E and nu, or K and mu")
        return self

    def moduli(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if k in ("E", "nu", "K", "mu") and v is not None}


class IsotropicElasticSettings(_Moduli):
    law: Literal["isotropic_elastic"]


class StVenantKirchhoffSettings(_Moduli):
    law: Literal["st_venant_kirchhoff"]


class NeoHookeanSettings(_Moduli):
    law: Literal["neo_hookean"]


class CubicElasticSettings(BaseModel):
    """Cubic elastic constants (same moduli unit as the other phases)."""

    model_config = _STRICT
    law: Literal["cubic_elastic"]
    C11: Positive
    C12: Finite
    C44: Positive

    @model_validator(mode="after")
    def _stable(self):
        if not (self.C11 > abs(self.C12) and self.C11 + 2 * self.C12 > 0):
            raise ValueError(
                f"C11 = {self.C11}, C12 = {self.C12} are not mechanically stable "
                "(need C11 > |C12| and C11 + 2 C12 > 0)"
            )
        return self

    def moduli(self) -> dict[str, float]:
        return {"C11": self.C11, "C12": self.C12, "C44": self.C44}


def _law_tag(v: Any) -> str | None:
    name = v.get("law") if isinstance(v, dict) else getattr(v, "law", None)
    return name if name in LAW_KINDS else None


def _check_law(v: Any) -> Any:
    if not isinstance(v, (dict, BaseModel)):
        raise ValueError(f"a phase is a table like {{law = 'neo_hookean', E = 1.0, nu = 0.3}}, got {v!r}")
    if isinstance(v, dict):
        if "law" not in v:
            raise ValueError(f"a phase needs a law; allowed: {list(LAW_KINDS)}")
        respell(v["law"], _OLD_LAWS, list(LAW_KINDS), "law")
        if v["law"] not in LAW_KINDS:
            raise ValueError(f"law {v['law']!r} is not one of {list(LAW_KINDS)}")
    return v


PhaseSettings = Annotated[
    Annotated[IsotropicElasticSettings, Tag("isotropic_elastic")]
    | Annotated[CubicElasticSettings, Tag("cubic_elastic")]
    | Annotated[StVenantKirchhoffSettings, Tag("st_venant_kirchhoff")]
    | Annotated[NeoHookeanSettings, Tag("neo_hookean")],
    Discriminator(_law_tag),
    BeforeValidator(_check_law),
]


def build_law(p: BaseModel):
    """The law object of validated phase settings."""
    from oracles.rve import laws

    return getattr(laws, LAW_KINDS[p.law])(**p.moduli())


# -------------------------------------------------------- microstructures
class InclusionSettings(BaseModel):
    """Centred disc/sphere of phase 1; radius as a fraction of the shortest cell edge."""

    model_config = _STRICT
    kind: Literal["inclusion"]
    radius_fraction: Annotated[SFloat, Field(gt=0, lt=0.5, allow_inf_nan=False)] = 0.25


class CubeInclusionSettings(BaseModel):
    """Square/cube of ``size`` voxels per edge of phase 1."""

    model_config = _STRICT
    kind: Literal["cube_inclusion"]
    size: SInt = Field(9, ge=1)
    centred: SBool = True


class LaminateSettings(BaseModel):
    """Two-phase laminate; ``fraction`` of phase 1, layer normal ``normal_axis``."""

    model_config = _STRICT
    kind: Literal["laminate"]
    fraction: Fraction01 = 0.5
    normal_axis: SInt = Field(0, ge=0, le=2)


class RandomFibresSettings(BaseModel):
    """Random non-overlapping fibres (discs, 2D) or spheres (3D)."""

    model_config = _STRICT
    kind: Literal["random_fibres"]
    volume_fraction: Fraction01 = 0.3
    radius_fraction: Annotated[SFloat, Field(gt=0, lt=0.25, allow_inf_nan=False)] = 0.1
    seed: SInt = Field(0, ge=0)
    min_gap: Annotated[SFloat, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.0
    max_attempts: SInt = Field(1_000_000, ge=1, le=100_000_000)


class VoronoiPolycrystalSettings(BaseModel):
    """Periodic Voronoi grains (one phase per grain)."""

    model_config = _STRICT
    kind: Literal["voronoi_polycrystal"]
    n_grains: SInt = Field(8, ge=1, le=100_000)
    seed: SInt = Field(0, ge=0)


class PhaseMapSettings(BaseModel):
    """A phase map file: ``.npy`` integer array or a segmented image (one phase per colour; a
    multi-page TIFF is a 3D map, its pages along the first axis)."""

    model_config = _STRICT
    kind: Literal["phase_map"]
    source: str = Field(min_length=1, description="path of a .npy file or an image (a multi-page .tif: 3D)")


def _micro_tag(v: Any) -> str | None:
    kind = v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)
    return kind if kind in MICROSTRUCTURE_KINDS else None


MicrostructureSettings = Annotated[
    Annotated[InclusionSettings, Tag("inclusion")]
    | Annotated[CubeInclusionSettings, Tag("cube_inclusion")]
    | Annotated[LaminateSettings, Tag("laminate")]
    | Annotated[RandomFibresSettings, Tag("random_fibres")]
    | Annotated[VoronoiPolycrystalSettings, Tag("voronoi_polycrystal")]
    | Annotated[PhaseMapSettings, Tag("phase_map")],
    Discriminator(_micro_tag),
    BeforeValidator(lambda v: _check_micro(v)),
]


def _check_micro(v: Any) -> Any:
    if not isinstance(v, (dict, BaseModel)):
        raise ValueError(f"a microstructure is a table like {{kind = 'inclusion', radius_fraction = 0.25}}, got {v!r}")
    if isinstance(v, dict):
        if "type" in v and "kind" not in v:
            raise ValueError("the key 'type' of a microstructure is now spelled 'kind'")
        if "kind" not in v:
            raise ValueError(f"a microstructure needs a kind; allowed: {list(MICROSTRUCTURE_KINDS)}")
        respell(v["kind"], _OLD_MICRO, list(MICROSTRUCTURE_KINDS), "microstructure kind")
        if v["kind"] not in MICROSTRUCTURE_KINDS:
            raise ValueError(f"microstructure kind {v['kind']!r} is not one of {list(MICROSTRUCTURE_KINDS)}")
    return v


def build_microstructure(m: BaseModel):
    """The microstructure object of validated settings."""
    from oracles.rve import microstructure as ms

    kw = m.model_dump(exclude={"kind"})
    return getattr(ms, MICROSTRUCTURE_KINDS[m.kind])(**kw)


def num_phases(m: BaseModel) -> int | None:
    """Phases of validated microstructure settings (None for a phase-map file: known once read)."""
    if m.kind == "voronoi_polycrystal":
        return m.n_grains
    if m.kind == "phase_map":
        return None  # known once the file is read
    return 2


# ------------------------------------------------------------ RVE oracles
GridSize = Annotated[SInt, Field(ge=1)]


class _RVEBase(_OracleSchema):
    """Phases, microstructure and solver options shared by the RVE oracles."""

    model_config = _STRICT
    #: small-strain laws only (derived oracles apply a small strain)
    small_strain_only: ClassVar[bool] = False

    phases: list[PhaseSettings] = Field(min_length=1)
    microstructure: MicrostructureSettings
    micro_params: dict[str, Annotated[list[Finite], Field(min_length=2, max_length=2)]] | None = None
    cg_tol: Annotated[SFloat, Field(gt=0, lt=1)] = 1e-8
    cg_maxiter: SInt = Field(1000, ge=1)
    newton_tol: Annotated[SFloat, Field(gt=0, lt=1)] = 1e-8
    newton_maxiter: SInt = Field(30, ge=1)
    device: str | None = None
    cost_per_voxel: Positive = 1e-6

    def _check_phases(self, dim: int) -> None:
        names = [p.law for p in self.phases]
        finite = {n in FINITE_STRAIN_LAWS for n in names}
        if len(finite) > 1:
            raise ValueError(f"phases mix small- and finite-strain laws: {names}")
        if self.small_strain_only and finite == {True}:
            raise ValueError(f"this oracle applies a small strain; phases need small-strain laws, got {names}")
        m = self.microstructure
        if m.kind == "random_fibres":
            from oracles.rve.microstructure import RSA_JAMMING_FRACTION

            jam = RSA_JAMMING_FRACTION[dim]
            if m.volume_fraction >= jam:
                raise ValueError(
                    f"microstructure.volume_fraction = {m.volume_fraction}: random fibres cannot be packed "
                    f"beyond the {dim}D random-sequential-addition jamming fraction {jam}"
                )
        n = num_phases(self.microstructure)
        if n is not None and len(self.phases) != n:
            raise ValueError(
                f"microstructure {self.microstructure.kind!r} has {n} phases but {len(self.phases)} "
                "phase laws are given"
            )
        if self.micro_params:
            fields = [f for f in type(self.microstructure).model_fields if f != "kind"]
            for name, (lo, hi) in self.micro_params.items():
                if name not in fields:
                    raise ValueError(
                        f"micro_params key {name!r} is not a parameter of microstructure "
                        f"{self.microstructure.kind!r}; allowed: {fields}"
                    )
                if not lo < hi:
                    raise ValueError(f"micro_params.{name} = {[lo, hi]}: need low < high")
                # every value of the range must be a valid microstructure
                for v in (lo, hi):
                    upd = self.microstructure.model_copy(update={name: v})
                    try:
                        type(self.microstructure).model_validate(upd.model_dump())
                    except ValidationError as e:
                        raise ValueError(
                            f"micro_params.{name} = {[lo, hi]}: {name} = {v} is not allowed "
                            f"({e.errors()[0]['msg']})"
                        ) from None

    def _check_memory(self, grid: tuple[int, ...]) -> None:
        from oracles.rve.microstructure import check_grid_memory

        finite = self.phases[0].law in FINITE_STRAIN_LAWS
        try:
            check_grid_memory(grid, finite=finite)
        except Exception as e:  # InvalidInput
            raise ValueError(str(e)) from None

    def rve_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`oracles.rve.oracle.RVEOracle` besides phases and microstructure."""
        keys = ("cg_tol", "cg_maxiter", "newton_tol", "newton_maxiter", "device", "cost_per_voxel")
        return {k: getattr(self, k) for k in keys if k in self.model_fields_set}


def _grid_tuple(grid: int | list[int], dim: int) -> tuple[int, ...]:
    return (grid,) * dim if isinstance(grid, int) else tuple(grid)


class RVESettings(_RVEBase):
    """``rve``: FFT homogenization of a periodic cell (:class:`oracles.rve.oracle.RVEOracle`).

    ``grid`` is voxels per axis (one value for a square/cubic grid, or ``dim``
    values); ``strain_range`` the half-width of the box of each strain input
    (default 0.01 small strain, 0.1 finite strain); ``micro_params`` maps
    microstructure parameters to their input ranges ``[low, high]``.
    """

    grid: GridSize | Annotated[list[GridSize], Field(min_length=2, max_length=3)] = 15
    dim: Literal[2, 3] = 2
    strain_range: Annotated[SFloat, Field(gt=0, lt=1, allow_inf_nan=False)] | None = None
    strain_bounds: list[list[Finite]] | None = None

    @model_validator(mode="after")
    def _check(self):
        if isinstance(self.grid, list) and len(self.grid) != self.dim:
            if "dim" in self.model_fields_set:
                raise ValueError(f"grid {self.grid} has {len(self.grid)} sizes but dim = {self.dim}")
            self.dim = len(self.grid)
        self._check_phases(self.dim)
        if self.strain_bounds is not None:
            sb = self.strain_bounds
            if len(sb) != 2 or len(sb[0]) != len(sb[1]):
                raise ValueError(f"strain_bounds must be two rows (lower, upper) of equal length, got {sb}")
            bad = [j for j, (lo, hi) in enumerate(zip(sb[0], sb[1], strict=True)) if not lo < hi]
            if bad:
                raise ValueError(f"strain_bounds: need lower < upper in every column, got lower = {sb[0][bad[0]]}, "
                                 f"upper = {sb[1][bad[0]]} in column {bad[0]}")
        if self.microstructure.kind == "phase_map" and "grid" not in self.model_fields_set:
            from oracles.rve.microstructure import PhaseMap

            try:  # the grid is the file's
                self._check_memory(PhaseMap(self.microstructure.source).shape)
            except Exception as e:  # InvalidInput: unreadable file
                raise ValueError(str(e)) from None
        else:
            self._check_memory(_grid_tuple(self.grid, self.dim))
        return self

    def build(self):
        from oracles.rve.oracle import RVEOracle

        kw = self.rve_kwargs()
        if self.strain_range is not None:
            kw["strain_range"] = self.strain_range
        if self.strain_bounds is not None:
            kw["strain_bounds"] = self.strain_bounds
        mp = {k: tuple(v) for k, v in (self.micro_params or {}).items()}
        grid: tuple[int, ...] | None = _grid_tuple(self.grid, self.dim)
        micro = build_microstructure(self.microstructure)
        if self.microstructure.kind == "phase_map" and "grid" not in self.model_fields_set:
            micro, grid = micro.phase_map(), None  # the file's grid
        return RVEOracle(
            [build_law(p) for p in self.phases], micro, grid=grid, micro_params=mp or None, **kw,
        )


class StiffnessDensitySettings(_RVEBase):
    """``stiffness_density``: directional stiffness per density of a 2D composite."""

    small_strain_only: ClassVar[bool] = True
    micro_params: dict[str, Annotated[list[Finite], Field(min_length=2, max_length=2)]] = Field(min_length=1)
    densities: list[Positive] = Field([1.0, 2.5], min_length=1)
    grid: GridSize = 15
    eps0: Annotated[SFloat, Field(gt=0, le=0.05)] = 1e-3
    theta_bounds: Annotated[list[Finite], Field(min_length=2, max_length=2)] = [0.0, math.pi / 2]

    @model_validator(mode="after")
    def _check(self):
        self._check_phases(2)
        if len(self.densities) != len(self.phases):
            raise ValueError(f"densities {self.densities} need one value per phase ({len(self.phases)})")
        if not self.theta_bounds[0] < self.theta_bounds[1]:
            raise ValueError(f"theta_bounds = {self.theta_bounds}: need low < high")
        self._check_memory((self.grid, self.grid))
        return self


class TwoGridStiffnessSettings(_RVEBase):
    """``two_grid_stiffness``: a coarse and a fine FFT grid as two fidelities."""

    small_strain_only: ClassVar[bool] = True
    micro_params: dict[str, Annotated[list[Finite], Field(min_length=2, max_length=2)]] = Field(min_length=1)
    grids: Annotated[list[GridSize], Field(min_length=2, max_length=2)] = [9, 31]
    eps0: Annotated[SFloat, Field(gt=0, le=0.05)] = 1e-3
    target: Finite = 2.0

    @model_validator(mode="after")
    def _check(self):
        self._check_phases(2)
        if not self.grids[0] < self.grids[1]:
            raise ValueError(f"grids = {self.grids}: the coarse grid must be smaller than the fine one")
        self._check_memory((self.grids[1], self.grids[1]))
        return self


# --------------------------------------------------------- analytic oracles
class _SyntheticSettings(_OracleSchema):
    """Analytic test functions: additive noise, cost per fidelity, sign, noise seed."""

    model_config = _STRICT
    fidelities: ClassVar[int] = 1
    noise_std: Annotated[SFloat, Field(ge=0, allow_inf_nan=False)] | list[
        Annotated[SFloat, Field(ge=0, allow_inf_nan=False)]
    ] | None = None
    costs: list[Positive] | None = None
    negate: SBool = False
    seed: SInt | None = Field(None, ge=0, description="seed of the noise stream (a NumPy generator)")

    @model_validator(mode="after")
    def _check(self):
        n = self.fidelities
        if self.costs is not None and len(self.costs) != n:
            raise ValueError(f"costs = {self.costs}: need {n} value(s), one per fidelity")
        if isinstance(self.noise_std, list) and len(self.noise_std) != n:
            raise ValueError(f"noise_std = {self.noise_std}: need one number or {n}, one per fidelity")
        return self


def _synthetic(name: str, n: int) -> type[_SyntheticSettings]:
    return type(name, (_SyntheticSettings,), {"fidelities": n, "__doc__": _SyntheticSettings.__doc__})


# --------------------------------------------------------- atomistic oracles
_ENGINES = Literal["default", "asap", "emt", "lj", "lammps"]
_STRUCTURES = Literal["fcc", "bcc", "sc", "diamond"]
#: nearest-neighbour distance / lattice parameter of each cubic structure
_NN_PER_A = {"fcc": 1 / math.sqrt(2), "bcc": math.sqrt(3) / 2, "sc": 1.0, "diamond": math.sqrt(3) / 4}
#: a lattice-parameter guess is accepted within this factor of the expected value
A_GUESS_FACTOR = 1.5


def expected_lattice_parameter(element: str, structure: str) -> float:
    """ASE's tabulated lattice parameter (A) when its structure matches, else ``2 r_cov / (nn/a)``.

    ``r_cov`` is the covalent radius (Cordero et al. 2008, ``ase.data.covalent_radii``)
    and ``nn/a`` the nearest-neighbour distance per lattice parameter of the structure.
    """
    from ase.data import atomic_numbers, covalent_radii, reference_states

    z = atomic_numbers[element]
    ref = reference_states[z]
    if ref is not None and ref.get("symmetry") == structure and "a" in ref:
        return float(ref["a"])
    return 2.0 * float(covalent_radii[z]) / _NN_PER_A[structure]


class _AtomisticBase(_OracleSchema):
    model_config = _STRICT
    element: str = "Cu"
    structure: _STRUCTURES = "fcc"
    engine: _ENGINES = "default"
    engine_params: dict[str, Finite] | None = None
    a_guess: Positive | None = Field(None, description="lattice parameter guess (A)")

    @field_validator("element")
    @classmethod
    def _element(cls, v: str) -> str:
        from ase.data import atomic_numbers

        if v not in atomic_numbers or v == "X" or not v[:1].isupper():
            raise ValueError(f"{v!r} is not a chemical symbol such as 'Cu'")
        return v

    @field_validator("engine_params")
    @classmethod
    def _positive_params(cls, v):
        for k, x in (v or {}).items():
            if k in ("sigma", "epsilon", "rc") and not x > 0:
                raise ValueError(f"{k} = {x} must be positive (sigma, rc in A; epsilon in eV)")
        return v

    @model_validator(mode="after")
    def _a_guess(self):
        if self.a_guess is not None:
            a = expected_lattice_parameter(self.element, self.structure)
            lo, hi = a / A_GUESS_FACTOR, a * A_GUESS_FACTOR
            if not lo <= self.a_guess <= hi:
                raise ValueError(
                    f"a_guess = {self.a_guess:g} A is not a lattice parameter of {self.structure} "
                    f"{self.element}; expected {lo:.3g} to {hi:.3g} A (about {a:.3g} A)"
                )
        return self


#: largest MD supercell, conventional cells per side (4 * 40^3 = 256000 fcc atoms)
MAX_SUPERCELL = 40


class ElasticSettings(_AtomisticBase):
    """``elastic``: cubic elastic constants vs temperature (static and Langevin MD)."""

    with_strain: SBool = True
    max_temperature: Annotated[SFloat, Field(gt=0, le=10_000, allow_inf_nan=False)] = 1500.0
    strain_bounds: Annotated[list[Annotated[SFloat, Field(gt=-0.5, lt=0.5)]], Field(min_length=2, max_length=2)] = [
        -0.05, 0.15]
    delta: Annotated[SFloat, Field(gt=0, le=0.01)] = 1e-4
    size: SInt = Field(5, ge=2, le=MAX_SUPERCELL, description="MD supercell, conventional cells per side")
    timestep: Annotated[SFloat, Field(gt=0, le=10)] = 5.0
    n_steps: SInt = Field(500, ge=1, le=10_000_000)
    n_equil: SInt = Field(300, ge=0, le=10_000_000)
    n_lattice_iter: SInt = Field(3, ge=0, le=100)
    lattice_steps: SInt = Field(400, ge=1, le=10_000_000)
    md_strain: Annotated[SFloat, Field(gt=0, lt=0.05)] = 0.005
    friction: Annotated[SFloat, Field(gt=0, le=10)] = 0.02
    sample_every: SInt = Field(4, ge=1)
    n_blocks: SInt | None = Field(None, ge=2, description="blocks of the standard error (default: "
                                                            "min(20, n_steps / sample_every))")
    n_axes: SInt = Field(3, ge=1, le=3)
    seed: SInt = Field(0, ge=0)
    us_per_atom_step: Positive = 3.5
    us_per_step: Positive = 60.0

    @model_validator(mode="after")
    def _check(self):
        if not self.strain_bounds[0] < self.strain_bounds[1]:
            raise ValueError(f"strain_bounds = {self.strain_bounds}: need low < high")
        from oracles.atomistic.md import lattice_blocks, resolve_blocks, se_blocks

        # the oracle's own checks (InvalidInput is a ValueError: its message names the settings)
        nb = resolve_blocks(self.n_steps, self.sample_every, self.n_blocks)
        se_blocks(self.n_steps, self.sample_every, self.timestep, nb, self.n_axes)
        lattice_blocks(self.lattice_steps, self.sample_every, self.timestep, nb)
        return self




class SurfaceSettings(_AtomisticBase):
    """``surface``: surface energy and UBER decohesion fit of an ``(hkl)`` surface."""

    miller: Annotated[list[SInt], Field(min_length=3, max_length=3)] = [1, 1, 1]
    strain_bounds: Annotated[list[Annotated[SFloat, Field(gt=-0.5, lt=0.5)]], Field(min_length=2, max_length=2)] = [
        -0.03, 0.03]
    min_thickness: Annotated[SFloat, Field(gt=0, le=200, allow_inf_nan=False)] = Field(
        12.0, description="slab thickness (A) at least"
    )
    max_opening: Annotated[SFloat, Field(gt=0, le=50, allow_inf_nan=False)] = 8.0
    n_openings: SInt = Field(41, ge=5, le=10_000)
    fmax: Positive = 1e-3

    @model_validator(mode="after")
    def _check(self):
        if not any(self.miller):
            raise ValueError("miller = [0, 0, 0]: the indices of a plane are not all zero")
        from oracles.atomistic.surface import MIN_SLAB_LATTICE_PARAMETERS, thinnest_slab

        a = self.a_guess or expected_lattice_parameter(self.element, self.structure)
        rc = float((self.engine_params or {}).get("rc", 0.0))
        thinnest = thinnest_slab(a, self.engine_params)
        if "min_thickness" not in self.model_fields_set and self.min_thickness < thinnest:
            self.min_thickness = float(math.ceil(thinnest))  # the default is too thin for this lattice
        if self.min_thickness < thinnest:
            raise ValueError(
                f"min_thickness = {self.min_thickness:g} A is too thin: the two surfaces of the slab would "
                f"interact; use at least {thinnest:.3g} A ({MIN_SLAB_LATTICE_PARAMETERS:g} lattice parameters"
                f"{' or the cut-off rc' if rc else ''})"
            )
        if not self.strain_bounds[0] < self.strain_bounds[1]:
            raise ValueError(f"strain_bounds = {self.strain_bounds}: need low < high")
        return self


#: registry name -> schema of its settings
SCHEMAS: dict[str, type[BaseModel]] = {
    "branin": _synthetic("BraninSettings", 1),
    "hartmann6": _synthetic("Hartmann6Settings", 1),
    "forrester": _synthetic("ForresterSettings", 2),
    "currin": _synthetic("CurrinSettings", 2),
    "park": _synthetic("ParkSettings", 2),
    "borehole": _synthetic("BoreholeSettings", 2),
    "rve": RVESettings,
    "stiffness_density": StiffnessDensitySettings,
    "two_grid_stiffness": TwoGridStiffnessSettings,
    "elastic": ElasticSettings,
    "surface": SurfaceSettings,
}

_TAG_MODELS: dict[str, type[BaseModel]] = {
    "isotropic_elastic": IsotropicElasticSettings,
    "cubic_elastic": CubicElasticSettings,
    "st_venant_kirchhoff": StVenantKirchhoffSettings,
    "neo_hookean": NeoHookeanSettings,
    "inclusion": InclusionSettings,
    "cube_inclusion": CubeInclusionSettings,
    "laminate": LaminateSettings,
    "random_fibres": RandomFibresSettings,
    "voronoi_polycrystal": VoronoiPolycrystalSettings,
    "phase_map": PhaseMapSettings,
}
_TAGS = set(_TAG_MODELS)


def _models_in(ann: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a type annotation (through Annotated, unions, lists, dicts)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    out: list[type[BaseModel]] = []
    for a in getattr(ann, "__args__", ()) or ():
        out += _models_in(a)
    origin = getattr(ann, "__origin__", None)
    if origin is not None and not getattr(ann, "__args__", None):
        out += _models_in(origin)
    return out


def _model_at(schema: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model of the table at ``loc`` (the tag of a tagged union picks the member)."""
    model: type[BaseModel] | None = schema
    for part in loc:
        if isinstance(part, int):
            continue
        if part in _TAG_MODELS:
            model = _TAG_MODELS[part]
            continue
        if model is None or part not in model.model_fields:
            return None
        cands = _models_in(model.model_fields[part].annotation)
        model = cands[0] if len(cands) == 1 else None
    return model


def _is_member_label(part: Any) -> bool:
    """Whether a loc entry names a union member (``constrained-int``, ``list[float]``, ``int``)."""
    return isinstance(part, str) and (
        part in _TAGS or "[" in part or "-" in part or part in ("int", "float", "str", "bool", "none", "list", "dict")
    )


def _key(loc: tuple, prefix: str) -> str:
    parts = [str(p) for p in loc if not _is_member_label(p)]
    return ".".join([prefix, *parts]) if prefix else ".".join(parts)


def _merge_union_errors(errors: list[dict]) -> list[dict]:
    """One error per key: the members of a union that fail on type are merged into one message."""
    groups: dict[tuple, list[dict]] = {}
    for e in errors:
        loc = tuple(e["loc"])
        cut = next((i for i, p in enumerate(loc) if _is_member_label(p) and p not in _TAGS), len(loc))
        groups.setdefault(loc[:cut], []).append(e)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        generic = ("union_tag_invalid", "missing", "too_short", "too_long")
        specific = [e for e in group if not e["type"].endswith("_type") and e["type"] not in generic]
        if specific:
            out.extend(specific[:1])
            continue
        typed = [e for e in group if e["type"].endswith("_type")] or group
        if not all(e["msg"].startswith("Input should be ") for e in typed):
            out.append(typed[-1])  # e.g. a tuple too long for every member: the last (largest) one's message
            continue
        wants = []
        for e in typed:
            w = e["msg"].removeprefix("Input should be ")
            if w not in wants:
                wants.append(w)
        out.append({**typed[0], "msg": "Input should be " + " or ".join(wants)})
    return out


def format_errors(err: ValidationError, schema: type[BaseModel], data: Any = None, prefix: str = "") -> list[str]:
    """One line per error: ``key = value: what is allowed`` (keys under ``prefix``).

    An unknown key lists the allowed keys of its table; a whole table that is
    wrong is named without dumping its contents; the members of a union
    (``grid``: an int or a list) give one line together.
    """
    lines = []
    for e in _merge_union_errors(err.errors()):
        loc = tuple(e["loc"])
        key = _key(loc, prefix) or "<top>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            model = _model_at(schema, loc[:-1])
            allowed = sorted(model.model_fields) if model is not None else []
            lines.append(f"unknown key {key!r}; allowed keys: {allowed}")
        elif e["type"] == "missing":
            lines.append(f"missing required key {key!r}")
        elif not loc:
            lines.append(f"{prefix}: {msg}" if prefix else msg)
        elif isinstance(e.get("input"), (dict, list, tuple)):
            lines.append(f"{key}: {msg}")
        else:
            lines.append(f"{key} = {e.get('input')!r}: {msg}")
    return lines


def validate_settings(name: str, kwargs: dict[str, Any], prefix: str = "oracle") -> BaseModel | None:
    """The validated settings of registry oracle ``name`` (None when it has no schema).

    Raises:
        OracleSettingsError: one line per problem, keys under ``prefix``.
    """
    schema = SCHEMAS.get(name)
    if schema is None:
        return None
    try:
        return schema.model_validate(kwargs)
    except ValidationError as e:
        raise OracleSettingsError(format_errors(e, schema, kwargs, prefix)) from None


def registry_name(settings: BaseModel) -> str | None:
    """The registry name whose schema ``settings`` is an instance of."""
    return next((n for n, cls in SCHEMAS.items() if type(settings) is cls), None)


def settings_kwargs(settings: BaseModel) -> dict[str, Any]:
    """Constructor keyword arguments: the keys that were set, as plain data."""
    return settings.model_dump(exclude_unset=True)
