"""`cnnlab main` (the `make run` job) at a toy size: it trains, then prints what the issue asks for."""

from __future__ import annotations

from cnnlab.cli import main


def test_main_job_prints_accuracy_per_class_complexity_and_paths(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["main", "--out", str(run), "--no-progress", "--set", 'data="shapes:train=400,test=100"',
            "--set", "epochs=1", "--set", "batch_size=64", "--set", "threads=1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "test accuracy: top-1" in out and "per-class accuracy:" in out
    assert "269,722 parameters" in out  # resnet20 (He et al. 2015, Table 6: 0.27M)
    for what in ("run directory:", "checkpoint:", "plots:"):
        assert what in out
    assert (run / "confusion.png").is_file() and (run / "curves.png").is_file()
    assert (run / "summary.json").is_file()
