"""Devices the toolchain starts itself, and opening serial ports with clear errors.

- QEMU boards: Python binds a loopback listening socket and hands its fd to QEMU
  (`-chardev socket,fd=N,server=on,wait=on,nodelay=on`), so there is no port race and the guest
  does not start before the host connects (no boot output is lost). `nodelay=on` matters: without
  it every round trip costs ~44 ms of Nagle + delayed ACK. `-icount shift=0` makes SysTick count
  instructions.
- The host build runs on the master side of a pseudo-terminal; pyserial opens the slave like a real
  serial port. The launcher keeps its own slave fd open so the firmware never sees EIO between
  connections.
- Every child gets PR_SET_PDEATHSIG(SIGTERM): if the toolchain dies, even by SIGKILL, the
  emulator dies with it. `stop()` terminates, waits, and kills as a last resort.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.mcu.manifest import McuBuild
from toolchain.mcu.target import McuTarget

PR_SET_PDEATHSIG = 1


class DeviceError(ToolchainError):
    """A device could not be started or its port could not be opened."""


# Resolved once in the parent: the child (between fork and exec) must not dlopen, which can
# deadlock on the loader lock when another thread of the parent held it at fork time.
# prctl is Linux-only; elsewhere devices are still stopped by stop(), just not on a SIGKILL.
_PRCTL = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


def _die_with_parent(parent: int) -> None:  # runs in the child between fork and exec
    if _PRCTL is None:
        return
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _preexec():
    parent = os.getpid()
    return lambda: _die_with_parent(parent)


def _socket_serial_class():
    from serial.urlhandler import protocol_socket

    class FastCloseSocketSerial(protocol_socket.Serial):
        """pyserial's socket:// port sleeps 0.3 s in close() to let a server re-listen; the devices
        started here are stopped right after, so skip that wait."""

        def close(self) -> None:
            if self._socket:
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    self._socket.close()
                self._socket = None
            self.is_open = False

    return FastCloseSocketSerial


def open_port(port: str, baud: int = 115200, timeout: float = 0.05):
    """Open a serial device path or a pyserial URL (socket://, rfc2217://, loop://) exclusively."""
    import serial

    try:
        if "://" in port:
            return serial.serial_for_url(port, baudrate=baud, timeout=timeout)
        if not os.path.exists(port):
            raise DeviceError(
                f"serial port {port} does not exist",
                hint="check the cable and the name (`python -m serial.tools.list_ports` lists ports)",
            )
        return serial.Serial(port, baudrate=baud, timeout=timeout, exclusive=True)
    except serial.SerialException as exc:
        text = str(exc)
        if "exclusively lock" in text or "Resource temporarily unavailable" in text:
            raise DeviceError(
                f"serial port {port} is busy: another program has it open",
                hint="close the other program (serial monitor, another verify) and try again",
            ) from None
        if "Permission denied" in text:
            raise DeviceError(
                f"no permission to open {port}",
                hint="add yourself to the dialout group (sudo usermod -aG dialout $USER) and log in again",
            ) from None
        raise DeviceError(f"cannot open serial port {port}: {text}") from None


@dataclass
class Device:
    """A running emulated board or host build. Use as a context manager; `stop()` is idempotent."""

    name: str
    url: str
    proc: subprocess.Popen
    workdir: Path
    kind: str  # "qemu" | "pty"
    _keep_fds: list[int] = field(default_factory=list)
    _ports: list = field(default_factory=list)
    qmp_path: Path | None = None

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_status(self, wait: float = 1.0) -> int | None:
        """The exit status if the device ended (waiting up to `wait` s for a dying one), else None."""
        try:
            return self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, n: int = 15) -> str:
        path = self.workdir / "device.log"
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        # QEMU's own messages ("qemu: fatal: Lockup ...") say more than a register dump.
        important = [ln for ln in lines if "qemu" in ln.lower() or "error" in ln.lower()]
        return "\n".join(important[-5:] or lines[-n:])

    def open(self, timeout: float = 0.05):
        """A pyserial port connected to the device (closed by stop())."""
        if not self.alive():
            raise DeviceError(f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}")
        if self.kind == "qemu":
            port = _socket_serial_class()(self.url, timeout=timeout)
        else:
            port = open_port(self.url, timeout=timeout)
        self._ports.append(port)
        return port

    def reset(self) -> None:
        """System reset of an emulated board through QMP (start it with qmp=True)."""
        if self.qmp_path is None:
            raise DeviceError(f"{self.name} was started without a QMP socket: cannot reset it")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.qmp_path))
            f = s.makefile("rw")
            f.readline()  # greeting
            for cmd in ("qmp_capabilities", "system_reset"):
                f.write(json.dumps({"execute": cmd}) + "\n")
                f.flush()
                while "return" not in (reply := json.loads(f.readline())):
                    if "error" in reply:
                        raise DeviceError(f"QMP {cmd} failed: {reply['error']}")

    def stop(self, timeout: float = 5.0) -> None:
        for port in self._ports:
            with contextlib.suppress(Exception):
                port.close()
        self._ports.clear()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for fd in self._keep_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._keep_fds.clear()
        with contextlib.suppress(OSError):
            for p in self.workdir.iterdir():
                p.unlink()
            self.workdir.rmdir()


