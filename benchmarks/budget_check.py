"""Does every ``search run`` end within its budget + 10 %, and with an answer?

Runs the real command (``python -m search.cli run --budget B``, the default space, proxy and
full phase) ``--repeats`` times per budget and backend, each in a fresh store, and prints the
wall time a user waits (process start to exit) against the budget, the trials (finished:
complete or pruned) and those complete (``done``), the candidates trained in full and those
that finished every stage and their analysis, and the winner's accuracy. The last line is the
worst ratio seen.

    python -m benchmarks.budget_check [--budgets 60s,3m] [--repeats 3] [--backends local,ray] [--dataset digits]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from search.config import parse_duration

SLACK = 1.10


def run_once(budget: str, backend: str, dataset: str, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "runs"
        command = [sys.executable, "-m", "search.cli", "run", "--budget", budget, "--backend", backend,
                   "--dataset", dataset, "--seed", str(seed), "--store", str(store)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            return {"wall": wall, "ok": False, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        return {"wall": wall, "ok": True, **facts(store)}


def facts(store: Path) -> dict[str, object]:
    """Trials complete, full candidates whose every stage finished, the winner's accuracy: from the store."""
    import optuna

    storage = f"sqlite:///{store / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    finished = sum(t.state.is_finished() for t in study.trials)
    from search.tracking import Tracker

    tracker = Tracker(f"sqlite:///{store / 'mlflow.db'}", store / "artifacts")
    parent = tracker.get_run(study.user_attrs["mlflow_parent_run_id"])
    rows: list[dict[str, str]] = []
    if "full_results.csv" in {a.path for a in tracker.client.list_artifacts(parent.info.run_id)}:
        path = tracker.download(parent.info.run_id, "full_results.csv", store / "downloaded")
        rows = list(csv.DictReader(open(path)))
    analysed = sum(bool(r["learned_widths"]) for r in rows)
    return {"complete": complete, "finished": finished, "full": len(rows),
            "full_complete": sum(r["state"] == "COMPLETE" for r in rows),
            "analysed": analysed, "winner": parent.data.metrics.get("winner_val_acc")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="60s,3m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="local,ray")
    parser.add_argument("--dataset", default="digits")
    args = parser.parse_args()
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    print(f"{'backend':<7} {'budget':>6} {'run':>3} {'wall s':>7} {'/budget':>7} {'trials':>6} {'done':>5} {'full':>4} "
          f"{'all stages':>10} {'analysed':>8} {'winner':>7}")
    worst = 0.0
    for backend in args.backends.split(","):
        for budget in args.budgets.split(","):
            seconds = parse_duration(budget)
            for repeat in range(args.repeats):
                row = run_once(budget, backend, args.dataset, seed=repeat)
                ratio = float(row["wall"]) / seconds  # type: ignore[arg-type]
                worst = max(worst, ratio)
                if not row["ok"]:
                    print(f"{backend:<7} {budget:>6} {repeat:>3} {row['wall']:7.1f} {ratio:7.3f}  "
                          f"failed: {row['error']}")
                    continue
                winner = f"{row['winner']:.4f}" if row["winner"] is not None else "-"
                print(f"{backend:<7} {budget:>6} {repeat:>3} {row['wall']:7.1f} {ratio:7.3f} {row['finished']:>6} "
                      f"{row['complete']:>5} "
                      f"{row['full']:>4} {row['full_complete']:>10} {row['analysed']:>8} {winner:>7}", flush=True)
    verdict = "within" if worst <= SLACK else "PAST"
    print(f"worst wall/budget {worst:.3f}: {verdict} budget + 10 %")


if __name__ == "__main__":
    main()
