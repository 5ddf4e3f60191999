"""The original article's published figures, and how our runs line up with them (report section 10).

The article trained the 784-128-10 MLP on the first 1,000 training and 1,000 test images of
sklearn's train_test_split(test_size=0.2, random_state=42) over all 70,000 images. Our figures are put beside
its figures only when the data recipe is the same (the article preset, workflow/presets/article.yaml), and
each of its recipes is matched to our model entry with the same impl, optimizer, learning rate, batch and epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mnistbench.params import Params, RunParams

ARTICLE_DATA = {"split": "shuffle", "test_fraction": 0.2, "split_seed": 42, "n_train": 1000, "n_test": 1000}
PRESET_PATH = "workflow/presets/article.yaml"


@dataclass(frozen=True)
class ArticleRecipe:
    """One training recipe of the article and what it reported (accuracies as fractions, seconds or None)."""

    label: str
    impl: str
    optimizer: str
    lr: float
    batch_size: int  # 0 = full batch
    epochs: int
    accuracies: tuple[float, ...]
    train_seconds: float | None

    def matches(self, run: RunParams) -> bool:
        plain_sgd = run.optimizer != "sgd" or run.momentum == 0.0
        return (run.impl, run.optimizer, run.lr, run.batch_size, run.epochs) == (
            self.impl, self.optimizer, self.lr, self.batch_size, self.epochs) and plain_sgd


ARTICLE_RECIPES = (
    ArticleRecipe("Hand-written full-batch gradient descent, lr 0.01, 1000 epochs", "scratch", "sgd", 0.01, 0, 1000,
                  (0.863,), None),
    ArticleRecipe("Hand-written full-batch Adam, lr 0.01, 100 epochs", "scratch", "adam", 0.01, 0, 100,
                  (0.882, 0.897), 72.94),
    ArticleRecipe("PyTorch Adam, lr 0.01, batch 32, 100 epochs", "torch", "adam", 0.01, 32, 100, (0.905,), 1.90),
)


def is_article_data(params: Params) -> bool:
    """True when the data split and sizes are the article's (1,000 train / 1,000 test of the shuffled pool)."""
    data = params.data
    ours = {"split": data.split, "test_fraction": data.test_fraction, "split_seed": data.split_seed,
            "n_train": data.n_train, "n_test": data.n_test}
    return ours == ARTICLE_DATA


def reference_rows(params: Params, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per article recipe: its figures, and (article data only) our matching model's figures or None.

    metrics: the metrics.json document. Row keys: label, article_accuracies, article_seconds, model,
    our_accuracy (mean), our_accuracies (per ok seed), our_seconds (mean), speedup (article s / our s).
    """
    compare = is_article_data(params)
    rows = []
    for recipe in ARTICLE_RECIPES:
        model = next((name for name, run in params.models.items() if recipe.matches(run)), None) if compare else None
        summary = metrics["models"].get(model) if model else None
        ours_seconds = summary["train_seconds"]["mean"] if summary else None
        rows.append({
            "label": recipe.label,
            "article_accuracies": list(recipe.accuracies),
            "article_seconds": recipe.train_seconds,
            "model": model,
            "our_accuracy": summary["test_accuracy"]["mean"] if summary else None,
            "our_accuracies": summary["test_accuracy"]["per_seed"] if summary else [],
            "our_seconds": ours_seconds,
            "speedup": recipe.train_seconds / ours_seconds if recipe.train_seconds and ours_seconds else None,
        })
    return rows
