"""Training presets: every hyper-parameter in one frozen dataclass, no TensorFlow needed."""

from __future__ import annotations

import dataclasses
import enum

from train.errors import ConfigError

MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit


class Optimizer(str, enum.Enum):
    ADAGRAD = "adagrad"
    ADAM = "adam"


class Architecture(str, enum.Enum):
    """Which model a preset trains."""

    TOWER = "tower"  # the tutorial's TFRS ranking tower (embeddings -> Dense 256/64/1)
    BLEND = "blend"  # SVD++ with side features + AutoRecs, folded into one low-rank table model
    FACTORIZATION = "factorization"  # SVD++ with side features alone, on streamed data and several workers


@dataclasses.dataclass(frozen=True)
class AutoRecConfig:
    """Settings of one AutoRec member of the blend (see train/autorec.py).

    Attributes:
        hidden: sigmoid units of the code layer.
        l2: lambda of the L2 penalty on the weights (relative to the summed squared error).
        dropout: share of the input entries dropped during training.
        learning_rate: Adam's learning rate (full-batch steps).
        init_stddev: standard deviation of the initial weights (biases start at 0).
        max_steps: the most full-batch steps to train.
        steps_per_epoch: steps between two validations (an "epoch" of early stopping).
        patience: validations without a new best before stopping.
    """

    hidden: int = 500
    l2: float = 100.0
    dropout: float = 0.2
    learning_rate: float = 3e-3
    init_stddev: float = 0.03
    max_steps: int = 1500
    steps_per_epoch: int = 20
    patience: int = 5

    def __post_init__(self):
        for name in ("hidden", "max_steps", "steps_per_epoch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"autorec {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"autorec dropout must be in [0, 1), got {self.dropout}")


@dataclasses.dataclass(frozen=True)
class BlendConfig:
    """Settings of the blend architecture beyond those in TrainConfig (see train/blend.py).

    Attributes:
        mf_l2, mf_bias_l2: L2 weights on each example's composed user/movie vectors and biases.
        autorec: the AutoRec members' settings.
        item_autorecs, user_autorecs: how many item- and user-based AutoRecs to blend.
        export_rank: rank of the folded user/movie tables shipped to the device.
        blend_ridge: how strongly blend weights are pulled towards equal weights.
    """

    mf_l2: float = 0.1
    mf_bias_l2: float = 0.001
    autorec: AutoRecConfig = AutoRecConfig()
    item_autorecs: int = 2
    user_autorecs: int = 1
    export_rank: int = 64
    blend_ridge: float = 0.1

    def __post_init__(self):
        if self.export_rank < 1:
            raise ConfigError(f"export_rank must be >= 1, got {self.export_rank}")
        if self.item_autorecs < 0 or self.user_autorecs < 0:
            raise ConfigError(f"AutoRec counts must be >= 0, got {self.item_autorecs} and {self.user_autorecs}")


@dataclasses.dataclass(frozen=True)
class FactorizationSettings:
    """Settings of the factorization architecture beyond those in TrainConfig (see train/factorization.py).

    Attributes:
        vector_l2, bias_l2: L2 weights on each example's composed user/movie vectors and biases.
        max_rated_per_user: N, how many of a user's most recent ratings form their implicit
            feedback (bounds a worker's memory by users x N; see train/history.py).
        learning_rate_decay: the learning rate is multiplied by this after every epoch (1: constant).
        refit: after early stopping has chosen the epoch count on the validation rows, fit a
            new model on every training row (validation rows included) for that many epochs.
    """

    vector_l2: float = 0.1
    bias_l2: float = 0.001
    max_rated_per_user: int = 256
    learning_rate_decay: float = 1.0
    refit: bool = True

    def __post_init__(self):
        if self.vector_l2 < 0 or self.bias_l2 < 0:
            raise ConfigError(f"L2 weights must be >= 0, got {self.vector_l2} and {self.bias_l2}")
        if self.max_rated_per_user < 1:
            raise ConfigError(f"max_rated_per_user must be >= 1, got {self.max_rated_per_user}")
        if not 0 < self.learning_rate_decay <= 1:
            raise ConfigError(f"learning_rate_decay must be in (0, 1], got {self.learning_rate_decay}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is built and trained.

    Attributes:
        preset: the preset's name (recorded in metrics.json).
        architecture: the model to train.
        embedding_dimension: width of the user and movie embeddings.
        hidden_layers: widths of the ReLU layers after the concatenated embeddings (tower only).
        optimizer, learning_rate, batch_size, epochs: as in Keras' `fit`.
        validation_fraction: share of the training rows held out for early
            stopping (0 disables early stopping; the test rows are never used).
        early_stopping_patience: epochs without validation improvement before stopping.
        seed: seeds weight initialisation and the per-epoch shuffle.
        blend: the blend architecture's own settings (blend only).
        factorization: the factorization architecture's own settings (factorization only).
    """

    preset: str = "tutorial"
    architecture: Architecture = Architecture.TOWER
    embedding_dimension: int = 32
    hidden_layers: tuple[int, ...] = (256, 64)
    optimizer: Optimizer = Optimizer.ADAGRAD
    learning_rate: float = 0.1
    batch_size: int = 8192
    epochs: int = 3
    validation_fraction: float = 0.0
    early_stopping_patience: int = 3
    seed: int = 42
    blend: BlendConfig = BlendConfig()
    factorization: FactorizationSettings = FactorizationSettings()

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
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be between 0 and {MAX_SEED}, got {self.seed}")
        if self.early_stopping_patience < 0:
            raise ConfigError(f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["optimizer"] = self.optimizer.value
        data["architecture"] = self.architecture.value
        data["hidden_layers"] = list(self.hidden_layers)
        if self.architecture is not Architecture.BLEND:
            del data["blend"]
        if self.architecture is not Architecture.FACTORIZATION:
            del data["factorization"]
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
    # The kit's default: a blend folded into one low-rank table model (train/blend.py),
    # every choice made on a validation slice of the training rows.
    "default": TrainConfig(
        preset="default",
        architecture=Architecture.BLEND,
        embedding_dimension=64,
        optimizer=Optimizer.ADAM,
        learning_rate=2e-3,
        batch_size=1024,
        epochs=60,
        validation_fraction=0.1,
        early_stopping_patience=4,
    ),
    # The blend's SVD++-with-side-features member alone, on sharded data and several workers
    # (train/mf.py). Lighter L2 than the blend's member and a decaying rate, both chosen on the
    # validation carve (docs/cluster.md), then a refit on every training row.
    "mf": TrainConfig(
        preset="mf",
        architecture=Architecture.FACTORIZATION,
        embedding_dimension=64,
        optimizer=Optimizer.ADAM,
        learning_rate=2e-3,
        batch_size=1024,
        epochs=60,
        validation_fraction=0.1,
        early_stopping_patience=4,
        factorization=FactorizationSettings(vector_l2=0.04, bias_l2=0.001, learning_rate_decay=0.9),
    ),
}
DEFAULT_PRESET = "default"


def preset_config(name: str, **overrides) -> TrainConfig:
    """Returns the named preset with `overrides` (None values are ignored).

    Raises:
        ConfigError: unknown preset name or an invalid override.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    changes = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(PRESETS[name], **changes)
