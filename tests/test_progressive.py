import re
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_cli
from search.analysis import load_checkpoint
from search.config import DataConfig, FullTrainConfig, ModelConfig
from search.data import TensorData, load, load_digits
from search.progressive import schedule, stage_multiplier, stage_widths, train_full
from search.tracking import Tracker
from search.train import CosineDecay, EpochMetrics, StopTraining, TrainSettings, evaluate

README = (ROOT / "README.md").read_text()


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
    assert [s.widths for s in result.stages] == seen and model.widths == result.kept_widths
    assert all(len(s.history) == 2 for s in result.stages)
    assert result.stages[-1].trained_params > result.stages[0].trained_params


def test_none_trains_the_target_from_scratch_for_the_same_epochs(tiny_data: TensorData) -> None:
    result, _ = train_full((8, 16, 16), tiny_data, ModelConfig(hidden=(16,)),
                           FullTrainConfig(mode="none", stages=3, epochs_per_stage=2, augment=True), seed=0)
    assert [s.widths for s in result.stages] == [(8, 16, 16)] and len(result.stages[0].history) == 6


def test_stopping_keeps_the_stages_and_epochs_done_so_far(tiny_data: TensorData) -> None:
    def stop_in_second_stage(stage: int, metrics: EpochMetrics) -> None:
        if stage == 1 and metrics.epoch == 1:
            raise StopTraining("out of time")

    result, model = train_full((8, 16, 16), tiny_data, ModelConfig(hidden=(16,)),
                               FullTrainConfig(mode="partial", stages=3, epochs_per_stage=2, batch_size=64), seed=0,
                               on_epoch=stop_in_second_stage)
    assert result.stopped == "out of time" and not result.complete
    assert [len(s.history) for s in result.stages] == [2, 1]


def test_a_run_stopped_mid_stage_keeps_the_best_model_it_measured(tiny_data: TensorData) -> None:
    # With a constant rate and no warm-up, the first epoch after widening is worse than the
    # best one before it here (seeded): what is kept must be the best epoch, not the last.
    def stop_in_last_stage(stage: int, metrics: EpochMetrics) -> None:
        if stage == 2 and metrics.epoch == 1:
            raise StopTraining("out of time")

    result, model = train_full((8, 16, 16), tiny_data, ModelConfig(hidden=(16,)),
                               FullTrainConfig(mode="partial", stages=3, epochs_per_stage=2, batch_size=64, lr=0.003,
                                               warmup_epochs=0, decay="constant"),
                               seed=0, on_epoch=stop_in_last_stage)
    accuracies = [m.val_acc for stage in result.stages for m in stage.history]
    assert result.val_acc == max(accuracies) > accuracies[-1]  # the last epoch was not the best here
    assert model.widths == result.kept_widths == result.stages[result.kept_stage].widths
    _, measured = evaluate(model, tiny_data.x_val, tiny_data.y_val, 64)
    assert measured == result.val_acc  # the weights returned are the ones that were measured


def test_one_cosine_schedule_spans_every_stage_and_ends_near_zero() -> None:
    config = FullTrainConfig(mode="partial", stages=3, epochs_per_stage=2, lr=1.0, warmup_epochs=0.5)
    plan = schedule((8, 16), config)
    total = sum(epochs for _, epochs in plan)
    steps_per_epoch = 10
    rates, before = [], 0
    for _, epochs in plan:
        settings = TrainSettings(epochs, 32, config.lr, warmup_epochs=config.warmup_epochs,
                                 decay=CosineDecay(total, before))
        rates.append([settings.lr_at(step, steps_per_epoch) for step in range(epochs * steps_per_epoch)])
        before += epochs
    assert rates[0][-1] > rates[1][-1] > rates[2][-1] and rates[2][-1] < 0.01  # decays across the stages
    assert all(stage[0] < 0.2 for stage in rates[1:])  # each stage warms up again from a low rate
    peaks = [max(stage) for stage in rates]
    assert peaks[0] > peaks[1] > peaks[2]  # and reaches the decayed rate, not the first stage's peak


