"""The `toolchain` command line: a thin layer over the library API.

Each subcommand lives in `toolchain/commands/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`; modules are imported only when their command runs, so `toolchain run` on a
Raspberry Pi never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from toolchain import __version__, interrupt
from toolchain.errors import ToolchainError

# name -> (module, one-line help). Order is the order of `toolchain --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("toolchain.commands.init", "write the default project config"),
    "info": ("toolchain.commands.info", "show per-junction sparsity and parameter counts"),
    "train": ("toolchain.commands.train", "train a project and write an artifact bundle"),
    "export": ("toolchain.commands.export", "export a bundle as C arrays, TFLite or ONNX"),
    "targets": ("toolchain.commands.targets", "list deployment targets"),
    "build": ("toolchain.commands.build", "train, export and compile a project for a target"),
    "flash": ("toolchain.commands.flash", "flash a build onto a board (or boot its emulator)"),
    "verify": ("toolchain.commands.verify", "check a device against the host reference over serial"),
    "serve": ("toolchain.commands.serve", "serve the tail over the KServe v2 (Open Inference) protocol"),
    "run": ("toolchain.commands.run", "edge runtime: head + exit locally, offload the rest to a server"),
    "plan": ("toolchain.commands.plan", "latency, energy, bytes, memory per split point and exit threshold"),
    "search": ("toolchain.commands.search", "least training energy to a target accuracy (RightTrain)"),
}


# Third-party modules a command may need -> the extra that installs them (a device install has
# only numpy + the `device` extra).
_EXTRAS = {
    "ai_edge_litert": "device",
    "serial": "device",
    **dict.fromkeys(
        (
            "tensorflow",
            "keras",
            "onnx",
            "onnxruntime",
            "tf2onnx",
            "matplotlib",
            "starlette",
            "uvicorn",
            "ray",
            "optuna",
            "codecarbon",
        ),
        "host",
    ),
    "tflite_micro": "tflm",
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="toolchain",
        description="Structured-sparse split MLPs: train, export, build, flash, verify, serve, plan.",
    )
    parser.add_argument("--version", action="version", version=f"toolchain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subs = {
        name: sub.add_parser(name, help=help_, description=help_) for name, (_, help_) in COMMANDS.items()
    }
    return parser, subs


def main(argv: list[str] | None = None) -> int:
    with interrupt.handling():
        try:
            return _main(argv)
        except KeyboardInterrupt:
            return _interrupted()
        except Exception:
            # A library that had Ctrl-C raised inside its native code may turn it into another
            # exception (SystemError, RuntimeError, ...): the user asked to stop, so it is a stop.
            if interrupt.received():
                return _interrupted()
            raise


def _interrupted() -> int:
    print("interrupted", file=sys.stderr)
    return 130


def _main(argv: list[str] | None) -> int:
    parser, subs = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    # Only the chosen command's module is imported (and only it adds its arguments).
    name = next((a for a in argv if not a.startswith("-")), None)
    try:
        module = importlib.import_module(COMMANDS[name][0]) if name in COMMANDS else None
    except ModuleNotFoundError as exc:
        return _missing_extra(exc, name)
    if module is not None:
        module.add_arguments(subs[name])
    args = parser.parse_args(argv)
    if args.command is None or module is None:
        parser.print_help()
        return 2
    try:
        return int(module.run(args) or 0)
    except ToolchainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        return _missing_extra(exc, args.command)


def _missing_extra(exc: ModuleNotFoundError, command: str | None) -> int:
    """A command needs a package of an extra that is not installed: say which extra, no traceback."""
    extra = _EXTRAS.get((exc.name or "").split(".")[0])
    if extra is None:
        raise exc
    print(
        f"error: `toolchain {command}` needs the Python package {exc.name!r}, which is not installed\n"
        f"  hint: pip install 'toolchain[{extra}]'",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
