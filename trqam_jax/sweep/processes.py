"""The processes of a sweep: its peers under `jax.distributed` (barriers between phases) and its
workers, child processes that die with it (a process group and Linux's parent-death signal)."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys

import jax

# Variables that would make a worker join the distributed runtime itself.
_DISTRIBUTED_ENV = (
    "JAX_COORDINATOR_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
    "JAX_LOCAL_DEVICE_IDS",
)
# The device choice jax.distributed.initialize made (e.g. GPU SLURM_LOCALID), and the variable
# that makes a worker see the same devices.
_VISIBLE = (
    ("jax_cuda_visible_devices", "CUDA_VISIBLE_DEVICES"),
    ("jax_rocm_visible_devices", "HIP_VISIBLE_DEVICES"),
)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_ENV = "TRQAM_SWEEP_PARENT"  # the sweep's pid, for its worker's `die_with_parent`
STOP_GRACE_S = 30.0  # how long a stopped worker may take to close its files before SIGKILL


class Processes:
    """The processes of a sweep: this one's index, their count, and barriers between phases.

    One process needs nothing else. Several use the client of JAX's distributed runtime
    (`connect`): its barrier takes an explicit timeout, so a process may wait hours for a BC
    program on another one, and needs no device collective, so this process never opens an
    accelerator (its workers do).
    """

    def __init__(self, index: int = 0, count: int = 1, client=None, timeout_s: float = 0.0):
        self.index, self.count, self.client, self.timeout_s = index, count, client, timeout_s

    @property
    def writer(self) -> bool:
        """Whether this process writes the shared files (the plan, the summary, the report)."""
        return self.index == 0

    def barrier(self, name: str, status=""):
        """Wait until every process reached barrier `name`; returns every process's `status`."""
        if self.count == 1:
            return [status]
        key = f"trqam_sweep/{name}"
        self.client.key_value_set(f"{key}/{self.index}", json.dumps(status))
        self.client.wait_at_barrier(key, int(self.timeout_s * 1000))
        return [
            json.loads(self.client.blocking_key_value_get(f"{key}/{i}", 60_000))
            for i in range(self.count)
        ]


def connect(coordinator_address=None, num_processes=None, process_id=None, timeout_s=3 * 86400.0):
    """`jax.distributed.initialize` (arguments None: detected from SLURM, Open MPI, a TPU pod or
    $JAX_COORDINATOR_ADDRESS / $JAX_NUM_PROCESSES / $JAX_PROCESS_ID) -> `Processes`."""
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    # The runtime initialize() connected; jax.process_index() would open a device backend here.
    from jax._src import distributed

    state = distributed.global_state
    return Processes(state.process_id, state.num_processes, state.client, timeout_s)


def worker_env(environ=None, chosen=None) -> dict:
    """The environment of a worker: single-process JAX on the devices this process was given.

    Args:
      environ: this process's environment (default os.environ).
      chosen: {jax config name: device ids} (default: what `jax.distributed.initialize` set,
        e.g. the GPU of SLURM_LOCALID; "all" = every visible device). Ids index the devices
        this process sees, so they are mapped through an existing CUDA_VISIBLE_DEVICES.
    Returns:
      environ without the distributed variables, with the chosen devices made the only visible
      ones, and this checkout on PYTHONPATH.
    """
    environ = dict(os.environ if environ is None else environ)
    env = {k: v for k, v in environ.items() if k not in _DISTRIBUTED_ENV}
    for name, variable in _VISIBLE:
        ids = (jax.config.values if chosen is None else chosen).get(name, "all")
        if ids != "all":
            listed = environ.get(variable)
            env[variable] = (
                ",".join(listed.split(",")[int(i)] for i in ids.split(",")) if listed else ids
            )
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [checkout, env.get("PYTHONPATH")]))
    return env


def die_with_parent() -> None:
    """In a worker (`run_worker` started it): SIGTERM when the sweep process dies, kill -9
    included (Linux's parent-death signal; elsewhere nothing). Set from the worker itself rather
    than between fork and exec, which is unsafe in a process with threads such as JAX's."""
    parent = os.environ.pop(PARENT_ENV, "")
    if not parent or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # the sweep died before the signal was set
        os._exit(1)


def run_worker(module: str, args: list[str], env: dict) -> int:
    """`python -m module *args` in a process group of its own that dies with this process
    (the module calls `die_with_parent`); returns its exit code.

    Ctrl-C (or a SIGTERM that run_absl turns into KeyboardInterrupt) stops the worker's whole
    group (SIGTERM, then SIGKILL after STOP_GRACE_S) before it propagates.
    """
    worker = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=dict(env, **{PARENT_ENV: str(os.getpid())}),
        process_group=0,  # the terminal's Ctrl-C reaches this process only, which stops it
    )
    try:
        return worker.wait()
    except BaseException:
        stop(worker)
        raise


def stop(worker: subprocess.Popen) -> None:
    """Stop a worker's process group: SIGTERM, then SIGKILL after STOP_GRACE_S."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(worker.pid, sig)
        except ProcessLookupError:
            return
        try:
            worker.wait(timeout=STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue
