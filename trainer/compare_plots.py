"""The PNG plots of rfmml-compare: per-class gain over plain, and confusion matrices (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path


def plot_gains(gains: dict[str, dict[str, float]], minority: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(next(iter(gains.values())).keys())
    width = 0.8 / len(gains)
    fig, ax = plt.subplots(figsize=(max(8, len(classes) * 0.9), 4.5))
    for i, (label, per_class) in enumerate(gains.items()):
        ax.bar(
            [k + i * width for k in range(len(classes))],
            [100 * per_class.get(c, math.nan) for c in classes],
            width,
            label=label,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(classes))])
    ax.set_xticklabels([c + (" *" if c in minority else "") for c in classes], rotation=40, ha="right")
    ax.set_ylabel("accuracy gain over plain (points)")
    ax.set_title("Per-class gain over plain cross-entropy (* = minority in at least one run)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(matrix: list[list[int]], classes: tuple[str, ...], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(matrix, dtype=np.float64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.55 * len(classes), 1 + 0.5 * len(classes)))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{100 * rates[i, j]:.0f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


MARKERS = "osD^vP*Xh<>"


def plot_tradeoff(points: dict[str, list[tuple[int, float, float]]], group: str, path: Path) -> dict:
    """Overall (x) vs minority (y) accuracy in %, one point per run, one colour and marker per
    "method/head" (``points``: label -> [(seed, overall, minority)] as fractions). Returns label ->
    the [(x, y)] points drawn (what the tests check)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(1, -(-len(points) // 32))  # legend columns of up to 32 entries, beside the axes
    fig, ax = plt.subplots(figsize=(7 + 3.3 * columns, 6))
    cmap = plt.get_cmap("tab20")
    drawn = {}
    for i, (label, series) in enumerate(points.items()):
        xs = [100 * overall for _, overall, _ in series]
        ys = [100 * minority for _, _, minority in series]
        artist = ax.scatter(xs, ys, color=cmap(i % 20), marker=MARKERS[i % len(MARKERS)], label=label, s=30)
        drawn[label] = [tuple(map(float, xy)) for xy in artist.get_offsets()]
    ax.set_xlabel("overall accuracy (%)")
    ax.set_ylabel("minority accuracy (%)")
    ax.set_title(f"Overall vs minority accuracy, one point per seed\n{group}", fontsize=9)
    ax.grid(alpha=0.3)
    # outside the axes: with dozens of method/head series a legend inside hides the points
    ax.legend(fontsize=6, ncol=columns, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return drawn
