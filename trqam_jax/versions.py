"""The installed versions of the software a result depends on, for provenance records."""

import platform
from importlib import metadata

# Distribution names, as pip knows them.
PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "mujoco",
    "ogbench",
    "gymnasium",
)


def versions() -> dict:
    """{"python": version, package: version or None where it is not installed} (no imports)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
