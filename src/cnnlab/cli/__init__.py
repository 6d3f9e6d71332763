"""The one entry point `cnnlab`. Each subcommand is a module of this package, listed in `COMMANDS`, exposing

    HELP: str                                   # one line for `cnnlab --help`
    def add_arguments(p: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int

A module may set `NAME` to choose its command name (`main_job.py` is `cnnlab main`: a module named `main` would
shadow this package's `main` function); a name registered twice raises. Subcommands are thin wrappers over the
library. A CnnlabError (or a
ValueError/TypeError/KeyError raised by bad input) becomes one line on stderr and exit code 2, never a traceback;
so does a bad flag (with the close match), and a Python warning becomes one `warning:` line.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

from cnnlab.cli import (
    analyze,
    compare,
    conv,
    data,
    eval,
    export,
    features,
    formats,
    main_job,
    models,
    predict,
    report,
    reproduce,
    train,
    weights,
)
from cnnlab.errors import CnnlabError

# The subcommands: adding one is adding its module and one entry here (grep finds where `train` is registered).
COMMANDS: tuple[ModuleType, ...] = (
    analyze,
    compare,
    conv,
    data,
    eval,
    export,
    features,
    formats,
    main_job,
    models,
    predict,
    report,
    reproduce,
    train,
    weights,
)

_PACKAGE = Path(__file__).resolve().parents[1]  # src/cnnlab: where cnnlab's own warnings come from
# What a shell reports for a process killed by SIGPIPE (128 + 13): `cnnlab models | head -1` ends like `yes | head`.
_EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + exits 2; keep it to one line
        sys.stderr.write(f"{self.prog}: error: {_with_suggestion(message)}\n")
        raise SystemExit(2)

    def parse_args(self, args=None, namespace=None):  # noqa: ANN001, ANN202 - argparse's own signature
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            # argparse reports a subcommand's unknown flag from the top-level parser ("cnnlab: error:
            # unrecognized arguments: --ephocs 3"): report it from the subcommand, against its own flags.
            parser = self._chosen_subparser(ns) or self
            parser.error(unrecognized(extras, parser))
        return ns

    def _chosen_subparser(self, ns: argparse.Namespace) -> argparse.ArgumentParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(ns, action.dest, None) or "")
        return None


def unrecognized(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """'unrecognized argument --ephocs; did you mean --epochs?' for argparse's leftover arguments."""
    flags = [e.split("=", 1)[0] for e in extras if e.startswith("-") and e != "-"]
    words = flags or list(extras[:1])  # a flag's value ('3' of '--ephocs 3') is not worth naming
    known = [s for a in parser._actions for s in a.option_strings]
    close = [m for w in words if w.startswith("-") for m in difflib.get_close_matches(w, known, n=1, cutoff=0.6)]
    hint = f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
    named = [w[2:].replace("-", "_") for w in words if w.startswith("--") and w[2:].replace("-", "_").isidentifier()]
    if not close and named and "--set" in known:  # `reproduce --epochs 3`: settings go through --set
        hint = f"; a setting is --set {named[0]}=VALUE"
    noun = "argument" if len(words) == 1 else "arguments"
    return f"unrecognized {noun} {', '.join(words)}{hint}"


def _with_suggestion(message: str) -> str:
    """argparse's "invalid choice: 'trian' (choose from 'analyze', ...)" -> "...: 'trian'; did you mean train?"."""
    m = re.match(r"(.*invalid choice: '([^']*)') \(choose from (.*)\)$", message)
    if not m:
        return message
    choices = re.findall(r"'([^']*)'", m.group(3)) or [c.strip() for c in m.group(3).split(",")]
    close = difflib.get_close_matches(m.group(2), choices, n=3, cutoff=0.5)
    return m.group(1) + (f"; did you mean {', '.join(close)}?" if close else f" (choose from {', '.join(choices)})")


class _Version(argparse.Action):
    """`cnnlab --version`: cnnlab's version and torch's, which decides most behaviour (imported only here)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kw):
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        print(version_line())
        parser.exit()


def version_line() -> str:
    import torch

    import cnnlab

    return f"cnnlab {cnnlab.__version__} (torch {torch.__version__})"


def command_name(module: ModuleType) -> str:
    """`NAME` if the module sets one, else its module name with "-" for "_" (`cli/main_job.py` sets "main")."""
    return getattr(module, "NAME", module.__name__.rsplit(".", 1)[-1].replace("_", "-"))


def _commands() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for module in COMMANDS:
        name = command_name(module)
        if name in found:
            raise RuntimeError(f"command '{name}' is registered twice ({found[name].__name__}, {module.__name__})")
        found[name] = module
    return dict(sorted(found.items()))  # `cnnlab --help` lists them alphabetically


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlab", description="The classic CNNs: build, measure, train and explain them.")
    parser.add_argument("--version", action=_Version, help="print cnnlab's and torch's versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in _commands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


@contextlib.contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Python warnings as `cnnlab COMMAND: warning: MESSAGE` on stderr (no file name, no source line) while the
    command runs; the caller's warning machinery is restored afterwards (library users and pytest see theirs).

    cnnlab's own warnings (DataWarning, ...) show at once. Other libraries' (torch's pickle-protocol note, a
    deprecation) wait for the end of the command and are dropped if it fails: its one error line is the story.
    """
    later: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        text = str(message).strip()
        out = f"cnnlab {command}: warning: {text.splitlines()[0] if text else category.__name__}\n"
        ours = category.__module__.split(".")[0] == "cnnlab" or Path(filename).resolve().is_relative_to(_PACKAGE)
        if ours:
            sys.stderr.write(out)
        elif out not in later:
            later.append(out)

    with warnings.catch_warnings():  # restores showwarning and the filters on the way out
        warnings.showwarning = show
        yield
    sys.stderr.write("".join(later))  # not reached when the command raised


def _quiet_broken_pipe() -> int:
    """The reader of our stdout went away (`| head`): point stdout at /dev/null, so that the interpreter's
    final flush does not raise again, and stop without a message (the Python docs' recipe for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):  # ValueError: a stdout without a file descriptor
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return _EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe shows here rather than at interpreter exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from cnnlab.train.progress import silence

    silence(getattr(args, "no_progress", False))  # every bar of the command, the ones library code draws included
    try:
        with one_line_warnings(args.command):
            return int(args._run(args) or 0)
    # PermissionError, IsADirectoryError, NotADirectoryError: a path the user gave that cannot be used as asked.
    except (CnnlabError, ValueError, TypeError, KeyError, FileNotFoundError, PermissionError, IsADirectoryError,
            NotADirectoryError) as e:  # fmt: skip
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
        sys.stderr.write(f"cnnlab {args.command}: error: {first}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("cnnlab: interrupted\n")
        return 130
    finally:
        silence(False)  # main() called again in this process (tests, notebooks) starts with bars on
