"""The learning-rate schedule of distributed training (imports TensorFlow: load it on the ranks only)."""
from __future__ import annotations

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="dlpipe")
class LinearWarmup(tf.keras.optimizers.schedules.LearningRateSchedule):
    """``base * size`` (linear scaling with the number of ranks, Goyal et al. 2017), reached linearly from ``base``
    over ``warmup_steps`` steps. A function of the optimizer's step counter, which checkpoints keep, so a resumed
    run continues where it stopped."""

    def __init__(self, base: float, size: int, warmup_steps: int):
        self.base, self.size, self.warmup_steps = float(base), int(size), int(warmup_steps)

    def __call__(self, step):
        if self.size == 1 or self.warmup_steps == 0:
            return tf.constant(self.base * self.size, tf.float32)
        progress = tf.minimum(tf.cast(step, tf.float32) / self.warmup_steps, 1.0)
        return self.base * (1.0 + (self.size - 1) * progress)

    def get_config(self) -> dict:
        return {"base": self.base, "size": self.size, "warmup_steps": self.warmup_steps}
