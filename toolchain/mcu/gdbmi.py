"""A small client for GDB's machine interface (GDB/MI), enough to load and check an image.

Why MI and not `gdb -batch -ex ...`: the toolchain decides between steps (a section that does not
match after `load` must stop the sequence before the core is reset and started), needs each step's
own error (`^error,msg=...`), and gets the load's progress (`+download` records) for a progress bar.
Every command carries a token and is answered by exactly one result record `TOKEN^done|^connected|
^error,...`; stream records before it (`~"..."` console output, `&"..."` log) belong to it.
"""

from __future__ import annotations

import contextlib
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.errors import ToolchainError

GDB_CANDIDATES = ("gdb-multiarch", "arm-none-eabi-gdb")
_FIELD = re.compile(r'([\w-]+)="((?:[^"\\]|\\.)*)"')


class GdbError(ToolchainError):
    """GDB or the GDB server failed or did not answer."""


def unescape(text: str) -> str:
    """An MI c-string body: backslash escapes, non-ASCII bytes as octal escapes of UTF-8."""
    raw = text.encode("utf-8").decode("unicode_escape")
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def find_gdb() -> str:
    """The first installed GDB that debugs Arm targets."""
    for name in GDB_CANDIDATES:
        if shutil.which(name):
            return name
    raise GdbError(
        f"no GDB for Arm is installed (looked for {', '.join(GDB_CANDIDATES)})",
        hint="sudo apt-get install gdb-multiarch (scripts/install.sh installs it)",
    )


@dataclass
class MiResult:
    """One command's answer: its result class (done, connected, error, ...), the result's key="value"
    fields (top level and nested alike, flattened: enough for the records used here), and the console
    and log text printed while it ran."""

    cls: str
    fields: dict[str, str]
    console: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.console + self.log).strip()


class GdbMi:
    """`with GdbMi(elf) as gdb: gdb.run('-target-select remote HOST:PORT', 20)`."""

    def __init__(self, elf: Path, exe: str | None = None) -> None:
        self.exe = exe or find_gdb()
        self.transcript: list[str] = []
        self._token = 0
        self._lines: queue.Queue[str | None] = queue.Queue()
        try:
            self.proc = subprocess.Popen(
                [self.exe, "-nx", "-q", "--interpreter=mi2", str(elf)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise GdbError(f"cannot run {self.exe}: {exc.strerror}") from None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def __enter__(self) -> GdbMi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tail(self, n: int = 12) -> str:
        """The last lines GDB printed, for error messages."""
        shown = [
            unescape(ln[2:-1]).rstrip() if ln[:2] in ('~"', '&"', '@"') else ln for ln in self.transcript
        ]
        return "\n".join(ln for ln in shown[-n:] if ln and ln != "(gdb)")

    def run(self, command: str, timeout: float, on_record: Callable[[str], None] | None = None) -> MiResult:
        """Send one MI command and collect everything up to its result record."""
        self._token += 1
        token = str(self._token)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{token}{command}\n")
            self.proc.stdin.flush()
        except OSError:
            raise GdbError(f"{self.exe} exited unexpectedly:\n{self.tail()}") from None
        result = MiResult("", {})
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise GdbError(
                    f"GDB got no answer to `{command}` within {timeout:.0f} s",
                    hint="is the GDB server (or the board behind it) responding?",
                ) from None
            if line is None:
                raise GdbError(f"{self.exe} exited during `{command}`:\n{self.tail()}")
            self.transcript.append(line)
            if line.startswith(('~"', '@"')):  # console output, and the target's (monitor replies)
                result.console.append(unescape(line[2:-1]))
            elif line.startswith('&"'):
                result.log.append(unescape(line[2:-1]))
            elif line.startswith(token + "^"):
                head, _, rest = line[len(token) + 1 :].partition(",")
                result.cls = head
                result.fields = {k: unescape(v) for k, v in _FIELD.findall(rest)}
                return result
            elif on_record is not None and line[:1] in "+*=":
                on_record(line)

    def console(self, cli: str, timeout: float = 30.0) -> MiResult:
        """A CLI command (e.g. `monitor reset halt`, `compare-sections`) through MI."""
        quoted = cli.replace("\\", "\\\\").replace('"', '\\"')
        return self.run(f'-interpreter-exec console "{quoted}"', timeout)

    def close(self) -> None:
        """Disconnect (a no-op after a detach) and quit. Quitting while still attached would detach,
        which resumes the core: after a failed step the board must stay as the failure left it."""
        if self.proc.poll() is None:
            with contextlib.suppress(GdbError):
                self.run("-target-disconnect", 10)
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("-gdb-exit\n")
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)


def record_fields(line: str) -> dict[str, str]:
    """key="value" fields of an async record such as `+download,{section=".text",...}`."""
    return {k: unescape(v) for k, v in _FIELD.findall(line)}
