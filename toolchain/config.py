"""The project configuration: one TOML file describes dataset, network, early exit and training.

Every field has a default; `toolchain init` writes the paper's sparse [800, 40, 40, 10] with out-degrees
[2, 9, 10] on MNIST. Loading checks unknown keys (and lists the valid ones), value types and the
sparsity math, and says which field is wrong and how to fix it.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.data import DATASETS
from toolchain.errors import ConfigError
from toolchain.fsutil import atomic_write_text
from toolchain.sparsity import PATTERNS, check_out_degree


@dataclass
class NetworkConfig:
    neurons: list[int] = field(default_factory=lambda: [800, 40, 40, 10])
    out_degrees: list[int] = field(default_factory=lambda: [2, 9, 10])
    pattern: str = "random"  # random | affine | cyclic (see toolchain.sparsity.PATTERNS)
    seed: int = 0  # connectivity seed
    split_after: int = 1  # hidden layer whose activation is the split tensor (1 = first hidden)
    layer_form: str = "masked"  # masked | packed: how Keras computes a sparse junction
    kernel_init: str = "he_normal_sparse"  # he_normal (dense fan-in, as the paper) | *_sparse
    bias_init: float = 0.1  # the paper's Constant(0.1)


@dataclass
class ExitConfig:
    hidden: list[int] = field(default_factory=list)  # hidden sizes; [] = one linear layer
    rule: str = "max_accuracy_drop"  # max_accuracy_drop | target_exit_rate
    max_accuracy_drop: float = 0.002  # allowed drop of system accuracy vs the final exit (val split)
    target_exit_rate: float = 0.5  # fraction of validation samples that should exit early


@dataclass
class TrainingConfig:
    mode: str = "joint"  # joint | two_stage
    epochs: int = 60
    exit_epochs: int = 20  # two_stage only: epochs for the exit branch on the frozen head
    batch_size: int = 128
    optimizer: str = "adam"  # adam | sgd
    learning_rate: float = 3e-3
    schedule: str = "cosine"  # constant | cosine | inverse_time
    final_lr_fraction: float = 0.05  # cosine: last learning rate / first
    decay: float = 1e-5  # inverse_time: lr / (1 + decay·step), the paper's legacy Adam decay
    weight_decay: float = 0.05  # decoupled weight decay (AdamW); 0 = plain Adam as in the paper
    exit_loss_weight: float = 1.0
    final_loss_weight: float = 1.0
    seed: int = 0
    validation_size: int = 5000
    # Fraction of the training split used (a seeded subset; the validation split never shrinks):
    # a RightTrain search trades data for epochs and energy (docs/search.md).
    data_fraction: float = 1.0
    # Stop after the first epoch whose validation accuracy (final exit) reaches this; 0 = never.
    stop_at_accuracy: float = 0.0


@dataclass
class ProjectConfig:
    name: str = "default"
    dataset: str = "mnist"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    exit: ExitConfig = field(default_factory=ExitConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    # ----- derived -----
    @property
    def split_width(self) -> int:
        return self.network.neurons[self.network.split_after]

    @property
    def n_classes(self) -> int:
        return self.network.neurons[-1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES: dict[str, tuple[str, ...]] = {
    "network.layer_form": ("masked", "packed"),
    "network.kernel_init": ("he_normal_sparse", "glorot_uniform_sparse", "he_normal"),
    "exit.rule": ("max_accuracy_drop", "target_exit_rate"),
    "training.mode": ("joint", "two_stage"),
    "training.optimizer": ("adam", "sgd"),
    "training.schedule": ("constant", "cosine", "inverse_time"),
}


# ----------------------------------------------------------------------------------------------
# Generic dict -> dataclass conversion with clear errors
# ----------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, str(tp))


def _check_value(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_check_value(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{where} = {value} is too large for a number") from None
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        # TOML allows nan and inf; no field means anything with them (NaN trains a NaN model).
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
    return value


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!r}",
            hint=f"valid keys{' in [' + where + ']' if where else ''}: {', '.join(names)}",
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        sub = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _from_dict(tp, value, sub)
        else:
            kwargs[name] = _check_value(value, tp, sub)
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------
# Semantic validation
# ----------------------------------------------------------------------------------------------
# Layer widths travel as 16-bit integers in the C layer descriptors and the serial protocol's HELLO.
MAX_WIDTH = 65535
MAX_SEED = 2**32 - 1  # NumPy's legacy seeding (keras.utils.set_random_seed) takes 32-bit seeds
MAX_CONFIG_BYTES = 1 << 20  # the default project file is 2 kB


def _check_width(where: str, value: int) -> None:
    if not 1 <= value <= MAX_WIDTH:
        raise ConfigError(
            f"{where} = {value} is out of range",
            hint=f"layer widths are 1 to {MAX_WIDTH} (the C export and the device protocol use 16-bit sizes)",
        )


def validate(cfg: ProjectConfig) -> ProjectConfig:
    for key, allowed in CHOICES.items():
        section, attr = key.split(".")
        value = getattr(getattr(cfg, section), attr)
        if value not in allowed:
            raise ConfigError(f"{key} = {value!r} is not valid", hint=f"use one of: {', '.join(allowed)}")
    if cfg.dataset not in DATASETS:
        raise ConfigError(
            f"dataset = {cfg.dataset!r} is not a known dataset",
            hint=f"valid datasets: {', '.join(DATASETS)}",
        )
    net = cfg.network
    n = net.neurons
    if len(n) < 3:
        raise ConfigError(
            f"network.neurons = {n} needs at least one hidden layer to split after",
            hint="e.g. neurons = [800, 40, 40, 10]",
        )
    for i, v in enumerate(n):
        _check_width(f"network.neurons[{i}]", v)
    spec = DATASETS[cfg.dataset]
    if n[0] < spec.input_size:
        raise ConfigError(
            f"network.neurons[0] = {n[0]} is smaller than the {spec.input_size} inputs of {cfg.dataset}",
            hint=f"use {spec.input_size} or more (inputs are zero-padded; the paper uses 800)",
        )
    if n[-1] != spec.n_classes:
        raise ConfigError(
            f"network.neurons[-1] = {n[-1]} must equal the {spec.n_classes} classes of {cfg.dataset}"
        )
    if len(net.out_degrees) != len(n) - 1:
        raise ConfigError(
            f"network.out_degrees has {len(net.out_degrees)} entries but the network has "
            f"{len(n) - 1} junctions",
            hint=f"give one out-degree per junction: {len(n) - 1} values for neurons = {n}",
        )
    for i, d in enumerate(net.out_degrees):
        check_out_degree(n[i], n[i + 1], d, f"network.out_degrees[{i}] (junction {n[i]} -> {n[i + 1]})")
    for where, seed in (("network.seed", net.seed), ("training.seed", cfg.training.seed)):
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(
                f"{where} = {seed} is out of range", hint=f"use an integer from 0 to {MAX_SEED}"
            )
    if net.pattern not in PATTERNS:
        raise ConfigError(
            f"network.pattern = {net.pattern!r} is not valid", hint=f"use one of: {', '.join(PATTERNS)}"
        )
    if not 1 <= net.split_after <= len(n) - 2:
        raise ConfigError(
            f"network.split_after = {net.split_after} is out of range for {len(n) - 2} hidden layers",
            hint=f"use a hidden layer number from 1 to {len(n) - 2}",
        )
    for i, h in enumerate(cfg.exit.hidden):
        _check_width(f"exit.hidden[{i}]", h)
    if not 0.0 <= cfg.exit.max_accuracy_drop <= 1.0:
        raise ConfigError(
            f"exit.max_accuracy_drop = {cfg.exit.max_accuracy_drop} must be a fraction in [0, 1]",
            hint="e.g. 0.01 for one percentage point",
        )
    if not 0.0 < cfg.exit.target_exit_rate <= 1.0:
        raise ConfigError(f"exit.target_exit_rate = {cfg.exit.target_exit_rate} must be in (0, 1]")
    t = cfg.training
    for name in ("epochs", "batch_size", "validation_size"):
        if getattr(t, name) < 1:
            raise ConfigError(f"training.{name} = {getattr(t, name)} must be at least 1")
    n_train = spec.train_images.shape[0]
    if t.validation_size >= n_train:
        raise ConfigError(
            f"training.validation_size = {t.validation_size} leaves no training samples",
            hint=f"{cfg.dataset} has {n_train} training images; use fewer (default 5000)",
        )
    if t.exit_epochs < 0:
        raise ConfigError(f"training.exit_epochs = {t.exit_epochs} must not be negative")
    if t.learning_rate <= 0:
        raise ConfigError(f"training.learning_rate = {t.learning_rate} must be positive")
    if not 0 < t.final_lr_fraction <= 1:
        raise ConfigError(f"training.final_lr_fraction = {t.final_lr_fraction} must be in (0, 1]")
    if t.decay < 0:
        raise ConfigError(f"training.decay = {t.decay} must not be negative")
    if not 0 <= t.weight_decay < 1:
        raise ConfigError(f"training.weight_decay = {t.weight_decay} must be in [0, 1)", hint="e.g. 0.05")
    if not 0 < t.data_fraction <= 1:
        raise ConfigError(
            f"training.data_fraction = {t.data_fraction} must be in (0, 1]", hint="e.g. 0.5 for half the data"
        )
    if not 0 <= t.stop_at_accuracy < 1:
        raise ConfigError(
            f"training.stop_at_accuracy = {t.stop_at_accuracy} must be in [0, 1)",
            hint="a validation accuracy such as 0.95, or 0 to train every epoch",
        )
    if t.exit_loss_weight < 0 or t.final_loss_weight < 0:
        raise ConfigError("training loss weights must not be negative")
    if t.mode == "joint" and t.exit_loss_weight == 0 == t.final_loss_weight:
        raise ConfigError("training.exit_loss_weight and final_loss_weight are both 0")
    return cfg


def from_dict(data: dict[str, Any], source: str = "config") -> ProjectConfig:
    try:
        return validate(_from_dict(ProjectConfig, data, ""))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", exc.hint) from None


def default_config() -> ProjectConfig:
    return validate(ProjectConfig())


def load_config(path: str | Path | None) -> ProjectConfig:
    """Load and validate a project file; None gives the built-in default project."""
    if path is None:
        return default_config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", hint="create one with `toolchain init`")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size:,} bytes is too large for a project file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: values nested too deeply") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return from_dict(data, str(path))


HEADER = """\
# Toolchain project: a structured-sparse split MLP with an early exit.
# neurons: layer widths, input first (784 MNIST pixels are zero-padded to neurons[0]).
# out_degrees: per junction, connections per left neuron; must be a multiple of
#   N_right / gcd(N_left, N_right). `toolchain info` shows the resulting sparsity.
# split_after: the head runs up to this hidden layer on the device; the tail runs on a server.
"""


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def dumps(cfg: ProjectConfig) -> str:
    """TOML text of the whole config (our schema is flat: scalars and lists in three tables)."""
    lines = [HEADER]
    tables = []
    for key, value in cfg.to_dict().items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines.append(f"\n[{key}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def save_config(cfg: ProjectConfig, path: str | Path) -> Path:
    return atomic_write_text(path, dumps(cfg))
