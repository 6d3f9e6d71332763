"""What CPU this is, for every figure that depends on it: the model name and the instruction-set flags that
change PyTorch's speed (AVX2, AVX-512, AVX512-BF16, AMX). Machines vary from one session to the next, so runs
(env.json) and benchmark CSVs record these beside their numbers."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# The flags that decide which kernels oneDNN and ATen pick (and whether bf16 has hardware support).
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX512-BF16 / AMX, Arm's BF16 extension


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
    return model or platform.machine(), frozenset(flags)


def cpu_model() -> str:
    """The CPU's name as the OS reports it ("AMD EPYC", "Intel(R) Xeon(R) Platinum 8488C", ...)."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """Every instruction-set flag the OS reports (empty where /proc/cpuinfo is absent)."""
    return _cpuinfo()[1]


def speed_flags() -> str:
    """The speed-relevant flags this CPU has, space-separated in SPEED_FLAGS order ("avx2 fma" on an AVX2 EPYC)."""
    have = cpu_flags()
    return " ".join(f for f in SPEED_FLAGS if f in have)


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 arithmetic instructions (AVX512-BF16, AMX-BF16, or Arm's BF16 extension)."""
    return bool(cpu_flags() & BF16_FLAGS)


def describe() -> dict[str, str]:
    """{"cpu": model, "cpu_flags": speed flags}: the columns a benchmark CSV and env.json carry."""
    return {"cpu": cpu_model(), "cpu_flags": speed_flags()}
