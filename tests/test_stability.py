"""The stability experiment's task, estimators (against known answers) and TRQAM budget tracking."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import norm

from trqam_jax import bandit
from trqam_jax.stability.experiment import finetune, pretrain
from trqam_jax.stability.settings import Settings
from trqam_jax.stability.tables import tail_mean

SPEC = bandit.BanditSpec()


def test_knn_kl_matches_gaussian_closed_form():
    """KL(N(0, I) || N(m, I)) = ||m||^2 / 2 in 2-D; 0 between two samples of one law."""
    kx, ky, kz = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (3000, 2))
    y = jax.random.normal(ky, (3000, 2)) + jnp.array([1.0, 0.0])
    z = jax.random.normal(kz, (3000, 2))
    assert abs(float(bandit.knn_kl(x, y)) - 0.5) < 0.08
    assert abs(float(bandit.knn_kl(x, z))) < 0.05
    # Scaled Gaussians: KL(N(0, I) || N(0, 4 I)) = d/2 (1/4 - 1 + log 4) in d = 2.
    expected = 0.25 - 1.0 + np.log(4.0)
    assert abs(float(bandit.knn_kl(x, 2.0 * z)) - expected) < 0.08


def test_histogram_tv_matches_uniform_and_gaussian_answers():
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    square = jax.random.uniform(kx, (20000, 2), minval=-1.0, maxval=1.0)
    left_half = jax.random.uniform(ky, (20000, 2), minval=-1.0, maxval=1.0)
    left_half = left_half.at[:, 0].set(-jnp.abs(left_half[:, 0]))
    # TV(U[-1, 1]^2, U[-1, 0] x [-1, 1]) = 1/2.
    assert abs(float(bandit.histogram_tv(square, left_half)) - 0.5) < 0.03
    # Narrow Gaussians (all mass inside the square): binning barely loses anything, so the
    # histogram TV approaches the closed form 2 Phi(||m|| / (2 s)) - 1.
    s, m = 0.2, 0.2
    x = s * jax.random.normal(kx, (20000, 2))
    y = s * jax.random.normal(ky, (20000, 2)) + jnp.array([m, 0.0])
    expected = 2 * norm.cdf(m / (2 * s)) - 1
    assert abs(float(bandit.histogram_tv(x, y, bins=40)) - expected) < 0.04


def test_categorical_and_mode_tv():
    assert float(bandit.categorical_tv(jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 1, 1]), 3)) == 0.25
    centres = bandit.mode_centres(SPEC, jnp.array([0.3]))[0]
    labels = bandit.mode_labels(SPEC, 0.3, jnp.concatenate([centres, jnp.zeros((1, 2))]))
    np.testing.assert_array_equal(labels, [0, 1, 2, 3, bandit.NUM_MODES])
    # Everything on mode 0 vs everything off the modes: disjoint, TV = 1.
    assert float(bandit.mode_tv(SPEC, 0.3, centres[:1].repeat(5, 0), jnp.zeros((5, 2)))) == 1.0


def test_bandit_reward_and_injected_error_are_as_specified():
    contexts = jnp.linspace(-1.0, 1.0, 41)
    best = bandit.best_reward(SPEC, contexts)
    # The best mode is aligned within pi/4 of the good direction: q >= (1 + cos(pi/4)) / 2.
    assert float(best.min()) >= 0.5 * (1 + np.cos(np.pi / 4)) - 1e-4
    assert float(best.max()) <= 1.0 + 1e-3
    far = bandit.true_reward(SPEC, contexts, jnp.zeros((41, 2)))
    assert float(far.max()) < 1e-3  # nothing between the modes
    spec = SPEC._replace(label_noise=0.0, critic_error=0.3)
    data = bandit.make_dataset(spec, jax.random.PRNGKey(2), 5000)
    err = np.asarray(data["rewards"] - data["true_rewards"])
    assert np.abs(err).max() <= 0.3 + 1e-5 and np.abs(err).max() > 0.25  # ||Q~ - Q||_inf = e
    assert data["actions"].shape == (5000, 1, 2) and float(data["masks"].max()) == 0.0
    # About thin_frac of the behaviour lies off the modes (uniform part, minus what lands on one).
    labels = jax.vmap(lambda c, a: bandit.mode_labels(spec, c, a[None])[0])(
        data["observations"][:, 0], data["actions"][:, 0]
    )
    assert 0.05 < float(jnp.mean(labels == bandit.NUM_MODES)) < 0.1


def test_trqam_tracks_each_budget_in_a_short_run():
    """kl_ema over the last quarter of a short run is within 30% of each budget (one seed).

    Short (600 steps), so the dual step is 0.05 rather than the default run's 0.01.
    """
    s = dataclasses.replace(
        Settings(),
        budgets=(0.3, 1.0),
        seeds=1,
        bc_steps=300,
        steps=600,
        eval_every=300,
        eval_samples=64,
        eval_contexts=2,
        eta_lambda=0.05,
    )
    spec = bandit.BanditSpec(critic_error=s.critic_error)
    dataset = bandit.make_dataset(spec, jax.random.PRNGKey(0), s.dataset_size)
    bases, _ = pretrain(s, dataset, jax.random.split(jax.random.PRNGKey(1), s.seeds))
    train, evals = finetune("trqam", s, spec, dataset, bases, s.budgets, jax.random.PRNGKey(2))
    settled = tail_mean(train["kl_ema"])[:, 0]
    np.testing.assert_allclose(settled, s.budgets, rtol=0.3)
    assert all(np.all(np.isfinite(v)) for v in evals.values())
