"""verify through a fault-injecting proxy: it completes with correct results after retries, or stops
with a clear error in bounded time; it never passes silently."""

from __future__ import annotations

import threading
import time

import pytest
from helpers_fw import (
    FaultProxy,
    fw_fixture,  # noqa: F401  (registers the `fw` fixture)
    mcu,
    url_addr,
)

from toolchain.mcu.device import start_device
from toolchain.mcu.protocol import LinkError
from toolchain.mcu.verify import VerifyOptions, verify


def _opts(target, build, data_root, samples, url, **kw) -> VerifyOptions:
    kw = {"quiet": True, "reply_timeout": 1.5, "connect_timeout": 5.0, **kw}
    return VerifyOptions(target=target, build=build, samples=samples, data_dir=str(data_root), url=url, **kw)


def test_bit_flips_drops_and_duplicates_are_recovered(fw, data_root):
    build = fw("qemu-m3")
    with start_device(mcu("qemu-m3"), build) as dev:
        # ~3e-4 faults per byte: about 1 INFER request in 4 is damaged; 10 retries make a sample
        # that never gets through practically impossible (0.22^11).
        faults = {"p_flip": 1e-4, "p_drop": 1e-4, "p_dup": 1e-4}
        with FaultProxy(url_addr(dev.url), seed=3, **faults) as proxy:
            r = verify(_opts("qemu-m3", build, data_root, 40, proxy.url, retries=10))
    assert proxy.faults > 0
    assert r["passed"] and r["mismatches"]["samples"] == 0 and r["samples"] == 40
    assert r["link"]["retransmissions"] > 0


def test_a_device_reset_mid_run_is_survived(fw, data_root):
    build = fw("qemu-m4")
    with start_device(mcu("qemu-m4"), build, qmp=True) as dev:
        done = threading.Event()

        def reset_once(upstream_bytes: int) -> None:
            if upstream_bytes > 15 * 810 and not done.is_set():
                done.set()
                dev.reset()

        with FaultProxy(url_addr(dev.url), on_upstream=reset_once) as proxy:
            r = verify(_opts("qemu-m4", build, data_root, 40, proxy.url))
    assert done.is_set()
    assert r["passed"] and r["mismatches"]["samples"] == 0
    assert r["link"]["rehellos"] >= 1 or r["link"]["retransmissions"] >= 1


def test_a_hopeless_link_stops_with_a_clear_error_in_bounded_time(fw, data_root):
    build = fw("qemu-m3")
    with start_device(mcu("qemu-m3"), build) as dev, FaultProxy(url_addr(dev.url), p_flip=0.05) as proxy:
        start = time.monotonic()
        with pytest.raises(LinkError, match=r"failed after 3 attempts|no HELLO reply"):
            verify(_opts("qemu-m3", build, data_root, 20, proxy.url, retries=2, connect_timeout=3.0))
        elapsed = time.monotonic() - start
    # connect 3 s, then at most 3 attempts of (1.5 s + frame time) with re-handshakes of <= 2 s each.
    assert elapsed < 30


def test_a_link_that_drops_mid_run_is_an_error_not_a_hang(fw, data_root):
    build = fw("qemu-m3")
    with start_device(mcu("qemu-m3"), build) as dev:
        holder: list[FaultProxy] = []

        def cut(upstream_bytes: int) -> None:
            if upstream_bytes > 10 * 810:
                threading.Thread(target=holder[0].close).start()

        with FaultProxy(url_addr(dev.url), on_upstream=cut) as proxy:
            holder.append(proxy)
            start = time.monotonic()
            with pytest.raises(LinkError, match=r"sample \d+ of 30"):
                verify(_opts("qemu-m3", build, data_root, 30, proxy.url, retries=2))
            assert time.monotonic() - start < 20
