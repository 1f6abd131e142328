"""init_from a BC checkpoint in the reference's layout (`params_<step>.pkl` + flags.json).

The checkpoints are written here the way the reference's `save_agent` writes them: a pickle of
`{"agent": flax.serialization.to_state_dict(agent)}` of an agent struct holding the rng, a train
state (step, params of every network, optax opt_state) and the dual scalars, with jax Array
leaves and the reference's network names (`modules_actor_slow` -> `mlp` -> `Dense_i` /
`LayerNorm_i`). The loaded field is compared with a plain-numpy forward pass of the reference's
actor on the same weights.
"""

import json
import os
import pickle
from typing import Any

import flax.serialization
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from tests.runs import final_params, tiny_run_config
from tests.tiny import ACTION_DIM, HORIZON, OBS_DIM, example_inputs, tiny_config
from trqam_jax import checkpoint, experiment, networks, reference_checkpoint, train
from trqam_jax.agents import common


@flax.struct.dataclass
class RefTrainState:
    """The pytree fields of the reference's utils/flax_utils.TrainState."""

    step: Any
    params: Any
    opt_state: Any


@flax.struct.dataclass
class RefAgent:
    """The pytree fields of the reference's TRQAMAgent (its config is not saved)."""

    rng: Any
    network: RefTrainState
    lam: Any
    kl_ema: Any


def reference_mlp(rng, in_dim, widths, layer_norm):
    """Random weights under the reference MLP's names (Dense_i, LayerNorm_i after hidden i)."""
    mlp, fan_in = {}, in_dim
    for i, width in enumerate(widths):
        mlp[f"Dense_{i}"] = {
            "kernel": rng.normal(size=(fan_in, width)).astype(np.float32) / np.sqrt(fan_in),
            "bias": 0.1 * rng.normal(size=width).astype(np.float32),
        }
        if layer_norm and i + 1 < len(widths):
            mlp[f"LayerNorm_{i}"] = {
                "scale": (1.0 + 0.1 * rng.normal(size=width)).astype(np.float32),
                "bias": 0.1 * rng.normal(size=width).astype(np.float32),
            }
        fan_in = width
    return mlp


def write_reference_checkpoint(
    directory,
    step,
    *,
    obs_dim=OBS_DIM,
    horizon=HORIZON,
    action_dim=ACTION_DIM,
    hidden=(32, 32),
    layer_norm=False,
    as_jax=True,
    protocol=pickle.DEFAULT_PROTOCOL,
    seed=0,
):
    """Write params_<step>.pkl (and flags.json) as the reference's BC stage does.

    Returns the numpy `mlp` dict of `modules_actor_slow`, the network BC trained.
    """
    rng = np.random.default_rng(seed)
    chunk = horizon * action_dim
    actor = lambda: {"mlp": reference_mlp(rng, obs_dim + chunk + 1, (*hidden, chunk), layer_norm)}
    critic = {"value_net": reference_mlp(rng, obs_dim + chunk, (*hidden, 1), True)}
    slow = actor()
    params = {
        "modules_critic": critic,
        "modules_target_critic": critic,
        "modules_actor_fast": actor(),
        "modules_target_actor_fast": actor(),
        "modules_actor_slow": slow,
        "modules_target_actor_slow": actor(),  # BC-only training never updates it
    }
    if as_jax:
        params = jax.tree.map(jnp.asarray, params)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-4))
    agent = RefAgent(
        rng=jax.random.PRNGKey(seed),
        network=RefTrainState(step=jnp.asarray(step + 1), params=params, opt_state=tx.init(params)),
        lam=1.0,
        kl_ema=0.0,
    )
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"params_{step}.pkl"), "wb") as f:
        pickle.dump({"agent": flax.serialization.to_state_dict(agent)}, f, protocol=protocol)
    flags = {
        "env_name": "cube-double-play-singletask-task1-v0",
        "horizon_length": horizon,
        "bc_only": True,
        "offline_steps": step,
        "agent": {
            "agent_name": "trqam",
            "actor_hidden_dims": list(hidden),
            "actor_layer_norm": layer_norm,
            "action_chunking": True,
            "horizon_length": horizon,
        },
    }
    with open(os.path.join(directory, "flags.json"), "w") as f:
        json.dump(flags, f)
    return slow["mlp"]


