"""The report of an experiment: report.md, curves.png, errors.png and results.json, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.experiments import stats


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def provenance(device: str, load_start: str) -> dict[str, Any]:
    """A run directory's env.json (versions, git SHA, CPU model and flags, threads) plus the machine's load."""
    from cnnlab.train.ddp import pick_device
    from cnnlab.train.rundir import environment

    return {**environment(pick_device(device), 1), "load_start": load_start, "load_end": load_average()}


def _pct(s: dict[str, Any]) -> str:
    return f"{100 * s['mean']:.2f}" + ("" if s["std"] is None else f" ± {100 * s['std']:.2f}")


def markdown(exp: Any, cfg: Any, r: dict[str, Any], more: list[str] | None = None) -> str:
    """report.md; `more` (the experiment's own lines, Experiment.report) follows the arms' table."""
    arms = r["arms"]
    clean = bool(arms) and all("clean_train_error" in a for a in arms.values())  # recipe train_eval_images
    head = "| arm | model | params | MACs | final train error % |" + (" clean train error % |" if clean else "")
    rows = [head + " test error % |", "|---|---|---:|---:|---:|" + ("---:|" if clean else "") + "---:|"]
    for a in arms.values():
        args = "".join(f" {k}={v}" for k, v in a["model_args"].items())
        rows.append(
            f"| {a['label']} | `{a['model']}{args}` | {a['params']:,} | {a['macs']:,} | "
            f"{_pct(a['final_train_error'])} |"
            + (f" {_pct(a['clean_train_error'])} |" if clean else "")
            + f" {_pct(a['test_error'])} |"
        )
    claims = ["| claim | ours | paper | verdict |", "|---|---|---|---|"]
    for c in r["claims"]:
        claims.append(f"| {c['text']} | {c['ours']} | {c['published']} | **{c['verdict'].split(':')[0]}** |")
    d, p, t = r["data"], r["provenance"], r["timing"]
    cfg_lines = [f"`{k} = {v}`" for k, v in r["config"].items()]
    analysis = []
    if r.get("analysis"):
        analysis = ["## Analysis (exact counts)", "", *r["analysis"].get("lines", []), ""]
    return "\n".join(
        [
            f"# {exp.name}: {exp.claim}",
            "",
            f"Source: {exp.source}. Scale: {r['scale']}. Data: {d['train_images']} training images (of which "
            f"{100 * cfg.val_fraction:.0f}% held out as val) and {d['test_images']} test images of `{d['source']}`"
            f", {cfg.seeds} seed(s); mean ± sample std over seeds.",
            "",
            *rows,
            "",
            *(more or []),
            "![training and held-out error per epoch](curves.png)",
            "",
            "![test error per arm](errors.png)",
            "",
            "## Verdicts",
            "",
            *claims,
            "",
            stats.RULE,
            "",
            *analysis,
            "## Config",
            "",
            ", ".join(cfg_lines),
            "",
            "## Repeat it",
            "",
            "```",
            *r["commands"],
            "```",
            "",
            f"Wall time {clock(t['wall_seconds'])} on {p.get('cpu', '?')} ({p.get('cpu_flags', '')}), "
            f"{p['cpu_count']} CPUs, {p['threads']} torch threads, torch {p['torch']}, git {p['git_sha']}; "
            f"load average {p['load_start']} at start, {p['load_end']} at the end.{_share(t)}",
            "",
        ]
    )


def plots(r: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from cnnlab.fileio import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, a in r["arms"].items():
        mine = [t for t in r["trials"] if t["arm"] == name]
        for ax, key in zip(axes, ("train_error", "val_error")):
            curves = np.array([[np.nan if v is None else 100 * v for v in t[key]] for t in mine], dtype=float)
            ep = mine[0]["epochs"]
            (line,) = ax.plot(ep, np.nanmean(curves, 0), label=a["label"])
            if len(mine) > 1:  # the band: min to max over seeds
                ax.fill_between(ep, np.nanmin(curves, 0), np.nanmax(curves, 0), color=line.get_color(), alpha=0.2)
    for ax, title in zip(axes, ("training error (running, augmented)", "held-out (val) error")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("error (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "curves.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(r["arms"])
    means = [100 * r["arms"][n]["test_error"]["mean"] for n in names]
    errs = [100 * (r["arms"][n]["test_error"]["std"] or 0.0) for n in names]
    ax.bar(range(len(names)), means, yerr=errs, capsize=4, color="#6a9fd8")
    ax.set_xticks(range(len(names)), [r["arms"][n]["label"] for n in names], fontsize=8, rotation=15)
    ax.set_ylabel("test error (%), mean ± std")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(out / "errors.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def measurement_markdown(exp: Any, r: dict[str, Any], more: list[str]) -> str:
    """report.md of a measurement (Experiment.measure): its own lines and figures, the verdicts, the rest."""
    claims = ["| claim | ours | paper | verdict |", "|---|---|---|---|"]
    for c in r["claims"]:
        claims.append(f"| {c['text']} | {c['ours']} | {c['published']} | **{c['verdict'].split(':')[0]}** |")
    p, t = r["provenance"], r["timing"]
    return "\n".join(
        [
            f"# {exp.name}: {exp.claim}",
            "",
            f"Source: {exp.source}. Scale: {r['scale']}.",
            "",
            *more,
            "## Verdicts",
            "",
            *claims,
            "",
            r["rule"],
            "",
            "## Config",
            "",
            ", ".join(f"`{k} = {v}`" for k, v in r["config"].items()),
            "",
            "## Repeat it",
            "",
            "```",
            *r["commands"],
            "```",
            "",
            f"Wall time {clock(t['wall_seconds'])} on {p.get('cpu', '?')} ({p.get('cpu_flags', '')}), "
            f"{p['cpu_count']} CPUs, {p['threads']} torch threads, torch {p['torch']}, git {p['git_sha']}; "
            f"load average {p['load_start']} at start, {p['load_end']} at the end.{_share(t)}",
            "",
        ]
    )


def write(exp: Any, cfg: Any, results: dict[str, Any], out: Path) -> None:
    from cnnlab.fileio import write_json, write_text

    if "arms" not in results:  # a measurement: no arms, no trials, its figures through exp.report
        more = exp.report(cfg, results, out) if exp.report is not None else []
        write_text(out / "report.md", measurement_markdown(exp, results, more))
    else:
        plots(results, out)
        more = exp.report(cfg, results, out) if exp.report is not None else None
        write_text(out / "report.md", markdown(exp, cfg, results, more))
    write_json(out / "results.json", results)


def _share(t: dict[str, Any]) -> str:
    if "framework_share" not in t:
        return ""
    inside = clock(t["trials_wall_seconds"])
    return (f" The trials' train() calls (and the experiment's evaluation, if any) took {inside}; the framework "
            f"around them (data subset, analyzer, report) added {100 * t['framework_share']:+.1f}%.")  # fmt: skip
