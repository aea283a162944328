"""Slimming: lazy kernels removed exactly, outputs kept, the pipeline measured and recorded."""

import copy
from pathlib import Path

import pytest
import torch

from conftest import run_cli, trained_run
from models import ConvNet
from models.kernels import layer_stats, lazy_drop
from models.slim import slim, zero_kernels_
from search.analysis import load_checkpoint
from search.config import FullTrainConfig
from search.data import make_synthetic
from search.slim import final_rate, fine_tune_rate, slim_model
from search.tracking import Tracker
from search.train import TrainSettings, evaluate, fit


def test_slimming_hand_zeroed_kernels_removes_exactly_those_and_keeps_the_outputs() -> None:
    net = ConvNet((6, 5, 4), in_channels=3, image_size=8, num_classes=3, hidden=(7,), seed=1)
    dropped = [[1, 4], [], [0, 3]]
    zero_kernels_(net, dropped)
    keep = [[k for k in range(w) if k not in d] for w, d in zip(net.widths, dropped, strict=True)]
    small = slim(net, keep)
    assert small.widths == (4, 5, 2) and small.pool_after == net.pool_after
    x = torch.randn(16, 3, 8, 8)
    assert torch.allclose(small(x), net(x), atol=1e-6)
    # The kept kernels are the same tensors, read from the kept input channels.
    assert torch.equal(small.convs()[1].weight, net.convs()[1].weight[:, [0, 2, 3, 5]])
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError, match="layer 2 keeps \\[\\]"):
        slim(net, [[0], [], [0]])


def test_the_pipeline_removes_the_lazy_kernels_as_the_ablation_measured_them() -> None:
    torch.manual_seed(0)
    data = make_synthetic(256, 128, num_classes=4, image_size=8, seed=0)
    net = ConvNet((8, 8, 8), data.in_channels, data.image_size, data.num_classes, hidden=(16,), seed=0)
    fit(net.zero_classifier_(), data.x_train, data.y_train, data.x_val, data.y_val,
        TrainSettings(epochs=3, batch_size=64, lr=3e-3))
    zero_kernels_(net, [[2, 5], [], [7]])
    stats = layer_stats(net, data.x_val, data.y_val, threshold=0.01)
    lazy = [[k for k, is_lazy in enumerate(s.lazy) if is_lazy] for s in stats]
    assert {2, 5} <= set(lazy[0]) and 7 in lazy[2]  # a zeroed kernel changes nothing

    small, report = slim_model(net, data, stats, epochs=0, lr=1e-3, batch_size=64)
    keep = [s.kept for s in stats]
    assert small.widths == tuple(len(k) for k in keep) == report.slim_widths
    assert all(len(k) == max(1, s.width - len(d)) for k, s, d in zip(keep, stats, lazy, strict=True))
    # Removing the lazy kernels is zeroing them all at once: the same accuracy, the same logits.
    ablated = zero_kernels_(copy.deepcopy(net), [[k for k in range(s.width) if k not in kept]
                                                 for s, kept in zip(stats, keep, strict=True)])
    assert report.removed_acc == evaluate(ablated, data.x_val, data.y_val, 64)[1] == report.tuned_acc
    assert report.val_acc - report.removed_acc == pytest.approx(lazy_drop(net, stats, data.x_val, data.y_val))
    assert torch.allclose(small(data.x_val), ablated(data.x_val), atol=1e-5)
    assert report.slim_params < report.params and report.slim_macs < report.macs and report.epochs == 0


def test_the_recipes_final_rate_is_near_zero_so_fine_tuning_uses_half_its_peak() -> None:
    assert final_rate(FullTrainConfig(decay="constant", lr=2e-3)) == 2e-3
    rate = final_rate(FullTrainConfig(lr=2e-3, stages=2, epochs_per_stage=6))
    assert 0 < rate < 2e-3 * 0.05  # cosine to zero over 12 epochs: the start of the 12th
    assert fine_tune_rate(FullTrainConfig(lr=2e-3)) == 1e-3


@pytest.mark.slow
def test_search_slim_records_a_child_run_with_the_slimmed_weights(tmp_path: Path) -> None:
    run_id = trained_run(tmp_path)
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    result = run_cli(["slim", run_id, "--fine-tune-epochs", "1", "--device", "cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Slimmed: lazy kernels removed, 1 epochs of fine-tuning" in result.stdout

    (child,) = [r for r in tracker.children(run_id) if r.data.tags.get("phase") == "slim"]
    assert child.info.status == "FINISHED" and child.data.params["widths"] == "8-16-16"
    slim_widths = tuple(int(w) for w in child.data.params["slim_widths"].split("-"))
    assert all(1 <= s <= w for s, w in zip(slim_widths, (8, 16, 16), strict=True))
    for metric in ("val_acc", "removed_acc", "tuned_acc", "slim_params", "slim_macs", "slim_latency_ms"):
        assert metric in child.data.metrics
    assert [m.step for m in tracker.client.get_metric_history(child.info.run_id, "train_loss")] == [1]
    assert [a.path for a in tracker.client.list_artifacts(child.info.run_id, "model")] == ["model/model.pt"]
    assert tracker.get_run(run_id).data.tags["slim_run_id"] == child.info.run_id
    # The slimmed model is the one to keep: export writes it, its accuracy the fine-tuned one.
    assert f"keep them: search export {child.info.run_id}" in " ".join(result.stdout.split())
    exported = run_cli(["export", child.info.run_id, "--out", "slim.pt"], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert f"(logged {child.data.metrics['tuned_acc']:.4f})" in exported.stdout
    model, meta = load_checkpoint(tmp_path / "slim.pt")
    assert model.widths == slim_widths and meta["val_acc"] == child.data.metrics["tuned_acc"]

    failed = run_cli(["slim", run_id, "--fine-tune-lr", "0"], cwd=tmp_path)
    assert failed.returncode == 2 and "fine-tune learning rate 0.0 must be positive" in failed.stderr


def test_search_run_with_slim_slims_the_winner(tmp_path: Path) -> None:
    import time

    from conftest import tiny_config
    from search.budget import Budget
    from search.study import run_search

    config = tiny_config(tmp_path / "runs", trials=2, top_k=1, full_fraction=0.5, slim=True)
    result = run_search(config, Budget(120, time.monotonic()))
    assert result.slim is not None and result.winner is not None
    assert result.slim.widths == result.winner.widths and len(result.slim.slim_widths) == 3
    tracker = Tracker(config.store.mlflow_uri)
    parent = tracker.get_run(result.parent_run_id)
    assert parent.data.metrics["slim_tuned_acc"] == result.slim.tuned_acc
    assert tracker.get_run(result.slim.run_id).data.tags["slimmed_run"] == result.winner.run_id
