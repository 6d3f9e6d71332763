"""What every benchmark records about the machine it ran on, and where its results go.

Every CSV row carries `cpu`, `cpu_flags` (from cnnlab.machine.describe()), `torch`, `threads` and `cpus`
(cnnlab.timing.machine_columns, shared with `cnnlab conv bench`); every file is
benchmarks/results/<benchmark>-<cpu tag>.csv, where <benchmark> has no hyphen (underscores only) and the tag
is short and says the CPU family and its best vector extension (`epyc-avx2`, `xeon-avx512bf16`), so that
figures from different machines never overwrite each other. The tag is for the file name only: the rows name
the CPU in full.

The scripts in benchmarks/ are run as scripts (`python benchmarks/NAME.py`), so this module is found as
`_machine` on the script's own directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# Best first: the first flag the CPU has names its tag's second half.
_ISA_TAGS = (("amx_bf16", "amx"), ("avx512_bf16", "avx512bf16"), ("avx512f", "avx512"), ("avx2", "avx2"))
# Words of a model name that say nothing about the CPU family ("Intel(R) Xeon(R) Platinum 8488C" -> "xeon").
_NOISE = {"amd", "intel", "r", "tm", "genuine", "genuineintel", "authenticamd", "cpu", "processor", "gen"}


def cpu_tag(desc: Mapping[str, str] | None = None) -> str:
    """A short file-name tag for this CPU (or for `desc`, a cnnlab.machine.describe() dict): family and best
    vector extension, e.g. "epyc-avx2" for {"cpu": "AMD EPYC", "cpu_flags": "avx2 fma"}."""
    if desc is None:
        from cnnlab import machine

        desc = machine.describe()
    # Numbers ("12th Gen Intel(R) Core(TM) i7", "AMD EPYC 7763") are models within a family: left out.
    words = [w for w in re.findall(r"[a-z0-9]+", desc["cpu"].lower()) if w not in _NOISE and not w[0].isdigit()]
    family = words[0] if words else "unknown"
    flags = set(desc.get("cpu_flags", "").split())
    isa = next((tag for flag, tag in _ISA_TAGS if flag in flags), None)
    return f"{family}-{isa}" if isa else family


def cpu_line() -> str:
    """The line each benchmark prints first: which CPU the figures below come from."""
    from cnnlab import machine

    d = machine.describe()
    return f"cpu: {d['cpu']} ({d['cpu_flags'] or 'no AVX2/AVX-512 flags reported'}), {os.cpu_count()} logical cpus"


def result_path(benchmark: str, ext: str = "csv") -> Path:
    """benchmarks/results/<benchmark>-<cpu tag>.<ext>."""
    if "-" in benchmark:
        raise ValueError(f"benchmark name {benchmark!r}: use underscores, the first hyphen starts the cpu tag")
    return RESULTS / f"{benchmark}-{cpu_tag()}.{ext}"


def write_csv(path: str | Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """Write `rows` (dicts; a key missing from a row is an empty cell) plus the machine columns on every row;
    atomic (temp file, fsync, rename), so a reader never sees half a file. The writer `cnnlab conv bench`
    uses too: cnnlab.timing.write_benchmark_csv."""
    from cnnlab.timing import write_benchmark_csv

    return write_benchmark_csv(path, rows)
