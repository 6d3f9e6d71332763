"""`cnnlab main`: the job `make run` runs. Until the training engine lands, it prints the zoo table."""

from __future__ import annotations

import argparse

from cnnlab.cli import models

HELP = "the main job that `make run` runs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    return models.run(argparse.Namespace(pattern="*", json=False))
