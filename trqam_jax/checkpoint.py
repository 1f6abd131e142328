"""orbax checkpoints of the stacked per-row agent states, one manager per training stage.

A stage that has more to resume than its agent states (the online stage: replay buffers, the
environments' episodes) saves them beside the states as two more items of the same checkpoint:
`arrays` (a pytree of numpy arrays) and `host` (JSON), written and restored together.
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

STATES, ARRAYS, HOST = "default", "arrays", "host"  # the items of a checkpoint with extras


class CheckpointError(Exception):
    """A checkpoint that is missing or does not fit the run's configuration."""


def manager(directory: str, max_to_keep: int = 2, extras: bool = False) -> ocp.CheckpointManager:
    """A checkpoint manager over step-numbered sub-directories of `directory`; `extras`: its
    checkpoints hold the `arrays` and `host` items beside the states (`save(..., extras=)`)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    items = dict(item_names=(STATES, ARRAYS, HOST)) if extras else {}
    return ocp.CheckpointManager(os.path.abspath(directory), options=options, **items)


def save(mngr: ocp.CheckpointManager, step: int, states, extras=None) -> None:
    """Save `states` at `step` and wait until it is on disk (nothing is lost on a later crash).

    Host (numpy) copies are saved, so the checkpoint carries no device topology and restores on
    any number of devices (a BC checkpoint from a GPU sweep loads on a laptop, and vice versa).
    `extras`, for a manager made with `extras=True`: (arrays, host), a pytree of non-empty
    arrays and a JSON-able dict, saved in the same checkpoint.
    """
    args = ocp.args.StandardSave(jax.device_get(states))
    if extras is not None:
        arrays, host = extras
        arrays = ocp.args.StandardSave(jax.device_get(arrays))
        args = ocp.args.Composite(**{STATES: args, ARRAYS: arrays, HOST: ocp.args.JsonSave(host)})
    mngr.save(step, args=args, force=True)
    mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, step: int, like, extras: bool = False):
    """Restore the states saved at `step` into the structure, shapes and shardings of `like`.

    With `extras` (a manager made with `extras=True`): (states, arrays as numpy, host dict).
    """
    target = ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, like))
    if extras and not os.path.isdir(os.path.join(mngr.directory, str(step), HOST)):
        raise CheckpointError(
            f"checkpoint {mngr.directory}/{step} holds only agent states (written by a version "
            f"that could not resume this stage); delete {mngr.directory} to run the stage anew"
        )
    try:
        if not extras:
            return mngr.restore(step, args=target)
        items = {STATES: target, ARRAYS: ocp.args.StandardRestore(), HOST: ocp.args.JsonRestore()}
        restored = mngr.restore(step, args=ocp.args.Composite(**items))
        return restored[STATES], restored[ARRAYS], restored[HOST]
    except (ValueError, KeyError) as err:
        raise CheckpointError(
            f"checkpoint {mngr.directory}/{step} does not match this run's configuration "
            f"(network sizes, number of critics, seeds or agent differ): {err}. "
            "Use a new --config.run_dir, or the configuration the checkpoint was written with."
        ) from err


def load_base_params(directory: str, row_ids, like):
    """The BC-pretrained vector field of every row from a BC checkpoint directory.

    Args:
      directory: a run directory (its `checkpoints/bc` is used) or a BC checkpoint directory.
      row_ids: (R,) global ids of the rows being initialised; row r takes checkpoint row r % n,
        so a BC run with S seeds initialises a budget sweep over the same S seeds.
      like: the base field this run builds (one row, e.g. a `jax.eval_shape`); the checkpoint's
        must have its structure and shapes.
    Returns:
      the `base` parameter pytree with a leading row axis of R.
    Raises:
      CheckpointError naming both shapes and the fix when the field does not fit.
    """
    candidates = [os.path.join(directory, "checkpoints", "bc"), directory]
    path = next((p for p in candidates if os.path.isdir(p) and _steps(p)), None)
    if path is None:
        raise CheckpointError(
            f"no BC checkpoint under {directory!r} (looked in {', '.join(candidates)}); pass the "
            "run directory of a run with bc_steps > 0, e.g. --config.init_from=runs/<bc-run>, "
            "or a reference BC checkpoint params_<step>.pkl (or the directory holding it)"
        )
    mngr = ocp.CheckpointManager(os.path.abspath(path))
    raw = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())
    base = raw["params"]["base"]
    check_field_fits(
        jax.tree.map(lambda x: tuple(np.shape(x)[1:]), base),
        like,
        f"the BC checkpoint in {path}",
        "set agent.actor_hidden_dims / actor_layer_norm and the domain (observation and action "
        "sizes, horizon) to the BC run's, or pretrain anew without init_from",
    )
    return rows_of(base, row_ids)


def check_field_fits(saved, like, where: str, fix: str) -> None:
    """Refuse a saved vector field whose structure or shapes differ from this run's.

    Args:
      saved: the saved field as nested dicts of shape tuples (one row, no leading row axis).
      like: this run's field (arrays or `jax.ShapeDtypeStruct`s).
      where: what holds the saved field, for the message ("the BC checkpoint in DIR").
      fix: the sentence telling the user what to change.
    Raises:
      CheckpointError naming both fields' dense-layer shapes, then `fix`.
    """
    wanted = jax.tree.map(lambda x: tuple(x.shape), like)
    if saved != wanted:  # nested dicts: compares the layer names and every shape
        raise CheckpointError(
            f"{where} holds a vector field of other shapes than this run's "
            f"(checkpoint {layer_shapes(saved)}, this run {layer_shapes(wanted)}); {fix}"
        )


def rows_of(base, row_ids):
    """Row r of the run takes saved row r % n of `base` (leading axis n): (R, ...) numpy leaves.

    A BC run with S seeds thus initialises a budget sweep over the same S seeds, and a single
    saved field (n = 1) initialises every row alike.
    """
    saved_rows = jax.tree.leaves(base)[0].shape[0]
    index = np.asarray(row_ids) % saved_rows
    return jax.tree.map(lambda x: np.asarray(x)[index], base)


def layer_shapes(shapes) -> str:
    """Kernel shapes of a field's dense layers, in order (what differs between two fields)."""
    leaves = jax.tree_util.tree_flatten_with_path(shapes, is_leaf=_is_shape)
    return " ".join(
        "x".join(map(str, shape))
        for path, shape in leaves[0]
        if "kernel" in jax.tree_util.keystr(path)
    ) or str(shapes)


def _is_shape(x) -> bool:
    return isinstance(x, tuple)


def _steps(path: str) -> list[int]:
    return [int(name) for name in os.listdir(path) if name.isdigit()]
