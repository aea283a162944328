"""Proxy trial time / full training time of the same candidate for the same epochs.

The proxy freezes the lower 3 of 5 conv layers at random init, computes their output
once (counted in its time) and trains the top; full training trains all 5 layers.
Target on the 2-core CPU: ratio <= 0.2.

    python -m benchmarks.proxy_vs_full [--epochs 4] [--repeats 3] [--dataset digits] [--device cuda --amp]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import interleaved_medians
from search.config import DataConfig, ModelConfig, ProxyConfig
from search.data import load
from search.proxy import Candidate, build_model, score_candidate
from search.session import resolve_device

PROFILES = [(10, 20, 64, 64, 128), (64, 64, 64, 64, 64), (128, 96, 64, 48, 32)]
FROZEN = 3


def top_share_of_conv_macs(widths: tuple[int, ...], data: object, model: ModelConfig) -> float:
    """Share of the conv multiply-adds above the frozen layers: the floor of the ratio."""
    net = build_model(Candidate(widths, FROZEN), data, model, seed=0)  # type: ignore[arg-type]
    macs = []
    for index, conv in enumerate(net.convs()):
        _, height, width = net.feature_shape(index)  # the conv keeps its input's size (padding 1)
        macs.append(conv.weight.numel() * height * width)
    return sum(macs[FROZEN:]) / sum(macs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    args = parser.parse_args()

    data = load(DataConfig(dataset=args.dataset)).to(resolve_device(args.device))
    proxy = ProxyConfig(epochs=args.epochs, amp=args.amp, replicas=1)  # one network each side
    model = ModelConfig()
    print(f"{args.dataset}: {len(data.y_train)} train images, {args.epochs} epochs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}{' amp' if args.amp else ''}")
    print(f"{'widths':<20} {'proxy s':>8} {'full s':>8} {'ratio':>6} {'top MACs':>8} {'proxy acc':>9} {'full acc':>8}")
    for widths in PROFILES:
        scores: dict[str, float] = {}

        def run(frozen: int, key: str, widths: tuple[int, ...] = widths, scores: dict[str, float] = scores) -> None:
            scores[key] = score_candidate(Candidate(widths, frozen), data, model, proxy, seed=0).score

        seconds = interleaved_medians({"proxy": lambda: run(FROZEN, "proxy"), "full": lambda: run(0, "full")},
                                      args.repeats)
        ratio = seconds["proxy"] / seconds["full"]
        label = "-".join(map(str, widths))
        share = top_share_of_conv_macs(widths, data, model)
        print(f"{label:<20} {seconds['proxy']:8.2f} {seconds['full']:8.2f} {ratio:6.3f} {share:8.2f} "
              f"{scores['proxy']:9.3f} {scores['full']:8.3f}")


if __name__ == "__main__":
    main()
