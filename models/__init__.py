"""Keras model builders and the Horovod/Petastorm trainer that runs on each Spark task.

A library: builders are pure (config in, ``keras.Model`` out); distribution is added around them in ``trainer``.
"""
