"""A unit's part file of the results store: the identity that names it, and why a unit whose
folder holds a part of the same probe configuration is probed again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from layerprobe.errors import UserError
from layerprobe.probe.units import Unit
from layerprobe.results.parts import PART_SUFFIX, config_hash, part_info, readable

if TYPE_CHECKING:
    from layerprobe.probe.config import ProbeConfig


def unit_identity(unit: Unit, config: ProbeConfig) -> dict:
    """Everything that names a unit's part: model key, task, configuration, cache files read,
    and the ``upstream.json`` record its rows carry (where one is used)."""
    identity = {
        "model_key": unit.model_key,
        "task": unit.task,
        **config.identity(),
        "features": unit.features_identity(),
    }
    upstream = unit.upstream_identity()
    if upstream is not None:
        identity["upstream"] = upstream
    return identity


WHY = {
    "features": "its cache files changed (extracted again)",
    "upstream": "an upstream accuracy was recorded for its model since (`layerprobe upstream`)",
}


def why_again(path: Path, identity: dict, config: ProbeConfig) -> str | None:
    """Why a unit with no part at ``path`` is probed although its folder holds a part of the
    same probe configuration (which the new part will replace); None where there is none."""
    generation = (
        identity["model_key"],
        identity["task"],
        config.probe,
        config_hash(config.values_identity()),
    )
    new = json.loads(json.dumps(identity, sort_keys=True, default=str))
    for other in sorted(
        path.parent.glob(f"{readable(identity['task'])}.{config.probe}.*{PART_SUFFIX}")
    ):
        if other.name.startswith("."):
            continue
        try:
            old = part_info(other)
        except UserError:
            continue  # a damaged part is the reader's to report
        if old.generation != generation:
            continue
        changed = sorted(
            k for k in set(new) | set(old.identity) if new.get(k) != old.identity.get(k)
        )
        reasons = [
            WHY.get(k) or f"{k} {old.identity.get(k)} -> {new.get(k)} (the old part is replaced)"
            for k in changed
        ]
        return "; ".join(reasons) or None
    return None
