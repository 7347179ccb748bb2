"""A small CNN that recognises 16x16 digits: the judge for the toy family's samples.

Its logits give `class_accuracy` (does a sample show the digit it was conditioned on) and
its penultimate activations are the feature space of the Frechet distance, the way FID
uses Inception's pool features. The shipped weights come from `scripts/train_classifier.py`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from compress.io import load_safetensors, read_json, write_json
from compress.models.registry import assets_dir

CLASSIFIER_ASSET = "digit_classifier"
WEIGHTS_FILE = "model.safetensors"


class DigitClassifier(nn.Module):
    """Two conv stages (16 -> 8 -> 4 pixels), a `feature_dim` hidden layer, and a linear head."""

    def __init__(self, channels: int = 32, feature_dim: int = 64, num_classes: int = 10):
        super().__init__()
        self.channels = channels
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        wide = 2 * channels
        self.body = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, wide, 3, padding=1), nn.ReLU(),
            nn.Conv2d(wide, wide, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(wide * 4 * 4, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, 16, 16) in [-1, 1] -> (N, feature_dim) penultimate activations."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"channels": self.channels, "feature_dim": self.feature_dim, "num_classes": self.num_classes}
        write_json(folder / "config.json", config)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))

    @classmethod
    def load(cls, folder: str | Path) -> DigitClassifier:
        folder = Path(folder)
        model = cls(**read_json(folder / "config.json"))
        model.load_state_dict(load_safetensors(folder / WEIGHTS_FILE))
        return model.eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def load_classifier() -> DigitClassifier:
    """The shipped classifier (loaded once per process: every evaluation uses the same judge)."""
    return DigitClassifier.load(assets_dir(CLASSIFIER_ASSET))


@torch.inference_mode()
def classify(images: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted labels (N,) and penultimate features (N, D) of images in [-1, 1], by the shipped classifier."""
    model = load_classifier()
    labels, features = [], []
    for chunk in images.split(batch_size):
        feats = model.features(chunk.float())
        features.append(feats)
        labels.append(model.head(feats).argmax(dim=1))
    return torch.cat(labels), torch.cat(features)
