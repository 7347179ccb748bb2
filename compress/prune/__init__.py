"""Block-importance pruning of diffusers UNets (LD-Pruner scores, BK-SDM-style surgery)."""

from compress.prune.cost import UNetCost, cost_without, count_params, measure, unit_costs
from compress.prune.pipeline import prune
from compress.prune.presets import PRESETS
from compress.prune.score import ScoreSettings, score_units
from compress.prune.select import select_units
from compress.prune.surgery import build_diffusers_unet, pruned_config, removed_units
from compress.prune.units import enumerate_units, find_units, units_conflict

__all__ = [
    "PRESETS", "ScoreSettings", "UNetCost", "build_diffusers_unet", "cost_without", "count_params",
    "enumerate_units", "find_units", "measure", "prune", "pruned_config", "removed_units", "score_units",
    "select_units", "unit_costs", "units_conflict",
]
