"""Checks of a Cortex-M firmware image before anything is written to a board.

A flasher writes whatever it is given: an image linked for another board lands at the wrong address
(or is silently cut off), and a board with a broken vector table locks up at reset with nothing on
its serial port to say why. So every write path (`toolchain flash`, native flashers and GDB) reads the
ELF's program headers first and refuses when:

- a loaded byte (a PT_LOAD segment's file contents, at its load address) lies outside the target's
  flash region ([memory] flash_origin/flash of the target file), or a segment's run address lies in
  neither flash nor RAM: the image was linked for another board;
- the vector table at the start of flash is missing, its initial stack pointer is not inside RAM
  (or not word-aligned), or its reset vector is not a Thumb address (odd) inside loaded code;
- the image uses the hard-float ABI on a core without an FPU (it would fault at the first VFP op);
- a raw `.bin` to be written at the flash origin is not byte for byte the ELF's flash image.

Only the ELF header and program headers are read (struct, no dependency): they are what every
loader, GDB's `load` included, writes from.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.mcu.target import McuTarget

EM_ARM = 40
ET_EXEC = 2
PT_LOAD = 1
PF_X = 1
EF_ARM_ABI_FLOAT_HARD = 0x400


class ImageError(ToolchainError):
    """A firmware image that must not be written to this target."""


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD program header: file bytes [offset, offset+filesz) are written at paddr (the load
    address); the code runs with them at vaddr (RAM for .data, which the start-up code copies)."""

    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    flags: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)


@dataclass(frozen=True)
class Elf:
    path: Path
    flags: int
    entry: int
    segments: tuple[Segment, ...]
    data: bytes

    @property
    def loads(self) -> list[Segment]:
        """Segments that write bytes (a NOBITS segment such as .bss or the stack writes nothing)."""
        return [s for s in self.segments if s.filesz > 0]

    def read(self, paddr: int, n: int) -> bytes | None:
        """The n bytes the image writes at load address paddr, or None if it writes none there."""
        for s in self.loads:
            if s.paddr <= paddr and paddr + n <= s.paddr + s.filesz:
                start = s.offset + paddr - s.paddr
                return self.data[start : start + n]
        return None

    def flash_image(self, origin: int) -> bytes:
        """What `objcopy -O binary` makes of it: every loaded byte from origin on, gaps zero-filled."""
        end = max(s.paddr + s.filesz for s in self.loads)
        out = bytearray(end - origin)
        for s in self.loads:
            out[s.paddr - origin : s.paddr - origin + s.filesz] = self.data[s.offset : s.offset + s.filesz]
        return bytes(out)


@dataclass(frozen=True)
class ImageSummary:
    """What check_image found: where the image loads and how it boots."""

    path: Path
    load_start: int
    load_end: int  # exclusive
    flash_bytes: int
    ram_bytes: int
    initial_sp: int
    reset_vector: int

    def describe(self) -> str:
        return (
            f"{self.path.name}: loads {span(self.load_start, self.load_end)} ({self.flash_bytes:,} B), "
            f"RAM {self.ram_bytes:,} B, initial SP 0x{self.initial_sp:08x}, "
            f"reset vector 0x{self.reset_vector:08x}"
        )


def span(start: int, end: int) -> str:
    """`0x08000000-0x08002a5f`: an inclusive address range, for messages."""
    return f"0x{start:08x}-0x{max(start, end - 1):08x}"


