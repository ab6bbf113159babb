"""Regenerate the committed Python modules from grpc_predict_v2.proto with grpcio-tools.

    .venv/bin/python -m toolchain.edge.v2grpc.generate          # rewrite the modules
    .venv/bin/python -m toolchain.edge.v2grpc.generate --check  # exit 1 when they are out of date

The generated modules are committed (not generated at install time) because the device copy of the
edge runtime (build/rpi/device/) and `pip install 'toolchain[device]'` must work without grpcio-tools
or a compiler step; tests/test_serve_grpc.py runs --check so the proto and the modules cannot drift.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent  # the directory that holds the `toolchain` package
PROTO = HERE / "grpc_predict_v2.proto"
OUTPUTS = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def generate(out_root: Path) -> dict[str, str]:
    """Run protoc (grpcio-tools) into out_root; the generated modules' text by file name."""
    from grpc_tools import protoc  # lazily: grpcio-tools is a dev dependency only

    rel = PROTO.relative_to(ROOT)
    code = protoc.main(
        [
            "protoc",
            f"-I{ROOT}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            str(rel),
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed on {PROTO} (exit {code})")
    return {name: (out_root / rel.parent / name).read_text() for name in OUTPUTS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
    stale = [n for n, text in fresh.items() if not (HERE / n).is_file() or (HERE / n).read_text() != text]
    if args.check:
        for n in stale:
            print(f"{HERE / n} is out of date: run python -m toolchain.edge.v2grpc.generate", file=sys.stderr)
        return 1 if stale else 0
    for n in stale:
        (HERE / n).write_text(fresh[n])
        print(f"wrote {HERE / n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
