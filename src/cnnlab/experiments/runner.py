"""Running an experiment: every trial through `cnnlab.train.loop.train`, each a run directory, resumable.

`out/experiment.json` holds the experiment's name and config; a second start with the same config continues
(finished trials are read back, the interrupted one resumes from its newest checkpoint, which the training
engine makes bit-identical on the CPU), and one with another config is refused rather than mixed in.
"""

from __future__ import annotations

import csv
import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.experiments import stats
from cnnlab.experiments.base import Arm, Experiment, to_dict


def trial_dir(out: Path, arm: Arm, seed: int) -> Path:
    return out / "trials" / f"{arm.name}-seed{seed}"


def trial_recipe(cfg: Any, arm: Arm, seed: int, data_file: Path, weights: Path | None = None) -> Any:
    """The recipe of one trial; `weights` (a run directory) is where it starts from (Arm.weights_from)."""
    from cnnlab.train.recipe import Recipe

    base = {
        "model": arm.model,
        "data": f"npz:{data_file.resolve()}",
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "augment": cfg.augment,
        "val_fraction": cfg.val_fraction,
        "seed": seed,
        "threads": cfg.threads,
        "checkpoint_every": cfg.checkpoint_every,
        "progress": False,
        "plots": False,
    }
    if arm.model_args:
        base["model_args"] = dict(arm.model_args)
    if weights is not None:
        base["weights"] = str(weights.resolve())
    return Recipe().replace(**{**base, **arm.recipe})


def check_arms(exp: Experiment, arms: list[Arm], datasets: dict[str, Any]) -> None:
    """Arm names are unique, `data` names a file the experiment made, `weights_from` an earlier arm (so that, seed
    by seed, the trial whose weights are taken has finished first)."""
    seen: set[str] = set()
    for arm in arms:
        if arm.name in seen:
            raise ValueError(f"{exp.name}: two arms are named {arm.name}")
        if arm.data and arm.data not in datasets:
            raise ValueError(f"{exp.name}: arm {arm.name} trains on '{arm.data}', which its datasets hook did not make")
        if arm.weights_from and arm.weights_from not in seen:
            raise ValueError(f"{exp.name}: arm {arm.name} takes weights from '{arm.weights_from}', not an earlier arm")
        seen.add(arm.name)


def _claim_dir(exp: Experiment, cfg: Any, out: Path, scale: str) -> None:
    from cnnlab.fileio import write_json

    path = out / "experiment.json"
    mine = {"experiment": exp.name, "scale": scale, "config": to_dict(cfg)}
    if path.is_file():
        theirs = json.loads(path.read_text())
        started = (out / "data.json").exists() or (out / "trials").exists()
        if theirs != mine and not started:  # a start that failed before any data (e.g. CIFAR-10 not found)
            write_json(path, mine)
        elif theirs != mine:
            diff = [k for k in mine["config"] if theirs.get("config", {}).get(k) != mine["config"][k]]
            what = f"config differs in {', '.join(diff)}" if diff else f"it is {theirs.get('experiment')}"
            raise CnnlabError(f"{out} holds another experiment run ({what}); use another --out or delete it")
        return
    if out.is_dir() and any(out.iterdir()):
        raise CnnlabError(f"{out} is not empty and holds no experiment; use another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, mine)


def _read_trial(run: Path) -> dict[str, Any]:
    summary = json.loads((run / "summary.json").read_text())
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))

    def col(key: str) -> list[float | None]:
        return [None if r.get(key, "") in ("", None) else 1.0 - float(r[key]) for r in rows]

    clean = col("clean_train_acc")  # recipe train_eval_images: the un-augmented training error
    return {
        "epochs": [int(r["epoch"]) for r in rows],
        "steps": [int(r["step"]) for r in rows],
        "train_error": col("train_acc"),
        "val_error": col("val_acc"),
        "final_train_error": col("train_acc")[-1],
        **({"clean_train_error": clean, "final_clean_train_error": clean[-1]} if clean[-1:] != [None] else {}),
        "test_error": 1.0 - summary["test_top1"],
        "seconds": summary["train_seconds"],
    }


