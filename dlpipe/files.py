"""Files the pipeline writes for others to read while it runs."""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_atomically(path: Path, payload: dict) -> None:
    """``payload`` as indented JSON at ``path``, all or nothing: a reader (or a rerun after a kill) sees the old file
    or the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
