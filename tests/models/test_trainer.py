"""Pieces of the trainer that need no Horovod: which epoch's weights the saved model gets."""
from dlpipe.features.schema import FeatureColumn, FeatureSchema
from dlpipe.models.networks import NetworkSettings
from dlpipe.models.trainer import TrainSettings, best_epoch

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
