"""Oracle registry: config names -> import paths, imported only when used.

A config names an oracle (``oracle = {name = "branin"}``); the remaining keys
are constructor kwargs. Heavy oracles (RVE, MD) are imported only when a
campaign or a worker builds one. A name may also be a full ``"module:Class"``.
"""

from __future__ import annotations

import importlib
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
    # test doubles of the loops (cheap, deterministic)
    "slow": ("loops.fakes:SlowOracle",),
    "flaky": ("loops.fakes:FlakyOracle",),
    "branin_mf": ("loops.fakes:BraninMultiFidelity",),
    "die_once": ("loops.fakes:DieOnceOracle",),
}


def oracle_class(name: str) -> type:
    """The class registered under ``name`` (or at ``"module:Class"``)."""
    paths = ORACLES.get(name, (name,) if ":" in name else ())
    if not paths:
        raise InvalidInput(f"unknown oracle {name!r}; allowed: {sorted(ORACLES)} or 'module:Class'")
    errors = []
    for path in paths:
        module, _, attr = path.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            errors.append(f"{path}: {e}")
    raise InvalidInput(f"oracle {name!r} could not be imported ({'; '.join(errors)})")


def build_oracle(spec: dict[str, Any]):
    """Instantiate ``spec = {"name": ..., **kwargs}``."""
    spec = dict(spec)
    name = spec.pop("name")
    cls = oracle_class(name)
    try:
        return cls(**spec)
    except TypeError as e:
        raise InvalidInput(f"oracle {name!r} does not accept kwargs {sorted(spec)}: {e}") from None


@lru_cache(maxsize=8)
def _cached(key: str):
    import json

    return build_oracle(json.loads(key))


def cached_oracle(spec: dict[str, Any]):
    """One oracle per spec per process (workers reuse it across calls)."""
    import json

    # key order is meaning (e.g. the order of micro_params is the order of inputs): no sort_keys
    return _cached(json.dumps(spec))