def numpy_reference_field(mlp, obs, actions, times):
    """The reference's ActorVectorField in numpy: MLP(concat[obs, actions, times])."""
    x = np.concatenate([obs, actions, times], axis=-1).astype(np.float64)
    layers = len([k for k in mlp if k.startswith("Dense_")])
    for i in range(layers):
        x = x @ mlp[f"Dense_{i}"]["kernel"] + mlp[f"Dense_{i}"]["bias"]
        if i + 1 < layers:
            x = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))  # flax gelu
            if f"LayerNorm_{i}" in mlp:
                norm = mlp[f"LayerNorm_{i}"]
                mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
                x = (x - mean) / np.sqrt(var + 1e-6) * norm["scale"] + norm["bias"]
    return x


def init_from_config(init_from, **agent_overrides):
    """What `experiment.loaded_base` reads: init_from and the agent config."""
    agent = tiny_config(**{"horizon": HORIZON, **agent_overrides})
    return ml_collections.ConfigDict({"init_from": str(init_from), "agent": agent})


@pytest.mark.parametrize(
    "layer_norm, as_jax, protocol",
    [(False, True, pickle.DEFAULT_PROTOCOL), (True, True, 2), (True, False, 5)],
    ids=["jax-leaves", "layer-norm", "numpy-leaves-protocol5"],
)
def test_loaded_field_is_the_reference_actor(tmp_path, capsys, layer_norm, as_jax, protocol):
    kwargs = dict(layer_norm=layer_norm, as_jax=as_jax, protocol=protocol)
    for seed, step in enumerate((1000, 3000)):
        write_reference_checkpoint(tmp_path, step, seed=seed + 1, **kwargs)
    mlp = write_reference_checkpoint(tmp_path, 20000, **kwargs)  # the largest step, not "3000"
    rows = train.make_rows(3, {})
    config = init_from_config(tmp_path, actor_layer_norm=layer_norm)
    base = experiment.loaded_base(config, rows, example_inputs())
    said = capsys.readouterr().out
    assert "modules_actor_slow from params_20000.pkl (step 20000, the largest step of 3)" in said

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    obs = jax.random.normal(keys[0], (7, OBS_DIM))
    x = jax.random.normal(keys[1], (7, HORIZON * ACTION_DIM))
    t = jax.random.uniform(keys[2], (7, 1))
    expected = numpy_reference_field(mlp, *map(np.asarray, (obs, x, t)))
    module = networks.vector_field_module((32, 32), HORIZON * ACTION_DIM, layer_norm)
    for row in range(len(rows)):  # every row gets the same base
        field = jax.tree.map(lambda leaf, r=row: leaf[r], base)
        got = networks.apply_vector_field(module, field, obs, x, t)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

    # The file itself loads the same field as its directory.
    config.init_from = str(tmp_path / "params_20000.pkl")
    from_file = experiment.loaded_base(config, rows, example_inputs())
    jax.tree.map(np.testing.assert_array_equal, from_file, base)


def test_chunks_follow_the_reference_flattening(tmp_path):
    """Our policy's (H, A) chunk k is the reference's flat actions [k A, (k + 1) A)."""
    mlp = write_reference_checkpoint(tmp_path, 5)
    base = experiment.loaded_base(
        init_from_config(tmp_path), train.make_rows(1, {}), example_inputs()
    )
    cfg = common.from_config(common.SharedConfig, tiny_config(horizon=HORIZON), *example_inputs())
    obs = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (4, OBS_DIM)))
    key = jax.random.PRNGKey(2)
    got = common.flow_policy(cfg, jax.tree.map(lambda leaf: leaf[0], base), obs, key)

    # The reference's compute_flow_actions: K Euler steps at t = i / K from the noise, then clip.
    flat = np.asarray(jax.random.normal(key, (4, HORIZON * ACTION_DIM)), np.float64)
    for i in range(cfg.flow_steps):
        t = np.full((4, 1), i / cfg.flow_steps)
        flat = flat + numpy_reference_field(mlp, obs, flat, t) / cfg.flow_steps
    flat = np.clip(flat, -1, 1)
    for k in range(HORIZON):
        np.testing.assert_allclose(
            got[:, k], flat[:, k * ACTION_DIM : (k + 1) * ACTION_DIM], rtol=1e-4, atol=1e-5
        )


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_naming_os_system_is_refused_unrun(tiny_dataset_dir, tmp_path):
    marker = tmp_path / "ran"
    state = {"agent": {"network": {"params": {"modules_actor_slow": _RunsACommand(marker)}}}}
    with open(tmp_path / "params_1.pkl", "wb") as f:
        pickle.dump(state, f)
    config = tiny_run_config(tiny_dataset_dir, tmp_path / "run")
    config.init_from = str(tmp_path / "params_1.pkl")
    with pytest.raises(
        reference_checkpoint.UnsafePickleError, match=r"refusing to load \w+\.system"
    ):
        experiment.run(config)
    assert not marker.exists()
    assert not (tmp_path / "run" / "config.json").exists()  # a corrected rerun is not refused


