"""Train the digit classifier that `compress eval` uses as its judge.

Seeded and deterministic; trains on the train split only (with random shifts of up to
one pixel), reports held-out accuracy and writes OUT/config.json, OUT/model.safetensors
and OUT/training.json. Takes one to two minutes on 2 CPU cores.

    python scripts/train_classifier.py --out compress/assets/digit_classifier
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from compress.data.digits import load_digits
from compress.evaluate.classifier import DigitClassifier


def random_shift(images: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels, filling with background (-1)."""
    n, _, h, w = images.shape
    padded = F.pad(images, [max_shift] * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


@torch.inference_mode()
def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return (model(images).argmax(dim=1) == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    train, heldout = load_digits("train"), load_digits("heldout")
    model = DigitClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = -(-len(train.labels) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train.labels), generator=generator)
        for idx in order.split(args.batch_size):
            images = random_shift(train.images[idx], generator)
            loss = F.cross_entropy(model(images), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  "
              f"held-out accuracy {accuracy(model, heldout.images, heldout.labels):.4f}")

    report = {
        "train_accuracy": accuracy(model, train.images, train.labels),
        "heldout_accuracy": accuracy(model, heldout.images, heldout.labels),
        "seconds": round(time.time() - t0, 1),
        **{k: v for k, v in vars(args).items() if k != "out"},
    }
    model.save(args.out)
    (args.out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
