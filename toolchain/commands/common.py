"""Arguments shared by several commands."""

from __future__ import annotations

import argparse


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="project TOML (default: the built-in default project)")


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="directory with one folder per dataset (mnist/, fashion-mnist/); "
        "default: $TOOLCHAIN_DATA_DIR, else the user cache (downloads on first use)",
    )


def add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="replace --out even if it holds files the toolchain did not write (they are deleted)",
    )
