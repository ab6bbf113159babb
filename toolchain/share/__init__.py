"""The toolchain's data, as package data: `toolchain.share.targets` is the repository's `targets/`
folder and `toolchain.share.firmware_templates` its `firmware_templates/` folder (pyproject.toml maps
them with `package-dir`), so `importlib.resources` finds them the same way in a wheel and in a checkout
installed with `pip install -e`. Use `toolchain.paths`, not this package, to locate files."""
