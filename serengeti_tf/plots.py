"""Every figure serengeti-tf draws, and the one matplotlib set-up (headless Agg backend).

matplotlib is imported lazily, on the first figure, so commands that draw nothing never load it.
Each function returns the figure; `io_utils.save_figure` writes it as PNG and closes it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed, same PNGs everywhere)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(frame: pd.DataFrame, title: str = ""):
    """Row-normalised heatmap (each true class sums to 1; empty rows stay 0); returns the figure."""
    plt = pyplot()

    counts = frame.to_numpy(dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    n = len(frame)
    side = max(4.0, min(0.28 * n + 2, 22.0))
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(normalised, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(n), frame.columns, rotation=90, fontsize=max(4, 9 - n // 12))
    ax.set_yticks(range(n), frame.index, fontsize=max(4, 9 - n // 12))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (rows sum to 1)")
    ax.set_title(title or "Confusion matrix, row-normalised")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def plot_f1_change(change: pd.DataFrame, title: str):
    """Bar per species (sorted by train count, most frequent left): relative F1 change in percent.

    Classes whose reference F1 is 0 but the new F1 is not have no relative change; they are marked
    with a triangle at the top of the axis.
    """
    plt = pyplot()

    change = change.sort_values(["count_train", "species"], ascending=[False, True]).reset_index(drop=True)
    values = change["rel_change"].to_numpy(dtype=float) * 100
    x = np.arange(len(change))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(change) + 2), 4.5))
    finite = np.nan_to_num(values, nan=0.0)
    colours = np.where(finite >= 0, "#2a9d8f", "#e76f51")
    ax.bar(x, finite, color=colours)
    ax.axhline(0, color="black", linewidth=0.8)
    undefined = change["ref_zero"].to_numpy(dtype=bool)
    if undefined.any():
        top = max(float(np.max(finite, initial=0.0)), 10.0) * 1.1
        ax.scatter(x[undefined], np.full(undefined.sum(), top), marker="^", s=60, color="#264653",
                   label="reference F1 = 0, new F1 > 0 (no relative change)", zorder=3)
        ax.set_ylim(top=top * 1.15)
        ax.legend(loc="best", fontsize=8)
    ax.set_xticks(x, [f"{s} ({n})" for s, n in zip(change["species"], change["count_train"])],
                  rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(change) - 0.4)
    ax.set_ylabel("relative F1 change (%)")
    ax.set_xlabel("species (train images), most frequent first")
    ax.set_title(title)
    return fig


def plot_f1_vs_frequency(per_class: pd.DataFrame, title: str = "Per-class F1 against class frequency"):
    """One marker series (joined by a thin line) per model/phase group of `per_class_f1`: mean
    test F1 of each class against its number of training images (log x; 0 plotted at 1)."""
    plt = pyplot()

    frame = per_class.sort_values(["count_train", "species"]).reset_index(drop=True)
    x = np.maximum(frame["count_train"].to_numpy(dtype=float), 1.0)
    groups = [c for c in frame.columns if c not in ("species", "count_train")]
    markers = "os^Dv<>pPX*h"
    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    for i, group in enumerate(groups):
        ax.plot(x, frame[group].to_numpy(dtype=float), marker=markers[i % len(markers)], markersize=4,
                linestyle="none", alpha=0.75, label=group)  # classes are not a continuum: no lines
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("F1 (mean over seeds)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    return fig


def plot_plan(plan: pd.DataFrame, title: str, unit: str = "images"):
    """Bar plot of the original vs phase-1 distribution, largest class first, log scale (paper figs. 5-6)."""
    plt = pyplot()

    ordered = plan.sort_values("original", ascending=False, kind="stable")
    x = np.arange(len(ordered))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.28 * len(ordered) + 2), 4.5))
    width = 0.42
    # Log scale cannot show 0: draw empty classes as no bar.
    axis.bar(x - width / 2, ordered["original"].clip(lower=0), width, label="original", color="#8c8c8c")
    axis.bar(x + width / 2, ordered["target"].clip(lower=0), width, label="phase 1", color="#1f77b4")
    axis.set_yscale("log")
    axis.set_xticks(x)
    axis.set_xticklabels(ordered["species"], rotation=90, fontsize=7)
    axis.set_ylabel(f"training {unit} (log scale)")
    axis.set_title(title)
    axis.legend()
    axis.grid(axis="y", which="major", alpha=0.3)
    figure.tight_layout()
    return figure


def class_distribution_figure(counts: pd.DataFrame, unit: str = "images"):
    """Training images (or crops) per class, sorted, log scale (the layout of the paper's fig. 4)."""
    plt = pyplot()

    ordered = counts.sort_values(["train", "species"], ascending=[False, True])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(ordered) + 2), 4.5))
    ax.bar(range(len(ordered)), ordered["train"].clip(lower=0.8), color="#4a7fb0")
    ax.set_yscale("log")
    ax.set_xticks(range(len(ordered)))
    ax.set_xticklabels(ordered["paper_name"], rotation=90, fontsize=7)
    ax.set_ylabel(f"training {unit} (log scale)")
    ax.set_title(f"Class distribution of the training split ({int(ordered['train'].sum())} {unit}, "
                 f"{len(ordered)} classes)")
    ax.grid(axis="y", which="both", alpha=0.3)
    return fig
