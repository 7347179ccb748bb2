"""Block-importance pruning of diffusers UNets (LD-Pruner scores, BK-SDM-style surgery) and width pruning."""

from compress.lazy import lazy_exports

_EXPORTS = {
    "LatencySettings": "compress.prune.settings",
    "PRESETS": "compress.prune.presets",
    "ScoreSettings": "compress.prune.settings",
    "UNetCost": "compress.prune.cost",
    "build_diffusers_unet": "compress.prune.rewrite",
    "cost_without": "compress.prune.cost",
    "count_params": "compress.prune.cost",
    "enumerate_units": "compress.models.units",
    "find_units": "compress.models.units",
    "measure": "compress.prune.cost",
    "narrow": "compress.prune.width",
    "prune": "compress.prune.pipeline",
    "pruned_config": "compress.prune.rewrite",
    "removed_units": "compress.models.surgery",
    "score_units": "compress.prune.score",
    "select_units": "compress.prune.select",
    "unit_costs": "compress.prune.cost",
    "units_conflict": "compress.models.units",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
