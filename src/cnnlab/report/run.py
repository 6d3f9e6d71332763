"""The page of one run directory (what `cnnlab train` wrote, see cnnlab.train.rundir), read from its files only.

Sections: the headline test figures (summary.json), the curves (curves.png, or drawn from metrics.csv), the
per-class accuracy and confusion matrix of every evaluation kept in the directory (eval-*.json, written by
`cnnlab eval` and `cnnlab main`), the model's per-layer table, the recipe and the environment. A training run
stores no per-class results and no per-layer table: the first is left out with a note naming the command that
writes it; the second is counted from the recipe's model on the meta device (no weights, no data) and says so.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
from html import escape
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from cnnlab.report.html import Page, cards, figure, kv_table, table
from cnnlab.report.markdown import to_html

# metrics.csv columns worth a column in the per-epoch table (the rest are empty unless a precision run wrote them)
_EPOCH_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "img_per_s")
_MAX_EPOCH_ROWS = 60  # a long run's table keeps its first and last epochs; the curves show all of them


def _json(path: Path, page: Page) -> dict[str, Any] | None:
    """A JSON file of the run, or None with a note when it is missing or unreadable (an old or broken run)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        # At the top of the page (the sections come after): a broken file is the first thing to know.
        page.body.append(page.note(f"{path.name} could not be read ({type(e).__name__}: {e}); its section is left out"))
        return None
    return data if isinstance(data, dict) else None


def _recipe(run: Path, page: Page) -> tuple[str, dict[str, Any]]:
    """recipe.toml's text and its fields, read leniently (a run from an older cnnlab may have other fields)."""
    path = run / "recipe.toml"
    if not path.is_file():
        return "", {}
    text = path.read_text()
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        page.note(f"recipe.toml does not parse ({e}); shown as text")
        return text, {}


def _metrics(run: Path) -> list[dict[str, Any]]:
    """metrics.csv as rows of floats (ints for epoch and step); an empty cell is None."""
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if k is None:
                    continue
                try:
                    row[k] = None if v in ("", None) else (int(v) if k in ("epoch", "step") else float(v))
                except ValueError:
                    row[k] = v
            if row.get("epoch") is not None:
                rows.append(row)
    return rows


def _pct(v: Any) -> str:
    return "-" if not isinstance(v, (int, float)) else f"{100 * v:.2f}%"


def _results(page: Page, summary: dict[str, Any] | None, run: Path) -> None:
    if summary is None and (run / "summary.json").exists():
        return  # unreadable: noted at the top by _json
    if summary is None:
        page.section(
            "Test results",
            page.note(f"no summary.json: the run has not finished; `cnnlab train --resume {run}` continues it"),
        )
        return
    split = summary.get("test_split", "test")
    head = [
        (f"{split} top-1", _pct(summary.get("test_top1"))),
        (f"{split} top-5", _pct(summary.get("test_top5"))),
        ("best val accuracy", _pct(summary.get("best_val_acc"))),
        ("epochs", str(summary.get("epochs", "-"))),
    ]
    if isinstance(summary.get("train_seconds"), (int, float)):
        head.append(("training time", f"{summary['train_seconds']:.1f} s"))
    detail = [
        (k, summary[k])
        for k in ("test_loss", "test_images", "tested_weights", "steps", "images_per_second")
        if k in summary
    ]
    ckpts = summary.get("checkpoints") or {}
    detail += [(f"checkpoint ({k})", Path(v).name) for k, v in ckpts.items() if v]
    page.section("Test results", cards(head), kv_table(detail))


def _curves(page: Page, run: Path, rows: list[dict[str, Any]]) -> None:
    parts = []
    png = run / "curves.png"
    if png.is_file():
        parts.append(figure(png, "loss and accuracy per epoch (curves.png)"))
    elif rows:
        from cnnlab.train.rundir import plot_curves

        # plot_curves writes <dir>/curves.png: a scratch directory, since the report never writes into the run.
        with tempfile.TemporaryDirectory(prefix="cnnlab-report-") as tmp:
            drawn = plot_curves(Path(tmp), rows)
            if drawn is not None:
                parts.append(page.note("the run has no curves.png: drawn here from metrics.csv"))
                parts.append(figure(drawn, "loss and accuracy per epoch (drawn from metrics.csv)"))
    else:
        parts.append(page.note("no curves.png and no metrics.csv: the run has not finished an epoch"))
    if rows:
        cols = [c for c in _EPOCH_COLUMNS if any(r.get(c) is not None for r in rows)]
        shown = rows if len(rows) <= _MAX_EPOCH_ROWS else rows[:10] + rows[-(_MAX_EPOCH_ROWS - 10) :]
        fmt = {"lr": "{:.3g}", "train_acc": "pct", "val_acc": "pct", "seconds": "{:.1f}", "img_per_s": "{:,.0f}"}

        def cell(c: str, v: Any) -> str:
            if not isinstance(v, float):
                return "-" if v is None else str(v)
            f = fmt.get(c, "{:.4f}")
            return _pct(v) if f == "pct" else f.format(v)

        body = [[cell(c, r.get(c)) for c in cols] for r in shown]
        parts.append(
            "<h3>Per epoch (metrics.csv)</h3>"
            + (
                ""
                if shown is rows
                else f"<p class=sub>{len(rows)} epochs: the first 10 and the last {_MAX_EPOCH_ROWS - 10} are shown</p>"
            )  # fmt: skip
            + table([c.replace("_", " ") for c in cols], body, right=range(len(cols)))
        )
    page.section("Training curves", *parts)


