"""Our epoch loop (search.train.fit) / a bare hand-written PyTorch loop, same model and data.

Both train the same network from the same weights with Adam for the same epochs and
evaluate once per epoch. Target: ratio <= 1.05.

    python -m benchmarks.loop_overhead [--epochs 3] [--repeats 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F

from benchmarks.common import interleaved_medians
from models import ConvNet
from search.data import load_digits
from search.session import resolve_device
from search.train import TrainSettings, fit

BATCH = 128


def bare_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor,
              epochs: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    accuracy = 0.0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), BATCH):
            index = order[start : start + BATCH]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(xv).argmax(1) == yv).float().mean().item()
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()

    device = resolve_device(args.device)
    data = load_digits().to(device)
    template = ConvNet((10, 20, 64, 64, 128), data.in_channels, data.image_size, data.num_classes, seed=0).to(device)
    settings = TrainSettings(epochs=args.epochs, batch_size=BATCH, lr=2e-3)
    x, y, xv, yv = data.x_train, data.y_train, data.x_val, data.y_val
    seconds = interleaved_medians(
        {
            "ours": lambda: fit(copy.deepcopy(template), x, y, xv, yv, settings),
            "bare": lambda: bare_loop(copy.deepcopy(template), x, y, xv, yv, args.epochs),
        },
        args.repeats,
    )
    print(f"digits, 10-20-64-64-128, {args.epochs} epochs, median of {args.repeats}, "
          f"{torch.get_num_threads()} threads, {device}")
    print(f"ours {seconds['ours']:.3f} s  bare {seconds['bare']:.3f} s  ratio {seconds['ours'] / seconds['bare']:.3f}")


if __name__ == "__main__":
    main()
