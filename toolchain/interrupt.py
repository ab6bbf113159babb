"""Ctrl-C during long native work, delivered where Python code can take it.

Python runs a SIGINT handler between two bytecodes of the main thread. During training those
bytecodes are often callbacks from TensorFlow's C++ runtime (tf.data, Keras callbacks, pybind11
conversions); a KeyboardInterrupt raised inside one reaches C++ code that may not expect a Python
error there, and can come out as an unrelated exception (e.g. `SystemError: ... bad argument to
internal function`) instead of a clean stop.

- `deferred()`: inside it, the first Ctrl-C is only recorded; `check()` (called between training
  batches) raises the KeyboardInterrupt from plain Python, and leaving the block raises it too.
  A second Ctrl-C raises at once: the user insists.
- `handling()`: the CLI's wrapper. It remembers that Ctrl-C was pressed, so whatever exception a
  library turns the interrupt into, the command still ends as "interrupted" (exit 130).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

_state = {"received": False}


def _raising(signum: int, frame: FrameType | None) -> None:
    _state["received"] = True
    raise KeyboardInterrupt


def _deferring(signum: int, frame: FrameType | None) -> None:
    if _state["received"]:
        raise KeyboardInterrupt
    _state["received"] = True


def received() -> bool:
    """Whether Ctrl-C was pressed since the last `handling()` or `deferred()` began."""
    return _state["received"]


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed (a safe point inside `deferred()`)."""
    if _state["received"]:
        raise KeyboardInterrupt


def _ours(handler: object) -> bool:
    # Only replace Python's own handler (or ours): not SIG_IGN (a background job) nor an application's.
    return handler in (signal.default_int_handler, _raising, _deferring)


@contextlib.contextmanager
def _installed(handler: Callable[[int, FrameType | None], None]) -> Iterator[bool]:
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = signal.getsignal(signal.SIGINT)
    if not _ours(previous):
        yield False
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield True
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def handling() -> Iterator[None]:
    _state["received"] = False
    with _installed(_raising):
        yield


@contextlib.contextmanager
def deferred() -> Iterator[Callable[[], None]]:
    """Yield `check`; Ctrl-C inside the block surfaces from `check()` or at the block's end."""
    _state["received"] = False  # an earlier interrupt was raised already (and handled by someone)
    with _installed(_deferring) as active:
        yield check if active else (lambda: None)
        check()
