"""`cnnlab formats [FMT...]`: number formats with their range, step and smallest values (cnnlab.precision)."""

from __future__ import annotations

import argparse

HELP = "list number formats (fp16, bf16, fp8, fixed point, binary): range, step, smallest values"
DEFAULT = ("fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fixed<4,12>", "fixed<8,8>", "binary")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "formats", nargs="*", metavar="FMT", help="formats to show, e.g. fp16 'fixed<2,14>' (default: a set of each)"
    )


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.4g}"
    return f"{v:g}"


def run(args: argparse.Namespace) -> int:
    from cnnlab.precision.formats import parse_format

    fmts = [parse_format(f) for f in (args.formats or DEFAULT)]  # every name checked before anything prints
    head = ["format", "bits", "min", "max", "step", "smallest normal", "smallest subnormal"]
    body = []
    for f in fmts:
        d = f.describe()
        body.append([f.name, str(f.bits), _num(d["min"]), _num(d["max"]), _num(d["step"]),
                     _num(d["smallest_normal"]), _num(d["smallest_subnormal"])])  # fmt: skip
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    for row in [head, ["-" * w for w in widths], *body]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print(
        "step: the spacing just above 1.0 for a float (its machine epsilon), 2^-FL for fixed point; fixed point "
        "saturates at its range, fp8_e4m3 at +-448, the other floats overflow to inf"
    )
    return 0
