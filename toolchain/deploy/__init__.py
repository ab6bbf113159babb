"""Builders for non-MCU targets: Raspberry Pi (rpi), Coral Edge TPU (coral), inference server (server)."""
