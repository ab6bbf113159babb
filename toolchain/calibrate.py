"""Early-exit calibration: choose the confidence threshold on the validation split by rule.

A sample exits early when its score is at least the threshold; otherwise the final exit answers.
The score is any per-sample confidence: max-softmax of the float exit logits here, the integer
top-1 minus top-2 margin of the int8 exit logits on a device (toolchain.ir). The same sweep
serves both, so the float and integer rules are calibrated the same way.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np


def softmax_confidence(logits: np.ndarray) -> np.ndarray:
    """Max-softmax per row, in the logits' own precision (float32 for a float32 model)."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p.max(axis=1) / p.sum(axis=1)).astype(np.float64)


def exit_margin(logits: np.ndarray) -> np.ndarray:
    """top-1 minus top-2 of each row: int64 for int8 logits, float32 (one IEEE subtraction) else.

    The device's exit score: integer-only on an int8 head, so no float math and no libm decides.
    """
    part = np.sort(logits, axis=1)
    if logits.dtype == np.int8:
        return part[:, -1].astype(np.int64) - part[:, -2].astype(np.int64)
    return (part[:, -1] - part[:, -2]).astype(logits.dtype)


@dataclass(frozen=True)
class Sweep:
    """System behaviour for every distinct threshold, from 'everything exits' to 'nothing exits'."""

    thresholds: np.ndarray  # ascending; the last one lets nothing exit
    exit_rate: np.ndarray
    accuracy: np.ndarray  # system accuracy: exit answer where score >= t, else final answer


def sweep(scores: np.ndarray, exit_correct: np.ndarray, final_correct: np.ndarray) -> Sweep:
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    ec = np.concatenate([[0], np.cumsum(exit_correct[order])])
    fc = np.concatenate([[0], np.cumsum(final_correct[order])])
    # Exiting sets are prefixes of the descending order that end at a change of score (ties exit
    # together): k samples exit for threshold s[k-1].
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True)) + 1
    ks = np.concatenate([[0], ends])
    acc = (ec[ks] + (fc[-1] - fc[ks])) / n
    never = np.nextafter(s[0], np.inf) if n else 1.0
    thr = np.concatenate([[never], s[ends - 1]])
    # Ascending thresholds <=> descending exit counts.
    return Sweep(thresholds=thr[::-1], exit_rate=(ks / n)[::-1], accuracy=acc[::-1])


@dataclass(frozen=True)
class Calibration:
    rule: str
    target: float
    threshold: float
    exit_rate: float  # on the calibration (validation) split
    accuracy: float  # system accuracy on the calibration split
    final_accuracy: float  # final exit alone, calibration split

    def as_dict(self) -> dict:
        return asdict(self)


def calibrate(
    scores: np.ndarray,
    exit_correct: np.ndarray,
    final_correct: np.ndarray,
    rule: str,
    target: float,
) -> Calibration:
    """Pick the threshold on calibration data.

    - target_exit_rate q: the highest threshold whose exit rate is at least q;
    - max_accuracy_drop d: the lowest threshold (most exits) whose system accuracy is at least the
      final exit's accuracy minus d.
    """
    sw = sweep(scores, exit_correct, final_correct)
    final_acc = float(np.mean(final_correct))
    if rule == "target_exit_rate":
        ok = np.flatnonzero(sw.exit_rate >= target - 1e-12)
        i = int(ok[-1]) if len(ok) else 0
    elif rule == "max_accuracy_drop":
        ok = np.flatnonzero(sw.accuracy >= final_acc - target - 1e-12)
        i = int(ok[0])  # never exiting always qualifies, so ok is not empty
    else:
        raise ValueError(f"unknown exit rule {rule!r}")
    return Calibration(
        rule=rule,
        target=float(target),
        threshold=float(sw.thresholds[i]),
        exit_rate=float(sw.exit_rate[i]),
        accuracy=float(sw.accuracy[i]),
        final_accuracy=final_acc,
    )


def apply_threshold(
    scores: np.ndarray, exit_pred: np.ndarray, final_pred: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (system prediction, exited mask)."""
    exited = np.asarray(scores) >= threshold
    return np.where(exited, exit_pred, final_pred), exited


def plot_sweep(curves: dict[str, Sweep], chosen: float, title: str) -> bytes:
    """PNG of exit rate and system accuracy against the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax2 = ax.twinx()
    styles = ["-", "--", ":"]
    for (label, sw), ls in zip(curves.items(), styles, strict=False):
        ax.plot(sw.thresholds, sw.exit_rate * 100, ls, color="tab:blue", label=f"exit rate ({label})")
        ax2.plot(sw.thresholds, sw.accuracy * 100, ls, color="tab:red", label=f"accuracy ({label})")
    ax.axvline(chosen, color="k", lw=0.8)
    ax.text(chosen, 2, f" threshold {chosen:.4f}", fontsize=8)
    ax.set_xlabel("exit threshold (max-softmax confidence)")
    ax.set_ylabel("exit rate [%]", color="tab:blue")
    ax2.set_ylabel("system accuracy [%]", color="tab:red")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 100)
    lo = min(float(sw.accuracy.min()) for sw in curves.values()) * 100
    ax2.set_ylim(max(0.0, lo - 1), 100)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower left", fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
