"""The report's matplotlib figures, each returned as a self-contained "data:image/png;base64,..." URI, and the
confusion matrices' heatmap cells, drawn as HTML tables.

Figures are built on matplotlib.figure.Figure directly (Agg canvas, no pyplot state), so rendering needs no
display and leaves no global state behind. Every model keeps one colour across all figures.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullLocator
from PIL import Image

DPI = 110
TIGHT_PAD_INCHES = 0.1  # savefig's margin around a tight bounding box (rcParams["savefig.pad_inches"])


def _log_tick_label(value: float, _position: int) -> str:
    """Plain numbers on a log axis, labelling only the 1, 2, 5 steps of each decade."""
    if value <= 0:
        return ""
    mantissa = round(value / 10 ** np.floor(np.log10(value)), 6)
    return f"{value:.3g}" if mantissa in (1.0, 2.0, 5.0) else ""


PLAIN_NUMBER = FuncFormatter(_log_tick_label)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def model_colours(models: list[str]) -> dict[str, str]:
    return {model: PALETTE[index % len(PALETTE)] for index, model in enumerate(models)}


def to_data_uri(figure: Figure) -> str:
    """PNG bytes of `figure`, base64-encoded into a data: URI (no metadata, no links)."""
    return "data:image/png;base64," + base64.b64encode(tight_png(figure)).decode("ascii")


def tight_png(figure: Figure) -> bytes:
    """The PNG of savefig(bbox_inches="tight") from one draw instead of its two: the canvas drawn at DPI, cropped to
    the artists' bounding box, with savefig's 0.1 in margin of the figure's colour around it. When the artists
    reach past the canvas (a long label), savefig itself, which widens the image to fit them."""
    figure.set_dpi(DPI)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())  # (height, width, 4), top row first
    height, width = pixels.shape[:2]
    left, bottom, right, top = figure.get_tightbbox(canvas.get_renderer()).extents * DPI
    rows = slice(int(np.floor(height - top)), int(np.ceil(height - bottom)))
    columns = slice(int(np.floor(left)), int(np.ceil(right)))
    buffer = io.BytesIO()
    if rows.start < 0 or columns.start < 0 or rows.stop > height or columns.stop > width:
        figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
        return buffer.getvalue()
    margin = round(TIGHT_PAD_INCHES * DPI)
    framed = np.empty((rows.stop - rows.start + 2 * margin, columns.stop - columns.start + 2 * margin, 4), np.uint8)
    framed[...] = np.round(np.array(figure.get_facecolor()) * 255)
    framed[margin:-margin, margin:-margin] = pixels[rows, columns]
    Image.fromarray(framed).save(buffer, format="png")
    return buffer.getvalue()


def accuracy_figure(table: pd.DataFrame, intervals: dict[str, list[float] | None], colours: dict[str, str]) -> str:
    """Test accuracy per model: every ok seed as a dot, the mean as a bar, the 95% interval as an error bar.

    table: the run table (model, seed, status, test_accuracy); intervals: model -> [low, high] or None.
    """
    models = list(colours)
    figure = Figure(figsize=(7, 0.7 + 0.75 * len(models)))
    axes = figure.subplots()
    for row, model in enumerate(models):
        ok = table[(table["model"] == model) & (table["status"] == "ok")]["test_accuracy"].dropna() * 100
        if ok.empty:
            axes.text(0.5, row, "no successful run", transform=axes.get_yaxis_transform(), va="center", color="red")
            continue
        axes.scatter(ok, np.full(len(ok), row), color=colours[model], s=40, zorder=3, label=None)
        axes.plot([ok.mean()] * 2, [row - 0.3, row + 0.3], color="black", linewidth=2, zorder=4)
        if intervals.get(model):
            low, high = (100 * bound for bound in intervals[model])
            axes.plot([low, high], [row, row], color=colours[model], linewidth=6, alpha=0.35, zorder=2)
    axes.set_yticks(range(len(models)), models)
    axes.set_ylim(-0.6, len(models) - 0.4)
    axes.invert_yaxis()
    axes.set_xlabel("test accuracy (%)   dots: seeds, black tick: mean, shaded bar: 95% interval")
    axes.grid(axis="x", alpha=0.3)
    return to_data_uri(figure)


def learning_curves_figure(means: pd.DataFrame, colours: dict[str, str]) -> str:
    """Train loss, validation loss and validation accuracy per epoch: mean over seeds, band = min..max.

    means: output of aggregate.mean_curves (model, epoch, <value>_mean/_min/_max).
    """
    panels = [("train_loss", "training loss (cross-entropy)"), ("val_loss", "validation loss"),
              ("val_accuracy", "validation accuracy")]
    panels = [panel for panel in panels if means.get(f"{panel[0]}_mean", pd.Series(dtype=float)).notna().any()]
    figure = Figure(figsize=(4.2 * max(len(panels), 1), 3.4))
    axes_list = np.atleast_1d(figure.subplots(1, max(len(panels), 1)))
    for axes, (value, title) in zip(axes_list, panels, strict=False):
        for model, colour in colours.items():
            curve = means[means["model"] == model]
            if curve.empty:
                continue
            scale = 100 if value == "val_accuracy" else 1
            axes.plot(curve["epoch"], curve[f"{value}_mean"] * scale, color=colour, label=model)
            axes.fill_between(curve["epoch"], curve[f"{value}_min"] * scale, curve[f"{value}_max"] * scale,
                              color=colour, alpha=0.2, linewidth=0)
        axes.set_title(title + (" (%)" if value == "val_accuracy" else ""))
        axes.set_xlabel("epoch")
        if value != "val_accuracy":
            axes.set_yscale("log")
            axes.yaxis.set_major_formatter(PLAIN_NUMBER)
            axes.yaxis.set_minor_formatter(PLAIN_NUMBER)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return to_data_uri(figure)


def _count_label(value: float) -> str:
    return f"{int(value)}" if value else ""


def _percent_label(share: float) -> str:
    """Shares as percentages, one decimal below 10% so that rare confusions stay visible; blank for none."""
    if not share:
        return ""
    return f"{100 * share:.1f}" if share < 0.1 else f"{100 * share:.0f}"


def confusion_tables(matrix: np.ndarray) -> list[dict[str, Any]]:
    """One model's confusion matrix (10, 10) int (rows: true digit) as two heatmap tables for HTML: counts, and the
    share of each true digit (recall per class). Each table: {"title", "rows": 10 rows of 10 cells {"text",
    "background" (hex), "dark"}}. Counts are shaded on a log scale, as a rare confusion would vanish on a linear one.

    HTML cells rather than a matplotlib heatmap: matplotlib drew each of the 200 cell labels at about 1 ms (a third of a
    3-model report job), and a table's numbers can be read, selected and copied."""
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    tables = []
    for title, values, shown, text in (("counts", matrix, np.log1p(matrix), _count_label),
                                        ("% of each true digit", shares, shares, _percent_label)):
        low, high = float(shown.min()), float(shown.max())
        rgba = colormaps["Blues"]((shown - low) / (high - low) if high > low else np.zeros_like(shown, dtype=float))
        rows = [[{"text": text(values[row, col]), "background": to_hex(rgba[row, col]),
                  "dark": bool(shown[row, col] > 0.6 * high)} for col in range(values.shape[1])]
                for row in range(values.shape[0])]
        tables.append({"title": title, "rows": rows})
    return tables


