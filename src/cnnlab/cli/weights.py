"""`cnnlab weights NAME FILE [--out OUT.safetensors]`: check a weights file against a model, and convert it."""

from __future__ import annotations

import argparse

from cnnlab.registry import create_model

HELP = "check that a weights file (cnnlab, torchvision or timm keys) fits a model; optionally save it as safetensors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="registered model name")
    p.add_argument("file", help=".safetensors, .pt or .pth state_dict")
    p.add_argument("--out", help="write the weights with cnnlab's keys to this .safetensors file")


def run(args: argparse.Namespace) -> int:
    model = create_model(args.name, weights=args.file)
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.file}: fits {args.name} ({n:,} parameters, {model.num_classes} classes)")
    if args.out:
        from cnnlab.weights import save_state_dict

        save_state_dict(model.state_dict(), args.out)
        print(f"wrote {args.out}")
    return 0
