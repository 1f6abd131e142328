"""OGBench data: loading, shards, on-device chunk sampling, replay buffer, local generation."""
