#!/usr/bin/env bash
# The benchmark suite on a lent accelerator machine: install the carried wheels, run the suite
# (under 8 minutes on one H100 / H200), leave the results where the device tool brings files back.
#
# Here, once (benchmarks/device_wheels.txt into .whl/, about 19 MiB; docs/benchmarks.md):
#   echo /.whl/ >> "$(git rev-parse --git-common-dir)/info/exclude"
#   python -m benchmarks.device_wheels
# Then one call of the device tool's `run`:
#   command: bash benchmarks/device_run.sh      carry: [".whl"]      timeout_s: 600
# Arguments go to `python -m benchmarks.suite` (e.g. --quick, --parts=update,baseline).
# Results: suite_<device>.json, suite_<device>.md and suite_log.txt in $OUT (else benchmarks/results).
# Overrides: PYTHON (default python3), SITE (install folder, default /tmp/site), SUITE_LIMIT_S (a
# hard stop for the suite, default 540 s; it writes its record after every part, so the parts done
# by then are kept).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
OUT_DIR=${OUT:-benchmarks/results}
LIMIT_S=${SUITE_LIMIT_S:-540}

shopt -s nullglob
wheels=(.whl/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  echo "no wheels in .whl/: run 'python -m benchmarks.device_wheels' on a machine with pip" \
    "access, and name .whl in the device call's carry" >&2
  exit 2
fi
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" "${wheels[@]}"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 MUJOCO_GL=disable
export SUITE_LAUNCHER="bash benchmarks/device_run.sh${*:+ $*}"  # recorded with the results
# The doubling of S in the update part looks for the largest program that fits: let JAX's
# allocator take most of the device's memory (its default is 75%).
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}

mkdir -p "$OUT_DIR"
log="$OUT_DIR/suite_log.txt"
{
  date -u
  nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
  "$PYTHON" -c 'import sys, jax, ml_collections, ogbench, mujoco, gymnasium
print(sys.version.split()[0], "jax", jax.__version__, "mujoco", mujoco.__version__,
      "gymnasium", gymnasium.__version__, "devices", jax.devices())'
} 2>&1 | tee "$log"

set +e
timeout "$LIMIT_S" "$PYTHON" -m benchmarks.suite --out_dir "$OUT_DIR" "$@" 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 124 ]; then
  echo "the suite ran past SUITE_LIMIT_S=$LIMIT_S s: the parts it finished are in $OUT_DIR" \
    | tee -a "$log"
fi
ls -l "$OUT_DIR" | tee -a "$log"
exit "$status"
