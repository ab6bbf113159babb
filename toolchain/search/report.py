"""The outputs of a search, each written atomically in the output directory:

trials.json, trials.csv   one row per trial (and per rejected candidate)
pareto.png                training energy to ε_max vs device instructions, accuracy as colour
best.toml                 the chosen candidate as a ready project file (stops at ε_max)
report.md                 what was searched, what was chosen, how every figure was obtained
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from toolchain.config import dumps
from toolchain.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from toolchain.progress import markdown_table
from toolchain.search.space import Candidate, SearchSpace

FORMAT = "toolchain-search-trials"
CSV_COLUMNS = (
    "trial", "status", "hidden", "out_degrees", "pattern", "split_after", "exit_hidden", "data_fraction",
    "batch_size", "epochs", "threads", "placement", "epochs_run", "max_val_accuracy", "k", "k_predicted",
    "busy_s", "wall_s", "energy_j", "energy_to_target_j", "energy_to_target_status", "energy_label",
    "flash", "ram", "instructions", "offload_bytes", "test_accuracy", "curve",
)  # fmt: skip


def _row(i: int, res, ledger: dict[str, Any], eps: float, deadline_s: float | None) -> dict[str, Any]:
    m = res.metrics or {}
    tid = m.get("trial_id", f"t{i}")
    cand = res.config["candidate"]
    curve = m.get("curve", [])
    pred = ledger["predictions"].get(tid)
    reached = bool(m.get("reached"))
    in_time = deadline_s is None or m.get("wall_s", 0.0) <= deadline_s
    if res.error is not None:
        status = "error"
    elif reached and in_time:
        status = "reached"
    elif reached:
        status = "reached after the deadline"
    elif tid in ledger["stops"]:
        status = "stopped: " + ledger["stops"][tid]
    else:
        status = "budget spent without ε_max"
    k = m.get("reached_epoch") or (len(curve) if reached else None)
    if reached:
        to_target, how = m["energy_j"], "measured"
    elif pred is not None:
        to_target, how = pred["energy_j"], "predicted"
    else:
        to_target, how = None, "-"
    return {
        "trial": i + 1,
        "trial_id": tid,
        "status": status,
        **cand,
        "epochs_run": len(curve),
        "max_val_accuracy": max(curve, default=0.0),
        "k": k,
        "k_predicted": None if pred is None else round(pred["k"], 2),
        "busy_s": m.get("cpu_s"),
        "wall_s": m.get("wall_s"),
        "energy_j": m.get("energy_j"),
        "energy_to_target_j": to_target,
        "energy_to_target_status": how,
        "energy_label": m.get("energy_label", ""),
        **res.config.get("device", {}),
        "test_accuracy": m.get("test_accuracy"),
        "curve": curve,
        "target_accuracy": eps,
    }


def collect(results, ledger: dict[str, Any], space: SearchSpace, eps: float, deadline_s: float | None):
    rows = [_row(i, r, ledger, eps, deadline_s) for i, r in enumerate(results)]
    for j, rej in enumerate(ledger["rejected"]):
        rows.append(
            {
                "trial": None,
                "trial_id": f"rejected-{j + 1}",
                "status": "rejected: " + rej["reason"],
                **rej["candidate"],
                **rej["device"],
                "epochs_run": 0,
                "max_val_accuracy": 0.0,
                "energy_j": 0.0,
                "curve": [],
            }
        )
    return rows


def choose(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in rows if r["status"] == "reached"]
    return min(ok, key=lambda r: r["energy_to_target_j"]) if ok else None


def best_toml(space: SearchSpace, best: dict[str, Any], eps: float, seed: int) -> str:
    cfg = space.to_config(Candidate.from_dict(best), seed=seed)
    cfg.name = f"{space.name}-best"
    cfg.training.stop_at_accuracy = eps
    head = (
        f"# Chosen by `toolchain search` ({space.path.name}): trial {best['trial']} reached validation "
        f"accuracy {eps:g} after {best['k']} epochs with {best['energy_to_target_j']:.4g} J\n"
        f"# ({best['energy_label']}). Train it: toolchain train --config best.toml\n"
    )
    return head + dumps(cfg)


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    return buf.getvalue()


def pareto_png(rows: list[dict[str, Any]], eps: float) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.get("energy_to_target_j") and r.get("instructions")]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    if pts:
        sc = ax.scatter(
            [r["instructions"] for r in pts],
            [r["energy_to_target_j"] for r in pts],
            c=[r["max_val_accuracy"] for r in pts],
            cmap="viridis",
            marker="o",
            s=[60 if r["energy_to_target_status"] == "measured" else 25 for r in pts],
            edgecolors=["k" if r["energy_to_target_status"] == "measured" else "none" for r in pts],
        )
        fig.colorbar(sc, ax=ax, label="best validation accuracy")
        front = _front(pts)
        ax.plot([r["instructions"] for r in front], [r["energy_to_target_j"] for r in front], "r--", lw=1)
        ax.set_yscale("log")
    ax.set_xlabel("device cost: head + exit instructions per inference (estimate)")
    ax.set_ylabel(f"training energy to val. accuracy {eps:g} (J)")
    ax.set_title(
        "trials: large outlined = reached (measured), small = predicted; red = Pareto front", fontsize=9
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _front(pts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Measured points no other measured point beats in both energy and device cost."""
    meas = sorted(
        (r for r in pts if r["energy_to_target_status"] == "measured"), key=lambda r: r["instructions"]
    )
    front, best = [], float("inf")
    for r in meas:
        if r["energy_to_target_j"] < best:
            front.append(r)
            best = r["energy_to_target_j"]
    return front


