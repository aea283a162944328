"""Every MLflow call of the project lives here.

Layout: one experiment (``search`` by default); a parent run per search (tag
``study``); a child run per trial (tag ``phase=proxy``) nested under it with
``mlflow.parentRunId``. Per-epoch metrics use step = epoch.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag

EXPERIMENT = "search"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_CHARS = 6000
# Says the experiment holds training runs. MLflow 3.17's UI still opens it on the GenAI overview
# in a browser that never chose "Model training", so `search ui` links the runs page itself.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# Before anything is written, a tracking server must answer within this (MLflow's own client
# retries an unreachable server for minutes).
SERVER_TIMEOUT_S = 5.0
# The tags of a run whose process ended while it was active (a killed search, found on --resume).
STALE_TAGS = {"failure": "process ended while the run was active"}


def check_server(tracking_uri: str, timeout_s: float = SERVER_TIMEOUT_S) -> str | None:
    """Why an HTTP(S) tracking server cannot be used, or None if it answers (or is not a server).

    One request to its ``/health`` endpoint, no retries.

    Example:
        >>> check_server("sqlite:///runs/mlflow.db") is None
        True
        >>> "not reachable" in check_server("http://127.0.0.1:9", timeout_s=1)
        True
    """
    import urllib.error
    import urllib.request

    if not tracking_uri.startswith(("http://", "https://")):
        return None
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status == 200:
                return None
            return f"tracking server {tracking_uri} answered {response.status} on /health"
    except urllib.error.HTTPError as error:
        return f"tracking server {tracking_uri} answered {error.code} on /health"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"tracking server {tracking_uri} is not reachable ({reason}); start it or pass another --tracking-uri"

# MLflow's SQLite store logs alembic migrations at INFO the first time; users need none of it.
logging.getLogger("alembic").setLevel(logging.WARNING)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return str(value)[:MAX_PARAM_CHARS]


class Tracker:
    """A thin handle on one MLflow experiment.

    Example:
        >>> import tempfile; folder = Path(tempfile.mkdtemp())
        >>> tracker = Tracker(f"sqlite:///{folder}/mlflow.db", folder / "artifacts")
        >>> parent = tracker.start_run("search-1", tags={"study": "search-1"})
        >>> child = tracker.start_run("trial-0", parent_id=parent, params={"widths": "8-16"})
        >>> tracker.log_metrics(child, {"val_acc": 0.5}, step=1)
        >>> tracker.end_run(child); tracker.end_run(parent)
        >>> [r.info.status for r in tracker.children(parent)]
        ['FINISHED']
    """

    def __init__(self, tracking_uri: str, artifact_root: Path | None = None, experiment: str = EXPERIMENT) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            # A local SQLite store keeps artifacts beside it; a server decides for itself.
            location = artifact_root.as_uri() if artifact_root is not None and self.is_local else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        for key, value in EXPERIMENT_KIND.items():  # new and existing stores alike
            self.client.set_experiment_tag(self.experiment_id, key, value)

    @property
    def is_local(self) -> bool:
        """Whether the store is a file on this machine (SQLite, a file store), not a server."""
        return is_local_uri(self.tracking_uri)

    def start_run(
        self,
        name: str,
        parent_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        all_tags = {k: str(v) for k, v in (tags or {}).items()}
        if parent_id is not None:
            all_tags[PARENT_TAG] = parent_id
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        if params:
            self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(key, _param_value(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run_id, params=items[start : start + 100], synchronous=True)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        stamp = _now_ms()
        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items()], synchronous=True
        )

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=True)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_json(self, run_id: str, data: Any, artifact_file: str) -> None:
        self.client.log_text(run_id, json.dumps(data, indent=2), artifact_file)

    def log_table(self, run_id: str, rows: Iterable[Mapping[str, Any]], artifact_file: str) -> None:
        rows = list(rows)
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        self.client.log_text(run_id, buffer.getvalue(), artifact_file)

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str | None = None) -> None:
        """Every file under ``folder``, under ``artifact_path`` in the run's artifacts."""
        self.client.log_artifacts(run_id, str(folder), artifact_path)

    def download(self, run_id: str, artifact_path: str, destination: Path) -> Path:
        destination.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, artifact_path, str(destination)))

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    @contextmanager
    def ending(self, run_id: str) -> Iterator[None]:
        """End ``run_id`` FINISHED when the block completes, KILLED on Ctrl-C, FAILED on an error."""
        status = "FAILED"
        try:
            yield
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self.end_run(run_id, status)

    def reopen_run(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def get_run(self, run_id: str) -> Any:
        return self.client.get_run(run_id)

    def children(self, parent_id: str) -> list[Any]:
        return list(
            self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'", max_results=5000
            )
        )

    def trial_run(self, study_name: str, number: int) -> str | None:
        """The run of proxy trial ``number`` of ``study_name`` (found by its tags), if one was opened.

        The study is compared here, not in MLflow's filter, whose strings take no escaped quote."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.phase = 'proxy' and tags.trial = '{int(number)}'",
            order_by=["attributes.start_time DESC"])  # the study that asks is the newest (at most 1,000 read)
        return next((run.info.run_id for run in runs if run.data.tags.get("study") == study_name), None)

    def descendants(self, run_id: str) -> list[Any]:
        """Children, their children, ... (a search's full-training runs hold stage runs)."""
        found, frontier = [], [run_id]
        while frontier:
            children = [child for parent in frontier for child in self.children(parent)]
            found += children
            frontier = [child.info.run_id for child in children]
        return found

    def close_running(self, parent_id: str, status: str, tags: Mapping[str, Any]) -> list[str]:
        """End every run under ``parent_id`` still RUNNING with ``status`` and ``tags``; return their ids."""
        stale = [run.info.run_id for run in self.descendants(parent_id) if run.info.status == "RUNNING"]
        for run_id in stale:
            self.set_tags(run_id, tags)
            self.end_run(run_id, status)
        return stale

    def fail_running_children(self, parent_id: str) -> list[str]:
        """Mark runs under ``parent_id`` left RUNNING by a killed process as FAILED; return their ids."""
        return self.close_running(parent_id, RunStatus.to_string(RunStatus.FAILED), STALE_TAGS)

    def fail_run(self, run_id: str) -> None:
        """Mark ``run_id`` FAILED, whatever its status: its trial was lost with a killed process."""
        if self.client.get_run(run_id).info.status != RunStatus.to_string(RunStatus.FAILED):
            self.set_tags(run_id, STALE_TAGS)
            self.end_run(run_id, RunStatus.to_string(RunStatus.FAILED))


def is_local_uri(tracking_uri: str) -> bool:
    """The one test of whether a tracking URI is a store on this machine's disk.

    Example:
        >>> [is_local_uri(u) for u in ("sqlite:///runs/mlflow.db", "file:///tmp/mlruns", "http://mlflow:5000")]
        [True, True, False]
    """
    return tracking_uri.startswith(("sqlite:", "file:", "/")) or "://" not in tracking_uri
