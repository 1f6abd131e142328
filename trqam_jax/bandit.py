"""A contextual bandit whose answer is known, for the stability experiment (issue 8).

Context c ~ U[-1, 1] (obs dim 1); action a in [-1, 1]^2 (one step, H = 1).

- Behaviour: with probability 1 - `thin_frac` a Gaussian mode (std `mode_std`) centred at
  mu_j(c) = radius * (cos phi_j, sin phi_j), phi_j(c) = j pi / 2 + c pi / 4, j = 0..3, picked
  uniformly; with probability `thin_frac` uniform on the square. The uniform part is the thin
  data: the critic sees a few noisy labels between and outside the modes.
- True reward: r(c, a) = sum_j q_j(c) exp(-||a - mu_j(c)||^2 / (2 w^2)), a bump on each mode whose
  height q_j(c) = (1 + cos(phi_j(c) - pi c)) / 2 in [0, 1] says how well the mode's direction
  matches a "good direction" that turns faster with c than the modes do. Off the modes r = 0.
- Labels the critic learns from: r + `label_noise` * N(0, 1) + e * xi(c, a), where
  xi(c, a) = sin(3 a_x + 2 c) sin(3 a_y - c) in [-1, 1] is a fixed smooth error field, so the
  critic's target Q~ differs from Q = r by at most e everywhere (Lemma 1's setting), on top of the
  errors a critic fitted to a few thousand samples makes where data is thin.

Everything is a pure function of explicit arrays and PRNG keys; the estimators below
(k-NN KL, histogram and mode-assignment TV) are generic and tested against known answers.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

NUM_MODES = 4
OBS_DIM, ACTION_DIM = 1, 2


class BanditSpec(NamedTuple):
    """Static description of the bandit (all floats; hashable)."""

    radius: float = 0.6
    mode_std: float = 0.08
    reward_width: float = 0.15
    thin_frac: float = 0.1
    label_noise: float = 0.1
    critic_error: float = 0.2  # e: amplitude of the injected bounded error field xi


def mode_centres(spec: BanditSpec, contexts):
    """mu_j(c): contexts (N,) -> (N, 4, 2)."""
    phi = jnp.arange(NUM_MODES) * (jnp.pi / 2) + contexts[:, None] * (jnp.pi / 4)
    return spec.radius * jnp.stack([jnp.cos(phi), jnp.sin(phi)], axis=-1)


def mode_quality(contexts):
    """q_j(c) in [0, 1]: contexts (N,) -> (N, 4)."""
    phi = jnp.arange(NUM_MODES) * (jnp.pi / 2) + contexts[:, None] * (jnp.pi / 4)
    return 0.5 * (1.0 + jnp.cos(phi - jnp.pi * contexts[:, None]))


def true_reward(spec: BanditSpec, contexts, actions):
    """r(c, a): contexts (N,), actions (N, 2) -> (N,) in [0, ~1]."""
    sq_dist = jnp.sum(jnp.square(actions[:, None, :] - mode_centres(spec, contexts)), axis=-1)
    bumps = jnp.exp(-sq_dist / (2.0 * spec.reward_width**2))
    return jnp.sum(mode_quality(contexts) * bumps, axis=-1)


def error_field(contexts, actions):
    """xi(c, a) = sin(3 a_x + 2 c) sin(3 a_y - c) in [-1, 1]: (N,), (N, 2) -> (N,)."""
    return jnp.sin(3.0 * actions[:, 0] + 2.0 * contexts) * jnp.sin(3.0 * actions[:, 1] - contexts)


def best_reward(spec: BanditSpec, contexts):
    """max_a r(c, a) (attained at the best mode's centre, modes barely overlap): (N,) -> (N,)."""
    return true_reward(spec, contexts, _best_centre(spec, contexts))


def _best_centre(spec: BanditSpec, contexts):
    best = jnp.argmax(mode_quality(contexts), axis=-1)
    return jnp.take_along_axis(mode_centres(spec, contexts), best[:, None, None], axis=1)[:, 0]


def sample_behaviour(spec: BanditSpec, key, contexts):
    """Behaviour actions for given contexts: (N,) -> (N, 2), clipped to [-1, 1]."""
    n = contexts.shape[0]
    mode_key, noise_key, thin_key, uniform_key = jax.random.split(key, 4)
    modes = jax.random.randint(mode_key, (n,), 0, NUM_MODES)
    centres = jnp.take_along_axis(mode_centres(spec, contexts), modes[:, None, None], axis=1)[:, 0]
    on_mode = centres + spec.mode_std * jax.random.normal(noise_key, (n, ACTION_DIM))
    thin = jax.random.bernoulli(thin_key, spec.thin_frac, (n,))
    uniform = jax.random.uniform(uniform_key, (n, ACTION_DIM), minval=-1.0, maxval=1.0)
    return jnp.clip(jnp.where(thin[:, None], uniform, on_mode), -1.0, 1.0)


def make_dataset(spec: BanditSpec, key, size: int):
    """The offline dataset in the agents' batch layout (H = 1, no bootstrap).

    Returns a dict with observations (N, 1), actions (N, 1, 2), rewards (N,) (noisy labels with
    the injected error), masks (N,) = 0, valid (N, 1) = 1, next_observations (N, 1), and
    true_rewards (N,) for diagnostics.
    """
    context_key, action_key, noise_key = jax.random.split(key, 3)
    contexts = jax.random.uniform(context_key, (size,), minval=-1.0, maxval=1.0)
    actions = sample_behaviour(spec, action_key, contexts)
    clean = true_reward(spec, contexts, actions)
    labels = (
        clean
        + spec.label_noise * jax.random.normal(noise_key, (size,))
        + spec.critic_error * error_field(contexts, actions)
    )
    obs = contexts[:, None]
    return {
        "observations": obs,
        "actions": actions[:, None, :],
        "rewards": labels,
        # masks = 0: a bandit has no next state to bootstrap from; next_observations is unused.
        "masks": jnp.zeros(size),
        "valid": jnp.ones((size, 1)),
        "next_observations": obs,
        "true_rewards": clean,
    }


def sample_batch(dataset, key, batch_size: int):
    """A uniformly resampled batch of the update's keys (drops `true_rewards`)."""
    size = dataset["observations"].shape[0]
    idx = jax.random.randint(key, (batch_size,), 0, size)
    keys = ("observations", "actions", "rewards", "masks", "valid", "next_observations")
    return {k: dataset[k][idx] for k in keys}


# ---- Estimators of distances between two sample sets (generic, tested on known answers). ----


def knn_kl(x, y, k: int = 5, min_dist: float = 1e-4):
    """k-NN estimate of KL(P || Q) from samples (Wang, Kulkarni and Verdu 2009).

    KL ~= (d / n) sum_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1)), with rho_k(i) the distance
    from x_i to its k-th neighbour among the other x, nu_k(i) to its k-th neighbour in y.
    Distances are floored at `min_dist` because clipping to [-1, 1] makes atoms (repeated
    points), whose true KL is infinite; the floor makes it large but finite.

    Args:
      x: (n, d) samples of P.
      y: (m, d) samples of Q.
    Returns:
      scalar estimate.
    """
    n, d = x.shape
    m = y.shape[0]
    dxx = jnp.sqrt(jnp.sum(jnp.square(x[:, None] - x[None]), axis=-1))
    # The self-distance is 0 and is always the smallest: take the (k+1)-th.
    rho = _kth_smallest(dxx, k + 1)
    nu = _kth_smallest(jnp.sqrt(jnp.sum(jnp.square(x[:, None] - y[None]), axis=-1)), k)
    rho, nu = jnp.maximum(rho, min_dist), jnp.maximum(nu, min_dist)
    return d * jnp.mean(jnp.log(nu / rho)) + jnp.log(m / (n - 1))


def _kth_smallest(dists, k: int):
    """k-th smallest entry of each row: (n, m) -> (n,).

    k passes of (min, mask that one entry): on CPU about 8x faster than lax.top_k or a sort
    for the small k used here. Only the argmin is masked, so repeated values count k times.
    """
    cols = jnp.arange(dists.shape[1])

    def body(_, carry):
        remaining, _ = carry
        idx = jnp.argmin(remaining, axis=-1)
        smallest = jnp.take_along_axis(remaining, idx[:, None], axis=-1)[:, 0]
        return jnp.where(cols[None] == idx[:, None], jnp.inf, remaining), smallest

    return jax.lax.fori_loop(0, k, body, (dists, jnp.zeros(dists.shape[0])))[1]


def histogram_tv(x, y, bins: int = 10, low: float = -1.0, high: float = 1.0):
    """Total variation between the 2-D histograms of two sample sets on [low, high]^2.

    Biased upwards by sampling noise (roughly 0.4 sqrt(occupied bins / n)); a lower bound of the
    true TV otherwise (binning cannot increase TV).

    Args:
      x: (n, 2), y: (m, 2) samples.
    Returns:
      scalar in [0, 1].
    """
    return categorical_tv(_bin_index(x, bins, low, high), _bin_index(y, bins, low, high), bins**2)


def _bin_index(x, bins, low, high):
    cells = jnp.clip(jnp.floor((x - low) / (high - low) * bins), 0, bins - 1).astype(jnp.int32)
    return cells[:, 0] * bins + cells[:, 1]


def categorical_tv(labels_x, labels_y, num_classes: int):
    """TV between the empirical distributions of two integer label sets: (n,), (m,) -> scalar."""
    p = jnp.zeros(num_classes).at[labels_x].add(1.0) / labels_x.shape[0]
    q = jnp.zeros(num_classes).at[labels_y].add(1.0) / labels_y.shape[0]
    return 0.5 * jnp.sum(jnp.abs(p - q))


def mode_labels(spec: BanditSpec, context, actions, radius_stds: float = 3.0):
    """Which mode each action lies in, or NUM_MODES if it is off every mode.

    Args:
      context: scalar c.
      actions: (n, 2).
    Returns:
      (n,) int labels in 0..4; an action is "on" mode j within `radius_stds` mode stds.
    """
    centres = mode_centres(spec, jnp.reshape(context, (1,)))[0]
    dist = jnp.sqrt(jnp.sum(jnp.square(actions[:, None, :] - centres[None]), axis=-1))
    nearest = jnp.argmin(dist, axis=-1)
    on = jnp.min(dist, axis=-1) <= radius_stds * spec.mode_std
    return jnp.where(on, nearest, NUM_MODES)


def mode_tv(spec: BanditSpec, context, x, y):
    """TV between the mode-assignment distributions (4 modes + off) of two action sets.

    A lower bound of TV(P, Q) (a coarsening), with little sampling noise: 5 classes only.
    """
    return categorical_tv(mode_labels(spec, context, x), mode_labels(spec, context, y), 5)
