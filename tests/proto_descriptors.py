"""The shape of a protobuf protocol as plain JSON: messages (field number, type, repeated, type name),
enums and RPCs. Run as a script in the tritonclient venv, it prints Triton's (tritonclient 2.51's
generated modules); tests/test_serve_grpc.py compares ours with it. Standard library + protobuf."""

from __future__ import annotations

import json
from typing import Any


def describe(files: list[Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"messages": {}, "enums": {}, "rpcs": {}}

    def enum(e: Any) -> None:
        out["enums"][e.full_name] = {v.name: v.number for v in e.values}

    def message(m: Any) -> None:
        fields = {}
        for f in m.fields:
            ref = f.message_type or f.enum_type
            # protobuf 7 dropped FieldDescriptor.label; 4.x (tritonclient's) has no is_repeated.
            repeated = f.is_repeated if hasattr(f, "is_repeated") else f.label == f.LABEL_REPEATED
            fields[f.name] = [f.number, f.type, repeated, ref.full_name if ref else ""]
        out["messages"][m.full_name] = fields
        for n in m.nested_types:
            message(n)
        for e in m.enum_types:
            enum(e)

    for fd in files:
        for m in fd.message_types_by_name.values():
            message(m)
        for e in fd.enum_types_by_name.values():
            enum(e)
        for s in fd.services_by_name.values():
            for r in s.methods:
                out["rpcs"][f"{s.full_name}.{r.name}"] = [
                    r.input_type.full_name,
                    r.output_type.full_name,
                    r.client_streaming,
                    r.server_streaming,
                ]
    return out


if __name__ == "__main__":
    from tritonclient.grpc import model_config_pb2, service_pb2

    print(json.dumps(describe([service_pb2.DESCRIPTOR, model_config_pb2.DESCRIPTOR])))
