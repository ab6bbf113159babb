"""`toolchain plan`: latency, energy, bandwidth and memory per split point and per exit threshold."""
