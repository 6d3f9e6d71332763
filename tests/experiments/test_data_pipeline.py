"""data-pipeline at its quick size: the report, the verdicts recomputed from results.json, the resume, bad input."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.experiments import runner, stats
from cnnlab.experiments.base import make_config
from cnnlab.experiments.data_pipeline import EXPERIMENT, cell_name, cells, verdict
from cnnlab.experiments.data_pipeline_stages import share_on_data
from tests.experiments.conftest import cifar_or_shapes


def _run(out: Path, changes: dict | None = None, log: list[str] | None = None) -> dict | None:
    cfg = make_config(EXPERIMENT, "quick", {"data": cifar_or_shapes(), **(changes or {})})
    return runner.run(EXPERIMENT, cfg, out, log=(log.append if log is not None else lambda s: None))


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data-pipeline") / "dp"
    assert _run(out) is not None
    return out


def test_report_figure_and_results(quick: Path) -> None:
    md = (quick / "report.md").read_text()
    assert "| pipeline | model | read |" in md and "![time per stage" in md and "## Verdicts" in md
    assert (quick / "stages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = json.loads((quick / "results.json").read_text())
    cfg = make_config(EXPERIMENT, "quick", {"data": cifar_or_shapes()})
    assert [c["key"] for c in r["claims"]] == [cell_name(*c) for c in cells(cfg)]
    for name, cell in r["cells"].items():
        assert len(cell["repeats"]) == cfg.repeats
        for rep in cell["repeats"]:  # each repeat's share is its stages' data part over their sum
            assert rep["share"] == pytest.approx(share_on_data(rep))
        assert cell["share"] == pytest.approx(statistics.median(x["share"] for x in cell["repeats"]))
        if cell["pipeline"] == "jpeg" and cell["workers"] > 0:  # decoding ran in the workers, off the main clock
            assert cell["ms"]["read"] == 0 and cell["ms"]["augment"] == 0, name


def test_verdicts_follow_the_rule_from_results_json(quick: Path) -> None:
    r = json.loads((quick / "results.json").read_text())
    for c in r["claims"]:
        assert c["kind"] == "measured" and c["published"]
        assert c["repeats"] == [x["share"] for x in r["cells"][c["key"]]["repeats"]]
        expected = verdict(c["repeats"], c["threshold"], c["side"] == "above")
        assert c["verdict"] == f"{expected}: {c['ours']}"


def test_rule_on_hand_built_cases() -> None:
    assert verdict([0.6, 0.7, 0.8], 0.5, above=True) == stats.AGREES
    assert verdict([0.6, 0.7, 0.8], 0.5, above=False) == stats.DISAGREES
    assert verdict([0.05, 0.08], 0.1, above=False) == stats.AGREES
    assert verdict([0.4, 0.7, 0.8], 0.5, above=True) == stats.INCONCLUSIVE  # the repeats span the threshold
    assert verdict([0.5, 0.7], 0.5, above=True) == stats.INCONCLUSIVE  # one on it: not clearly above
    assert verdict([0.9], 0.5, above=True) == stats.INCONCLUSIVE  # one repeat: no spread to judge


def test_resume_measures_only_the_missing_cell(quick: Path) -> None:
    files = sorted((quick / "cells").glob("*.json"))
    gone = quick / "cells" / "cache-lenet5.json"
    before = {p: p.stat().st_mtime_ns for p in files if p != gone}
    gone.unlink()
    log: list[str] = []
    assert _run(quick, log=log) is not None
    measured = [s for s in log if s.startswith("repeat ")]
    assert measured and all("cache-lenet5:" in s for s in measured)
    assert gone.is_file() and {p: p.stat().st_mtime_ns for p in before} == before
    assert json.loads((quick / "results.json").read_text())["cells"]["cache-lenet5"]["repeats"]


def test_bad_config_is_one_line_before_the_directory(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="images must be at least"):
        _run(tmp_path / "a", {"images": 100})
    with pytest.raises(UnknownNameError, match="resnet2"):
        _run(tmp_path / "b", {"models": ["lenet5", "resnet2"]})
    with pytest.raises(CnnlabError, match="augment"):
        _run(tmp_path / "c", {"augment": "flip"})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_gray_images_are_refused(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (300, 32, 32), dtype=np.uint8)  # NHW: one channel
    y = np.arange(300) % 3
    np.savez(tmp_path / "gray.npz", x_train=x, y_train=y, x_test=x[:30], y_test=y[:30])
    with pytest.raises(CnnlabError, match="RGB") as e:
        _run(tmp_path / "dp", {"data": f"npz:{tmp_path / 'gray.npz'}"})
    assert "\n" not in str(e.value)


def test_missing_torchvision_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlab.experiments.data_pipeline_stages import torchvision

    monkeypatch.setitem(sys.modules, "torchvision", None)  # import then raises ImportError
    with pytest.raises(CnnlabError, match="pip install torchvision"):
        torchvision()
