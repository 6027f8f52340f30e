"""Two teams on one data folder (one metastore, one warehouse): each team's tables, artifacts and models stay
under its namespace."""
import pytest

from tests.pipelines.cli import dlpipe, ok, settings

pytestmark = pytest.mark.slow


def test_two_namespaces_share_the_metastore_but_not_their_tables(tmp_path):
    data_dir = tmp_path / "var"
    for team, rows, stages in (("team_a", 2000, "[generate, featurize]"), ("team_b", 3000, "[generate]")):
        ok(dlpipe("run", *settings(data_dir, f"namespace={team}", f"generate.rows={rows}", f"stages={stages}")))
    for team, rows in (("team_a", 2000), ("team_b", 3000)):
        out = ok(dlpipe("sql", "SELECT count(*) AS n FROM raw_events", "--set", f"data_dir={data_dir}",
                        "--set", f"namespace={team}"))
        assert f"| {rows} " in out.stdout, out.stdout
        assert (data_dir / "warehouse" / f"{team}_dlpipe.db" / "raw_events").is_dir()
    assert (data_dir / "namespaces" / "team_a" / "artifacts" / "features" / "v1.json").is_file()
    assert not (data_dir / "namespaces" / "team_b" / "artifacts" / "features").exists()
    assert not (data_dir / "artifacts" / "features").exists()
