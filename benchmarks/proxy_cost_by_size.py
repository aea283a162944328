"""What the default proxy costs as a share of one full training, as the dataset grows.

The proxy trains its tops on the first ``train_images`` (2,000) training images whatever the
dataset's size; full training uses them all. So the share falls as the training split grows,
while the proxy's evaluation and frozen-feature pass grow with the validation split. This
times, at each size and for the same profiles, one proxy trial (the default settings, cache
included, no feature reuse: each profile's lower widths differ) and one full training (the
recipe of ``--stages`` x ``--epochs-per-stage``, from scratch by default as ``validate``
trains), side by side in one process, and prints each ratio and their total per size. With
``--frozen 2,1`` the proxy is timed with each number of frozen layers (one column each).

    python -m benchmarks.proxy_cost_by_size [--dataset textures] [--sizes 8000/2000,32000/8000]
        [--stages 2 --epochs-per-stage 3] [--frozen 2[,1]] [--size 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import sized_data
from search.config import FullTrainConfig, ModelConfig, ProxyConfig
from search.data import load
from search.progressive import train_full
from search.proxy import Candidate, describe, score_candidate
from search.session import resolve_device

PROFILES = [(16, 16, 16, 16, 16), (8, 32, 64, 32, 16), (64, 64, 32, 32, 32)]
FROZEN = "2"  # the search's default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="textures", help="textures, shapes or synthetic (generated to any size)")
    parser.add_argument("--sizes", default="8000/2000,32000/8000", help="TRAIN/VAL,... images")
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--epochs-per-stage", type=int, default=3)
    parser.add_argument("--mode", default="none", help="full training: none (from scratch, as validate) or partial")
    parser.add_argument("--frozen", default=FROZEN, help="frozen layers of the proxy, one or more (K,K,...)")
    parser.add_argument("--size", type=int, default=16, help="image side in pixels (textures, shapes, synthetic)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = resolve_device(args.device)
    frozen = [int(k) for k in args.frozen.split(",")]
    model, proxy = ModelConfig(), ProxyConfig()
    full = FullTrainConfig(mode=args.mode, stages=args.stages, epochs_per_stage=args.epochs_per_stage)
    print(f"{args.dataset}, full {args.mode} {args.stages} x {args.epochs_per_stage} epochs; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, {device}")
    for size in args.sizes.split(","):
        n_train, n_val = (int(n) for n in size.split("/"))
        data = load(sized_data(args.dataset, train=n_train, val=n_val, size=args.size)).to(device)
        print(f"{size}: proxy {describe(proxy, data.x_train.shape[0])}")
        heads = " ".join(f"{f'k={k} s':>8} {'ratio':>6} {'acc':>6}" for k in frozen)
        print(f"{'train/val':<13} {'widths':<18} {heads} {'full s':>8} {'full acc':>8}")
        total_proxy, total_full = dict.fromkeys(frozen, 0.0), 0.0
        for widths in PROFILES:
            cells = []
            for k in frozen:
                start = time.perf_counter()
                proxy_acc = score_candidate(Candidate(widths, k), data, model, proxy, seed=0).score
                cells.append((time.perf_counter() - start, proxy_acc))
            start = time.perf_counter()
            full_acc = train_full(widths, data, model, full, seed=0)[0].val_acc
            full_s = time.perf_counter() - start
            total_full += full_s
            for k, (proxy_s, _) in zip(frozen, cells, strict=True):
                total_proxy[k] += proxy_s
            label = "-".join(map(str, widths))
            print(f"{size:<13} {label:<18} " + " ".join(f"{s:8.2f} {s / full_s:6.3f} {acc:6.3f}" for s, acc in cells)
                  + f" {full_s:8.2f} {full_acc:8.3f}", flush=True)
        print(f"{size:<13} {'all':<18} " + " ".join(f"{total_proxy[k]:8.2f} {total_proxy[k] / total_full:6.3f} {'':6}"
                                                   for k in frozen) + f" {total_full:8.2f}", flush=True)


if __name__ == "__main__":
    main()
