"""Fixtures of the report tests: one small real run (lenet5, 1 epoch), the same run after `cnnlab eval`, and a
copy of a committed experiment directory (docs/reproduce/half)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cnnlab.cli import main
from tests.conftest import REPO, SHARED
from tests.train.conftest import _data_cache  # noqa: F401  (autouse: a private dataset cache)

DIGITS = SHARED / "data" / "digits8x8.npz"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, _data_cache) -> Path:  # noqa: F811  (the imported fixture)
    """lenet5 trained 1 epoch on the 8x8 digits (a user's clone without ../shared: the embedded shapes)."""
    data = f"npz:{DIGITS}" if DIGITS.is_file() else "shapes:train=288,test=64,classes=4"
    run = tmp_path_factory.mktemp("report") / "run"
    code = main(["train", "lenet5", "--data", data, "--epochs", "1", "--out", str(run), "--no-progress",
                 "--set", "threads=1"])  # fmt: skip
    assert code == 0 and (run / "summary.json").is_file()
    return run


@pytest.fixture
def run_dir(trained_run, tmp_path) -> Path:
    """A fresh copy of the trained run for each test (a test may remove files from it)."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.fixture(scope="session")
def evaluated_trained_run(trained_run, tmp_path_factory) -> Path:
    run = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("report-eval") / "run"))
    assert main(["eval", str(run), "--no-progress"]) == 0
    return run


@pytest.fixture
def evaluated_run(evaluated_trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(evaluated_trained_run, tmp_path / "evaluated"))


@pytest.fixture
def experiment_dir(tmp_path) -> Path:
    """docs/reproduce/half (results.json, report.md, three PNGs), copied so the test writes only in tmp."""
    return Path(shutil.copytree(REPO / "docs" / "reproduce" / "half", tmp_path / "half"))
