"""What the wheel installs: one top-level name, ``dlpipe``, with the repository's stage folders under it, so no
other package or user module named features, models, pipelines or jobs can collide with dlpipe's."""
from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("features", "models", "pipelines", "jobs")


def test_the_wheel_installs_dlpipe_as_its_only_top_level_name(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("dlpipe-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"dlpipe"}
    for folder in FOLDERS:  # every module of every folder, under dlpipe
        modules = {f"dlpipe/{folder}/{p.relative_to(REPO / folder)}" for p in (REPO / folder).rglob("*.py")}
        assert modules <= set(names), sorted(modules - set(names))
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "dlpipe = dlpipe.jobs.cli:main" in entry_points


def test_no_module_imports_a_folder_by_its_bare_name():
    bare = re.compile(rf"(^|[;\"']\s*)(from|import) ({'|'.join(FOLDERS)})(\.|\s|$)", re.M)  # code in strings too
    sources = [p for folder in (*FOLDERS, "dlpipe", "benchmarks", "tests", "schedules") for p in (REPO / folder).rglob("*.py")]
    found = [f"{p.relative_to(REPO)}: {m.group(0).strip()}" for p in sources for m in bare.finditer(p.read_text())]
    assert not found, "import these as dlpipe.<folder>: " + "; ".join(found)
