"""Shared fixtures: tiny data, tiny configs, and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from search.config import Config, DataConfig, ModelConfig, ProxyConfig, SearchConfig, SpaceConfig, StoreConfig
from search.data import TensorData, make_synthetic

ROOT = Path(__file__).resolve().parents[1]

# Flags that make a CLI search tiny: 3 conv layers of 4..16, 8x8 synthetic images.
TINY_FLAGS = [
    "--dataset", "synthetic", "--layers", "3", "--width-range", "4:16:4", "--frozen", "1",
    "--proxy-epochs", "2", "--batch-size", "64", "--device", "cpu",
]


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def tiny_data() -> TensorData:
    return make_synthetic(256, 128, num_classes=4, image_size=8, seed=0)


def tiny_config(store: Path, **search: object) -> Config:
    return Config(
        space=SpaceConfig(layers=3, width_choices=None, width_min=4, width_max=16, width_step=4, frozen_layers=(1,)),
        model=ModelConfig(hidden=(16,)),
        proxy=ProxyConfig(epochs=2, batch_size=64),
        data=DataConfig(dataset="synthetic", synthetic_train=256, synthetic_val=128, synthetic_classes=4,
                        synthetic_image_size=8),
        search=SearchConfig(**{"budget_s": 120.0, "trials": 3, "device": "cpu", "pruner": "none", "top_k": 0,  # type: ignore[arg-type]
                               **search}),
        store=StoreConfig(path=store),
    ).validate()


def load_only_study(store: Path) -> optuna.Study:
    """The one study in a store's Optuna database."""
    storage = f"sqlite:///{(store / 'optuna.db').resolve()}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The installed console script's code, run as a user would run it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "search.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def trained_run(cwd: Path, widths: str = "8-16-16") -> str:
    """``search train`` of a tiny profile on synthetic data in ``cwd``; the id of its run."""
    from search.tracking import Tracker

    trained = run_cli(["train", "--widths", widths, "--dataset", "synthetic", "--stages", "1",
                       "--epochs-per-stage", "3", "--device", "cpu"], cwd=cwd)
    assert trained.returncode == 0, trained.stderr
    tracker = Tracker(f"sqlite:///{cwd / 'runs' / 'mlflow.db'}")
    (parent,) = [r for r in tracker.client.search_runs([tracker.experiment_id])
                 if "mlflow.parentRunId" not in r.data.tags]
    return parent.info.run_id
