"""The stability experiment's runs: BC-pretrain one flow policy per seed, fine-tune it with QAM at
every beta and TRQAM at every budget in one compiled program per agent, evaluate the deployed
policy inside that program, and write the outputs (docs/stability.md)."""

import importlib
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from trqam_jax import bandit, networks, train
from trqam_jax.agents import adjoint_matching, bc
from trqam_jax.stability.plots import plot
from trqam_jax.stability.settings import AGENTS, SWEPT, Settings
from trqam_jax.stability.tables import markdown_table


def agent_config(kind: str, s: Settings):
    """The library's agent defaults shrunk for a CPU bandit (2 x `hidden`, `num_qs` critics).

    Agent hyperparameters keep the paper values (eta_lambda = 0.01 included) except the learning
    rate, 1e-3 so that a few thousand steps suffice.
    """
    config = importlib.import_module(f"configs.{kind}").defaults()
    config.horizon = 1
    config.batch_size = s.batch_size
    config.actor_hidden_dims = (s.hidden, s.hidden)
    config.critic_hidden_dims = (s.hidden, s.hidden)
    config.num_qs = s.num_qs
    config.flow_steps = s.flow_steps
    config.lr = s.lr
    config.eta_lambda = s.eta_lambda
    return config


def _example_inputs():
    return jnp.zeros(bandit.OBS_DIM), jnp.zeros((1, bandit.ACTION_DIM))


def _scan_updates(agent, state, dataset, key, steps: int, batch_size: int):
    """`steps` updates of `agent` on fresh batches in one lax.scan: -> (state, per-step metrics)."""
    sample = lambda batch_key: bandit.sample_batch(dataset, batch_key, batch_size)
    return train.scan_updates(agent.update, sample, state, jax.random.split(key, steps))


def pretrain(s: Settings, dataset, keys):
    """BC-pretrained base fields, one per seed: keys (S, 2) -> base params with leading axis S."""
    config = agent_config("trqam", s)

    def one(key):
        init_key, run_key = jax.random.split(key)
        state = bc.init(init_key, config, *_example_inputs())
        state, metrics = _scan_updates(bc, state, dataset, run_key, s.bc_steps, s.batch_size)
        return state.params["base"], metrics["bc_loss"]

    return jax.jit(jax.vmap(one))(keys)


def eval_grid(s: Settings):
    """Context grid of the evaluation: midpoints of `eval_contexts` equal cells of [-1, 1]."""
    n = s.eval_contexts
    return (jnp.arange(n) + 0.5) * (2.0 / n) - 1.0


def _policy_samples(state, params, contexts, num: int, key):
    """Deployed actions of the field `params` at each context: (C,) -> (C, num, 2)."""
    swapped = state.replace(params=dict(state.params, fine=params))
    obs = jnp.repeat(contexts, num)[:, None]
    return adjoint_matching.act(swapped, obs, key).reshape(contexts.shape[0], num, -1)


def evaluate(state, spec: bandit.BanditSpec, contexts, reference, key):
    """Evaluation of one row's deployed policy (pure; vmapped with the rows).

    Args:
      state: one row's `AgentState`.
      contexts: (C,) evaluation contexts.
      reference: (C, N, 2) actions of the pretrained policy at those contexts (independent noise).
      key: PRNG key.
    Returns:
      dict of scalars: true_reward, critic_error (mean |Q - r|), critic_bias (mean Q - r),
      terminal_kl (k-NN, to the pretrained policy), hist_tv, mode_tv, terminal_kl_ema_ref (k-NN, to
      the current EMA base, the reference of the path KL), ema_ref_drift_kl (k-NN, EMA base to the
      pretrained policy).
    """
    num = reference.shape[1]
    policy_key, ema_key = jax.random.split(key)
    samples = _policy_samples(state, state.params["fine"], contexts, num, policy_key)
    # The path KL is measured against the EMA base, which keeps training by BC during
    # fine-tuning; its deployed samples show how far the reference itself has moved.
    ema_ref = _policy_samples(state, state.params["target_base"], contexts, num, ema_key)
    flat_c = jnp.repeat(contexts, num)
    flat_a = samples.reshape(-1, bandit.ACTION_DIM)
    reward = bandit.true_reward(spec, flat_c, flat_a)
    critic = state.config.critic_module()
    q = jnp.mean(
        networks.apply_critic_ensemble(critic, state.params["critic"], flat_c[:, None], flat_a),
        axis=0,
    )
    # lax.map over contexts keeps one (N, N) distance matrix alive at a time.
    per_context = jax.lax.map(
        lambda args: jnp.stack(
            [
                bandit.knn_kl(args[1], args[2]),
                bandit.histogram_tv(args[1], args[2]),
                bandit.mode_tv(spec, args[0], args[1], args[2]),
                bandit.knn_kl(args[1], args[3]),
                bandit.knn_kl(args[3], args[2]),
            ]
        ),
        (contexts, samples, reference, ema_ref),
    )
    means = jnp.mean(per_context, axis=0)
    return {
        "true_reward": jnp.mean(reward),
        "critic_error": jnp.mean(jnp.abs(q - reward)),
        "critic_bias": jnp.mean(q - reward),
        "terminal_kl": means[0],
        "hist_tv": means[1],
        "mode_tv": means[2],
        "terminal_kl_ema_ref": means[3],
        "ema_ref_drift_kl": means[4],
    }


