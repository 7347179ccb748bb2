"""What flows between the chain's stages: the record each stage leaves, the points it measures, the running state.

Kept apart from `run` (which executes stages) and `measure` (the bench and eval stages), which both use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from compress.chain.recipe import Recipe
from compress.types import Record

STAGE_RECORD = "chain_stage.json"
Say = Callable[[str], None]


@dataclass
class StageRecord(Record):
    """`OUT/NN-stage/chain_stage.json`: what the stage was asked (its hash) and what it left."""

    stage: str
    hash: str
    state: str  # running | done
    options: dict[str, Any]
    consumed: str  # the hash of the model or stage it read
    outputs: dict[str, Any] = field(default_factory=dict)  # paths relative to the stage folder, results
    seconds: float = 0.0


@dataclass
class Point(Record):
    """A model the chain started from or made, to be timed and scored.

    `student`: a consistency student (one UNet call per step, sampled at eval's `student_steps`); `export`: a
    folder `compress quantize` wrote (it runs in its runtime)."""

    name: str
    stage: str  # the stage that wrote it ("model" for the chain's input)
    path: str
    student: bool = False
    export: bool = False


@dataclass
class ChainState:
    """What a stage reads: the recipe, the latest float model (`current`, what the next stage takes), whether it
    is a consistency student, and the points measured so far (the teacher first)."""

    recipe: Recipe
    say: Say = print
    progress: bool = True
    current: str = ""
    student: bool = False
    points: list[Point] = field(default_factory=list)

    def init(self, ref: str) -> str:
        """How to load `ref`: the recipe's `init` for its own model; a folder a stage wrote holds its weights."""
        return self.recipe.init if ref == self.recipe.model else "pretrained"
