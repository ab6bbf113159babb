"""Deployment targets as data (one TOML file per target) and the cost data of `toolchain plan` (plan/).

Not code: this folder is installed as the package data `toolchain.share.targets` (see pyproject.toml);
this file only makes it a package so that `importlib.resources` finds it in every kind of install.
"""
