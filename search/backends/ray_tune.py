"""The Ray backend: the same trials on Ray Tune workers, driven by Optuna, pruned by ASHA.

- One trial function for both backends: each Tune trial runs ``search.trial.run_trial`` on
  its worker (any scorer, the same MLflow run and records as the local backend), reporting
  each epoch to Tune; the last report is the outcome, sent once the trial's run is closed.
- The driver asks and tells Optuna itself: ``StudySearch`` is a Tune ``Searcher`` over the
  search's study (the store's Optuna storage, so ``--resume`` and optuna-dashboard work the
  same) that uses only Optuna's public ask-and-tell API. Ray's ``OptunaSearch`` was not used:
  it forces Optuna's ``NopPruner``, records a trial that ASHA stopped as COMPLETE with a
  partial score, and gives no public way to set user attributes, tell a trial PRUNED or FAIL,
  or skip a repeated candidate. Here a trial stopped by ASHA, the dominance rule or the budget
  is PRUNED, one that raised FAILED, one over a limit PRUNED with ``rejected``, a candidate
  scored before takes the earlier score without training (``same_as``), and no trial starts
  that the time left cannot finish.
- ``ASHAScheduler`` prunes on the per-epoch ``score`` (the local backend's: the accuracy less
  ``search.trial.score_penalty``; not for pareto searches, which prune
  by dominance in the ``ShareStopper``, nor for zero-cost scorers, which have no epochs).
- The dataset goes into Ray's object store once (``tune.with_parameters``); each trial moves
  it to its device, the GPU Ray assigned it when there is one, so cached features live there.
  That copy is the trial's own, so trials on Ray do not reuse each other's frozen features
  (the local backend does, for trials that share their lower widths).
- The worker closes its trial's MLflow run; a trial stopped from outside (its thread ends
  where it stood) or lost with its worker is closed by the driver (``RunCloser``), so none
  stays RUNNING whatever stopped it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from models import parse_widths
from search.budget import Budget, BudgetExhausted, current_budget, has_completed, next_epoch_overruns, next_trial
from search.config import Config, ConfigError, SpaceConfig
from search.cost import COST_ATTRS, Cost
from search.data import TensorData
from search.events import CandidateEnded, CandidateStarted, EpochDone, EventHandler, TrialStarted
from search.full import (
    CandidateOutcome,
    failed_summary,
    finished_summary,
    pick_candidates,
    start_full_run,
    train_candidate,
)
from search.pareto import completed_curves, dominated_at
from search.proxy import Candidate
from search.results import FullSummary, TrialSummary
from search.space import suggest_candidate
from search.tracking import Tracker, is_local_uri
from search.train import EpochMetrics
from search.trial import (
    MAX_UNTRAINED_IN_A_ROW,
    end_trial,
    reuse_earlier_score,
    run_trial,
    untrained,
    untrained_in_a_row,
)

# What ending Tune and Ray takes after the last trial: Tune's cleanup waits up to 5 s for its
# actors and then up to 10 s in all for one still starting (a second worker slot whose actor is
# importing torch when the search ends: 8-11 s on 2 cores), then ray.shutdown (1-1.5 s). Measured
# on 2 cores with ~1.5 s trials: 1-3 s typically, 9 s at worst from the last trial to Tune's return.
RAY_TEARDOWN_S = 12.0
TOKEN_HINT = ("set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to a file holding it, or put it in ~/.ray/auth_token "
              "('ray get-auth-token' on the head node prints it)")


# -- connecting -------------------------------------------------------------------


def find_auth_token() -> str | None:
    """The Ray cluster token from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if path.is_file():
        return path.read_text().strip() or None
    return None


