"""Training: joint or two-stage, seeded, with exit calibration on the validation split.

Joint: loss = w_exit·CE(exit) + w_final·CE(final). Two-stage: the backbone first (final loss only),
then the exit branch alone on the frozen head. The test set is only evaluated, never used to choose.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain import interrupt
from toolchain.bundle import weight_shapes, write_bundle
from toolchain.calibrate import Sweep, apply_threshold, calibrate, plot_sweep, softmax_confidence, sweep
from toolchain.config import ProjectConfig
from toolchain.data import DATASETS, VALIDATION_SEED, Splits, load_splits, subsample_train
from toolchain.errors import ToolchainError
from toolchain.fsutil import prepare_output_dir
from toolchain.progress import log
from toolchain.resources import require_memory
from toolchain.sparsity import build_connectivity, connectivity_bytes, count_params, junction_shapes

EpochHook = Callable[[dict[str, float]], None]


@dataclass
class TrainResult:
    bundle: Path | None
    metrics: dict[str, Any]


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _optimizer(cfg: ProjectConfig, steps_per_epoch: int, epochs: int):
    import keras

    t = cfg.training
    lr: Any = t.learning_rate
    if t.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            t.learning_rate, decay_steps=max(1, steps_per_epoch * epochs), alpha=t.final_lr_fraction
        )
    elif t.schedule == "inverse_time":
        lr = keras.optimizers.schedules.InverseTimeDecay(t.learning_rate, decay_steps=1, decay_rate=t.decay)
    # Decoupled weight decay (AdamW-style) on every trainable variable; 0 disables it.
    wd = t.weight_decay or None
    if t.optimizer == "adam":
        return keras.optimizers.AdamW(lr, weight_decay=wd) if wd else keras.optimizers.Adam(lr)
    return keras.optimizers.SGD(lr, momentum=0.9, weight_decay=wd)


def _diverged(cfg: ProjectConfig, label: str, epoch: int, batch: int, loss: float) -> ToolchainError:
    return ToolchainError(
        f"training diverged ({label} epoch {epoch + 1}, batch {batch + 1}): the loss is {loss}; "
        "no bundle was written",
        hint=f"lower training.learning_rate (now {cfg.training.learning_rate:g}) or network.bias_init "
        f"(now {cfg.network.bias_init:g})",
    )


def _epoch_record(epoch: int, logs: dict, wall_s: float, cpu_s: float) -> dict[str, float]:
    """One point of the learning curve: validation accuracies (the search's K counts these epochs),
    training loss, wall seconds and this process's CPU seconds (all threads) for the epoch."""
    rec: dict[str, float] = {"epoch": epoch + 1, "loss": float(logs.get("loss", 0.0))}
    for key in ("val_final_accuracy", "val_exit_accuracy", "final_accuracy", "exit_accuracy"):
        if key in logs:
            rec[key] = float(logs[key])
    rec["wall_s"] = wall_s
    rec["cpu_s"] = cpu_s
    return rec


def _epoch_logger(
    cfg: ProjectConfig, label: str, epochs: int, quiet: bool, on_epoch: EpochHook | None, stop_at: float
):
    import keras

    tty = sys.stderr.isatty()

    class EpochLog(keras.callbacks.Callback):
        """A live bar over the batches on a terminal; one line per epoch always. Between batches it
        is also where Ctrl-C is taken (toolchain.interrupt) and where a NaN loss stops training. Reports
        each epoch's record to `on_epoch` and stops training once validation accuracy reaches `stop_at`
        (> 0)."""

        epochs_run = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.monotonic()
            self.cpu0 = time.process_time()
            self.epoch = epoch
            self.last_draw = 0.0

        def on_train_batch_end(self, batch, logs=None):
            interrupt.check()
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise _diverged(cfg, label, self.epoch, batch, float(loss))
            now = time.monotonic()
            if quiet or not tty or now - self.last_draw < 0.2:
                return
            self.last_draw = now
            steps = self.params.get("steps") or 0
            frac = (batch + 1) / steps if steps else 0.0
            bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
            acc = (logs or {}).get("final_accuracy")
            acc_s = f"  final acc {acc:.4f}" if acc is not None else ""
            loss = (logs or {}).get("loss", 0.0)
            head = f"\r{label} epoch {self.epoch + 1:>3}/{epochs} [{bar}] {batch + 1}/{steps}"
            sys.stderr.write(f"{head}  loss {loss:.4f}{acc_s}")
            sys.stderr.flush()

        def on_epoch_end(self, epoch, logs=None):
            if tty and not quiet:
                sys.stderr.write("\r\033[K")
            logs = logs or {}
            parts = [f"{label} epoch {epoch + 1:>3}/{epochs}", f"loss {logs.get('loss', 0):.4f}"]
            for key, name in (
                ("exit_accuracy", "exit acc"),
                ("final_accuracy", "final acc"),
                ("val_exit_accuracy", "val exit"),
                ("val_final_accuracy", "val final"),
            ):
                if key in logs:
                    parts.append(f"{name} {logs[key]:.4f}")
            wall = time.monotonic() - self.t0
            parts.append(f"{wall:.1f}s")
            log("  ".join(parts), quiet)
            self.epochs_run = epoch + 1
            if on_epoch is not None:
                on_epoch(_epoch_record(epoch, logs, wall, time.process_time() - self.cpu0))
            if stop_at > 0 and logs.get("val_final_accuracy", 0.0) >= stop_at:
                self.model.stop_training = True

    return EpochLog()


def _fit(
    model,
    cfg,
    data: Splits,
    weights: tuple[float, float],
    epochs: int,
    label: str,
    quiet: bool,
    on_epoch: EpochHook | None = None,
    stop_at: float = 0.0,
) -> int:
    """Train `epochs` epochs (fewer when `stop_at` is reached); returns the epochs run."""
    import keras
    import tensorflow as tf

    t = cfg.training
    steps = int(np.ceil(len(data.x_train) / t.batch_size))
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        optimizer=_optimizer(cfg, steps, epochs),
        loss={"exit": ce, "final": ce},
        loss_weights={"exit": weights[0], "final": weights[1]},
        metrics={"exit": ["accuracy"], "final": ["accuracy"]},
    )
    targets = {"exit": data.y_train, "final": data.y_train}
    ds = (
        tf.data.Dataset.from_tensor_slices((data.x_train, targets))
        .shuffle(len(data.x_train), seed=t.seed, reshuffle_each_iteration=True)
        .batch(t.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    val = (data.x_val, {"exit": data.y_val, "final": data.y_val})
    logger = _epoch_logger(cfg, label, epochs, quiet, on_epoch, stop_at)
    model.fit(
        ds,
        shuffle=False,  # the dataset shuffles itself, seeded
        epochs=epochs,
        validation_data=val,
        verbose=0,
        callbacks=[logger],
    )
    return logger.epochs_run


def fit_model(cfg: ProjectConfig, data: Splits, quiet: bool = False, on_epoch: EpochHook | None = None):
    """Build and train the split model; returns (SplitModel, seconds, samples/s). `on_epoch` gets each
    epoch's learning-curve record; joint training stops early at `training.stop_at_accuracy`."""
    from toolchain.model import build_split_model, initial_weights, set_weights

    t = cfg.training
    _seed_everything(t.seed)
    conns = build_connectivity(
        cfg.network.neurons, cfg.network.out_degrees, cfg.network.pattern, cfg.network.seed
    )
    model = build_split_model(cfg, conns)
    set_weights(model, initial_weights(cfg, conns, t.seed))
    start = time.monotonic()
    if t.mode == "joint":
        w = (t.exit_loss_weight, t.final_loss_weight)
        ran = _fit(model.full, cfg, data, w, t.epochs, "train", quiet, on_epoch, t.stop_at_accuracy)
        samples = ran * len(data.x_train)
    else:
        # The backbone alone may stop at the target; the exit branch then trains its own epochs.
        ran = _fit(
            model.full, cfg, data, (0.0, 1.0), t.epochs, "backbone", quiet, on_epoch, t.stop_at_accuracy
        )
        for layer in model.junctions:
            layer.trainable = False
        if t.exit_epochs:
            _fit(model.full, cfg, data, (1.0, 0.0), t.exit_epochs, "exit", quiet)
        for layer in model.junctions:
            layer.trainable = True
        samples = (ran + t.exit_epochs) * len(data.x_train)
    seconds = time.monotonic() - start
    return model, seconds, samples / seconds


def predict(model, x: np.ndarray, batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(exit logits, final logits) as float32 numpy."""
    out = model.full.predict(x, batch_size=batch, verbose=0)
    return np.asarray(out["exit"]), np.asarray(out["final"])


@dataclass(frozen=True)
class ExitEval:
    final_accuracy: float
    exit_accuracy: float
    exit_rate: float
    accuracy_at_threshold: float
    sweep: Sweep


def evaluate_exit(exit_logits, final_logits, labels, threshold: float) -> ExitEval:
    conf = softmax_confidence(exit_logits)
    ep, fp = exit_logits.argmax(1), final_logits.argmax(1)
    system, exited = apply_threshold(conf, ep, fp, threshold)
    return ExitEval(
        final_accuracy=float(np.mean(fp == labels)),
        exit_accuracy=float(np.mean(ep == labels)),
        exit_rate=float(np.mean(exited)),
        accuracy_at_threshold=float(np.mean(system == labels)),
        sweep=sweep(conf, ep == labels, fp == labels),
    )


def compute_metrics(cfg: ProjectConfig, model, data: Splits) -> tuple[dict[str, Any], dict[str, Sweep]]:
    ve, vf = predict(model, data.x_val)
    target = cfg.exit.max_accuracy_drop if cfg.exit.rule == "max_accuracy_drop" else cfg.exit.target_exit_rate
    cal = calibrate(
        softmax_confidence(ve), ve.argmax(1) == data.y_val, vf.argmax(1) == data.y_val, cfg.exit.rule, target
    )
    te, tf_ = predict(model, data.x_test)
    test = evaluate_exit(te, tf_, data.y_test, cal.threshold)
    val = evaluate_exit(ve, vf, data.y_val, cal.threshold)
    net = cfg.network
    metrics = {
        "final_accuracy": test.final_accuracy,
        "exit_accuracy": test.exit_accuracy,
        "exit_threshold": cal.threshold,
        "exit_rate": test.exit_rate,
        "accuracy_at_threshold": test.accuracy_at_threshold,
        "exit_rule": {"confidence": "max_softmax", "rule": cal.rule, "target": cal.target},
        "validation": {
            "final_accuracy": val.final_accuracy,
            "exit_accuracy": val.exit_accuracy,
            "exit_rate": val.exit_rate,
            "accuracy_at_threshold": val.accuracy_at_threshold,
        },
        "params": count_params(net.neurons, net.out_degrees, net.split_after, cfg.exit.hidden).as_dict(),
        "split_width": cfg.split_width,
        "seed": {
            "training": cfg.training.seed,
            "connectivity": net.seed,
            "validation_split": VALIDATION_SEED,
        },
        "dataset": cfg.dataset,
        "samples": {"train": len(data.x_train), "validation": len(data.x_val), "test": len(data.x_test)},
    }
    return metrics, {"validation": val.sweep, "test": test.sweep}


def training_memory_bytes(cfg: ProjectConfig) -> int:
    """What training `cfg` allocates beyond the TensorFlow runtime itself (an upper estimate):
    the padded dataset (and tf.data's copy), weights with gradients and Adam moments (a masked
    junction holds a dense kernel and mask), a batch's activations and the connectivity tables."""
    net, t = cfg.network, cfg.training
    spec = DATASETS[cfg.dataset]
    images = spec.train_images.shape[0] + spec.test_images.shape[0]
    total = 3 * images * net.neurons[0] * 4
    batch = max(t.batch_size, 2048)  # predict() evaluates in batches of 2048
    for s in junction_shapes(net.neurons, net.out_degrees):
        if net.layer_form == "masked":
            total += 7 * s.n_left * s.n_right * 4
        else:
            total += 5 * s.edges * 4 + 3 * batch * s.edges * 4  # gather [batch, N_right, d_in]
        total += connectivity_bytes(s, net.pattern)
    total += 5 * sum(int(np.prod(e.shape)) for e in weight_shapes(cfg).values()) * 4
    total += 4 * batch * (sum(net.neurons) + sum(cfg.exit.hidden)) * 4
    return total


def _check_finite(weights: dict[str, np.ndarray], cfg: ProjectConfig) -> None:
    bad = [name for name, w in weights.items() if not np.all(np.isfinite(w))]
    if bad:
        raise ToolchainError(
            f"training diverged: {', '.join(bad)} hold NaN or infinite values; no bundle was written",
            hint=f"lower training.learning_rate (now {cfg.training.learning_rate:g})",
        )


def train(
    cfg: ProjectConfig,
    out: str | Path | None,
    data_dir: str | Path | None = None,
    quiet: bool = False,
    data: Splits | None = None,
    force: bool = False,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Train the project and (when `out` is given) write the bundle atomically. Trains on
    `training.data_fraction` of the training split; metrics["training"]["curve"] is the learning
    curve (one record per epoch, also passed to `on_epoch` as it happens).

    `out` may exist only as an empty directory or an artifact the toolchain wrote (`force` skips
    that check); both that and its writability are checked before any training."""
    if out is not None:
        prepare_output_dir(out, force)  # before minutes of training, not after
    require_memory(
        training_memory_bytes(cfg),
        f"training neurons = {cfg.network.neurons} ({cfg.network.layer_form} form)",
        hint="use narrower layers, smaller out-degrees or a smaller batch_size; the packed "
        "layer_form stores only existing edges",
    )
    from toolchain.model import get_weights

    if data is None:
        log(f"loading {cfg.dataset}", quiet)
        data = load_splits(cfg.dataset, cfg.network.neurons[0], cfg.training.validation_size, data_dir)
    data = subsample_train(data, cfg.training.data_fraction, cfg.training.seed)
    curve: list[dict[str, float]] = []

    def record(rec: dict[str, float]) -> None:
        curve.append(rec)
        if on_epoch is not None:
            on_epoch(rec)

    log(
        f"training {cfg.network.neurons} out-degrees {cfg.network.out_degrees} ({cfg.network.pattern}, "
        f"{cfg.network.layer_form}) on {len(data.x_train)} samples, {cfg.training.mode}",
        quiet,
    )
    with interrupt.deferred():  # Ctrl-C is taken between batches, never inside TensorFlow
        model, seconds, rate = fit_model(cfg, data, quiet, record)
        metrics, curves = compute_metrics(cfg, model, data)
    weights = get_weights(model)
    _check_finite(weights, cfg)
    metrics["training"] = {
        "seconds": round(seconds, 2),
        "samples_per_second": round(rate, 1),
        "epochs_run": len(curve),
        "curve": curve,
    }
    log(
        f"final accuracy {metrics['final_accuracy']:.4f}  exit accuracy {metrics['exit_accuracy']:.4f}  "
        f"threshold {metrics['exit_threshold']:.4f}  exit rate {metrics['exit_rate']:.3f}  "
        f"accuracy at threshold {metrics['accuracy_at_threshold']:.4f}  ({seconds:.0f}s)",
        quiet,
    )
    if out is None:
        return TrainResult(None, metrics)
    png = plot_sweep(curves, metrics["exit_threshold"], f"{cfg.name}: early exit calibration")
    path = write_bundle(out, cfg, model.connectivity, weights, metrics, {"exit_calibration.png": png}, force)
    log(f"bundle written to {path}", quiet)
    return TrainResult(path, metrics)
