"""One self-contained HTML page for a run directory or an experiment directory, built from the files they hold.

The page reads files only (it never builds weights or runs data), so it renders any old run; a file that is
missing leaves its section out with a note. Images are embedded as data URIs and the CSS is inline: the one
file can be mailed, archived or opened offline, and it makes no request and runs no script.

    from cnnlab.report import write_report
    write_report("runs/20250101-lenet5")            # -> runs/20250101-lenet5/report.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cnnlab.errors import CnnlabError

# What marks each kind of directory (cnnlab.train.rundir.RUN_FILES; an experiment's runner writes results.json).
RUN_MARKERS = ("recipe.toml", "run.json", "checkpoints")
EXPERIMENT_MARKER = "results.json"


def kind_of(path: Path) -> Literal["run", "experiment"]:
    """ "experiment" or "run"; a one-line CnnlabError for a path that is neither (or no directory at all)."""
    if not path.exists():
        raise CnnlabError(f"{path} does not exist; give a run directory (cnnlab train --out) or an experiment's")
    if not path.is_dir():
        raise CnnlabError(f"{path} is a file, not a directory; give a run directory or an experiment directory")
    # An experiment directory holds its trials' run directories below it, never a run's files at its top.
    if (path / EXPERIMENT_MARKER).is_file():
        return "experiment"
    if any((path / m).exists() for m in RUN_MARKERS):
        return "run"
    raise CnnlabError(
        f"{path} is neither a run directory ({', '.join(RUN_MARKERS)}) nor an experiment directory "
        f"({EXPERIMENT_MARKER})"
    )


def render(path: str | Path) -> tuple[Literal["run", "experiment"], str, list[str]]:
    """The page of `path` as HTML text, with its kind and the notes on what it left out."""
    path = Path(path)
    kind = kind_of(path)
    if kind == "experiment":
        from cnnlab.report.experiment import build
    else:
        from cnnlab.report.run import build
    page = build(path)
    return kind, page.render(path, "written by cnnlab report"), list(dict.fromkeys(page.notes))


def write_report(
    path: str | Path, out: str | Path | None = None
) -> tuple[Path, Literal["run", "experiment"], list[str]]:
    """Write the page of `path` to `out` (default: `path`/report.html) atomically; returns (out, kind, notes)."""
    from cnnlab.fileio import atomic_path

    path = Path(path)
    target = Path(out) if out is not None else path / "report.html"
    if target.is_dir():
        raise CnnlabError(f"--out {target} is a directory; name the HTML file to write (e.g. {target}/report.html)")
    kind, html, notes = render(path)
    try:
        with atomic_path(target) as tmp:
            tmp.write_text(html, encoding="utf-8")  # the page declares utf-8, whatever the locale says
    except OSError as e:  # the temporary file's name in the error would only confuse: name the target
        raise CnnlabError(f"cannot write {target}: {e.strerror or e}") from None
    return target, kind, notes
