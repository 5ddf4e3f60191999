"""Where every stage reads and writes, relative to the repository root (the working directory).

These names are part of the user-facing interface: Snakemake rules, dvc.yaml, the report and users' scripts
depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path = Path(".")

    @property
    def params_yaml(self) -> Path:
        """The repository's own params file, the one both orchestrators read."""
        return self.root / "params.yaml"

    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def raw_npz(self) -> Path:
        return self.raw_dir / "mnist.npz"

    @property
    def source_json(self) -> Path:
        return self.raw_dir / "source.json"

    @property
    def prepared_dir(self) -> Path:
        return self.root / "data" / "prepared"

    def prepared_split(self, split: str) -> Path:
        """split: train | val | test."""
        return self.prepared_dir / f"{split}.npz"

    @property
    def stats_json(self) -> Path:
        return self.prepared_dir / "stats.json"

    def weights(self, model: str, seed: int) -> Path:
        return self.root / "data" / "models" / model / f"seed{seed}.npz"

    def train_report(self, model: str, seed: int) -> Path:
        return self.root / "reports" / "train" / model / f"seed{seed}.json"

    def eval_report(self, model: str, seed: int) -> Path:
        return self.root / "reports" / "eval" / model / f"seed{seed}.json"

    @property
    def metrics_json(self) -> Path:
        return self.root / "reports" / "metrics.json"

    @property
    def summary_json(self) -> Path:
        return self.root / "reports" / "summary.json"

    @property
    def plots_dir(self) -> Path:
        return self.root / "reports" / "plots"

    @property
    def report_html(self) -> Path:
        return self.root / "reports" / "report.html"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"
