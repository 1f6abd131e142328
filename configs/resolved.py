"""A resolved run config from JSON: `--config=configs/resolved.py:PATH`.

The sweep writes each program's config, every default and override applied, to
<root>/configs/<program>.json and runs its launcher on it (docs/sweep.md), so every check of
experiments.run holds for sweeps too. JSON has no tuples: lists become tuples again, as the
config files write sequences.
"""

import json

import ml_collections


def _tuples(value):
    if isinstance(value, dict):
        return {name: _tuples(item) for name, item in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def get_config(path: str) -> ml_collections.ConfigDict:
    """The config saved at `path` (a JSON object, as `ConfigDict.to_json` writes it)."""
    with open(path) as f:
        return ml_collections.ConfigDict(_tuples(json.load(f)))
