"""Entry points: the ``dlpipe`` console script and thin spark-submit files, one per stage."""
