"""ml_collections presets (agent defaults, per-domain settings, quickstart)."""
