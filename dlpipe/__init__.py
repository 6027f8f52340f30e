"""dlpipe: a Spark deep learning pipeline. The one top-level name the wheel installs.

The repository keeps its stages in top-level folders (``features/``, ``models/``, ``pipelines/``, ``jobs/``); the
wheel installs them as ``dlpipe.features``, ``dlpipe.models``, ``dlpipe.pipelines`` and ``dlpipe.jobs``
(``[tool.setuptools.package-dir]`` in pyproject.toml), so a user's own ``models.py`` or another library's
``features`` package never shadows them, on the driver or in Spark's Python workers.
"""