def enable_token_auth_if_available() -> bool:
    """Ray 2.60 turns token authentication on for new clusters; a client must send the token.

    With ``RAY_AUTH_MODE`` unset and a token found, this process (and Ray's C++ core) switch
    to token mode, as ``ray start`` itself does on a machine that holds a token.
    """
    if os.environ.get("RAY_AUTH_MODE") is None and find_auth_token() is not None:
        os.environ["RAY_AUTH_MODE"] = "token"
    return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def connect(config: Config) -> None:
    """``ray.init`` for the configured address; one-line errors for the usual mistakes."""
    enable_token_auth_if_available()  # before Ray's core reads its settings, at import
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # so RunConfig(verbose=0) silences Tune's tables
    import ray

    try:
        if config.ray.address is None:
            # A private local Ray for this command: loopback only, no dashboard. Ray turns token
            # authentication on for it (and keeps a token in ~/.ray/auth_token); no need to say so.
            logging.getLogger("ray").setLevel(logging.ERROR)
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _node_ip_address="127.0.0.1")
            logging.getLogger("ray").setLevel(logging.WARNING)
        else:
            ray.init(address=config.ray.address, log_to_driver=False, configure_logging=False)
    except ConnectionError as error:
        raise ConfigError(f"cannot reach the Ray cluster at {config.ray.address!r}: {error}") from None
    except Exception as error:
        if type(error).__name__ == "AuthenticationError":
            raise ConfigError(f"the Ray cluster at {config.ray.address!r} wants a token: {TOKEN_HINT}") from None
        raise


def check_tracking_reachable(config: Config) -> None:
    """Workers on other machines cannot write this machine's SQLite tracking store.

    Checked after connecting and before any trial starts: the local store is fine only when
    every node of the cluster is this machine.
    """
    import ray

    if not is_local_uri(config.store.mlflow_uri):
        return
    here = {"127.0.0.1", socket.gethostbyname(socket.gethostname()), ray.util.get_node_ip_address()}
    remote = [node["NodeManagerAddress"] for node in ray.nodes()
              if node.get("Alive") and node["NodeManagerAddress"] not in here]
    if remote or (config.ray.address or "").startswith("ray://"):
        where = ", ".join(sorted(set(remote))) or config.ray.address
        raise ConfigError(
            f"the Ray workers on {where} cannot write the local tracking store {config.store.mlflow_uri}; "
            "run the MLflow server in deploy/ (docker compose -f deploy/compose.yaml up mlflow) and pass "
            "--tracking-uri http://HOST:5000"
        )


def warn_fractional_gpus(config: Config, warn: Callable[[str], None]) -> None:
    gpus = config.ray.gpus_per_trial
    if 0 < gpus < 1:
        warn(f"--gpus-per-trial {gpus:g}: about {int(1 / gpus)} trials share each GPU's memory without isolation; "
             "a trial that allocates too much fails the others on that GPU")


# -- the trainable (runs on the workers) ---------------------------------------------


def worker_device(config: Config) -> torch.device:
    """The GPU Ray gave this task (it sets CUDA_VISIBLE_DEVICES), else the CPU with as many
    torch threads as the task's CPUs."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(config.ray.cpus_per_trial)))
    return device


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its suggested widths; pickled once into the object store."""

    config: Config
    parent_id: str
    study_name: str
    # Wall-clock end (time.time(), comparable across nodes) that no epoch may pass: the whole
    # command's, so a first trial can finish; the driver's stopper ends the phase at its share.
    deadline_unix: float


class TrialFailed(RuntimeError):
    """A trial that raised on its worker (recorded there): raised again so Tune sees it fail."""


def trial_trainable(params: dict[str, Any], context: TrialContext, data: TensorData) -> None:
    """One trial on a Ray worker: ``search.trial.run_trial`` (the local backend's trial), reporting
    every epoch but the last to Tune; the last report is the trial's outcome, sent once its
    MLflow run is complete (ASHA may stop a trial at any report)."""
    import ray
    from ray import tune

    config = context.config
    candidate = Candidate(tuple(int(w) for w in params["widths"]), int(params["frozen_layers"]))
    device = worker_device(config)
    on_device = data.to(device)
    tracker = Tracker(config.store.mlflow_uri, config.store.artifact_root)
    identity: dict[str, Any] = {}
    start = time.perf_counter()
    epoch_times: list[float] = []

    def started(trial_identity: dict[str, Any], cost: Cost) -> None:
        identity.update(trial_identity, cost=cost.value(config.search.cost))

    def report(metrics: EpochMetrics, score: float) -> None:
        epoch_times.append(metrics.epoch_time_s)
        if metrics.epoch >= config.proxy.epochs:
            return  # the outcome's report
        tune.report({**metrics.as_metrics(), "score": score, "epoch": metrics.epoch,
                     "seconds": time.perf_counter() - start, "epoch_s": sum(epoch_times) / len(epoch_times),
                     **identity})
        if not params.get("finish") and next_epoch_overruns(metrics, context.deadline_unix - time.time()):
            raise BudgetExhausted(f"stopped after epoch {metrics.epoch}: budget spent")

    outcome = run_trial(int(params["number"]), candidate, on_device, config, tracker, context.parent_id,
                        context.study_name, on_epoch=report, on_start=started,
                        tags={"backend": "ray", "device": str(device),
                              "ray_node_id": ray.get_runtime_context().get_node_id()})
    final: dict[str, Any] = {**identity, "seconds": outcome.seconds}
    if outcome.epoch_s is not None:
        final["epoch_s"] = outcome.epoch_s
    if outcome.state == "failed":
        raise TrialFailed(outcome.note)
    if outcome.state == "rejected":  # never trained; the driver records it (StudySearch)
        tune.report({**final, "epoch": 0, "val_acc": 0.0, "score": 0.0, "rejected": outcome.note})
    elif outcome.state == "complete":
        assert outcome.result is not None
        last = outcome.result.history[-1].as_metrics() if outcome.result.history else {}
        tune.report({**last, **final, "epoch": len(outcome.result.history), "val_acc": outcome.result.score,
                     "score": outcome.score, "complete": True, "cached": outcome.result.cached})
    # pruned: stopped by the budget after an epoch already reported


