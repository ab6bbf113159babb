"""Firmware and kernel sources (plain compilable C) that the builds copy and compile.

Not code: this folder is installed as the package data `toolchain.share.firmware_templates` (see
pyproject.toml); this file only makes it a package so that `importlib.resources` finds it.
"""
