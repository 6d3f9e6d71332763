"""The one entry point `cnnlab`. Each subcommand is a module of this package exposing

    HELP: str                                   # one line for `cnnlab --help`
    def add_arguments(p: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int

A module may set `NAME` to choose its command name (`main_job.py` is `cnnlab main`: a module named `main` would
shadow this package's `main` function). Subcommands are thin wrappers over the library. A CnnlabError (or a
ValueError/TypeError/KeyError raised by bad input) becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from cnnlab.errors import CnnlabError

# Module names that are not subcommands.
_NOT_COMMANDS = {"common"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + exits 2; keep it to one line
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _commands() -> dict[str, object]:
    found = {}
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_") or mod.name in _NOT_COMMANDS:
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        found[getattr(module, "NAME", mod.name.replace("_", "-"))] = module
    return dict(sorted(found.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlab", description="The classic CNNs: build, measure, train and explain them.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in _commands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (CnnlabError, ValueError, TypeError, KeyError, FileNotFoundError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
        sys.stderr.write(f"cnnlab {args.command}: error: {first}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("cnnlab: interrupted\n")
        return 130
