"""`toolchain verify`: the device in the loop. Streams test samples to a board (or an emulated board
or the host build it starts itself), compares split activations, exit logits and exit decisions
with the NumPy reference (int8 bit-exact, float32 within a documented tolerance), runs the tail on
the host for samples that did not exit, and reports accuracy, error metrics, counters and speed.
"""

from toolchain.mcu.verify.run import VerifyOptions, verify

__all__ = ["VerifyOptions", "verify"]
