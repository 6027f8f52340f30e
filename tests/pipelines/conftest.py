import pytest

from tests.pipelines.cli import dlpipe, ok, settings


@pytest.fixture(scope="session")
def feature_data(tmp_path_factory):
    """A data folder with the demo's generated table and feature table (tests.pipelines.cli.ROWS rows), shared by
    the training and tuning tests."""
    data_dir = tmp_path_factory.mktemp("train") / "var"
    ok(dlpipe("run", *settings(data_dir, "stages=[generate, featurize]")))
    return data_dir
