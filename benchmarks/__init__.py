"""Measurements, never assertions: `python -m benchmarks NAME [--rows N]`, `make bench` for all of them.

Each benchmark prints one JSON line per measurement with ``name``, ``rows``, ``seconds``, ``rows_per_s`` and
``peak_mem_mb``; one that compares against a baseline measured in the same run adds ``baseline`` and ``ratio``
(ours over the baseline's speed: higher is better).
"""
