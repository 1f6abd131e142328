"""JAX's persistent compilation cache, and the seconds a block of work spends compiling.

A sweep runs many programs of the same shapes (every task of a domain, a rerun, the cost
measurement before the run); with the cache on disk, each shape compiles once and later processes
load the executable. `CompileTimer` reads JAX's own monitoring events, so it counts every
compilation of the block (cache loads included, at their load time) without touching the code
that compiles.
"""

import os

import jax
from jax import monitoring

DISABLED = "none"  # the flag value that turns the cache off
ENV_VAR = "JAX_COMPILATION_CACHE_DIR"  # JAX's own variable; jax reads it at import
CACHE_DIR_NAME = "compile_cache"  # the default directory's name under a run root

# JAX's monitoring events (jax/_src/dispatch.py and compiler.py in jax 0.10).
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # a compile or a cache load
_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_MISS_EVENT = "/jax/compilation_cache/cache_misses"


def cache_dir(flag: str, run_root: str) -> str | None:
    """The cache directory: `flag`, else $JAX_COMPILATION_CACHE_DIR, else <run_root>/compile_cache;
    None when `flag` is "none"."""
    if flag == DISABLED:
        return None
    return flag or os.environ.get(ENV_VAR) or os.path.join(run_root, CACHE_DIR_NAME)


def enable(directory: str) -> None:
    """Cache every program this process compiles in `directory` (JAX creates it at the first
    compile, so a run that fails before any work leaves none).

    Call it before the first compilation: JAX opens the cache once per process. The thresholds
    are lowered so that small CPU programs (compiled in well under JAX's default 1 s) are cached
    too.
    """
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no size floor


class CompileTimer:
    """`with CompileTimer() as timer:` -> timer.seconds (XLA compile time spent in the block,
    persistent-cache loads included), timer.cache_hits and timer.cache_misses (persistent-cache
    lookups; both 0 when the cache is off)."""

    def __init__(self):
        self.seconds, self.cache_hits, self.cache_misses = 0.0, 0, 0

    def _duration(self, event: str, duration_secs: float, **_):
        if event == _COMPILE_EVENT:
            self.seconds += duration_secs

    def _event(self, event: str, **_):
        if event == _HIT_EVENT:
            self.cache_hits += 1
        elif event == _MISS_EVENT:
            self.cache_misses += 1

    def __enter__(self):
        monitoring.register_event_duration_secs_listener(self._duration)
        monitoring.register_event_listener(self._event)
        return self

    def __exit__(self, *_):
        monitoring.unregister_event_duration_listener(self._duration)
        monitoring.unregister_event_listener(self._event)
        return False

    def record(self) -> dict:
        return {
            "compile_s": round(self.seconds, 3),
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
        }
