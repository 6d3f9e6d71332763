"""Every benchmark CSV says which CPU, torch and thread count its figures come from, and is named by the CPU.

The benchmarks are scripts (benchmarks/NAME.py, importing their helper `_machine` from their own directory),
so they are loaded from their files with that directory on sys.path.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch

from cnnlab import machine
from cnnlab.cli import main as cli_main

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MACHINE_COLUMNS = ("cpu", "cpu_flags", "torch", "threads")


@pytest.fixture
def load_script(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield threads
    torch.set_num_threads(threads)


def _check_machine_columns(path: Path, threads: int) -> list[dict]:
    rows = list(csv.DictReader(path.open()))
    assert rows
    desc = machine.describe()
    for r in rows:
        assert set(MACHINE_COLUMNS) <= set(r), r
        assert r["cpu"] == desc["cpu"] != ""
        assert r["cpu_flags"] == desc["cpu_flags"]  # empty only on a CPU with none of machine.SPEED_FLAGS
        assert r["torch"] == torch.__version__ and int(r["threads"]) == threads
    return rows


def test_cpu_tag_is_short_and_names_family_and_isa(load_script):
    tag = load_script("_machine").cpu_tag
    assert tag({"cpu": "AMD EPYC", "cpu_flags": "avx2 fma"}) == "epyc-avx2"
    assert tag({"cpu": "AMD EPYC 7763 64-Core Processor", "cpu_flags": "avx2 fma"}) == "epyc-avx2"
    bf16 = "avx2 fma avx512f avx512_vnni avx512_bf16"
    assert tag({"cpu": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "cpu_flags": bf16}) == "xeon-avx512bf16"
    assert tag({"cpu": "Intel(R) Xeon(R) Gold 6148", "cpu_flags": "avx2 fma avx512f"}) == "xeon-avx512"
    assert tag({"cpu": "Intel(R) Xeon(R) Platinum 8488C", "cpu_flags": f"{bf16} amx_bf16 amx_tile"}) == "xeon-amx"
    assert tag({"cpu": "12th Gen Intel(R) Core(TM) i7-12700", "cpu_flags": "avx2 fma"}) == "core-avx2"
    assert tag({"cpu": "aarch64", "cpu_flags": ""}) == "aarch64"
    here = tag()
    assert here == tag(machine.describe()) and "_" not in here and len(here) <= 24


def test_result_paths_follow_one_scheme(load_script):
    m = load_script("_machine")
    path = m.result_path("train_throughput_table_channels_last")
    assert path.parent == BENCHMARKS / "results"
    assert path.name == f"train_throughput_table_channels_last-{m.cpu_tag()}.csv"
    with pytest.raises(ValueError, match="underscores"):
        m.result_path("train-throughput")


def test_analyzer_benchmark_csv_records_the_cpu(load_script, keep_threads, tmp_path, capsys):
    out = tmp_path / "analyzer.csv"
    assert load_script("analyzer").main(["--runs", "1", "--threads", "1", "--no-zoo", "--csv", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"cpu: {machine.describe()['cpu']}")
    (row,) = _check_machine_columns(out, threads=1)
    assert float(row["analyze_resnet50_cpu_s"]) > 0 and row["runs"] == "1"


def test_conv_bench_csv_records_the_cpu(keep_threads, tmp_path):
    out = tmp_path / "conv.csv"
    argv = ["conv", "bench", "--grid", "tiny", "--rounds", "1", "--clock", "cpu", "--threads", "1"]
    assert cli_main([*argv, "--out", str(out)]) == 0
    rows = _check_machine_columns(out, threads=1)
    assert {r["algorithm"] for r in rows} >= {"torch", "im2col"}
