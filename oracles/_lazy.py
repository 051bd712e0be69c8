"""Lazy package attributes (PEP 562): a package's public names are imported from their
submodules on first use, so that importing the package (``oracles``, ``oracles.rve``, ...)
imports neither torch, scipy nor ASE. ``scalebridge rve --help`` imports ``oracles.rve.cli``,
hence ``oracles`` and ``oracles.rve``, and answers in a fraction of a second.

Each package's ``__init__`` keeps its ``__all__``, imports its names under
``if TYPE_CHECKING:`` for type checkers and editors, and calls :func:`attach` with its
name -> submodule table.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterable, Mapping
from importlib import import_module


class _Package(types.ModuleType):
    """A package whose public name is also one of its submodules' names (``oracles.transport.permeability``,
    a function of the submodule of that name): the import system binds a submodule on its package when
    it loads it, which would replace the function by the module; the function stays, as when the package
    imported it eagerly."""

    _shadowed: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value) -> None:
        if (name in self._shadowed and isinstance(value, types.ModuleType)
                and value.__name__ == f"{self.__name__}.{name}"):
            value = getattr(value, name)
        super().__setattr__(name, value)


def attach(
    package: str, table: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: the package's ``__name__``.
        table: public name -> the module that defines it (imported on first access; the value is
            then kept in the package's namespace).
        public: the package's ``__all__``, listed by ``dir()`` before the names are imported.
    """
    mod = sys.modules[package]
    names = sorted(public)
    missing = set(names) - set(table)
    if missing:
        raise RuntimeError(f"{package}.__all__ names {sorted(missing)} that no submodule defines")
    shadowed = frozenset(n for n, m in table.items() if m == f"{package}.{n}")
    if shadowed:
        mod.__class__ = type("LazyPackage", (_Package,), {"_shadowed": shadowed})

    def __getattr__(name: str):
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(source), name)
        mod.__dict__[name] = value  # later accesses are plain attribute lookups
        return value

    def __dir__() -> list[str]:
        return sorted({*mod.__dict__, *names})

    return __getattr__, __dir__