def test_schedule_of_each_mode() -> None:
    assert schedule((8, 16), FullTrainConfig(mode="net2net", stages=3, epochs_per_stage=2)) == [
        ((2, 4), 2), ((4, 8), 2), ((8, 16), 2)
    ]
    assert schedule((8, 16), FullTrainConfig(mode="none", stages=3, epochs_per_stage=2)) == [((8, 16), 6)]
    # epochs, when set, replace epochs_per_stage: all of them at once, or split over the stages
    assert schedule((8, 16), FullTrainConfig(mode="none", stages=3, epochs_per_stage=2, epochs=5)) == [((8, 16), 5)]
    assert schedule((8, 16), FullTrainConfig(mode="partial", epochs=7)) == [((4, 8), 3), ((8, 16), 4)]


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
    measured = [m.value for run in stages for m in tracker.client.get_metric_history(run.info.run_id, "val_acc")]
    assert parent.data.metrics["val_acc"] == max(measured)  # the best model measured is the one kept

    # The trained weights and the analysis are on the parent run; inspect redraws them.
    artifacts = {a.path for a in tracker.client.list_artifacts(parent.info.run_id, "analysis")}
    assert {"analysis/kernels.json", "analysis/widths.png", "analysis/filters_layer1.png",
            "analysis/kernels_layer3.png", "analysis/feature_maps_layer3.png"} <= artifacts
    assert [a.path for a in tracker.client.list_artifacts(parent.info.run_id, "model")] == ["model/model.pt"]
    learned = parent.data.params["learned_widths"].split("-")
    assert len(learned) == 3 and all(0 <= int(w) <= t for w, t in zip(learned, (8, 16, 16), strict=True))
    assert "Kernels (ablations on" in result.stdout

    inspected = run_cli(["inspect", parent.info.run_id, "--out", "look"], cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    assert {"kernels.json", "kernels.csv", "widths.png", "kernels_layer2.png"} <= {
        p.name for p in (tmp_path / "look").iterdir()}
    assert f"learned widths {parent.data.params['learned_widths']}" in inspected.stdout  # same model, same data

    # export writes the logged model to a file that load_checkpoint reads, checked on the data.
    assert f"Keep it: search export {parent.info.run_id}" in result.stdout
    exported = run_cli(["export", parent.info.run_id, "--out", "keep/winner.pt"], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    logged = parent.data.metrics["val_acc"]
    assert f"on the run's validation split (logged {logged:.4f}); written to keep/winner.pt" in exported.stdout
    model, meta = load_checkpoint(tmp_path / "keep" / "winner.pt")
    data = load(DataConfig(dataset="synthetic"), seed=0)
    assert model.widths == (8, 16, 16) and meta["target"] == "8-16-16" and meta["data"]["dataset"] == "synthetic"
    assert data.normalisation is not None and meta["input_mean"] == list(data.normalisation.mean)
    assert meta["input_std"] == list(data.normalisation.std)
    one_image = 1 / len(data.y_val)  # the layout may differ from training's: a rounding may flip one argmax
    assert evaluate(model, data.x_val, data.y_val, 256)[1] == pytest.approx(logged, abs=1.5 * one_image)
    # The README's loading snippet, run on images as the loader scaled them (here: undone from x_val).
    snippet = re.search(r"```python\n(import torch\nfrom search import load_checkpoint\n.*?)```", README, re.S)
    assert snippet is not None
    scope = {"images": data.x_val * torch.tensor(meta["input_std"]).view(1, -1, 1, 1)
             + torch.tensor(meta["input_mean"]).view(1, -1, 1, 1)}
    exec(snippet.group(1).replace("runs/models/RUN_ID.pt", str(tmp_path / "keep" / "winner.pt")), scope)
    accuracy = (scope["logits"].argmax(dim=1) == data.y_val).float().mean().item()
    assert accuracy == pytest.approx(logged, abs=1.5 * one_image)
    again = run_cli(["export", parent.info.run_id, "--out", "keep/winner.pt"], cwd=tmp_path)
    assert again.returncode == 2 and "'keep/winner.pt' exists" in again.stderr  # nothing overwritten

    stage_id = stages[0].info.run_id
    for args, message in (
        (["export", stage_id], f"run '{stage_id}' has no logged model"),
        (["inspect", "0123456789abcdef"], "run '0123456789abcdef' is not in the tracking store"),
        (["inspect", stage_id], f"run '{stage_id}' has no logged model"),
        (["inspect", stage_id, "--store", "nowhere"], "no tracking store in 'nowhere'"),
        (["inspect", stage_id, "--lazy-threshold", "2"], "lazy threshold 2.0 must be"),
    ):
        failed = run_cli(args, cwd=tmp_path)
        assert failed.returncode == 2 and message in failed.stderr and "Traceback" not in failed.stderr, args
        assert len(failed.stderr.strip().splitlines()) == 1


def test_a_narrow_layer_no_longer_collapses_full_training_to_chance() -> None:
    # With a He-scaled classifier this profile ended at 0.086 (chance) with seed 1 on digits.
    data = load_digits()
    result, _ = train_full((64, 16, 64, 4, 16), data, ModelConfig(), FullTrainConfig(mode="none", stages=1,
                                                                                    epochs_per_stage=12), seed=1)
    assert result.val_acc > 0.9
