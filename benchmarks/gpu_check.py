"""The CUDA paths for real: ``search run --amp`` locally and on Ray with fractional GPUs.

Runs the real command once per setting, each in a fresh store, while ``nvidia-smi`` samples
the GPU's utilisation and memory every 0.5 s, then reads the MLflow store back: training
images/s per proxy trial (median over its epochs) and per full-training stage, the trials
(finished / complete) and the winner. Needs a CUDA GPU and ``nvidia-smi``; never run in CI.

    python -m benchmarks.gpu_check [--budget 90s] [--settings local,ray] [--dataset digits] [--config FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "local": ["--amp"],
    "ray": ["--amp", "--backend", "ray", "--gpus-per-trial", "0.5", "--max-concurrent", "2"],
}


def sample_gpu(log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                             "-lms", "500"], stdout=open(log, "wb"), stderr=subprocess.DEVNULL)


def gpu_summary(log: Path) -> str:
    rows = [line.split(",") for line in log.read_text().splitlines() if line.count(",") == 1]
    util = [float(u) for u, _ in rows]
    memory = [float(m) for _, m in rows]
    if not util:
        return "no samples"
    busy = [u for u in util if u > 0]
    return (f"GPU utilisation mean {statistics.mean(util):.0f} % (mean {statistics.mean(busy) if busy else 0:.0f} % "
            f"while busy, {len(busy)}/{len(util)} samples busy), max memory {max(memory):,.0f} MiB")


def throughput(store: Path) -> list[str]:
    """One line per proxy trial and per full-training stage: median images/s over its epochs."""
    from search.tracking import Tracker

    tracker = Tracker(f"sqlite:///{store / 'mlflow.db'}", store / "artifacts")
    lines = []
    for run in sorted(tracker.client.search_runs([tracker.experiment_id]), key=lambda r: r.info.start_time):
        history = tracker.client.get_metric_history(run.info.run_id, "images_per_s")
        if not history:
            continue
        rates = [m.value for m in history]
        lines.append(f"  {run.info.run_name:<28} {run.data.params.get('widths', '?'):<22} "
                     f"{len(rates):>2} epochs  median {statistics.median(rates):>9,.0f} img/s  "
                     f"max {max(rates):>9,.0f}  {run.info.status}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="90s")
    parser.add_argument("--settings", default="local,ray")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--config", type=Path, help="a settings file for every run (e.g. a bigger synthetic set)")
    args = parser.parse_args()
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    print(subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip())
    for setting in args.settings.split(","):
        with tempfile.TemporaryDirectory() as folder:
            store, log = Path(folder) / "runs", Path(folder) / "gpu.csv"
            command = [sys.executable, "-m", "search.cli", "run", "--budget", args.budget, "--dataset", args.dataset,
                       "--store", str(store), *SETTINGS[setting]]
            if args.config:
                command += ["--config", str(args.config)]
            sampler = sample_gpu(log)
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - start
            sampler.terminate()
            sampler.wait()
            print(f"\n== {setting}: {' '.join(command[3:])}\nexit {done.returncode}, {wall:.1f} s; {gpu_summary(log)}")
            if done.returncode != 0:
                print(done.stderr[-3000:])
                continue
            print("\n".join(done.stdout.strip().splitlines()[-14:]))
            print("\n".join(throughput(store)))


if __name__ == "__main__":
    main()
