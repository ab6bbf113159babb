"""Image checks before anything is written (toolchain.mcu.elfcheck): real ELFs built by the toolchain,
and copies broken on purpose (a patched vector table, another board's image, a budget that is too small)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from helpers_fw import (
    fw_fixture,  # noqa: F401  (registers the `fw` fixture)
    mcu,
)
from hypothesis import given
from hypothesis import strategies as st

from toolchain.cli import main
from toolchain.mcu.elfcheck import ImageError, check_bin, check_image, read_elf
from toolchain.mcu.gdbmi import unescape


def _patched(src: Path, tmp_path: Path, paddr: int, value: int) -> Path:
    """A copy of the ELF whose 32-bit word loaded at `paddr` is `value`."""
    elf = read_elf(src)
    seg = next(s for s in elf.loads if s.paddr <= paddr < s.paddr + s.filesz)
    data = bytearray(elf.data)
    struct.pack_into("<I", data, seg.offset + paddr - seg.paddr, value)
    out = tmp_path / "patched.elf"
    out.write_bytes(bytes(data))
    return out


def test_program_headers_agree_with_readelf(fw):
    elf_path = fw("stm32f4") / "firmware.elf"
    out = subprocess.run(
        ["arm-none-eabi-readelf", "-lW", str(elf_path)], capture_output=True, text=True, check=True
    ).stdout
    rows = re.findall(r"^\s+LOAD\s+(0x\w+) (0x\w+) (0x\w+) (0x\w+) (0x\w+)", out, re.M)
    expected = [tuple(int(v, 16) for v in r) for r in rows]
    got = [(s.offset, s.vaddr, s.paddr, s.filesz, s.memsz) for s in read_elf(elf_path).segments]
    assert got == expected and len(got) >= 2  # .text, .data (loaded in flash, run in RAM), ...


@pytest.mark.parametrize("target", ["qemu-m4", "qemu-m3", "qemu-stm32f4", "stm32f4"])
def test_the_toolchains_own_images_pass(fw, target):
    m = mcu(target)
    s = check_image(fw(target) / "firmware.elf", m)
    assert s.load_start == m.flash_origin and s.load_end <= m.flash_origin + m.flash
    assert s.initial_sp == m.ram_origin + m.ram  # _estack: the top of RAM
    assert s.reset_vector & 1 and m.flash_origin < s.reset_vector < s.load_end
    assert s.flash_bytes == read_elf(fw(target) / "firmware.elf").flash_image(m.flash_origin).__len__()


@pytest.mark.parametrize(
    ("image", "target", "message"),
    [
        ("qemu-m4", "stm32f4", "writes 0x00000000-"),  # linked at 0, the STM32's flash is at 0x08000000
        ("stm32f4", "qemu-m4", "writes 0x08000000-"),
        ("qemu-m4", "qemu-m3", "hard-float ABI, but qemu-m3 (cortex-m3) has no FPU"),
    ],
)
def test_another_boards_image_is_refused(fw, image, target, message):
    with pytest.raises(ImageError, match=re.escape(message)) as exc:
        check_image(fw(image) / "firmware.elf", mcu(target))
    assert f"build --target {target}" in str(exc.value)


def test_a_wrong_image_in_a_build_directory_is_refused_before_any_tool_runs(fw, tmp_path, capsys):
    build = tmp_path / "stm32f4"
    shutil.copytree(fw("stm32f4"), build)
    shutil.copy(fw("qemu-m4") / "firmware.elf", build / "firmware.elf")
    for extra in ([], ["--via", "gdb"]):
        assert main(["flash", "--target", "stm32f4", "--build", str(build), "--dry-run", *extra]) == 2
        captured = capsys.readouterr()
        assert "outside the flash of stm32f4 (0x08000000-0x0807ffff" in captured.err
        assert captured.out == ""  # no command printed, nothing run


@pytest.mark.parametrize(
    ("word", "value", "message"),
    [
        (0, 0x08001000, "initial stack pointer 0x08001000 is not a word-aligned address inside the RAM"),
        (0, 0x2001FFFE, "initial stack pointer 0x2001fffe"),  # in RAM, but not word-aligned
        (0, 0x20020004, "initial stack pointer 0x20020004"),  # one word past the end of RAM
        (1, None, "is not a Thumb address (odd)"),  # the reset vector with its Thumb bit cleared
        (1, 0x0807F001, "reset vector 0x0807f001"),  # odd, in flash, but past the loaded code
    ],
)
def test_a_broken_vector_table_is_refused(fw, tmp_path, word, value, message):
    src = fw("stm32f4") / "firmware.elf"
    good = check_image(src, mcu("stm32f4"))
    if value is None:
        value = good.reset_vector & ~1
    bad = _patched(src, tmp_path, 0x08000000 + 4 * word, value)
    with pytest.raises(ImageError, match=re.escape(message)):
        check_image(bad, mcu("stm32f4"))


def test_an_image_that_does_not_fit_is_refused(fw):
    m = mcu("stm32f4")
    src = fw("stm32f4") / "firmware.elf"
    size = check_image(src, m).flash_bytes
    with pytest.raises(ImageError, match=f"does not fit the flash of stm32f4: .* \\({size:,} B from"):
        check_image(src, dataclasses.replace(m, flash=size - 4))
    check_image(src, dataclasses.replace(m, flash=size))  # exactly full is fine
    with pytest.raises(ImageError, match="in memory that stm32f4 does not have"):
        check_image(src, dataclasses.replace(m, ram_origin=0x10000000))  # .data/.bss run at 0x2000_0000


def test_files_that_are_not_arm_executables_are_refused(fw, tmp_path):
    m = mcu("stm32f4")
    with pytest.raises(ImageError, match="is not an ELF file"):
        check_image(fw("stm32f4") / "firmware.bin", m)
    data = (fw("stm32f4") / "firmware.elf").read_bytes()
    cut = tmp_path / "cut.elf"
    cut.write_bytes(data[:0x1100])  # the headers survive, the segments do not
    with pytest.raises(ImageError, match="truncated"):
        check_image(cut, m)
    host = tmp_path / "host.elf"
    host.write_bytes(Path("/bin/true").read_bytes())
    with pytest.raises(ImageError, match=r"not a 32-bit little-endian ELF"):
        check_image(host, m)


def test_a_bin_must_be_the_elfs_flash_image(fw, tmp_path):
    build, m = fw("stm32f4"), mcu("stm32f4")
    check_bin(build / "firmware.bin", build / "firmware.elf", m)  # objcopy -O binary made it
    data = bytearray((build / "firmware.bin").read_bytes())
    data[0x100] ^= 0x01
    bad = tmp_path / "firmware.bin"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="first difference at 0x08000100"):
        check_bin(bad, build / "firmware.elf", m)


def _gdb_escape(text: str) -> str:
    """How GDB/MI writes a c-string: backslash escapes, other bytes of UTF-8 as octal."""
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return "".join(out)


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_mi_strings_decode_back_to_the_text(text):
    assert unescape(_gdb_escape(text)) == text
