"""parallel_report.{json,md,png}: predicted vs measured costs per node, accuracy, energy, bytes."""

from __future__ import annotations

import io
from typing import Any

from toolchain.config import ProjectConfig
from toolchain.parallel.costs import Tally, node_costs
from toolchain.parallel.placement import Placement
from toolchain.progress import markdown_table

BUSY_NOTE = (
    "host busy time = thread CPU time inside each actor's methods (forward, backward, update, "
    "wire codec, weights read/write), single-threaded BLAS; robust to a shared machine"
)
MACS_NOTE = (
    "MACs are analytic per sample (sparse edges; backward = weight + input gradients) times the "
    "samples each instance actually processed; the host computes dense masked matmuls"
)
BYTES_NOTE = (
    "bytes = len() of the messages each actor serialized and sent to another node (split "
    "activations with labels, gradients, weights); Ray's own framing is not counted"
)


def _ratio(measured: float, predicted: float) -> float | None:
    return measured / predicted if predicted else None


def _cumulative(placement: Placement, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = set(Tally.__dataclass_fields__)
    out = []
    for h in history:
        tallies = {n: Tally(**{k: v for k, v in m.items() if k in keys}) for n, m in h["meters"].items()}
        c = node_costs(placement, tallies, "measured")["total"]
        row = {k: v for k, v in h.items() if k != "meters"}
        row.update(energy_j=c["energy_j"], device_energy_j=c["device_energy_j"], bytes=c["bytes"])
        out.append(row)
    return out


def build_report(
    cfg: ProjectConfig,
    placement: Placement,
    predicted: dict[str, Any],
    measured: dict[str, Any],
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    run: dict[str, Any],
) -> dict[str, Any]:
    comparison = {}
    for name in placement.nodes:
        p, m = predicted["nodes"][name], measured["nodes"][name]
        pb, mb = sum(p["bytes_sent"].values()), sum(m["bytes_sent"].values())
        comparison[name] = {
            "bytes_sent": {"predicted": pb, "measured": mb, "ratio": _ratio(mb, pb)},
            "host_busy_s": {
                "predicted": p["host_busy_s"],
                "measured": m["host_busy_s"],
                "ratio": _ratio(m["host_busy_s"], p["host_busy_s"]),
            },
            "macs": {
                "predicted": p["macs_forward"] + p["macs_backward"],
                "measured": m["macs_forward"] + m["macs_backward"],
            },
        }
    pt, mt = predicted["total"], measured["total"]
    summary = {
        "placement": placement.name,
        "wire": placement.wire,
        "final_accuracy": metrics["final_accuracy"],
        "exit_accuracy": metrics["exit_accuracy"],
        "bytes": mt["bytes"],
        "predicted_bytes": pt["bytes"],
        "bytes_ratio": _ratio(mt["bytes"], pt["bytes"]),
        "host_busy_s": mt["host_busy_s"],
        "predicted_host_busy_s": pt["host_busy_s"],
        "busy_ratio": _ratio(mt["host_busy_s"], pt["host_busy_s"]),
        "energy_j": mt["energy_j"],
        "device_energy_j": mt["device_energy_j"],
        "predicted_energy_j": pt["energy_j"],
        "wall_s": run["wall_s"],
        "samples_seen": run["samples_seen"],
    }
    return {
        "format": REPORT_FORMAT_NAME,
        "version": 1,
        "summary": summary,
        "placement": {
            "name": placement.name,
            "description": placement.description,
            "source": placement.source,
            "wire": placement.wire,
            "shards": placement.shards,
            "replicas": placement.replicas.__dict__,
            "nodes": {
                n: {"profile": v.profile.name, "kind": v.profile.kind} for n, v in placement.nodes.items()
            },
            "instances": [
                {
                    "name": i.name,
                    "block": i.block,
                    "node": i.node,
                    "shard": i.shard,
                    "next": i.next,
                    "exit_to": i.exit_to,
                }
                for i in placement.instances.values()
            ],
        },
        "run": run,
        "measured": measured,
        "predicted": {k: v for k, v in predicted.items() if k != "sources"},
        "comparison": comparison,
        "history": _cumulative(placement, history),
        "sources": predicted["sources"],
        "notes": [BUSY_NOTE, MACS_NOTE, BYTES_NOTE],
    }


REPORT_FORMAT_NAME = "toolchain-parallel-report"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.3f}"


