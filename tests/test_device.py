"""Starting and stopping emulated boards and the host build; opening ports; clear errors."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import textwrap
import time
import tty

import pytest
from helpers_fw import (
    fw_fixture,  # noqa: F401  (registers the `fw` fixture)
    mcu,
    pid_alive,
    processes_using,
)

from toolchain.mcu.device import DeviceError, open_port, start_device
from toolchain.mcu.protocol import Link, LinkError


def _hello(dev, timeout: float = 10.0):
    return Link(dev.open(), connect_timeout=timeout).hello()


def test_fifty_qemu_start_stop_cycles_leave_nothing_behind(fw):
    build = fw("qemu-m4")
    pids = []
    for _ in range(50):
        dev = start_device(mcu("qemu-m4"), build)
        pids.append(dev.pid)
        info = _hello(dev)
        assert info.target == "qemu-m4"
        dev.stop()
        assert not dev.alive() and not dev.workdir.exists()
    assert len(set(pids)) == 50
    assert not any(pid_alive(p) for p in pids)
    assert processes_using(build) == []


@pytest.mark.parametrize("target", ["qemu-m4", "host"])
def test_device_dies_with_a_killed_toolchain(fw, target, tmp_path):
    # PR_SET_PDEATHSIG: SIGKILL the process that started the device; the device must follow.
    build = fw(target)
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from pathlib import Path
        from helpers_fw import mcu
        from toolchain.mcu.device import start_device
        dev = start_device(mcu({target!r}), Path({str(build)!r}))
        print(dev.pid, flush=True)
        time.sleep(60)
    """)
    # The killed parent cannot remove the device's work directory: keep it inside tmp_path.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        child = int(parent.stdout.readline())
        assert pid_alive(child)
    finally:
        parent.kill()
        parent.wait(10)
    end = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < end:
        time.sleep(0.05)
    assert not pid_alive(child)


def test_host_firmware_exits_when_the_link_closes(fw):
    dev = start_device(mcu("host"), fw("host"))
    try:
        assert _hello(dev).target == "host"
        for port in dev._ports:
            port.close()
        for fd in dev._keep_fds:  # the last slave fd: the firmware then reads EOF/EIO
            os.close(fd)
        dev._keep_fds.clear()
        assert dev.proc.wait(5) == 0
    finally:
        dev.stop()


def test_port_errors_are_clear(fw, tmp_path):
    with pytest.raises(DeviceError, match="does not exist"):
        open_port(str(tmp_path / "ttyNONE"))
    with pytest.raises(DeviceError, match="cannot open serial port socket://"):
        open_port("socket://127.0.0.1:1")
    with start_device(mcu("host"), fw("host")) as dev:
        first = open_port(dev.url)
        try:
            with pytest.raises(DeviceError, match="is busy"):
                open_port(dev.url)
        finally:
            first.close()


def test_a_port_without_a_device_times_out_with_a_clear_error():
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        port = open_port(os.ttyname(slave))
        start = time.monotonic()
        with pytest.raises(LinkError, match="no HELLO reply from the device within 1 s"):
            Link(port, connect_timeout=1.0).hello()
        assert time.monotonic() - start < 3
        port.close()
    finally:
        os.close(master)
        os.close(slave)


def test_qemu_reset_through_qmp_reboots_the_board(fw):
    with start_device(mcu("qemu-stm32f4"), fw("qemu-stm32f4"), qmp=True) as dev:
        link = Link(dev.open(), connect_timeout=10)
        assert link.hello().target == "qemu-stm32f4"
        dev.reset()
        # After the reset the USART drops bytes until the firmware enables it again: HELLO retries.
        assert link.hello().target == "qemu-stm32f4"
        assert dev.alive()


def test_emulator_missing_is_a_clear_error(fw, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DeviceError, match="qemu-system-arm is not installed"):
        start_device(mcu("qemu-m4"), fw("qemu-m4"))


def test_physical_board_has_nothing_to_start(fw):
    with pytest.raises(DeviceError, match="physical board"):
        start_device(mcu("stm32f4"), fw("stm32f4"))


def test_sigterm_stops_qemu_quickly(fw):
    dev = start_device(mcu("qemu-m3"), fw("qemu-m3"))
    _hello(dev)
    start = time.monotonic()
    dev.proc.send_signal(signal.SIGTERM)
    dev.proc.wait(5)
    assert time.monotonic() - start < 2
    dev.stop()