def f1_figure(f1: pd.DataFrame, colours: dict[str, str]) -> str:
    """Grouped bars: mean per-class F1 (index = digit 0..9, one column per model)."""
    figure = Figure(figsize=(9, 3))
    axes = figure.subplots()
    width = 0.8 / max(len(f1.columns), 1)
    for offset, model in enumerate(f1.columns):
        axes.bar(np.arange(10) + offset * width - 0.4 + width / 2, f1[model], width, color=colours[model],
                 label=model)
    lowest = float(np.nanmin(f1.to_numpy())) if f1.size else 0.0
    axes.set_ylim(max(0.0, lowest - 0.05), 1.0)
    axes.set_xticks(range(10))
    axes.set_xlabel("digit")
    axes.set_ylabel("F1 (mean over seeds)")
    axes.legend(fontsize=8, ncols=len(f1.columns))
    axes.grid(axis="y", alpha=0.3)
    return to_data_uri(figure)


# Blank columns between two digits of the mistakes figure, in image pixels (a digit is 28).
MISTAKE_GAP = 6


def mistakes_figure(images: np.ndarray, captions: list[str]) -> str:
    """A row of digits: images (k, 784) uint8 drawn as 28x28, each titled by its caption.

    One axes holds the k digits side by side in one image (k axes cost a matplotlib axis pair each: three times
    the time for the same picture)."""
    count = max(len(images), 1)
    stride = 28 + MISTAKE_GAP
    row = np.zeros((28, count * stride - MISTAKE_GAP), np.uint8)  # 0 is white in gray_r
    for index, image in enumerate(images):
        row[:, index * stride:index * stride + 28] = image.reshape(28, 28)
    figure = Figure(figsize=(1.0 * count, 1.45))
    axes = figure.add_axes((0.0, 0.0, 1.0, 0.72))
    axes.imshow(row, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    for index, caption in enumerate(captions):
        axes.text(index * stride + 13.5, -1.5, caption, ha="center", va="bottom", fontsize=8)
    axes.set_axis_off()
    return to_data_uri(figure)


def timing_figure(table: pd.DataFrame, colours: dict[str, str]) -> str:
    """Train seconds and seconds per epoch per model: mean bar, ok seeds as dots (table: the run table)."""
    figure = Figure(figsize=(9, 0.9 + 0.6 * len(colours)))
    axes_pair = figure.subplots(1, 2)
    models = list(colours)
    ok = table[table["status"] == "ok"]
    for axes, column, label in ((axes_pair[0], "train_seconds", "training time (s)"),
                                (axes_pair[1], "seconds_per_epoch", "time per epoch (s)")):
        for row, model in enumerate(models):
            values = ok[ok["model"] == model][column].dropna()
            if values.empty:
                continue
            axes.barh(row, values.mean(), color=colours[model], alpha=0.6)
            axes.scatter(values, np.full(len(values), row), color="black", s=12, zorder=3)
            axes.text(max(values.max(), values.mean()), row, f"  mean {values.mean():.3g} s", va="center", fontsize=8)
        axes.set_yticks(range(len(models)), models)
        axes.invert_yaxis()
        axes.set_xlabel(label)
        axes.margins(x=0.25)
        axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return to_data_uri(figure)


@dataclass(frozen=True)
class LearningRateCurve:
    """One model's learning rate as its training used it (the train record's lr_curve): step (n,) int64 and lr (n,)
    float64, up to 200 evenly spaced optimizer steps including the first and the last; base_lr: its entry's lr."""

    model: str
    step: np.ndarray
    lr: np.ndarray
    base_lr: float
    label: str


def lr_schedule_figure(curves: list[LearningRateCurve], colours: dict[str, str]) -> str:
    """lr_schedule_plot as a data URI."""
    return to_data_uri(lr_schedule_plot(curves, colours))


def lr_schedule_plot(curves: list[LearningRateCurve], colours: dict[str, str]) -> Figure:
    """The learning rate against the optimizer step, each model's as a fraction of its own lr (linear axis), so
    that schedules of optimizers whose learning rates differ by decades share one small figure."""
    figure = Figure(figsize=(7, 2.8))
    axes = figure.subplots()
    for curve in curves:
        axes.plot(curve.step, curve.lr / curve.base_lr, color=colours[curve.model], label=curve.label)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("lr / the entry's lr")
    axes.set_ylim(bottom=0)
    axes.set_title("Learning rate used at each step (linear scale)", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return figure


@dataclass(frozen=True)
class SensitivitySeries:
    """One family in one panel of the sensitivity figure.

    points: the members on the family's slice through its selected member (every other swept key at the selected
    member's value), one dict each with x (float), val and test (final validation / test accuracy per ok seed, float
    arrays), n_diverged, diverged_epoch (first, or None) and selected (bool). others: the members off that slice, as
    dicts with x and val, drawn faint. held: how the other swept keys are held, e.g. "weight_decay 0.01" ("" if none).
    """

    family: str
    points: list[dict[str, Any]]
    colour: str
    others: list[dict[str, Any]] = field(default_factory=list)
    held: str = ""


@dataclass(frozen=True)
class AxisScale:
    """How a hyperparameter axis is drawn: name is log | symlog | linear; threshold: symlog's linear range (±)."""

    name: str
    threshold: float | None
    note: str


# Values spanning at least this ratio (largest / smallest non-zero) get a logarithmic axis.
DECADE = 10.0


def axis_scale(values: list[float]) -> AxisScale:
    """Log only when every value is > 0 and they span a decade or more; symlog when 0 is among non-negative values
    whose non-zero ones span a decade or more (linear from 0 to the smallest non-zero value, log beyond, so that 0
    keeps its place); linear otherwise."""
    positive = [value for value in values if value > 0]
    spans_decade = len(positive) > 1 and max(positive) / min(positive) >= DECADE
    if spans_decade and len(positive) == len(values):
        return AxisScale("log", None, "log scale")
    if spans_decade and min(values) == 0:
        threshold = min(positive)
        return AxisScale("symlog", threshold, f"symlog scale: linear from 0 to {threshold:g}, log beyond")
    return AxisScale("linear", None, "linear scale")


MAX_VALUE_TICKS = 10


def series_values(series: list[SensitivitySeries]) -> list[float]:
    """Every member's value of the swept hyperparameter, on the slice or off it."""
    return [point["x"] for one in series for point in [*one.points, *one.others]]


def _apply_scale(axes: Any, scale: AxisScale, values: list[float]) -> None:
    if scale.name == "log":
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(PLAIN_NUMBER)
        return
    if scale.name == "symlog":
        axes.set_xscale("symlog", linthresh=scale.threshold, linscale=0.5)
    distinct = sorted(set(values))
    if len(distinct) <= MAX_VALUE_TICKS:
        axes.set_xticks(distinct, [f"{value:g}" for value in distinct])
        axes.xaxis.set_minor_locator(NullLocator())


def sensitivity_figure(series: list[SensitivitySeries], key: str) -> str:
    """sensitivity_plot as a data URI."""
    return to_data_uri(sensitivity_plot(series, key))


def sensitivity_plot(series: list[SensitivitySeries], key: str) -> Figure:
    """Validation accuracy against one hyperparameter for several families (a family whose other swept keys are held
    at its selected member's values): mean line, band over seeds (min..max), the selected member starred, every
    member's mean test accuracy faint, off-slice members as faint dots, diverged members marked in red. The axis
    scale follows axis_scale and is named in the axis label."""
    figure = Figure(figsize=(8, 4.6))
    axes = figure.subplots()
    xs = series_values(series)
    scale = axis_scale(xs)
    _apply_scale(axes, scale, xs)
    for one in series:
        _draw_sensitivity_line(axes, one)
    below = _zoom_on_the_best(axes, series)
    axes.set_xlabel(f"{key} ({scale.note})")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(f"Validation accuracy (final epoch) against {key}", fontsize=11)
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    handles += [Line2D([], [], marker="*", markersize=13, color="black", linestyle="none"),
                Line2D([], [], marker="o", markersize=5, color="grey", alpha=0.4, linestyle=":")]
    labels += ["selected on validation", "test accuracy (mean, faint)"]
    if any(one.others for one in series):
        handles.append(Line2D([], [], marker="o", markersize=4, color="grey", alpha=0.3, linestyle="none"))
        labels.append("other members (other swept values)")
    if any(point["n_diverged"] for one in series for point in one.points):
        handles.append(Line2D([], [], marker="x", markersize=8, color="#b00020", linestyle="none"))
        labels.append("diverged (first epoch noted)")
    if below:
        handles.append(Line2D([], [], marker="v", markersize=7, color="grey", linestyle="none"))
        labels.append(f"below the axis, which starts {ZOOM_POINTS:g} points\nunder the best (mean noted)")
    axes.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return figure


# The accuracy axis spans at most this many points under the best mean, so that one collapsed member (10% at a far
# too large learning rate) does not flatten the differences between the families' best settings.
ZOOM_POINTS = 10.0


def _zoom_on_the_best(axes: Any, series: list[SensitivitySeries]) -> int:
    """Start the accuracy axis ZOOM_POINTS under the best mean when some mean lies lower, and mark each such member
    at the bottom edge with its mean written beside it; returns how many were marked."""
    means = [(one.colour, point["x"], 100 * float(np.mean(point["val"]))) for one in series
             for point in one.points if len(point["val"])]
    if not means:
        return 0
    floor = max(mean for _, _, mean in means) - ZOOM_POINTS
    low = [(colour, x, mean) for colour, x, mean in means if mean < floor]
    if not low:
        return 0
    highest = max(100 * float(np.max([*point["val"], *point["test"]])) for one in series for point in one.points
                  if len(point["val"]))
    axes.set_ylim(floor, min(100.0, highest + 0.5))
    edge = axes.get_xaxis_transform()
    for colour, x, mean in low:
        axes.plot(x, 0.06, marker="v", markersize=8, color=colour, transform=edge, linestyle="none", zorder=5,
                  clip_on=False)
        axes.annotate(f"{mean:.0f}%", (x, 0.06), xycoords=edge, xytext=(6, -3), textcoords="offset points",
                      fontsize=7, color=colour)
    return len(low)


def _draw_sensitivity_line(axes: Any, one: SensitivitySeries) -> None:
    points = sorted(one.points, key=lambda point: point["x"])
    with_val = [point for point in points if len(point["val"])]
    colour = one.colour
    name = f"{one.family} ({one.held})" if one.held else one.family
    if with_val:
        x = [point["x"] for point in with_val]
        axes.plot(x, [100 * np.mean(point["val"]) for point in with_val], color=colour, marker="o", markersize=4,
                  label=name)
        axes.fill_between(x, [100 * np.min(point["val"]) for point in with_val],
                          [100 * np.max(point["val"]) for point in with_val], color=colour, alpha=0.18, linewidth=0)
        tested = [point for point in with_val if len(point["test"])]
        axes.plot([point["x"] for point in tested], [100 * np.mean(point["test"]) for point in tested],
                  color=colour, alpha=0.35, linestyle=":", marker="o", markersize=3)
    others = [point for point in one.others if len(point["val"])]
    axes.plot([point["x"] for point in others], [100 * np.mean(point["val"]) for point in others], color=colour,
              alpha=0.3, marker="o", markersize=4, linestyle="none")
    for point in points:
        if point["selected"] and len(point["val"]):
            axes.plot(point["x"], 100 * np.mean(point["val"]), marker="*", markersize=15, color=colour,
                      markeredgecolor="black", linestyle="none", zorder=5)
        if point["n_diverged"]:
            bottom = axes.get_xaxis_transform()
            axes.plot(point["x"], 0.03, marker="x", markersize=9, color="#b00020", transform=bottom,
                      linestyle="none", zorder=5)
            axes.annotate(f"ep {point['diverged_epoch']}", (point["x"], 0.03), xycoords=bottom,
                          xytext=(0, 7), textcoords="offset points", ha="center", fontsize=7, color="#b00020")
