"""Regenerate the README's figure from the committed results: python docs/make_figures.py (from the repo root).

Reads reports/plots/learning_curves.csv (written by `mnistbench report`; columns model, seed, status, epoch,
train_loss, val_loss, val_accuracy, seconds) and writes docs/learning_curves.png: validation accuracy per epoch,
the mean over seeds that did not diverge, with the range over seeds as a band. Needs pandas and matplotlib
only, not mnistbench, so it runs wherever the results are. The same CSV gives the same PNG bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def learning_curves_png(curves_csv: Path, target: Path) -> None:
    """Draw validation accuracy (%) against epoch, one line per model (mean over ok seeds, band min..max)."""
    curves = pd.read_csv(curves_csv)
    curves = curves[curves["status"] == "ok"]
    figure, axes = plt.subplots(figsize=(7.0, 3.6))
    for model, runs in curves.groupby("model", sort=False):
        by_epoch = runs.groupby("epoch")["val_accuracy"]
        epochs = by_epoch.mean().index
        label = f"{model} ({runs['seed'].nunique()} seeds)"
        axes.plot(epochs, 100 * by_epoch.mean(), marker="o", markersize=3, label=label)
        axes.fill_between(epochs, 100 * by_epoch.min(), 100 * by_epoch.max(), alpha=0.2)
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title("Default pipeline: validation accuracy, mean over seeds (band: min to max)", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=100, metadata={"Software": None})
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=Path, default=ROOT / "reports/plots/learning_curves.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/learning_curves.png")
    args = parser.parse_args()
    learning_curves_png(args.curves, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