def _arm_classes(arms: list[Arm], info: dict[str, Any]) -> dict[str, int]:
    """Each arm's class count: its own data file's when it has one (Arm.data), else the experiment's."""
    files = info.get("datasets", {})
    return {a.name: len(files[a.data]["classes"] if a.data else info["classes"]) for a in arms}


def _arm_images(arms: list[Arm], info: dict[str, Any]) -> dict[str, list[int]]:
    """Each arm's image shape (C, H, W): its own data file's when it has one and it was recorded, else the
    experiment's (a second dataset, e.g. the precision experiments' MNIST, has its own channels and size)."""
    files = info.get("datasets", {})
    return {a.name: files.get(a.data, {}).get("image_size", info["image_size"]) for a in arms}


def arm_costs(
    arms: list[Arm], image: list[int] | dict[str, list[int]], classes: int | dict[str, int]
) -> dict[str, dict[str, int]]:
    """Parameters and multiply-adds of each arm for one image of the experiment's data (the analyzer's), at the
    arm's recipe `image_size` where it sets one (the data path resizes every split to it); `image` and `classes`
    are one value for every arm, or each arm's by name."""
    import torch

    import cnnlab
    from cnnlab.train.setup import create_with_overrides

    costs = {}
    for arm in arms:
        shape = image[arm.name] if isinstance(image, dict) else image
        with torch.device("meta"):
            k = classes[arm.name] if isinstance(classes, dict) else classes
            model = create_with_overrides(arm.model, arm.model_args, num_classes=k, in_chans=shape[0])
        side = arm.recipe.get("image_size", 0)
        rep = cnnlab.analyze(model, (shape[0], side, side) if side else tuple(shape))
        costs[arm.name] = {"params": int(rep.total_params), "macs": int(rep.total_macs)}
    return costs


