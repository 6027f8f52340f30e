"""Feature engineering in Spark: the schema contract, deterministic splits, fitted transforms, synthetic data.

A library: it knows nothing about jobs, config files or where tables live.
"""
