"""`cnnlab models` and the CLI's handling of bad input."""

from __future__ import annotations

import json
import subprocess
import sys

from cnnlab.cli import main


def test_models_table_lists_pattern(capsys):
    assert main(["models", "lenet*"]) == 0
    out = capsys.readouterr().out
    assert "lenet5" in out and "61,706" in out
    assert "417K" in out  # LeNet-5's 416,520 multiply-adds, counted by the analyzer


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in rows]
    assert names == sorted(names)
    assert {"name", "family", "params", "macs", "input", "year"} <= set(rows[0])


def test_unknown_pattern_is_one_line_exit_2(capsys):
    assert main(["models", "lenet9*"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1


def test_console_script_has_no_traceback_on_unknown_model():
    """Through a real process: exit code 2, one line, close matches, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "models", "--json", "lenet6"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
