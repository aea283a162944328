"""Real components on loopback, started and stopped by these tests (only what they started):
a Ray head with token authentication, and an MLflow tracking server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from optuna.trial import TrialState

from conftest import ROOT, load_only_study, run_cli
from search.tracking import Tracker

BIN = Path(sys.executable).parent
TINY = ["--dataset", "synthetic", "--layers", "2", "--width-range", "4:12:4", "--frozen", "1", "--proxy-epochs", "2",
        "--batch-size", "64", "--device", "cpu", "--top-k", "0", "--pruner", "none"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the process group this test started (its own session: nothing else is in it)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)  # `ray start --block` has taken 30 s and more to honour SIGTERM
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass(frozen=True)
class RayHead:
    gcs_address: str
    dashboard_url: str
    token_path: Path
    client_env: dict[str, str]  # what a user's shell needs: the token, nothing else of the head
    pid: int  # the head's `ray start` process: the cluster's workers run under it


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    root = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths have a length limit
    home = root / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token", "PATH": f"{BIN}:{os.environ['PATH']}",
           "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    token_path = home / ".ray" / "auth_token"
    gcs, dashboard = free_port(), free_port()
    log = open(root / "head.log", "w")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--temp-dir", str(root / "t"),
         "--num-cpus", "2", "--ray-client-server-port", str(free_port()), "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, (root / "head.log").read_text()[-3000:]
            try:
                JobSubmissionClient(url, headers={"Authorization": f"Bearer {token_path.read_text().strip()}"})
                break
            except Exception:
                assert time.monotonic() < deadline, "the Ray head did not come up in 120 s"
                time.sleep(1)
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        client_env["RAY_AUTH_TOKEN_PATH"] = str(token_path)
        yield RayHead(f"127.0.0.1:{gcs}", url, token_path, client_env, head.pid)
    finally:
        stop(head)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def cli(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    full_env = {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "140"}
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_a_search_submitted_as_a_ray_job_runs_to_success(tmp_path: Path, ray_head: RayHead) -> None:
    store = tmp_path / "jobstore"
    submitted = cli(["submit", "--address", ray_head.dashboard_url, "--working-dir", str(ROOT), "--",
                     "run", "--backend", "ray", "--address", "auto", *TINY, "--trials", "2", "--budget", "3m",
                     "--store", str(store)], tmp_path, ray_head.client_env)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    job_id = submitted.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 300
    while True:
        state = cli(["jobs", "status", job_id, "--address", ray_head.dashboard_url], tmp_path, ray_head.client_env)
        assert state.returncode == 0, state.stderr
        if state.stdout.strip() in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        assert time.monotonic() < deadline, "the job did not finish in 300 s"
        time.sleep(2)
    logs = cli(["jobs", "logs", job_id, "--address", ray_head.dashboard_url], tmp_path, ray_head.client_env)
    assert state.stdout.strip() == "SUCCEEDED", logs.stdout[-3000:]
    assert "Top candidates" in logs.stdout
    assert (store / "optuna.db").is_file() and (store / "mlflow.db").is_file()


def test_a_cluster_that_wants_a_token_and_gets_none_is_a_one_line_error(tmp_path: Path, ray_head: RayHead) -> None:
    env = {k: v for k, v in ray_head.client_env.items() if k != "RAY_AUTH_TOKEN_PATH"}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token here
    result = cli(["jobs", "status", "raysubmit_nothing", "--address", ray_head.dashboard_url], tmp_path, env)
    assert result.returncode == 2 and "wants a token" in result.stderr and "RAY_AUTH_TOKEN" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_search_logs_to_a_real_mlflow_server(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not come up"
            time.sleep(1)

        result = run_cli(["run", *TINY, "--trials", "2", "--budget", "2m", "--tracking-uri", base], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"MLflow runs are on {base}" in result.stdout

        def api(path: str, body: dict | None = None) -> dict:
            request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", method="POST" if body else "GET",
                                             data=json.dumps(body).encode() if body else None,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())

        experiment = api("experiments/get-by-name?experiment_name=search")["experiment"]
        runs = api("runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
        tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
        parents = [run for run, tag in zip(runs, tags, strict=True) if "mlflow.parentRunId" not in tag]
        assert len(parents) == 1 and len(runs) == 3
        assert all(run["info"]["status"] == "FINISHED" for run in runs)
        children = [tag for tag in tags if tag.get("mlflow.parentRunId") == parents[0]["info"]["run_id"]]
        assert len(children) == 2 and all(tag["phase"] == "proxy" for tag in children)

        # A trained model's weights go to the server's artifact store, and export fetches them from there.
        trained = run_cli(["train", "--widths", "4-8", "--dataset", "synthetic", "--stages", "1", "--epochs-per-stage",
                           "1", "--device", "cpu", "--tracking-uri", base], cwd=tmp_path)
        assert trained.returncode == 0, trained.stderr
        keep = " ".join(trained.stdout.split()).split("Keep it: ")[1].split()
        assert keep[:2] == ["search", "export"] and keep[3:5] == ["--tracking-uri", base]
        exported = run_cli([*keep[1:5], "--out", "kept.pt"], cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        assert "4-8: val_acc" in exported.stdout and (tmp_path / "kept.pt").is_file()
        logged = list(tmp_path.rglob("model.pt"))  # the weights live in the server's artifact store only
        assert len(logged) == 1 and logged[0].is_relative_to(tmp_path / "artifacts")
    finally:
        stop(server)


@pytest.mark.slow
@pytest.mark.budget
def test_a_ray_search_keeps_the_budget_and_records_asha_stops_as_pruned(tmp_path: Path) -> None:
    budget_s = 60  # a fresh machine spends 20-30 s starting Ray and importing torch in its first worker
    start = time.monotonic()
    result = run_cli(["run", "--backend", "ray", *TINY[:-4], "--top-k", "0", "--budget", f"{budget_s}s"],
                     cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-3000:]
    assert elapsed <= 1.1 * budget_s, f"took {elapsed:.1f} s for a {budget_s} s budget"

    study = load_only_study(tmp_path / "runs")
    trials = study.get_trials()
    assert len(trials) >= 2 and not [t for t in trials if t.state == TrialState.RUNNING]
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = {r.info.run_id: r for r in tracker.descendants(study.user_attrs["mlflow_parent_run_id"])}
    assert all(r.info.status != "RUNNING" for r in runs.values())
    for trial in trials:
        if "mlflow_run_id" not in trial.user_attrs:
            continue
        epochs = len(tracker.client.get_metric_history(trial.user_attrs["mlflow_run_id"], "val_acc"))
        # COMPLETE after both proxy epochs; PRUNED (ASHA or the budget) after fewer.
        assert (trial.state == TrialState.COMPLETE) == (epochs == 2), (trial.number, trial.state, epochs)


@pytest.mark.slow
@pytest.mark.budget
def test_a_ray_search_whose_share_ends_before_ray_starts_still_ends_with_an_answer(tmp_path: Path) -> None:
    # 10 % of 60 s for the proxy phase is less than Ray's start-up and teardown: only the rule
    # "the whole budget counts until a trial has completed" lets a trial finish.
    budget_s = 60
    start = time.monotonic()
    result = run_cli(["run", "--backend", "ray", *TINY[:-4], "--top-k", "1", "--full-fraction", "0.9",
                      "--budget", f"{budget_s}s"], cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-3000:]
    assert elapsed <= 1.1 * budget_s, f"took {elapsed:.1f} s for a {budget_s} s budget"
    study = load_only_study(tmp_path / "runs")
    assert [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert "Top candidates" in result.stdout


@pytest.mark.slow
def test_a_ray_search_whose_budget_is_spent_before_tune_starts_still_scores_one_trial(
        tmp_path: Path, ray_head: RayHead) -> None:
    # Connecting alone takes longer than 1 s: Tune starts one trial past the budget, lets it finish
    # (no time limit, no budget stop in its epochs), then starts nothing more and trains nothing in full.
    result = cli(["run", "--backend", "ray", "--address", ray_head.gcs_address, *TINY[:-4], "--top-k", "1",
                  "--budget", "1s"], tmp_path, ray_head.client_env)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_only_study(tmp_path / "runs")
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [1, 2]
    out = " ".join(result.stdout.split())  # the console wraps long lines
    assert "No time was left to train in full" in out and "past the 1 s budget: no trial had completed by then" in out
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (run,) = tracker.descendants(study.user_attrs["mlflow_parent_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["state"] == "complete"


@pytest.mark.slow
def test_a_ray_trial_that_raises_is_failed_in_optuna_and_mlflow_and_the_search_ends(
        tmp_path: Path, ray_head: RayHead) -> None:
    # Adam steps of 1e30 overflow in the first epoch: every trial raises before its first report.
    result = cli(["run", "--backend", "ray", "--address", ray_head.gcs_address, *TINY, "--lr", "1e30", "--trials", "2",
                  "--budget", "90s"], tmp_path, ray_head.client_env)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_only_study(tmp_path / "runs")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert "No trial completed: every trial failed" in result.stdout
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = tracker.descendants(study.user_attrs["mlflow_parent_run_id"])
    assert len(runs) == 2 and all(r.info.status == "FAILED" for r in runs)
    assert all("DivergedError" in r.data.tags["error"] and r.data.tags["state"] == "failed" for r in runs)


@pytest.mark.slow
def test_one_trial_function_scores_synflow_trials_alike_on_both_backends(tmp_path: Path, ray_head: RayHead) -> None:
    flags = [*TINY[:-4], "--top-k", "0", "--scorer", "synflow", "--sampler", "random", "--trials", "4",
             "--budget", "150s"]
    records = {}
    for backend, where in (("local", []), ("ray", ["--address", ray_head.gcs_address])):
        (tmp_path / backend).mkdir()
        result = cli(["run", "--backend", backend, *where, *flags], tmp_path / backend, ray_head.client_env)
        assert result.returncode == 0, result.stderr[-3000:]
        study = load_only_study(tmp_path / backend / "runs")
        trained = [t for t in study.trials if "same_as" not in t.user_attrs]
        assert len(trained) == 4 and all(t.state == TrialState.COMPLETE for t in trained)
        tracker = Tracker(f"sqlite:///{tmp_path / backend / 'runs' / 'mlflow.db'}")
        runs = {t.number: tracker.get_run(t.user_attrs["mlflow_run_id"]) for t in trained}
        for number, run in runs.items():
            assert run.info.run_name == f"trial-{number}" and run.data.tags["trial"] == str(number)
            assert run.info.status == "FINISHED" and run.data.tags["state"] == "complete"
            assert tracker.client.get_metric_history(run.info.run_id, "val_acc") == []  # zero-cost: no epochs
        records[backend] = {
            "scores": {t.user_attrs["widths"]: t.value for t in trained},
            "attrs": {key for t in trained for key in t.user_attrs},
            "params": {key for run in runs.values() for key in run.data.params},
            "metrics": {key for run in runs.values() for key in run.data.metrics},
            "tags": {key for run in runs.values() for key in run.data.tags},
        }
    local, ray = records["local"], records["ray"]
    # The same scores for the same profiles (synflow is a function of seed and widths), the same records.
    shared = set(local["scores"]) & set(ray["scores"])
    assert shared and all(abs(local["scores"][w] - ray["scores"][w]) <= 1e-6 * abs(local["scores"][w])
                          for w in shared)
    assert local["attrs"] == ray["attrs"] and local["params"] == ray["params"] and local["metrics"] == ray["metrics"]
    assert ray["tags"] - local["tags"] == {"backend", "device", "ray_node_id"}


@pytest.mark.slow
def test_a_pareto_ray_search_rejects_over_the_limit_and_records_both_objectives(
        tmp_path: Path, ray_head: RayHead) -> None:
    from search.cli import build_parser, config_from_args
    from search.cost import measure_cost
    from search.proxy import Candidate
    from search.session import load_data

    flags = ["--backend", "ray", *TINY[:-4], "--top-k", "0", "--objective", "pareto", "--sampler", "random",
             "--trials", "5", "--budget", "150s"]
    config = config_from_args(build_parser().parse_args(["run", *flags]))
    limit = measure_cost(Candidate((8, 8), 1), load_data(config), config.model, 8).total_params  # the middle profile
    result = cli(["run", *flags, "--address", ray_head.gcs_address, "--max-params", str(limit)], tmp_path,
                 ray_head.client_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Pareto front of" in result.stdout

    study = load_only_study(tmp_path / "runs")
    assert len(study.directions) == 2 and not [t for t in study.trials if t.state == TrialState.RUNNING]
    rejected = [t for t in study.trials if "rejected" in t.user_attrs and "same_as" not in t.user_attrs]
    trained = [t for t in study.trials if "rejected" not in t.user_attrs and "same_as" not in t.user_attrs]
    assert rejected and len(trained) == 5
    # A profile proposed again (9 in this space) took its earlier values without training, as locally.
    for repeat in (t for t in study.trials if "same_as" in t.user_attrs):
        assert repeat.values == study.trials[repeat.user_attrs["same_as"]].values
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    for trial in rejected:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["total_params"] > limit
        run = tracker.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["state"] == "rejected" and run.info.status == "FINISHED"
        assert tracker.client.get_metric_history(run.info.run_id, "val_acc") == []
    for trial in trained:
        assert trial.user_attrs["total_params"] <= limit
        if trial.state == TrialState.COMPLETE:
            assert trial.values[1] == trial.user_attrs["total_params"] and len(trial.user_attrs["curve"]) == 2


@pytest.mark.slow
def test_a_search_on_a_ray_cluster_keeps_the_local_layout_and_trains_its_candidates_on_the_workers(
        tmp_path: Path, ray_head: RayHead) -> None:
    result = cli(["run", "--backend", "ray", "--address", ray_head.gcs_address, *TINY[:-4], "--pruner", "none",
                  "--trials", "3", "--max-concurrent", "2", "--top-k", "2", "--epochs-per-stage", "2",
                  "--progressive", "partial", "--budget", "4m"], tmp_path, ray_head.client_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Top candidates" in result.stdout and "Full training" in result.stdout

    study = load_only_study(tmp_path / "runs")
    trials = [t for t in study.get_trials() if "same_as" not in t.user_attrs]  # repeats took earlier scores
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in study.get_trials())
    assert all(len(t.user_attrs["widths"].split("-")) == 2 and t.user_attrs["trained_params"] > 0 for t in trials)
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    assert tracker.get_run(parent_id).info.status == "FINISHED"
    proxy = [r for r in tracker.children(parent_id) if r.data.tags.get("phase") == "proxy"]
    assert len(proxy) == 3 and all(c.info.status == "FINISHED" for c in proxy)
    assert {c.info.run_id for c in proxy} == {t.user_attrs["mlflow_run_id"] for t in trials}
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in trials}
    for child in proxy:
        assert child.data.tags["backend"] == "ray"
        history = tracker.client.get_metric_history(child.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == [1, 2]
        # The worker's score, told by the driver: the accuracy less the trial's width penalty.
        trial = by_run[child.info.run_id]
        assert trial.value == pytest.approx(child.data.metrics["proxy_acc"] - trial.user_attrs["width_penalty"])
        assert trial.intermediate_values[1] == pytest.approx(
            {m.step: m.value for m in history}[1] - trial.user_attrs["width_penalty"])

    # The second phase: each candidate a Ray task on the cluster's workers.
    full = [r for r in tracker.children(parent_id) if r.data.tags.get("phase") == "full"]
    assert len(full) == 2
    for run in full:
        assert run.info.status == "FINISHED" and run.data.tags["state"] == "complete"
        assert len(run.data.tags["ray_node_id"]) >= 16 and run.data.tags["device"] == "cpu"  # logged by the worker
        stages = tracker.children(run.info.run_id)
        assert [s.data.tags["stage"] for s in sorted(stages, key=lambda s: float(s.data.tags["stage"]))] == ["0.5", "1"]
        assert all(s.info.status == "FINISHED" for s in stages)
        assert [a.path for a in tracker.client.list_artifacts(run.info.run_id, "model")] == ["model/model.pt"]
        pictures = {a.path for a in tracker.client.list_artifacts(run.info.run_id, "analysis")}
        assert {"analysis/kernels.json", "analysis/widths.png", "analysis/kernels_layer2.png"} <= pictures
        assert "learned_widths" in run.data.params
    parent = tracker.get_run(parent_id)
    assert parent.data.tags["winner_run_id"] in {r.info.run_id for r in full}


@pytest.mark.slow
def test_a_full_training_task_that_raises_is_failed_and_the_search_ends(tmp_path: Path, ray_head: RayHead) -> None:
    (tmp_path / "diverge.toml").write_text("[full]\nlr = 1e30\n")  # the proxy trains; full training overflows
    result = cli(["run", "--backend", "ray", "--address", ray_head.gcs_address, *TINY[:-4], "--pruner", "none",
                  "--trials", "2", "--top-k", "1", "--budget", "3m", "--config", "diverge.toml"], tmp_path,
                 ray_head.client_env)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_only_study(tmp_path / "runs")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (full,) = [r for r in tracker.children(study.user_attrs["mlflow_parent_run_id"])
               if r.data.tags.get("phase") == "full"]
    assert full.info.status == "FAILED" and full.data.tags["state"] == "failed"
    assert full.data.tags["error"].startswith("DivergedError") and "ray_node_id" in full.data.tags
    assert all(r.info.status != "RUNNING" for r in tracker.descendants(study.user_attrs["mlflow_parent_run_id"]))


@pytest.mark.slow
def test_a_proxy_trial_whose_worker_is_killed_is_failed_and_the_search_ends(tmp_path: Path, ray_head: RayHead) -> None:
    # One long proxy trial (400 epochs) so it is surely training when its worker is killed.
    study_db = tmp_path / "runs" / "mlflow.db"
    returncode, out, err = search_with_killed_workers(
        tmp_path, ray_head, ["--proxy-epochs", "400", "--trials", "1", "--top-k", "0"], "ray::ImplicitFunc",
        ready=lambda: study_db.is_file() and epochs_logged(study_db) > 0)  # it has logged an epoch
    assert returncode == 0, err[-3000:]
    assert "No trial completed" in out and "every trial failed" in out  # with the epoch it reached
    study = load_only_study(tmp_path / "runs")
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL
    tracker = Tracker(f"sqlite:///{study_db}")
    run = tracker.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["state"] == "failed" and run.data.tags["error"]
    assert all(r.info.status != "RUNNING" for r in tracker.descendants(study.user_attrs["mlflow_parent_run_id"]))


def epochs_logged(mlflow_db: Path) -> int:
    """How many val_acc values the store at ``mlflow_db`` holds (read-only, without MLflow)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{mlflow_db}?mode=ro", uri=True) as db:
            return db.execute("select count(*) from metrics where key = 'val_acc'").fetchone()[0]
    except sqlite3.Error:
        return 0


