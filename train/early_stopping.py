"""Early stopping on validation RMSE: the one rule every model of the kit is fitted with.

The rule: after each epoch the validation RMSE is scored; an epoch is the new
best when its RMSE is strictly below every earlier one; training stops once
`patience` epochs have passed without a new best, and the weights of the best
epoch are restored. `fit_with_early_stopping` runs Keras' `fit` with this rule
as its one callback; without a validation score it runs every epoch and keeps
the last weights.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Callable, Optional

import train._tensorflow  # noqa: F401  (Keras 2 before TensorFlow)
import tf_keras

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainingCurve:
    """How a fit went.

    Attributes:
        epochs_run: epochs actually trained (fewer than asked when stopped early).
        validation_rmse: the validation RMSE after each epoch run; empty without validation.
    """

    epochs_run: int
    validation_rmse: tuple[float, ...] = ()

    @property
    def best_epoch(self) -> int:
        """The epoch (1-based) whose weights were kept: the best one, or the last without a finite score."""
        best = _best_index(self.validation_rmse)
        return self.epochs_run if best is None else best + 1

    @property
    def best_validation_rmse(self) -> Optional[float]:
        """The kept epoch's validation RMSE; None without validation."""
        best = _best_index(self.validation_rmse)
        return None if best is None else self.validation_rmse[best]


def _best_index(scores) -> Optional[int]:
    """Index of the first lowest finite score; None if there is none (a NaN never counts as best)."""
    finite = [index for index, score in enumerate(scores) if math.isfinite(score)]
    return min(finite, key=scores.__getitem__) if finite else None


class EarlyStopping:
    """The stopping rule alone, without Keras: feed it one validation RMSE per epoch."""

    def __init__(self, patience: int):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.patience = patience
        self.scores: list[float] = []

    def record(self, score: float) -> bool:
        """Adds an epoch's validation RMSE; True if it is the best so far (a NaN never is)."""
        best = _best_index(self.scores)
        improved = math.isfinite(score) and (best is None or score < self.scores[best])
        self.scores.append(float(score))
        return improved

    @property
    def should_stop(self) -> bool:
        """True once `patience` epochs have passed since the best one (or since the start, without one)."""
        best = _best_index(self.scores)
        return len(self.scores) - 1 - (-1 if best is None else best) >= self.patience


class ValidationEarlyStopping(tf_keras.callbacks.Callback):
    """The rule as a Keras callback: logs one line per epoch, stops early, restores the best weights.

    Keras' own EarlyStopping reads `val_*` logs that `fit` computes with a
    distributed evaluation; scoring the validation rows locally instead keeps
    every worker's decision identical without another collective.
    """

    def __init__(
        self,
        epochs: int,
        score: Optional[Callable[[], float]],
        patience: int,
        name: str = "",
        log_level: int = logging.INFO,
    ):
        super().__init__()
        self.epochs = epochs
        self.score = score
        self.rule = EarlyStopping(patience)
        self.name = name
        self.log_level = log_level
        self.epochs_run = 0
        self.started = 0.0
        self.best_weights = None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_run = epoch + 1
        figures = f"train RMSE {(logs or {}).get('root_mean_squared_error', float('nan')):.4f}"
        if self.score is not None:
            score = self.score()
            if self.rule.record(score):
                self.best_weights = self.model.get_weights()
            figures += f", validation RMSE {score:.4f}"
            if self.rule.should_stop:
                self.model.stop_training = True
        prefix = f"{self.name} " if self.name else ""
        seconds = time.perf_counter() - self.started
        logger.log(self.log_level, "%sepoch %d/%d: %s (%.1f s)", prefix, epoch + 1, self.epochs, figures, seconds)

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    @property
    def curve(self) -> TrainingCurve:
        return TrainingCurve(self.epochs_run, tuple(self.rule.scores))


def fit_with_early_stopping(
    model: tf_keras.Model,
    batches,
    *,
    epochs: int,
    score: Optional[Callable[[], float]],
    patience: int,
    steps_per_epoch: Optional[int] = None,
    name: str = "",
    log_level: int = logging.INFO,
) -> TrainingCurve:
    """Runs `model.fit` with the kit's early-stopping rule as its callback.

    Args:
        model: a compiled Keras model (a `tfrs.models.Model` in this kit).
        batches: the training dataset, as `fit` takes it.
        epochs: the maximum number of epochs.
        score: returns the current model's validation RMSE; None trains every
            epoch and keeps the last weights.
        patience: epochs without a new best before stopping.
        steps_per_epoch: batches per epoch for a dataset that repeats forever.
        name: prefixes the per-epoch log lines ("" for none).
        log_level: the level of the per-epoch log lines.

    Returns:
        The training curve; the model holds the kept epoch's weights.
    """
    callback = ValidationEarlyStopping(epochs, score, patience, name, log_level)
    model.fit(batches, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=[callback], verbose=0)
    return callback.curve
