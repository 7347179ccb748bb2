"""BK-SDM's hand-made architectures (Kim et al., 2023) as removal sets in our unit graph.

Base drops one R+A layer per down stage and the middle pair of each up stage; Small also
drops the mid block; Tiny also drops the innermost stage. Weight mapping (student up pair 1
takes the teacher's pair 2; Tiny's up stages take the teacher's 1..3) follows from the edits.
"""

from __future__ import annotations

from compress.errors import CompressError

PRESETS: dict[str, list[str]] = {
    "bk-base": ["layer.0", "layer.1", "layer.2", "layer.3"],
    "bk-small": ["layer.0", "layer.1", "layer.2", "layer.3", "mid"],
    "bk-tiny": ["layer.0", "layer.1", "layer.2", "mid", "stage.3"],
}


def preset_units(name: str) -> list[str]:
    try:
        return PRESETS[name]
    except KeyError:
        raise CompressError(f"unknown --preset {name!r}; choose from {', '.join(PRESETS)}") from None