def search_with_killed_workers(tmp_path: Path, ray_head: RayHead, flags: list[str], marker: str,
                               ready: Callable[[], bool]) -> tuple[int, str, str]:
    """Run a search on the test's own Ray head; once a worker whose command line holds ``marker``
    runs and then ``ready()`` holds (asked only while one runs), SIGKILL those workers; (exit code,
    stdout, stderr) of the search."""
    env = {**ray_head.client_env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    command = [sys.executable, "-m", "search.cli", "run", "--backend", "ray", "--address", ray_head.gcs_address,
               *TINY[:-4], "--pruner", "none", *flags, "--budget", "150s"]
    search = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 100
        while not ((workers := descendants_named(ray_head.pid, marker)) and ready()):
            assert search.poll() is None and time.monotonic() < deadline, f"no {marker} worker got going"
            time.sleep(0.5)
        for pid in workers:  # the workers of the search this test started, under the test's own head
            os.kill(pid, signal.SIGKILL)
        out, err = search.communicate(timeout=200)
    finally:
        if search.poll() is None:
            stop(search)
    return search.returncode, out, err


def descendants_named(root: int, marker: str) -> list[int]:
    """PIDs of the processes under ``root`` (this test's own command) whose command line holds ``marker``."""
    parents: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            parents[int(status.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found = []
    for pid in parents:
        ancestor = pid
        while ancestor in parents and ancestor != root and ancestor > 1:
            ancestor = parents[ancestor]
        if ancestor == root and pid != root:
            try:
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    found.append(pid)
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_a_full_training_worker_killed_mid_training_is_failed_and_the_search_ends(
        tmp_path: Path, ray_head: RayHead) -> None:
    # Long full training (2 x 200 epochs) so the task is surely running when its worker is killed.
    seen: list[float] = []

    def two_seconds_in() -> bool:  # asked once the task's worker runs
        seen.append(time.monotonic())
        return seen[-1] - seen[0] >= 2

    returncode, out, err = search_with_killed_workers(
        tmp_path, ray_head, ["--trials", "1", "--top-k", "1", "--epochs-per-stage", "200"], "ray::full_task",
        ready=two_seconds_in)
    assert returncode == 0, err[-3000:]
    study = load_only_study(tmp_path / "runs")
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (full,) = [r for r in tracker.children(study.user_attrs["mlflow_parent_run_id"])
               if r.data.tags.get("phase") == "full"]
    assert full.info.status == "FAILED" and full.data.tags["state"] == "failed", full.data.tags
    assert "Worker" in full.data.tags["error"] or "died" in full.data.tags["error"], full.data.tags["error"]
    assert all(r.info.status != "RUNNING" for r in tracker.descendants(study.user_attrs["mlflow_parent_run_id"]))
    assert "Full training" in out
