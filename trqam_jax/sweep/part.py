"""One program part of a sweep: experiments.run unchanged, and a record of its cost.

    python -m trqam_jax.sweep.part RECORD.json --config=configs/resolved.py:CONFIG.json ...

runs the launcher's own command line (its validation, lock, config-change refusal, resume and
exit codes), then writes RECORD.json: exit code, wall seconds, compile seconds and persistent
cache hits / misses of the whole process. The sweep reads these records into sweep.json.
"""

import os
import sys
import time

from trqam_jax import compile_cache, run_dir
from trqam_jax.sweep import processes


def main(argv: list[str]) -> int:
    """argv: [program name, record path, *the launcher's flags] -> the launcher's exit code."""
    record_path, launcher_args = argv[1], argv[2:]
    processes.die_with_parent()
    from experiments import run as launcher  # the launcher CLI itself, flags and all

    sys.argv = [launcher.__file__, *launcher_args]
    start = time.perf_counter()
    with compile_cache.CompileTimer() as timer:
        try:
            launcher.cli()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else int(done.code is not None)
    os.makedirs(os.path.dirname(record_path) or ".", exist_ok=True)
    record = dict(timer.record(), exit_code=code, wall_s=round(time.perf_counter() - start, 3))
    run_dir.write_json(record_path, record)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
