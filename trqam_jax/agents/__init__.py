"""Agents: each module exposes pure `init`, `update` and `act` functions."""