def render_markdown(report: dict[str, Any], command: str | None = None) -> str:
    s, run = report["summary"], report["run"]
    lines = [f"# Parallel training: {s['placement']}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        f"{report['placement']['description']}",
        "",
        f"Test accuracy {s['final_accuracy'] * 100:.2f} % (exit {s['exit_accuracy'] * 100:.2f} %) after "
        f"{run['samples_seen']:,} samples ({run['epochs']} epochs, batch {run['batch_size']}), wire "
        f"{s['wire']}, {run['rounds']} rounds, wall {run['wall_s']:.1f} s on this host "
        f"(Ray {run['ray_address']}, {run['ray_nodes']} node(s); load average before/after "
        f"{run['load_average_before'][0]:.2f}/{run['load_average_after'][0]:.2f}); "
        f"restarts {run['restarts']}.",
        "",
        "## Per node (measured)",
        "",
    ]
    rows = []
    for name, n in report["measured"]["nodes"].items():
        c = report["comparison"][name]
        rows.append(
            [
                name,
                n["profile"],
                f"{(n['macs_forward'] + n['macs_backward']) / 1e9:.3f}",
                f"{n['host_busy_s']:.2f}",
                f"{c['host_busy_s']['predicted']:.2f}",
                f"{n['node_time_s']:.2f}",
                f"{sum(n['bytes_sent'].values()):,}",
                f"{c['bytes_sent']['predicted']:,}",
                f"{sum(n['bytes_received'].values()):,}",
                f"{n['energy_compute_j']:.3g}",
                f"{n['energy_comm_j']:.3g}",
                f"{n['energy_j']:.3g}",
            ]
        )
    lines.append(
        markdown_table(
            [
                "node",
                "profile",
                "GMAC",
                "host busy s",
                "predicted busy s",
                "node time s",
                "bytes sent",
                "predicted sent",
                "bytes received",
                "compute J",
                "comm J",
                "energy J",
            ],
            rows,
        )
    )
    lines += ["", "## Totals", ""]
    lines.append(
        markdown_table(
            ["", "predicted", "measured", "measured / predicted"],
            [
                [
                    "bytes on the network",
                    f"{s['predicted_bytes']:,}",
                    f"{s['bytes']:,}",
                    _fmt_ratio(s["bytes_ratio"]),
                ],
                [
                    "host busy s",
                    f"{s['predicted_host_busy_s']:.2f}",
                    f"{s['host_busy_s']:.2f}",
                    _fmt_ratio(s["busy_ratio"]),
                ],
                [
                    "energy J",
                    f"{s['predicted_energy_j']:.4g}",
                    f"{s['energy_j']:.4g}",
                    _fmt_ratio(s["energy_j"] / s["predicted_energy_j"] if s["predicted_energy_j"] else None),
                ],
                ["device energy J", "", f"{s['device_energy_j']:.4g}", ""],
            ],
        )
    )
    lines += ["", "## Per epoch", ""]
    lines.append(
        markdown_table(
            ["epoch", "val final acc", "val exit acc", "bytes", "energy J", "wall s"],
            [
                [
                    h["epoch"],
                    f"{h['val_final_accuracy']:.4f}",
                    f"{h['val_exit_accuracy']:.4f}",
                    f"{h['bytes']:,}",
                    f"{h['energy_j']:.4g}",
                    f"{h['wall_s']:.1f}",
                ]
                for h in report["history"]
            ],
        )
    )
    lines += ["", "## Where the numbers come from", ""]
    lines += [f"- {note}" for note in report["notes"]]
    by_how: dict[str, list[str]] = {}
    for name, n in report["measured"]["nodes"].items():
        by_how.setdefault(f"{n['node_time_status']}; {n['energy_status']}", []).append(name)
    lines += [f"- node time and energy of {', '.join(names)}: {how}" for how, names in by_how.items()]
    lines += [
        "",
        markdown_table(
            ["profile", "figure", "value", "unit", "status", "source"],
            [
                [r["profile"], r["name"], f"{r['value']:g}", r["unit"], r["status"], r["source"]]
                for r in report["sources"]
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


def plot_report(report: dict[str, Any]) -> bytes:
    """PNG: validation accuracy against cumulative total energy and against cumulative bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = report["history"]
    acc = [r["val_final_accuracy"] * 100 for r in h]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot([r["energy_j"] for r in h], acc, marker="o")
    a.set_xlabel("cumulative energy, all nodes (J, estimated from profiles)")
    a.set_ylabel("validation accuracy (%)")
    b.plot([r["bytes"] for r in h], acc, marker="o", color="tab:orange")
    b.set_xlabel("cumulative bytes on the network (measured)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{report['summary']['placement']}: accuracy vs energy vs bytes (one point per epoch)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def prediction_rows(pred: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per node, per epoch: what `toolchain plan --parallel` prints."""
    e = pred["epochs"]
    piloted = bool(pred["host_calibration"])
    headers = [
        "node",
        "profile",
        "kind",
        "GMAC/epoch",
        "host busy s/epoch",
        "node time s/epoch",
        "bytes sent/epoch",
        "bytes recv/epoch",
        "energy J/epoch",
    ]
    rows = []
    for name, n in pred["nodes"].items():
        rows.append(
            [
                name,
                n["profile"],
                n["kind"],
                f"{(n['macs_forward'] + n['macs_backward']) / e / 1e9:.4f}",
                f"{n['host_busy_s'] / e:.3f}" if piloted else "-",
                f"{n['node_time_s'] / e:.3f}",
                f"{sum(n['bytes_sent'].values()) / e:,.0f}",
                f"{sum(n['bytes_received'].values()) / e:,.0f}",
                f"{n['energy_j'] / e:.4g}",
            ]
        )
    t = pred["per_epoch"]
    rows.append(
        [
            "total",
            "",
            "",
            f"{(t['macs_forward'] + t['macs_backward']) / 1e9:.4f}",
            f"{t['host_busy_s']:.3f}" if piloted else "-",
            f"{t['node_time_s']:.3f}",
            f"{t['bytes']:,.0f}",
            "",
            f"{t['energy_j']:.4g}",
        ]
    )
    return headers, rows


def render_prediction(
    pred: dict[str, Any], placement: Placement, markdown: bool = False, command: str | None = None
) -> str:
    from toolchain.progress import table

    headers, rows = prediction_rows(pred)
    how = (
        "host busy time from a pilot of the placement on Ray (synthetic data, real shard sizes)"
        if pred["host_calibration"]
        else "host busy time not predicted (--no-pilot)"
    )
    head = [
        f"placement {placement.name}: {placement.description}",
        f"{pred['n_train']:,} training samples, {pred['epochs']} epochs, {pred['rounds']} rounds, wire "
        f"{placement.wire}, replicas {placement.replicas.mode} every "
        f"{placement.replicas.every or 'epoch'}; {how}",
        f"device-side energy per epoch {pred['per_epoch']['device_energy_j']:.4g} J (estimated)",
    ]
    src = [
        [r["profile"], r["name"], f"{r['value']:g}", r["unit"], r["status"], r["source"]]
        for r in pred["sources"]
    ]
    src_headers = ["profile", "figure", "value", "unit", "status", "source"]
    if markdown:
        lines = [f"# Plan: parallel training under {placement.name}", ""]
        if command:
            lines += [f"Command: `{command}`", ""]
        lines += [
            *(f"- {h}" for h in head),
            "",
            markdown_table(headers, rows),
            "",
            markdown_table(src_headers, src),
            "",
        ]
        return "\n".join(lines)
    note = (
        "node time: profile rate for macs_per_s nodes, host busy x slowdown otherwise; see docs/parallel.md"
    )
    return "\n".join([*head, "", table(headers, rows), "", note, "", table(src_headers, src)]) + "\n"
