"""Arduino-style boards: a generated sketch (arduino-cli / Arduino IDE) and a PlatformIO project around
the same protocol, application, kernel and model sources, plus a cross build of those portable
sources with arm-none-eabi-gcc for the board's CPU, which proves they compile and sizes them.

The sketch itself (with the Arduino core and `Serial`) is compiled only by arduino-cli or PlatformIO;
`toolchain flash` runs them when installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.mcu.compile import CompileResult, _run, compiler_version, require_tool
from toolchain.mcu.render import render_sources
from toolchain.mcu.target import McuTarget
from toolchain.paths import FIRMWARE_DIR

ARDUINO_DIR = FIRMWARE_DIR / "arduino"
SKETCH = "tc_firmware"
BOARD_GLUE = "tc_board_arduino.cpp"


def _platformio_ini(mcu: McuTarget) -> str:
    text = (ARDUINO_DIR / "platformio.ini").read_text()
    for key, value in {
        "target": mcu.name,
        "platform": str(mcu.arduino.get("platformio_platform", "")),
        "board": str(mcu.arduino.get("platformio_board", "")),
        "baud": str(mcu.baud),
    }.items():
        text = text.replace("{" + key + "}", value)
    return text


def build_arduino(mcu: McuTarget, cmodel, out: Path) -> CompileResult:
    """Write out/sketch/tc_firmware/, out/platformio/ and out/portable.o (cross-compiled)."""
    for key in ("fqbn", "platformio_platform", "platformio_board"):
        if key not in mcu.arduino:
            raise ToolchainError(f"{mcu.target.path}: missing arduino.{key}")
    sketch = out / "sketch" / SKETCH
    sketch_src = sketch / "src"
    files = render_sources(mcu, cmodel, sketch_src, with_main=False)
    shutil.copyfile(ARDUINO_DIR / BOARD_GLUE, sketch_src / BOARD_GLUE)
    shutil.copyfile(ARDUINO_DIR / f"{SKETCH}.ino", sketch / f"{SKETCH}.ino")

    pio = out / "platformio"
    shutil.copytree(sketch_src, pio / "src")
    shutil.copyfile(ARDUINO_DIR / "main.cpp", pio / "src" / "main.cpp")
    (pio / "platformio.ini").write_text(_platformio_ini(mcu))

    # The portable part (everything but the Arduino glue) for the board's CPU, partially linked.
    require_tool(mcu.cc)
    shutil.copyfile(ARDUINO_DIR / "portable.ld", sketch_src / "portable.ld")
    portable = [f for f in files if f.endswith(".c")]
    cmd = [
        mcu.cc,
        *mcu.cpu_flags,
        *mcu.cflags,
        "-I.",
        "-nostdlib",
        "-r",
        "-Wl,-T,portable.ld",
        *portable,
        "-o",
        "../../../portable.o",
    ]
    proc = _run(cmd, sketch_src)
    (sketch_src / "portable.ld").unlink()
    if proc.returncode != 0:
        raise ToolchainError(
            f"the portable firmware sources do not compile for {mcu.name}:\n{proc.stderr.strip()}"
        )
    images = {
        "sketch": f"sketch/{SKETCH}",
        "platformio": "platformio",
        "portable": "portable.o",
    }
    return CompileResult(images, out / "portable.o", [cmd], compiler_version(mcu.cc))
