"""Block-importance pruning of diffusers UNets (LD-Pruner scores, BK-SDM-style surgery)."""

from compress.models.surgery import removed_units
from compress.models.units import enumerate_units, find_units, units_conflict
from compress.prune.cost import UNetCost, cost_without, count_params, measure, unit_costs
from compress.prune.pipeline import LatencySettings, prune
from compress.prune.presets import PRESETS
from compress.prune.rewrite import build_diffusers_unet, pruned_config
from compress.prune.score import ScoreSettings, score_units
from compress.prune.select import select_units

__all__ = [
    "PRESETS", "LatencySettings", "ScoreSettings", "UNetCost", "build_diffusers_unet", "cost_without", "count_params",
    "enumerate_units", "find_units", "measure", "prune", "pruned_config", "removed_units", "score_units",
    "select_units", "unit_costs", "units_conflict",
]
