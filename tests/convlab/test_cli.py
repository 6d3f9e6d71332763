"""`cnnlab conv check|bench` end to end (tiny grid)."""

from __future__ import annotations

import csv

from cnnlab.cli import main


def test_conv_check_prints_the_table(capsys):
    assert main(["conv", "check", "--dtypes", "float32,bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "winograd6" in out and "bfloat16" in out
    assert "FAIL" not in out
    assert "warns" in out  # bfloat16 Winograd at tile 4 and 6


def test_conv_bench_tiny_writes_csv_and_plot(tmp_path, capsys):
    csv_path, png = tmp_path / "r.csv", tmp_path / "p.png"
    rc = main(
        [
            "conv",
            "bench",
            "--grid",
            "tiny",
            "--rounds",
            "1",
            "--clock",
            "cpu",
            "--threads",
            "1",
            "--out",
            str(csv_path),
            "--plot",
            str(png),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "threads" in out and "clock covers" in out and "Findings" in out and "clock: cpu" in out
    rows = list(csv.DictReader(csv_path.open()))
    assert {r["algorithm"] for r in rows} == {"torch", "im2col", "winograd4", "winograd4+cached", "fft"}
    assert "winograd4+cached" in out.split("Findings")[1]
    assert all(float(r["median_ms"]) > 0 and float(r["gflops"]) > 0 for r in rows)
    assert png.stat().st_size > 1000


def test_conv_bad_input_exits_2(capsys):
    assert main(["conv", "bench", "--grid", "huge"]) == 2
    assert "unknown benchmark grid 'huge'" in capsys.readouterr().err
    assert main(["conv", "check", "--dtypes", "float8"]) == 2
