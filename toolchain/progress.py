"""Progress and tables for the terminal: a live bar on a TTY, one line per step in logs."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TextIO


class Progress:
    """`with Progress(total, 'verify') as p: p.update(1, acc=0.9)`; quiet=True prints nothing."""

    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, quiet: bool = False, every: float = 5.0
    ) -> None:
        self.total, self.label, self.quiet = total, label, quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.count = 0
        self.start = time.monotonic()
        self._last = 0.0
        self.every = every  # seconds between lines when not a TTY

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.quiet and self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def update(self, n: int = 1, **fields: float | str) -> None:
        self.count += n
        if self.quiet:
            return
        now = time.monotonic()
        done = self.count >= self.total
        if not self.tty and not done and now - self._last < self.every:
            return
        self._last = now
        elapsed = now - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        frac = self.count / self.total if self.total else 1.0
        extra = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        if self.tty:
            width = 24
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            line = f"\r{self.label} [{bar}] {self.count}/{self.total} {rate:,.1f}/s {extra}"
            self.stream.write(line[:160].ljust(100))
        else:
            self.stream.write(f"{self.label} {self.count}/{self.total} ({rate:,.1f}/s) {extra}\n")
        self.stream.flush()


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Hide what native libraries print on fd 2 (TFLite converter, LiteRT's XNNPACK banner);
    replay it when the block fails, so no diagnostic is lost."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            buf.seek(0)
            sys.stderr.write(buf.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    rows = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str], numeric: Sequence[bool]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)
        )

    numeric = [all(_is_num(r[i]) for r in rows) if rows else False for i in range(len(headers))]
    out = [line(headers, numeric), "  ".join("-" * w for w in widths)]
    out += [line(r, numeric) for r in rows]
    return "\n".join(out)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    rows = [[_fmt(c) for c in r] for r in rows]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:,.4f}".rstrip("0").rstrip(".")
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _is_num(s: str) -> bool:
    try:
        float(s.replace(",", "").rstrip("%"))
        return True
    except ValueError:
        return False
