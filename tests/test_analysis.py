"""Checkpoints, the time-boxed analysis and the files it writes."""

from pathlib import Path

import pytest
import torch

from models import ConvNet
from search.analysis import MIN_IMAGES, analyse, load_checkpoint, save_checkpoint, write_analysis
from search.data import TensorData


def net_for(data: TensorData) -> ConvNet:
    return ConvNet((4, 8, 8), in_channels=data.in_channels, image_size=data.image_size,
                   num_classes=data.num_classes, hidden=(16,), max_kernel_norm=2.0, seed=3)


def test_a_checkpoint_rebuilds_the_same_network_with_weights_only_loading(tmp_path: Path, tiny_data: TensorData
                                                                           ) -> None:
    net = net_for(tiny_data)
    path = save_checkpoint(net, tmp_path / "model.pt", {"data": {"dataset": "synthetic"}, "seed": 3})
    payload = torch.load(path, weights_only=True)  # plain values and tensors only
    assert payload["spec"]["widths"] == (4, 8, 8)
    loaded, meta = load_checkpoint(path)
    assert meta == {"data": {"dataset": "synthetic"}, "seed": 3}
    assert loaded.spec() == net.spec()
    x = tiny_data.x_val[:8]
    assert torch.equal(loaded(x), net(x))


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a search checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_the_analysis_fits_its_images_to_the_time_it_is_given(tiny_data: TensorData) -> None:
    net = net_for(tiny_data)
    full = analyse(net, tiny_data, images=100)
    assert full is not None and full.images == 100 and len(full.stats) == 3
    assert analyse(net, tiny_data, images=100, seconds=0.0) is None  # not even MIN_IMAGES fit
    roomy = analyse(net, tiny_data, images=100, seconds=60.0)
    assert roomy is not None and roomy.images == 100
    assert MIN_IMAGES <= 100
    few = analyse(net, tiny_data, images=MIN_IMAGES // 2, seconds=60.0)  # fewer asked for than MIN_IMAGES
    assert few is not None and few.images == MIN_IMAGES // 2  # was skipped as if the time were spent


def test_write_analysis_leaves_statistics_and_pictures(tmp_path: Path, tiny_data: TensorData) -> None:
    net = net_for(tiny_data)
    analysis = analyse(net, tiny_data, images=64)
    assert analysis is not None
    written = write_analysis(net, analysis, tiny_data, tmp_path / "out")
    names = {p.name for p in written}
    assert {"kernels.json", "kernels.csv", "widths.png", "filters_layer1.png"} <= names
    assert {f"kernels_layer{i}.png" for i in (1, 2, 3)} <= names
    assert {f"feature_maps_layer{i}.png" for i in (1, 2, 3)} <= names
    for path in written:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    csv_lines = (tmp_path / "out" / "kernels.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 4 + 8 + 8 and csv_lines[0].startswith("layer,kernel,norm,entropy,mirror_lr")
    summary = analysis.summary()
    assert summary["widths"] == "4-8-8" and [layer["width"] for layer in summary["layers"]] == [4, 8, 8]
    assert summary["learned_widths"] == "-".join(str(s.learned_width) for s in analysis.stats)


def test_a_first_probe_slowed_by_one_time_costs_is_timed_again_before_the_analysis_is_skipped(
        tiny_data: TensorData, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import search.analysis as analysis

    real, calls = analysis.layer_stats, []

    def cold_then_warm(*args, **kwargs):  # the first pass pays 2 s once, like a GPU's first kernels
        calls.append(len(args[1]))
        if len(calls) == 1:
            time.sleep(2.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis, "layer_stats", cold_then_warm)
    net = net_for(tiny_data)
    # timed cold, 32 images at 2 s would leave room for 16 of the 64 needed: the old code gave up
    result = analyse(net, tiny_data, images=100, seconds=3.0)
    assert result is not None and result.images == 100
    assert calls[:2] == [32, 32] and len(calls) == 3  # two probes, then the analysis itself
