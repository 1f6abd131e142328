"""The agent fields every agent shares, and the adjoint-matching family's dual (one owner each).

Each agent's own values are in its file (configs/trqam.py, qam.py, qam_e.py, fql.py); the
per-domain values that replace some of these in configs/domains.py. Field names are the ones the
agents' static configs use (`trqam_jax.agents.common.from_config`). What every agent field means,
shared or an agent's own, is `AGENT_FIELD_MEANINGS` (printed by `experiments.run --print_config`).
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
    """`shared_defaults` plus the dual state and its update (projected dual descent).

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


# One line per agent field, shared or an agent's own (the values are in the agents' config files).
AGENT_FIELD_MEANINGS = {
    "agent_name": "the agent: trqam, qam, qam_e, fql, ifql, dsrl or cgql",
    "lr": "Adam learning rate of every network",
    "batch_size": "transitions (action chunks) per update",
    "horizon": "action-chunk length H (1 = no chunking)",
    "actor_hidden_dims": "hidden widths of the flow policy's networks, e.g. (512,512,512,512)",
    "actor_layer_norm": "layer norm in the flow policy's networks",
    "critic_hidden_dims": "hidden widths of each critic",
    "critic_layer_norm": "layer norm in the critics",
    "num_qs": "critics in the ensemble",
    "flow_steps": "Euler steps K of the flow sampler",
    "grad_clip": "global-norm gradient clipping before Adam; <= 0 = plain Adam",
    "discount": "discount per environment step, in (0, 1]",
    "rho": "pessimism of the critic target: mean - rho * std over the ensemble",
    "tau": "EMA rate of the target networks",
    "flow_unroll": "lax.scan unroll factor of the flow-step loops (speed only)",
    "compute_dtype": "float32, or bfloat16 matmuls with float32 parameters and losses",
    "lam_init": "initial dual variable lambda (QAM keeps it fixed)",
    "eta_lambda": "step size of lambda's projected dual descent",
    "kl_ema_coef": "EMA rate of the path-KL estimate",
    "kl_clip_coef": "the KL estimate is clipped at kl_clip_coef * kl_budget before the EMA",
    "lambda_min": "lower bound of lambda's projection",
    "lambda_max": "upper bound of lambda's projection",
    "lam_scale": "lambda_eff = lam_scale * lambda",
    "fuse_rollouts": "the critic-target sampler and the SDE share each flow step's network call",
    "kl_budget": "TRQAM's path-KL budget epsilon (per-domain values in configs/domains.py)",
    "kl_budget_online": "TRQAM's budget for the online stage (None: each row's offline budget)",
    "inv_temp": "inverse temperature beta: QAM's target pi_base * exp(beta Q), CGQL's guidance",
    "edit_scale": "QAM-E: scale of the tanh-Gaussian edit added to the flow's action",
    "edit_target_entropy_multiplier": "QAM-E: the edit's target entropy is -this * H * |a|",
    "alpha": "FQL: distillation coefficient of the one-step policy",
    "normalize_q_loss": "FQL: divide the actor's Q term by stop_grad(mean |Q|)",
    "preset": "FQL: original (the FQL paper) or chunked (the QAM paper's chunked FQL)",
    "q_agg": "FQL: critic target over the ensemble, mean (mean - rho * std) or min",
    "kappa": "IFQL: expectile of the value regression, in (0, 1)",
    "num_samples": "IFQL: N of the best-of-N action selection",
    "noise_scale": "DSRL: the latent policy's noise is noise_scale * tanh(...)",
    "target_entropy_multiplier": "DSRL: the latent policy's target entropy is -this * H * |a|",
    "guidance_coef": "CGQL: scale of the critic's guidance term in the sampler",
    "linex_clip": "CGQL: beyond this delta the LINEX loss is linear",
    "mode": "CGQL: simple, mse or linex (the critic of noisy chunks)",
    "noisy_coef": "CGQL: weight of the noisy-chunk critic loss (mse / linex)",
}
