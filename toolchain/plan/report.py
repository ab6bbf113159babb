"""The plan on the terminal (tables), as markdown, and as a PNG against the exit threshold."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from toolchain.progress import markdown_table, table


def _opt(v: float | None, fmt: str = "{:.3f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def split_table(plan: dict[str, Any]) -> tuple[list[str], list[list[object]]]:
    d = plan["dtype"]
    headers = [
        "split",
        "width",
        "MACs head/exit/tail",
        "params head+exit",
        "int8 flash",
        "int8 RAM",
        "f32 flash",
        "f32 RAM",
        f"wire B ({d})",
        "device ms",
        "offload ms",
        "device µJ",
        "tx µJ",
        "fits",
    ]
    rows = []
    for r in plan["split_points"]:
        m, mem, fit = r["macs"], r["memory"], r["fit"]
        rows.append(
            [
                r["split"],
                r["split_width"],
                f"{m['head']:,}/{m['exit']:,}/{m['tail']:,}",
                r["params"]["head"] + r["params"]["exit"],
                mem["int8"]["flash"],
                mem["int8"]["ram"],
                mem["float32"]["flash"],
                mem["float32"]["ram"],
                r["wire_bytes"],
                _opt(r["device_ms"]),
                _opt(r["offload_ms"]),
                _opt(r["device_energy_uj"]),
                _opt(r["tx_energy_uj"]),
                "n/a" if fit is None else ("yes" if fit["fits"] else "NO"),
            ]
        )
    return headers, rows


def threshold_table(plan: dict[str, Any], picks: list[int]) -> tuple[list[str], list[list[object]]]:
    th = plan["thresholds"]
    sw, cal = th["sweep"], th["calibrated"]["row"]
    headers = ["threshold", "exit rate", "accuracy", "E[bytes]", "E[latency] ms", "E[energy] µJ", ""]
    rows = []
    for i in picks:
        t = sw["threshold"][i]
        rows.append(
            [
                f"{t:.4f}" if th["score"] != "margin_int8" else f"{t:g}",
                f"{100 * sw['exit_rate'][i]:.2f} %",
                f"{100 * sw['accuracy'][i]:.2f} %",
                f"{sw['bytes'][i]:.2f}",
                f"{sw['latency_ms'][i]:.3f}",
                "n/a" if sw["energy_uj"] is None else f"{sw['energy_uj'][i]:.3f}",
                "<- calibrated" if i == cal else "",
            ]
        )
    return headers, rows


def pick_rows(plan: dict[str, Any], n_rows: int) -> list[int]:
    """Evenly spaced exit rates (n_rows of them) plus the calibrated row."""
    th = plan["thresholds"]
    rate = np.asarray(th["sweep"]["exit_rate"])
    picks = {th["calibrated"]["row"]}
    for target in np.linspace(0.0, 1.0, max(2, n_rows)):
        picks.add(int(np.argmin(np.abs(rate - target))))
    return sorted(picks)


def _header_lines(plan: dict[str, Any]) -> list[str]:
    net = plan["network"]
    return [
        f"plan for {plan['project']}: neurons {net['neurons']}, out-degrees {net['out_degrees']} "
        f"({net['pattern']}), exit hidden {net['exit_hidden']}",
        f"target {plan['target']} ({plan['core']}), link {plan['link']} ({plan['link_description']}), "
        f"wire {plan['wire']}, {plan['dtype']} split tensor",
    ]


def _calibrated_lines(plan: dict[str, Any]) -> list[str]:
    th = plan["thresholds"]
    c = th["calibrated"]
    rec = c["recorded_validation"]
    lines = [
        f"exit sweep at split {th['split']} on {th['validation_samples']} validation samples; "
        f"score: {th['scores_from']}",
        f"device time (head + exit) {th['device_ms']:.4f} ms: {th['device_ms_source']}",
        f"calibrated threshold {c['threshold']:g}: validation exit rate {100 * c['exit_rate']:.2f} %, "
        f"accuracy {100 * c['accuracy']:.2f} % (recorded at calibration: exit rate "
        f"{100 * rec.get('exit_rate', float('nan')):.2f} %)",
    ]
    t = c["test_information_only"]
    if t:
        lines.append(
            f"test split, for information only: exit rate {100 * t['exit_rate']:.2f} %, "
            f"accuracy {100 * t['accuracy']:.2f} %"
        )
    return lines


def _assumption_lines(plan: dict[str, Any]) -> list[str]:
    out = ["assumptions (override with flags; see docs/plan.md):"]
    for a in plan["assumptions"]:
        out.append(
            f"  {a['name']} = {_num(a['value'])} {a['unit']}".rstrip() + f"  [{a['status']}] {a['source']}"
        )
    out += [f"note: {n}" for n in plan["notes"]]
    return out


def degree_table(plan: dict[str, Any]) -> tuple[list[str], list[list[object]]]:
    ds = plan["degree_sweep"]
    headers = ["d_out", "d_in", "density", "head MACs", "head params", f"{ds['dtype']} flash", "RAM"]
    rows = [
        [r["d_out"], r["d_in"], f"{r['density']:.4f}", r["head_macs"], r["head_params"], r["flash"], r["ram"]]
        for r in ds["rows"]
    ]
    return headers, rows


SPLIT_LEGEND = (
    "device ms / µJ: head + exit, instructions estimated per MAC (IPC, clock, power below); "
    "offload ms = 8·S/R + RTT + tail; tx µJ = 8·S·energy per bit; RAM incl. caller buffers and stack"
)


def _num(v: float) -> str:
    return f"{v:,.0f}" if v >= 1000 and float(v).is_integer() else f"{v:,.6g}"


def render_text(plan: dict[str, Any], n_rows: int = 11) -> str:
    parts = ["\n".join(_header_lines(plan)), "", "per split point:", table(*split_table(plan))]
    parts.append(SPLIT_LEGEND)
    if "thresholds" in plan:
        parts += ["", "\n".join(_calibrated_lines(plan)), ""]
        parts += ["per exit threshold:", table(*threshold_table(plan, pick_rows(plan, n_rows)))]
    if "degree_sweep" in plan:
        parts += ["", "first junction, every admissible out-degree:", table(*degree_table(plan))]
    parts += ["", "\n".join(_assumption_lines(plan))]
    return "\n".join(parts)


def render_markdown(plan: dict[str, Any], command: str, n_rows: int = 11) -> str:
    parts = [f"# toolchain plan: {plan['project']} on {plan['target']} over {plan['link']}", ""]
    parts += [f"Produced by `{command}`.", ""]
    parts += ["- " + line for line in _header_lines(plan)] + [""]
    parts += ["## Per split point", "", markdown_table(*split_table(plan)), "", SPLIT_LEGEND + ".", ""]
    if "thresholds" in plan:
        parts += ["## Per exit threshold", ""] + ["- " + x for x in _calibrated_lines(plan)] + [""]
        parts += [markdown_table(*threshold_table(plan, pick_rows(plan, n_rows))), ""]
    if "degree_sweep" in plan:
        parts += ["## First junction, every admissible out-degree", "", markdown_table(*degree_table(plan))]
        parts += [""]
    parts += ["## Assumptions", ""]
    rows = [
        [a["name"], f"{_num(a['value'])} {a['unit']}".strip(), a["status"], a["source"]]
        for a in plan["assumptions"]
    ]
    parts += [markdown_table(["input", "value", "status", "source"], rows), ""]
    parts += [f"- note: {n}" for n in plan["notes"]]
    return "\n".join(parts) + "\n"


def plot_png(plan: dict[str, Any]) -> bytes:
    """Expected latency, energy, bytes and accuracy/exit rate against the exit threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    th = plan["thresholds"]
    sw = th["sweep"]
    t = np.asarray(sw["threshold"])
    chosen = th["calibrated"]["threshold"]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), dpi=110, sharex=True)
    panels = [
        (axes[0, 0], sw["latency_ms"], "E[latency] [ms]", "tab:purple"),
        (axes[0, 1], sw["energy_uj"], "E[device energy] [µJ]", "tab:green"),
        (axes[1, 0], sw["bytes"], "E[bytes on the wire] per sample", "tab:orange"),
    ]
    for ax, values, label, color in panels:
        if values is None:
            ax.text(
                0.5,
                0.5,
                "no power figure\n(--power-mw, --energy-per-bit-nj)",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=8,
            )
        else:
            ax.step(t, values, where="pre", color=color)
        ax.set_ylabel(label, fontsize=8)
    # A sample exits when its score >= t, so between two sweep thresholds the behaviour is that of
    # the upper one: steps drawn "pre".
    ax = axes[1, 1]
    ax.step(t, np.asarray(sw["exit_rate"]) * 100, where="pre", color="tab:blue")
    ax.set_ylabel("exit rate [%] (validation)", fontsize=8, color="tab:blue")
    acc = ax.twinx()
    acc.step(t, np.asarray(sw["accuracy"]) * 100, where="pre", color="tab:red")
    acc.set_ylabel("system accuracy [%] (validation)", fontsize=8, color="tab:red")
    acc.tick_params(labelsize=7)
    for a in axes.ravel():
        a.axvline(chosen, color="k", lw=0.8, ls="--")
        a.tick_params(labelsize=7)
    axes[0, 0].text(chosen, axes[0, 0].get_ylim()[1], f" calibrated {chosen:g}", fontsize=7, va="top")
    for a in axes[1]:
        a.set_xlabel(f"exit threshold ({th['score']})", fontsize=8)
    fig.suptitle(
        f"{plan['project']}: split {th['split']}, {plan['target']}, {plan['link']} ({plan['wire']}, "
        f"{th['wire_bytes']} B per offload)",
        fontsize=9,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
