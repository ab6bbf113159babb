"""Per-target power figures for `toolchain plan`: every microcontroller target has datasheet figures
with their source and status, or says in the data file why it has none; none is invented."""

from __future__ import annotations

import pytest

from toolchain.plan.costs import Overrides, load_devices, resolve, sourced
from toolchain.targets import TargetKind, list_targets

FIGURES = ("run_ma", "sleep_ma", "supply_v", "active_mw")


def _mcu_targets() -> list[str]:
    return [t.name for t in list_targets() if t.kind == TargetKind.MCU]


def test_every_mcu_target_has_sourced_figures_or_says_why_not():
    power = load_devices(None)["power"]
    for name in _mcu_targets():
        entry = power.get(name)
        assert isinstance(entry, dict), f"devices.toml has no [power.{name}]"
        figures = {k: sourced(v, f"power.{name}.{k}") for k, v in entry.items() if k in FIGURES}
        for key, fig in figures.items():
            assert fig.status in {"verified", "unverified", "assumption", "derived"}, (name, key)
            assert len(fig.source) > 30, f"power.{name}.{key} must say where it comes from"
        can_compute = "active_mw" in figures or {"run_ma", "supply_v"} <= set(figures)
        if not can_compute:
            assert len(entry.get("missing", "")) > 30, f"power.{name} must say why it has no figure"
        assert set(entry) <= {*FIGURES, "missing", "missing_sleep"}, f"power.{name}: unknown keys"


def test_active_power_is_run_current_times_supply_with_the_weakest_status():
    costs = resolve("qemu-stm32f4", Overrides())
    power = load_devices(None)["power"]["qemu-stm32f4"]
    assert costs.power_mw.value == pytest.approx(power["run_ma"]["value"] * power["supply_v"]["value"])
    assert costs.power_mw.status in {"unverified", "assumption"}  # never "derived" from weaker inputs
    assert "mA x" in costs.power_mw.source and "DS8626" in costs.power_mw.source
    assert costs.energy_per_bit_nj is not None  # the UART link is fed by the core: energy per bit follows


def test_a_target_without_a_sourced_figure_names_the_document_and_asks_for_the_flag():
    costs = resolve("stm32f4", Overrides())
    assert costs.power_mw is None
    note = next(n for n in costs.notes if "power" in n)
    assert "DS10693" in note and "--power-mw" in note
    given = resolve("stm32f4", Overrides(power_mw=50.0))
    assert given.power_mw.value == 50.0 and given.power_mw.status == "user"
