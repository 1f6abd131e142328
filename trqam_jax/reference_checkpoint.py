"""The authors' BC checkpoints (`params_<step>.pkl`) as the base field of every row.

What the reference writes (github.com/yonghdong/trqam, as ColinQiyangLi/qam before it): its BC
stage (`main.py --agent=agents/trqam.py --bc_only=True`) calls `utils/flax_utils.save_agent`,
`pickle.dump({"agent": flax.serialization.to_state_dict(agent)}, f)`, into `params_<step>.pkl`,
and `main.py` writes the absl flags (`flags.json`, the agent config under "agent") into the same
directory. The state dict is nested plain dicts (flax turns structs, tuples and named tuples into
dicts), down to
`["agent"]["network"]["params"]["modules_<name>"]["mlp"]["Dense_<i>" | "LayerNorm_<i>"]`
with `kernel` (in, out) / `bias` and `scale` / `bias`. Its leaves are jax Arrays, which pickle
through `jax._src.array._reconstruct_array(np_reconstruct, args, state, aval_state)` around a numpy
array's own pickle; scalars like `lam` may be Python floats.

How it maps onto our base field (`networks.vector_field_module`), checked against that source:
- its `ActorVectorField(obs, actions, times)` concatenates [obs, actions, times] with raw times of
  shape (..., 1) (no Fourier features), and so does `networks.apply_vector_field` ([obs, x, t]):
  the first kernel's rows are already in our order;
- its `MLP` is Dense -> GELU (tanh form) -> LayerNorm (with `actor_layer_norm`) per hidden layer,
  then a linear output, under flax's names Dense_i / LayerNorm_i: our `networks.MLP`, so our field
  is `{"params": <its "mlp" dict>}`;
- chunks: it flattens an (H, A) chunk row-major (`jnp.reshape(actions, (B, -1))`), as we do;
- the network taken is the first of `ACTOR_MODULES` present, the order of the reference's own
  `--pretrained_actor_path` loader: `actor_slow` for TRQAM / QAM (its target copy is never updated
  in BC-only training, so it is never the one to take), `actor_bc_flow` for FQL / DSRL.

Unpickling can run any code a file names, so `load_pickle` admits only the globals numpy arrays,
dtypes and scalars need, and rebuilds jax's array wrapper as a plain numpy array without calling
jax: a file naming anything else is refused before that name is imported or called.
"""

import json
import os
import pickle
import re

import jax
import numpy as np

from trqam_jax.checkpoint import CheckpointError, check_field_fits, rows_of

FLAGS_FILE = "flags.json"  # the reference's record of its flags, beside the .pkl
# The reference loader's order (main.py, --pretrained_actor_path).
ACTOR_MODULES = (
    "modules_actor_slow",
    "modules_actor_bc_flow",
    "modules_actor_flow",
    "modules_actor",
)
_STEP_FILE = re.compile(r"params_(\d+)\.pkl")


class UnsafePickleError(CheckpointError):
    """A checkpoint pickle that names a global outside numpy's arrays, dtypes and scalars."""


def _numpy_from_jax_pickle(reconstruct, args, state, aval_state):
    """What jax's `_reconstruct_array` does, less the device put: the numpy array it wraps.

    `reconstruct` and everything in `args` / `state` were themselves admitted by `_Restricted`.
    """
    del aval_state  # weak_type only: no bearing on parameter values
    array = reconstruct(*args)
    array.__setstate__(state)
    return array


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """How pickle protocols 0-2 spell bytes (`_codecs.encode(text, "latin1")`), and nothing else."""
    if encoding != "latin1":
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _admitted() -> dict[tuple[str, str], object]:
    """(module, name) -> object for every global a pickle of numpy arrays and scalars names.

    numpy's reconstructors are taken from numpy's own pickles, so the names of numpy 1
    (`numpy.core`) and 2 (`numpy._core`) both resolve without importing deprecated modules.
    """
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 pickles of contiguous arrays
    scalar = np.float32(0).__reduce__()[0]
    found = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        found[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        found[(f"{core}.multiarray", "scalar")] = scalar
        found[(f"{core}.numeric", "_frombuffer")] = frombuffer
    found[("jax._src.array", "_reconstruct_array")] = _numpy_from_jax_pickle
    found[("_codecs", "encode")] = _latin1_bytes
    return found


class _Restricted(pickle.Unpickler):
    """An unpickler whose globals are `_admitted()`'s only (dicts, lists, tuples, strings and
    numbers need none)."""

    admitted = _admitted()

    def find_class(self, module, name):
        found = self.admitted.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: a checkpoint pickle may hold only numpy "
                "arrays, dicts, lists and scalars (loading anything else could run code). If you "
                "trust the file, convert it where the reference runs to nested dicts of numpy "
                "arrays (jax.tree.map(np.asarray, ...)) and pass that; or pretrain here instead "
                "(bc_steps > 0, no init_from)"
            )
        return found


