"""Every user mistake is one line on stderr, exit code 2, no traceback and nothing written."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, run_cli


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--dataset", "imagenet"], "'imagenet'"),
        (["--width-choices", "8,x,32"], "'x'"),
        (["--width-choices", "8,0"], "'0'"),
        (["--width-range", "8:abc:8"], "'abc'"),
        (["--budget", "abc"], "'abc'"),
        (["--frozen", "5"], "frozen layers 5"),
        (["--layers", "3", "--frozen", "3"], "frozen layers 3"),
        (["--frozen", "two"], "'two'"),
        (["--trials", "0"], "trials 0"),
        (["--trials", "many"], "'many'"),
        (["--dataset", "cifar10", "--data-dir", "no/such/dir"], "'no/such/dir'"),
        (["--dataset", "cifar10"], "--data-dir"),
        (["--pruner", "sometimes"], "'sometimes'"),
        (["--config", "missing.toml"], "'missing.toml'"),
        (["--resume"], "nothing to resume"),
        (["--tracking-uri", "not a uri"], "'not a uri'"),
        (["--store", "a_file/store"], "'a_file/store'"),
        (["--no-such-flag"], "--no-such-flag"),
        (["train", "--progressive", "magic"], "'magic'"),
        (["train", "--widths", "8-x"], "'x'"),
        (["train", "--dataset", "mnist", "--data-dir", "nope"], "'nope'"),
        (["train", "--stages", "0"], "stages 0"),
        (["train", "--full-epochs", "0"], "full-training epochs 0"),
        (["train", "--full-epochs", "9", "--epochs-per-stage", "3"], "--full-epochs 9 and --epochs-per-stage 3"),
        (["--backend", "spark"], "'spark'"),
        (["--address", "auto"], "--address needs --backend ray"),
        (["--backend", "ray", "--address", "http://head:8265"], "'http://head:8265'"),
        (["--backend", "ray", "--gpus-per-trial", "1.5"], "gpus per trial 1.5"),
        (["--scorer", "magic"], "'magic'"),
        (["--top-k", "-1"], "top-k -1"),
        (["--full-fraction", "1"], "full fraction 1.0"),
        (["train", "--lazy-threshold", "2"], "lazy threshold 2.0"),
        (["train", "--warmup-epochs", "-1"], "warm-up epochs -1.0"),
        (["train", "--decay", "linear"], "learning-rate decay 'linear'"),
        (["--width-choices", ""], "width '' names no value"),
        (["--objective", "cheap"], "objective 'cheap'"),
        (["--cost", "watts"], "cost 'watts'"),
        (["--objective", "pareto", "--scorer", "synflow"], "scorer 'synflow' gives no accuracy"),
        (["--max-params", "0"], "max params 0"),
        (["--proxy-images", "many"], "'many' is neither a count of images nor 'all'"),
        (["--proxy-images", "0"], "proxy training images (a count or 'all') 0"),
        (["--width-weight", "-0.5"], "proxy width_weight -0.5 must be a number >= 0"),
        (["--frozen-width-weight", "-1"], "proxy frozen_width_weight -1.0 must be a number >= 0"),
        (["--last-frozen-width-weight", "-1"], "proxy last_frozen_width_weight -1.0 must be a number >= 0"),
        (["--max-latency-ms", "-1"], "max latency -1.0 ms"),
        (["--proxy-batch-size", "0"], "proxy batch size 0"),
        (["--proxy-lr", "-1"], "proxy learning rate -1.0 must be positive"),
        (["train", "--batch-size", "0"], "full training batch size 0"),
        (["--max-params", "1000"], "the narrowest, 4-4-4-4-4, has params"),
    ],
)
def test_bad_input_is_a_one_line_error_and_writes_nothing(tmp_path: Path, args: list[str], named: str) -> None:
    (tmp_path / "a_file").write_text("")
    command = ["train", "--widths", "8-16", *args[1:]] if args[0] == "train" else ["run", *args]
    result = run_cli(command, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("search: error: "), result.stderr
    assert named in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.parametrize("command", [["run", "--budget", "30s"], ["train", "--widths", "8-16"], ["validate"],
                                     ["inspect", "0123abcd"], ["export", "0123abcd"]])
def test_an_unreachable_tracking_server_is_one_line_in_seconds(tmp_path: Path, command: list[str]) -> None:
    with socket.socket() as closed:  # a loopback port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    result = run_cli([*command, "--tracking-uri", f"http://127.0.0.1:{port}"], cwd=tmp_path)
    assert time.monotonic() - started < 20  # MLflow's own client retries for minutes
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"tracking server http://127.0.0.1:{port} is not reachable" in lines[0]
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []


def test_unwritable_store_is_named(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through file modes; nobody can create files in /proc/1
        locked = Path("/proc/1")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
    store = str(locked / "runs")
    result = run_cli(["run", "--store", store], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"search: error: store {store!r} is not writable"
    assert not (locked / "runs").exists()


@pytest.mark.parametrize("command", [[], ["run"], ["train"], ["validate"], ["inspect"], ["export"], ["submit"],
                                     ["jobs"], ["ui"]])
def test_help_is_complete(tmp_path: Path, command: list[str]) -> None:
    from search.cli import build_parser

    result = run_cli([*command, "--help"], cwd=tmp_path)
    assert result.returncode == 0
    parser = build_parser()
    if command:
        parser = parser._subparsers._group_actions[0].choices[command[0]]  # type: ignore[union-attr]
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in result.stdout
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings} has no help"
    assert parser.description


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "--address", "http://127.0.0.1:9"], "give the search to run after --"),
        (["submit", "--address", "http://127.0.0.1:9", "--", "run", "--budgte", "1m"], "--budgte"),
        (["submit", "--address", "head:8265", "--", "run"], "'head:8265' is not a URL"),
        (["submit", "--address", "http://127.0.0.1:9", "--working-dir", "nowhere", "--", "run"],
         "working dir 'nowhere' is not a checkout"),
        (["jobs", "status", "raysubmit_1"], "no Ray cluster given"),
        (["jobs", "status", "raysubmit_1", "--address", "http://127.0.0.1:9"], "cannot reach the Ray dashboard"),
    ],
)
def test_submit_and_jobs_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    env_free = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    result = subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=tmp_path, capture_output=True,
                            text=True, env={**env_free, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_ui_without_a_store_is_an_error(tmp_path: Path) -> None:
    result = run_cli(["ui", "--store", "nowhere"], cwd=tmp_path)
    assert result.returncode == 2 and "no tracking store in 'nowhere'" in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_store_on_loopback(tmp_path: Path) -> None:
    from search.tracking import Tracker

    (tmp_path / "runs").mkdir()
    Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", tmp_path / "runs" / "artifacts")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "ui", "--port", str(port)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the MLflow UI did not come up in 90 s"
                time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=search"
        with urllib.request.urlopen(url, timeout=5) as response:
            experiment = json.loads(response.read())["experiment"]
        assert experiment["name"] == "search"
    finally:
        process.terminate()  # only the server this test started, by its PID
        process.wait(timeout=30)
    first_line = process.stdout.readline() if process.stdout else ""
    # The link opens the training runs, not MLflow 3's GenAI overview.
    assert f"http://127.0.0.1:{port}/#/experiments/{experiment['experiment_id']}/runs" in first_line


@pytest.mark.parametrize(("flag", "images"), [([], 2000), (["--proxy-images", "all"], None),
                                              (["--proxy-images", "500"], 500)])
def test_proxy_images_flag(flag: list[str], images: int | None) -> None:
    from search.cli import build_parser, config_from_args

    for command in ("run", "validate"):
        assert config_from_args(build_parser().parse_args([command, *flag])).proxy.train_images == images


def test_proxy_batch_size_and_lr_flags_leave_full_training_alone() -> None:
    """--batch-size / --lr set both; --proxy-batch-size / --proxy-lr the proxy's alone, so a
    validate that tries another proxy batch keeps its cached full trainings."""
    from search.cli import build_parser, config_from_args

    def batch_and_lr(*flags: str) -> tuple[int, float, int, float]:
        config = config_from_args(build_parser().parse_args(["validate", *flags]))
        return config.proxy.batch_size, config.proxy.lr, config.full.batch_size, config.full.lr

    assert batch_and_lr("--batch-size", "64", "--lr", "1e-3") == (64, 1e-3, 64, 1e-3)
    assert batch_and_lr("--proxy-batch-size", "512", "--proxy-lr", "4e-3") == (512, 4e-3, 128, 2e-3)
    assert batch_and_lr("--batch-size", "64", "--proxy-batch-size", "256") == (256, 2e-3, 64, 2e-3)


def test_full_epochs_flag_and_epochs_per_stage_over_a_settings_file(tmp_path: Path) -> None:
    from search.cli import build_parser, config_from_args

    def full(*flags: str) -> tuple[int, str]:
        config = config_from_args(build_parser().parse_args(list(flags))).full
        return config.total_epochs, config.describe()

    for command in ("run", "train", "validate"):
        widths = ["--widths", "8-16"] if command == "train" else []
        assert full(command, *widths, "--full-epochs", "20") == (20, "from scratch, 20 epochs, cosine rate")
    widening = full("run", "--full-epochs", "7", "--progressive", "partial")
    assert widening == (7, "partial widening, 3+4 epochs, cosine rate")
    settings = tmp_path / "s.toml"
    settings.write_text("[full]\nepochs = 20\n")
    assert full("run", "--config", str(settings))[0] == 20
    assert full("run", "--config", str(settings), "--stages", "2", "--epochs-per-stage", "3")[0] == 6  # the flag wins