TRAIN_METRICS = ("kl", "kl_ema", "lambda", "critic_loss", "am_loss", "q_mean")


def finetune(kind: str, s: Settings, spec, dataset, bases, values, key):
    """Fine-tune every (value, seed) row of one agent in one compiled program.

    Args:
      kind: "qam" or "trqam".
      bases: pretrained base params with a leading seed axis S.
      values: (V,) swept values (betas or budgets).
    Returns:
      (train metrics dict of (V, S, steps), eval metrics dict of (V, S, evals + 1)).
    """
    config = agent_config(kind, s)
    num_values, num_seeds = len(values), s.seeds
    rows = num_values * num_seeds
    seed_of_row = jnp.tile(jnp.arange(num_seeds), num_values)
    row_bases = jax.tree.map(lambda b: b[seed_of_row], bases)
    row_values = jnp.repeat(jnp.asarray(values, jnp.float32), num_seeds)
    init_keys, ref_keys, run_keys = (jax.random.split(k, rows) for k in jax.random.split(key, 3))
    contexts = eval_grid(s)
    num_blocks = s.steps // s.eval_every

    def run_row(init_key, base, value, ref_key, run_key):
        state = adjoint_matching.init(init_key, config, *_example_inputs(), kind=kind)
        state = adjoint_matching.with_pretrained_base(state, base)
        state = state.replace(hparams={SWEPT[kind]: value})
        reference = _policy_samples(state, base, contexts, s.eval_samples, ref_key)

        def block(state, block_key):
            update_key, eval_key = jax.random.split(block_key)
            state, metrics = _scan_updates(
                adjoint_matching, state, dataset, update_key, s.eval_every, s.batch_size
            )
            ev = evaluate(state, spec, contexts, reference, eval_key)
            return state, ({k: metrics[k] for k in TRAIN_METRICS}, ev)

        first_key, blocks_key = jax.random.split(run_key)
        ev0 = evaluate(state, spec, contexts, reference, first_key)
        _, (train, evals) = jax.lax.scan(block, state, jax.random.split(blocks_key, num_blocks))
        evals = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), ev0, evals)
        return {k: v.reshape(-1) for k, v in train.items()}, evals

    program = jax.jit(jax.vmap(run_row))
    train, evals = program(init_keys, row_bases, row_values, ref_keys, run_keys)
    shape = (num_values, num_seeds)
    reshape = lambda a: np.asarray(a).reshape(shape + a.shape[1:])
    return jax.tree.map(reshape, train), jax.tree.map(reshape, evals)


def run(s: Settings):
    """The whole experiment: -> dict of numpy results (see `write_outputs`)."""
    spec = bandit.BanditSpec(critic_error=s.critic_error)
    data_key, bc_key, qam_key, trqam_key, ref_key = jax.random.split(jax.random.PRNGKey(s.seed), 5)
    dataset = bandit.make_dataset(spec, data_key, s.dataset_size)
    timings = {}
    start = time.perf_counter()
    bases, bc_loss = pretrain(s, dataset, jax.random.split(bc_key, s.seeds))
    jax.block_until_ready(bases)
    timings["pretrain_s"] = time.perf_counter() - start
    results = {"bc_loss": np.asarray(bc_loss)}
    for kind, values, key in (("qam", s.betas, qam_key), ("trqam", s.budgets, trqam_key)):
        start = time.perf_counter()
        train, evals = finetune(kind, s, spec, dataset, bases, values, key)
        timings[f"{kind}_s"] = time.perf_counter() - start
        results[kind] = {"values": np.asarray(values), "train": train, "evals": evals}
    contexts = jax.random.uniform(ref_key, (4096,), minval=-1.0, maxval=1.0)
    behaviour = bandit.sample_behaviour(spec, ref_key, contexts)
    results["behaviour_reward"] = float(jnp.mean(bandit.true_reward(spec, contexts, behaviour)))
    results["best_reward"] = float(jnp.mean(bandit.best_reward(spec, contexts)))
    results["timings"] = timings
    return results


def write_outputs(results, s: Settings, out: str):
    """stability.png, stability_table.md, stability.npz in `out`; returns the table text."""
    os.makedirs(out, exist_ok=True)
    plot(results, s, os.path.join(out, "stability.png"))
    table = markdown_table(results, s)
    with open(os.path.join(out, "stability_table.md"), "w") as f:
        f.write(table)
    flat = {"bc_loss": results["bc_loss"]}
    for kind in AGENTS:
        flat[f"{kind}/values"] = results[kind]["values"]
        for group in ("train", "evals"):
            for k, v in results[kind][group].items():
                flat[f"{kind}/{group}/{k}"] = v
    np.savez_compressed(os.path.join(out, "stability.npz"), **flat)
    return table
