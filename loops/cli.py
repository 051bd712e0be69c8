"""The ``scalebridge`` command line.

Each subcommand lives in its own module, which defines
``register(subparsers, name) -> None``: it adds its parser and sets
``func=callable(args) -> int``. Modules are imported only when their command
runs, so ``scalebridge --help`` stays fast and a missing optional engine only
breaks its own command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("loops.demo", "run the end-to-end demo at a small size"),
    "rve": ("oracles.rve.cli", "homogenize one RVE at a macro strain; prints JSON"),
    "elastic": ("oracles.atomistic.cli", "elastic constants of a cubic crystal; prints JSON"),
    "surface": ("oracles.atomistic.cli", "surface energy and UBER decohesion fit; prints JSON"),
    "cohesive": ("oracles.cohesive.cli", "cohesive-law parameters and K_Ic; prints JSON"),
    "conductivity": ("oracles.transport.cli", "effective conductivity and tortuosity of a voxel image; prints JSON"),
    "permeability": ("oracles.transport.cli", "Darcy permeability of a voxel pore space (m², darcy); prints JSON"),
    "run": ("loops.commands", "run a campaign from a TOML config"),
    "resume": ("loops.commands", "resume a killed campaign"),
    "status": ("loops.commands", "progress table of a campaign"),
    "fe2": ("loops.fe2.cli", "two-scale FE with a surrogate, the oracle or the adaptive switch"),
}


def _one_line_error(parser: argparse.ArgumentParser) -> None:
    """Make ``parser``'s usage errors one line on stderr (``PROG: error: MESSAGE``) with exit status 2,
    unless its command set its own."""
    if "error" in vars(parser):
        return

    def error(message: str):
        print(f"{parser.prog}: error: {message} (see {parser.prog} --help)", file=sys.stderr)
        sys.exit(2)

    parser.error = error


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scalebridge",
        description="Oracles, surrogates and campaigns for multiscale materials simulation.",
    )
    _one_line_error(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        if only is not None and name == only:
            mod = importlib.import_module(module)
            mod.register(sub, name)
            _one_line_error(sub.choices[name])
        else:
            sub.add_parser(name, help=help_, add_help=False)
    parser.set_defaults(command_parsers=sub.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        # the command's module is imported here (torch, ASE, ... take seconds): Ctrl-C may come now
        parser = build_parser(only=command)
        if command is None:
            args = parser.parse_args(argv)
            parser.print_help()
            return 0 if not argv else 2
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the command's own parser, which names it
            args.command_parsers[command].error(f"unrecognized arguments: {' '.join(extra)}")
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`scalebridge ... | head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
