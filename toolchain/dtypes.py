"""The arithmetic types of a deployed head + exit: one enum, every name a backend needs in one place.

`DType` is a `StrEnum`, so it serialises as "int8" / "float32" in JSON, TOML and manifests and compares
equal to those strings; code asks the enum for what differs (C type, numpy dtype, wire name, protocol
code, comparison tolerance) instead of testing `dtype == "int8"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from toolchain.errors import ToolchainError


@dataclass(frozen=True)
class _Spec:
    c_type: str  # element type in model_data.h (tc_act_t, tc_input_t)
    numpy: np.dtype  # little-endian element type on the host
    wire: str  # Open Inference Protocol (KServe v2) datatype
    wire_short: str  # the edge manifest's name for the wire format of the split tensor
    protocol_code: int  # dtype byte of the serial protocol's HELLO reply (docs/protocol.md)
    quantized: bool  # affine int8 quantization: real = scale · (q − zero_point)
    # verify: |device − reference| <= atol + rtol·|reference| per element (0, 0 = bit-exact)
    atol: float
    rtol: float


class DType(StrEnum):
    INT8 = "int8"
    FLOAT32 = "float32"

    @property
    def spec(self) -> _Spec:
        return _SPECS[self]

    @property
    def c_type(self) -> str:
        return self.spec.c_type

    @property
    def numpy(self) -> np.dtype:
        return self.spec.numpy

    @property
    def nbytes(self) -> int:
        return int(self.spec.numpy.itemsize)

    @property
    def wire(self) -> str:
        return self.spec.wire

    @property
    def quantized(self) -> bool:
        return self.spec.quantized

    @property
    def exact(self) -> bool:
        """Device and host reference must agree bit for bit."""
        return self.spec.atol == 0 and self.spec.rtol == 0

    @classmethod
    def parse(cls, value: str | DType, what: str = "dtype") -> DType:
        """The DType named `value`, or a ToolchainError naming the valid ones."""
        try:
            return cls(value)
        except ValueError:
            raise ToolchainError(
                f"unsupported {what} {value!r}",
                hint=f"use one of: {', '.join(d.value for d in cls)} (e.g. --dtype int8)",
            ) from None

    @classmethod
    def from_protocol_code(cls, code: int) -> DType | None:
        return next((d for d in cls if d.spec.protocol_code == code), None)


# float32 tolerance: with -ffp-contract=off on both sides and the reference's fixed summation order the
# device is exact in practice; the tolerance only absorbs a libm or compiler that rounds differently.
_SPECS: dict[DType, _Spec] = {
    DType.INT8: _Spec("int8_t", np.dtype(np.int8), "INT8", "int8", 1, True, 0.0, 0.0),
    DType.FLOAT32: _Spec("float", np.dtype("<f4"), "FP32", "fp32", 2, False, 1e-5, 1e-5),
}

DTYPES: tuple[DType, ...] = tuple(DType)