def load_pickle(path: str):
    """The object in the pickle file `path`, admitting only numpy arrays, dicts, lists, scalars.

    jax Arrays come back as numpy arrays. Raises UnsafePickleError (before importing or calling
    the refused global) for anything else, CheckpointError for a file that is not a pickle.
    """
    with open(path, "rb") as f:
        try:
            return _Restricted(f).load()
        except UnsafePickleError as err:
            raise UnsafePickleError(f"{path}: {err}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{path} is not a readable checkpoint pickle: {err!r}") from None


def is_reference(path: str) -> bool:
    """Whether `path` is a reference checkpoint: a .pkl file, or a directory of params_*.pkl."""
    if os.path.isfile(path):
        return path.endswith(".pkl")
    return os.path.isdir(path) and bool(_step_files(path))


def resolve(path: str) -> tuple[str, str]:
    """(the .pkl file to load, a note saying which): `path` itself, or its largest-step file."""
    if os.path.isfile(path):
        return path, os.path.basename(path)
    steps = _step_files(path)
    step = max(steps)
    others = f", the largest step of {len(steps)}" if len(steps) > 1 else ""
    return steps[step], f"params_{step}.pkl (step {step}{others})"


def reference_actor(state_dict, path: str) -> tuple[str, dict]:
    """(module name, its `mlp` parameter dict) of the BC flow actor in a reference state dict.

    Raises CheckpointError naming the keys found when the layout is not the reference's.
    """
    try:
        params = state_dict["agent"]["network"]["params"]
    except (KeyError, TypeError):
        keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
        raise CheckpointError(
            f"{path} is not a reference checkpoint: expected ['agent']['network']['params'] "
            f"(what the reference's save_agent writes), found {keys}"
        ) from None
    name = next((m for m in ACTOR_MODULES if m in params), None)
    if name is None or not isinstance(params[name], dict) or "mlp" not in params[name]:
        raise CheckpointError(
            f"{path} holds no flow actor: looked for {' / '.join(ACTOR_MODULES)} with an 'mlp', "
            f"found networks {sorted(params)}"
        )
    return name, params[name]["mlp"]


def load_base_params(path: str, row_ids, like):
    """The base field of every row from a reference BC checkpoint; every row gets the same one.

    Args:
      path: a `params_<step>.pkl`, or a directory holding them (the largest step is taken).
      row_ids: (R,) global ids of the rows being initialised.
      like: the base field this run builds (one row, e.g. a `jax.eval_shape`):
        {"params": {"Dense_i": {kernel, bias}, "LayerNorm_i": {scale, bias}}}.
    Returns:
      the `base` parameter pytree with a leading row axis of R (numpy, like's dtypes).
    Raises:
      UnsafePickleError for a pickle naming anything but numpy arrays and scalars; CheckpointError
      for another layout, or, naming the layer shapes found and expected and the settings that
      fit the file, a field of other shapes.
    """
    file, which = resolve(path)
    name, mlp = reference_actor(load_pickle(file), file)
    field = {"params": mlp}
    leaves = jax.tree_util.tree_leaves_with_path(field)
    for key, leaf in leaves:
        if not (isinstance(leaf, np.ndarray) and np.issubdtype(leaf.dtype, np.floating)):
            raise CheckpointError(
                f"{file}: {name}{jax.tree_util.keystr(key)} is {type(leaf).__name__}, not an "
                "array of floats; this is not a reference BC checkpoint"
            )
    flags = _read_flags(os.path.dirname(file))
    check_field_fits(
        jax.tree.map(np.shape, field),
        like,
        f"the reference checkpoint {file} ({name})",
        _fix(mlp, like, flags),
    )
    trained_on = f", trained on {flags['env_name']}" if "env_name" in flags else ""
    print(f"init_from: the reference's {name} from {which} in {os.path.dirname(file)}{trained_on}")
    base = jax.tree.map(lambda x, w: np.asarray(x, w.dtype)[None], field, like)
    return rows_of(base, row_ids)


