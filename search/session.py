"""The set-up every entry point shares: the device, the data on it, and the store's tracker.

Loading data writes nothing; ``open_store`` is the first write of a command (its folder and
the MLflow store), so a command that fails before it leaves no trace.
"""

from __future__ import annotations

import torch

from search import data as datasets
from search.config import Config, ConfigError, StoreConfig
from search.tracking import Tracker


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when there is one, else the CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available here")
    return torch.device(name)


def load_data(config: Config) -> datasets.TensorData:
    """The configured dataset on the configured device (seeded by the search seed)."""
    return datasets.load(config.data, seed=config.search.seed).to(resolve_device(config.search.device))


def open_store(store: StoreConfig) -> Tracker:
    """Create the store's folder and return the tracker of its MLflow store."""
    store.path.mkdir(parents=True, exist_ok=True)
    return Tracker(store.mlflow_uri, store.artifact_root)
