"""verify samples/s on the host build and emulated boards, against the bound set by the serial link.

For each target (built from --bundle into a temporary directory):
1. upstream throughput U: requests of the INFER size with one byte too few; the device reads every
   byte, then answers with a 14-byte BAD_LENGTH error, so the exchange is nearly one-way;
2. downstream throughput D: ECHO of the same size minus the upstream time of step 1;
3. link bound = 1 / (request bytes / U + reply bytes / D) samples/s: what the link alone allows;
4. raw INFER exchanges per second (no host-side work) and `toolchain verify` samples/s.
Everything is measured side by side in one run; the ratio verify / bound is the figure to quote.

usage: python benchmarks/verify_throughput.py --bundle DIR [--targets host qemu-m4] [--samples 300]
writes benchmarks/results/verify_throughput.json and .md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from toolchain.fsutil import atomic_write_json, atomic_write_text
from toolchain.mcu.device import start_device
from toolchain.mcu.protocol import ECHO, INFER, OVERHEAD, FrameDecoder, Link, encode_frame, infer_reply_size
from toolchain.mcu.target import mcu_target
from toolchain.mcu.verify import VerifyOptions, verify
from toolchain.pipeline import BuildOptions, build
from toolchain.progress import markdown_table
from toolchain.targets import load_target

RESULTS = Path(__file__).resolve().parent / "results"


def _exchange(port, frame: bytes, timeout: float = 10.0) -> float:
    """Write one frame, wait for one reply frame; seconds."""
    dec = FrameDecoder()
    t0 = time.perf_counter()
    port.write(frame)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        data = port.read(max(1, getattr(port, "in_waiting", 0) or 0))
        if data and dec.feed(data):
            return time.perf_counter() - t0
    raise RuntimeError("no reply")


def measure_link(target: str, build_dir: Path, reps: int) -> dict:
    mcu = mcu_target(load_target(target))
    with start_device(mcu, build_dir) as dev:
        port = dev.open(timeout=0.05)
        link = Link(port)
        info = link.hello()
        n_in = info.input_size * info.elem_size
        req, reply = OVERHEAD + n_in, OVERHEAD + infer_reply_size(info)
        short = encode_frame(INFER, 0x7000, bytes(n_in - 1))  # -> BAD_LENGTH error (14 bytes)
        echo = encode_frame(ECHO, 0x7001, bytes(n_in))
        # Means, not medians: verify's samples/s is a mean too, so the ratio compares like with like.
        t_up = statistics.fmean(_exchange(port, short) for _ in range(reps))
        t_echo = statistics.fmean(_exchange(port, echo) for _ in range(reps))
        link.hello()  # resynchronise the Link after the raw exchanges
        x = np.zeros(info.input_size, dtype=info.np_dtype)
        t0 = time.perf_counter()
        for _ in range(reps):
            link.infer(x)
        raw_rate = reps / (time.perf_counter() - t0)
    up_bps = (len(short) + OVERHEAD + 4) / t_up
    down_bps = len(echo) / max(t_echo - t_up, 1e-9)
    bound = 1.0 / (req / up_bps + reply / down_bps)
    return {
        "request_bytes": req,
        "reply_bytes": reply,
        "upstream_KiB_s": up_bps / 1024,
        "downstream_KiB_s": down_bps / 1024,
        "echo_rtt_ms": 1000 * t_echo,
        "link_bound_samples_s": bound,
        "raw_infer_samples_s": raw_rate,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, help="trained bundle (e.g. from `toolchain train`)")
    ap.add_argument("--targets", nargs="+", default=["host", "qemu-m4"])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3, help="repetitions; the table shows medians")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(RESULTS))
    args = ap.parse_args(argv)

    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="tc-bench-") as tmp:
        for target in args.targets:
            out = build(
                load_target(target),
                out=Path(tmp) / target,
                bundle=args.bundle,
                options=BuildOptions(data_dir=args.data_dir, quiet=True),
            )
            reps = 500 if target == "host" else 60
            rounds = []
            for _ in range(args.rounds):  # link and verify interleaved, so both see the same load
                link = measure_link(target, out, reps)
                rep = verify(
                    VerifyOptions(
                        target=target, build=out, samples=args.samples, data_dir=args.data_dir, quiet=True,
                        report=Path(tmp) / f"{target}.json",
                    )
                )  # fmt: skip
                rate = rep["throughput"]["samples_per_s"]
                rounds.append(
                    {
                        **link,
                        "verify_samples_s": rate,
                        "verify_over_bound": rate / link["link_bound_samples_s"],
                    }
                )
            res = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            res["rounds"] = rounds
            res["verify_passed"] = rep["passed"]
            res["counter"] = rep["counter"]
            results[target] = res
            rows.append(
                (
                    target,
                    f"{res['request_bytes']} + {res['reply_bytes']}",
                    round(res["upstream_KiB_s"], 1),
                    round(res["downstream_KiB_s"], 1),
                    round(res["link_bound_samples_s"], 1),
                    round(res["raw_infer_samples_s"], 1),
                    round(res["verify_samples_s"], 1),
                    f"{100 * res['verify_over_bound']:.0f} %",
                )
            )
            print(f"{target}: {res}", file=sys.stderr)
    meta = {
        "command": "python benchmarks/verify_throughput.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "samples": args.samples,
        "bundle": str(args.bundle),
        "host": platform.platform(),
        "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg": " ".join(f"{v:.1f}" for v in os.getloadavg()),
    }
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "verify_throughput.json", {"meta": meta, "results": results})
    headers = [
        "target",
        "bytes/exchange (req + reply)",
        "upstream KiB/s",
        "downstream KiB/s",
        "link bound samples/s",
        "raw INFER samples/s",
        "verify samples/s",
        "verify / bound",
    ]
    md = "\n".join(
        [
            "# verify throughput vs the serial-link bound",
            "",
            f"Command: `{meta['command']}`",
            "",
            f"{args.samples} samples per verify run, median of {args.rounds} rounds; {meta['when']}; "
            f"{meta['host']}, load average {meta['loadavg']}.",
            "",
            markdown_table(headers, rows),
            "",
            "Upstream: INFER-sized requests answered with a 14-byte error; downstream: ECHO of the same",
            "size minus the upstream time. Bound = 1 / (request/upstream + reply/downstream).",
            "",
        ]
    )
    atomic_write_text(out_dir / "verify_throughput.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
