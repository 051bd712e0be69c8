"""Oracle registry: config names -> import paths, imported only when used.

A config names an oracle (``oracle = {name = "branin"}``); the remaining keys
are its settings, checked by the oracle's schema in
:mod:`loops.oracle_settings` before anything is built. Heavy oracles (RVE,
MD) are imported only when a campaign or a worker builds one.

A name may also be a full ``"module:Class"`` path: the module is imported, and
the class is checked to be an :class:`~oracles.base.Oracle` subclass and its
settings to be parameters of its constructor *before* it is called, so a
config cannot run an arbitrary callable (``"subprocess:Popen"`` is refused).
The test doubles of :mod:`loops.fakes` are referenced this way
(``"loops.fakes:SlowOracle"``).
"""

from __future__ import annotations

import importlib
import inspect
import json
from functools import lru_cache
from typing import Any

from oracles.exceptions import InvalidInput

#: name -> candidate import paths, tried in order (the first that imports wins)
ORACLES: dict[str, tuple[str, ...]] = {
    "branin": ("oracles.analytic.test_functions:Branin", "loops.fakes:BoTorchBranin"),
    "hartmann6": ("oracles.analytic.test_functions:Hartmann6", "loops.fakes:BoTorchHartmann6"),
    "forrester": ("oracles.analytic.test_functions:Forrester",),
    "currin": ("oracles.analytic.test_functions:Currin",),
    "park": ("oracles.analytic.test_functions:Park",),
    "borehole": ("oracles.analytic.test_functions:Borehole",),
    "rve": ("loops.oracle_factories:rve",),
    "stiffness_density": ("loops.oracle_factories:StiffnessToDensity",),
    "two_grid_stiffness": ("loops.oracle_factories:TwoGridStiffness",),
    "elastic": ("oracles.atomistic.elastic:ElasticConstantsOracle",),
    "conductivity": ("oracles.transport.oracle:ConductivityOracle",),
    "permeability": ("oracles.transport.oracle:PermeabilityOracle",),
    "surface": ("oracles.atomistic.surface:SurfaceOracle",),
}

#: names the test doubles had in the registry -> the path that names them now
MOVED: dict[str, str] = {
    "slow": "loops.fakes:SlowOracle",
    "flaky": "loops.fakes:FlakyOracle",
    "branin_mf": "loops.fakes:BraninMultiFidelity",
    "die_once": "loops.fakes:DieOnceOracle",
}


def unknown_oracle_message(name: Any) -> str:
    """The one-line error of a name that is neither registered nor ``module:Class``."""
    if isinstance(name, str) and name in MOVED:
        return f"oracle {name!r} is a test double, now named {MOVED[name]!r}"
    return f"unknown oracle {name!r}; allowed: {sorted(ORACLES)} or 'module:Class' of an Oracle subclass"


def _import(path: str):
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise InvalidInput(f"oracle path {path!r} must look like 'package.module:Class'")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def oracle_class(name: str):
    """The class (or factory of a registered name) that builds oracle ``name``.

    A ``"module:Class"`` path must name an :class:`~oracles.base.Oracle`
    subclass; anything else is refused before it is called.

    Raises:
        InvalidInput: one line naming the problem.
    """
    if not isinstance(name, str):
        raise InvalidInput(f"oracle name must be a string, got {name!r}")
    paths = ORACLES.get(name, (name,) if ":" in name else ())
    if not paths:
        raise InvalidInput(unknown_oracle_message(name))
    errors = []
    for path in paths:
        try:
            obj = _import(path)
        except (ImportError, AttributeError) as e:
            errors.append(f"{path}: {e}")
            continue
        if name not in ORACLES:
            from oracles.base import Oracle

            if not (isinstance(obj, type) and issubclass(obj, Oracle)):
                what = f"class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
                raise InvalidInput(f"oracle {name!r} is {what}, not an Oracle subclass: refused, nothing was called")
        return obj
    raise InvalidInput(f"oracle {name!r} could not be imported ({'; '.join(errors)})")


def check_kwargs(name: str, kwargs: dict[str, Any], prefix: str = "oracle") -> dict[str, Any]:
    """Settings of oracle ``name`` checked without building it.

    Registered names are validated by their schema
    (:data:`loops.oracle_settings.SCHEMAS`); a ``"module:Class"`` (or a
    registered name without a schema) is resolved, checked to be an Oracle
    subclass, and ``kwargs`` are bound to its constructor's signature (an
    unknown key lists the allowed ones).

    Returns:
        The keyword arguments for the constructor.

    Raises:
        InvalidInput: unknown name, not an Oracle.
        loops.oracle_settings.OracleSettingsError: bad settings (one line each).
    """
    from loops.oracle_settings import OracleSettingsError, settings_kwargs, validate_settings

    if name in ORACLES:
        settings = validate_settings(name, kwargs, prefix)
        if settings is not None:
            return settings_kwargs(settings)
    cls = oracle_class(name)
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return dict(kwargs)
    params = sig.parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [k for k in kwargs if k not in allowed]
        if unknown:
            raise OracleSettingsError(
                [f"unknown key {prefix + '.' + k!r} of {name}; allowed keys: {allowed}" for k in unknown]
            )
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        raise OracleSettingsError([f"{prefix}: {name} {e}"]) from None
    return dict(kwargs)


def build_oracle(spec: dict[str, Any] | Any):
    """Instantiate ``spec = {"name": ..., **settings}`` after checking it.

    An :class:`~oracles.base.Oracle` instance is returned as it is.

    Raises:
        InvalidInput: one line per problem (unknown name, not an Oracle,
            bad settings, a constructor that refuses its input).
    """
    from loops.oracle_settings import OracleSettingsError
    from oracles.base import Oracle

    if isinstance(spec, Oracle):
        return spec
    if not isinstance(spec, dict) or "name" not in spec:
        raise InvalidInput(f"an oracle spec is {{'name': ..., **settings}} or an Oracle, got {spec!r}")
    spec = dict(spec)
    name = spec.pop("name")
    try:
        kwargs = check_kwargs(name, spec)
    except OracleSettingsError as e:
        raise InvalidInput("; ".join(e.lines)) from None
    cls = oracle_class(name)
    try:
        return cls(**kwargs)
    except InvalidInput:
        raise
    except (TypeError, ValueError) as e:
        # a constructor without a schema that refuses a value: say which oracle and settings
        given = ", ".join(f"{k}={v!r}"[:80] for k, v in kwargs.items())
        raise InvalidInput(f"oracle {name!r} could not be built from its settings ({given}): "
                           f"{type(e).__name__}: {e}") from e


@lru_cache(maxsize=8)
def _cached(key: str):
    return build_oracle(json.loads(key))


def cached_oracle(spec: dict[str, Any] | Any):
    """One oracle per spec per process (workers reuse it across calls)."""
    from oracles.base import Oracle

    if isinstance(spec, Oracle):
        return spec
    # key order is meaning (e.g. the order of micro_params is the order of inputs): no sort_keys
    return _cached(json.dumps(spec))
