"""search: find good layer widths for convnets cheaply.

The public surface (anything else is internal and may change)::

    import time
    from search import Budget, Config, run_search

    result = run_search(Config().validate(), Budget(180, time.monotonic()))
    print(result.best.widths)      # e.g. '16-32-64-8-32'

Imports are lazy so that ``search --help`` and its error messages do not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Config": "search.config",
    "SpaceConfig": "search.config",
    "ModelConfig": "search.config",
    "ProxyConfig": "search.config",
    "DataConfig": "search.config",
    "SearchConfig": "search.config",
    "StoreConfig": "search.config",
    "FullTrainConfig": "search.config",
    "parse_duration": "search.config",
    "ConfigError": "search.errors",
    "DataError": "search.errors",
    "UserError": "search.errors",
    "Candidate": "search.proxy",
    "ProxyResult": "search.proxy",
    "score_candidate": "search.proxy",
    "EpochMetrics": "search.train",
    "TrainSettings": "search.train",
    "CosineDecay": "search.train",
    "FidelityConfig": "search.config",
    "run_validation": "search.validate",
    "seed_ceiling": "search.validate",
    "fit": "search.train",
    "Budget": "search.budget",
    "SearchResult": "search.results",
    "TrialSummary": "search.results",
    "run_search": "search.study",
    "run_training": "search.study",
    "FullSummary": "search.results",
    "FullResult": "search.progressive",
    "train_full": "search.progressive",
    "Analysis": "search.analysis",
    "analyse": "search.analysis",
    "load_checkpoint": "search.analysis",
    "StopTraining": "search.train",
    "Tracker": "search.tracking",
    "run_trial": "search.trial",
    "TrialOutcome": "search.trial",
    "simplify_model": "search.simplify",
    "SimplifyReport": "search.results",
    "slim_model": "search.slim",
    "SlimReport": "search.results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