def test_other_layout_or_a_truncated_file_is_refused(tmp_path):
    with open(tmp_path / "params_1.pkl", "wb") as f:
        pickle.dump({"params": {"Dense_0": np.zeros((3, 3), np.float32)}}, f)
    config = init_from_config(tmp_path / "params_1.pkl")
    with pytest.raises(checkpoint.CheckpointError, match=r"expected \['agent'\]\['network'\]"):
        experiment.loaded_base(config, train.make_rows(1, {}), example_inputs())
    write_reference_checkpoint(tmp_path / "cut", 2)
    path = tmp_path / "cut" / "params_2.pkl"
    path.write_bytes(path.read_bytes()[:-100])  # as if the download stopped early
    config.init_from = str(path)
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint pickle"):
        experiment.loaded_base(config, train.make_rows(1, {}), example_inputs())


def test_other_shapes_name_the_layers_and_the_settings_that_fit(tmp_path):
    write_reference_checkpoint(tmp_path, 7, hidden=(16, 16, 16), layer_norm=True, horizon=4)
    config = init_from_config(tmp_path, horizon=2)  # 2x32, no layer norm, H = 2
    with pytest.raises(checkpoint.CheckpointError, match="other shapes") as err:
        experiment.loaded_base(config, train.make_rows(1, {}), example_inputs(horizon=2))
    message = str(err.value)
    assert "checkpoint 15x16 16x16 16x16 16x8" in message  # 6 + 8 + 1 inputs, chunks of 8
    assert "this run 11x32 32x32 32x4" in message
    assert "actor_hidden_dims='(16,16,16)'" in message and "actor_layer_norm=True" in message
    assert "--config.agent.horizon=4" in message  # from its flags.json
    assert "observations" not in message  # same domain: only the settings differ
    os.remove(tmp_path / "flags.json")  # optional: without it the rest of the message stands
    with pytest.raises(checkpoint.CheckpointError, match="set agent.horizon to fit$") as err:
        experiment.loaded_base(config, train.make_rows(1, {}), example_inputs(horizon=2))
    assert "flags.json" not in str(err.value)


def test_a_fine_tuning_run_starts_from_the_reference_checkpoint(tiny_dataset_dir, tmp_path):
    with np.load(os.path.join(tiny_dataset_dir, "cube-double-play-v0.npz")) as data:
        obs_dim, action_dim = data["observations"].shape[1], data["actions"].shape[1]
    config = tiny_run_config(tiny_dataset_dir, tmp_path / "run", seeds=1, offline_steps=10)
    config.agent.lr = 1e-9  # the parameters stay where they start, to compare
    mlp = write_reference_checkpoint(
        tmp_path / "bc",
        300000,
        obs_dim=obs_dim,
        horizon=config.agent.horizon,
        action_dim=action_dim,
        hidden=tuple(config.agent.actor_hidden_dims),
        layer_norm=config.agent.actor_layer_norm,
    )
    config.init_from = str(tmp_path / "bc" / "params_300000.pkl")
    summary = experiment.run(config)
    assert summary["steps"]["offline_steps"] == 10
    step, params = final_params(tmp_path / "run")
    assert step == 10
    for name in ("base", "target_base", "fine"):
        for row in range(config.seeds):
            got = jax.tree.map(lambda leaf, r=row: np.asarray(leaf)[r], params[name]["params"])
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), got, mlp)
