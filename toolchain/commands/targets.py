"""`toolchain targets`: list the deployment targets, one line each."""

from __future__ import annotations

import argparse

from toolchain.targets import list_targets


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p


def run(args: argparse.Namespace) -> int:
    targets = list_targets()
    width = max((len(t.name) for t in targets), default=0)
    for t in targets:
        print(f"{t.name.ljust(width)}  {t.kind:<8}  {t.description}")
    return 0
