"""Ctrl-C ends a command as "interrupted" (exit 130) with nothing half-written, wherever it lands:
during imports, inside TensorFlow (taken between batches), or when a native library turns it into
another exception (issue 13: 10)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import traceback

import pytest

from toolchain import interrupt
from toolchain.cli import main


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_ctrl_c_while_importing_a_command_is_a_clean_stop(monkeypatch, capsys):
    def slow_import(name):
        raise KeyboardInterrupt

    monkeypatch.setattr("toolchain.cli.importlib.import_module", slow_import)
    assert main(["train"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_an_interrupt_a_library_turned_into_another_error_is_still_a_stop(monkeypatch, capsys):
    import toolchain.commands.info as info

    def native_work(args):
        with interrupt.deferred():
            os.kill(os.getpid(), signal.SIGINT)  # recorded, not raised, inside deferred()
            raise SystemError("../Objects/tupleobject.c: bad argument to internal function")

    monkeypatch.setattr(info, "run", native_work)
    assert main(["info"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    monkeypatch.setattr(info, "run", lambda args: 1 / 0)  # an ordinary bug stays a traceback
    with pytest.raises(ZeroDivisionError):
        main(["info"])


def test_ctrl_c_during_training_is_taken_between_batches(make_config, mnist_splits, monkeypatch, tmp_path):
    import toolchain.train as train_mod
    from toolchain.data import Splits

    original = train_mod._epoch_logger

    def with_ctrl_c(*args, **kwargs):
        callback = original(*args, **kwargs)
        inner = callback.on_train_batch_end

        def on_train_batch_end(batch, logs=None):
            if batch == 2:
                os.kill(os.getpid(), signal.SIGINT)  # lands inside Keras' training loop
            inner(batch, logs)

        callback.on_train_batch_end = on_train_batch_end
        return callback

    monkeypatch.setattr(train_mod, "_epoch_logger", with_ctrl_c)
    s, n, m = mnist_splits, 4000, 500
    sub = Splits(s.x_train[:n], s.y_train[:n], s.x_val[:m], s.y_val[:m], s.x_test[:m], s.y_test[:m])
    with pytest.raises(KeyboardInterrupt) as exc:
        train_mod.train(make_config(1), tmp_path / "b", data=sub, quiet=True)
    # Raised by the toolchain's own check between batches, not wherever the signal happened to land.
    innermost = traceback.extract_tb(exc.value.__traceback__)[-1]
    assert innermost.filename.endswith(os.path.join("toolchain", "interrupt.py")), innermost
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_in_a_real_training_run_keeps_the_previous_bundle(tmp_path, data_root, make_config):
    from toolchain.config import save_config
    from toolchain.fsutil import atomic_directory

    save_config(make_config(50), tmp_path / "p.toml")
    out = tmp_path / "bundle"
    with atomic_directory(out, "bundle") as tmp:  # a previous artifact at --out
        (tmp / "previous.txt").write_text("keep me")
    config = str(tmp_path / "p.toml")
    cmd = [sys.executable, "-m", "toolchain", "train", "--config", config, "--out", str(out),
           "--data-dir", str(data_root)]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("training ["):  # the model is being built and traced: inside TF
                proc.send_signal(signal.SIGINT)
                break
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = "".join(lines) + rest
    assert proc.returncode == 130, err
    assert err.rstrip().endswith("interrupted") and "Traceback" not in err and "Error" not in err
    assert (out / "previous.txt").read_text() == "keep me"
    assert _leftovers(tmp_path) == []
