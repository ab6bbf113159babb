"""C text for model_data.h / model_data.c from a HeadIR (pure string generation, no I/O).

Arrays are `const`, 4-byte aligned and named tc_<layer>_<what>; the header comment lists every array
with its shape and bytes. Float constants are printed as the shortest decimal that reads back to the
same float32 (C compilers round decimal constants correctly), so the data is exact.

`array_specs(shape)` lists the arrays from the IR's structure alone (names, C types, sizes): the memory
predictor and the planner use it; `all_arrays(ir)` fills the same list with the IR's values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.ir.head import HASH_LEN, HeadIR, HeadShape
from toolchain.ir.layers import Layer, LayerKind, LayerShape

KIND_MACRO = {
    LayerKind.DENSE: "TC_LAYER_DENSE",
    LayerKind.TABLE: "TC_LAYER_TABLE",
    LayerKind.AFFINE: "TC_LAYER_AFFINE",
}
C_TYPES = {
    np.dtype(np.int8): "int8_t",
    np.dtype(np.uint8): "uint8_t",
    np.dtype(np.uint16): "uint16_t",
    np.dtype(np.int32): "int32_t",
    np.dtype(np.float32): "float",
}
U16_MAX = 0xFFFF


@dataclass(frozen=True)
class ArraySpec:
    """One const array of model_data.c, from the structure alone."""

    name: str
    dtype: np.dtype  # element type, one of C_TYPES
    shape: tuple[int, ...]  # logical shape for the comment
    what: str
    layer: str | None  # the layer whose values fill it (None: the model hash)
    field: str  # which values: w, bias, bias_folded, mult, shift, idx, hash

    @property
    def count(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize

    @property
    def ctype(self) -> str:
        return C_TYPES[self.dtype]


@dataclass(frozen=True)
class CArray:
    spec: ArraySpec
    data: np.ndarray  # 1-D, spec.dtype, spec.count elements

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.spec.shape

    @property
    def what(self) -> str:
        return self.spec.what

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    @property
    def ctype(self) -> str:
        return self.spec.ctype


def c_float(v: float) -> str:
    f = np.float32(v)
    if not np.isfinite(f):
        raise ValueError(f"non-finite float constant {v!r}")
    return np.format_float_scientific(f, unique=True, trim="-") + "f"


def _c_values(arr: CArray) -> list[str]:
    if arr.data.dtype == np.float32:
        return [c_float(v) for v in arr.data]
    return [str(int(v)) for v in arr.data]


def _array_text(arr: CArray, per_line: int) -> str:
    vals = _c_values(arr)
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)] or ["0"]
    body = ",\n    ".join(lines)
    return f"const {arr.ctype} {arr.name}[{max(1, len(arr.data))}] TC_ALIGN(4) = {{\n    {body}\n}};\n"


def fold_bias(layer: Layer) -> np.ndarray:
    """int8: bias - x_zp * sum_m w[r, m], so kernels multiply raw int8 inputs (exact in int32)."""
    s = layer.w.astype(np.int64).sum(axis=1)
    folded = layer.bias.astype(np.int64) - int(layer.quant["in_zp"]) * s
    if np.any(np.abs(folded) >= 2**31):
        raise ValueError(f"{layer.name}: folded bias does not fit int32")
    return folded.astype(np.int32)


def layer_specs(shape: HeadShape, layer: LayerShape) -> list[ArraySpec]:
    p = f"tc_{layer.name}"
    rows = (layer.n_out,)
    wshape = (layer.n_out, layer.d_in)
    dt = shape.dtype.numpy.newbyteorder("=")
    out = [ArraySpec(f"{p}_w", dt, wshape, f"packed weights [{layer.n_out}][{layer.d_in}]", layer.name, "w")]
    if shape.dtype.quantized:
        i32 = np.dtype(np.int32)
        out += [
            ArraySpec(
                f"{p}_bias", i32, rows, "bias with input zero point folded in", layer.name, "bias_folded"
            ),
            ArraySpec(f"{p}_mult", i32, rows, "requant multiplier", layer.name, "mult"),
            ArraySpec(f"{p}_shift", np.dtype(np.int8), rows, "requant shift", layer.name, "shift"),
        ]
    else:
        out.append(ArraySpec(f"{p}_bias", np.dtype(np.float32), rows, "bias", layer.name, "bias"))
    if layer.kind is LayerKind.TABLE:
        idx = np.dtype(np.uint8 if layer.index_bytes == 1 else np.uint16)
        out.append(ArraySpec(f"{p}_idx", idx, wshape, "index table", layer.name, "idx"))
    return out


def array_specs(shape: HeadShape) -> list[ArraySpec]:
    out = [ArraySpec("tc_model_hash", np.dtype(np.uint8), (HASH_LEN,), "hash", None, "hash")]
    for layer in shape.layers:
        out += layer_specs(shape, layer)
    return out


def _values(ir: HeadIR, spec: ArraySpec) -> np.ndarray:
    if spec.field == "hash":
        return np.frombuffer(bytes.fromhex(ir.model_hash), np.uint8)
    layer = next(ly for ly in ir.layers if ly.name == spec.layer)
    values = {
        "w": lambda: layer.w,
        "bias": lambda: layer.bias,
        "bias_folded": lambda: fold_bias(layer),
        "mult": lambda: layer.quant["mult"],
        "shift": lambda: layer.quant["shift"],
        "idx": lambda: layer.idx,
    }[spec.field]()
    return np.ascontiguousarray(values).astype(spec.dtype).ravel()


def all_arrays(ir: HeadIR) -> list[CArray]:
    return [CArray(spec, _values(ir, spec)) for spec in array_specs(ir.shape)]


def layer_geometry(layer: LayerShape) -> dict[str, int]:
    """Window grouping and permutation-buffer extent written into the descriptor."""
    if layer.kind is LayerKind.TABLE:
        return {"a": 0, "b": 0, "n_win": 0, "group": 0, "extent": 0}
    a, b = layer.affine
    n_win, group = layer.windows
    extent = layer.window_extent
    needs_buffer = (a, b) != (1, 0) or extent > layer.n_in
    return {"a": a, "b": b, "n_win": n_win, "group": group, "extent": extent if needs_buffer else 0}


ACC_LIMIT = 2**30  # the kernels' requantization shortcuts are exact below this (docs/c-export.md)


def accumulator_bound(layer: Layer) -> np.ndarray:
    """Largest |acc << left| per row: folded bias plus 128 · Σ|w| (raw int8 inputs), times 2^left."""
    bound = np.abs(fold_bias(layer).astype(np.int64)) + 128 * np.abs(layer.w.astype(np.int64)).sum(axis=1)
    return bound << np.maximum(layer.quant["shift"].astype(np.int64), 0)


def check_limits(ref: HeadIR) -> None:
    for ly in ref.layers:
        if ref.dtype.quantized and np.any(accumulator_bound(ly) >= ACC_LIMIT):
            raise ValueError(f"{ly.name}: int32 accumulators may reach 2^30; the int8 kernels need less")
        for what, v in (("inputs", ly.n_in), ("outputs", ly.n_out), ("in-degree", ly.d_in)):
            if v > U16_MAX:
                raise ValueError(f"{ly.name}: {v} {what} exceed the C descriptor's 16-bit fields")
        if ly.kind != LayerKind.TABLE and layer_geometry(ly.shape)["extent"] > U16_MAX:
            raise ValueError(f"{ly.name}: permutation buffer too large for a 16-bit extent")
    if ref.n_classes < 2:
        raise ValueError("the exit rule needs at least 2 classes")


def buffer_sizes(shape: HeadShape) -> dict[str, int]:
    """Elements of the static buffers: ping-pong hidden activations and the permutation buffer."""
    last = len(shape.layers) - 1
    hidden = [ly.n_out for i, ly in enumerate(shape.layers) if i not in (shape.n_head - 1, last)]
    xbuf = [layer_geometry(ly)["extent"] for ly in shape.layers if ly.kind is not LayerKind.TABLE]
    return {
        "max_hidden": max(hidden, default=0),
        "xbuf": max(xbuf, default=0),
        "max_out": max(ly.n_out for ly in shape.layers),
    }


def _descriptor(ref: HeadIR, layer: Layer) -> str:
    p = f"tc_{layer.name}"
    shape = layer.shape
    g = layer_geometry(shape)
    idx8 = idx16 = "0"
    if shape.kind is LayerKind.TABLE:
        idx8, idx16 = (f"{p}_idx", "0") if shape.index_bytes == 1 else ("0", f"{p}_idx")
    if ref.dtype.quantized:
        ptrs = f"{p}_w, {p}_bias, {p}_mult, {p}_shift"
        zp, act_min = layer.quant["out_zp"], layer.quant["act_min"]
    else:
        ptrs, zp, act_min = f"{p}_w, {p}_bias, 0, 0", 0, 0
    return (
        f"    {{ {ptrs}, {idx8}, {idx16}, {zp}, {act_min},\n"
        f"      {layer.n_in}, {layer.n_out}, {layer.d_in}, {g['a']}, {g['b']}, {g['n_win']}, {g['group']}, "
        f"{g['extent']}, {KIND_MACRO[shape.kind]}, {int(layer.relu)} }}, /* {layer.name} */"
    )


def _summary_lines(arrays: list[CArray]) -> list[str]:
    lines = [f" *   {'array':<28} {'type':<9} {'shape':<12} {'bytes':>7}"]
    for a in arrays:
        shape = "x".join(map(str, a.shape))
        lines.append(f" *   {a.name:<28} {a.ctype:<9} {shape:<12} {a.nbytes:>7}")
    lines.append(f" *   {'total':<28} {'':<9} {'':<12} {sum(a.nbytes for a in arrays):>7}")
    return lines


def _quant_macros(ref: HeadIR) -> list[str]:
    if not ref.dtype.quantized:
        return [
            "/* Exit rule: exit when top-1 minus top-2 of the float32 exit logits >= TC_EXIT_THRESHOLD. */",
            f"#define TC_EXIT_THRESHOLD {c_float(ref.exit_threshold)}",
        ]
    out = ["/* int8 quantization: real = scale * (q - zero_point). */"]
    for key, macro in (("input", "INPUT"), ("split", "SPLIT"), ("exit", "EXIT")):
        q = ref.quant[key]
        out.append(f"#define TC_{macro}_SCALE {c_float(q['scale'])}")
        out.append(f"#define TC_{macro}_ZERO_POINT ({int(q['zero_point'])})")
    out += [
        "/* Exit rule (integer): exit when top-1 minus top-2 int8 exit logit >= TC_EXIT_THRESHOLD. */",
        f"#define TC_EXIT_THRESHOLD ({int(ref.exit_threshold)})",
        "#define TC_EXIT_MARGIN TC_EXIT_THRESHOLD",
    ]
    return out


def header_text(ref: HeadIR, title: str) -> str:
    check_limits(ref)
    arrays = all_arrays(ref)
    sizes = buffer_sizes(ref.shape)
    ctype = ref.dtype.c_type
    layers = [
        f" *   {ly.name}: {ly.kind} {ly.n_in} -> {ly.n_out}, in-degree {ly.d_in}{', relu' if ly.relu else ''}"
        for ly in ref.layers
    ]
    lines = [
        "/*",
        f" * Generated by `toolchain export c` from {title}. Do not edit.",
        f" * dtype {ref.dtype}, model hash {ref.model_hash}",
        " * layers (the split activation is the output of layer TC_NUM_HEAD_LAYERS - 1):",
        *layers,
        " * const arrays (model_data.c):",
        *_summary_lines(arrays),
        " */",
        "#ifndef TC_MODEL_DATA_H",
        "#define TC_MODEL_DATA_H",
        "",
        "#include <stdint.h>",
        "",
        f"#define TC_DTYPE_{ref.dtype.upper()} 1",
        f"typedef {ctype} tc_input_t;",
        f"typedef {ctype} tc_act_t;",
        "",
        f"#define TC_INPUT_SIZE {ref.input_size}",
        f"#define TC_SPLIT_SIZE {ref.split_size}",
        f"#define TC_NUM_CLASSES {ref.n_classes}",
        f"#define TC_NUM_LAYERS {len(ref.layers)}",
        f"#define TC_NUM_HEAD_LAYERS {ref.n_head}",
        f"#define TC_MAX_HIDDEN {sizes['max_hidden']} /* elements of each ping-pong buffer */",
        f"#define TC_XBUF_SIZE {sizes['xbuf']} /* elements of the permutation buffer */",
        f"#define TC_MAX_OUT {sizes['max_out']} /* widest layer (int8: int32 accumulators) */",
        "",
        f"#define TC_MODEL_HASH_LEN {HASH_LEN}",
        f'#define TC_MODEL_HASH_HEX "{ref.model_hash}"',
        "extern const uint8_t tc_model_hash[TC_MODEL_HASH_LEN];",
        "",
        *_quant_macros(ref),
        "",
        '#include "tc_model.h"',
        "",
        "extern const tc_layer_t tc_layers[TC_NUM_LAYERS];",
        "",
        "#endif /* TC_MODEL_DATA_H */",
        "",
    ]
    return "\n".join(lines)


def source_text(ref: HeadIR, title: str) -> str:
    check_limits(ref)
    parts = [
        f"/* Generated by `toolchain export c` from {title}. Do not edit. Sizes: see model_data.h */\n",
        '#include "model_data.h"\n',
    ]
    for arr in all_arrays(ref):
        per_line = 8 if arr.data.dtype.kind == "f" else 16
        parts.append(f"/* {arr.what}: {'x'.join(map(str, arr.shape))}, {arr.nbytes} bytes */\n")
        parts.append(_array_text(arr, per_line))
    parts.append("const tc_layer_t tc_layers[TC_NUM_LAYERS] = {\n")
    parts.append("\n".join(_descriptor(ref, ly) for ly in ref.layers))
    parts.append("\n};\n")
    return "\n".join(parts)
