"""`cnnlab analyze NAME [--input 3x224x224] [--batch N] [--format text|md|csv|json] [--depth N]`."""

from __future__ import annotations

import argparse
import re

from cnnlab.errors import CnnlabError

HELP = "per-layer table of a model: output shape, memory, params, MACs, receptive field"


def parse_input(text: str, channels: int | None = None) -> tuple[int, ...]:
    """'3x224x224' -> (3, 224, 224); '224x224' and '224' take the model's default channel count."""
    parts = re.split(r"[x,*× ]+", text.strip().lower())
    bad = not all(p.isdigit() for p in parts) or any(int(p) == 0 for p in parts) or len(parts) > 3
    if not text.strip() or bad:
        raise CnnlabError(f"--input: expected CxHxW of positive integers such as 3x224x224, got '{text}'")
    dims = tuple(int(p) for p in parts)
    if len(dims) == 1:
        dims = (dims[0], dims[0])
    if len(dims) == 2:
        dims = (channels if channels is not None else 3, *dims)
    return dims


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="a zoo name (see `cnnlab models`), or torchvision:NAME / timm:NAME")
    p.add_argument("--input", default=None, help="CxHxW, HxW or S (default: the model's input size)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--format", choices=("text", "md", "csv", "json"), default="text")
    p.add_argument("--depth", type=int, default=None, help="collapse the table to this module depth")
    p.add_argument("--train", action="store_true", help="analyse the training-mode forward (aux heads, dropout)")
    p.add_argument(
        "--optimizer",
        choices=("sgd", "sgd_momentum", "adam", "adamw"),
        default="sgd_momentum",
        help="optimizer state counted in the training memory estimate",
    )
    p.add_argument("--strict", action="store_true", help="fail on ops without a cost formula")
    p.add_argument(
        "--dtype",
        default="fp32",
        metavar="FMT",
        help="memory at this number format: fp32 (default), fp16, bf16, fp8_e4m3, fp8_e5m2, fixed<IL,FL>, binary; "
        "parameters, gradients and activations at FMT, buffers, optimizer state and fp32 master weights kept "
        "(cnnlab formats lists them)",
    )


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis import analyze, resolve_model

    size = None
    if args.input is not None:
        _, default = resolve_model(args.name)  # also checks the name before anything else
        size = parse_input(args.input, default[0])
    if args.depth is not None and args.depth < 0:
        raise CnnlabError(f"--depth must be >= 0, got {args.depth}")
    from cnnlab.precision.formats import parse_format

    fmt = parse_format(args.dtype)  # checked before the model is built
    rep = analyze(
        args.name,
        input_size=size,
        batch_size=args.batch,
        strict=args.strict,
        depth=args.depth,
        train=args.train,
        optimizer=args.optimizer,
    )
    from cnnlab.precision.memory import at_format

    rep = at_format(rep, fmt)
    render = {"text": rep.to_text, "md": rep.to_markdown, "csv": rep.to_csv}
    print(rep.to_json() if args.format == "json" else render[args.format](), end="" if args.format != "json" else "\n")
    return 0
