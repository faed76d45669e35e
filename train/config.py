"""Training presets: every hyper-parameter in one frozen dataclass, no TensorFlow needed."""

from __future__ import annotations

import dataclasses
import enum

from train.errors import ConfigError


class Optimizer(str, enum.Enum):
    ADAGRAD = "adagrad"
    ADAM = "adam"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is built and trained.

    Attributes:
        preset: the preset's name (recorded in metrics.json).
        embedding_dimension: width of the user and movie embeddings.
        hidden_layers: widths of the ReLU layers after the concatenated embeddings.
        optimizer, learning_rate, batch_size, epochs: as in Keras' `fit`.
        validation_fraction: share of the training rows held out for early
            stopping (0 disables early stopping; the test rows are never used).
        early_stopping_patience: epochs without validation improvement before stopping.
        seed: seeds weight initialisation and the per-epoch shuffle.
    """

    preset: str = "tutorial"
    embedding_dimension: int = 32
    hidden_layers: tuple[int, ...] = (256, 64)
    optimizer: Optimizer = Optimizer.ADAGRAD
    learning_rate: float = 0.1
    batch_size: int = 8192
    epochs: int = 3
    validation_fraction: float = 0.0
    early_stopping_patience: int = 3
    seed: int = 42

    def __post_init__(self):
        if self.embedding_dimension < 1:
            raise ConfigError(f"embedding_dimension must be >= 1, got {self.embedding_dimension}")
        if any(width < 1 for width in self.hidden_layers):
            raise ConfigError(f"hidden_layers must be positive widths, got {self.hidden_layers}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["optimizer"] = self.optimizer.value
        data["hidden_layers"] = list(self.hidden_layers)
        return data


PRESETS = {
    # The TFRS basic ranking tutorial, unchanged: Adagrad 0.1, batch 8192, 3 epochs.
    "tutorial": TrainConfig(preset="tutorial"),
    # The same architecture trained to convergence: Adam with early stopping on
    # a validation slice of the training rows.
    "adam": TrainConfig(
        preset="adam",
        optimizer=Optimizer.ADAM,
        learning_rate=1e-3,
        batch_size=1024,
        epochs=40,
        validation_fraction=0.1,
        early_stopping_patience=2,
    ),
}
DEFAULT_PRESET = "adam"


def preset_config(name: str, **overrides) -> TrainConfig:
    """Returns the named preset with `overrides` (None values are ignored).

    Raises:
        ConfigError: unknown preset name or an invalid override.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    changes = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(PRESETS[name], **changes)