def _evaluations(page: Page, run: Path) -> None:
    """Each eval-*.json: its per-class accuracy (with a bar) and its confusion matrix image."""
    parts = []
    for path in sorted(run.glob("eval-*.json")):
        rep = _json(path, page)
        if not rep or "per_class" not in rep:
            continue
        title = (
            f"{path.name}: {rep.get('data', '?')} [{rep.get('split', '?')}], TTA {rep.get('tta', 'none')}, "
            f"{rep.get('n', '?')} images, top-1 {_pct(rep.get('top1'))}, top-5 {_pct(rep.get('top5'))}"
        )
        rows = []
        for name, acc in rep["per_class"].items():
            bar = "" if acc is None else f'<span class="bar" style="width:{round(120 * acc)}px"></span>'
            rows.append(f"<tr><td>{escape(str(name))}</td><td class=right>{escape(_pct(acc))}</td><td>{bar}</td></tr>")
        per_class = (
            '<div class="table-wrap"><table><thead><tr><th>class</th><th class=right>accuracy</th><th></th></tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
        )
        parts.append(f"<h3>{escape(title)}</h3>")
        side = [per_class]  # the table and its matrix side by side: one look compares them
        # `cnnlab eval` writes <tag>-confusion.png beside <tag>.json; `cnnlab main` writes confusion.png.
        pngs = [run / f"{path.stem}-confusion.png"] + ([run / "confusion.png"] if path.stem == "eval-test" else [])
        png = next((p for p in pngs if p.is_file()), None)
        if png is not None:
            side.append(figure(png, f"confusion matrix ({png.name}; rows: true class, columns: predicted)"))
        elif "confusion" in rep:
            from cnnlab.train.evaluate import plot_confusion

            with tempfile.TemporaryDirectory(prefix="cnnlab-report-") as tmp:
                drawn = plot_confusion(rep, Path(tmp) / "confusion.png")
                parts.append(page.note(f"no confusion PNG beside {path.name}: drawn here from its matrix"))
                side.append(figure(drawn, "confusion matrix (rows: true class, columns: predicted)"))
        parts.append(f'<div class="side">{"".join(side)}</div>')
    if not parts:
        parts.append(
            page.note(
                f"no per-class accuracy or confusion matrix: a training run stores only its top-1/top-5 "
                f"(summary.json); `cnnlab eval {run}` writes them (eval-test-none.json and its confusion PNG)"
            )
        )
    page.section("Per-class accuracy and confusion matrix", *parts)


def _layers(page: Page, fields: dict[str, Any], info: dict[str, Any] | None) -> None:
    """The per-layer table: the run keeps none, so it is counted from the recipe's model on the meta device."""
    model = fields.get("model") or (info or {}).get("model")
    if not model:
        page.section("Model", page.note("no model named in recipe.toml or run.json: no per-layer table"))
        return
    info = info or {}
    in_chans = int(info.get("in_chans", 3))
    size = int(info.get("image_size") or fields.get("image_size") or 0)
    try:
        import torch

        from cnnlab.analysis import analyze
        from cnnlab.train.setup import create_with_overrides

        kwargs = {"in_chans": in_chans}
        if info.get("num_classes"):
            kwargs["num_classes"] = int(info["num_classes"])
        with torch.device("meta"):  # no weights are allocated and no data is run: only shapes are counted
            net = create_with_overrides(model, fields.get("model_args") or {}, **kwargs)
        rep = analyze(net, input_size=(in_chans, size, size) if size else None)
    except Exception as e:  # noqa: BLE001 - an old run's model may no longer build; the rest of the page stands
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        page.section("Model", page.note(f"the per-layer table of {model} could not be computed: {first}"))
        return
    note = page.note(
        "the run does not store a per-layer table: counted here from the recipe's model (run.json's classes, "
        "channels and image size) with cnnlab.analyze on the meta device, without weights or data"
    )
    args = fields.get("model_args") or {}
    extra = f" with model_args {args}" if args else ""
    page.section(f"Model: {model}{extra}", note, to_html(rep.to_markdown()))


def build(run: Path) -> Page:
    """The page of the run directory `run` (see the module docstring)."""
    page = Page(kind="run", title=run.name)
    recipe_text, fields = _recipe(run, page)
    info = _json(run / "run.json", page)
    summary = _json(run / "summary.json", page)
    env = _json(run / "env.json", page)
    model = fields.get("model") or (info or {}).get("model") or "?"
    data = fields.get("data") or (info or {}).get("data") or "?"
    page.title = f"{model} on {data}"
    page.subtitle = f"run directory {run}"
    _results(page, summary, run)
    _curves(page, run, _metrics(run))
    _evaluations(page, run)
    _layers(page, fields, info)
    if recipe_text:
        page.section(
            "Recipe (recipe.toml)", f'<pre class="columns"><code>{escape(recipe_text, quote=False)}</code></pre>'
        )
    else:
        page.section("Recipe", page.note("no recipe.toml in the run directory"))
    if info:
        classes = info.get("classes") or []
        pairs = [(k, v) for k, v in info.items() if k != "classes"]
        pairs.append(
            ("classes", f"{len(classes)}: {', '.join(map(str, classes[:40]))}" + (" ..." if len(classes) > 40 else ""))
        )
        page.section("Data and input (run.json)", kv_table(pairs))
    if env:
        page.section("Environment (env.json)", kv_table(env.items()))
    else:
        page.section("Environment", page.note("no env.json: the run did not record its environment"))
    return page
