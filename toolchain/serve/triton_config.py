"""A hosted model's configuration in Triton's format (config.pbtxt's schema, as JSON).

Triton serves it at GET /v2/models/{m}/config and over gRPC ModelConfig; Triton's clients and
perf_analyzer read it before they send anything (perf_analyzer refuses a server without it). The
values describe what `toolchain serve` really does: its batch limit, queue delay and one CPU instance.
"""

from __future__ import annotations

import json
from typing import Any

from toolchain.serve.batcher import BatchConfig
from toolchain.serve.models import Model


def model_config(model: Model, batch: BatchConfig) -> dict[str, Any]:
    """JSON as Triton prints it (protobuf JSON names; dims without the batch dimension)."""

    def tensors(specs) -> list[dict[str, Any]]:
        return [{"name": t.name, "data_type": f"TYPE_{t.datatype}", "dims": t.shape[1:]} for t in specs]

    config: dict[str, Any] = {
        "name": model.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": batch.max_batch_size,
        "input": tensors(model.inputs),
        "output": tensors(model.outputs),
        "instance_group": [{"name": f"{model.name}_0", "count": 1, "kind": "KIND_CPU"}],
        "parameters": {
            k: {"string_value": v if isinstance(v, str) else json.dumps(v, sort_keys=True)}
            for k, v in model.parameters.items()
        },
        "model_transaction_policy": {"decoupled": False},
    }
    if batch.enabled:
        config["dynamic_batching"] = {
            "max_queue_delay_microseconds": str(round(batch.max_queue_delay_ms * 1000)),
        }
    return config
