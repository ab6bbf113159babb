"""`linux` targets (Raspberry Pi, 64-bit): the edge bundle with an int8 and a float32 head.

The edge runtime needs only ai-edge-litert and numpy: `pip install 'toolchain[device]'` and
`toolchain run`, or, without installing the toolchain, `PYTHONPATH=device python3 -m toolchain.edge`.
"""

from __future__ import annotations

from pathlib import Path

from toolchain.bundle import Bundle
from toolchain.deploy.edge_bundle import build_edge
from toolchain.dtypes import DType
from toolchain.targets import BuildOptions, Target


def build(target: Target, bundle: Bundle, out: Path, options: BuildOptions) -> None:
    build_edge(target, bundle, Path(out), options, (DType.INT8, DType.FLOAT32))
