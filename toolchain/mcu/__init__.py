"""The microcontroller backend: C export, firmware build, devices, flashing, the serial protocol, verify."""
