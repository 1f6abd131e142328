"""An independent float64 numpy implementation of the networks and samplers, the reference the
agents' losses are checked against (tests/test_baselines.py, tests/test_new_baselines.py)."""

import jax
import numpy as np


def np_mlp(params, x):
    """flax MLP (Dense -> tanh-GELU (-> LayerNorm) ..., Dense) in float64 numpy."""
    layers = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    num_dense = sum(name.startswith("Dense") for name in layers)
    x = np.asarray(x, np.float64)
    for i in range(num_dense):
        x = x @ layers[f"Dense_{i}"]["kernel"] + layers[f"Dense_{i}"]["bias"]
        if i == num_dense - 1:
            return x
        x = 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
        if f"LayerNorm_{i}" in layers:
            ln = layers[f"LayerNorm_{i}"]
            mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
            x = (x - mu) / np.sqrt(var + 1e-6) * ln["scale"] + ln["bias"]
    raise AssertionError("no Dense layers")


def np_critics(params, obs, actions):
    """(E, B) Q-values of an ensemble with a leading member axis."""
    members = jax.tree.leaves(params)[0].shape[0]
    inputs = np.concatenate([obs, actions], -1)
    return np.stack(
        [np_mlp(jax.tree.map(lambda a, e=e: a[e], params), inputs)[:, 0] for e in range(members)]
    )


def np_euler(params, obs, noise, steps):
    x = np.asarray(noise, np.float64)
    for k in range(steps):
        t = np.full((x.shape[0], 1), k / steps)
        x = x + np_mlp(params, np.concatenate([obs, x, t], -1)) / steps
    return np.clip(x, -1.0, 1.0)


def np_flow_matching(params, obs, actions, weights, key):
    noise_key, time_key = jax.random.split(key)
    x0 = np.asarray(jax.random.normal(noise_key, actions.shape), np.float64)
    tau = np.asarray(jax.random.uniform(time_key, (actions.shape[0], 1)), np.float64)
    x_tau = (1 - tau) * x0 + tau * actions
    pred = np_mlp(params, np.concatenate([obs, x_tau, tau], -1))
    return np.mean(weights * np.mean((pred - (actions - x0)) ** 2, -1))


def np_batch(batch):
    b = {k: np.asarray(v, np.float64) for k, v in batch.items()}
    b["flat_actions"] = b["actions"].reshape(b["actions"].shape[0], -1)
    b["weights"] = b["valid"][:, -1]
    return b