def _kinds(status: str) -> list[str]:
    """Which constraints a rejected candidate broke (its reason names them)."""
    names = {"flash": "flash", "RAM": "RAM", "max_instructions": "instructions"}
    names["max_offload_bytes"] = "offload bytes"
    return [f"{v} over the limit" for k, v in names.items() if k in status]


def _deadline(minutes: float | None) -> str:
    return "none" if minutes is None else f"{minutes:g} min"


def _to_target(r: dict[str, Any]) -> str:
    if r["energy_to_target_j"] is None:
        return "-"
    return f"{r['energy_to_target_j']:.3g} ({r['energy_to_target_status']})"


def render_markdown(rows: list[dict[str, Any]], ledger: dict, summary: dict, best: dict | None) -> str:
    eps = summary["target_accuracy"]
    trials = [r for r in rows if r["trial"] is not None]
    spent = sum(r["energy_j"] or 0.0 for r in trials)
    busy = sum(r["busy_s"] or 0.0 for r in trials)
    lines = [
        f"# Search: least training energy to validation accuracy {eps:g}",
        "",
        f"Space `{summary['space']}`, target `{summary['target']}`, {summary['algorithm']} search, "
        f"{len(trials)} trials, K-predictor stopper {'on' if summary['early_stop'] else 'off'}, "
        f"deadline {_deadline(summary['deadline_min'])}, Ray {summary['ray_address']}, "
        f"seed {summary['seed']}.",
        "",
        f"**Energy**: {summary['energy_label']}.",
        "",
        f"The search itself spent **{spent:.4g} J** over {busy:.0f} busy CPU seconds"
        f" ({summary['wall_s']:.0f} s wall); {len(rows) - len(trials)} candidates broke a device "
        "constraint and were never trained.",
        "",
    ]
    if best is None:
        lines += ["**No trial reached the target.** No best.toml was written.", ""]
    else:
        b = best
        lines += [
            f"**Chosen** (trial {b['trial']}): hidden {b['hidden']}, out-degrees {b['out_degrees']}, "
            f"{b['pattern']}, split after {b['split_after']}, exit hidden {b['exit_hidden']}, "
            f"{b['data_fraction']:g} of the training data, batch {b['batch_size']}, budget {b['epochs']} "
            f"epochs, {b['threads']} thread(s): reached {eps:g} after K = {b['k']} epochs with "
            f"**{b['energy_to_target_j']:.4g} J** (measured as labelled above); device: {b['flash']:,} B "
            f"flash, {b['ram']:,} B RAM, {b['instructions']:,.0f} instructions, {b['offload_bytes']} B "
            "per offloaded sample. `best.toml` trains it: `toolchain train --config best.toml` (stops at the "
            "target on the validation split).",
            "",
        ]
    headers = ["#", "status", "hidden", "d_out", "data", "batch", "budget", "thr", "epochs", "best val",
               "K", "K pred", "busy s", "energy J", "to target J", "instr."]  # fmt: skip
    table = [
        [r["trial"], r["status"], r["hidden"], r["out_degrees"], r["data_fraction"], r["batch_size"],
         r["epochs"], r["threads"], r["epochs_run"], round(r["max_val_accuracy"], 4), r["k"] or "-",
         r["k_predicted"] or "-", round(r["busy_s"] or 0, 1), round(r["energy_j"] or 0, 2),
         _to_target(r),
         round(r["instructions"])]
        for r in trials
    ]  # fmt: skip
    lines += ["## Trials", "", markdown_table(headers, table), ""]
    reasons = Counter(k for r in rows if r["trial"] is None for k in _kinds(r["status"]))
    if reasons:
        lines += ["## Rejected before training", ""]
        lines += [f"- {n} x {why}" for why, n in reasons.most_common()] + [""]
    lines += [
        "## How to read this",
        "",
        "- *K*: epochs until the validation accuracy (final exit) first reached the target; *K pred*: the K "
        "predictor's last estimate (docs/search.md); *to target*: measured when reached, else predicted "
        "(K pred × energy per epoch so far).",
        "- Device figures are the int8 head + exit as the C export lays them out (flash, RAM) and `toolchain "
        "plan`'s instruction and wire-byte estimates.",
        "- Test accuracy is in trials.json (never used to choose).",
        "",
    ]
    return "\n".join(lines)


def write_outputs(out: Path, space: SearchSpace, rows, ledger, summary, eps: float) -> dict[str, Any] | None:
    best = choose(rows)
    atomic_write_json(
        out / "trials.json", {"format": FORMAT, "version": 1, "summary": summary, "trials": rows}
    )
    atomic_write_text(out / "trials.csv", _csv(rows))
    atomic_write_bytes(out / "pareto.png", pareto_png(rows, eps))
    if best is not None:
        atomic_write_text(out / "best.toml", best_toml(space, best, eps, summary["seed"]))
    elif (out / "best.toml").exists():
        (out / "best.toml").unlink()  # a stale choice from an earlier search must not survive
    atomic_write_text(out / "report.md", render_markdown(rows, ledger, summary, best))
    return best
