"""Pieces of the trainer that need no Horovod: which epoch's weights the saved model gets, and the decision
thresholds picked from the validation counts."""
import numpy as np
import pytest

from dlpipe.features.schema import FeatureColumn, FeatureSchema
from dlpipe.models.networks import NetworkSettings
from dlpipe.models.trainer import TrainSettings, best_epoch, decision_thresholds

SCHEMA = FeatureSchema("label", (FeatureColumn("x", "dense", "float32"),), ())


def settings(early_stopping):
    return TrainSettings(train_files=(), validation_files=(), schema=SCHEMA, network=NetworkSettings(), epochs=5,
                         batch_size=8, steps_per_epoch=1, learning_rate=0.1, run_dir="/nowhere", config_hash="x",
                         early_stopping=early_stopping)


def test_the_best_epoch_follows_the_early_stopping_monitor():
    history = {"val_auc": [0.70, 0.78, 0.78, 0.75], "val_loss": [0.60, 0.55, 0.57, 0.52]}
    assert best_epoch(settings({"monitor": "val_auc", "mode": "max", "patience": 2, "min_delta": 0}), history) == 2
    assert best_epoch(settings({"monitor": "val_loss", "mode": "min", "patience": 2, "min_delta": 0}), history) == 4


def test_without_early_stopping_or_validation_the_last_epoch_is_kept():
    assert best_epoch(settings(None), {"val_auc": [0.7, 0.6]}) is None
    assert best_epoch(settings({"monitor": "val_auc", "mode": "max", "patience": 2, "min_delta": 0}), {"loss": [1.0]}) is None


def test_decision_thresholds_by_best_f1_and_by_the_training_positive_rate():
    """Counts as Keras' AUC keeps them (a row is positive above a threshold), from scores we know: the F1 and rate
    rules pick what a search over the scores themselves picks."""
    rng = np.random.default_rng(3)
    label = rng.random(20_000) < 0.25
    score = np.clip(rng.normal(np.where(label, 0.6, 0.35), 0.15), 0, 1)
    thresholds = [-1e-7, *np.linspace(0, 1, 1001)[1:-1], 1 + 1e-7]
    above = score[None, :] > np.asarray(thresholds)[:, None]
    tp, fp = (above & label).sum(1), (above & ~label).sum(1)
    fn, tn = label.sum() - tp, (~label).sum() - fp
    picked = decision_thresholds(thresholds, tp, fp, tn, fn, positive_rate=0.25)
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert picked["threshold_f1"] == pytest.approx(thresholds[int(np.argmax(f1[1:-1])) + 1])
    assert (score > picked["threshold_rate"]).mean() == pytest.approx(0.25, abs=0.002)
    assert "threshold_rate" not in decision_thresholds(thresholds, tp, fp, tn, fn)  # no rate given
    assert decision_thresholds(thresholds, tp * 0, fp, tn, fn * 0) == {}  # no positives: no F1 to maximise