def run(
    exp: Experiment,
    cfg: Any,
    out: str | Path,
    *,
    scale: str = "full",
    device: str = "auto",
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """Run (or continue) every trial, then write report.md, the plots and results.json; None if stopped."""
    from cnnlab.experiments import data, report
    from cnnlab.train.loop import train
    from cnnlab.train.progress import Progress

    out = Path(out)
    arms = exp.arms(cfg)  # first: a config the arms refuse fails before any directory or data
    _check_buildable(exp, arms)
    _claim_dir(exp, cfg, out, scale)
    t0 = time.perf_counter()
    load_start = report.load_average()
    if exp.measure is not None:
        measured = exp.measure(cfg, out, device, log)
        if measured is None:  # stopped (SIGINT/SIGTERM): what it measured so far is in DIR
            log(f"stopped; continue with: {command or 'the same command'}")
            return None
        results = {"experiment": exp.name, "claim": exp.claim, "source": exp.source, "config": to_dict(cfg),
                   "scale": scale, "rule": stats.MEASUREMENT_RULE, **measured}  # fmt: skip
        return _finish(exp, cfg, results, out, [], command, device, load_start, t0, log)
    info = data.prepare(cfg, exp, out, log)
    check_arms(exp, arms, info.get("datasets", {}))
    costs = arm_costs(arms, _arm_images(arms, info), _arm_classes(arms, info))
    plan = [(seed, arm) for seed in range(cfg.seeds) for arm in arms]  # seed-major: pairs complete early
    by_name = {a.name: a for a in arms}
    weight = {a.name: max(1, costs[a.name]["macs"]) * _train_images(cfg, a) for a in arms}  # for the ETA
    total = sum(weight[a.name] for _, a in plan)
    trials, done_w, spent = [], 0, 0.0
    finished = [(trial_dir(out, arm, seed) / "summary.json").is_file() for seed, arm in plan]
    left_w = sum(weight[a.name] for (_, a), f in zip(plan, finished, strict=True) if not f)  # for the bar's ETA
    # A terminal gets a bar over the trials (ETA weighted like the log's); a log keeps only its own lines.
    with Progress(len(plan), f"{exp.name} trials", start=sum(finished), summary=False) as bar:
        log = bar.printer(log)  # lines (the trials' epoch lines too) print above the bar, not through it
        for k, (seed, arm) in enumerate(plan, 1):
            run_dir = trial_dir(out, arm, seed)
            eta = f", ETA {report.clock(spent / done_w * (total - done_w))}" if done_w and spent > 0 else ""
            if not (run_dir / "summary.json").is_file():
                log(f"trial {k}/{len(plan)}: {arm.label}, seed {seed}{eta}")
                t = time.perf_counter()
                weights = trial_dir(out, by_name[arm.weights_from], seed) if arm.weights_from else None
                recipe = trial_recipe(cfg, arm, seed, data.arm_file(out, arm.data), weights)
                resume = run_dir if (run_dir / "recipe.toml").is_file() else None

                def tlog(s: str, k: int = k) -> None:
                    log(f"  [{k}/{len(plan)}] {s}")

                result = train(recipe, run_dir, resume=resume, device=device, log=tlog)
                if result.status != "finished":
                    log(f"stopped in trial {k}/{len(plan)}; continue with: {command or 'the same command'}")
                    return None
                spent += time.perf_counter() - t
                done_w += weight[arm.name]
                _add_trial_wall(out, run_dir.name, time.perf_counter() - t)
                t0 = _add_wall(out, t0)
                left_w -= weight[arm.name]
                bar.update(0, eta=spent / done_w * left_w if done_w else None, force=True)
            else:
                log(f"trial {k}/{len(plan)}: {arm.label}, seed {seed}: finished before, read back")
            trials.append(
                {"arm": arm.name, "seed": seed, "run_dir": str(run_dir.relative_to(out)), **_read_trial(run_dir)}
            )
    results = collect(exp, cfg, arms, costs, trials, info)
    results["scale"] = scale
    if exp.evaluate is not None:  # measurements on the finished trials (e.g. test-time views, ensembles)
        t = time.perf_counter()
        results["evaluation"] = exp.evaluate(cfg, results, out, device, log)
        _add_trial_wall(out, "_evaluate", time.perf_counter() - t, add=True)  # the experiment's work, not overhead
    if exp.extra is not None:  # before the verdicts: cost claims read the analysis
        results["analysis"] = exp.extra(cfg, results)
    results["claims"] = exp.judge(cfg, results)
    return _finish(exp, cfg, results, out, trials, command, device, load_start, t0, log)


def _finish(
    exp: Experiment,
    cfg: Any,
    results: dict[str, Any],
    out: Path,
    trials: list[dict[str, Any]],
    command: str,
    device: str,
    load_start: str,
    t0: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Check the verdicts, add commands, provenance and timing, write the report."""
    from cnnlab.experiments import report

    for c in results["claims"]:
        if not c["verdict"].startswith((stats.AGREES, stats.DISAGREES, stats.INCONCLUSIVE)):
            raise RuntimeError(f"{exp.name}: verdict '{c['verdict']}' is none of the three")
    results["commands"] = [command or f"cnnlab reproduce {exp.name}", *(_trial_commands(out, trials) if trials else [])]
    results["provenance"] = report.provenance(device, load_start)
    if exp.measure is not None and getattr(cfg, "threads", 0):  # the measure set them and has put them back
        results["provenance"]["threads"] = cfg.threads
    _add_wall(out, t0)
    results["timing"] = {
        # over every invocation (a resumed or re-reported run adds its own time), so "a full run" stays honest
        "wall_seconds": round(json.loads((out / "wall.json").read_text())["seconds"], 1),
    }
    if trials:
        results["timing"]["trial_train_seconds"] = {f"{t['arm']}-seed{t['seed']}": t.pop("seconds") for t in trials}
        walls = out / "trial_walls.json"
        if walls.is_file():  # the framework's own share: everything the wall clock holds beyond the train() calls
            inside = sum(json.loads(walls.read_text()).values())
            results["timing"]["trials_wall_seconds"] = round(inside, 1)
            results["timing"]["framework_share"] = round(results["timing"]["wall_seconds"] / inside - 1, 4)
    report.write(exp, cfg, results, out)
    log(f"report: {out / 'report.md'}")
    return results


def _check_buildable(exp: Experiment, arms: list[Arm]) -> None:
    """Build every arm on the meta device (no memory, no data): a spec override the model refuses (e.g. an even
    kernel) is one line before the directory is claimed, so the corrected command is not refused as another run."""
    import torch

    from cnnlab.train.setup import create_with_overrides

    for arm in arms:
        with torch.device("meta"):
            create_with_overrides(
                arm.model, arm.model_args, num_classes=exp.min_classes, in_chans=exp.needs_channels or 3
            )


def _add_wall(out: Path, since: float) -> float:
    """Add the wall time since `since` to out/wall.json; returns now (the next interval's start)."""
    from cnnlab.fileio import write_json

    now, path = time.perf_counter(), out / "wall.json"
    prior = json.loads(path.read_text())["seconds"] if path.is_file() else 0.0
    write_json(path, {"seconds": prior + now - since})
    return now


def _add_trial_wall(out: Path, trial: str, seconds: float, add: bool = False) -> None:
    """out/trial_walls.json: each trial's train() call, start to return (its data, steps, evaluation, checkpoints),
    and "_evaluate", the experiment's evaluate hook summed over invocations (`add`). A trial killed and resumed
    counts only its last call, so the framework share errs high, never low."""
    from cnnlab.fileio import write_json

    path = out / "trial_walls.json"
    walls = json.loads(path.read_text()) if path.is_file() else {}
    walls[trial] = round(seconds + (walls.get(trial, 0.0) if add else 0.0), 3)
    write_json(path, walls)


def _trial_commands(out: Path, trials: list[dict[str, Any]]) -> list[str]:
    first = shlex.quote(str(out / trials[0]["run_dir"])) if trials else "RUN"
    return [f"cnnlab eval {first}  # any trial is a run directory", f"cnnlab train --resume {first}  # continue one"]


def collect(exp: Experiment, cfg: Any, arms: list[Arm], costs: dict, trials: list[dict], info: dict) -> dict[str, Any]:
    """Per-arm mean ± std over seeds of each final metric."""
    summary = {}
    for arm in arms:
        mine = sorted((t for t in trials if t["arm"] == arm.name), key=lambda t: t["seed"])
        summary[arm.name] = {
            "label": arm.label,
            "model": arm.model,
            "model_args": dict(arm.model_args),
            **({"data": arm.data} if arm.data else {}),  # only where arms differ in data: other results unchanged
            **({"weights_from": arm.weights_from} if arm.weights_from else {}),
            **costs[arm.name],
            "test_error": stats.mean_std([t["test_error"] for t in mine]),
            "final_train_error": stats.mean_std([t["final_train_error"] for t in mine]),
        }
        if mine and all("final_clean_train_error" in t for t in mine):
            summary[arm.name]["clean_train_error"] = stats.mean_std([t["final_clean_train_error"] for t in mine])
    return {
        "experiment": exp.name,
        "claim": exp.claim,
        "source": exp.source,
        "config": to_dict(cfg),
        "data": info,
        "arms": summary,
        "trials": trials,
        "rule": stats.RULE,
    }


def per_seed(results: dict[str, Any], arm: str, metric: str) -> list[float]:
    """One arm's metric, ordered by seed (what the paired comparisons read)."""
    rows = sorted((t for t in results["trials"] if t["arm"] == arm), key=lambda t: t["seed"])
    return [t[metric] for t in rows]


def compare(
    results: dict[str, Any],
    key: str,
    text: str,
    metric: str,
    lower: str,
    higher: str,
    published: str,
    margin: float = 0.0,
    unit: str = "pp",
) -> dict[str, Any]:
    """A directional claim: `higher`'s metric is above `lower`'s (minus `margin`), judged with stats.directional.
    `unit` "pp": the metric is a fraction, printed in percentage points; anything else (e.g. "steps") prints the
    metric as it is, with that unit."""
    d = stats.paired(per_seed(results, lower, metric), per_seed(results, higher, metric))
    verdict = stats.directional(d, margin)
    k, digits = (100, 2) if unit == "pp" else (1, 1)
    half = "" if d["half_width"] is None else f" ± {k * d['half_width']:.{digits}f}"
    within = f"; claimed > -{k * margin:.1f}" if margin else ""
    ours = f"{higher} - {lower} = {k * d['mean']:+.{digits}f}{half} {unit} ({metric}, {d['n']} seeds{within})"
    return {
        "key": key,
        "kind": "directional",
        "text": text,
        "metric": metric,
        "lower": lower,
        "higher": higher,
        "margin": margin,
        "difference": d,
        "ours": ours,
        "published": published,
        "verdict": f"{verdict}: {ours}",
    }


def exact_claim(
    key: str, text: str, measured: Any, expected: Any, published: str, rel_tol: float = 0.0, unit: str = ""
) -> dict[str, Any]:
    """A cost claim: the analyzer's `measured` count (or shape) against the paper's formula (`expected`)."""
    if isinstance(measured, (int, float)) and isinstance(expected, (int, float)):
        verdict = stats.exact(measured, expected, rel_tol)
        m, e = (f"{x:,}" if isinstance(x, int) else f"{x:.6f}" for x in (measured, expected))
    else:  # a shape: equal or not
        verdict = stats.AGREES if measured == expected else stats.DISAGREES
        m, e = " x ".join(map(str, measured)), " x ".join(map(str, expected))
    tol = f" (within {100 * rel_tol:g}%)" if rel_tol >= 1e-6 else ""  # smaller: float rounding only
    ours = f"analyzer {m}{unit}, formula {e}{unit}{tol}"
    return {
        "key": key,
        "kind": "exact",
        "text": text,
        "measured": measured,
        "expected": expected,
        "rel_tol": rel_tol,
        "ours": ours,
        "published": published,
        "verdict": f"{verdict}: {ours}",
    }


_TRAINING_ONLY = ("seeds", "train_images", "test_images", "val_fraction", "epochs", "lr", "weight_decay", "augment",
                  "checkpoint_every")  # fmt: skip
CIFAR10_TRAIN = 50_000  # the training set size a config with train_images = 0 is costed at


def plan(exp: Experiment, cfg: Any, image: tuple[int, int, int] = (3, 32, 32), classes: int = 10) -> list[str]:
    """The trials a config runs and their cost from the analyzer, without running anything.

    Training cost is counted as 3x the forward multiply-adds per image (the backward pass computes two
    products per forward one: gradients for the inputs and for the weights), times the images trained on."""
    from cnnlab.experiments.report import clock

    arms = exp.arms(cfg)
    if exp.measure is not None:
        return [f"a measurement, not trials: nothing to cost from the analyzer; it times what its config names "
                f"({', '.join(f'{k} = {v}' for k, v in to_dict(cfg).items() if k not in _TRAINING_ONLY)})"]  # fmt: skip
    costs = arm_costs(arms, list(image), classes)
    lines, total = [], 0.0
    for arm in arms:
        images = _train_images(cfg, arm)
        macs = 3 * costs[arm.name]["macs"] * images
        total += macs * cfg.seeds
        lines.append(
            f"{arm.label}: {costs[arm.name]['params']:,} params, {costs[arm.name]['macs'] / 1e6:.1f}M MACs/image, "
            f"{cfg.seeds} seed(s) x {images:,.0f} images = {_macs(cfg.seeds * macs)} of training"
        )
    lines.append(
        f"total: {len(arms) * cfg.seeds} trials, {_macs(total)} (3 x forward MACs per training image); "
        f"at an assumed sustained 10 TMAC/s (a recent GPU in fp32) about {clock(total / 1e13)}"
    )
    return lines


def _train_images(cfg: Any, arm: Arm) -> float:
    """The images one trial trains on: steps x batch for a step budget (recipe `iterations`, whatever its
    data), else the config's epochs over its training subset less val."""
    steps = arm.recipe.get("iterations", 0)
    if steps:
        return float(steps * arm.recipe.get("batch_size", cfg.batch_size))
    return (cfg.train_images or CIFAR10_TRAIN) * (1 - cfg.val_fraction) * cfg.epochs


def _macs(n: float) -> str:
    return f"{n / 1e15:.2f} PMAC" if n >= 1e14 else f"{n / 1e12:.1f} TMAC"
