"""Speed-ups of every trial, each against its absence, side by side in one process:

    (1) layout   convolutions in channels-last against contiguous (both forced, whatever
                 ``search.train.memory_format`` would choose on the device), for a full
                 training and for a proxy trial of the same profiles
    (2) reuse    the frozen features of trials that share their lower widths, kept on the data
                 (``TensorData.derived``), against computing them for every trial: a sequence
                 of profiles drawn uniformly from the default space, scored in order
    (3) replicas a proxy trial with the default number of tops against one top: what the
                 extra tops cost (they train one after another over the same features)

Times are medians of runs taken in turns (A B A B ...). A search's sampler concentrates on
good lower widths, so it reuses more often than uniform draws do.

    python -m benchmarks.layout_and_reuse [--dataset textures] [--repeats 3] [--trials 30] [--device cuda --amp]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from unittest import mock

import torch

from benchmarks.common import interleaved_medians
from search.config import DataConfig, ModelConfig, ProxyConfig, SpaceConfig
from search.data import TensorData, load
from search.proxy import Candidate, build_model, score_candidate
from search.session import resolve_device
from search.train import CosineDecay, TrainSettings, fit

PROFILES = [(64, 64, 32, 32, 32), (16, 32, 64, 8, 16), (8, 8, 16, 64, 64)]


@contextmanager
def forced(layout: torch.memory_format) -> Iterator[None]:
    """The layout choice patched to ``layout`` everywhere it is used."""
    def choice(device: torch.device, amp: bool = False) -> torch.memory_format:
        return layout
    with mock.patch("search.train.memory_format", choice), mock.patch("search.proxy.memory_format", choice):
        yield


def in_layout(job: Callable[[], object], layout: torch.memory_format) -> Callable[[], object]:
    def run() -> object:
        with forced(layout):
            return job()
    return run


def full_training(widths: tuple[int, ...], data: TensorData, epochs: int, amp: bool) -> Callable[[], object]:
    def run() -> object:
        net = build_model(Candidate(widths, 0), data, ModelConfig(), seed=0).zero_classifier_()
        return fit(net, data.x_train, data.y_train, data.x_val, data.y_val,
                   TrainSettings(epochs, 128, 2e-3, seed=0, warmup_epochs=0.5, decay=CosineDecay(epochs), amp=amp))
    return run


def proxy_trial(widths: tuple[int, ...], data: TensorData, proxy: ProxyConfig) -> Callable[[], object]:
    def run() -> object:
        data.derived.clear()  # every run computes its features
        return score_candidate(Candidate(widths, 2), data, ModelConfig(), proxy, seed=0)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="textures")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load(DataConfig(dataset=args.dataset)).to(device)
    proxy = ProxyConfig(amp=args.amp)
    print(f"{args.dataset}: {data.x_train.shape[0]} training images {tuple(data.x_train.shape[1:])}; torch "
          f"{torch.__version__} on {device}{' with bfloat16 autocast' if args.amp else ''}, "
          f"{torch.get_num_threads()} threads; proxy {proxy.epochs} epochs x {proxy.replicas} tops\n")

    print("(1) layout: median seconds, contiguous vs channels-last")
    print(f"{'profile':<18} {'job':<22} {'contiguous':>10} {'channels-last':>13} {'ratio':>6}")
    for widths in PROFILES:
        label = "-".join(map(str, widths))
        for name, job in (("full training, 2 ep", full_training(widths, data, 2, args.amp)),
                          ("proxy trial", proxy_trial(widths, data, proxy))):
            times = interleaved_medians({"contiguous": in_layout(job, torch.contiguous_format),
                                         "channels_last": in_layout(job, torch.channels_last)}, args.repeats)
            print(f"{label:<18} {name:<22} {times['contiguous']:10.3f} {times['channels_last']:13.3f} "
                  f"{times['channels_last'] / times['contiguous']:6.2f}", flush=True)

    print(f"\n(2) reuse: {args.trials} proxy trials, profiles drawn uniformly from the default space")
    space = SpaceConfig()
    rng = random.Random(0)
    profiles = [tuple(rng.choice(space.choices(layer)) for layer in range(space.layers)) for _ in range(args.trials)]
    totals: dict[str, float] = {}
    reused = 0
    for mode in ("fresh", "reuse", "fresh", "reuse"):  # in turns; the second pair is the one reported
        data.derived.clear()
        start = time.perf_counter()
        reused = 0
        for widths in profiles:
            if mode == "fresh":
                data.derived.clear()
            reused += score_candidate(Candidate(widths, 2), data, ModelConfig(), proxy, seed=0).features_reused
        totals[mode] = time.perf_counter() - start
    print(f"{len({p[:2] for p in profiles})} distinct lower-width pairs; {reused} of {args.trials} trials reused "
          f"features; {totals['fresh']:.1f} s computing every time, {totals['reuse']:.1f} s reusing "
          f"(ratio {totals['reuse'] / totals['fresh']:.2f})")

    print(f"\n(3) replicas: median seconds of a proxy trial, 1 top vs {proxy.replicas}")
    print(f"{'profile':<18} {'1 top':>8} {f'{proxy.replicas} tops':>8} {'ratio':>6}")
    for widths in PROFILES:
        times = interleaved_medians({"one": proxy_trial(widths, data, replace(proxy, replicas=1)),
                                     "default": proxy_trial(widths, data, proxy)}, args.repeats)
        print(f"{'-'.join(map(str, widths)):<18} {times['one']:8.3f} {times['default']:8.3f} "
              f"{times['default'] / times['one']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