def qemu_command(mcu: McuTarget, elf: Path, chardev: str) -> list[str]:
    emu = mcu.emulator
    cmd = [c.replace("{elf}", str(elf)) for c in emu["command"]]
    return cmd + [a.replace("{chardev}", chardev) for a in emu["serial_args"]]


def start_qemu(mcu: McuTarget, elf: Path, qmp: bool = False) -> Device:
    exe = mcu.emulator["command"][0]
    if shutil.which(exe) is None:
        raise DeviceError(
            f"{exe} is not installed",
            hint="sudo apt-get install --no-install-recommends qemu-system-arm",
        )
    if not elf.is_file():
        raise DeviceError(
            f"firmware image {elf} does not exist", hint=f"run `toolchain build --target {mcu.name}`"
        )
    workdir = Path(tempfile.mkdtemp(prefix=f"tc-{mcu.name}-"))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        chardev = f"socket,id=tcser,fd={fd},server=on,wait=on,nodelay=on"
        cmd = qemu_command(mcu, elf, "chardev:tcser")
        cmd[1:1] = ["-chardev", chardev]
        qmp_path = None
        if qmp:
            qmp_path = workdir / "qmp.sock"
            cmd += ["-qmp", f"unix:{qmp_path},server=on,wait=off"]
        with open(workdir / "device.log", "wb") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=[fd],
                preexec_fn=_preexec(),
            )
    finally:
        listener.close()  # QEMU holds its own copy; once it exits, connecting fails fast
    dev = Device(mcu.name, f"socket://127.0.0.1:{port}", proc, workdir, "qemu", qmp_path=qmp_path)
    if qmp_path is not None:
        _wait_for(lambda: qmp_path.exists() or not dev.alive(), 5.0)
    return dev


def start_host(mcu: McuTarget, exe: Path) -> Device:
    if not exe.is_file():
        raise DeviceError(f"host firmware {exe} does not exist", hint="run `toolchain build --target host`")
    workdir = Path(tempfile.mkdtemp(prefix=f"tc-{mcu.name}-"))
    master, slave = pty.openpty()
    tty.setraw(slave)  # no echo, no CR/LF translation: binary frames pass untouched
    try:
        with open(workdir / "device.log", "wb") as log:
            proc = subprocess.Popen(
                [str(exe)], stdin=master, stdout=master, stderr=log, preexec_fn=_preexec()
            )
    except OSError as exc:
        os.close(slave)
        raise DeviceError(f"cannot run {exe}: {exc}") from None
    finally:
        os.close(master)
    return Device(mcu.name, os.ttyname(slave), proc, workdir, "pty", _keep_fds=[slave])


def start_device(mcu: McuTarget, build: McuBuild | Path, qmp: bool = False) -> Device:
    """Start the emulated board (or host build) of `mcu` with the image of `build` (or its directory)."""
    if not isinstance(build, McuBuild):
        build = McuBuild.open(build, mcu.name)
    kind = mcu.emulator_kind
    if kind == "pty":
        return start_host(mcu, build.image("exe"))
    if kind == "qemu":
        return start_qemu(mcu, build.image("elf"), qmp=qmp)
    raise DeviceError(
        f"{mcu.name} is a physical board: there is nothing to start",
        hint="flash it with `toolchain flash`, then pass its serial port with --port",
    )


def _wait_for(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()
