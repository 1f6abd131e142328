"""The agent fields every agent shares, and the adjoint-matching family's dual (one owner each).

Each agent's own values are in its file (configs/trqam.py, qam.py, qam_e.py, fql.py); the
per-domain values that replace some of these in configs/domains.py. Field names are the ones the
agents' static configs use (`trqam_jax.agents.common.from_config`).
"""

import ml_collections


def shared_defaults(agent_name: str) -> ml_collections.ConfigDict:
    """Paper defaults of every agent: 4x512 networks, 10 critics, K = 10 flow steps, Adam 3e-4."""
    config = ml_collections.ConfigDict()
    config.agent_name = agent_name
    config.lr = 3e-4
    config.batch_size = 256
    config.horizon = 5  # action-chunk length H (1 = no chunking)
    config.actor_hidden_dims = (512, 512, 512, 512)
    config.actor_layer_norm = False
    config.critic_hidden_dims = (512, 512, 512, 512)
    config.critic_layer_norm = True
    config.num_qs = 10
    config.flow_steps = 10
    config.grad_clip = 1.0  # global-norm clipping before Adam; <= 0 = plain Adam
    config.discount = 0.995
    config.rho = 0.5  # pessimism: target = mean - rho * std over the ensemble
    config.tau = 0.005  # EMA rate of the target networks
    # lax.scan unroll factor of the flow-step loops (see benchmarks/update_cost.py).
    config.flow_unroll = 1
    # "bfloat16": matmuls in bf16 with float32 parameters, outputs, losses and optimizer
    # (benchmarks/update_speed.py --compute_dtype measures it; tests/test_agents.py bounds the
    # loss difference over a short run).
    config.compute_dtype = "float32"
    return config


def adjoint_matching_defaults(agent_name: str) -> ml_collections.ConfigDict:
    """`shared_defaults` plus the dual state and its update (ALGORITHM.md §9).

    TRQAM moves lambda by projected dual descent; QAM keeps lambda at `lam_init` and uses only
    `kl_ema_coef`, for its diagnostic KL average.
    """
    config = shared_defaults(agent_name)
    config.lam_init = 1.0
    config.eta_lambda = 0.01
    config.kl_ema_coef = 0.1
    config.kl_clip_coef = 2.0  # D_hat is clipped at kl_clip_coef * epsilon before the EMA
    config.lambda_min = 0.01
    config.lambda_max = 100.0
    config.lam_scale = 3.0  # lambda_eff = lam_scale * lambda
    # The sampler at s' (critic target) and the SDE at s share each flow step's network call on
    # a 2B batch: half as many calls in a row. False: one after the other, as the reference.
    config.fuse_rollouts = True
    return config
