"""The verify report: figures as a dict (written as JSON) and as a table on the terminal."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from toolchain import __version__
from toolchain.calibrate import softmax_confidence
from toolchain.fsutil import atomic_write_json
from toolchain.ir.fixedpoint import dequantize
from toolchain.mcu.verify.host import system_predictions
from toolchain.mcu.verify.metrics import (
    counter_stats,
    counter_unit,
    elements_match,
    error_metrics,
    first_mismatches,
    tolerance_text,
)
from toolchain.paths import default_build_dir
from toolchain.progress import table


def build_report(
    opts,
    mcu,
    manifest,
    info,
    ref,
    idx,
    y,
    *,
    device,
    reference,
    tails,
    float_outputs,
    link_stats,
    where,
    tail_engine,
) -> dict[str, Any]:
    ref_split, ref_logits, ref_taken = reference
    float_split, float_logits, bundle = float_outputs
    n = len(idx)
    ok = {
        "split": elements_match(device.split, ref_split, ref.dtype),
        "exit_logits": elements_match(device.exit_logits, ref_logits, ref.dtype),
        "exit_decision": device.exit_taken == ref_taken,
        "exit_class": device.exit_class == ref_logits.argmax(axis=1),
    }
    all_ok = np.logical_and.reduce(list(ok.values())) if n else np.ones(0, dtype=bool)
    dev_pred = _system(device.exit_taken, device.exit_class, tails[0])
    host_pred = _system(ref_taken, ref_logits.argmax(axis=1), tails[1])
    # The all-float pipeline of training: the float32 head, max-softmax exit rule.
    float_exit = softmax_confidence(float_logits) >= float(bundle.metrics.get("exit_threshold", 1.0))
    deq_split = ref.decode_split(device.split)
    deq = _dequantizer(ref)
    emulator_counter = mcu.emulator.get("counter") if mcu.emulated else None
    unit = counter_unit(info.counter_kind, info.counter_hz, emulator_counter)
    selection = "all test samples" if opts.samples is None else f"first {n} of a fixed test-set permutation"
    tolerance = tolerance_text(ref.dtype)
    return {
        "toolchain_version": __version__,
        "target": opts.target,
        "build": str(opts.build or default_build_dir(opts.target)),
        "device": {
            "where": where,
            "target": info.target,
            "protocol": f"{info.major}.{info.minor}",
            "counter": info.counter_kind,
            "counter_hz": info.counter_hz,
            "build_info": info.build_info,
        },
        "model_hash": info.model_hash,
        "dtype": ref.dtype,
        "samples": n,
        "sample_selection": selection,
        "passed": bool(np.all(all_ok)),
        "comparison": tolerance,
        "mismatches": {
            "samples": int(np.sum(~all_ok)),
            **{k: int(np.sum(~v)) for k, v in ok.items()},
            "first": first_mismatches(idx, ok),
        },
        "device_vs_reference": {
            "split": error_metrics(deq_split, ref.decode_split(ref_split)),
            "exit_logits": error_metrics(deq(device.exit_logits), deq(ref_logits)),
        },
        "device_vs_float_model": {
            "split": error_metrics(deq_split, float_split),
            "exit_logits": error_metrics(deq(device.exit_logits), float_logits),
        },
        "accuracy": {
            "device_end_to_end": _acc(dev_pred, y),
            "host_reference_end_to_end": _acc(host_pred, y),
            "agreement_with_host": _acc(dev_pred, host_pred),
            "device_exit_only": _acc(device.exit_class, y),
            "float_model_exited_only": _acc(float_logits.argmax(1)[float_exit], y[float_exit]),
        },
        "exit_rate": {
            "device": _mean(device.exit_taken),
            "host_reference": _mean(ref_taken),
            "float_model": _mean(float_exit),
        },
        "counter": counter_stats(device.counts, unit),
        "throughput": {
            "samples_per_s": n / device.seconds if device.seconds > 0 else 0.0,
            "seconds": device.seconds,
        },
        "tail": tail_engine,
        "link": asdict(link_stats),
    }


def _system(taken: np.ndarray, exit_class: np.ndarray, tail_class: np.ndarray) -> np.ndarray:
    full = np.zeros(len(taken), dtype=np.int64)
    full[~taken] = tail_class
    return system_predictions(taken, exit_class, full)


def _mean(v: np.ndarray) -> float:
    return float(np.mean(v)) if len(v) else 0.0


def _dequantizer(ref):
    if not ref.dtype.quantized:
        return lambda v: np.asarray(v, dtype=np.float32)
    q = ref.quant["exit"]
    return lambda v: dequantize(v, q["scale"], q["zero_point"])


def _acc(pred: np.ndarray, y: np.ndarray) -> float | None:
    return float(np.mean(pred == y)) if len(y) else None


def write_report(report: dict[str, Any], path: Path) -> None:
    atomic_write_json(path, report)


def _row_errors(m: dict[str, float]) -> str:
    return f"RMSE {m['rmse']:.3g}  MAE {m['mae']:.3g}  L2 rel {m['l2_relative']:.3g}  cos {m['cosine']:.6f}"


def print_report(report: dict[str, Any]) -> None:
    m, acc, c, link = report["mismatches"], report["accuracy"], report["counter"], report["link"]
    dvr, dvf, rate = report["device_vs_reference"], report["device_vs_float_model"], report["exit_rate"]
    rows = [
        ("result", "PASS" if report["passed"] else "FAIL"),
        ("samples", report["samples"]),
        ("comparison", report["comparison"]),
        ("mismatching samples", m["samples"]),
        (
            "  split / exit logits / decision / class",
            f"{m['split']} / {m['exit_logits']} / {m['exit_decision']} / {m['exit_class']}",
        ),
        ("accuracy, device + host tail", _pct(acc["device_end_to_end"])),
        ("accuracy, host reference + host tail", _pct(acc["host_reference_end_to_end"])),
        ("agreement device vs host pipeline", _pct(acc["agreement_with_host"])),
        ("exit rate device / host", f"{_pct(rate['device'])} / {_pct(rate['host_reference'])}"),
        ("split vs host reference", _row_errors(dvr["split"])),
        ("exit logits vs host reference", _row_errors(dvr["exit_logits"])),
        ("split vs float model", _row_errors(dvf["split"])),
        (f"per sample: {c['unit']}", f"mean {c['mean']:,.0f}  min {c['min']:,.0f}  max {c['max']:,.0f}"),
        ("samples/s", f"{report['throughput']['samples_per_s']:.1f}"),
        ("retransmissions / re-handshakes", f"{link['retransmissions']} / {link['rehellos']}"),
        ("tail on host", report["tail"]),
    ]
    where = report["device"]["where"]
    print(f"verify {report['target']} ({report['dtype']}, model {report['model_hash']}) via {where}")
    print(table(["check", "value"], rows))


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"
