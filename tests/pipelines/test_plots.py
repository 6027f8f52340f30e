"""Every plot's titles stay inside the figure, however long the model name and run id."""
import numpy as np
import pytest

from dlpipe.pipelines import plots
from dlpipe.pipelines.binary_metrics import ScoreHistogram

LONG = "ROC: flights_delay_gradient_mlp_with_embeddings v12, run 20261130T051212Z-backfill, validation split"


@pytest.fixture
def saved(monkeypatch):
    """The figures the plot functions save, laid out as saving lays them out: (title texts, any cut?)."""
    found = []

    def save(fig, path):
        plots.fit_titles(fig)
        found.append(([t.get_text() for t in plots.titles(fig)], any(plots.outside(fig, t) for t in plots.titles(fig))))
        plots._pyplot().close(fig)
        return path

    monkeypatch.setattr(plots, "_save", save)
    return found


def test_long_titles_wrap_inside_every_plot(saved, tmp_path):
    rng = np.random.default_rng(1)
    histogram = ScoreHistogram(np.linspace(0, 1, 1001), rng.uniform(0, 5, 1000), rng.uniform(0, 5, 1000),
                               rng.uniform(0, 1, 1000))
    plots.save_roc_curve({"m": histogram}, tmp_path / "roc.png", LONG)
    plots.save_score_distributions(histogram, tmp_path / "s.png", LONG, 0.5, ("delayed = no", "delayed = yes"))
    plots.save_calibration(histogram, tmp_path / "c.png", LONG)
    thresholds, values = histogram.ams_scan()
    plots.save_ams(thresholds, values, tmp_path / "a.png", LONG, (1.0, 0.5))
    plots.save_training_curves({"loss": [0.7, 0.6], "val_loss": [0.72, 0.65], "auc": [0.6, 0.7],
                                "val_auc": [0.58, 0.69]}, tmp_path / "t.png", LONG)
    plots.save_drift(["a", "b"], (np.array([0.5, 0.5]), np.array([0.4, 0.6])), (0.0, 0.1), tmp_path / "d.png", LONG)
    assert len(saved) == 6
    for texts, cut in saved:
        assert not cut, texts
    roc, calibration = saved[0][0][0], saved[2][0][0]
    assert "\n" in roc and "\n" in calibration  # wrapped, every word kept
    assert " ".join(roc.split()) == LONG == " ".join(calibration.split())
