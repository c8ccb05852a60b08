"""Charts of the report (matplotlib, SVG): QC strips, ROC, confusion, training and faithfulness.

Each function takes the values to draw, already read from the output folder,
and returns an ``<img>`` (see :func:`rsxai.report.figures.image_tag`). They
draw; they do not compute results (an ROC curve is the display of the
predictions a stage wrote, its AUC is the one the stage reported).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from rsxai.report.figures import drawing, image_tag, new_figure

# Colour-blind-safe palette (Okabe & Ito) for models, methods and groups.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def _tidy(axes) -> None:
    axes.spines["top"].set_visible(False)
    axes.spines["right"].set_visible(False)


def qc_strip(tables: Mapping[str, pd.DataFrame], alt: str, *, group_order: Sequence[str]) -> str:
    """Each subject's map-to-group-map correlation, by network and group; outliers in red.

    Parameters
    ----------
    tables : mapping
        Network -> DataFrame with columns ``participant_id``, ``group``, ``r``
        and ``outlier`` (bool).
    group_order : sequence of str
        Groups in the order drawn.
    """
    n = len(tables)
    figure = new_figure(max(2.6 * n, 3.2), 2.8)
    # A fixed-seed jitter: the same report from the same folder draws the same picture.
    rng = np.random.default_rng(0)
    with drawing():
        for position, (network, frame) in enumerate(tables.items()):
            axes = figure.add_subplot(1, n, position + 1)
            for x, group in enumerate(group_order):
                rows = frame[frame["group"].astype(str) == str(group)]
                jitter = rng.uniform(-0.15, 0.15, len(rows))
                colors = np.where(rows["outlier"].astype(bool), "#C00000", PALETTE[x])
                axes.scatter(x + jitter, rows["r"], s=14, c=colors, alpha=0.85, linewidths=0)
                if len(rows):
                    axes.hlines(np.median(rows["r"]), x - 0.25, x + 0.25, color="0.2", lw=1.5)
                for dx, (_, row) in zip(jitter, rows.iterrows(), strict=True):
                    if bool(row["outlier"]):
                        axes.annotate(
                            str(row["participant_id"]), (x + dx, row["r"]), fontsize=7,
                            xytext=(4, 0), textcoords="offset points", color="#C00000",
                        )  # fmt: skip
            axes.set_xticks(range(len(group_order)), [str(g) for g in group_order])
            axes.set_xlim(-0.6, len(group_order) - 0.4)
            axes.set_title(network)
            if position == 0:
                axes.set_ylabel("r (subject map, group map)")
            _tidy(axes)
        figure.tight_layout()
    return image_tag(figure, alt, fmt="svg")


def roc_chart(curves: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]], alt: str) -> str:
    """ROC curves: per model, each repeat's curve thin and their vertical mean thick.

    Parameters
    ----------
    curves : mapping
        Legend label -> list of ``(fpr, tpr)`` arrays, one per repeat.
    """
    figure = new_figure(3.6, 3.4)
    grid = np.linspace(0.0, 1.0, 201)
    with drawing():
        axes = figure.add_subplot(1, 1, 1)
        axes.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1, label="chance")
        for position, (label, repeats) in enumerate(curves.items()):
            color = PALETTE[position % len(PALETTE)]
            interpolated = []
            for fpr, tpr in repeats:
                if len(repeats) > 1:
                    axes.plot(fpr, tpr, color=color, lw=0.6, alpha=0.3)
                interpolated.append(np.interp(grid, fpr, tpr))
            mean = np.mean(interpolated, axis=0)
            mean[0] = 0.0
            axes.plot(grid, mean, color=color, lw=1.8, label=label)
        axes.set_xlabel("false positive rate (1 - specificity)")
        axes.set_ylabel("true positive rate (sensitivity)")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.01)
        axes.set_aspect("equal")
        axes.legend(fontsize=7, loc="lower right", frameon=False)
        _tidy(axes)
        figure.tight_layout()
    return image_tag(figure, alt, fmt="svg")


def confusion_chart(
    matrix: np.ndarray, labels: Sequence[str], alt: str, *, title: str, decimals: int = 0
) -> str:
    """A 2 x 2 confusion matrix (rows: true group, columns: predicted group)."""
    figure = new_figure(2.3, 2.1)
    with drawing():
        axes = figure.add_subplot(1, 1, 1)
        axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(float(matrix.max()), 1e-9))
        for (i, j), value in np.ndenumerate(matrix):
            dark = value > 0.6 * matrix.max()
            axes.text(
                j, i, f"{value:.{decimals}f}", ha="center", va="center",
                color="white" if dark else "black", fontsize=10,
            )  # fmt: skip
        axes.set_xticks([0, 1], labels)
        axes.set_yticks([0, 1], labels)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(title, fontsize=9)
        figure.tight_layout()
    return image_tag(figure, alt, fmt="svg")


def training_chart(frame: pd.DataFrame, alt: str) -> str:
    """CNN training curves: loss (train, validation) and validation accuracy per epoch.

    Thin lines: each fold of each repeat; thick: their mean at each epoch.

    Parameters
    ----------
    frame : DataFrame
        Columns ``repeat``, ``fold``, ``epoch`` and any of ``train_loss``,
        ``val_loss``, ``val_accuracy``.
    """
    panels = [
        ("loss", [c for c in ("train_loss", "val_loss") if c in frame]),
        ("validation accuracy", [c for c in ("val_accuracy",) if c in frame]),
    ]
    panels = [(name, columns) for name, columns in panels if columns]
    figure = new_figure(3.3 * len(panels), 2.6)
    styles = {"train_loss": ("#0072B2", "train"), "val_loss": ("#D55E00", "validation")}
    with drawing():
        for position, (name, columns) in enumerate(panels):
            axes = figure.add_subplot(1, len(panels), position + 1)
            for column in columns:
                color, label = styles.get(column, ("#009E73", "validation"))
                for _, run in frame.groupby(["repeat", "fold"], sort=True):
                    axes.plot(run["epoch"], run[column], color=color, lw=0.5, alpha=0.3)
                mean = frame.groupby("epoch", sort=True)[column].mean()
                axes.plot(mean.index, mean.to_numpy(), color=color, lw=1.8, label=label)
            axes.set_xlabel("epoch")
            axes.set_ylabel(name)
            if name == "loss":
                axes.legend(fontsize=7, frameon=False)
            _tidy(axes)
        figure.tight_layout()
    return image_tag(figure, alt, fmt="svg")


def faithfulness_chart(frame: pd.DataFrame, alt: str) -> str:
    """Deletion and insertion curves: model probability as the most relevant voxels go or come.

    Parameters
    ----------
    frame : DataFrame
        Columns ``label`` (method and target), ``curve`` (deletion or
        insertion), ``fraction`` and ``probability``.
    """
    kinds = sorted(frame["curve"].astype(str).unique())
    figure = new_figure(3.2 * len(kinds), 2.7)
    labels = sorted(frame["label"].unique())
    with drawing():
        for position, kind in enumerate(kinds):
            axes = figure.add_subplot(1, len(kinds), position + 1)
            for index, label in enumerate(labels):
                rows = frame[(frame["curve"] == kind) & (frame["label"] == label)]
                rows = rows.sort_values("fraction")
                axes.plot(
                    rows["fraction"], rows["probability"], lw=1.4, label=label,
                    color=PALETTE[index % len(PALETTE)],
                )  # fmt: skip
            axes.set_title(kind)
            axes.set_xlabel("fraction of voxels " + ("removed" if kind == "deletion" else "kept"))
            axes.set_ylabel("probability of the class")
            axes.set_ylim(-0.02, 1.02)
            _tidy(axes)
        figure.axes[-1].legend(fontsize=7, frameon=False, loc="best")
        figure.tight_layout()
    return image_tag(figure, alt, fmt="svg")


def null_chart(null: np.ndarray, observed: float, alt: str, *, metric: str) -> str:
    """The permutation null distribution of a metric with the observed value marked."""
    figure = new_figure(3.4, 2.4)
    with drawing():
        axes = figure.add_subplot(1, 1, 1)
        axes.hist(null, bins=min(30, max(5, len(null) // 5)), color="0.7", edgecolor="white")
        axes.axvline(observed, color="#D55E00", lw=2, label="observed")
        axes.set_xlabel(f"{metric} with permuted labels")
        axes.set_ylabel("permutations")
        axes.legend(fontsize=7, frameon=False)
        _tidy(axes)
        figure.tight_layout()
    return image_tag(figure, alt, fmt="svg")
