"""Error messages of the oracle commands (``scalebridge rve``, ``elastic``, ``surface``,
``conductivity``, ``permeability``) in the words of their options.

A settings schema (:mod:`loops.oracle_settings`) and an oracle name a bad value by
its settings key (``microstructure.radius_fraction = 0.7: ...``); a command's user
typed an option (``--radius-fraction``). :func:`with_options` rewrites the key that
begins each message line into the option that sets it. Imports nothing heavy, so
the commands' usage errors stay fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["with_options"]

#: what may follow a key at the start of a message line: ``key = value``, ``key: why``, ``key.sub ...``
_AFTER_KEY = (" ", ":", ".")
#: the index of a list entry right after a key: ``.0`` in ``grid.0 = 0: ...``
_LIST_INDEX = re.compile(r"^\.\d+(?=[ :])")


def with_options(lines: str | Iterable[str], option_of: Mapping[str, str]) -> list[str]:
    """Message lines with a leading settings key replaced by its option.

    Args:
        lines: one message or several.
        option_of: settings key -> option (``{"grid": "--grid"}``); the longest
            matching key wins, so ``engine_params.sigma`` goes before ``engine_params``.

    Returns:
        The lines in order, each once (two keys set by one option give one line).
    """
    keys = sorted(option_of, key=len, reverse=True)
    out: list[str] = []
    for line in [lines] if isinstance(lines, str) else lines:
        for key in keys:
            if line == key or (line.startswith(key) and line[len(key)] in _AFTER_KEY):
                # an entry of a list-valued option (``grid.0 = 0``) is named by the option with its value
                line = option_of[key] + _LIST_INDEX.sub("", line[len(key):], count=1)
                break
        if line not in out:
            out.append(line)
    return out
