"""The one early-stopping rule: when it stops, which epoch it keeps, and that Keras' fit restores it."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow


def _run(scores, patience):
    """Feeds scores until the rule says stop; returns (epochs run, improvements)."""
    from train.early_stopping import EarlyStopping

    rule = EarlyStopping(patience)
    improvements = []
    for score in scores:
        improvements.append(rule.record(score))
        if rule.should_stop:
            break
    return len(rule.scores), improvements


@pytest.mark.parametrize(
    "scores, patience, epochs, improvements",
    [
        # Best at epoch 2, then two epochs without a new best: stop after epoch 4.
        ([0.95, 0.93, 0.94, 0.935, 0.90], 2, 4, [True, True, False, False]),
        # A tie is not an improvement.
        ([0.95, 0.95, 0.95], 2, 3, [True, False, False]),
        # Patience 0 stops after the first epoch.
        ([0.95, 0.90], 0, 1, [True]),
        # Always improving: runs to the end.
        ([0.99, 0.98, 0.97], 1, 3, [True, True, True]),
        # A NaN is never the best; the rule keeps counting from the last finite best.
        ([0.95, math.nan, math.nan], 2, 3, [True, False, False]),
    ],
)
def test_rule_stops_after_patience_epochs_without_a_new_best(scores, patience, epochs, improvements):
    assert _run(scores, patience) == (epochs, improvements)


def test_curve_reports_the_kept_epoch():
    from train.early_stopping import TrainingCurve

    curve = TrainingCurve(epochs_run=4, validation_rmse=(0.95, 0.93, 0.94, 0.935))
    assert (curve.best_epoch, curve.best_validation_rmse) == (2, 0.93)
    without_validation = TrainingCurve(epochs_run=3)
    assert (without_validation.best_epoch, without_validation.best_validation_rmse) == (3, None)
    only_nan = TrainingCurve(epochs_run=2, validation_rmse=(math.nan, math.nan))
    assert (only_nan.best_epoch, only_nan.best_validation_rmse) == (2, None)


def test_fit_stops_early_and_restores_the_best_epochs_weights():
    """A one-weight model; the 'validation RMSE' is scripted, so the best epoch is known (the 2nd)."""
    import tensorflow as tf
    import tf_keras

    from train.early_stopping import fit_with_early_stopping

    model = tf_keras.Sequential([tf_keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=tf_keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    batches = tf.data.Dataset.from_tensors((tf.ones([4, 1]), tf.ones([4, 1])))
    scripted = iter([0.9, 0.8, 0.85, 0.86, 0.7, 0.6])
    weights_after_epoch = []

    def score():
        weights_after_epoch.append(float(model.get_weights()[0][0, 0]))
        return next(scripted)

    curve = fit_with_early_stopping(model, batches, epochs=6, score=score, patience=2)
    assert curve.epochs_run == 4 and curve.best_epoch == 2
    assert curve.validation_rmse == (0.9, 0.8, 0.85, 0.86)
    # Each epoch moved the weight (gradient descent towards 1), and the 2nd epoch's value is back.
    assert len(set(weights_after_epoch)) == 4
    assert float(model.get_weights()[0][0, 0]) == weights_after_epoch[1]


def test_fit_without_validation_runs_every_epoch_and_keeps_the_last_weights():
    import tensorflow as tf
    import tf_keras

    from train.early_stopping import fit_with_early_stopping

    model = tf_keras.Sequential([tf_keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=tf_keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    batches = tf.data.Dataset.from_tensors((tf.ones([4, 1]), tf.ones([4, 1])))
    curve = fit_with_early_stopping(model, batches, epochs=3, score=None, patience=0)
    assert (curve.epochs_run, curve.best_epoch, curve.best_validation_rmse) == (3, 3, None)
    # Three SGD steps on (w - 1)^2 from w = 0 with rate 0.1: w <- w + 0.2 (1 - w).
    expected = 0.0
    for _ in range(3):
        expected += 0.2 * (1 - expected)
    np.testing.assert_allclose(model.get_weights()[0][0, 0], expected, rtol=1e-6)
