"""The latest of a store's numbered versions (v1, v2, ..., v10: by number, not as text)."""
from __future__ import annotations

import re
from pathlib import Path


def latest(folder: Path, suffix: str = "") -> Path:
    """The highest ``v<N><suffix>`` in ``folder`` (``suffix`` ``.json`` for artifacts, empty for model folders)."""
    pattern = re.compile(rf"^v(\d+){re.escape(suffix)}$")
    found = [(int(m.group(1)), path) for path in folder.iterdir() if (m := pattern.match(path.name))]
    assert found, f"no v<N>{suffix} in {folder}"
    return max(found)[1]
