"""The toy model's stand-in for a text encoder: a learned table of token embeddings per digit class."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from compress.models.toy import NUM_CLASSES


class ClassConditioner(nn.Module):
    """Stand-in for a text encoder: class id -> `tokens` embeddings of size `dim`."""

    def __init__(self, num_classes: int = NUM_CLASSES, tokens: int = 4, dim: int = 32):
        super().__init__()
        self.num_classes = num_classes
        self.tokens = tokens
        self.dim = dim
        self.embedding = nn.Embedding(num_classes + 1, tokens * dim)
        nn.init.normal_(self.embedding.weight, std=1.0)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding(labels).view(labels.shape[0], self.tokens, self.dim)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"num_classes": self.num_classes, "tokens": self.tokens, "dim": self.dim}
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))

    @classmethod
    def load(cls, folder: Path) -> ClassConditioner:
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        model = cls(**config)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.eval()