def _fix(mlp, like, flags) -> str:
    """The settings under which this run's field would fit the file's (from its layer shapes)."""
    kernels, ours = _kernel_shapes(mlp), _kernel_shapes(like["params"])
    if not kernels:
        return "its actor is not an MLP of Dense layers: pass a BC checkpoint of the reference"
    fix = []
    hidden = [out for _, out in kernels[:-1]]
    if hidden != [out for _, out in ours[:-1]]:
        fix.append(f"set --config.agent.actor_hidden_dims='({','.join(map(str, hidden))})'")
    layer_norm = any(k.startswith("LayerNorm_") for k in mlp)
    if layer_norm != any(k.startswith("LayerNorm_") for k in like["params"]):
        fix.append(f"set --config.agent.actor_layer_norm={layer_norm}")
    # The first kernel takes D + d + 1 inputs (observation, flat chunk, time); the last gives d.
    (file_in, _), (_, file_chunk) = kernels[0], kernels[-1]
    (our_in, _), (_, our_chunk) = ours[0], ours[-1]
    if file_chunk != our_chunk:
        agent = flags.get("agent") if isinstance(flags.get("agent"), dict) else {}
        told = ""
        if "action_chunking" in agent:  # unchunked, the reference clones the first action only
            horizon = agent.get("horizon_length") if agent["action_chunking"] else 1
            told = f" (its {FLAGS_FILE}: --config.agent.horizon={horizon})"
        fix.append(
            f"its action chunks have {file_chunk} numbers and this run's {our_chunk} "
            f"(agent.horizon x the action size): set agent.horizon to fit{told}"
        )
    if file_in - file_chunk != our_in - our_chunk:
        trained_on = f" ({flags['env_name']})" if "env_name" in flags else ""
        fix.append(
            f"its observations have {file_in - file_chunk - 1} numbers and this domain's "
            f"{our_in - our_chunk - 1}: it is a checkpoint of another domain{trained_on}"
        )
    return "; ".join(fix) or "pass a BC checkpoint of this domain's network"


def _kernel_shapes(mlp) -> list[tuple[int, ...]]:
    """(in, out) of Dense_0, Dense_1, ... in layer order ([] unless each is a 2-D kernel)."""
    dense = [k for k in mlp if re.fullmatch(r"Dense_\d+", k)]
    shapes = [
        np.shape(mlp[k].get("kernel")) if isinstance(mlp[k], dict) else ()
        for k in sorted(dense, key=lambda k: int(k[6:]))
    ]
    return shapes if all(len(shape) == 2 for shape in shapes) else []


def _read_flags(directory: str) -> dict:
    """The reference's flags.json beside the checkpoint ({} when absent or unreadable)."""
    try:
        with open(os.path.join(directory, FLAGS_FILE)) as f:
            flags = json.load(f)
    except (OSError, ValueError):
        return {}
    return flags if isinstance(flags, dict) else {}


def _step_files(directory: str) -> dict[int, str]:
    """step -> path of every params_<step>.pkl in `directory`."""
    found = (_STEP_FILE.fullmatch(name) for name in os.listdir(directory))
    return {int(m.group(1)): os.path.join(directory, m.group(0)) for m in found if m}
