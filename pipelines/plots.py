"""The pipeline's plots, as PNG files: training curves (train) and the evaluation plots (evaluate).

Matplotlib runs with its file-only Agg backend: the jobs run on servers without a display.
"""
from __future__ import annotations

from pathlib import Path

from dlpipe.pipelines.binary_metrics import ScoreHistogram


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def save_training_curves(history: dict, path: Path, title: str) -> Path:
    """Loss and AUC per epoch, training against validation, as a PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "auc")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            if history.get(key):
                ax.plot(range(1, len(history[key]) + 1), history[key], style, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def save_roc_curve(curves: dict[str, ScoreHistogram], path: Path, title: str) -> Path:
    """ROC curves (true against false positive rate) of one or more scores, their AUC in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, histogram in curves.items():
        fpr, tpr = histogram.roc()
        ax.plot(fpr, tpr, label=f"{name} (AUC {histogram.auc():.4f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance (AUC 0.5)")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def save_score_distributions(histogram: ScoreHistogram, path: Path, title: str, threshold: float,
                             groups: int = 50) -> Path:
    """The score distribution of each class, each normalised to unit area (signal against background)."""
    plt = _pyplot()
    coarse = histogram.merged(groups)
    widths = coarse.edges[1:] - coarse.edges[:-1]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for counts, name, color in ((coarse.negatives, "negative (background)", "tab:blue"),
                                (coarse.positives, "positive (signal)", "tab:red")):
        total = counts.sum()
        if total > 0:
            ax.stairs(counts / (total * widths), coarse.edges, label=f"{name}, weight {total:,.0f}",
                      color=color, fill=True, alpha=0.35)
            ax.stairs(counts / (total * widths), coarse.edges, color=color)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def save_calibration(histogram: ScoreHistogram, path: Path, title: str, groups: int = 10) -> Path:
    """Reliability diagram: the observed positive fraction against the mean score, per score group."""
    plt = _pyplot()
    predicted, observed, weight = histogram.calibration(groups)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    ax.plot(predicted, observed, "-o", label="model")
    for x, y, w in zip(predicted, observed, weight):
        ax.annotate(f"{w:,.0f}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color="grey")
    ax.set_xlabel("mean score")
    ax.set_ylabel("fraction of positives")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return _save(fig, path)


def save_ams(thresholds, values, path: Path, title: str, best: tuple[float, float]) -> Path:
    """The approximate median significance of keeping the rows scored at or above each threshold, and the cut
    chosen."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot(thresholds, values, color="tab:purple", label="AMS of the cut at each threshold")
    value, threshold = best
    ax.plot([threshold], [value], "o", color="black", label=f"cut: AMS {value:.3f} at score >= {threshold:.4f}")
    ax.set_xlabel("score threshold")
    ax.set_ylabel("AMS")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return _save(fig, path)


def save_drift(labels: list[str], shares: tuple, missing: tuple[float, float], path: Path, title: str) -> Path:
    """A feature's distribution in training and in the scored input: the share of present values per bin (or
    value) side by side, the missing shares in the legend."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = np.arange(len(labels))
    for offset, values, name, share, color in ((-0.2, shares[0], "training", missing[0], "tab:grey"),
                                               (0.2, shares[1], "scored", missing[1], "tab:orange")):
        ax.bar(x + offset, values, width=0.4, color=color, label=f"{name} ({share:.1%} missing)")
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("share of present values")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)
