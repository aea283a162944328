from pathlib import Path

import pytest

from conftest import run_cli
from search.config import FullTrainConfig, ModelConfig
from search.data import TensorData
from search.progressive import stage_multiplier, stage_widths, train_full
from search.tracking import Tracker


def test_stage_schedule_halves_back_from_the_target() -> None:
    assert stage_widths((16, 32, 64, 64, 128), 4) == [
        (2, 4, 8, 8, 16), (4, 8, 16, 16, 32), (8, 16, 32, 32, 64), (16, 32, 64, 64, 128)
    ]
    assert stage_widths((3, 10), 3) == [(1, 2), (2, 5), (3, 10)]  # never below one channel
    assert [stage_multiplier(s, 4) for s in range(4)] == [0.125, 0.25, 0.5, 1.0]


@pytest.mark.parametrize("mode", ["partial", "net2net"])
def test_progressive_training_widens_stage_by_stage(tiny_data: TensorData, mode: str) -> None:
    seen = []
    result, model = train_full((8, 16, 16), tiny_data, ModelConfig(hidden=(16,)),
                               FullTrainConfig(mode=mode, stages=3, epochs_per_stage=2, batch_size=64), seed=0,
                               on_stage=lambda stage, m: seen.append(m.widths))
    assert seen == [(2, 4, 4), (4, 8, 8), (8, 16, 16)]
    assert [s.widths for s in result.stages] == seen and model.widths == (8, 16, 16)
    assert all(len(s.history) == 2 for s in result.stages)
    assert result.stages[-1].trained_params == model.trained_params() > result.stages[0].trained_params


def test_none_trains_the_target_from_scratch_for_the_same_epochs(tiny_data: TensorData) -> None:
    result, _ = train_full((8, 16, 16), tiny_data, ModelConfig(hidden=(16,)),
                           FullTrainConfig(mode="none", stages=3, epochs_per_stage=2, augment=True), seed=0)
    assert [s.widths for s in result.stages] == [(8, 16, 16)] and len(result.stages[0].history) == 6


@pytest.mark.slow
def test_search_train_logs_a_child_run_per_stage(tmp_path: Path) -> None:
    result = run_cli(["train", "--widths", "8-16-16", "--dataset", "synthetic", "--stages", "3",
                      "--epochs-per-stage", "2", "--progressive", "net2net", "--device", "cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "net2net training of 8-16-16: val_acc" in result.stdout
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = tracker.client.search_runs([tracker.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.data.tags["phase"] == "full"
    stages = sorted(tracker.children(parent.info.run_id), key=lambda r: float(r.data.tags["stage"]))
    assert [r.data.tags["stage"] for r in stages] == ["0.25", "0.5", "1"]
    assert [r.data.params["widths"] for r in stages] == ["2-4-4", "4-8-8", "8-16-16"]
    for run in stages:
        assert run.info.status == "FINISHED" and int(run.data.params["trained_params"]) > 0
        for metric in ("epoch_time_s", "images_per_s", "train_loss", "val_acc"):
            assert [m.step for m in tracker.client.get_metric_history(run.info.run_id, metric)] == [1, 2]
    assert parent.data.metrics["val_acc"] == stages[-1].data.metrics["val_acc"]
