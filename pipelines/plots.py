"""The pipeline's plots, as PNG files: training curves (train) and the evaluation plots (evaluate).

Matplotlib runs with its file-only Agg backend: the jobs run on servers without a display.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from dlpipe.pipelines.binary_metrics import ScoreHistogram


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fit_titles(fig)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def titles(fig) -> list:
    """The figure's title texts: its axes' titles and its suptitle."""
    found = [ax.title for ax in fig.axes if ax.get_title()]
    return found + ([fig._suptitle] if getattr(fig, "_suptitle", None) is not None else [])


def outside(fig, text) -> bool:
    """Whether ``text`` reaches past the figure's left or right edge (where a saved PNG cuts it)."""
    box = text.get_window_extent(fig.canvas.get_renderer())
    return box.x0 < 0 or box.x1 > fig.bbox.width


def fit_titles(fig) -> None:
    """Lay the figure out, wrapping each title onto more lines until none reaches past the figure's edges (a
    long model name and run id once cut the ROC title to "validation s")."""
    words = {id(t): t.get_text().replace("\n", " ") for t in titles(fig)}
    widths = {key: len(text) for key, text in words.items()}
    for _ in range(12):
        fig.tight_layout()
        wide = [t for t in titles(fig) if outside(fig, t) and widths[id(t)] > 12]
        if not wide:
            return
        for t in wide:
            widths[id(t)] = int(widths[id(t)] * 0.8)
            t.set_text(textwrap.fill(words[id(t)], widths[id(t)]))


def save_training_curves(history: dict, path: Path, title: str) -> Path:
    """Loss and AUC per epoch, training against validation, as a PNG the size of the evaluation plots."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, metric, name in zip(axes, ("loss", "auc"), ("loss", "AUC")):
        for key, style, split in ((metric, "-o", "training"), (f"val_{metric}", "--s", "validation")):
            if history.get(key):
                ax.plot(range(1, len(history[key]) + 1), history[key], style, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name} per epoch", fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=11)
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
                             classes: tuple[str, str] = ("0", "1"), groups: int = 50) -> Path:
    """The score distribution of each class, each normalised to unit area; ``classes``: the names of the
    negative and the positive class."""
    plt = _pyplot()
    coarse = histogram.merged(groups)
    widths = coarse.edges[1:] - coarse.edges[:-1]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for counts, name, color in ((coarse.negatives, classes[0], "tab:blue"), (coarse.positives, classes[1], "tab:red")):
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
    heights = np.asarray([*shares[0], *shares[1]], dtype=float)
    tallest = float(np.max(heights[np.isfinite(heights)], initial=0.0))
    ax.set_ylim(0, tallest * 1.3 or 1.0)  # room above the bars for the legend (even bins leave none below)
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)