def read_elf(path: Path) -> Elf:
    """Parse the ELF header and program headers of a 32-bit little-endian ARM executable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read firmware image {path}: {exc.strerror}") from None
    hint = "flash the firmware.elf of a `toolchain build` (rebuild it if it was changed)"
    if data[:4] != b"\x7fELF":
        raise ImageError(f"{path} is not an ELF file", hint=hint)
    if len(data) < 52 or data[4] != 1 or data[5] != 1:
        raise ImageError(f"{path} is not a 32-bit little-endian ELF (an Arm Cortex-M image is)", hint=hint)
    e_type, e_machine, _, entry, phoff, _, flags, _, phentsize, phnum = struct.unpack_from(
        "<HHIIIIIHHH", data, 16
    )
    if e_machine != EM_ARM or e_type != ET_EXEC:
        raise ImageError(
            f"{path} is not an Arm executable (ELF machine {e_machine}, type {e_type}; expected {EM_ARM}, "
            f"{ET_EXEC})",
            hint=hint,
        )
    if phentsize < 32 or phoff + phnum * phentsize > len(data):
        raise ImageError(f"{path}: program headers are cut off (the file is truncated)", hint=hint)
    segments = []
    for i in range(phnum):
        p_type, offset, vaddr, paddr, filesz, memsz, pflags, _ = struct.unpack_from(
            "<IIIIIIII", data, phoff + i * phentsize
        )
        if p_type != PT_LOAD:
            continue
        if offset + filesz > len(data):
            raise ImageError(f"{path}: segment {i} extends past the end of the file (truncated)", hint=hint)
        segments.append(Segment(offset, vaddr, paddr, filesz, memsz, pflags))
    if not any(s.filesz for s in segments):
        raise ImageError(f"{path} loads nothing (no PT_LOAD segment with contents)", hint=hint)
    return Elf(path, flags, entry, tuple(segments), data)


def _inside(start: int, end: int, origin: int, size: int) -> bool:
    return origin <= start and end <= origin + size


def _where(mcu: McuTarget) -> str:
    return f"[memory] in {mcu.target.path.name}"


def _check_regions(elf: Elf, mcu: McuTarget) -> None:
    flash, ram = (mcu.flash_origin, mcu.flash or 0), (mcu.ram_origin, mcu.ram or 0)
    rebuild = (
        f"this image was linked for another board: build for {mcu.name} with "
        f"`toolchain build --target {mcu.name}`"
    )
    end = max(s.paddr + s.filesz for s in elf.loads)
    start = min(s.paddr for s in elf.loads)
    if flash[0] <= start < flash[0] + flash[1] < end:  # starts in flash, runs past its end
        raise ImageError(
            f"{elf.path.name} does not fit the flash of {mcu.name}: it loads up to 0x{end - 1:08x} "
            f"({end - flash[0]:,} B from the flash origin), the flash is {flash[1]:,} B ({_where(mcu)})",
            hint="make the model smaller (fewer edges, int8) or choose a target with more flash",
        )
    for s in elf.loads:
        if not _inside(s.paddr, s.paddr + s.filesz, *flash):
            raise ImageError(
                f"{elf.path.name} writes {span(s.paddr, s.paddr + s.filesz)}, outside the flash of "
                f"{mcu.name} ({span(flash[0], flash[0] + flash[1])}, {_where(mcu)})",
                hint=rebuild,
            )
    for s in elf.segments:
        if s.memsz and not (
            _inside(s.vaddr, s.vaddr + s.memsz, *flash) or _inside(s.vaddr, s.vaddr + s.memsz, *ram)
        ):
            raise ImageError(
                f"{elf.path.name} runs with {span(s.vaddr, s.vaddr + s.memsz)} in memory that "
                f"{mcu.name} does not have (flash {span(flash[0], flash[0] + flash[1])}, "
                f"RAM {span(ram[0], ram[0] + ram[1])}, {_where(mcu)})",
                hint=rebuild,
            )


def _check_vectors(elf: Elf, mcu: McuTarget) -> tuple[int, int]:
    """(initial SP, reset vector) from the vector table at the flash origin, checked."""
    origin = mcu.flash_origin
    head = elf.read(origin, 8)
    if head is None:
        raise ImageError(
            f"{elf.path.name} has no vector table at the start of the flash of {mcu.name} (0x{origin:08x}): "
            "the board would not boot",
            hint=f"the vector table (.isr_vector) must be linked first at flash_origin ({_where(mcu)})",
        )
    sp, reset = struct.unpack("<II", head)
    ram_end = mcu.ram_origin + (mcu.ram or 0)
    if not (mcu.ram_origin < sp <= ram_end) or sp % 4:
        raise ImageError(
            f"{elf.path.name}: the vector table's initial stack pointer 0x{sp:08x} is not a word-aligned "
            f"address inside the RAM of {mcu.name} (0x{mcu.ram_origin:08x}, up to 0x{ram_end:08x})",
            hint="the first word of the image must be the top of the stack (_estack); rebuild the image",
        )
    code = [s for s in elf.loads if s.executable]
    if not reset & 1 or not any(s.paddr <= reset - 1 < s.paddr + s.filesz for s in code):
        raise ImageError(
            f"{elf.path.name}: the reset vector 0x{reset:08x} is not a Thumb address (odd) inside the "
            "image's code: the core would fault at reset",
            hint="the second word of the image must be Reset_Handler | 1; rebuild the image",
        )
    return sp, reset


def check_image(path: Path, mcu: McuTarget) -> ImageSummary:
    """Refuse (ImageError) an image that would not boot on `mcu`; describe one that would."""
    if mcu.board != "cortex_m":
        raise ImageError(f"{mcu.name} is not a bare-metal Cortex-M board: there is no ELF image to check")
    elf = read_elf(path)
    if mcu.fpu == "none" and elf.flags & EF_ARM_ABI_FLOAT_HARD:
        raise ImageError(
            f"{path.name} is built for the hard-float ABI, but {mcu.name} ({mcu.core}) has no FPU",
            hint=f"build for {mcu.name} with `toolchain build --target {mcu.name}`",
        )
    _check_regions(elf, mcu)
    sp, reset = _check_vectors(elf, mcu)
    starts = [s.paddr for s in elf.loads]
    ends = [s.paddr + s.filesz for s in elf.loads]
    ram = sum(
        s.memsz for s in elf.segments if _inside(s.vaddr, s.vaddr + s.memsz, mcu.ram_origin, mcu.ram or 0)
    )
    return ImageSummary(path, min(starts), max(ends), sum(s.filesz for s in elf.loads), ram, sp, reset)


def check_bin(bin_path: Path, elf_path: Path, mcu: McuTarget) -> None:
    """A raw image written at the flash origin must be exactly the ELF's flash image."""
    want = read_elf(elf_path).flash_image(mcu.flash_origin)
    try:
        got = bin_path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {bin_path}: {exc.strerror}") from None
    if got != want:
        first = next(
            (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want))
        )
        raise ImageError(
            f"{bin_path.name} is not the flash image of {elf_path.name} ({len(got):,} vs "
            f"{len(want):,} bytes, first difference at 0x{mcu.flash_origin + first:08x})",
            hint=f"rebuild with `toolchain build --target {mcu.name}` so both come from one link",
        )