# -- the driver side ----------------------------------------------------------------


def make_searcher_class() -> type:
    """``StudySearch``: a Tune ``Searcher`` over the search's Optuna study, by Optuna's public
    ask-and-tell API (see the module doc)."""
    from ray.tune.search import Searcher

    class StudySearch(Searcher):  # type: ignore[misc]
        def __init__(self, study: optuna.Study, space: SpaceConfig, cost: str, epochs: int, share: Budget,
                     whole: Budget, trial_cap: int | None, emit: EventHandler,
                     find_run: Callable[[int], str | None]) -> None:
            super().__init__(metric="score", mode="max")
            self.study, self.space, self.cost, self.epochs = study, space, cost, epochs
            self.share, self.whole, self.trial_cap, self.emit = share, whole, trial_cap, emit
            self.find_run = find_run  # trial number -> its MLflow run, by the run's tags
            self.pareto = len(study.directions) > 1
            self.asked: dict[str, optuna.Trial] = {}  # Tune's trial id -> the Optuna trial, until told
            self.lost_runs: dict[str, str] = {}  # Tune's trial id -> the run of a worker lost before reporting it
            self.numbers: dict[str, int] = {}
            self.curves: dict[str, list[float]] = {}
            self.overtime = False  # a trial was suggested past the budget (search.budget.has_completed)

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its searcher with the experiment state; the live handles stay here.
            return {"space": self.space, "epochs": self.epochs}

        def save(self, checkpoint_path: str) -> None:
            """Nothing to save: the study in the store's Optuna storage is the searcher's state."""

        def restore(self, checkpoint_path: str) -> None:
            """Nothing to restore (see ``save``): ``--resume`` reopens the study."""

        def suggest(self, trial_id: str) -> dict | str | None:
            while True:
                trials = self.study.get_trials(deepcopy=False)
                if untrained_in_a_row(trials) >= MAX_UNTRAINED_IN_A_ROW:
                    return Searcher.FINISHED
                finished = sum(t.state.is_finished() and not untrained(t) for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                if self.trial_cap is not None and finished + running >= self.trial_cap:
                    return Searcher.FINISHED if running == 0 else None
                decision = next_trial(trials, current_budget(self.study, self.share, self.whole), self.overtime)
                if decision == "stop":
                    return Searcher.FINISHED
                if decision == "wait":
                    return None  # no answer yet: Tune asks again once a running trial ends
                self.overtime = self.overtime or decision == "overtime"
                answered = has_completed(trials)
                trial = self.study.ask()
                candidate = suggest_candidate(trial, self.space)
                if reuse_earlier_score(self.study, trial, candidate):
                    end_trial(self.study, trial.number, self.emit, None)
                    continue
                self.asked[trial_id] = trial
                self.numbers[trial_id] = trial.number
                # finish: until a trial has completed, the budget does not stop a trial
                return {"number": trial.number, "widths": list(candidate.widths),
                        "frozen_layers": candidate.frozen_layers, "finish": not answered}

        def number(self, trial_id: str) -> int | None:
            return self.numbers.get(trial_id)

        def record(self, trial: optuna.Trial, result: dict | None) -> None:
            """The local backend's user attributes, from the trial's reported identity."""
            for key in (*COST_ATTRS, "widths", "frozen_layers", "mlflow_run_id", "seconds", "epoch_s", "rejected",
                        "cached", "width_penalty"):
                if result and key in result:
                    trial.set_user_attr(key, result[key])

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            trial = self.asked.get(trial_id)
            if trial is None:
                return
            if result.get("epoch", 0) <= 1:
                self.record(trial, result)
            self.observe(trial_id, trial, result)

        def observe(self, trial_id: str, trial: optuna.Trial, result: dict) -> None:
            """An epoch's score, once: Optuna's intermediate value, or the curve of a pareto search."""
            if "train_loss" not in result:  # rejected, or a zero-cost score: no epoch
                return
            curve = self.curves.setdefault(trial_id, [])
            if result["epoch"] <= len(curve):
                return
            curve.append(result["score"])
            if self.pareto:  # Optuna keeps no intermediate values for several objectives: the curve, for pruning
                trial.set_user_attr("curve", curve)
            else:
                trial.report(result["score"], result["epoch"])

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            trial = self.asked.pop(trial_id, None)
            if trial is None:
                return
            self.record(trial, result)
            if result:  # a result that ends a trial (ASHA's last rung, say) comes here, not to on_trial_result
                self.observe(trial_id, trial, result)
            if error:
                if "mlflow_run_id" not in trial.user_attrs:
                    # Its worker was lost before its first report reached the driver, maybe after
                    # opening its run: found by its tags, the run is linked here and closed by RunCloser.
                    run_id = self.find_run(trial.number)
                    if run_id is not None:
                        trial.set_user_attr("mlflow_run_id", run_id)
                        self.lost_runs[trial_id] = run_id
                trial.set_user_attr("error", "the trial raised or its worker was lost (see its MLflow run)")
                self.study.tell(trial, state=TrialState.FAIL)
            elif result and result.get("complete"):
                score = result["score"]
                self.study.tell(trial, [score, result["cost"]] if self.pareto else score)
            else:  # rejected (over a limit), or stopped by ASHA, the dominance rule or the budget
                self.study.tell(trial, state=TrialState.PRUNED)

    return StudySearch


def make_callback_class() -> type:
    """``RunCloser``: ends each trial's MLflow run on the driver and emits progress events."""
    from ray.tune import Callback

    class RunCloser(Callback):  # type: ignore[misc]
        def __init__(self, tracker: Tracker, study: optuna.Study, searcher: Any, emit: EventHandler,
                     epochs: int) -> None:
            self.tracker, self.study, self.searcher, self.emit, self.epochs = tracker, study, searcher, emit, epochs
            self.last: dict[str, dict] = {}

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its callbacks for experiment restore; the live handles stay with this process.
            return {"epochs": self.epochs, "last": {}}

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            number = self.searcher.number(trial.trial_id)
            if trial.trial_id not in self.last and number is not None:
                self.emit(TrialStarted(number, Candidate(parse_widths(str(result["widths"])),
                                                         int(result["frozen_layers"]))))
            self.last[trial.trial_id] = result
            if "train_loss" not in result:  # rejected, or a zero-cost score: no epoch
                return
            metrics = EpochMetrics(**{k: result[k] for k in ("train_loss", "val_loss", "val_acc", "epoch_time_s",
                                                             "eval_time_s", "images_per_s")}, epoch=result["epoch"])
            self.emit(EpochDone(number if number is not None else -1, metrics))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._close(trial, error=None)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._close(trial, error=str(getattr(trial, "error_file", "") or "the trial raised"))

        def _close(self, trial: Any, error: str | None) -> None:
            result = self.last.get(trial.trial_id, {})
            run_id = result.get("mlflow_run_id") or self.searcher.lost_runs.get(trial.trial_id)
            if run_id is not None:
                if error is not None:
                    # A trial that raised closed its run with its error; a lost worker did not.
                    if "error" not in self.tracker.get_run(run_id).data.tags:
                        self.tracker.set_tags(run_id, {"error": error[:5000]})
                    self.tracker.set_tags(run_id, {"state": "failed"})
                    self.tracker.end_run(run_id, "FAILED")
                elif self.tracker.get_run(run_id).info.status == "RUNNING":
                    # Stopped from outside (ASHA, the dominance rule, Tune's time budget): the
                    # worker's thread ended where it stood, its run still open. Every other
                    # trial closed its run before its last report (search.trial.run_trial).
                    self.tracker.set_tags(run_id, {"state": "pruned"})
                    self.tracker.end_run(run_id, "FINISHED")
            number = self.searcher.number(trial.trial_id)
            if number is not None:
                end_trial(self.study, number, self.emit, error)

    return RunCloser


def make_stopper_class() -> type:
    """``ShareStopper``: ends every trial once the phase's time is up and a trial has completed
    (until then the trials run on: ``search.budget.has_completed``), checked by Tune after each
    reported epoch."""
    from ray.tune import Stopper

    class ShareStopper(Stopper):  # type: ignore[misc]
        def __init__(self, study: optuna.Study, share: Budget, whole: Budget, epochs: int,
                     dominance: bool) -> None:
            self.study, self.share, self.whole = study, share, whole
            self.epochs, self.dominance = epochs, dominance

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its stoppers with the experiment state; the study handle stays here.
            return {"share": self.share, "whole": self.whole, "epochs": self.epochs, "dominance": self.dominance}

        def __call__(self, trial_id: str, result: dict) -> bool:
            """A pareto search's pruning: the trial is dominated at its epoch (search/pareto.py)."""
            study = getattr(self, "study", None)
            epoch = result.get("epoch", 0)
            if study is None or not self.dominance or "rejected" in result or not 0 < epoch < self.epochs:
                return False
            complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            return dominated_at(epoch, result["score"], result["cost"], completed_curves(complete))

        def stop_all(self) -> bool:
            study = getattr(self, "study", None)
            if study is None:
                return False
            return current_budget(study, self.share, self.whole).remaining_s() <= 0 and has_completed(
                study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    return ShareStopper


@dataclass(frozen=True)
class RayTrials:
    """Everything the Ray backend needs from its search; ``run`` runs Tune until time or the cap."""

    study: optuna.Study
    config: Config
    data: TensorData
    tracker: Tracker
    parent_id: str
    budget: Budget  # the proxy phase's share
    emit: EventHandler
    whole_budget: Budget | None = None  # the command's: what a first trial may use if the share is gone

    def run(self) -> None:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler

        config = self.config
        epochs = config.proxy.epochs
        # Stopping Tune's trials and shutting Ray down take seconds the local backend does not need.
        share = Budget(self.budget.total_s - RAY_TEARDOWN_S, self.budget.started_at)
        whole_budget = self.whole_budget or self.budget
        whole = Budget(whole_budget.total_s - RAY_TEARDOWN_S, whole_budget.started_at)
        pareto = config.search.objective == "pareto"
        searcher = make_searcher_class()(self.study, config.space, config.search.cost, epochs, share, whole,
                                         config.search.trials, self.emit,
                                         partial(self.tracker.trial_run, self.study.study_name))
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=1, reduction_factor=3)
        if config.search.pruner == "none" or pareto or config.search.scorer != "proxy":
            scheduler = None  # ASHA ranks one metric (pareto prunes by dominance); a zero-cost score has no epochs
        # Tune runs each trial in its own working directory: the store path must not be relative.
        absolute = replace(config, store=replace(config.store, path=config.store.path.resolve()))
        context = TrialContext(absolute, self.parent_id, self.study.study_name,
                               deadline_unix=time.time() + whole.remaining_s())
        trainable = tune.with_parameters(trial_trainable, context=context, data=self.data.to("cpu"))
        answered = has_completed(self.study.get_trials(deepcopy=False))
        resources = {"cpu": config.ray.cpus_per_trial, "gpu": config.ray.gpus_per_trial}
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            tune_config=tune.TuneConfig(
                metric=None if pareto else "score",  # the searcher holds both of a pareto search's metrics
                mode=None if pareto else "max",
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=-1,
                max_concurrent_trials=config.ray.max_concurrent,
                # Tune's hard limit only once the study has an answer; until then the stopper and
                # the searcher hold the budget, and let a trial finish past it.
                time_budget_s=max(1.0, whole.remaining_s()) if answered else None,
                reuse_actors=True,  # one worker process per slot: torch is imported once, not per trial
            ),
            run_config=tune.RunConfig(
                name=self.study.study_name,
                storage_path=str((config.store.path / "ray_results").resolve()),
                verbose=0,
                callbacks=[make_callback_class()(self.tracker, self.study, searcher, self.emit, epochs)],
                stop=make_stopper_class()(self.study, share, whole, epochs,
                                          dominance=pareto and config.search.pruner != "none"),
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            ),
        )
        tune_logger = logging.getLogger("ray.tune")
        tune_logger.setLevel(logging.ERROR)  # our progress replaces Tune's; failures are recorded per trial
        tuner.fit()
        self.close_leftovers()

    def close_leftovers(self) -> None:
        """Trials that Tune's time budget terminated: pruned in Optuna, their runs KILLED in MLflow."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
        self.tracker.close_running(self.parent_id, "KILLED", {"state": "pruned", "stopped": "Tune's time budget ended"})


# -- the second phase on Ray workers -------------------------------------------------


def full_task(widths: tuple[int, ...], data: TensorData, config: Config, run_id: str,
              deadline_unix: float) -> CandidateOutcome:
    """One candidate's full training, kernel analysis and artifacts on a Ray worker, under the
    MLflow run ``run_id`` that the driver opened (the driver closes it)."""
    import ray

    device = worker_device(config)
    tracker = Tracker(config.store.mlflow_uri, config.store.artifact_root)
    tracker.set_tags(run_id, {"ray_node_id": ray.get_runtime_context().get_node_id(), "device": str(device)})
    deadline = time.monotonic() + (deadline_unix - time.time())
    return train_candidate(widths, data.to(device), config, tracker, run_id, lambda event: None, deadline=deadline)


def run_full_phase_on_ray(
    config: Config,
    budget: Budget,
    data: TensorData,
    tracker: Tracker,
    parent_id: str,
    study_name: str,
    ranked: list[TrialSummary],
    emit: EventHandler,
) -> list[FullSummary]:
    """The second phase as Ray tasks: each candidate trains on a worker with ``--cpus-per-trial``
    CPUs and ``--gpus-per-full`` GPUs, as many at once as the cluster holds, all to the end of
    the budget (a task that starts late stops early, as the local phase's candidates do). The
    driver opens and closes each candidate's MLflow run; the worker logs its stages, analysis
    and weights there and tags the run with its ``ray_node_id``. A task that raises, or whose
    worker is lost, is a FAILED run with the error as a tag; the others go on."""
    import ray

    picked = pick_candidates(ranked, config.search.top_k)
    if picked and budget.remaining_s() <= RAY_TEARDOWN_S:  # no time to start a task and shut Ray down
        tracker.set_tags(parent_id, {"full_candidates": f"0 of the top {len(picked)}: the budget fit no more"})
        return []
    if not picked:
        return []
    absolute = replace(config, store=replace(config.store, path=config.store.path.resolve()))
    task = ray.remote(full_task).options(num_cpus=config.ray.cpus_per_trial, num_gpus=config.ray.full_gpus,
                                         max_retries=0)
    shared = ray.put(data.to("cpu"))
    deadline_unix = time.time() + budget.remaining_s() - RAY_TEARDOWN_S
    pending: dict[Any, tuple[int, TrialSummary, str, float]] = {}
    for rank, trial in enumerate(picked, start=1):
        emit(CandidateStarted(rank, len(picked), trial.widths, trial.score, len(picked), config.full.mode))
        run_id = start_full_run(tracker, config, parent_id, study_name, rank, trial)
        ref = task.remote(trial.widths, shared, absolute, run_id, deadline_unix)
        pending[ref] = (rank, trial, run_id, time.monotonic())
    summaries: list[FullSummary] = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=max(1.0, deadline_unix + RAY_TEARDOWN_S - time.time()))
        if not done:  # past the budget: what has not returned is cancelled
            for ref, (rank, trial, run_id, started) in pending.items():
                ray.cancel(ref, force=True)
                summaries.append(failed_summary(rank, trial, "cancelled: the budget was spent before it returned",
                                                time.monotonic() - started, tracker, run_id))
            break
        for ref in done:
            rank, trial, run_id, started = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as failure:  # the task raised (RayTaskError wraps it) or its worker died
                cause = getattr(failure, "cause", None) or failure
                summary = failed_summary(rank, trial, f"{type(cause).__name__}: {cause}",
                                         time.monotonic() - started, tracker, run_id)
            else:
                tracker.end_run(run_id, "FINISHED")
                summary = finished_summary(rank, trial, outcome, run_id)
            summaries.append(summary)
            emit(CandidateEnded(summary))
    return sorted(summaries, key=lambda f: f.rank)
