"""trqam-jax: Trust Region Q-Adjoint Matching, QAM and FQL as pure JAX functions."""
